//! Loading and validating `config.json`. Errors name the JSON field and the
//! offending value. Nothing here touches the kernel.

use crate::error::{EngineError, Result};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Annotation that turns unapplicable protections into warnings (opt-in).
pub const ALLOW_DEGRADED_ANNOTATION: &str = "org.nucleus.allow-degraded-security";

/// Annotation asking for the rootfs to be a private tmpfs seeded with the
/// rootfs directory's skeleton (front ends that share one skeleton use it).
pub const ROOTFS_TMPFS_ANNOTATION: &str = "org.nucleus.rootfs-tmpfs";

/// Annotation carrying overlayfs mount data for the init to mount on
/// `root.path` in the container's own mount namespace (an ordinary user's
/// image root: mountable only inside its user namespace).
pub const ROOTFS_OVERLAY_ANNOTATION: &str = "org.nucleus.rootfs-overlay";

/// The overlay mount data of [`ROOTFS_OVERLAY_ANNOTATION`], ready for the
/// init (prepared before clone, so the child only makes the syscall).
pub fn rootfs_overlay(spec: &Spec) -> Result<Option<std::ffi::CString>> {
    let Some(data) = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(ROOTFS_OVERLAY_ANNOTATION))
    else {
        return Ok(None);
    };
    std::ffi::CString::new(data.as_str())
        .map(Some)
        .map_err(|_| {
            EngineError::invalid(
                format!("annotations.{ROOTFS_OVERLAY_ANNOTATION}"),
                data,
                "contains a NUL byte",
            )
        })
}

/// Whether the spec asks for an in-memory root (see [`ROOTFS_TMPFS_ANNOTATION`]).
pub fn wants_rootfs_tmpfs(spec: &Spec) -> bool {
    spec.annotations()
        .as_ref()
        .and_then(|a| a.get(ROOTFS_TMPFS_ANNOTATION))
        .is_some_and(|v| v == "true")
}

/// Whether the spec opts in to degraded security.
pub fn allows_degraded(spec: &Spec) -> bool {
    spec.annotations()
        .as_ref()
        .and_then(|a| a.get(ALLOW_DEGRADED_ANNOTATION))
        .is_some_and(|v| v == "true")
}

/// The Landlock policy the spec carries, checked against the kernel.
/// Fails closed unless the spec allows degraded security.
pub fn landlock_policy(spec: &Spec) -> Result<Option<crate::security::landlock::LandlockPolicy>> {
    let Some(policy) =
        crate::security::landlock::policy_from_annotations(spec.annotations().as_ref())?
    else {
        return Ok(None);
    };
    for warning in policy.check_supported(allows_degraded(spec))? {
        tracing::warn!("{warning}");
    }
    Ok(Some(policy))
}

/// The major version of the runtime spec this engine implements.
pub const SUPPORTED_MAJOR: u64 = 1;
/// The `ociVersion` nucleus reports and writes.
pub const OCI_VERSION: &str = "1.2.0";

/// Reads `<bundle>/config.json`.
pub fn load(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let text = std::fs::read(&path).map_err(|source| EngineError::ReadSpec {
        path: path.clone(),
        source,
    })?;
    match serde_json::from_slice::<Spec>(&text) {
        Ok(spec) => Ok(spec),
        Err(source) => {
            // serde names only a line and column; for the seccomp profile,
            // name the JSON field instead when that is where the error is.
            if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&text) {
                if let Some(profile) = value.get("linux").and_then(|l| l.get("seccomp")) {
                    crate::security::seccomp::parse_profile_value(
                        profile.clone(),
                        "linux.seccomp",
                    )?;
                }
            }
            Err(EngineError::ParseSpec { path, source })
        }
    }
}

/// Checks `ociVersion` is a 1.x release.
pub fn check_version(version: &str) -> Result<()> {
    let major = version
        .split('.')
        .next()
        .and_then(|m| m.parse::<u64>().ok());
    let well_formed = version.split('.').count() >= 2;
    match major {
        Some(SUPPORTED_MAJOR) if well_formed => Ok(()),
        _ => Err(EngineError::invalid(
            "ociVersion",
            version,
            format!("unsupported runtime spec version; nucleus supports {SUPPORTED_MAJOR}.x"),
        )),
    }
}

/// Resolves `root.path` against the bundle and checks it is a directory.
pub fn rootfs_path(spec: &Spec, bundle: &Path) -> Result<PathBuf> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| EngineError::invalid("root", "null", "root is required"))?;
    let path = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    match std::fs::metadata(&path) {
        Ok(m) if m.is_dir() => Ok(path),
        Ok(_) => Err(EngineError::invalid(
            "root.path",
            path.display().to_string(),
            "not a directory",
        )),
        Err(e) => Err(EngineError::invalid(
            "root.path",
            path.display().to_string(),
            e.to_string(),
        )),
    }
}

