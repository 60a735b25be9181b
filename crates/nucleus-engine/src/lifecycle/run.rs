//! `run`: create and start in one go. In the foreground the runtime stays as
//! the init's parent, forwards signals to it, and returns its exit code;
//! detached, it returns once the workload has been executed.

use super::delete::delete_known;
use super::{prepare, write_pid_file};
use crate::attach::Attach;
use crate::error::{EngineError, Result};
use crate::hooks::{self, HookKind};
use crate::launch::sync;
use crate::launch::{launch, LaunchMode, LaunchRequest};
use crate::state::{ContainerState, StateRoot, Status};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitStatus};
use std::os::fd::AsFd;
use std::path::Path;

/// Options of `run`, as runc takes them.
#[derive(Debug, Clone)]
pub struct RunOptions<'a> {
    pub bundle: &'a Path,
    pub console_socket: Option<&'a Path>,
    pub pid_file: Option<&'a Path>,
    pub no_pivot: bool,
    pub preserve_fds: u32,
    pub detach: bool,
    /// Keep the container's state after a foreground run exits.
    pub keep: bool,
    /// Kill the container after this long (foreground only).
    pub timeout: Option<std::time::Duration>,
}

/// Signals a foreground `run` forwards to the container.
pub(crate) const FORWARDED: [Signal; 8] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
];

/// Runs container `id`. Returns the workload's exit status (128+N if it was
/// killed by signal N); 0 when detached.
pub fn run(root: &StateRoot, id: &str, opts: &RunOptions<'_>) -> Result<i32> {
    run_with(root, id, opts, None)
}

/// [`run`], with a front end's attach step (see [`crate::attach`]).
pub fn run_with(
    root: &StateRoot,
    id: &str,
    opts: &RunOptions<'_>,
    attach: Option<&mut dyn Attach>,
) -> Result<i32> {
    if crate::backend::gvisor::selected(opts.bundle)? {
        return crate::backend::gvisor::run(root, id, opts, attach);
    }
    // Blocked before clone so no signal is lost; the child unblocks them.
    let blocked = BlockedSignals::block(!opts.detach)?;
    run_blocked(root, id, opts, &blocked.set, attach)
}

/// The signals a foreground run or exec forwards, blocked (so a signalfd can
/// read them) until dropped, when the previous mask comes back.
pub(crate) struct BlockedSignals {
    pub set: SigSet,
    old: Option<SigSet>,
}

impl BlockedSignals {
    pub(crate) fn block(enabled: bool) -> Result<BlockedSignals> {
        let mut set = SigSet::empty();
        for s in FORWARDED {
            set.add(s);
        }
        if !enabled {
            return Ok(BlockedSignals { set, old: None });
        }
        let mut old = SigSet::empty();
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))
            .map_err(|e| EngineError::sys("block signals", e))?;
        Ok(BlockedSignals {
            set,
            old: Some(old),
        })
    }
}

impl Drop for BlockedSignals {
    fn drop(&mut self) {
        if let Some(old) = &self.old {
            let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(old), None);
        }
    }
}

fn run_blocked(
    root: &StateRoot,
    id: &str,
    opts: &RunOptions<'_>,
    forwarded: &SigSet,
    mut attach: Option<&mut dyn Attach>,
) -> Result<i32> {
    let reborrowed = attach.as_mut().map(|a| &mut **a as &mut dyn Attach);
    let spawned = spawn_with(root, id, opts, reborrowed)?;
    if opts.detach {
        return Ok(0);
    }
    let deadline = opts.timeout.map(|t| std::time::Instant::now() + t);
    let code = match spawned.pty_master {
        Some(m) => crate::tty::proxy_until_exit(forwarded, spawned.pid, m, deadline)?,
        None => forward_until_exit(forwarded, spawned.pid, deadline)?,
    };
    crate::fault::point("run-exited");
    if let Some(step) = attach {
        step.exited();
    }
    let t = std::time::Instant::now();
    if !opts.keep {
        delete_known(root, spawned.state)?;
    }
    tracing::debug!(
        id,
        elapsed_us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX),
        "phase: delete"
    );
    Ok(code)
}

/// A started container whose init is a child of this process. The caller
/// relays its I/O, reaps it (`reap`) and deletes it; this is what a
/// foreground `run` or a per-container monitor builds on.
#[derive(Debug)]
pub struct Spawned {
    pub pid: nix::unistd::Pid,
    /// The pty master, when the process has a terminal and no console socket was given.
    pub pty_master: Option<std::os::fd::OwnedFd>,
    /// The state saved at start; a foreground run deletes from it without re-reading.
    state: ContainerState,
}

impl Spawned {
    /// A spawned container from another backend (its child is `pid`).
    pub(crate) fn new(pid: nix::unistd::Pid, state: ContainerState) -> Spawned {
        Spawned {
            pid,
            pty_master: None,
            state,
        }
    }

    /// Reaps the init if it has exited: exit code, or 128+N if killed by signal N.
    pub fn reap(&self) -> Result<Option<i32>> {
        reap(self.pid)
    }
}

