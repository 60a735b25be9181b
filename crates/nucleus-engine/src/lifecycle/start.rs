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
            .is_some_and(|r| r.contains(PollFlags::POLLIN));
        let init_gone = fds[1].revents().is_some_and(|r| !r.is_empty());
        if fifo_ready
            || fds[0]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLHUP))
        {
            let mut b = [0u8; 1];
            match nix::unistd::read(&fifo, &mut b) {
                Ok(1) => break,
                // EOF: the init closed the fifo without the go byte (it failed).
                Ok(0) => {
                    return Err(EngineError::Child {
                        step: "start".into(),
                        detail: "container init exited before it could be started".into(),
                    })
                }
                Ok(_) | Err(nix::errno::Errno::EAGAIN) => {}
                Err(e) => return Err(EngineError::io("read exec fifo", &fifo_path, e.into())),
            }
        }
        if init_gone {
            return Err(EngineError::Child {
                step: "start".into(),
                detail: "container init exited before it could be started".into(),
            });
        }
    }
    // The init's write end is close-on-exec: EOF means the workload runs.
    wait_for_eof(&fifo);
    std::fs::remove_file(&fifo_path)
        .map_err(|e| EngineError::io("remove exec fifo", &fifo_path, e))?;
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

/// Blocks until the writer closes the fifo (execve, or the init's death).
fn wait_for_eof(fifo: &std::os::fd::OwnedFd) {
    let mut b = [0u8; 16];
    loop {
        let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
            Ok(_) => {}
        }
        match nix::unistd::read(fifo, &mut b) {
            Ok(0) | Err(nix::errno::Errno::EBADF) => return,
            Ok(_) | Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}
