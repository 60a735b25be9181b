//! A per-container exec server: one long-lived, single-threaded process
//! that sits in the container's cgroup and forks a worker per request, so
//! that an exec costs a fork instead of a runtime start plus a cgroup
//! migration (a v1 `cgroup.procs` write waits for an RCU grace period,
//! ~10-15 ms, and is most of a cold `exec`).
//!
//! Protocol, one connection per command, on a unix stream socket (mode
//! 0600, and only peers with our effective uid are served):
//! - the client sends a JSON array of strings (the command line the
//!   worker runs) and a newline, with exactly three fds (stdin, stdout,
//!   stderr) attached as `SCM_RIGHTS` to its first byte;
//! - the worker installs the fds as 0, 1 and 2, calls the caller's `run`
//!   (in practice the CLI's own `exec`, which validates the command line
//!   and applies every protection `nucleus exec` does), then writes its
//!   exit code as 4 bytes, little endian, and exits.
//!
//! Before it serves, the server reads what every exec needs once
//! ([`Prepared`]: the container's state, seccomp program and Landlock
//! policy); workers are forks and find it in memory.
//!
//! The worker inherits the server's cgroup membership, so
//! `launch_exec` finds the exec'd process already in place and skips the
//! write (see `Cgroup::holds`). The server exits when the container's init
//! does, and removes its socket.

use crate::error::{EngineError, Result};
use crate::security::landlock::LandlockPolicy;
use crate::security::seccomp::SeccompProgram;
use crate::state::{ContainerState, StateRoot, Status};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    getsockopt, recvmsg, sockopt, ControlMessageOwned, MsgFlags, UnixCredentials,
};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use nucleus_sys::clone::{clone_fork, CloneResult};
use std::io::{IoSliceMut, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::OnceLock;

/// The longest request message accepted.
const REQUEST_LIMIT: usize = 256 * 1024;
/// How often the server wakes to reap finished workers when idle.
const REAP_EVERY_MS: u16 = 1000;

/// What every exec into the server's container needs, read once before
/// any worker is forked. The init's pid does not change while the server
/// lives (it exits with the init), and nothing an exec uses of the state
/// does either (`update` rewrites only resources, which exec ignores);
/// the status is still checked live on every exec.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub state: ContainerState,
    pub seccomp: Option<SeccompProgram>,
    pub landlock: Option<LandlockPolicy>,
}

static PREPARED: OnceLock<Prepared> = OnceLock::new();

/// Container `id`'s prepared state, in its exec server and workers.
pub(crate) fn prepared(id: &str) -> Option<&'static Prepared> {
    PREPARED.get().filter(|p| p.state.id == id)
}

/// What a worker runs: the request's command line, with the request's
/// fds already installed as stdin, stdout and stderr; returns the exit
/// code sent back to the client.
pub type ExecRunner<'a> = &'a dyn Fn(Vec<String>) -> i32;

/// Serves exec requests for container `id` on `socket` until the
/// container's init exits. Joins the container's cgroup first (once, for
/// every request to come). `ready` is called once the socket accepts
/// connections. Must be called from a single-threaded process.
pub fn serve(
    root: &StateRoot,
    id: &str,
    socket: &Path,
    ready: &mut dyn FnMut(),
    run: ExecRunner<'_>,
) -> Result<()> {
    let st = root.peek(id)?;
    let status = root.status_of(&st);
    if !matches!(status, Status::Running | Status::Created) {
        return Err(EngineError::WrongStatus {
            id: id.to_string(),
            status: status.to_string(),
            op: "serve execs for it",
        });
    }
    let init = nucleus_sys::pidfd::pidfd_open(Pid::from_raw(st.pid))
        .map_err(|e| EngineError::sys("open pidfd of container init", e))?;
    if let Some(cg) = &st.cgroup {
        cg.add_pid(std::process::id() as i32)?;
    }
    let seccomp = super::exec::compile_seccomp(&st.spec, Some(&root.seccomp_cache_dir()))?;
    let landlock = crate::spec::landlock_policy(&st.spec)?;
    let _ = PREPARED.set(Prepared {
        state: st,
        seccomp,
        landlock,
    });
    let listener = bind(socket)?;
    ready();
    let result = accept_loop(&listener, init.as_fd(), run);
    let _ = std::fs::remove_file(socket);
    result
}

/// Binds `socket` with mode 0600 from the start (umask), replacing a
/// stale file.
fn bind(socket: &Path) -> Result<UnixListener> {
    match std::fs::remove_file(socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(EngineError::io("remove stale socket", socket, e)),
    }
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(socket);
    nix::sys::stat::umask(old);
    bound.map_err(|e| EngineError::io("bind exec socket", socket, e))
}

