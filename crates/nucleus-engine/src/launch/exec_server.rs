//! A per-container exec server: one long-lived, single-threaded process
//! that sits in the container's cgroup and forks a worker per request, so
//! that an exec costs a fork instead of a runtime start plus a cgroup
//! migration (a v1 `cgroup.procs` write waits for an RCU grace period,
//! ~10-15 ms, and is most of a cold `exec`).
//!
//! Two ways to start one:
//! - [`serve`]: the calling process (`nucleus exec-server`, a binary the
//!   API starts for a sandbox it did not create) becomes the server; it
//!   moves itself into the cgroup (v1: `0` into `tasks`, which skips the
//!   global rwsem for a single-threaded process; v2: `cgroup.procs`);
//! - [`Bound::bind`] then [`Bound::fork`]: a container's monitor binds the
//!   socket (so connections queue from then on), reports the container
//!   started, and forks the server straight into the cgroup
//!   (`clone3(CLONE_INTO_CGROUP)` for v2, `0` into v1 `tasks`): no binary
//!   start and no grace period on the way to a sandbox's first exec.
//!
//! Protocol, one connection per command, on a unix stream socket (mode
//! 0600, and only peers with our effective uid are served):
//! - the client sends a JSON array of strings (the command line the
//!   worker runs) and a newline, with exactly three fds (stdin, stdout,
//!   stderr) attached as `SCM_RIGHTS` to its first byte;
//! - the worker installs the fds as 0, 1 and 2, calls the caller's
//!   [`ExecHandler::run`] (in practice the CLI's own `exec`, which
//!   validates the command line and applies every protection `nucleus
//!   exec` does), then writes its exit code as 4 bytes, little endian, and
//!   exits.
//!
//! Before it serves, the server reads what every exec needs once
//! ([`Prepared`]: the container's state, seccomp program and Landlock
//! policy); workers are forks and find it in memory.
//!
//! The worker inherits the server's cgroup membership, so
//! `launch_exec` finds the exec'd process already in place and skips the
//! write (see `Cgroup::holds`). The server exits when the container's init
//! does, and removes its socket and lock file (`<socket>.lock`, held
//! exclusively by the one server of a socket).

use super::cgroup_join::{join_v1_self, CgroupJoin};
use crate::error::{EngineError, Result};
use crate::security::landlock::LandlockPolicy;
use crate::security::seccomp::SeccompProgram;
use crate::state::{ContainerState, StateRoot, Status};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    getsockopt, recvmsg, sockopt, ControlMessageOwned, MsgFlags, UnixCredentials,
};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use nucleus_sys::clone::{clone3_into_cgroup, clone_fork, CloneResult};
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

/// What an exec server's workers run.
pub trait ExecHandler {
    /// In the server, once, before it serves: builds what every request
    /// needs (workers are forks and find it made).
    fn prepare(&self) {}
    /// In a worker: the request's command line, with the request's fds
    /// already installed as stdin, stdout and stderr; returns the exit
    /// code sent back to the client.
    fn run(&self, argv: Vec<String>) -> i32;
}

/// The comm name of an exec server (`ps` shows it; tests look for it).
pub const SERVER_COMM: &std::ffi::CStr = c"nucleus:[execd]";
/// The comm name of its workers, while their command runs.
const WORKER_COMM: &std::ffi::CStr = c"nucleus:[exec]";

/// The state of a container that can take execs.
fn live_state(root: &StateRoot, id: &str) -> Result<ContainerState> {
    let st = root.peek(id)?;
    let status = root.status_of(&st);
    if !matches!(status, Status::Running | Status::Created) {
        return Err(EngineError::WrongStatus {
            id: id.to_string(),
            status: status.to_string(),
            op: "serve execs for it",
        });
    }
    Ok(st)
}

/// Reads the seccomp program and Landlock policy once, for every worker.
fn prepare(root: &StateRoot, st: ContainerState) -> Result<()> {
    let seccomp = super::exec::compile_seccomp(&st.spec, Some(&root.seccomp_cache_dir()))?;
    let landlock = crate::spec::landlock_policy(&st.spec)?;
    let _ = PREPARED.set(Prepared {
        state: st,
        seccomp,
        landlock,
    });
    Ok(())
}

