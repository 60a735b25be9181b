//! The verbs. One file per verb; each takes the state root and an id and
//! checks the container's status before acting.

mod create;
mod delete;
mod exec;
mod kill;
mod query;
pub mod resources;
mod run;
mod start;

pub use create::{create, CreateOptions};
pub use delete::delete;
pub use exec::{container_process, exec, ExecOptions};
pub use kill::kill;
pub use query::{list, state, ListEntry};
pub(crate) use run::{poll_timeout, reap as reap_init};
pub use run::{run, spawn, RunOptions, Spawned};
pub use start::start;

use crate::error::{EngineError, Result};
use crate::state::{ContainerDir, StateRoot};
use nucleus_cgroups::{Cgroup, Host};
use oci_spec::runtime::Spec;
use std::path::{Path, PathBuf};

/// A reserved container directory plus its cgroup; undone on drop unless
/// disarmed, so a failed create leaves nothing behind.
struct Reservation {
    dir: Option<ContainerDir>,
    cgroup: Option<Cgroup>,
}

impl Reservation {
    fn disarm(mut self) -> ContainerDir {
        self.cgroup = None;
        self.dir
            .take()
            .expect("reservation holds its directory until disarmed")
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(cg) = self.cgroup.take() {
            if let Err(e) = cg.destroy() {
                tracing::warn!(error = %e, "cleanup after failed create: cgroup");
            }
        }
        if let Some(dir) = self.dir.take() {
            if let Err(e) = dir.remove() {
                tracing::warn!(error = %e, "cleanup after failed create: state directory");
            }
        }
    }
}

/// What create and run share: load and validate the bundle, reserve the id,
/// and create the cgroup.
struct Prepared {
    bundle: PathBuf,
    rootfs: PathBuf,
    spec: Spec,
    reservation: Reservation,
    cgroup_mounts: Vec<crate::rootfs::CgroupHierarchy>,
}

fn prepare(root: &StateRoot, id: &str, bundle: &Path) -> Result<Prepared> {
    crate::state::validate_id(id)?;
    let bundle =
        std::fs::canonicalize(bundle).map_err(|e| EngineError::io("open bundle", bundle, e))?;
    let spec = crate::spec::load(&bundle)?;
    crate::spec::validate(&spec, true)?;
    let rootfs = crate::spec::rootfs_path(&spec, &bundle)?;
    let dir = root.reserve(id)?;
    let mut reservation = Reservation {
        dir: Some(dir),
        cgroup: None,
    };
    let cgroups_path = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.to_string_lossy().into_owned());
    let host = Host::detect()?;
    let cg = Cgroup::resolve(&host, cgroups_path.as_deref(), id)?;
    if let Some(dir) = &reservation.dir {
        dir.save_cgroup(&cg)?;
    }
    reservation.cgroup = Some(cg.clone());
    cg.create()?;
    let cgroup_mounts = crate::rootfs::cgroup_hierarchies(&host);
    Ok(Prepared {
        bundle,
        rootfs,
        spec,
        reservation,
        cgroup_mounts,
    })
}

/// Writes the pid file atomically (runc's `--pid-file`).
fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let tmp = path.with_extension("nucleus-tmp");
    std::fs::write(&tmp, pid.to_string())
        .map_err(|e| EngineError::io("write pid file", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| EngineError::io("write pid file", path, e))
}
