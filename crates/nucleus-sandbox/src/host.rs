//! What a spec points at on the host, read and checked up front, so that a
//! missing file is a bad value before anything is created: the root's
//! passwd and group, resolv.conf, the agent root's layout, volume, context
//! and secret sources, and the policy files (checked against their SHA-256
//! pins and parsed). The result feeds [`crate::compile::Inputs`].

use crate::agent_root::HostLayout;
use crate::compile::{ImageRoot, Inputs, Policies};
use crate::error::{Field, Result, SandboxError};
use crate::rootfs::RootfsSource;
use crate::spec::{PolicyFile, SandboxSpec};
use crate::userns::Caller;
use nucleus_engine::security::{caps_policy, landlock, pinning};
use serde_json::Value;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The host's side of a sandbox.
#[derive(Debug, Clone)]
pub struct HostFacts {
    pub layout: HostLayout,
    pub passwd: String,
    pub group: String,
    pub resolv: String,
    pub policies: Policies,
    pub default_seccomp: Value,
    /// The caller's ids and subordinate ranges, when a user namespace is asked for.
    pub caller: Option<Caller>,
    /// Whether the container will get a cgroup (not when rootless without a writable one).
    pub cgroup: bool,
    /// The caller's hard RLIMIT_NPROC.
    pub nproc_hard: u64,
}

impl HostFacts {
    /// The compile inputs for container `id`.
    pub fn inputs<'a>(&'a self, id: &'a str, image: Option<ImageRoot<'a>>) -> Inputs<'a> {
        Inputs {
            id,
            host: &self.layout,
            passwd: &self.passwd,
            group: &self.group,
            host_resolv: &self.resolv,
            device: &block_device,
            default_seccomp: &self.default_seccomp,
            policies: &self.policies,
            image,
            caller: self.caller.as_ref(),
            cgroup: self.cgroup,
            nproc_hard: self.nproc_hard,
        }
    }
}

/// Block device path → (major, minor).
pub fn block_device(p: &str) -> Option<(i64, i64)> {
    let m = std::fs::metadata(p).ok()?;
    if !m.file_type().is_block_device() {
        return None;
    }
    Some((
        i64::try_from(nix::sys::stat::major(m.rdev())).ok()?,
        i64::try_from(nix::sys::stat::minor(m.rdev())).ok()?,
    ))
}

/// The running user's ids and subordinate ranges.
pub fn caller() -> Caller {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    Caller::current(&read("/etc/subuid"), &read("/etc/subgid"))
}

