//! The spec runsc gets: the container's own spec, checked field by field for
//! what gVisor can honour, with paths made absolute and a cgroup path set.
//! A field gVisor cannot honour is an error naming it, unless the spec
//! allows degraded security, when it is removed and reported as a warning;
//! nothing is dropped silently. Also says what is enforced where.

use crate::error::{GvisorError, Result};
use crate::probe::Probe;
use crate::runsc::Network;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// The engine's Landlock policy annotation.
pub const LANDLOCK_ANNOTATION: &str = "org.nucleus.landlock";
/// The engine's in-memory root annotation, which runsc has no equivalent for.
pub const ROOTFS_TMPFS_ANNOTATION: &str = "org.nucleus.rootfs-tmpfs";

/// Mount types gVisor implements itself or serves through its gofer.
const MOUNT_TYPES: &[&str] = &[
    "bind", "none", "tmpfs", "proc", "sysfs", "devpts", "mqueue", "cgroup", "cgroup2",
];

/// Fields gVisor ignores or cannot apply, with the reason.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "/linux/uidMappings",
        "runsc does not map user namespaces from the spec",
    ),
    (
        "/linux/gidMappings",
        "runsc does not map user namespaces from the spec",
    ),
    ("/linux/devices", "gVisor does not expose host device nodes"),
    ("/linux/sysctl", "the sentry does not apply spec sysctls"),
    ("/linux/intelRdt", "runsc does not manage Intel RDT"),
    (
        "/linux/personality",
        "runsc does not set the execution domain",
    ),
    ("/linux/timeOffsets", "gVisor has no time namespace offsets"),
    (
        "/linux/memoryPolicy",
        "runsc does not set NUMA memory policy",
    ),
    (
        "/linux/mountLabel",
        "SELinux labels do not apply inside gVisor",
    ),
    (
        "/process/apparmorProfile",
        "AppArmor does not apply inside gVisor",
    ),
    (
        "/process/selinuxLabel",
        "SELinux labels do not apply inside gVisor",
    ),
    ("/process/ioPriority", "runsc does not set I/O priority"),
    (
        "/process/scheduler",
        "runsc does not set the scheduling policy",
    ),
    (
        "/process/execCPUAffinity",
        "runsc does not set CPU affinity",
    ),
];

/// Where one protection is enforced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enforcement {
    pub what: String,
    pub by: String,
}

/// The spec for runsc and the flags it implies.
#[derive(Debug, Clone)]
pub struct Translated {
    pub config: Value,
    pub network: Network,
    pub oci_seccomp: bool,
    pub cgroups_path: String,
    /// What was removed because degraded security was allowed.
    pub warnings: Vec<String>,
    pub enforcement: Vec<Enforcement>,
}