/// Serves exec requests for container `id` on `socket` until the
/// container's init exits. Joins the container's cgroup first (once, for
/// every request to come). `ready` is called once the socket accepts
/// connections. Must be called from a single-threaded process.
pub fn serve(
    root: &StateRoot,
    id: &str,
    socket: &Path,
    ready: &mut dyn FnMut(),
    handler: &dyn ExecHandler,
) -> Result<()> {
    let st = live_state(root, id)?;
    let init = nucleus_sys::pidfd::pidfd_open(Pid::from_raw(st.pid))
        .map_err(|e| EngineError::sys("open pidfd of container init", e))?;
    if let Some(cg) = &st.cgroup {
        super::parent::ensure_single_threaded()?;
        let join = CgroupJoin::open(cg)?;
        // v1: the single-threaded server moves itself (no global rwsem);
        // v2 has no such path for a process, only clone3 (see `Bound`).
        join_v1_self(&join.v1_tasks)
            .map_err(|e| EngineError::sys("join the container's v1 cgroups", e))?;
        if let Some(dir) = cg.v2_dir() {
            let path = dir.join("cgroup.procs");
            std::fs::write(&path, std::process::id().to_string())
                .map_err(|e| EngineError::io("write", path, e))?;
        }
    }
    let _ = nix::sys::prctl::set_name(SERVER_COMM);
    prepare(root, st)?;
    handler.prepare();
    let listener = bind(socket)?;
    ready();
    let result = accept_loop(&listener, init.as_fd(), handler);
    let _ = std::fs::remove_file(socket);
    result
}

/// An exec socket bound (and its lock taken) by a container's monitor,
/// before the server is forked: connections made from now on wait in the
/// backlog. Dropped unforked, it removes the socket and the lock file.
#[derive(Debug)]
pub struct Bound {
    id: String,
    socket: std::path::PathBuf,
    lock_path: std::path::PathBuf,
    listener: Option<UnixListener>,
    lock: Option<Flock<std::fs::File>>,
    init: OwnedFd,
    join: Option<CgroupJoin>,
    state: Option<ContainerState>,
}

impl Bound {
    /// Binds `socket` for container `id`, holding `<socket>.lock`;
    /// `None` when another server holds the lock. The caller must be
    /// single-threaded (it forks the server next).
    pub fn bind(root: &StateRoot, id: &str, socket: &Path) -> Result<Option<Bound>> {
        super::parent::ensure_single_threaded()?;
        let st = live_state(root, id)?;
        let init = nucleus_sys::pidfd::pidfd_open(Pid::from_raw(st.pid))
            .map_err(|e| EngineError::sys("open pidfd of container init", e))?;
        let join = st.cgroup.as_ref().map(CgroupJoin::open).transpose()?;
        let lock_path = socket.with_extension("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| EngineError::io("open", &lock_path, e))?;
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((_, Errno::EWOULDBLOCK)) => return Ok(None),
            Err((_, e)) => return Err(EngineError::sys("lock the exec socket", e)),
        };
        let mut bound = Bound {
            id: id.to_string(),
            socket: socket.to_path_buf(),
            lock_path,
            listener: None,
            lock: Some(lock),
            init,
            join,
            state: Some(st),
        };
        bound.listener = Some(bind(socket)?);
        Ok(Some(bound))
    }

    /// Forks the server into the container's cgroup; it serves with
    /// `handler` until the init exits. Returns its pid (a child of the
    /// caller, which reaps it).
    pub fn fork(mut self, root: &StateRoot, handler: &dyn ExecHandler) -> Result<Pid> {
        super::parent::ensure_single_threaded()?;
        let v2 = self.join.as_ref().and_then(|j| j.v2());
        let mut in_v2 = false;
        let cloned = match v2 {
            // SAFETY: ensure_single_threaded just checked that this process
            // has one thread, so the child may allocate and call any libc
            // function; flag 0 is a plain fork, and `dir` is an open
            // cgroup2 directory that outlives the call.
            Some(dir) => match unsafe { clone3_into_cgroup(0, dir) } {
                Ok(r) => {
                    in_v2 = true;
                    Ok(r)
                }
                // SAFETY: as above.
                Err(_) => unsafe { clone_fork(0) },
            },
            // SAFETY: as above.
            None => unsafe { clone_fork(0) },
        }
        .map_err(|e| EngineError::sys("fork the exec server", e))?;
        match cloned {
            CloneResult::Child => {
                let code = match self.serve_forked(root, in_v2, handler) {
                    Ok(()) => 0,
                    Err(e) => {
                        tracing::warn!(id = self.id, error = %e, "exec server stopped");
                        1
                    }
                };
                self.remove_files();
                // SAFETY: _exit skips the atexit handlers and destructors
                // that belong to the monitor's copy of this process.
                unsafe { libc::_exit(code) }
            }
            CloneResult::Parent(pid) => {
                // The child owns the socket and the lock from now on.
                self.listener = None;
                self.lock = None;
                Ok(pid)
            }
        }
    }

