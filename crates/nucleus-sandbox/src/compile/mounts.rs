//! The container's mounts: the kernel filesystems, agent mode's
//! host-derived system directories, the generated `/etc` files, volumes
//! and tmpfs; and which container paths end up writable or readable, for
//! the default Landlock ruleset.

use super::process::User;
use super::Inputs;
use crate::agent_root::{self, Symlink};
use crate::error::Result;
use crate::spec::{ContextMode, SandboxSpec};
use serde_json::{json, Value};
use std::path::PathBuf;

/// What `plan` produces.
#[derive(Debug, Default)]
pub(super) struct MountPlan {
    pub mounts: Vec<Value>,
    pub files: Vec<(String, String)>,
    pub symlinks: Vec<Symlink>,
    pub dirs: Vec<String>,
    /// Container paths the workload may write (volumes, tmpfs, a copied context).
    pub writable: Vec<PathBuf>,
    /// Container paths it may only read (ro volumes, a bound context, secrets outside /run and /tmp).
    pub readable: Vec<PathBuf>,
}

pub(super) fn plan(
    s: &SandboxSpec,
    inp: &Inputs<'_>,
    user: &User,
    hostname: &str,
    host_network: bool,
) -> Result<MountPlan> {
    let agent = s.rootfs.is_host_derived();
    let mut p = MountPlan {
        mounts: agent_root::base_mounts(agent || s.read_only),
        ..MountPlan::default()
    };
    // Generated /etc files live in the bundle and are bound read-only over
    // the root, which in agent mode is a shared skeleton (see bundle.rs).
    let resolv = if host_network {
        inp.host_resolv.to_string()
    } else {
        String::new()
    };
    p.files
        .push(("etc/hosts".to_string(), agent_root::hosts_file(hostname)));
    p.files
        .push(("etc/hostname".to_string(), format!("{hostname}\n")));
    p.files.push(("etc/resolv.conf".to_string(), resolv));
    let mut generated = vec!["hosts", "hostname", "resolv.conf"];
    if agent {
        let (sys, links) = agent_root::system_mounts(inp.host);
        p.mounts.extend(sys);
        p.symlinks = links;
        p.files.push(("etc/passwd".into(), user.passwd.clone()));
        p.files.push(("etc/group".into(), user.group.clone()));
        generated.extend(["passwd", "group"]);
        p.dirs.push("root".to_string());
        p.dirs.push("etc".to_string());
    }
    // A given rootfs keeps its own passwd; only the network files are ours.
    for name in generated {
        p.mounts.push(json!({"destination": format!("/etc/{name}"), "type": "bind", "source": format!("etc/{name}"), "options": ["rbind", "ro", "nosuid", "nodev"]}));
    }
    for v in &s.volumes {
        let mut options = vec!["rbind", "nosuid", "nodev"];
        if v.read_only {
            options.push("ro");
            p.readable.push(PathBuf::from(&v.destination));
        } else {
            p.writable.push(PathBuf::from(&v.destination));
        }
        p.mounts.push(json!({"destination": v.destination, "type": "bind", "source": v.source, "options": options}));
    }
    for t in &s.tmpfs {
        let mut options = vec![
            "nosuid".to_string(),
            "nodev".to_string(),
            "mode=1777".to_string(),
        ];
        if let Some(size) = t.size {
            options.push(format!("size={size}"));
        }
        p.writable.push(PathBuf::from(&t.destination));
        p.mounts.push(json!({"destination": t.destination, "type": "tmpfs", "source": "tmpfs", "options": options}));
    }
    match s.context.as_ref().map(|c| c.mode) {
        Some(ContextMode::Copy) => p.writable.push("/context".into()),
        Some(ContextMode::Bind) => p.readable.push("/context".into()),
        None => {}
    }
    for secret in &s.secrets {
        if !secret.destination.starts_with("/run/") && !secret.destination.starts_with("/tmp/") {
            p.readable.push(PathBuf::from(&secret.destination));
        }
    }
    Ok(p)
}
