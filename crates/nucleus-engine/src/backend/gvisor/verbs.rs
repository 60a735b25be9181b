//! The verbs on an existing gVisor container, each checking the status the
//! way the native verb does and then calling runsc with the flags recorded
//! at create.

use super::{set_marker, status, CREATED_MARKER, PAUSED_MARKER};
use crate::error::{EngineError, Result};
use crate::lifecycle::ExecOptions;
use crate::state::{ContainerDir, ContainerState, StateRoot, Status};
use nucleus_gvisor::Record;
use std::path::Path;
use std::time::Duration;

fn record_of(dir: &Path) -> Result<Record> {
    Record::load(dir)?.ok_or_else(|| {
        EngineError::invalid(
            "gvisor.json",
            dir.display().to_string(),
            "the container is marked gvisor but its record is missing",
        )
    })
}

fn wrong(id: &str, status: Status, op: &'static str) -> EngineError {
    EngineError::WrongStatus {
        id: id.to_string(),
        status: status.to_string(),
        op,
    }
}

/// `start`: release a created sandbox (`runsc start`).
pub(crate) fn start(root: &StateRoot, id: &str) -> Result<()> {
    let dir = root.open(id)?;
    let state = dir.load()?;
    let st = status(dir.path(), &state);
    if st != Status::Created {
        return Err(wrong(id, st, "start"));
    }
    let record = record_of(dir.path())?;
    record.runsc.call("start", &[id])?;
    set_marker(dir.path(), CREATED_MARKER, false)?;
    tracing::debug!(id, pid = state.pid, "gVisor container started");
    Ok(())
}

/// `kill`: `runsc kill [--all] ID SIGNAL`.
pub(crate) fn kill(
    dir: &ContainerDir,
    state: &ContainerState,
    signal: i32,
    all: bool,
) -> Result<()> {
    let id = state.id.as_str();
    let st = status(dir.path(), state);
    if st == Status::Stopped {
        return Err(wrong(id, st, "kill a container that is not running"));
    }
    let record = record_of(dir.path())?;
    let sig = signal.to_string();
    let mut args = Vec::new();
    if all {
        args.push("--all");
    }
    args.extend([id, sig.as_str()]);
    signal_retrying(&record, &args, state).map_err(|e| match e {
        None => wrong(id, Status::Stopped, "kill a container that is not running"),
        Some(e) => e,
    })?;
    if st == Status::Paused && signal == libc::SIGKILL {
        // A paused sentry delivers nothing until resumed.
        record.runsc.call("resume", &[id])?;
        set_marker(dir.path(), PAUSED_MARKER, false)?;
    }
    Ok(())
}

