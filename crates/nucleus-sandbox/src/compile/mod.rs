//! `SandboxSpec` → an OCI spec plus the few files the bundle needs.
//! Pure: everything read from the host (the system layout, passwd and group,
//! policy files, device numbers) comes in through `Inputs`, so the
//! translation is table-tested without root. The parts: `process` (user,
//! env, command), `mounts` (root, volumes, tmpfs, generated `/etc`),
//! `resources` (cgroup limits, rlimits), `security` (capabilities, seccomp,
//! Landlock, annotations).

mod mounts;
mod process;
mod resources;
mod security;

use crate::agent_root::{HostLayout, Symlink, MASKED_PATHS, READONLY_PATHS};
use crate::error::{Field, Result, SandboxError};
use crate::rootfs::{ImageConfig, RootfsSource};
use crate::spec::{ContextMode, Network, SandboxSpec, Secret};
use crate::userns::{self, Caller, IdMap, UsernsMode};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use security::DEGRADED_ANNOTATION;

/// Policy files, already read (and checked against their pins) by `host::probe`.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    /// `linux.seccomp` to use; `None` means the agent default.
    pub seccomp: Option<Value>,
    /// `process.capabilities` from the caps policy.
    pub caps: Option<Value>,
    /// Landlock policy TOML.
    pub landlock: Option<String>,
}

/// An image's root, made ready by the image store, and its config.
#[derive(Debug, Clone, Copy)]
pub struct ImageRoot<'a> {
    /// The directory to use as the root (e.g. a mounted overlay).
    pub rootfs: &'a Path,
    pub config: &'a ImageConfig,
    /// Overlay mount data the container mounts on `rootfs` itself.
    pub overlay: Option<&'a str>,
}

/// Everything the translation reads besides the spec.
pub struct Inputs<'a> {
    pub id: &'a str,
    /// Agent mode's host layout (unused for other roots).
    pub host: &'a HostLayout,
    /// `/etc/passwd` and `/etc/group` of the host (agent mode) or the rootfs.
    pub passwd: &'a str,
    pub group: &'a str,
    /// The host's resolv.conf (copied for host networking).
    pub host_resolv: &'a str,
    /// Block device path → (major, minor), for io limits.
    pub device: &'a dyn Fn(&str) -> Option<(i64, i64)>,
    /// `linux.seccomp` of agent mode, used unless a profile is given.
    pub default_seccomp: &'a Value,
    pub policies: &'a Policies,
    /// Set for `RootfsSource::Image`.
    pub image: Option<ImageRoot<'a>>,
    /// The caller's ids and ranges (read when the spec asks for a user namespace).
    pub caller: Option<&'a Caller>,
    /// Whether the container gets a cgroup (false: rootless, none writable).
    pub cgroup: bool,
    /// The caller's hard RLIMIT_NPROC, the ceiling of the pids fallback.
    pub nproc_hard: u64,
}

impl std::fmt::Debug for Inputs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inputs")
            .field("id", &self.id)
            .field("host", &self.host)
            .field("image", &self.image)
            .finish_non_exhaustive()
    }
}

/// The bundle to write: the spec, plus what `bundle` must make on disk.
#[derive(Debug, Clone)]
pub struct Plan {
    pub spec: Value,
    /// Agent mode: the root is a shared skeleton, made by `bundle`.
    pub generated_root: bool,
    /// Files to write, relative to the bundle: (path, contents).
    pub files: Vec<(String, String)>,
    /// Symlinks to create, relative to the bundle's rootfs.
    pub symlinks: Vec<Symlink>,
    /// Empty directories to create, relative to the bundle's rootfs.
    pub dirs: Vec<String>,
    pub secrets: Vec<Secret>,
    pub context: Option<(PathBuf, ContextMode)>,
    pub uid: u32,
    pub gid: u32,
    pub timeout: Option<Duration>,
}