    /// Role: the exec server, forked by the container's monitor, on the
    /// host, in the container's cgroups.
    fn serve_forked(
        &mut self,
        root: &StateRoot,
        in_v2: bool,
        handler: &dyn ExecHandler,
    ) -> Result<()> {
        let _ = nix::sys::prctl::set_name(SERVER_COMM);
        let st = self.state.take().ok_or_else(|| {
            EngineError::invalid("exec server", &self.id, "its state was taken twice")
        })?;
        if let Some(join) = &self.join {
            join_v1_self(&join.v1_tasks)
                .map_err(|e| EngineError::sys("join the container's v1 cgroups", e))?;
            if let (false, Some(dir)) = (in_v2, st.cgroup.as_ref().and_then(|c| c.v2_dir())) {
                let path = dir.join("cgroup.procs");
                std::fs::write(&path, std::process::id().to_string())
                    .map_err(|e| EngineError::io("write", path, e))?;
            }
        }
        self.join = None;
        prepare(root, st)?;
        handler.prepare();
        let listener = self.listener.take().ok_or_else(|| {
            EngineError::invalid("exec server", &self.id, "its socket was taken twice")
        })?;
        // No heap trim here: the pages are the monitor's, shared until
        // written, and trimming would write them.
        accept_loop(&listener, self.init.as_fd(), handler)
    }

    fn remove_files(&self) {
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

impl Drop for Bound {
    fn drop(&mut self) {
        if self.listener.is_some() {
            self.remove_files();
        }
    }
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
    handler: &dyn ExecHandler,
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
        fork_worker(conn, listener, handler)?;
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

fn fork_worker(conn: UnixStream, listener: &UnixListener, handler: &dyn ExecHandler) -> Result<()> {
    super::parent::ensure_single_threaded()?;
    // SAFETY: ensure_single_threaded just checked that this process has
    // one thread, so the child may allocate and call any libc function;
    // flag 0 is a plain fork.
    match unsafe { clone_fork(0) }.map_err(|e| EngineError::sys("fork an exec worker", e))? {
        CloneResult::Child => {
            // The listener is close-on-exec; the worker itself never uses it.
            let _ = listener;
            let code = worker(&conn, handler);
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
fn worker(conn: &UnixStream, handler: &dyn ExecHandler) -> i32 {
    let _ = nix::sys::prctl::set_name(WORKER_COMM);
    let (argv, fds) = match receive(conn) {
        Ok(r) => r,
        Err(message) => {
            // The client's stderr never arrived: the message goes on the
            // connection's log only (our own stderr).
            tracing::warn!(%message, "exec request refused");
            return 255;
        }
    };
    // A received fd may itself be 0, 1 or 2 (when the server has one of
    // those closed): then one dup2 would overwrite another's source, a
    // dup2 onto itself would keep its close-on-exec flag, and the drop
    // below would close an installed stdio. Move all three above 2 first.
    let moved: nix::Result<Vec<OwnedFd>> = fds
        .iter()
        .map(|f| {
            nix::fcntl::fcntl(f, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3)).map(|raw| {
                // SAFETY: F_DUPFD_CLOEXEC returned a new fd that nothing else owns.
                unsafe { OwnedFd::from_raw_fd(raw) }
            })
        })
        .collect();
    drop(fds);
    let [stdin, stdout, stderr] = match moved.map(<[OwnedFd; 3]>::try_from) {
        Ok(Ok(fds)) => fds,
        Ok(Err(_)) => return 255,
        Err(e) => {
            tracing::warn!(error = %e, "exec worker: move the received fds");
            return 255;
        }
    };
    let installed = nix::unistd::dup2_stdin(&stdin)
        .and_then(|()| nix::unistd::dup2_stdout(&stdout))
        .and_then(|()| nix::unistd::dup2_stderr(&stderr));
    if let Err(e) = installed {
        tracing::warn!(error = %e, "exec worker: install stdio");
        return 255;
    }
    drop((stdin, stdout, stderr));
    handler.run(argv)
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
