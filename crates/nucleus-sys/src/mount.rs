//! Mount-attribute changes that `nix` and `rustix` do not wrap.

use nix::errno::Errno;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Attributes to set and clear with [`mount_setattr_recursive`]
/// (`MOUNT_ATTR_*` bits from `linux/mount.h`, re-exported by `libc`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MountAttr {
    pub set: u64,
    pub clear: u64,
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, size)`:
/// changes the mount `fd` names and every mount below it. `ENOSYS` before
/// Linux 5.12.
///
/// # References
/// [mount_setattr(2)](https://man7.org/linux/man-pages/man2/mount_setattr.2.html)
pub fn mount_setattr_recursive(fd: BorrowedFd<'_>, attr: MountAttr) -> Result<(), Errno> {
    let raw = libc::mount_attr {
        attr_set: attr.set,
        attr_clr: attr.clear,
        propagation: 0,
        userns_fd: 0,
    };
    mount_setattr(fd, libc::AT_EMPTY_PATH | libc::AT_RECURSIVE, raw)
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH [| AT_RECURSIVE], {MOUNT_ATTR_IDMAP, userns})`:
/// makes the detached mount `fd` (from `open_tree(OPEN_TREE_CLONE)`) map
/// ids through the user namespace `userns`.
///
/// # References
/// [mount_setattr(2)](https://man7.org/linux/man-pages/man2/mount_setattr.2.html)
pub fn mount_setattr_idmap(
    fd: BorrowedFd<'_>,
    userns: BorrowedFd<'_>,
    recursive: bool,
) -> Result<(), Errno> {
    let userns_fd = u64::try_from(userns.as_raw_fd()).map_err(|_| Errno::EBADF)?;
    let raw = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd,
    };
    let flags = libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 };
    mount_setattr(fd, flags, raw)
}

fn mount_setattr(
    fd: BorrowedFd<'_>,
    flags: libc::c_int,
    mut raw: libc::mount_attr,
) -> Result<(), Errno> {
    // SAFETY: `fd` is a live descriptor borrowed for the call; the path is a
    // NUL-terminated static empty string; `raw` is a live, initialised
    // `struct mount_attr` whose exact size is passed, so the kernel reads
    // only that struct. No memory is retained after the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            std::ptr::addr_of_mut!(raw),
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}
