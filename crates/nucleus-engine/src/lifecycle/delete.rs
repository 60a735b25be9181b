//! `delete`: remove a stopped (or, with `force`, any) container: kill what
//! is left, remove its cgroups, run poststop hooks, remove its state.

use super::kill::signal_init;
use crate::error::{EngineError, Result};
use crate::hooks::{self, HookKind};
use crate::state::{ContainerDir, ContainerState, StateRoot, Status};
use nix::unistd::Pid;
use std::os::fd::AsFd;
use std::time::Duration;

/// Deletes container `id`. With `force`, a directory a killed runtime left
/// without a readable `state.json` is cleaned up too (see [`delete_partial`]).
pub fn delete(root: &StateRoot, id: &str, force: bool) -> Result<()> {
    let dir = root.open_partial(id)?;
    crate::fault::point("delete-locked");
    match dir.load() {
        Ok(state) => remove(root, dir, state, force),
        Err(_) if force => delete_partial(dir),
        Err(EngineError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Err(EngineError::NotFound { id: id.to_string() })
        }
        Err(e) => Err(e),
    }
}

/// A create killed before `state.json` (or a delete killed after removing
/// it) leaves the lock, maybe `cgroup.json`, a temp file or the fifo. Kill
/// whatever is in the recorded cgroup, remove it, then the directory.
fn delete_partial(dir: ContainerDir) -> Result<()> {
    let id = dir.id().to_string();
    match dir.pending_cgroup() {
        Ok(Some(cg)) => cg.destroy()?,
        Ok(None) => {}
        // Written atomically, so only a foreign hand makes it unreadable.
        Err(e) => {
            tracing::warn!(id, error = %e, "cannot read the recorded cgroup; removing the state only")
        }
    }
    dir.remove()?;
    tracing::debug!(id, "partial container state deleted");
    Ok(())
}

/// Deletes a container whose state the caller already holds (a foreground
/// `run`): the fields used here never change after start.
pub(crate) fn delete_known(root: &StateRoot, state: ContainerState) -> Result<()> {
    let dir = root.open(&state.id)?;
    remove(root, dir, state, true)
}

fn remove(root: &StateRoot, dir: ContainerDir, state: ContainerState, force: bool) -> Result<()> {
    let id = state.id.as_str();
    let status = dir.status(&state);
    match status {
        Status::Stopped | Status::Created => {}
        _ if force => {}
        _ => {
            return Err(EngineError::WrongStatus {
                id: id.to_string(),
                status: status.to_string(),
                op: "delete it without --force",
            })
        }
    }
    if status != Status::Stopped {
        if let Some(cg) = &state.cgroup {
            cg.kill_all(libc::SIGKILL)?;
            if status == Status::Paused {
                cg.thaw()?;
            }
        }
        signal_init(&state, libc::SIGKILL)?;
        wait_for_exit(state.pid, Duration::from_secs(10))?;
    }
    crate::fault::point("delete-killed");
    if let Some(cg) = &state.cgroup {
        cg.destroy()?;
    }
    crate::fault::point("delete-cgroup-removed");
    if let Err(e) = hooks::run_all(
        HookKind::Poststop,
        &state.spec,
        &state.oci_state(Status::Stopped).to_string(),
    ) {
        tracing::warn!(id, error = %e, "poststop hook failed");
    }
    // The name and the generated bundle go before the state, so a delete
    // killed here is finished by the next one, which still reads them.
    if let Some(name) = state.annotations.get(crate::state::NAME_ANNOTATION) {
        root.release_name(name, id);
    }
    if let Some(bundle) = state.annotations.get(crate::state::OWNED_BUNDLE_ANNOTATION) {
        remove_owned_bundle(root, std::path::Path::new(bundle));
    }
    crate::fault::point("delete-hooks-done");
    dir.remove()?;
    tracing::debug!(id, "container deleted");
    Ok(())
}

/// Waits for `pid` to exit (or become a zombie), by pidfd.
pub(crate) fn wait_for_exit(pid: i32, limit: Duration) -> Result<()> {
    let Ok(pidfd) = nucleus_sys::pidfd::pidfd_open(Pid::from_raw(pid)) else {
        return Ok(());
    };
    match nucleus_sys::pidfd::wait_exit(pidfd.as_fd(), limit) {
        Ok(true) => Ok(()),
        Ok(false) => Err(EngineError::sys(
            "wait for the container init to exit",
            nix::errno::Errno::ETIMEDOUT,
        )),
        Err(e) => Err(EngineError::sys("wait for the container init to exit", e)),
    }
}

/// Removes a bundle the runtime generated, only if it lies under the state root.
fn remove_owned_bundle(root: &StateRoot, bundle: &std::path::Path) {
    let (Ok(bundle), Ok(base)) = (
        std::fs::canonicalize(bundle),
        std::fs::canonicalize(root.path()),
    ) else {
        return;
    };
    if bundle.starts_with(&base) && bundle != base {
        if let Err(e) = std::fs::remove_dir_all(&bundle) {
            tracing::warn!(path = %bundle.display(), error = %e, "cannot remove generated bundle");
        }
    }
}
