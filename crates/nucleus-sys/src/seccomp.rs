//! Loading a ready-made seccomp BPF program into the calling thread.
//!
//! This module owns the raw `seccomp(2)` call only. It must not compile
//! policy, link libseccomp or allocate: it runs in the container child
//! between clone and execve.

use nix::errno::Errno;
use std::os::fd::{FromRawFd, OwnedFd};

/// `SECCOMP_FILTER_FLAG_TSYNC`: synchronise all threads to the new filter.
pub const SECCOMP_FILTER_FLAG_TSYNC: u32 = 1 << 0;
/// `SECCOMP_FILTER_FLAG_LOG`: log every action except `SECCOMP_RET_ALLOW`.
pub const SECCOMP_FILTER_FLAG_LOG: u32 = 1 << 1;
/// `SECCOMP_FILTER_FLAG_SPEC_ALLOW`: leave Speculative Store Bypass mitigation off.
pub const SECCOMP_FILTER_FLAG_SPEC_ALLOW: u32 = 1 << 2;
/// `SECCOMP_FILTER_FLAG_NEW_LISTENER`: return a user-notification fd.
pub const SECCOMP_FILTER_FLAG_NEW_LISTENER: u32 = 1 << 3;
/// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV`: a notified task waits killably (Linux 5.19).
pub const SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: u32 = 1 << 5;

/// Longest program the kernel accepts (`BPF_MAXINSNS` in `linux/bpf_common.h`).
pub const BPF_MAXINSNS: usize = 4096;

/// `seccomp(SECCOMP_SET_MODE_FILTER, flags, &(struct sock_fprog){len, filter})`:
/// install `program` as a new filter on the calling thread.
///
/// Returns `Some(fd)`, the user-notification listener, when `flags` contains
/// [`SECCOMP_FILTER_FLAG_NEW_LISTENER`], and `None` otherwise. The caller
/// must have set no_new_privs or hold `CAP_SYS_ADMIN`, or the kernel answers
/// `EACCES`. A program longer than [`BPF_MAXINSNS`] is refused with `EINVAL`
/// before the call. Makes no allocation, so it may run after fork.
///
/// # References
/// [seccomp(2)](https://man7.org/linux/man-pages/man2/seccomp.2.html)
pub fn seccomp_set_mode_filter(
    flags: u32,
    program: &[libc::sock_filter],
) -> Result<Option<OwnedFd>, Errno> {
    if program.is_empty() || program.len() > BPF_MAXINSNS {
        return Err(Errno::EINVAL);
    }
    let len = u16::try_from(program.len()).map_err(|_| Errno::EINVAL)?;
    let fprog = libc::sock_fprog {
        len,
        // The kernel copies the program and never writes through this pointer.
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `fprog` lives on this frame for the whole call and points at
    // `program`, which holds exactly `len` initialised sock_filters; the
    // kernel only reads both (copy_from_user) before returning.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::c_ulong::from(flags),
            &fprog as *const libc::sock_fprog,
        )
    };
    if ret < 0 {
        return Err(Errno::last());
    }
    if flags & SECCOMP_FILTER_FLAG_NEW_LISTENER == 0 {
        return Ok(None);
    }
    let fd = libc::c_int::try_from(ret).map_err(|_| Errno::EBADF)?;
    // SAFETY: with NEW_LISTENER a successful seccomp() returns a freshly
    // installed descriptor that nothing else in this process refers to, so
    // taking ownership of it cannot double-close.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}
