//! Scheduling and NUMA policy of the calling process: `sched_setattr` and
//! `set_mempolicy`, which neither `nix` nor `rustix` wrap. Both take
//! arguments prepared by the caller and allocate nothing.

use nix::errno::Errno;

/// `struct sched_attr` (`linux/sched/types.h`), first version plus the
/// utilisation clamps (`SCHED_ATTR_SIZE_VER1`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedAttr {
    pub size: u32,
    pub policy: u32,
    pub flags: u64,
    pub nice: i32,
    pub priority: u32,
    pub runtime: u64,
    pub deadline: u64,
    pub period: u64,
    pub util_min: u32,
    pub util_max: u32,
}

/// `sched_setattr(0, &attr, 0)`: the calling thread's policy and parameters.
///
/// # References
/// [sched_setattr(2)](https://man7.org/linux/man-pages/man2/sched_setattr.2.html)
pub fn sched_setattr_self(attr: &SchedAttr) -> Result<(), Errno> {
    let mut attr = *attr;
    attr.size = u32::try_from(std::mem::size_of::<SchedAttr>()).unwrap_or(u32::MAX);
    // SAFETY: `attr` is a live, initialised `struct sched_attr` on our stack
    // whose `size` field holds its exact size, so the kernel reads only it;
    // pid 0 and flags 0 affect only the calling thread.
    let ret = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, std::ptr::addr_of!(attr), 0) };
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// `set_mempolicy(mode | flags, nodemask, maxnode)`: the calling thread's
/// NUMA memory policy. `nodemask` bit N is node N; an empty mask passes NULL.
///
/// # References
/// [set_mempolicy(2)](https://man7.org/linux/man-pages/man2/set_mempolicy.2.html)
pub fn set_mempolicy(mode_and_flags: i32, nodemask: &[u64]) -> Result<(), Errno> {
    let (ptr, maxnode) = if nodemask.is_empty() {
        (std::ptr::null(), 0)
    } else {
        // The kernel reads maxnode bits; one more than we have is its convention.
        (nodemask.as_ptr(), nodemask.len() * 64 + 1)
    };
    // SAFETY: `ptr` is NULL or points at `nodemask`, a live slice of
    // `maxnode - 1` bits that the kernel only reads during the call.
    let ret = unsafe { libc::syscall(libc::SYS_set_mempolicy, mode_and_flags, ptr, maxnode) };
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}
