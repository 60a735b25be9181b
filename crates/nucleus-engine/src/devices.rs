//! Device nodes inside the container: the default set (null, zero, full,
//! random, urandom, tty), `linux.devices`, and the `/dev` symlinks. In a user
//! namespace mknod is not allowed, so the host node is bind-mounted instead.

use crate::safe_path::{create_in_root, fd_path, open_in_root, Leaf};
use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{makedev, mknodat, Mode, SFlag};
use nix::unistd::{fchownat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

/// A device to create: path inside the container, kind, numbers, mode, owner.
#[derive(Debug, Clone)]
pub(crate) struct DeviceNode {
    pub path: PathBuf,
    pub kind: SFlag,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The devices every container gets when the runtime sets up `/dev`.
pub(crate) fn default_devices() -> Vec<DeviceNode> {
    [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ]
    .into_iter()
    .map(|(name, major, minor)| DeviceNode {
        path: PathBuf::from("/dev").join(name),
        kind: SFlag::S_IFCHR,
        major,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

/// Converts a `linux.devices` entry; `index` is used in error messages.
pub(crate) fn from_spec(d: &LinuxDevice, index: usize) -> Result<DeviceNode, String> {
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(format!(
                "linux.devices[{index}].type: `a` is not a device type"
            ))
        }
    };
    if !d.path().starts_with("/dev") {
        return Err(format!(
            "linux.devices[{index}].path: `{}` is not under /dev",
            d.path().display()
        ));
    }
    let num = |v: i64, f: &str| {
        u64::try_from(v).map_err(|_| format!("linux.devices[{index}].{f}: `{v}` is negative"))
    };
    Ok(DeviceNode {
        path: d.path().clone(),
        kind,
        major: num(d.major(), "major")?,
        minor: num(d.minor(), "minor")?,
        mode: d.file_mode().unwrap_or(0o666) & 0o7777,
        uid: d.uid().unwrap_or(0),
        gid: d.gid().unwrap_or(0),
    })
}

/// Creates one node under `root`. `bind_from_host` is used in user namespaces.
pub(crate) fn create_node(
    root: BorrowedFd<'_>,
    dev: &DeviceNode,
    bind_from_host: bool,
) -> Result<(), (String, Errno)> {
    let path = &dev.path;
    let ctx = |what: &str, e| (format!("{what} `{}`", path.display()), e);
    let parent_path = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .ok_or_else(|| ctx("device path has no name", Errno::EINVAL))?;
    let parent = create_in_root(root, parent_path, Leaf::Directory)
        .map_err(|e| ctx("create parent of", e))?;
    if bind_from_host {
        let target =
            create_in_root(root, path, Leaf::File).map_err(|e| ctx("create bind target", e))?;
        return mount(
            Some(path.as_path()),
            fd_path(&target).as_str(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| ctx("bind-mount host device", e));
    }
    match unlinkat(parent.as_fd(), name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(ctx("replace", e)),
    }
    let mode = Mode::from_bits_truncate(dev.mode);
    mknodat(
        parent.as_fd(),
        name,
        dev.kind,
        mode,
        makedev(dev.major, dev.minor),
    )
    .map_err(|e| ctx("mknod", e))?;
    fchownat(
        parent.as_fd(),
        name,
        Some(Uid::from_raw(dev.uid)),
        Some(Gid::from_raw(dev.gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| ctx("chown", e))?;
    // mknod applies the umask; set the exact mode asked for.
    let node = open_in_root(root, path).map_err(|e| ctx("open", e))?;
    std::fs::set_permissions(
        fd_path(&node),
        std::os::unix::fs::PermissionsExt::from_mode(dev.mode),
    )
    .map_err(|e| {
        ctx(
            "chmod",
            Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        )
    })?;
    Ok(())
}

/// The standard `/dev` symlinks (`/dev/fd`, `/dev/stdin`, …, `/dev/ptmx`).
pub(crate) fn create_symlinks(root: BorrowedFd<'_>) -> Result<(), (String, Errno)> {
    let dev = create_in_root(root, Path::new("/dev"), Leaf::Directory)
        .map_err(|e| ("open /dev".to_string(), e))?;
    let mut links = vec![
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("core", "/proc/kcore"));
    }
    for (name, target) in links {
        match symlinkat(target, dev.as_fd(), name) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err((format!("symlink /dev/{name}"), e)),
        }
    }
    Ok(())
}

/// The device-cgroup rules to apply: the spec's own rules, then runc's
/// default allow list: mknod of any node (so `linux.devices` can be
/// created), and use of the nodes the runtime itself makes (the defaults,
/// console, ptmx, `/dev/pts/*`). A `linux.devices` entry only creates a
/// node: whether it can be opened is for `linux.resources.devices` alone.
pub(crate) fn cgroup_rules(
    spec: &oci_spec::runtime::Spec,
) -> Vec<oci_spec::runtime::LinuxDeviceCgroup> {
    use oci_spec::runtime::LinuxDeviceCgroup;
    let linux = spec.linux().as_ref();
    let mut rules: Vec<LinuxDeviceCgroup> = linux
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.devices().clone())
        .unwrap_or_default();
    let allow = |typ, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.to_string()));
        r
    };
    rules.push(allow(LinuxDeviceType::C, None, None, "m"));
    rules.push(allow(LinuxDeviceType::B, None, None, "m"));
    for d in default_devices() {
        rules.push(allow(
            LinuxDeviceType::C,
            i64::try_from(d.major).ok(),
            i64::try_from(d.minor).ok(),
            "rwm",
        ));
    }
    rules.push(allow(LinuxDeviceType::C, Some(5), Some(1), "rwm")); // /dev/console
    rules.push(allow(LinuxDeviceType::C, Some(5), Some(2), "rwm")); // /dev/ptmx
    rules.push(allow(LinuxDeviceType::C, Some(136), None, "rwm")); // /dev/pts/*
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_devices_add_no_allow_rule() {
        let spec: oci_spec::runtime::Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": { "path": "rootfs" },
            "linux": {
                "resources": { "devices": [{ "allow": false, "access": "rwm" }] },
                "devices": [{ "path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11 }]
            }
        }))
        .expect("spec");
        let rules = cgroup_rules(&spec);
        assert!(!rules[0].allow(), "the spec's deny-all comes first");
        let kmsg = rules
            .iter()
            .filter(|r| r.allow() && r.major() == Some(1) && r.minor() == Some(11));
        assert_eq!(
            kmsg.count(),
            0,
            "linux.devices must not open a hole: {rules:?}"
        );
        let null = rules
            .iter()
            .find(|r| r.major() == Some(1) && r.minor() == Some(3))
            .expect("/dev/null allowed");
        assert_eq!(null.access().as_deref(), Some("rwm"));
    }
}
