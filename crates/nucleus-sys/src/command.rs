//! Steps run in a `std::process::Command`'s child between fork and exec.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Starts `cmd` in a private mount namespace of its own in which
/// `/proc/sys/net` is an empty, read-only tmpfs. runsc releases from before
/// 2023 take any network namespace in which `/proc/sys/net/core/rmem_default`
/// exists for the host's, and Linux 5.x and later have it in every
/// namespace; the caller that uses this must itself know the namespace is
/// not the host's.
pub fn hide_proc_sys_net(cmd: &mut Command) {
    // SAFETY: `hide_in_child` runs in the forked child before exec and makes
    // only async-signal-safe syscalls; it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(hide_in_child);
    }
}

fn hide_in_child() -> std::io::Result<()> {
    const TARGET: &std::ffi::CStr = c"/proc/sys/net";
    const FSTYPE: &std::ffi::CStr = c"tmpfs";
    const DATA: &std::ffi::CStr = c"size=4k,mode=0555";
    const ROOT: &std::ffi::CStr = c"/";
    // SAFETY: unshare takes one integer flag and changes only this process.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: every pointer is a static NUL-terminated string or null, as mount(2) allows.
    let private = unsafe {
        libc::mount(
            std::ptr::null(),
            ROOT.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if private != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: every pointer is a static NUL-terminated string, as mount(2) reads them.
    let hidden = unsafe {
        libc::mount(
            FSTYPE.as_ptr(),
            TARGET.as_ptr(),
            FSTYPE.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RDONLY,
            DATA.as_ptr().cast(),
        )
    };
    if hidden != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
