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

/// `recvmsg(sock, buf, SCM_RIGHTS, MSG_CMSG_CLOEXEC)`: receives one message
/// and at most one attached descriptor, which comes back owned (and
/// close-on-exec). Extra descriptors are closed. Retries on EINTR.
pub fn recv_with_fd(
    sock: std::os::fd::BorrowedFd<'_>,
    buf: &mut [u8],
) -> Result<(usize, Option<std::os::fd::OwnedFd>), Errno> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    loop {
        let mut iov = [std::io::IoSliceMut::new(buf)];
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
            Ok(r) => {
                let mut fd = None;
                for c in r.cmsgs()? {
                    if let ControlMessageOwned::ScmRights(fds) = c {
                        for raw in fds {
                            // SAFETY: SCM_RIGHTS just installed `raw` in this
                            // process's fd table and nothing else refers to it.
                            let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                            if fd.is_none() {
                                fd = Some(owned);
                            }
                        }
                    }
                }
                return Ok((r.bytes, fd));
            }
        }
    }
}
