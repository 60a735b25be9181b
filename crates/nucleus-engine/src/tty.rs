//! The container's terminal: a pty created inside the container's devpts,
//! its master sent to the console socket (SCM_RIGHTS, as runc does), its
//! slave made the process's controlling terminal and stdio.

use crate::launch::{StepContext, StepError};
use crate::safe_path::{create_in_root, fd_path, Leaf};
use nix::fcntl::{open, OFlag};
use nix::mount::{mount, MsFlags};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::sys::stat::Mode;
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

/// The `tty` group of the conventional /etc/group (Debian, Fedora, Alpine).
const TTY_GID: u32 = 5;

/// Creates the pty, sends the master over `console_socket`, binds the slave
/// over /dev/console and makes it the controlling terminal and fds 0-2.
/// Runs after pivot_root, so /dev/ptmx is the container's. The slave is
/// given to `uid` with group `tty` (5), as runc does, so the process can
/// `mesg`/`write` and programs that check their tty's owner work.
pub(crate) fn setup_console(
    console_socket: BorrowedFd<'_>,
    size: Option<(u16, u16)>,
    bind_console: bool,
    uid: u32,
) -> Result<(), StepError> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .step("console", || "open /dev/ptmx".into())?;
    grantpt(&master).step("console", || "grantpt".into())?;
    unlockpt(&master).step("console", || "unlockpt".into())?;
    let name = ptsname_r(&master).step("console", || "ptsname".into())?;
    if let Some((rows, cols)) = size {
        nucleus_sys::tty::set_window_size(master.as_fd(), rows, cols)
            .step("console", || "set window size".into())?;
    }
    let slave: OwnedFd = open(
        Path::new(&name),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .step("console", || format!("open `{name}`"))?;
    let owner = Some(nix::unistd::Uid::from_raw(uid));
    match nix::unistd::fchown(&slave, owner, Some(nix::unistd::Gid::from_raw(TTY_GID))) {
        // In a user namespace that does not map gid 5, keep devpts's group.
        Err(nix::errno::Errno::EINVAL) => nix::unistd::fchown(&slave, owner, None),
        r => r,
    }
    .step("console", || format!("chown `{name}` to uid {uid}"))?;
    if bind_console {
        let root = open(
            "/",
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .step("console", || "open /".into())?;
        if let Ok(console) = create_in_root(root.as_fd(), Path::new("/dev/console"), Leaf::File) {
            mount(
                Some(name.as_str()),
                fd_path(&console).as_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .step("console", || "bind pty over /dev/console".into())?;
        }
    }
    let fds = [master.as_raw_fd()];
    let iov = [IoSlice::new(b"/dev/ptmx")];
    sendmsg::<()>(
        console_socket.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .step("console", || "send pty master to the console socket".into())?;
    drop(master);
    nix::unistd::setsid().step("console", || "setsid".into())?;
    nucleus_sys::tty::set_controlling_terminal(slave.as_fd())
        .step("console", || "set controlling terminal".into())?;
    nix::unistd::dup2_stdin(&slave).step("console", || "dup2 pty onto stdin".into())?;
    nix::unistd::dup2_stdout(&slave).step("console", || "dup2 pty onto stdout".into())?;
    nix::unistd::dup2_stderr(&slave).step("console", || "dup2 pty onto stderr".into())?;
    Ok(())
}

/// Restores the terminal attributes of stdin on drop.
struct RawMode(Option<nix::sys::termios::Termios>);

impl RawMode {
    fn enter() -> RawMode {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let Ok(orig) = tcgetattr(stdin.as_fd()) else {
            return RawMode(None);
        };
        let mut raw = orig.clone();
        cfmakeraw(&mut raw);
        match tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw) {
            Ok(()) => RawMode(Some(orig)),
            Err(_) => RawMode(None),
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(orig) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin().as_fd(),
                nix::sys::termios::SetArg::TCSANOW,
                orig,
            );
        }
    }
}

fn copy_window_size(master: BorrowedFd<'_>) {
    if let Ok((rows, cols)) = nucleus_sys::tty::window_size(std::io::stdin().as_fd()) {
        let _ = nucleus_sys::tty::set_window_size(master, rows, cols);
    }
}

/// Foreground `run` with a terminal and no console socket: relay stdin to
/// the pty and the pty to stdout (stdin in raw mode when it is a terminal),
/// keep the window size in sync, forward other signals, and return the
/// workload's exit code once it is reaped and its output drained.
pub(crate) fn proxy_until_exit(
    signals: &nix::sys::signal::SigSet,
    pid: nix::unistd::Pid,
    master: OwnedFd,
    deadline: Option<std::time::Instant>,
) -> crate::error::Result<i32> {
    use crate::error::EngineError;
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let sfd = SignalFd::with_flags(signals, SfdFlags::SFD_CLOEXEC)
        .map_err(|e| EngineError::sys("create signalfd", e))?;
    let pidfd = nucleus_sys::pidfd::pidfd_open(pid)
        .map_err(|e| EngineError::sys("open pidfd of container init", e))?;
    let _raw = RawMode::enter();
    copy_window_size(master.as_fd());
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut stdin_open = true;
    let mut buf = [0u8; 8192];
    let mut code = None;
    let mut killed = false;
    loop {
        let mut fds = vec![
            PollFd::new(master.as_fd(), PollFlags::POLLIN),
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
        ];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        let timeout = if code.is_some() {
            PollTimeout::ZERO
        } else {
            crate::lifecycle::poll_timeout(deadline, pidfd.as_fd(), &mut killed)
        };
        match poll(&mut fds, timeout) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(EngineError::sys("relay the terminal", e)),
            Ok(_) => {}
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        let (m, s, p, i) = (ready(0), ready(1), ready(2), ready(3));
        if m {
            match nix::unistd::read(&master, &mut buf) {
                Ok(n) if n > 0 => {
                    let _ = write_all(stdout.as_fd(), &buf[..n]);
                }
                // EIO: every slave fd is closed.
                _ => {
                    if let Some(c) = code {
                        return Ok(c);
                    }
                }
            }
        } else if let Some(c) = code {
            return Ok(c);
        }
        if s {
            if let Ok(Some(info)) = sfd.read_signal() {
                let sig = i32::try_from(info.ssi_signo).unwrap_or(libc::SIGTERM);
                if sig == libc::SIGWINCH {
                    copy_window_size(master.as_fd());
                } else {
                    let _ = nucleus_sys::pidfd::pidfd_send_signal(pidfd.as_fd(), sig);
                }
            }
        }
        if i {
            match nix::unistd::read(&stdin, &mut buf) {
                Ok(n) if n > 0 => {
                    let _ = write_all(master.as_fd(), &buf[..n]);
                }
                _ => stdin_open = false,
            }
        }
        if p && code.is_none() {
            code = crate::lifecycle::reap_init(pid)?;
        }
    }
}

fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> nix::Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The console socket to send the pty master to: an fd the caller made, or
/// a connection to `--console-socket`. A terminal without one is refused.
pub(crate) fn console_socket(
    terminal: bool,
    path: Option<&Path>,
    fd: Option<OwnedFd>,
) -> crate::error::Result<Option<OwnedFd>> {
    use crate::error::EngineError;
    let console = match (path, fd) {
        (_, Some(fd)) => Some(fd),
        (Some(path), None) => Some(OwnedFd::from(
            std::os::unix::net::UnixStream::connect(path)
                .map_err(|e| EngineError::io("connect to console socket", path, e))?,
        )),
        (None, None) => None,
    };
    if terminal && console.is_none() {
        return Err(EngineError::invalid(
            "process.terminal",
            "true",
            "a terminal needs --console-socket",
        ));
    }
    Ok(console)
}

/// For a foreground run or exec with a terminal and no console socket: a
/// socket pair whose one end stands in for the console socket.
pub(crate) fn local_console(
    wanted: bool,
) -> crate::error::Result<(Option<std::os::unix::net::UnixStream>, Option<OwnedFd>)> {
    if !wanted {
        return Ok((None, None));
    }
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(|e| {
        crate::error::EngineError::io("create console socket pair", "socketpair", e)
    })?;
    Ok((Some(ours), Some(OwnedFd::from(theirs))))
}

/// Receives the pty master the process sent to our end of `local_console`.
pub(crate) fn receive_master(
    ours: Option<&std::os::unix::net::UnixStream>,
) -> crate::error::Result<Option<OwnedFd>> {
    use crate::error::EngineError;
    let Some(sock) = ours else { return Ok(None) };
    let mut buf = [0u8; 64];
    let (_, fd) = nucleus_sys::fd::recv_with_fd(sock.as_fd(), &mut buf)
        .map_err(|e| EngineError::sys("receive the pty master", e))?;
    fd.map(Some)
        .ok_or_else(|| EngineError::sys("receive the pty master", nix::errno::Errno::EPROTO))
}
