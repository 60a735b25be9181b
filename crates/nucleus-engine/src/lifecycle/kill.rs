//! `kill`: signal the init, or with `all` every process in the container's cgroup.

use crate::error::{EngineError, Result};
use crate::state::{ContainerState, StateRoot, Status};
use nix::unistd::Pid;
use std::os::fd::AsFd;

/// Sends `signal` to container `id`.
pub fn kill(root: &StateRoot, id: &str, signal: i32, all: bool) -> Result<()> {
    let dir = root.open(id)?;
    let state = dir.load()?;
    if crate::backend::gvisor::is_gvisor(&state) {
        return crate::backend::gvisor::kill(&dir, &state, signal, all);
    }
    let status = dir.status(&state);
    if status == Status::Stopped && all {
        // As runc: `kill --all` of a stopped container signals whatever is
        // left in its cgroup and succeeds. containerd's CRI plugin sends it
        // (SIGKILL) when it deletes a task that has already exited.
        if let Some(cg) = &state.cgroup {
            if !cg.pids()?.is_empty() {
                cg.kill_all(signal)?;
            }
        }
        return Ok(());
    }
    if status == Status::Stopped {
        return Err(EngineError::WrongStatus {
            id: id.to_string(),
            status: status.to_string(),
            op: "kill a container that is not running",
        });
    }
    if all {
        if let Some(cg) = &state.cgroup {
            cg.kill_all(signal)?;
        }
    }
    signal_init(&state, signal)?;
    if status == Status::Paused && signal == libc::SIGKILL {
        // Frozen tasks only die once thawed.
        if let Some(cg) = &state.cgroup {
            cg.thaw()?;
        }
    }
    Ok(())
}

/// Signals the init through a pidfd, after checking the pid still names our
/// process (same start time), so a recycled pid is never signalled.
pub(crate) fn signal_init(state: &ContainerState, signal: i32) -> Result<()> {
    let pidfd = match nucleus_sys::pidfd::pidfd_open(Pid::from_raw(state.pid)) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ESRCH) => return Ok(()),
        Err(e) => return Err(EngineError::sys("open pidfd of container init", e)),
    };
    if !state.is_alive() {
        return Ok(());
    }
    match nucleus_sys::pidfd::pidfd_send_signal(pidfd.as_fd(), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(EngineError::sys("signal the container init", e)),
    }
}
