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

/// Creates the pty, sends the master over `console_socket`, binds the slave
/// over /dev/console and makes it the controlling terminal and fds 0-2.
/// Runs after pivot_root, so /dev/ptmx is the container's.
pub(crate) fn setup_console(console_socket: BorrowedFd<'_>, size: Option<(u16, u16)>) -> Result<(), StepError> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).step("console", || "open /dev/ptmx".into())?;
    grantpt(&master).step("console", || "grantpt".into())?;
    unlockpt(&master).step("console", || "unlockpt".into())?;
    let name = ptsname_r(&master).step("console", || "ptsname".into())?;
    if let Some((rows, cols)) = size {
        nucleus_sys::tty::set_window_size(master.as_fd(), rows, cols).step("console", || "set window size".into())?;
    }
    let slave: OwnedFd =
        open(Path::new(&name), OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC, Mode::empty()).step("console", || format!("open `{name}`"))?;
    let root = open("/", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).step("console", || "open /".into())?;
    if let Ok(console) = create_in_root(root.as_fd(), Path::new("/dev/console"), Leaf::File) {
        mount(Some(name.as_str()), fd_path(&console).as_str(), None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .step("console", || "bind pty over /dev/console".into())?;
    }
    let fds = [master.as_raw_fd()];
    let iov = [IoSlice::new(b"/dev/ptmx")];
    sendmsg::<()>(console_socket.as_raw_fd(), &iov, &[ControlMessage::ScmRights(&fds)], MsgFlags::MSG_NOSIGNAL, None)
        .step("console", || "send pty master to the console socket".into())?;
    drop(master);
    nix::unistd::setsid().step("console", || "setsid".into())?;
    nucleus_sys::tty::set_controlling_terminal(slave.as_fd()).step("console", || "set controlling terminal".into())?;
    nix::unistd::dup2_stdin(&slave).step("console", || "dup2 pty onto stdin".into())?;
    nix::unistd::dup2_stdout(&slave).step("console", || "dup2 pty onto stdout".into())?;
    nix::unistd::dup2_stderr(&slave).step("console", || "dup2 pty onto stderr".into())?;
    Ok(())
}
