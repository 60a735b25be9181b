//! File-descriptor table operations.

use nix::errno::Errno;

/// `close_range(first, ~0U, CLOSE_RANGE_CLOEXEC)`: mark every descriptor from
/// `first` upwards close-on-exec, so nothing the runtime opened leaks into the
/// workload.
///
/// # References
/// [close_range(2)](https://man7.org/linux/man-pages/man2/close_range.2.html)
pub fn close_range_cloexec(first: u32) -> Result<(), Errno> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only touches this process's fd table; with
    // CLOSE_RANGE_CLOEXEC it closes nothing, so no owned fd is invalidated.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}