/// Translates `spec` (from `bundle`) for container `id`.
pub fn translate(
    spec: &oci_spec::runtime::Spec,
    id: &str,
    bundle: &Path,
    allow_degraded: bool,
    probe: &Probe,
) -> Result<Translated> {
    let mut v = serde_json::to_value(spec).map_err(|source| GvisorError::CorruptRecord {
        path: bundle.join("config.json"),
        source,
    })?;
    let mut warnings = Vec::new();
    let mut enforcement = Vec::new();
    let mut degrade = |v: &mut Value, field: &str, value: String, reason: &str| -> Result<()> {
        if !allow_degraded {
            return Err(GvisorError::Unsupported {
                field: json_field(field),
                value,
                reason: reason.to_string(),
            });
        }
        remove(v, field);
        warnings.push(format!(
            "{}: not applied under gVisor: {reason}",
            json_field(field)
        ));
        Ok(())
    };

    for (field, reason) in UNSUPPORTED {
        if let Some(x) = v.pointer(field).filter(|x| is_set(x)) {
            let value = short(x);
            degrade(&mut v, field, value, reason)?;
        }
    }
    if let Some(policy) = v
        .pointer("/annotations")
        .and_then(|a| a.get(LANDLOCK_ANNOTATION))
    {
        let value = short(policy);
        degrade(
            &mut v,
            &format!("/annotations/{LANDLOCK_ANNOTATION}"),
            value,
            "Landlock does not apply inside gVisor: the workload's file accesses never reach the host kernel's Landlock hooks",
        )?;
        enforcement.push(Enforcement {
            what: "Landlock".into(),
            by: "not applied (degraded security allowed)".into(),
        });
    }
    if v.pointer("/annotations")
        .and_then(|a| a.get(ROOTFS_TMPFS_ANNOTATION))
        .is_some_and(|x| x == "true")
    {
        return Err(GvisorError::Refused {
            field: format!("annotations.{ROOTFS_TMPFS_ANNOTATION}"),
            value: "true".into(),
            reason:
                "the in-memory root is a native-engine feature; runsc needs a real root directory"
                    .into(),
        });
    }

    // Hooks that run inside the container's namespaces have no host side under gVisor.
    for kind in ["createContainer", "startContainer"] {
        if let Some(h) = v.pointer(&format!("/hooks/{kind}")).filter(|x| is_set(x)) {
            return Err(GvisorError::Refused {
                field: format!("hooks.{kind}"),
                value: short(h),
                reason: "these hooks run inside the container's namespaces, which gVisor does not expose to the host".into(),
            });
        }
    }

    let network = namespaces(&mut v, &mut degrade)?;
    enforcement.push(Enforcement {
        what: "network".into(),
        by: match network {
            Network::None => "gVisor netstack, loopback only (--network=none)".into(),
            Network::Sandbox => {
                "gVisor netstack over the given network namespace (--network=sandbox)".into()
            }
            Network::Host => "the host's network stack (--network=host)".into(),
        },
    });

    check_mounts(&v)?;
    absolute_sources(&mut v, bundle);
    let oci_seccomp = seccomp(&mut v, probe, &mut degrade, &mut enforcement)?;

    let root = v
        .pointer("/root/path")
        .and_then(Value::as_str)
        .ok_or_else(|| GvisorError::Refused {
            field: "root.path".into(),
            value: String::new(),
            reason: "a root directory is required".into(),
        })?;
    let root = bundle.join(root);
    v["root"]["path"] = Value::String(root.to_string_lossy().into_owned());

    let cgroups_path = match v.pointer("/linux/cgroupsPath").and_then(Value::as_str) {
        Some(p) if p.contains(':') => {
            return Err(GvisorError::Refused {
                field: "linux.cgroupsPath".into(),
                value: p.into(),
                reason: "systemd cgroup paths are not supported by the gVisor backend".into(),
            })
        }
        // Relative paths start at the caller's own cgroup, for nucleus and
        // runsc alike (runsc inherits it), as the native engine places them.
        Some(p) if !p.is_empty() => p.to_string(),
        _ => format!("nucleus-{id}"),
    };
    if v.get("linux").is_none() {
        v["linux"] = serde_json::json!({});
    }
    v["linux"]["cgroupsPath"] = Value::String(cgroups_path.clone());

    enforcement.extend([
        Enforcement {
            what: "syscalls".into(),
            by: "gVisor's sentry (an application kernel); the host kernel sees only runsc's own seccomp-filtered calls".into(),
        },
        Enforcement {
            what: "capabilities, user, rlimits, noNewPrivileges".into(),
            by: "gVisor's sentry".into(),
        },
        Enforcement {
            what: "resources (memory, cpu, pids, blkio)".into(),
            by: format!("the host cgroup `{cgroups_path}` holding the runsc sandbox and gofer"),
        },
        Enforcement {
            what: "mounts, read-only root".into(),
            by: "gVisor's gofer (host files) and sentry (tmpfs, proc, sysfs)".into(),
        },
        Enforcement {
            what: "devices (linux.resources.devices)".into(),
            by: "gVisor's sentry, which has only its own emulated devices; not applied to the host cgroup, where runsc needs /dev/null".into(),
        },
        Enforcement {
            what: "maskedPaths, readonlyPaths".into(),
            by: "not needed: /proc and /sys inside gVisor are the sentry's own, not the host's".into(),
        },
    ]);
    Ok(Translated {
        config: v,
        network,
        oci_seccomp,
        cgroups_path,
        warnings,
        enforcement,
    })
}

