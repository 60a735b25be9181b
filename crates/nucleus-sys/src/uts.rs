//! Small per-process settings: UTS names, I/O priority, execution domain.

use nix::errno::Errno;

/// `setdomainname(name, len)`.
///
/// # References
/// [setdomainname(2)](https://man7.org/linux/man-pages/man2/setdomainname.2.html)
pub fn setdomainname(name: &str) -> Result<(), Errno> {
    let bytes = name.as_bytes();
    // SAFETY: the kernel reads exactly `len` bytes from `bytes`, a live slice; no NUL terminator is needed.
    let ret = unsafe { libc::setdomainname(bytes.as_ptr().cast(), bytes.len()) };
    Errno::result(ret).map(drop)
}

/// `ioprio_set(IOPRIO_WHO_PROCESS, 0, class << 13 | level)`: the I/O
/// priority of the calling process.
///
/// # References
/// [ioprio_set(2)](https://man7.org/linux/man-pages/man2/ioprio_set.2.html)
pub fn ioprio_set_self(class: u32, level: u32) -> Result<(), Errno> {
    const IOPRIO_WHO_PROCESS: libc::c_int = 1;
    let prio = (class << 13) | (level & 0x1fff);
    // SAFETY: ioprio_set takes three integers and touches only the caller's I/O priority.
    let ret = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, prio) };
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// `personality(persona)`: the execution domain (e.g. `PER_LINUX32`).
///
/// # References
/// [personality(2)](https://man7.org/linux/man-pages/man2/personality.2.html)
pub fn set_personality(persona: libc::c_ulong) -> Result<(), Errno> {
    // SAFETY: personality takes one integer and only changes the caller's execution domain.
    let ret = unsafe { libc::personality(persona) };
    Errno::result(ret).map(drop)
}