/// Cross-field checks done before any kernel object is created.
pub fn validate(spec: &Spec, needs_process: bool) -> Result<()> {
    check_version(spec.version())?;
    if needs_process {
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| EngineError::invalid("process", "null", "process is required"))?;
        let args = process.args().as_deref().unwrap_or_default();
        if args.is_empty() || args[0].is_empty() {
            return Err(EngineError::invalid(
                "process.args",
                format!("{args:?}"),
                "must name a program",
            ));
        }
        if !process.cwd().is_absolute() {
            return Err(EngineError::invalid(
                "process.cwd",
                process.cwd().display().to_string(),
                "must be an absolute path",
            ));
        }
        for (i, var) in process
            .env()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            if !var.contains('=') || var.contains('\0') {
                return Err(EngineError::invalid(
                    format!("process.env[{i}]"),
                    var,
                    "must be KEY=VALUE",
                ));
            }
        }
    }
    let linux = spec.linux().as_ref();
    let namespaces = linux
        .and_then(|l| l.namespaces().as_ref())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut seen = HashMap::new();
    for (i, ns) in namespaces.iter().enumerate() {
        // Tools add `cgroup` to runc's default spec without looking: an
        // identical repeat is harmless, a conflicting one is refused.
        if seen
            .insert(ns.typ(), ns.path())
            .is_some_and(|earlier| earlier != ns.path())
        {
            return Err(EngineError::invalid(
                format!("linux.namespaces[{i}].type"),
                ns.typ().to_string(),
                "namespace listed twice with different paths",
            ));
        }
        if let Some(path) = ns.path() {
            if !path.is_absolute() {
                return Err(EngineError::invalid(
                    format!("linux.namespaces[{i}].path"),
                    path.display().to_string(),
                    "must be absolute",
                ));
            }
        }
    }
    let has = |t: LinuxNamespaceType| namespaces.iter().any(|n| n.typ() == t);
    if spec.hostname().as_deref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        return Err(EngineError::invalid(
            "hostname",
            spec.hostname().clone().unwrap_or_default(),
            "setting a hostname needs a uts namespace",
        ));
    }
    if spec.domainname().as_deref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts)
    {
        return Err(EngineError::invalid(
            "domainname",
            spec.domainname().clone().unwrap_or_default(),
            "setting a domainname needs a uts namespace",
        ));
    }
    if let Some(linux) = linux {
        let new_userns = namespaces
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none());
        let any_userns = has(LinuxNamespaceType::User);
        let has_maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty());
        if new_userns && !has_maps {
            return Err(EngineError::invalid(
                "linux.uidMappings",
                "[]",
                "a new user namespace needs uidMappings and gidMappings",
            ));
        }
        // With a joined namespace (`path`), maps are what it must have:
        // the launch compares them with the init's.
        if !any_userns && has_maps {
            return Err(EngineError::invalid(
                "linux.uidMappings",
                "[...]",
                "uidMappings need a user namespace",
            ));
        }
        for (key, _) in linux.sysctl().iter().flatten() {
            if key.is_empty()
                || key.contains("..")
                || key.contains('/') && key.contains('.')
                || key.starts_with(['.', '/'])
            {
                return Err(EngineError::invalid(
                    format!("linux.sysctl.{key}"),
                    key,
                    "invalid sysctl name",
                ));
            }
        }
    }
    check_unsupported(spec)?;
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let dest = m.destination();
        if dest.as_os_str().is_empty() {
            return Err(EngineError::invalid(
                format!("mounts[{i}].destination"),
                "",
                "must not be empty",
            ));
        }
        crate::mount_options::parse(m.options().as_deref().unwrap_or_default()).map_err(|opt| {
            EngineError::invalid(
                format!("mounts[{i}].options"),
                opt,
                "unsupported mount option",
            )
        })?;
    }
    Ok(())
}

