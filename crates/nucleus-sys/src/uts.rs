//! UTS namespace names.

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