/// `runsc kill ARGS`, retried while runsc is still setting the container
/// up (a detached `run` returns once `runsc run` is spawned, before runsc
/// has written its state, and a kill then finds no container). `Err(None)`:
/// the container ended meanwhile.
fn signal_retrying(
    record: &Record,
    args: &[&str],
    state: &ContainerState,
) -> std::result::Result<(), Option<EngineError>> {
    let end = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let err = match record.runsc.call("kill", args) {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        if !state.is_alive() {
            return Err(None);
        }
        if std::time::Instant::now() >= end {
            return Err(Some(err.into()));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// `pause`: `runsc pause` (the sentry stops its tasks; no cgroup freezer).
pub(crate) fn pause(root: &StateRoot, id: &str) -> Result<()> {
    let dir = root.open(id)?;
    let state = dir.load()?;
    let st = status(dir.path(), &state);
    if st != Status::Running {
        return Err(wrong(id, st, "pause a container that is not running"));
    }
    record_of(dir.path())?.runsc.call("pause", &[id])?;
    set_marker(dir.path(), PAUSED_MARKER, true)
}

/// `resume`: `runsc resume`.
pub(crate) fn resume(root: &StateRoot, id: &str) -> Result<()> {
    let dir = root.open(id)?;
    let state = dir.load()?;
    let st = status(dir.path(), &state);
    if st != Status::Paused {
        return Err(wrong(id, st, "resume a container that is not paused"));
    }
    record_of(dir.path())?.runsc.call("resume", &[id])?;
    set_marker(dir.path(), PAUSED_MARKER, false)
}

/// `exec`: `runsc exec --process FILE`, its stdio inherited. Returns the
/// process's exit code, or 0 once a detached one runs.
pub(crate) fn exec(root: &StateRoot, id: &str, opts: &ExecOptions<'_>) -> Result<i32> {
    let dir = root.container_dir(id);
    let state = root.peek(id)?;
    let st = status(&dir, &state);
    if !matches!(st, Status::Running | Status::Created) {
        return Err(wrong(id, st, "exec into it"));
    }
    let record = record_of(&dir)?;
    let file = dir.join(format!(
        "exec-{}-{}.json",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let data = serde_json::to_vec(&opts.process).map_err(|source| EngineError::CorruptState {
        path: file.clone(),
        source,
    })?;
    std::fs::write(&file, data).map_err(|e| EngineError::io("write", &file, e))?;
    let result = (|| -> Result<i32> {
        let mut cmd = record.runsc.command("exec");
        cmd.arg("--process").arg(&file);
        if opts.detach {
            cmd.arg("--detach");
        }
        if let Some(p) = opts.pid_file {
            cmd.arg("--pid-file").arg(p);
        }
        if let Some(s) = opts.console_socket {
            cmd.arg("--console-socket").arg(s);
        }
        cmd.arg(id);
        let blocked = crate::lifecycle::BlockedSignals::block(!opts.detach)?;
        let child = cmd
            .spawn()
            .map_err(|e| EngineError::io("run", &record.runsc.binary, e))?;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        drop(child);
        // runsc exec passes the signals it gets on to the process it runs.
        let code = crate::lifecycle::forward_until_exit(&blocked.set, pid, None)?;
        if opts.detach && code != 0 {
            return Err(record
                .runsc
                .failed("exec --detach", &code.to_string(), b"")
                .into());
        }
        Ok(code)
    })();
    let _ = std::fs::remove_file(&file);
    result
}

/// `delete`: `runsc delete --force`, then whatever is left in the recorded
/// cgroup, then nucleus's own state.
pub(crate) fn delete(root: &StateRoot, id: &str, force: bool) -> Result<()> {
    let dir = root.open(id)?;
    let state = dir.load()?;
    remove(root, dir, state, force)
}

pub(crate) fn remove(
    root: &StateRoot,
    dir: ContainerDir,
    state: ContainerState,
    force: bool,
) -> Result<()> {
    let id = state.id.clone();
    let st = status(dir.path(), &state);
    if !force && !matches!(st, Status::Stopped | Status::Created) {
        return Err(wrong(&id, st, "delete it without --force"));
    }
    teardown(dir.path(), &id, state.cgroup.as_ref(), force)?;
    if st != Status::Stopped {
        crate::lifecycle::wait_for_exit(state.pid, Duration::from_secs(10))?;
    }
    dir.remove()?;
    if let Some(name) = state.annotations.get(crate::state::NAME_ANNOTATION) {
        root.release_name(name, &id);
    }
    if let Some(bundle) = state.annotations.get(crate::state::OWNED_BUNDLE_ANNOTATION) {
        crate::lifecycle::remove_owned_bundle(root, Path::new(bundle));
    }
    tracing::debug!(id, "gVisor container deleted");
    Ok(())
}

/// Removes runsc's sandbox and state and the cgroup of a container in `dir`.
fn teardown(
    dir: &Path,
    id: &str,
    cgroup: Option<&nucleus_cgroups::Cgroup>,
    force: bool,
) -> Result<()> {
    if let Some(record) = Record::load(dir)?.filter(|r| has_runsc_state(&r.runsc.root)) {
        // runsc delete kills the sandbox and gofer and runs poststop hooks.
        // Without runsc state (a foreground `runsc run` removes its own on
        // exit, a create killed early has none) there is nothing to delete.
        if let Err(e) = record.runsc.call("delete", &["--force", id]) {
            if record.runsc.knows(id) && !force {
                return Err(e.into());
            }
            tracing::debug!(id, error = %e, "runsc delete");
        }
    }
    super::netns::release(&super::netns::path_in(dir));
    if let Some(cg) = cgroup {
        cg.destroy()?;
    }
    Ok(())
}

/// Whether runsc's `--root` holds any state (its `<id>_sandbox:<id>.state`).
fn has_runsc_state(root: &Path) -> bool {
    std::fs::read_dir(root).is_ok_and(|mut d| d.next().is_some())
}

/// `delete --force` of a gVisor container whose create died before
/// `state.json`: runsc's state (the caller then removes the recorded
/// cgroup and the directory).
pub(crate) fn delete_pending(root: &StateRoot, id: &str) -> Result<()> {
    teardown(&root.container_dir(id), id, None, true)
}