/// Fields nucleus does not implement are refused by name rather than
/// silently ignored. Security labels fail closed unless the spec opts in to
/// degraded security, in which case they are ignored with a warning.
fn check_unsupported(spec: &Spec) -> Result<()> {
    let unsupported = |field: &str, value: String| {
        Err(EngineError::invalid(
            field,
            value,
            "not supported by nucleus; remove it",
        ))
    };
    if let Some(p) = spec.process() {
        for (field, label) in [
            ("process.apparmorProfile", p.apparmor_profile()),
            ("process.selinuxLabel", p.selinux_label()),
        ] {
            if let Some(label) = label.as_deref().filter(|l| !l.is_empty()) {
                if !allows_degraded(spec) {
                    return Err(EngineError::invalid(field, label, "this host's nucleus cannot apply AppArmor or SELinux labels (set org.nucleus.allow-degraded-security=true to run without it)"));
                }
                tracing::warn!(
                    field,
                    label,
                    "security label ignored (degraded security allowed)"
                );
            }
        }
    }
    if let Some(l) = spec.linux() {
        if let Some(label) = l.mount_label().as_deref().filter(|l| !l.is_empty()) {
            if !allows_degraded(spec) {
                return Err(EngineError::invalid("linux.mountLabel", label, "this host's nucleus cannot apply SELinux labels (set org.nucleus.allow-degraded-security=true to run without it)"));
            }
            tracing::warn!(
                label,
                "linux.mountLabel ignored (degraded security allowed)"
            );
        }
        if l.intel_rdt().is_some() {
            return unsupported("linux.intelRdt", format!("{:?}", l.intel_rdt()));
        }
        if l.net_devices().as_ref().is_some_and(|d| !d.is_empty()) {
            return unsupported(
                "linux.netDevices",
                format!(
                    "{:?}",
                    l.net_devices()
                        .as_ref()
                        .map(|d| d.keys().collect::<Vec<_>>())
                ),
            );
        }
    }
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let has_maps = m.uid_mappings().as_ref().is_some_and(|v| !v.is_empty())
            || m.gid_mappings().as_ref().is_some_and(|v| !v.is_empty());
        let opts = m.options().as_deref().unwrap_or_default();
        let idmap = opts.iter().any(|o| o == "idmap" || o == "ridmap");
        let bind =
            m.typ().as_deref() == Some("bind") || opts.iter().any(|o| o == "bind" || o == "rbind");
        match (idmap, has_maps) {
            (false, true) => {
                return Err(EngineError::invalid(
                    format!("mounts[{i}].uidMappings"),
                    m.destination().display().to_string(),
                    "mount id mappings need the `idmap` or `ridmap` option",
                ))
            }
            (true, false) => {
                return Err(EngineError::invalid(
                    format!("mounts[{i}].options"),
                    "idmap",
                    "an id-mapped mount needs uidMappings and gidMappings",
                ))
            }
            (true, true) if !bind => {
                return Err(EngineError::invalid(
                    format!("mounts[{i}].options"),
                    "idmap",
                    "only bind mounts can be id-mapped",
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_gate() {
        assert!(check_version("1.0.2").is_ok());
        assert!(check_version("1.2.0").is_ok());
        assert!(check_version("1.0.2-dev").is_ok());
        let err = check_version("2.0.0").unwrap_err().to_string();
        assert!(
            err.contains("ociVersion") && err.contains("`2.0.0`"),
            "{err}"
        );
        assert!(check_version("0.1.0").is_err());
        assert!(check_version("").is_err());
        assert!(check_version("1").is_err());
    }

    #[test]
    fn unsupported_fields_are_named() {
        let mut spec = Spec::default();
        spec.set_version("1.0.2".into());
        spec.set_hostname(None);
        let mut p = spec.process().clone().unwrap();
        p.set_apparmor_profile(Some("docker-default".into()));
        spec.set_process(Some(p));
        let err = validate(&spec, true).unwrap_err().to_string();
        assert!(
            err.starts_with("process.apparmorProfile") && err.contains("docker-default"),
            "{err}"
        );
    }

    #[test]
    fn identical_duplicate_namespaces_are_accepted() {
        use oci_spec::runtime::LinuxNamespaceBuilder;
        let ns = |t, path: Option<&str>| {
            let b = LinuxNamespaceBuilder::default().typ(t);
            match path {
                Some(p) => b.path(p).build().unwrap(),
                None => b.build().unwrap(),
            }
        };
        let with = |list| {
            let mut spec = Spec::default();
            spec.set_version("1.0.2".into());
            spec.linux_mut()
                .as_mut()
                .unwrap()
                .set_namespaces(Some(list));
            validate(&spec, true)
        };
        let base = |extra| {
            let mut v = vec![
                ns(LinuxNamespaceType::Uts, None),
                ns(LinuxNamespaceType::Mount, None),
                ns(LinuxNamespaceType::Cgroup, None),
            ];
            v.push(extra);
            v
        };
        with(base(ns(LinuxNamespaceType::Cgroup, None))).unwrap();
        let err = with(base(ns(
            LinuxNamespaceType::Cgroup,
            Some("/proc/1/ns/cgroup"),
        )))
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("linux.namespaces[3].type") && err.contains("different paths"),
            "{err}"
        );
    }

    #[test]
    fn rejects_hostname_without_uts() {
        let mut spec = Spec::default();
        spec.set_version("1.0.2".into());
        let linux = spec.linux_mut().as_mut().unwrap();
        linux.set_namespaces(Some(vec![]));
        let err = validate(&spec, true).unwrap_err().to_string();
        assert!(err.starts_with("hostname:"), "{err}");
    }
}
