//! The verbs. One file per verb; each takes the state root and an id and
//! checks the container's status before acting.

mod checkpoint;
mod create;
mod delete;
mod exec;
mod kill;
mod query;
pub mod resources;
mod run;
mod start;

pub use crate::launch::exec_server::{serve as serve_execs, Bound as BoundExecServer, ExecHandler};
pub use checkpoint::{checkpoint, restore, CheckpointOptions, CriuOptions, RestoreOptions};
pub use create::{create, CreateOptions};
pub use delete::delete;
pub(crate) use delete::{remove_owned_bundle, wait_for_exit};
pub use exec::{container_process, exec, ExecOptions};
pub use kill::kill;
pub use query::{list, state, ListEntry};
pub(crate) use run::{forward_until_exit, poll_timeout, reap as reap_init, BlockedSignals};
pub use run::{run, run_with, spawn, spawn_with, RunOptions, Spawned};
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
    crate::fault::point("create-reserved");
    let cgroups_path = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.to_string_lossy().into_owned());
    let host = Host::detect()?;
    check_unified(&spec, &host)?;
    let cg = Cgroup::resolve(&host, cgroups_path.as_deref(), id)?;
    if !nix::unistd::geteuid().is_root() && !crate::rootless::cgroup_writable(&cg) {
        // Rootless without a cgroup this user may write: none at all, as
        // long as nothing needs one.
        crate::rootless::refuse_limits_without_cgroup(&spec)?;
        tracing::debug!("rootless: no writable cgroup; the container runs without one");
        let cgroup_mounts = crate::rootfs::cgroup_hierarchies(&host, None);
        return Ok(Prepared {
            bundle,
            rootfs,
            spec,
            reservation,
            cgroup_mounts,
        });
    }
    if let Some(dir) = &reservation.dir {
        dir.save_cgroup(&cg)?;
    }
    crate::fault::point("create-cgroup-recorded");
    reservation.cgroup = Some(cg.clone());
    cg.create()?;
    crate::fault::point("create-cgroup-made");
    // A frozen cgroup (here or above) would stop the init before it runs.
    cg.ensure_thawed()?;
    // runc's warning, word for word: scripts and shims look for it.
    if let Ok(pids) = cg.pids() {
        if !pids.is_empty() {
            tracing::warn!(
                "container's cgroup is not empty: {} process(es) found",
                pids.len()
            );
        }
    }
    let cgroup_mounts = crate::rootfs::cgroup_hierarchies(&host, Some(&cg));
    Ok(Prepared {
        bundle,
        rootfs,
        spec,
        reservation,
        cgroup_mounts,
    })
}

/// On a v1 or hybrid host, `linux.resources.unified` keys whose controller
/// the cgroup2 hierarchy does not serve are an invalid configuration
/// (runc refuses unified on v1 outright); refused before anything is made.
fn check_unified(spec: &Spec, host: &Host) -> Result<()> {
    if host.mode() == nucleus_cgroups::Mode::V2 {
        return Ok(());
    }
    let unified = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.unified().as_ref());
    let mut keys: Vec<&String> = unified.into_iter().flat_map(|u| u.keys()).collect();
    keys.sort();
    for key in keys {
        let controller = key.split_once('.').map_or(key.as_str(), |(c, _)| c);
        let served = controller == "cgroup"
            || host
                .v2_hierarchy()
                .is_some_and(|v2| v2.controllers.iter().any(|c| c == controller));
        if !served {
            return Err(EngineError::invalid(
                "linux.resources.unified",
                key,
                format!("invalid configuration: cannot use unified on cgroup v1 for `{controller}`, which this host's cgroup2 hierarchy does not serve"),
            ));
        }
    }
    Ok(())
}

/// Writes the pid file atomically (runc's `--pid-file`).
pub(crate) fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let tmp = path.with_extension("nucleus-tmp");
    std::fs::write(&tmp, pid.to_string())
        .map_err(|e| EngineError::io("write pid file", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| EngineError::io("write pid file", path, e))
}
