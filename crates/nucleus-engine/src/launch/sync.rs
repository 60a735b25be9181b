//! The sync socket between the runtime (parent) and the container's init
//! (child): a SOCK_SEQPACKET pair carrying small typed frames, optionally
//! with one file descriptor attached. The child end is close-on-exec, so the
//! parent reads end-of-file exactly when the workload has been executed.

use nix::errno::Errno;
use nix::sys::socket::{
    sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType,
};
use std::io::IoSlice;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

const MAX_FRAME: usize = 4096;

/// What one side tells the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Msg {
    /// Parent → child: id maps written, cgroups joined; `value` is the child's host pid.
    Go = 1,
    /// Child → parent: mounts done, run prestart/createRuntime hooks now.
    RunRuntimeHooks = 2,
    /// Parent → child: runtime hooks done.
    RuntimeHooksDone = 3,
    /// Child → parent: setup complete, waiting to exec. May carry the seccomp notify fd.
    Ready = 4,
    /// Parent → child (run mode only): exec the workload now.
    Start = 5,
    /// Child → parent: a step failed; `value` is the errno, text says what and where.
    Error = 6,
}

impl Msg {
    fn from_u32(v: u32) -> Option<Msg> {
        Some(match v {
            1 => Msg::Go,
            2 => Msg::RunRuntimeHooks,
            3 => Msg::RuntimeHooksDone,
            4 => Msg::Ready,
            5 => Msg::Start,
            6 => Msg::Error,
            _ => return None,
        })
    }
}

/// One received frame.
#[derive(Debug)]
pub(crate) struct Frame {
    pub msg: Msg,
    pub value: i64,
    pub text: String,
    pub fd: Option<OwnedFd>,
}

impl Frame {
    /// An `Error` frame as the engine error it reports: the child sends
    /// `step\0detail`; `default_step` names frames without a step.
    pub(crate) fn child_error(&self, default_step: &str) -> crate::error::EngineError {
        let (step, detail) = self
            .text
            .split_once('\0')
            .unwrap_or((default_step, self.text.as_str()));
        crate::error::EngineError::Child {
            step: step.to_string(),
            detail: detail.to_string(),
        }
    }
}

/// Creates the socket pair: (parent end, child end), both close-on-exec.
pub(crate) fn pair() -> Result<(OwnedFd, OwnedFd), Errno> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
}

/// Sends a frame. MSG_NOSIGNAL: a vanished peer is an error, not SIGPIPE.
pub(crate) fn send(
    sock: RawFd,
    msg: Msg,
    value: i64,
    text: &str,
    fd: Option<RawFd>,
) -> Result<(), Errno> {
    let mut buf = [0u8; MAX_FRAME];
    buf[..4].copy_from_slice(&(msg as u32).to_le_bytes());
    buf[4..12].copy_from_slice(&value.to_le_bytes());
    let text = text.as_bytes();
    let n = text.len().min(MAX_FRAME - 12);
    buf[12..12 + n].copy_from_slice(&text[..n]);
    let iov = [IoSlice::new(&buf[..12 + n])];
    let fds;
    let cmsgs: &[ControlMessage] = match fd {
        Some(fd) => {
            fds = [fd];
            &[ControlMessage::ScmRights(&fds)]
        }
        None => &[],
    };
    loop {
        match sendmsg::<()>(sock, &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Err(Errno::EINTR) => continue,
            other => return other.map(drop),
        }
    }
}

/// Receives a frame; `Ok(None)` on end-of-file.
pub(crate) fn recv(sock: BorrowedFd<'_>) -> Result<Option<Frame>, Errno> {
    let mut buf = [0u8; MAX_FRAME];
    let (n, fd) = nucleus_sys::fd::recv_with_fd(sock, &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if n < 12 {
        return Err(Errno::EBADMSG);
    }
    let msg = Msg::from_u32(u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]))
        .ok_or(Errno::EBADMSG)?;
    let mut v = [0u8; 8];
    v.copy_from_slice(&buf[4..12]);
    let text = String::from_utf8_lossy(&buf[12..n]).into_owned();
    Ok(Some(Frame {
        msg,
        value: i64::from_le_bytes(v),
        text,
        fd,
    }))
}

/// Sends `Start` and waits for the child's end to close on execve; an
/// `Error` frame instead carries the failed step (e.g. exec not found).
pub(crate) fn start_and_confirm_exec(sock: &OwnedFd) -> Result<(), crate::error::EngineError> {
    use crate::error::EngineError;
    use std::os::fd::{AsFd, AsRawFd};
    send(sock.as_raw_fd(), Msg::Start, 0, "", None)
        .map_err(|e| EngineError::sys("start the process", e))?;
    match recv(sock.as_fd()) {
        Ok(None) => Ok(()),
        Ok(Some(f)) if f.msg == Msg::Error => Err(f.child_error("exec")),
        Ok(Some(f)) => Err(EngineError::Child {
            step: "sync".into(),
            detail: format!("unexpected message {:?}", f.msg),
        }),
        Err(e) => Err(EngineError::sys("wait for the process to start", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, AsRawFd};

    #[test]
    fn round_trip_with_fd() {
        let (a, b) = pair().unwrap();
        let (r, _w) = nix::unistd::pipe().unwrap();
        send(a.as_raw_fd(), Msg::Ready, -5, "hello", Some(r.as_raw_fd())).unwrap();
        let f = recv(b.as_fd()).unwrap().unwrap();
        assert_eq!((f.msg, f.value, f.text.as_str()), (Msg::Ready, -5, "hello"));
        assert!(f.fd.is_some());
        drop(a);
        assert!(recv(b.as_fd()).unwrap().is_none());
    }
}