/// Creates and starts container `id` and returns once the workload has
/// been executed. The init inherits this process's stdin, stdout and stderr.
pub fn spawn(root: &StateRoot, id: &str, opts: &RunOptions<'_>) -> Result<Spawned> {
    spawn_with(root, id, opts, None)
}

/// [`spawn`], with a front end's attach step (see [`crate::attach`]).
pub fn spawn_with(
    root: &StateRoot,
    id: &str,
    opts: &RunOptions<'_>,
    attach: Option<&mut dyn Attach>,
) -> Result<Spawned> {
    if crate::backend::gvisor::selected(opts.bundle)? {
        return crate::backend::gvisor::spawn(root, id, opts, attach);
    }
    let t = std::time::Instant::now();
    let p = prepare(root, id, opts.bundle)?;
    tracing::debug!(
        id,
        elapsed_us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX),
        "phase: load spec, reserve state, create cgroup"
    );
    let t = std::time::Instant::now();
    let terminal = p
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    // A foreground run with a terminal and no console socket proxies the pty itself.
    let (console_ours, console_fd) =
        crate::tty::local_console(terminal && opts.console_socket.is_none() && !opts.detach)?;
    let (mut launched, state) = launch(LaunchRequest {
        id,
        spec: &p.spec,
        bundle: &p.bundle,
        rootfs: &p.rootfs,
        mode: LaunchMode::Run,
        console_socket: opts.console_socket,
        console_fd,
        no_pivot: opts.no_pivot,
        preserve_fds: opts.preserve_fds,
        cgroup: p.reservation.cgroup.as_ref(),
        cgroup_mounts: &p.cgroup_mounts,
        seccomp_cache: Some(&root.seccomp_cache_dir()),
        state_dir: p.reservation.dir.as_ref(),
        // Reborrowed: the request's lifetime is shorter than the caller's.
        attach: attach.map(|a| a as &mut dyn Attach),
    })?;
    tracing::debug!(
        id,
        elapsed_us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX),
        "phase: launch init to ready"
    );
    let t = std::time::Instant::now();
    // End-of-file means execve succeeded (the child's end is close-on-exec).
    sync::start_and_confirm_exec(&launched.sync)?;
    crate::fault::point("run-started");
    tracing::debug!(
        id,
        elapsed_us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX),
        "phase: start, exec"
    );
    if let Some(path) = opts.pid_file {
        write_pid_file(path, state.pid)?;
    }
    if let Err(e) = hooks::run_all(
        HookKind::Poststart,
        &state.spec,
        &state.oci_state(Status::Running).to_string(),
    ) {
        tracing::warn!(id, error = %e, "poststart hook failed");
    }
    launched.disarm();
    p.reservation.disarm();
    let pty_master = crate::tty::receive_master(console_ours.as_ref())?;
    Ok(Spawned {
        pid: launched.pid,
        pty_master,
        state,
    })
}

/// Reaps the init once its pidfd is readable: exit code or 128+signal.
pub fn reap(pid: nix::unistd::Pid) -> Result<Option<i32>> {
    match waitpid(pid, None) {
        Ok(WaitStatus::Exited(_, code)) => Ok(Some(code)),
        Ok(WaitStatus::Signaled(_, sig, _)) => Ok(Some(128 + sig as i32)),
        Ok(_) => Ok(None),
        Err(e) => Err(EngineError::sys("reap the container init", e)),
    }
}

/// How long to block in poll before `deadline`; kills the init once it has passed.
pub(crate) fn poll_timeout(
    deadline: Option<std::time::Instant>,
    pidfd: std::os::fd::BorrowedFd<'_>,
    killed: &mut bool,
) -> PollTimeout {
    let Some(deadline) = deadline else {
        return PollTimeout::NONE;
    };
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    if left.is_zero() {
        if !*killed {
            tracing::warn!("timeout reached: killing the container");
            let _ = nucleus_sys::pidfd::pidfd_send_signal(pidfd, libc::SIGKILL);
            *killed = true;
        }
        return PollTimeout::NONE;
    }
    PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)
}

pub(crate) fn forward_until_exit(
    signals: &SigSet,
    pid: nix::unistd::Pid,
    deadline: Option<std::time::Instant>,
) -> Result<i32> {
    let sfd = SignalFd::with_flags(signals, SfdFlags::SFD_CLOEXEC)
        .map_err(|e| EngineError::sys("create signalfd", e))?;
    let pidfd = nucleus_sys::pidfd::pidfd_open(pid)
        .map_err(|e| EngineError::sys("open pidfd of container init", e))?;
    let mut killed = false;
    loop {
        let timeout = poll_timeout(deadline, pidfd.as_fd(), &mut killed);
        let mut fds = [
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, timeout) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(EngineError::sys("wait for the container", e)),
            Ok(_) => {}
        }
        if fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN))
        {
            if let Ok(Some(info)) = sfd.read_signal() {
                let sig = i32::try_from(info.ssi_signo).unwrap_or(libc::SIGTERM);
                tracing::debug!(signal = sig, "forwarding signal to container");
                let _ = nucleus_sys::pidfd::pidfd_send_signal(pidfd.as_fd(), sig);
            }
        }
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            if let Some(code) = reap(pid)? {
                return Ok(code);
            }
        }
    }
}
