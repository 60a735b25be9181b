//! Agent mode's root filesystem, derived from the host: which host paths are
//! bound read-only, which symlinks are recreated, and which small files are
//! generated. Pure: it reads a `HostLayout` probed beforehand, so the plan
//! can be unit-tested and reviewed without touching the host.
//!
//! Never `/etc/shadow` or `/etc/gshadow`: only the names in `ETC_ALLOWED`
//! reach the container.

use serde_json::{json, Value};
use std::path::Path;

/// Top-level system directories bound read-only when they exist.
pub const SYSTEM_DIRS: &[&str] = &["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// The part of the host `/etc` ordinary programs need (dynamic linker,
/// certificates, name service switch, time zone, MIME types).
pub const ETC_ALLOWED: &[&str] = &[
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "nsswitch.conf",
    "localtime",
    "mime.types",
];

/// What a host path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEntry {
    Dir,
    File,
    /// A symlink, recreated inside with the same target.
    Symlink(String),
}

/// The host paths the agent root is built from, probed once.
#[derive(Debug, Clone, Default)]
pub struct HostLayout {
    /// `SYSTEM_DIRS` that exist, by name.
    pub system: Vec<(String, HostEntry)>,
    /// `ETC_ALLOWED` entries that exist, by name.
    pub etc: Vec<(String, HostEntry)>,
}

impl HostLayout {
    /// Looks at the host's `/` and `/etc` (symlinks are not followed).
    pub fn probe(host_root: &Path) -> Self {
        let entry = |p: &Path| -> Option<HostEntry> {
            let meta = std::fs::symlink_metadata(p).ok()?;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(p).ok()?;
                return Some(HostEntry::Symlink(target.to_string_lossy().into_owned()));
            }
            Some(if meta.is_dir() {
                HostEntry::Dir
            } else {
                HostEntry::File
            })
        };
        let system = SYSTEM_DIRS
            .iter()
            .filter_map(|n| entry(&host_root.join(n)).map(|e| (n.to_string(), e)))
            .collect();
        let etc = ETC_ALLOWED
            .iter()
            .filter_map(|n| entry(&host_root.join("etc").join(n)).map(|e| (n.to_string(), e)))
            .collect();
        HostLayout { system, etc }
    }
}

/// A symlink to create in the bundle's rootfs: (path relative to the root, target).
pub type Symlink = (String, String);

/// The mounts and symlinks of the host-derived root, in mount order.
/// Shadow files can never appear: only `ETC_ALLOWED` names are considered.
pub fn system_mounts(host: &HostLayout) -> (Vec<Value>, Vec<Symlink>) {
    let ro_bind = |path: String| json!({"destination": path, "type": "bind", "source": path, "options": ["rbind", "ro", "nosuid", "nodev"]});
    let mut mounts = Vec::new();
    let mut links = Vec::new();
    for (name, e) in &host.system {
        match e {
            HostEntry::Dir => mounts.push(ro_bind(format!("/{name}"))),
            HostEntry::Symlink(target) => links.push((name.clone(), target.clone())),
            HostEntry::File => {}
        }
    }
    for (name, e) in &host.etc {
        if name.contains("shadow") {
            continue;
        }
        match e {
            // A link into /usr (localtime, alternatives) resolves inside as well.
            HostEntry::Symlink(target) => links.push((format!("etc/{name}"), target.clone())),
            HostEntry::Dir | HostEntry::File => mounts.push(ro_bind(format!("/etc/{name}"))),
        }
    }
    (mounts, links)
}

/// The kernel filesystems and tmpfs mounts every container gets: `/proc`,
/// a minimal `/dev`, read-only `/sys`, and (for a read-only root) tmpfs
/// `/tmp` and `/run`.
pub fn base_mounts(writable_tmp: bool) -> Vec<Value> {
    let mut m = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
    ];
    if writable_tmp {
        m.push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]}));
        m.push(json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=755"]}));
    }
    m
}

/// `/proc` and `/sys` paths hidden from the container (OCI and Docker defaults).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// `/proc` paths made read-only (OCI and Docker defaults).
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Contents of the generated `/etc/hosts`.
pub fn hosts_file(hostname: &str) -> String {
    format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn debian12() -> HostLayout {
        HostLayout {
            system: vec![
                ("usr".into(), HostEntry::Dir),
                ("bin".into(), HostEntry::Symlink("usr/bin".into())),
                ("lib".into(), HostEntry::Symlink("usr/lib".into())),
                ("lib64".into(), HostEntry::Symlink("usr/lib64".into())),
                ("sbin".into(), HostEntry::Symlink("usr/sbin".into())),
            ],
            etc: vec![
                ("ld.so.cache".into(), HostEntry::File),
                ("ssl".into(), HostEntry::Dir),
                (
                    "localtime".into(),
                    HostEntry::Symlink("/usr/share/zoneinfo/Etc/UTC".into()),
                ),
            ],
        }
    }

    #[test]
    fn symlinked_dirs_stay_symlinks() {
        let (mounts, links) = system_mounts(&debian12());
        let dests: Vec<&str> = mounts
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(dests, ["/usr", "/etc/ld.so.cache", "/etc/ssl"]);
        assert!(links.contains(&("bin".into(), "usr/bin".into())));
        assert!(links.contains(&("etc/localtime".into(), "/usr/share/zoneinfo/Etc/UTC".into())));
        for m in &mounts {
            let opts: Vec<&str> = m["options"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o.as_str().unwrap())
                .collect();
            assert!(
                opts.contains(&"ro") && opts.contains(&"nosuid") && opts.contains(&"nodev"),
                "{m}"
            );
        }
    }

    #[test]
    fn shadow_never_mounted() {
        let mut host = debian12();
        host.etc.push(("shadow".into(), HostEntry::File));
        host.etc.push(("gshadow".into(), HostEntry::File));
        let (mounts, links) = system_mounts(&host);
        assert!(mounts
            .iter()
            .all(|m| !m["destination"].as_str().unwrap().contains("shadow")));
        assert!(links.iter().all(|(p, _)| !p.contains("shadow")));
        assert!(!ETC_ALLOWED.iter().any(|n| n.contains("shadow")));
    }

    #[test]
    fn probe_reads_this_host() {
        let host = HostLayout::probe(Path::new("/"));
        assert!(host.system.iter().any(|(n, _)| n == "usr"));
        assert!(host
            .etc
            .iter()
            .all(|(n, _)| ETC_ALLOWED.contains(&n.as_str())));
    }
}