/// Where runsc cannot hand the spec's network namespace to its netstack
/// (see [`crate::Probe::sandbox_network`]): with degraded security allowed,
/// the sandbox runs inside that namespace on the host kernel's network stack
/// (`--network=host` there); otherwise an error naming the field. Returns the
/// namespace for [`crate::Runsc::netns`].
pub fn network_without_netstack(
    t: &mut Translated,
    allow_degraded: bool,
    why: &str,
) -> Result<std::path::PathBuf> {
    let list = t
        .config
        .pointer_mut("/linux/namespaces")
        .and_then(Value::as_array_mut);
    let Some(list) = list else {
        return Err(GvisorError::Refused {
            field: "linux.namespaces".into(),
            value: String::new(),
            reason: "no network namespace to fall back to".into(),
        });
    };
    let i = list
        .iter()
        .position(|n| n.get("type").and_then(Value::as_str) == Some("network"))
        .unwrap_or(0);
    let path = list
        .get(i)
        .and_then(|n| n.get("path"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let reason = format!("runsc cannot hand this namespace's interfaces to gVisor's netstack here ({why}); with degraded security allowed the sandbox uses the host kernel's network stack inside it");
    if !allow_degraded {
        return Err(GvisorError::Unsupported {
            field: format!("linux.namespaces[{i}].path"),
            value: path,
            reason,
        });
    }
    list.remove(i);
    t.network = Network::Host;
    t.warnings
        .push(format!("linux.namespaces[{i}].path: {reason}"));
    for e in &mut t.enforcement {
        if e.what == "network" {
            e.by = format!("the host kernel's network stack inside `{path}` (--network=host there; degraded security allowed)");
        }
    }
    Ok(std::path::PathBuf::from(path))
}

type Degrade<'a> = dyn FnMut(&mut Value, &str, String, &str) -> Result<()> + 'a;

/// The `--network` mode from the spec's network namespace; refuses joining
/// other namespaces by path (gVisor makes its own).
fn namespaces(v: &mut Value, degrade: &mut Degrade<'_>) -> Result<Network> {
    let list: Vec<Value> = v
        .pointer("/linux/namespaces")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut network = Network::Host;
    for (i, ns) in list.iter().enumerate() {
        let kind = ns.get("type").and_then(Value::as_str).unwrap_or("");
        let path = ns
            .get("path")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty());
        match (kind, path) {
            ("network", Some(_)) => network = Network::Sandbox,
            ("network", None) => network = Network::None,
            ("user", _) | ("time", _) => degrade(
                v,
                &format!("/linux/namespaces/{i}"),
                kind.to_string(),
                "gVisor provides no such namespace from the spec",
            )?,
            (_, Some(p)) => degrade(
                v,
                &format!("/linux/namespaces/{i}/path"),
                p.to_string(),
                "gVisor makes its own namespaces and cannot join the host's",
            )?,
            _ => {}
        }
    }
    Ok(network)
}

fn check_mounts(v: &Value) -> Result<()> {
    let Some(mounts) = v.pointer("/mounts").and_then(Value::as_array) else {
        return Ok(());
    };
    for (i, m) in mounts.iter().enumerate() {
        let kind = m.get("type").and_then(Value::as_str).unwrap_or("none");
        let bind = m
            .get("options")
            .and_then(Value::as_array)
            .is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"));
        let source = m.get("source").and_then(Value::as_str).unwrap_or("");
        if bind && source.starts_with("/proc/self/fd/") {
            return Err(GvisorError::Refused {
                field: format!("mounts[{i}].source"),
                value: source.to_string(),
                reason: "a file descriptor held by nucleus (e.g. the in-memory secrets) is not visible to runsc's gofer".into(),
            });
        }
        if !bind && !MOUNT_TYPES.contains(&kind) {
            return Err(GvisorError::Refused {
                field: format!("mounts[{i}].type"),
                value: kind.to_string(),
                reason: format!(
                    "gVisor implements only {} and bind mounts",
                    MOUNT_TYPES.join(", ")
                ),
            });
        }
    }
    Ok(())
}

/// Bind sources relative to the bundle, made absolute: runsc reads the spec
/// from a bundle of its own.
fn absolute_sources(v: &mut Value, bundle: &Path) {
    let Some(mounts) = v.pointer_mut("/mounts").and_then(Value::as_array_mut) else {
        return;
    };
    for m in mounts {
        let is_bind = m
            .get("options")
            .and_then(Value::as_array)
            .is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"))
            || m.get("type").and_then(Value::as_str) == Some("bind");
        let rel = m
            .get("source")
            .and_then(Value::as_str)
            .filter(|s| !s.starts_with('/') && !s.is_empty())
            .map(str::to_string);
        if let (true, Some(rel)) = (is_bind, rel) {
            m["source"] = Value::String(bundle.join(rel).to_string_lossy().into_owned());
        }
    }
}

/// `linux.seccomp` goes to gVisor's sentry (`--oci-seccomp`) where runsc has
/// it; a notify listener has no equivalent there.
fn seccomp(
    v: &mut Value,
    probe: &Probe,
    degrade: &mut Degrade<'_>,
    enforcement: &mut Vec<Enforcement>,
) -> Result<bool> {
    let Some(sc) = v.pointer("/linux/seccomp").filter(|x| is_set(x)).cloned() else {
        return Ok(false);
    };
    if let Some(l) = sc.get("listenerPath").filter(|x| is_set(x)) {
        return Err(GvisorError::Refused {
            field: "linux.seccomp.listenerPath".into(),
            value: short(l),
            reason: "gVisor has no seccomp user notification".into(),
        });
    }
    let notify = |a: Option<&Value>| a.and_then(Value::as_str) == Some("SCMP_ACT_NOTIFY");
    if notify(sc.get("defaultAction"))
        || sc
            .get("syscalls")
            .and_then(Value::as_array)
            .is_some_and(|s| s.iter().any(|r| notify(r.get("action"))))
    {
        return Err(GvisorError::Refused {
            field: "linux.seccomp.syscalls[].action".into(),
            value: "SCMP_ACT_NOTIFY".into(),
            reason: "gVisor has no seccomp user notification".into(),
        });
    }
    if probe.has_flag("oci-seccomp") {
        enforcement.push(Enforcement {
            what: "linux.seccomp".into(),
            by: "gVisor's sentry, on the workload's syscalls (--oci-seccomp)".into(),
        });
        if allow_clone3(v) {
            enforcement.push(Enforcement {
                what: "linux.seccomp clone3".into(),
                by: "allowed inside gVisor: the profile's ENOSYS (so that glibc falls back to the filtered clone) is EPERM where runsc ignores errnoRet, which breaks every thread; namespaces clone3 makes there are the sentry's own".into(),
            });
        }
        return Ok(true);
    }
    degrade(
        v,
        "/linux/seccomp",
        "profile".into(),
        &format!(
            "`{}` cannot load OCI seccomp filters inside the sandbox",
            probe.version
        ),
    )?;
    enforcement.push(Enforcement {
        what: "linux.seccomp".into(),
        by: "not applied (degraded security allowed)".into(),
    });
    Ok(false)
}

/// Turns a `clone3` rule answering `ENOSYS` into `SCMP_ACT_ALLOW`; true if
/// there was one.
fn allow_clone3(v: &mut Value) -> bool {
    let Some(rules) = v
        .pointer_mut("/linux/seccomp/syscalls")
        .and_then(Value::as_array_mut)
    else {
        return false;
    };
    let mut changed = false;
    for r in rules.iter_mut() {
        let only_clone3 = r
            .get("names")
            .and_then(Value::as_array)
            .is_some_and(|n| n.len() == 1 && n[0] == "clone3");
        let enosys = r.get("action").and_then(Value::as_str) == Some("SCMP_ACT_ERRNO")
            && r.get("errnoRet").and_then(Value::as_u64) == Some(libc::ENOSYS as u64);
        if only_clone3 && enosys {
            r["action"] = Value::String("SCMP_ACT_ALLOW".into());
            if let Some(o) = r.as_object_mut() {
                o.remove("errnoRet");
            }
            changed = true;
        }
    }
    changed
}

fn is_set(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

fn short(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.len() > 60 {
        let cut = (0..=60).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        format!("{}...", &s[..cut])
    } else {
        s
    }
}

/// `/linux/uidMappings` as `linux.uidMappings`.
fn json_field(pointer: &str) -> String {
    let mut out = String::new();
    for part in pointer.trim_start_matches('/').split('/') {
        if part.bytes().all(|b| b.is_ascii_digit()) && !part.is_empty() {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

/// Removes the value at a JSON pointer (object key or array element).
fn remove(v: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    match v.pointer_mut(parent) {
        Some(Value::Object(o)) => {
            o.remove(last);
        }
        Some(Value::Array(a)) => {
            if let Ok(i) = last.parse::<usize>() {
                if i < a.len() {
                    a.remove(i);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::BinaryKey;

    fn probe(flags: &[&str]) -> Probe {
        Probe {
            key: BinaryKey {
                path: "/usr/bin/runsc".into(),
                ino: 0,
                size: 0,
                mtime_ns: 0,
            },
            version: "runsc version 0.0~20221219.0".into(),
            platforms: vec!["ptrace".into()],
            flags: flags.iter().map(|s| s.to_string()).collect(),
            trials: Default::default(),
        }
    }

    fn spec(extra: Value) -> oci_spec::runtime::Spec {
        let mut v = serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"args": ["/bin/true"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "linux": {"namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "mount"}]}
        });
        merge(&mut v, extra);
        serde_json::from_value(v).unwrap()
    }

    fn merge(into: &mut Value, from: Value) {
        match (into, from) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (slot, v) => *slot = v,
        }
    }

    fn go(extra: Value, degraded: bool) -> Result<Translated> {
        translate(
            &spec(extra),
            "c1",
            Path::new("/b"),
            degraded,
            &probe(&["oci-seccomp"]),
        )
    }

    #[test]
    fn paths_and_cgroup_are_filled_in() {
        let t = go(serde_json::json!({}), false).unwrap();
        assert_eq!(t.config["root"]["path"], "/b/rootfs");
        assert_eq!(t.config["linux"]["cgroupsPath"], "nucleus-c1");
        assert_eq!(t.network, Network::None);
        let t = go(
            serde_json::json!({"linux": {"cgroupsPath": "default/c1"}}),
            false,
        )
        .unwrap();
        assert_eq!(t.cgroups_path, "default/c1", "relative stays relative");
    }

    #[test]
    fn relative_bind_sources_become_absolute() {
        let t = go(
            serde_json::json!({"mounts": [
                {"destination": "/etc/hosts", "type": "bind", "source": "etc/hosts", "options": ["rbind"]},
                {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}
            ]}),
            false,
        )
        .unwrap();
        assert_eq!(t.config["mounts"][0]["source"], "/b/etc/hosts");
        assert_eq!(t.config["mounts"][1]["source"], "tmpfs");
    }

    #[test]
    fn network_mode_follows_the_namespace() {
        let t = go(
            serde_json::json!({"linux": {"namespaces": [{"type": "network", "path": "/run/netns/x"}]}}),
            false,
        )
        .unwrap();
        assert_eq!(t.network, Network::Sandbox);
        let t = go(
            serde_json::json!({"linux": {"namespaces": [{"type": "pid"}]}}),
            false,
        )
        .unwrap();
        assert_eq!(t.network, Network::Host);
    }

    #[test]
    fn landlock_is_refused_by_name_unless_degraded() {
        let extra = serde_json::json!({"annotations": {LANDLOCK_ANNOTATION: "min_abi = 1"}});
        let err = go(extra.clone(), false).unwrap_err().to_string();
        assert!(
            err.starts_with("annotations.org.nucleus.landlock: gVisor cannot honour it"),
            "{err}"
        );
        let t = go(extra, true).unwrap();
        assert!(t.config["annotations"].get(LANDLOCK_ANNOTATION).is_none());
        assert_eq!(t.warnings.len(), 1);
    }

    #[test]
    fn unsupported_fields_are_named() {
        let err = go(
            serde_json::json!({"linux": {"sysctl": {"net.ipv4.ip_forward": "1"}}}),
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("linux.sysctl: gVisor cannot honour it"),
            "{err}"
        );
        let err = go(
            serde_json::json!({"linux": {"namespaces": [{"type": "ipc", "path": "/proc/1/ns/ipc"}]}}),
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("linux.namespaces[0].path:"), "{err}");
        let err = go(serde_json::json!({"mounts": [{"destination": "/x", "type": "ext4", "source": "/dev/sda"}]}), false)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("mounts[0].type: gVisor implements only"),
            "{err}"
        );
    }

    #[test]
    fn seccomp_goes_to_the_sentry_or_is_refused() {
        let extra = serde_json::json!({"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW"}}});
        assert!(go(extra.clone(), false).unwrap().oci_seccomp);
        // clone3's ENOSYS (EPERM where runsc ignores errnoRet) becomes allowed, and says so.
        let c3 = serde_json::json!({"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}}});
        let t = go(c3, false).unwrap();
        assert_eq!(
            t.config.pointer("/linux/seccomp/syscalls/0/action"),
            Some(&serde_json::json!("SCMP_ACT_ALLOW"))
        );
        assert!(t
            .enforcement
            .iter()
            .any(|e| e.what == "linux.seccomp clone3"));
        let err = translate(
            &spec(extra.clone()),
            "c1",
            Path::new("/b"),
            false,
            &probe(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("linux.seccomp: gVisor cannot honour it"),
            "{err}"
        );
        let notify =
            serde_json::json!({"linux": {"seccomp": {"defaultAction": "SCMP_ACT_NOTIFY"}}});
        assert!(go(notify, true)
            .unwrap_err()
            .to_string()
            .contains("no seccomp user notification"));
    }

    #[test]
    fn hooks_inside_the_container_are_refused() {
        let err = go(
            serde_json::json!({"hooks": {"startContainer": [{"path": "/bin/true"}]}}),
            true,
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("hooks.startContainer:"), "{err}");
    }
}