fn accept_loop(
    listener: &UnixListener,
    init: std::os::fd::BorrowedFd<'_>,
    run: ExecRunner<'_>,
) -> Result<()> {
    loop {
        let mut fds = [
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(init, PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::from(REAP_EVERY_MS)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(EngineError::sys("poll the exec socket", e)),
        }
        reap_workers();
        let init_gone = fds[1].revents().is_some_and(|r| !r.is_empty());
        let pending = fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN));
        if init_gone {
            return Ok(());
        }
        if !pending {
            continue;
        }
        let conn = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(EngineError::io("accept on", "the exec socket", e)),
        };
        if !same_user(&conn) {
            continue;
        }
        fork_worker(conn, listener, run)?;
    }
}

/// Only peers with our effective uid may run commands.
fn same_user(conn: &UnixStream) -> bool {
    let euid = nix::unistd::geteuid().as_raw();
    getsockopt(conn, sockopt::PeerCredentials).is_ok_and(|c: UnixCredentials| c.uid() == euid)
}

fn reap_workers() {
    while let Ok(s) = waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
        if s == WaitStatus::StillAlive {
            break;
        }
    }
}

fn fork_worker(conn: UnixStream, listener: &UnixListener, run: ExecRunner<'_>) -> Result<()> {
    super::parent::ensure_single_threaded()?;
    // SAFETY: ensure_single_threaded just checked that this process has
    // one thread, so the child may allocate and call any libc function;
    // flag 0 is a plain fork.
    match unsafe { clone_fork(0) }.map_err(|e| EngineError::sys("fork an exec worker", e))? {
        CloneResult::Child => {
            // The listener is close-on-exec; the worker itself never uses it.
            let _ = listener;
            let code = worker(&conn, run);
            let _ = std::io::stdout().flush();
            let _ = std::io::stderr().flush();
            let _ = (&conn).write_all(&code.to_le_bytes());
            // SAFETY: _exit skips the atexit handlers and destructors that
            // belong to the server's copy of this process.
            unsafe { libc::_exit(0) }
        }
        CloneResult::Parent(_) => Ok(()),
    }
}

/// Role: a worker, forked per request. Receives the command line and
/// fds, installs them, and runs.
fn worker(conn: &UnixStream, run: ExecRunner<'_>) -> i32 {
    let (argv, fds) = match receive(conn) {
        Ok(r) => r,
        Err(message) => {
            // The client's stderr never arrived: the message goes on the
            // connection's log only (our own stderr).
            tracing::warn!(%message, "exec request refused");
            return 255;
        }
    };
    let [stdin, stdout, stderr] = fds;
    let installed = nix::unistd::dup2_stdin(&stdin)
        .and_then(|()| nix::unistd::dup2_stdout(&stdout))
        .and_then(|()| nix::unistd::dup2_stderr(&stderr));
    if let Err(e) = installed {
        tracing::warn!(error = %e, "exec worker: install stdio");
        return 255;
    }
    drop((stdin, stdout, stderr));
    run(argv)
}

/// Reads the request: the fds come with the first bytes, the rest of the
/// line may follow in more reads.
fn receive(conn: &UnixStream) -> std::result::Result<(Vec<String>, [OwnedFd; 3]), String> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 3]);
    let mut fds = Vec::new();
    let (n, truncated) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| format!("recvmsg: {e}"))?;
        for c in msg.cmsgs().map_err(|e| format!("cmsgs: {e}"))? {
            if let ControlMessageOwned::ScmRights(raw) = c {
                // SAFETY: SCM_RIGHTS fds are new descriptors of this
                // process that nothing else owns.
                fds.extend(raw.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
            }
        }
        (msg.bytes, msg.flags.contains(MsgFlags::MSG_CTRUNC))
    };
    if truncated {
        return Err("request: more than 3 fds".into());
    }
    let fds: [OwnedFd; 3] = fds.try_into().map_err(|v: Vec<OwnedFd>| {
        format!(
            "request: {} fds, expected 3 (stdin, stdout, stderr)",
            v.len()
        )
    })?;
    let mut line = buf[..n].to_vec();
    while !line.ends_with(b"\n") {
        if line.len() > REQUEST_LIMIT {
            return Err(format!("request: longer than {REQUEST_LIMIT} bytes"));
        }
        match std::io::Read::read(&mut &*conn, &mut buf) {
            Ok(0) => return Err("request: ended before its newline".into()),
            Ok(k) => line.extend_from_slice(&buf[..k]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("request: read: {e}")),
        }
    }
    let argv: Vec<String> = serde_json::from_slice(&line)
        .map_err(|e| format!("request: not a JSON array of strings: {e}"))?;
    Ok((argv, fds))
}
