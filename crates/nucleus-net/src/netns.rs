//! Running work inside another network namespace. `setns` changes only the
//! calling thread, so each call gets a fresh thread that enters the namespace,
//! runs the closure and exits; the caller's threads never change namespace.

use crate::error::{NetError, Result};
use nix::sched::{setns, CloneFlags};
use std::fs::File;
use std::path::{Path, PathBuf};

/// The network namespace of a process, `/proc/<pid>/ns/net`.
pub fn of_pid(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/ns/net"))
}

/// Run `f` on a thread inside the network namespace at `path`.
pub fn run_in<T, F>(path: &Path, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    let file = File::open(path).map_err(|e| NetError::io("open network namespace", path, e))?;
    let owned = path.to_path_buf();
    let thread = std::thread::Builder::new()
        .name("nucleus-netns".into())
        .spawn(move || {
            setns(&file, CloneFlags::CLONE_NEWNET).map_err(|source| NetError::EnterNetns {
                path: owned,
                source,
            })?;
            f()
        })
        .map_err(|e| NetError::io("spawn a thread for", path, e))?;
    thread.join().unwrap_or_else(|_| {
        Err(NetError::Netlink {
            op: "configure",
            target: path.display().to_string(),
            detail: "worker thread panicked".into(),
        })
    })
}

/// A current-thread tokio runtime for netlink requests.
pub(crate) fn runtime(purpose: &'static str) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|source| NetError::Runtime { purpose, source })
}

/// Run one batch of netlink requests on a runtime of its own.
pub(crate) fn block_on<F: std::future::Future>(purpose: &'static str, fut: F) -> Result<F::Output> {
    Ok(runtime(purpose)?.block_on(fut))
}
