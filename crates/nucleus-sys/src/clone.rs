//! Process creation with namespace flags.

use nix::errno::Errno;
use nix::unistd::Pid;
use std::os::fd::{AsRawFd, BorrowedFd};

/// What a fork-like clone returned in the calling process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloneResult {
    /// We are the parent; the child has this pid in our pid namespace.
    Parent(Pid),
    /// We are the new child.
    Child,
}

/// `syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, 0)`: a fork that
/// also creates the namespaces named in `flags`.
///
/// With a NULL stack the child runs on a copy-on-write copy of the caller's
/// stack, exactly like `fork(2)`.
///
/// # Safety
/// Same contract as `fork(2)`: if the calling process has more than one
/// thread, the child may only do async-signal-safe work until it execs or
/// exits. `flags` must not contain `CLONE_VM`, `CLONE_SETTLS` or other flags
/// that require a separate stack or TLS.
///
/// # References
/// [clone(2)](https://man7.org/linux/man-pages/man2/clone.2.html)
pub unsafe fn clone_fork(flags: libc::c_int) -> Result<CloneResult, Errno> {
    debug_assert!(flags & (libc::CLONE_VM | libc::CLONE_SETTLS) == 0);
    let flags = libc::c_ulong::try_from(flags | libc::SIGCHLD).map_err(|_| Errno::EINVAL)?;
    // SAFETY: the caller upholds fork's contract; CLONE_VM is excluded, so a
    // NULL stack gives the child a private copy of this stack, and the NULL
    // ptid/ctid/tls arguments are unused without CLONE_*TID/CLONE_SETTLS.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    match ret {
        -1 => Err(Errno::last()),
        0 => Ok(CloneResult::Child),
        pid => Ok(CloneResult::Parent(Pid::from_raw(
            i32::try_from(pid).map_err(|_| Errno::EOVERFLOW)?,
        ))),
    }
}

/// `clone3({flags, exit_signal = SIGCHLD, cgroup}, sizeof)` with
/// `CLONE_INTO_CGROUP`: like [`clone_fork`], but the child starts life inside
/// the cgroup v2 directory `cgroup_dir`, so it never runs an instruction
/// outside it.
///
/// Returns `ENOSYS` on kernels without clone3 and `EINVAL`/`EBUSY` when the
/// cgroup cannot take the process; callers fall back to [`clone_fork`].
///
/// # Safety
/// As for [`clone_fork`].
///
/// # References
/// [clone3(2)](https://man7.org/linux/man-pages/man2/clone3.2.html)
pub unsafe fn clone3_into_cgroup(
    flags: libc::c_int,
    cgroup_dir: BorrowedFd<'_>,
) -> Result<CloneResult, Errno> {
    #[repr(C)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let mut args = CloneArgs {
        flags: u64::try_from(flags).map_err(|_| Errno::EINVAL)? | CLONE_INTO_CGROUP,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: u64::try_from(cgroup_dir.as_raw_fd()).map_err(|_| Errno::EBADF)?,
    };
    // SAFETY: `args` is a live, correctly sized clone_args (CLONE_ARGS_SIZE_VER2);
    // stack == 0 gives fork semantics as with clone_fork, and the caller
    // upholds fork's contract. `cgroup_dir` stays open for the whole call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        -1 => Err(Errno::last()),
        0 => Ok(CloneResult::Child),
        pid => Ok(CloneResult::Parent(Pid::from_raw(
            i32::try_from(pid).map_err(|_| Errno::EOVERFLOW)?,
        ))),
    }
}
