//! User namespaces for id-mapped mounts (`idmap`/`ridmap` with a mount's
//! `uidMappings`/`gidMappings`). `mount_setattr(MOUNT_ATTR_IDMAP)` needs an
//! fd of a user namespace holding the maps: before clone, the parent forks a
//! helper into a new user namespace, writes its maps, opens its
//! `/proc/PID/ns/user` and lets it exit. The init inherits the fds.

use super::parent::ensure_single_threaded;
use crate::error::{EngineError, Result};
use nix::sys::wait::waitpid;
use nucleus_sys::clone::{clone_fork, CloneResult};
use oci_spec::runtime::Spec;
use std::os::fd::OwnedFd;

/// One entry per `mounts[]` entry: the user namespace of an id-mapped one.
pub(crate) fn userns_fds(spec: &Spec) -> Result<Vec<Option<OwnedFd>>> {
    let mut out = Vec::new();
    for m in spec.mounts().iter().flatten() {
        let idmapped = m
            .options()
            .iter()
            .flatten()
            .any(|o| o == "idmap" || o == "ridmap");
        out.push(match (idmapped, m.uid_mappings(), m.gid_mappings()) {
            (true, Some(uid), Some(gid)) => Some(userns_with_maps(uid, gid)?),
            _ => None,
        });
    }
    Ok(out)
}

fn userns_with_maps(
    uid: &[oci_spec::runtime::LinuxIdMapping],
    gid: &[oci_spec::runtime::LinuxIdMapping],
) -> Result<OwnedFd> {
    let (hold_r, hold_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| EngineError::sys("create pipe", e))?;
    ensure_single_threaded()?;
    // SAFETY: ensure_single_threaded just checked this process has one
    // thread, so the child may call any libc function; CLONE_NEWUSER only
    // gives it a new user namespace, and it only blocks on a read and _exits.
    let cloned = unsafe { clone_fork(libc::CLONE_NEWUSER) }
        .map_err(|e| EngineError::sys("clone a user namespace for an id-mapped mount", e))?;
    let pid = match cloned {
        CloneResult::Child => {
            drop(hold_w);
            let mut byte = [0u8; 1];
            // EOF once the parent has opened our namespace (or gone away).
            let _ = nix::unistd::read(&hold_r, &mut byte);
            // SAFETY: _exit skips destructors that belong to the runtime's copy.
            unsafe { libc::_exit(0) }
        }
        CloneResult::Parent(pid) => pid,
    };
    drop(hold_r);
    let result = (|| {
        crate::userns::write_id_maps(pid.as_raw(), uid, gid)?;
        let path = format!("/proc/{pid}/ns/user");
        let fd: OwnedFd = std::fs::File::open(&path)
            .map_err(|e| EngineError::io("open", &path, e))?
            .into();
        Ok(fd)
    })();
    drop(hold_w);
    let _ = waitpid(pid, None);
    result
}