/// Reads and checks everything `spec` names on the host. `image_rootfs` is
/// the prepared root of an image spec.
pub fn probe(s: &SandboxSpec, image_rootfs: Option<&Path>) -> Result<HostFacts> {
    let etc = match (&s.rootfs, image_rootfs) {
        (RootfsSource::Directory(dir), _) => {
            let meta = std::fs::metadata(dir).map_err(|e| {
                SandboxError::invalid(Field::Rootfs, dir.display().to_string(), e.to_string())
            })?;
            if !meta.is_dir() {
                return Err(SandboxError::invalid(
                    Field::Rootfs,
                    dir.display().to_string(),
                    "not a directory",
                ));
            }
            dir.join("etc")
        }
        (RootfsSource::Image(_), Some(root)) => root.join("etc"),
        _ => PathBuf::from("/etc"),
    };
    let layout = if s.rootfs.is_host_derived() {
        HostLayout::probe(Path::new("/"))
    } else {
        HostLayout::default()
    };
    let passwd = std::fs::read_to_string(etc.join("passwd")).unwrap_or_default();
    let group = std::fs::read_to_string(etc.join("group")).unwrap_or_default();
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    for v in &s.volumes {
        if v.source.is_absolute() && std::fs::metadata(&v.source).is_err() {
            return Err(SandboxError::invalid(
                Field::Volume,
                v.to_string(),
                format!("`{}` does not exist", v.source.display()),
            ));
        }
    }
    if let Some(c) = &s.context {
        if !c.source.is_dir() {
            return Err(SandboxError::invalid(
                Field::Context,
                c.source.display().to_string(),
                "not a directory",
            ));
        }
    }
    for sec in &s.secrets {
        if !sec.source.is_file() {
            let src = sec.source.display().to_string();
            return Err(SandboxError::invalid(
                Field::Secret,
                &src,
                format!("`{src}` is not a readable file"),
            ));
        }
    }
    let default_seccomp =
        serde_json::to_value(nucleus_engine::security::agent_profile::agent_seccomp_profile())
            .map_err(|e| SandboxError::Encode {
                what: "the agent seccomp profile",
                reason: e.to_string(),
            })?;
    let caller = (!s.userns.is_host()).then(caller);
    // The engine names the cgroup after the id; any name finds the parent.
    let parent = s.resources.cgroup_parent.as_deref();
    let probe_path = crate::parse::cgroups_path(parent, "probe");
    let cgroup = nix::unistd::geteuid().is_root()
        || match (
            nucleus_engine::rootless::cgroup_unwritable(Some(&probe_path), "probe"),
            parent,
        ) {
            (Ok(None), _) => true,
            // Asked for by name: no silent fallback to no cgroup.
            (Ok(Some(dir)), Some(p)) => {
                return Err(SandboxError::invalid(
                    Field::CgroupParent,
                    p,
                    format!(
                        "rootless: this user cannot create cgroups there ({} is not writable); give a cgroup you own, e.g. a delegated cgroup v2 subtree",
                        dir.display()
                    ),
                ))
            }
            (Err(e), Some(p)) => {
                return Err(SandboxError::invalid(Field::CgroupParent, p, e.to_string()))
            }
            (_, None) => false,
        };
    let nproc_hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NPROC)
        .map_or(u64::MAX, |(_, hard)| hard);
    Ok(HostFacts {
        caller,
        cgroup,
        nproc_hard,
        layout,
        passwd,
        group,
        resolv,
        policies: read_policies(s)?,
        default_seccomp,
    })
}

/// Reads a policy file, checking its pin.
fn read_pinned(field: Field, f: &PolicyFile) -> Result<String> {
    pinning::read_pinned(&f.path, f.sha256.as_deref())
        .map_err(|e| SandboxError::invalid(field, f.path.display().to_string(), e.to_string()))
}

/// Reads the policy files, checking their SHA-256 pins, and parses them.
fn read_policies(s: &SandboxSpec) -> Result<Policies> {
    let sec = &s.security;
    let mut p = Policies::default();
    if let Some(f) = &sec.seccomp_profile {
        let text = read_pinned(Field::SeccompProfile, f)?;
        let path = f.path.display().to_string();
        let profile = nucleus_engine::security::seccomp::parse_profile(&text, "--seccomp-profile")
            .map_err(|e| SandboxError::invalid(Field::SeccompProfile, &path, e.to_string()))?;
        p.seccomp = Some(
            serde_json::to_value(profile)
                .map_err(|e| SandboxError::invalid(Field::SeccompProfile, &path, e.to_string()))?,
        );
    }
    if let Some(f) = &sec.caps_policy {
        let text = read_pinned(Field::CapsPolicy, f)?;
        let path = f.path.display().to_string();
        let caps = caps_policy::parse_caps_policy(&text)
            .map_err(|e| SandboxError::invalid(Field::CapsPolicy, &path, e.to_string()))?;
        p.caps = Some(
            serde_json::to_value(caps)
                .map_err(|e| SandboxError::invalid(Field::CapsPolicy, &path, e.to_string()))?,
        );
    }
    if let Some(f) = &sec.landlock_policy {
        let text = read_pinned(Field::LandlockPolicy, f)?;
        landlock::parse_policy(&text).map_err(|e| {
            SandboxError::invalid(
                Field::LandlockPolicy,
                f.path.display().to_string(),
                e.to_string(),
            )
        })?;
        p.landlock = Some(text);
    }
    Ok(p)
}
