//! Leaving the old root behind when the root is switched without
//! pivot_root (`--no-pivot`): after the rootfs is moved over `/`, every
//! mount of the host's tree is still in the container's mount namespace,
//! hidden under it. A full host procfs or sysfs there passes the kernel's
//! visibility check (`mount_too_revealing`), so a user namespace made inside
//! the container could mount a fresh proc. This module detaches them.
//! Runs in the child, after the move and before chroot, while `/` still
//! names the old root.

use crate::launch::StepError;
use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::io::{Read, Seek};
use std::os::fd::{AsRawFd, BorrowedFd};

/// One line of `/proc/self/mountinfo`, e.g.
/// `36 25 0:31 / /proc rw,nosuid shared:15 - proc proc rw`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MountLine {
    id: u32,
    parent: u32,
    root: String,
    point: String,
    fstype: String,
}

fn parse(text: &str) -> Vec<MountLine> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            Some(MountLine {
                id: pre.first()?.parse().ok()?,
                parent: pre.get(1)?.parse().ok()?,
                root: unescape(pre.get(3)?),
                point: unescape(pre.get(4)?),
                fstype: post.split(' ').next()?.to_string(),
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The old tree's mounts still to go: those hanging off the ancestors of
/// `keep` (the moved rootfs), except `keep` itself, children first by path.
fn leftovers(mounts: &[MountLine], keep: u32) -> Vec<&MountLine> {
    let mut ancestors = Vec::new();
    let mut cur = mounts.iter().find(|m| m.id == keep).map(|m| m.parent);
    while let Some(id) = cur.filter(|id| !ancestors.contains(id)) {
        ancestors.push(id);
        cur = mounts.iter().find(|m| m.id == id).map(|m| m.parent);
    }
    let mut out: Vec<&MountLine> = mounts
        .iter()
        .filter(|m| {
            m.id != keep
                && !ancestors.contains(&m.id)
                && ancestors.contains(&m.parent)
                && m.point != "/"
        })
        .collect();
    out.sort_by_key(|m| std::cmp::Reverse(m.point.len()));
    out
}

/// The mount id of the mount `fd` lies on, from `/proc/self/fdinfo`.
fn mount_id(fd: BorrowedFd<'_>) -> Result<u32, Errno> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
        .map_err(|_| Errno::EIO)?;
    text.lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or(Errno::EIO)
}

/// Detaches every mount of the old root; `rootfs` is an fd on the moved
/// rootfs. Mounts a user namespace locked to their parents (EINVAL) cannot
/// go: full procfs and sysfs among them are covered with an empty
/// read-only tmpfs instead, as runc does, which makes them not fully
/// visible. One that can be neither detached nor covered fails the start.
pub(crate) fn detach(rootfs: BorrowedFd<'_>) -> Result<(), StepError> {
    let err = |what: String, e| StepError::new("pivot_root", what, e);
    let keep = mount_id(rootfs).map_err(|e| err("read the rootfs mount id".into(), e))?;
    // Kept open: once the host's /proc is detached, rereading this file
    // still lists our namespace's mounts.
    let mut info = std::fs::File::open("/proc/self/mountinfo")
        .map_err(|_| err("open /proc/self/mountinfo".into(), Errno::EIO))?;
    let mut read = || -> Result<Vec<MountLine>, StepError> {
        let mut text = String::new();
        info.rewind()
            .and_then(|()| info.read_to_string(&mut text))
            .map_err(|_| err("read /proc/self/mountinfo".into(), Errno::EIO))?;
        Ok(parse(&text))
    };
    loop {
        let mounts = read()?;
        let left = leftovers(&mounts, keep);
        let mut progress = false;
        for m in &left {
            // NOFOLLOW: a mount point is a canonical path; `/` is still rslave,
            // so nothing here propagates to the host.
            match umount2(
                m.point.as_str(),
                MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW,
            ) {
                Ok(()) => progress = true,
                // Locked (EINVAL), hidden under another mount (ENOENT), or
                // beneath a directory the user namespace's root may not
                // search (EACCES): covered below if it matters.
                Err(Errno::EINVAL | Errno::ENOENT | Errno::EPERM | Errno::EACCES) => {}
                Err(e) => return Err(err(format!("detach `{}` of the old root", m.point), e)),
            }
        }
        if !progress {
            break;
        }
    }
    for m in leftovers(&read()?, keep) {
        if (m.fstype == "proc" || m.fstype == "sysfs") && m.root == "/" {
            let flags =
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
            mount(
                Some("tmpfs"),
                m.point.as_str(),
                Some("tmpfs"),
                flags,
                Some("size=0,mode=000"),
            )
            .map_err(|e| {
                err(
                    format!("cover `{}` ({}) of the old root", m.point, m.fstype),
                    e,
                )
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 1 0:21 / / rw - ext4 /dev/vda1 rw
23 22 0:22 / /proc rw,nosuid - proc proc rw
24 23 0:23 / /proc/sys/fs/binfmt_misc rw - autofs systemd-1 rw
25 22 0:24 / /sys rw - sysfs sysfs rw
26 22 0:25 /bundle/rootfs / rw - ext4 /dev/vda1 rw
27 26 0:26 / /proc rw - proc proc rw
28 22 0:27 / /tmp/with\\040space rw - tmpfs tmpfs rw
";

    #[test]
    fn leftovers_are_the_old_trees_top_mounts() {
        let mounts = parse(INFO);
        assert_eq!(mounts[6].point, "/tmp/with space");
        let points: Vec<&str> = leftovers(&mounts, 26)
            .iter()
            .map(|m| m.point.as_str())
            .collect();
        assert_eq!(points, ["/tmp/with space", "/proc", "/sys"]);
    }

    #[test]
    fn nothing_left_once_only_the_rootfs_hangs_off_the_root() {
        let mounts = parse("22 1 0:21 / / rw - ext4 /dev/vda1 rw\n26 22 0:25 /r / rw - ext4 /dev/vda1 rw\n27 26 0:26 / /proc rw - proc proc rw\n");
        assert!(leftovers(&mounts, 26).is_empty());
    }
}
