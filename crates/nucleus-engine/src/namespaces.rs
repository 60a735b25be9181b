//! Which namespaces to create with clone flags and which to join by path.
//! The decision is made in the parent; the child only executes it.

use crate::error::{EngineError, Result};
use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::path::PathBuf;

/// The namespace plan for one container.
#[derive(Debug, Clone)]
pub(crate) struct NamespacePlan {
    /// Flags for clone(2): namespaces to create.
    pub create: CloneFlags,
    /// Namespaces to join with setns(2), in the order they must be joined.
    pub join: Vec<(CloneFlags, PathBuf)>,
}

impl NamespacePlan {
    pub(crate) fn creates(&self, flag: CloneFlags) -> bool {
        self.create.contains(flag)
    }
}

pub(crate) fn flag_of(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        // CLONE_NEWTIME (0x80) is not in nix's CloneFlags.
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

impl NamespacePlan {
    /// Joining a user or pid namespace needs an intermediate process: the
    /// pid namespace of a process is fixed when it is forked, and the user
    /// namespace must be entered before any other namespace is created.
    pub(crate) fn needs_intermediate(&self) -> bool {
        self.join.iter().any(|(f, _)| is_early(*f))
    }

    /// Flags for the clone that creates the init. The cgroup namespace is
    /// left out: the init unshares it once the parent has put it in its
    /// cgroups, so the namespace's root is the container's own cgroup.
    pub(crate) fn clone_flags(&self) -> CloneFlags {
        self.create & !CloneFlags::CLONE_NEWCGROUP
    }

    /// Whether the init runs in a user namespace other than the host's.
    pub(crate) fn in_userns(&self) -> bool {
        self.creates(CloneFlags::CLONE_NEWUSER)
            || self
                .join
                .iter()
                .any(|(f, _)| *f == CloneFlags::CLONE_NEWUSER)
    }
}

/// Namespaces the intermediate process joins before cloning the init.
pub(crate) fn is_early(flag: CloneFlags) -> bool {
    flag == CloneFlags::CLONE_NEWUSER || flag == CloneFlags::CLONE_NEWPID
}

/// Builds the plan from `linux.namespaces`.
pub(crate) fn plan(spec: &Spec) -> Result<NamespacePlan> {
    let mut out = NamespacePlan {
        create: CloneFlags::empty(),
        join: Vec::new(),
    };
    let list = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref());
    for (i, ns) in list.into_iter().flatten().enumerate() {
        let flag = flag_of(ns.typ());
        match ns.path() {
            None => out.create |= flag,
            Some(path) if out.join.iter().any(|(f, p)| *f == flag && p == path) => {}
            Some(path) => {
                if !path.exists() {
                    return Err(EngineError::invalid(
                        format!("linux.namespaces[{i}].path"),
                        path.display().to_string(),
                        "no such namespace file",
                    ));
                }
                out.join.push((flag, path.clone()));
            }
        }
    }
    // User first (it grants the rights to join the rest), then pid; the
    // mount namespace last, so the other namespace paths still resolve.
    out.join.sort_by_key(|(f, _)| match *f {
        CloneFlags::CLONE_NEWUSER => 0,
        CloneFlags::CLONE_NEWPID => 1,
        CloneFlags::CLONE_NEWNS => 3,
        _ => 2,
    });
    Ok(out)
}
