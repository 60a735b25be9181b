//! `start`: release a created container's init to exec the workload.

use crate::error::{EngineError, Result};
use crate::hooks::{self, HookKind};
use crate::state::{StateRoot, Status};
use nix::fcntl::{open, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use std::os::fd::AsFd;

/// Starts container `id`, which must be `created`.
pub fn start(root: &StateRoot, id: &str) -> Result<()> {
    let dir = root.open(id)?;
    crate::fault::point("start-locked");
    let state = dir.load()?;
    let status = dir.status(&state);
    if status != Status::Created {
        return Err(EngineError::WrongStatus {
            id: id.to_string(),
            status: status.to_string(),
            op: "start",
        });
    }
    let fifo_path = dir.fifo_path();
    let pidfd = nucleus_sys::pidfd::pidfd_open(Pid::from_raw(state.pid))
        .map_err(|e| EngineError::sys("open pidfd of container init", e))?;
    // Re-check after pinning the pid with the pidfd.
    if !state.is_alive() {
        return Err(EngineError::WrongStatus {
            id: id.to_string(),
            status: "stopped".into(),
            op: "start",
        });
    }
    // Non-blocking open: never hang if the init died; poll the fifo and the pidfd together.
    let fifo = open(
        &fifo_path,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| EngineError::io("open exec fifo", &fifo_path, e.into()))?;
    let gone = || EngineError::Child {
        step: "start".into(),
        detail: "container init exited before it could be started".into(),
    };
    loop {
        let mut fds = [
            PollFd::new(fifo.as_fd(), PollFlags::POLLIN),
            PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(EngineError::sys("wait for the container init", e)),
            Ok(_) => {}
        }
        let fifo_ready = fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP));
        // The init opened its end: from now on EOF is the answer, whatever the pidfd says.
        if fifo_ready {
            break;
        }
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            return Err(gone());
        }
    }
    // The go byte, then EOF when the close-on-exec write end closes at
    // execve; or an error line from a step that failed after create returned.
    let reply =
        read_to_eof(&fifo).map_err(|e| EngineError::io("read exec fifo", &fifo_path, e.into()))?;
    crate::fault::point("start-after-fifo");
    match reply.strip_prefix(crate::launch::FIFO_GO) {
        Some([]) => {}
        None if reply.is_empty() => return Err(gone()),
        _ => {
            let text = String::from_utf8_lossy(&reply);
            let text = text.strip_prefix("0").unwrap_or(&text);
            let text = text.strip_prefix(crate::launch::FIFO_ERROR).unwrap_or(text);
            let (step, detail) = text.split_once(": ").unwrap_or(("start", text));
            return Err(EngineError::Child {
                step: step.to_string(),
                detail: detail.to_string(),
            });
        }
    }
    std::fs::remove_file(&fifo_path)
        .map_err(|e| EngineError::io("remove exec fifo", &fifo_path, e))?;
    crate::fault::point("start-fifo-removed");
    tracing::debug!(id, pid = state.pid, "container started");
    if let Err(e) = hooks::run_all(
        HookKind::Poststart,
        &state.spec,
        &state.oci_state(Status::Running).to_string(),
    ) {
        tracing::warn!(id, error = %e, "poststart hook failed");
    }
    Ok(())
}

/// Reads until the writer closes the fifo (execve, or the init's death);
/// at most a few KiB are kept.
fn read_to_eof(fifo: &std::os::fd::OwnedFd) -> Result<Vec<u8>, nix::errno::Errno> {
    let mut out = Vec::new();
    let mut b = [0u8; 512];
    loop {
        let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        match nix::unistd::read(fifo, &mut b) {
            Ok(0) => return Ok(out),
            Ok(n) => {
                if out.len() < 4096 {
                    out.extend_from_slice(&b[..n]);
                }
            }
            Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
}
