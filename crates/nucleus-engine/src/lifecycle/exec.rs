//! `exec`: run another process in a running container and return its exit
//! code (or, detached, return once it has been executed).

use super::run::{forward_until_exit, BlockedSignals};
use super::write_pid_file;
use crate::error::{EngineError, Result};
use crate::launch::exec::{launch_exec, ExecRequest};
use crate::launch::sync;
use crate::state::{StateRoot, Status};
use oci_spec::runtime::Process;
use std::path::Path;

/// Options of `exec`, as runc takes them.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions<'a> {
    /// The process to run (from `--process`, or built from the container's
    /// own process plus the command line).
    pub process: Process,
    pub console_socket: Option<&'a Path>,
    pub pid_file: Option<&'a Path>,
    pub detach: bool,
    pub preserve_fds: u32,
    /// Exec even though the container is paused (the process starts frozen).
    pub ignore_paused: bool,
    /// Sub-cgroups of the container's to put the process in, as
    /// `(controller, relative path)`; no controller means every hierarchy.
    pub sub_cgroups: Vec<(Option<String>, String)>,
}

/// The container's own process, as a base for building an exec process.
pub fn container_process(root: &StateRoot, id: &str) -> Result<Process> {
    if let Some(p) = crate::launch::exec_server::prepared(id) {
        return Ok(p.state.spec.process().clone().unwrap_or_default());
    }
    let st = root.peek(id)?;
    Ok(st.spec.process().clone().unwrap_or_default())
}

/// Executes `opts.process` inside container `id`.
pub fn exec(root: &StateRoot, id: &str, opts: &ExecOptions<'_>) -> Result<i32> {
    // An exec server read the state once for all its execs.
    let read;
    let prepared = crate::launch::exec_server::prepared(id);
    let st = match prepared {
        Some(p) => &p.state,
        None => {
            read = root.peek(id)?;
            &read
        }
    };
    if crate::backend::gvisor::is_gvisor(st) {
        return crate::backend::gvisor::exec(root, id, opts);
    }
    let status = root.status_of(st);
    if status == Status::Paused && !opts.ignore_paused {
        return Err(EngineError::ExecPaused { id: id.to_string() });
    }
    if !matches!(status, Status::Running | Status::Created | Status::Paused) {
        return Err(EngineError::WrongStatus {
            id: id.to_string(),
            status: status.to_string(),
            op: "exec into it",
        });
    }
    let cgroup = match (&st.cgroup, opts.sub_cgroups.is_empty()) {
        (Some(cg), false) => Some(cg.with_sub_cgroups(&opts.sub_cgroups)?),
        (None, false) => {
            return Err(EngineError::invalid(
                "--cgroup",
                format!("{:?}", opts.sub_cgroups),
                "the container has no cgroup",
            ))
        }
        (cg, true) => cg.clone(),
    };
    let blocked = BlockedSignals::block(!opts.detach)?;
    let forwarded = &blocked.set;
    (|| {
        let terminal = opts.process.terminal().unwrap_or(false);
        let (console_ours, console_fd) =
            crate::tty::local_console(terminal && opts.console_socket.is_none() && !opts.detach)?;
        let mut launched = launch_exec(ExecRequest {
            id,
            bundle: &st.bundle,
            init_pid: st.pid,
            spec: &st.spec,
            cgroup: cgroup.as_ref(),
            process: &opts.process,
            console_socket: opts.console_socket,
            console_fd,
            preserve_fds: opts.preserve_fds,
            seccomp_cache: Some(&root.seccomp_cache_dir()),
            prepared,
        })?;
        sync::start_and_confirm_exec(&launched.sync)?;
        if let Some(path) = opts.pid_file {
            write_pid_file(path, launched.pid.as_raw())?;
        }
        launched.disarm();
        if opts.detach {
            return Ok(0);
        }
        let master = crate::tty::receive_master(console_ours.as_ref())?;
        match master {
            Some(m) => crate::tty::proxy_until_exit(forwarded, launched.pid, m, None),
            None => forward_until_exit(forwarded, launched.pid, None),
        }
    })()
}