/// Translates the spec (validated first). The context and secret mounts
/// are added by `bundle`, whose sources exist only once it is written.
pub fn compile(s: &SandboxSpec, inp: &Inputs<'_>) -> Result<Plan> {
    s.validate()?;
    let maps = id_maps(s, inp)?;
    // keep-id runs the workload as the caller unless told otherwise.
    let keep_id_user;
    let s = match (s.userns.mode, &s.user, inp.caller) {
        (UsernsMode::KeepId, None, Some(c)) => {
            keep_id_user = SandboxSpec {
                user: Some(format!("{}:{}", c.uid, c.gid)),
                ..s.clone()
            };
            &keep_id_user
        }
        _ => s,
    };
    let agent = s.rootfs.is_host_derived();
    let image = match (&s.rootfs, inp.image) {
        (RootfsSource::Image(_), Some(img)) => Some(img),
        (RootfsSource::Image(r), None) => {
            return Err(SandboxError::invalid(
                Field::Image,
                r,
                "images are not supported yet; give --rootfs or put the command after `--`",
            ))
        }
        _ => None,
    };
    let config = image.map(|i| i.config);
    let args = process::command(s, config);
    let hostname = match &s.hostname {
        Some(h) => h.clone(),
        None => inp.id.chars().take(12).collect(),
    };
    let mut user = process::resolve_user(s, config, inp)?;
    if let Some((uids, gids)) = &maps {
        check_user_mapped(s, &user, uids, gids)?;
    }
    let cwd = s
        .workdir
        .clone()
        .or_else(|| config.and_then(|c| c.working_dir.clone()))
        .unwrap_or_else(|| "/".to_string());
    let host_network = s.network == Network::Host;
    let context = s.context.as_ref().map(|c| (c.source.clone(), c.mode));
    let env = process::environment(s, config, &hostname, &user);

    let mut m = mounts::plan(s, inp, &user, &hostname, host_network)?;
    if let Some((_, gids)) = &maps {
        // devpts refuses a `gid=` that the namespace does not map.
        for mount in m.mounts.iter_mut().filter(|x| x["type"] == "devpts") {
            if let Some(opts) = mount["options"].as_array_mut() {
                opts.retain(|o| {
                    o.as_str()
                        .and_then(|o| o.strip_prefix("gid="))
                        .and_then(|g| g.parse::<u32>().ok())
                        .is_none_or(|g| userns::is_mapped(gids, g))
                });
            }
        }
    }
    let landlock = security::landlock_text(s, inp, agent, &m.writable, &m.readable)?;
    let mut annotations = security::annotations(s, landlock);
    if let Some(data) = image.and_then(|i| i.overlay) {
        annotations.insert(
            nucleus_engine::spec::ROOTFS_OVERLAY_ANNOTATION.into(),
            json!(data),
        );
    }
    if let Some(c) = config {
        for (k, v) in &c.labels {
            annotations.entry(k.clone()).or_insert_with(|| json!(v));
        }
    }

    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "mount"}),
        json!({"type": "uts"}),
        json!({"type": "ipc"}),
        json!({"type": "cgroup"}),
    ];
    if !host_network {
        namespaces.push(json!({"type": "network"}));
    }
    if maps.is_some() {
        namespaces.insert(0, json!({"type": "user"}));
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "resources": resources::linux_resources(s, inp)?,
        "maskedPaths": MASKED_PATHS,
        "readonlyPaths": READONLY_PATHS,
    });
    // Assigned, not inside json!: the macro would re-serialize the whole
    // profile (hundreds of rules) into a new Value, on the start path.
    linux["seccomp"] = inp
        .policies
        .seccomp
        .clone()
        .unwrap_or_else(|| inp.default_seccomp.clone());
    if host_network {
        // The host's /sys belongs to the host's network namespace: not ours to mount.
        m.mounts.retain(|m| m["destination"] != "/sys");
        linux["maskedPaths"] = json!(MASKED_PATHS
            .iter()
            .filter(|p| !p.starts_with("/sys"))
            .collect::<Vec<_>>());
    }
    let mut process = json!({
        "terminal": s.tty,
        "user": { "uid": user.uid, "gid": user.gid },
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": security::capabilities(s, inp)?,
        "noNewPrivileges": true,
    });
    if !user.additional.is_empty() {
        process["user"]["additionalGids"] = json!(user.additional);
    }
    let rlimits = resources::rlimits(s, inp);
    if !rlimits.is_empty() {
        process["rlimits"] = json!(rlimits);
    }
    let root = match (&s.rootfs, image) {
        (_, Some(img)) => json!({"path": img.rootfs, "readonly": s.read_only}),
        (RootfsSource::Directory(dir), _) => json!({"path": dir, "readonly": s.read_only}),
        _ => json!({"path": "rootfs", "readonly": true}),
    };
    let mut spec = json!({
        "ociVersion": nucleus_engine::spec::OCI_VERSION,
        "root": root,
        "hostname": hostname,
    });
    spec["process"] = process;
    spec["mounts"] = Value::Array(m.mounts);
    // The engine names a default cgroup after the id, as runc does; keep a
    // `nucleus-` prefix so these 64-hex-digit ids are findable on the host.
    linux["cgroupsPath"] = json!(crate::parse::cgroups_path(
        s.resources.cgroup_parent.as_deref(),
        inp.id
    ));
    if let Some((uids, gids)) = &maps {
        linux["uidMappings"] = oci_maps(uids);
        linux["gidMappings"] = oci_maps(gids);
        // Files the runtime makes for the workload belong to its host ids.
        user.uid = host_id(uids, user.uid);
        user.gid = host_id(gids, user.gid);
    }
    spec["linux"] = linux;
    spec["annotations"] = Value::Object(annotations);
    Ok(Plan {
        spec,
        generated_root: agent,
        files: m.files,
        symlinks: m.symlinks,
        dirs: m.dirs,
        secrets: s.secrets.clone(),
        context,
        uid: user.uid,
        gid: user.gid,
        timeout: s.timeout(),
    })
}

