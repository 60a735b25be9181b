//! `create`: set the container up and leave its init waiting on exec.fifo.

use super::{prepare, write_pid_file};
use crate::error::Result;
use crate::launch::{launch, LaunchMode, LaunchRequest};
use crate::state::StateRoot;
use std::path::Path;

/// Options of `create`, as runc takes them.
#[derive(Debug, Clone)]
pub struct CreateOptions<'a> {
    pub bundle: &'a Path,
    pub console_socket: Option<&'a Path>,
    pub pid_file: Option<&'a Path>,
    pub no_pivot: bool,
    pub preserve_fds: u32,
}

/// Creates container `id`; on return its status is `created`.
pub fn create(root: &StateRoot, id: &str, opts: &CreateOptions<'_>) -> Result<i32> {
    let p = prepare(root, id, opts.bundle)?;
    let dir = p
        .reservation
        .dir
        .as_ref()
        .map(|d| d.fifo_path())
        .unwrap_or_default();
    let (mut launched, _) = launch(LaunchRequest {
        id,
        spec: &p.spec,
        bundle: &p.bundle,
        rootfs: &p.rootfs,
        mode: LaunchMode::Create { fifo: dir },
        console_socket: opts.console_socket,
        console_fd: None,
        no_pivot: opts.no_pivot,
        preserve_fds: opts.preserve_fds,
        cgroup: p.reservation.cgroup.as_ref(),
        cgroup_mounts: &p.cgroup_mounts,
        seccomp_cache: Some(&root.seccomp_cache_dir()),
        state_dir: p.reservation.dir.as_ref(),
        attach: None,
    })?;
    let pid = launched.pid.as_raw();
    if let Some(path) = opts.pid_file {
        write_pid_file(path, pid)?;
    }
    crate::fault::point("create-pid-file");
    launched.disarm();
    p.reservation.disarm();
    tracing::debug!(id, pid, "container created");
    Ok(pid)
}
