//! Interface flags through the classic ioctl (no netlink needed for this).

use nix::errno::Errno;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Brings the loopback interface of the caller's network namespace up:
/// `socket(AF_INET, SOCK_DGRAM)`, `ioctl(SIOCGIFFLAGS)`, then
/// `ioctl(SIOCSIFFLAGS, flags | IFF_UP)` on `lo`.
///
/// # References
/// [netdevice(7)](https://man7.org/linux/man-pages/man7/netdevice.7.html)
pub fn set_loopback_up() -> Result<(), Errno> {
    // SAFETY: socket(2) takes integers and returns a new fd or -1.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(Errno::last());
    }
    // SAFETY: `raw` was just returned by socket(2) and is owned by nothing else.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads ifr_name and writes ifr_flags of `req`, a live ifreq.
    let ret = unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCGIFFLAGS,
            &mut req as *mut libc::ifreq,
        )
    };
    Errno::result(ret)?;
    // SAFETY: the kernel just filled the ifru_flags member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags =
        flags | libc::c_short::try_from(libc::IFF_UP).map_err(|_| Errno::EINVAL)?;
    // SAFETY: SIOCSIFFLAGS reads `req`, a live ifreq with the name and new flags.
    let ret = unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCSIFFLAGS,
            &req as *const libc::ifreq,
        )
    };
    Errno::result(ret).map(drop)
}