/// The uid and gid maps when the spec asks for a user namespace.
fn id_maps(s: &SandboxSpec, inp: &Inputs<'_>) -> Result<Option<(Vec<IdMap>, Vec<IdMap>)>> {
    if s.userns.is_host() {
        return Ok(None);
    }
    let Some(caller) = inp.caller else {
        return Err(SandboxError::invalid(
            Field::Userns,
            format!("{:?}", s.userns.mode),
            "the caller's ids were not read",
        ));
    };
    let (u, g) = userns::id_maps(&s.userns, caller, caller.uid != 0)?;
    if caller.sub_uids.is_empty() && s.userns.uid_map.is_empty() {
        tracing::debug!(
            user = caller.name,
            uid = caller.uid,
            "no subordinate id range in /etc/subuid: a single-id map (container 0 is you)"
        );
    }
    Ok(Some((u, g)))
}

/// Rootless, image layers are unpacked for the default map (container 0
/// is the caller, 1.. its subordinate ids, `nucleus_image::rootless`).
/// Under any other map (`keep-id`, `nomap`, `--uidmap/--gidmap` that
/// differ) the image's files would show other owners, so the run asks the
/// store for layer copies with owners for its maps: these maps, with the
/// field that asked for them. `None` as root, without a user namespace or
/// with the default map.
pub fn image_id_maps(s: &SandboxSpec, caller: &Caller) -> Result<Option<ImageMaps>> {
    if s.userns.is_host() || caller.uid == 0 {
        return Ok(None);
    }
    let (uids, gids) = userns::id_maps(&s.userns, caller, true)?;
    let private = userns::UserNamespace {
        mode: UsernsMode::Private,
        ..Default::default()
    };
    let (du, dg) = userns::id_maps(&private, caller, true)?;
    if du == uids && dg == gids {
        return Ok(None);
    }
    let (field, value) = match (s.userns.uid_map.first(), s.userns.gid_map.first()) {
        (Some(m), _) => (Field::UidMap, m.to_string()),
        (None, Some(m)) => (Field::GidMap, m.to_string()),
        (None, None) => (Field::Userns, s.userns.mode.as_flag().to_string()),
    };
    // The container's root mounts the overlay and binds the bundle's files
    // from directories only the user may enter: the user must be mapped.
    let own = |maps: &[IdMap], id: u32| {
        maps.iter()
            .any(|m| id >= m.host && u64::from(id) < u64::from(m.host) + u64::from(m.size))
    };
    if !own(&uids, caller.uid) || !own(&gids, caller.gid) {
        return Err(SandboxError::invalid(
            field,
            value,
            "not supported with an image when rootless: the map leaves out your own id (HOST 0), \
             so the container could not reach the image's layers, which are under directories \
             only you may enter; map HOST 0 too (e.g. --uidmap 0:1:N --uidmap N:0:1) or use \
             --userns keep-id",
        ));
    }
    Ok(Some(ImageMaps {
        uids,
        gids,
        field,
        value,
    }))
}

/// A rootless run's id maps that differ from the image store's default.
#[derive(Debug, Clone)]
pub struct ImageMaps {
    pub uids: Vec<IdMap>,
    pub gids: Vec<IdMap>,
    /// The field (and its value) that asked for them, for errors.
    pub field: Field,
    pub value: String,
}

/// `-u USER` (and its groups) must exist in the container's namespace.
fn check_user_mapped(
    s: &SandboxSpec,
    user: &process::User,
    uids: &[IdMap],
    gids: &[IdMap],
) -> Result<()> {
    let shown = s.user.clone().unwrap_or_else(|| user.uid.to_string());
    let ranges = |m: &[IdMap]| {
        m.iter()
            .map(|m| {
                format!(
                    "{}-{}",
                    m.container,
                    u64::from(m.container) + u64::from(m.size) - 1
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !userns::is_mapped(uids, user.uid) {
        return Err(SandboxError::invalid(
            Field::User,
            shown,
            format!(
                "uid {} is not mapped in the user namespace (mapped: {}); add a subordinate range in /etc/subuid or pick a mapped uid",
                user.uid,
                ranges(uids)
            ),
        ));
    }
    for g in std::iter::once(&user.gid).chain(&user.additional) {
        if !userns::is_mapped(gids, *g) {
            return Err(SandboxError::invalid(
                if *g == user.gid { Field::User } else { Field::GroupAdd },
                shown,
                format!(
                    "gid {g} is not mapped in the user namespace (mapped: {}); add a subordinate range in /etc/subgid or pick a mapped gid",
                    ranges(gids)
                ),
            ));
        }
    }
    Ok(())
}

fn oci_maps(maps: &[IdMap]) -> Value {
    json!(maps
        .iter()
        .map(|m| json!({"containerID": m.container, "hostID": m.host, "size": m.size}))
        .collect::<Vec<_>>())
}

/// The host id container id `id` maps to (`id` itself if unmapped).
fn host_id(maps: &[IdMap], id: u32) -> u32 {
    maps.iter()
        .find(|m| userns::is_mapped(std::slice::from_ref(m), id))
        .map_or(id, |m| m.host + (id - m.container))
}

#[cfg(test)]
pub(crate) mod tests;
