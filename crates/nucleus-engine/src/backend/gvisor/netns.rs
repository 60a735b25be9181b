//! A network namespace made ahead of a gVisor sandbox, bound at
//! `<container dir>/netns`: runsc hands the interfaces of the namespace
//! it starts in to gVisor's netstack as the sandbox starts, so the front
//! end's attach step must have put the veth there before runsc runs.

use crate::error::{EngineError, Result};
use nix::mount::{umount2, MntFlags, MsFlags};
use nix::sched::CloneFlags;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const NETNS_FILE: &str = "netns";

/// Where a container directory keeps its namespace.
pub(crate) fn path_in(dir: &Path) -> PathBuf {
    dir.join(NETNS_FILE)
}

/// Makes a new, empty network namespace and binds it at `path`. A thread
/// of its own unshares (that changes only the thread) and exits; the bind
/// mount keeps the namespace.
pub(crate) fn make(path: &Path) -> Result<()> {
    std::fs::File::create(path).map_err(|e| EngineError::io("create", path, e))?;
    let target = path.to_path_buf();
    let made = std::thread::Builder::new()
        .name("nucleus-netns".into())
        .spawn(move || -> Result<()> {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| EngineError::sys("unshare a network namespace", e))?;
            nix::mount::mount(
                Some("/proc/thread-self/ns/net"),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| EngineError::sys("bind the new network namespace", e))
        })
        .map_err(|e| EngineError::io("spawn a thread for", path, e))?
        .join()
        .unwrap_or_else(|_| {
            Err(EngineError::invalid(
                "network namespace",
                path.display().to_string(),
                "the thread making it panicked",
            ))
        });
    if made.is_err() {
        release(path);
    }
    made
}

/// Refuses a namespace that is the host's (or this process's), which a
/// runsc told to ignore its own check would strip of its interfaces.
pub(crate) fn ensure_not_host(path: &Path) -> Result<()> {
    let id = |p: &Path| std::fs::metadata(p).map(|m| (m.dev(), m.ino()));
    let ns = id(path).map_err(|e| EngineError::io("stat network namespace", path, e))?;
    for host in ["/proc/1/ns/net", "/proc/self/ns/net"] {
        if id(Path::new(host)).is_ok_and(|h| h == ns) {
            return Err(EngineError::invalid(
                "linux.namespaces[network].path",
                path.display().to_string(),
                format!("is the host's network namespace ({host}); gVisor's netstack would take its interfaces"),
            ));
        }
    }
    Ok(())
}

/// Unbinds and removes the namespace file, if there is one.
pub(crate) fn release(path: &Path) {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "unmount network namespace"),
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "remove network namespace file")
        }
    }
}
