//! Starting an extra process inside a running container (`exec`).
//!
//! Role of each process:
//! - parent: the runtime, on the host; places the new process in the
//!   container's cgroups and waits for it to report ready;
//! - intermediate: a fork of the parent that joins every namespace of the
//!   container's init at once (`setns` on its pidfd) and clones the exec
//!   process as the parent's child (the pid namespace applies to children);
//! - exec process: inside the container, takes the container's limits,
//!   user, capabilities, no_new_privs and seccomp filter, then execs.

use super::child::{self, Never};
use super::parent::{child_gone, ensure_single_threaded, ChildGuard, Launched};
use super::sync::{self, Msg};
use super::{StepContext, StepError};
use crate::error::{EngineError, Result};
use crate::process::ProcessPlan;
use crate::security::seccomp::{self, SeccompProgram};
use nix::errno::Errno;
use nix::sched::{setns, CloneFlags};
use nix::unistd::Pid;
use nucleus_cgroups::Cgroup;
use nucleus_sys::clone::{clone_fork, CloneResult};
use oci_spec::runtime::{Process, Spec};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

/// Inputs to [`launch_exec`].
#[derive(Debug)]
pub(crate) struct ExecRequest<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    pub init_pid: i32,
    /// The container's spec: its namespaces and seccomp profile apply.
    pub spec: &'a Spec,
    pub cgroup: Option<&'a Cgroup>,
    pub process: &'a Process,
    pub console_socket: Option<&'a Path>,
    pub console_fd: Option<OwnedFd>,
    pub preserve_fds: u32,
    pub seccomp_cache: Option<&'a Path>,
    /// In an exec server: `spec`'s seccomp program and Landlock policy, made once.
    pub prepared: Option<&'a super::exec_server::Prepared>,
}

struct ExecPlan<'a> {
    process: &'a ProcessPlan,
    restrictions: child::Restrictions<'a>,
    console: Option<BorrowedFd<'a>>,
    console_size: Option<(u16, u16)>,
    preserve_fds: u32,
}

/// Namespace flags of every namespace the container has (new or joined).
fn container_namespaces(spec: &Spec) -> CloneFlags {
    let mut flags = CloneFlags::empty();
    for ns in spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
    {
        flags |= crate::namespaces::flag_of(ns.typ());
    }
    flags
}

/// The container's seccomp program (from the cache when it has it).
pub(crate) fn compile_seccomp(spec: &Spec, cache: Option<&Path>) -> Result<Option<SeccompProgram>> {
    match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(profile) => Ok(Some(crate::security::seccomp_cache::compile_cached(
            profile, cache,
        )?)),
        None => Ok(None),
    }
}

/// Clones a process into the container and drives it to READY.
pub(crate) fn launch_exec(mut req: ExecRequest<'_>) -> Result<Launched> {
    let process = crate::process::with_personality(ProcessPlan::from_spec(req.process)?, req.spec)?;
    let (compiled, policy);
    let (seccomp, landlock): (Option<&SeccompProgram>, _) = match req.prepared {
        Some(p) => (p.seccomp.as_ref(), p.landlock.as_ref()),
        None => {
            compiled = compile_seccomp(req.spec, req.seccomp_cache)?;
            policy = crate::spec::landlock_policy(req.spec)?;
            (compiled.as_ref(), policy.as_ref())
        }
    };
    let console =
        crate::tty::console_socket(process.terminal, req.console_socket, req.console_fd.take())?;
    let console_size = req.process.console_size().map(|b| {
        (
            u16::try_from(b.height()).unwrap_or(u16::MAX),
            u16::try_from(b.width()).unwrap_or(u16::MAX),
        )
    });
    let plan = ExecPlan {
        process: &process,
        restrictions: child::Restrictions {
            seccomp,
            landlock,
            allow_degraded: crate::spec::allows_degraded(req.spec),
        },
        console: console.as_ref().map(|c| c.as_fd()),
        console_size,
        preserve_fds: req.preserve_fds,
    };
    let init_pidfd = nucleus_sys::pidfd::pidfd_open(Pid::from_raw(req.init_pid))
        .map_err(|e| EngineError::sys("open pidfd of container init", e))?;
    let flags = container_namespaces(req.spec);
    let (parent_sock, child_sock) =
        sync::pair().map_err(|e| EngineError::sys("create sync socket", e))?;
    let (pid_r, pid_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| EngineError::sys("create pipe", e))?;

    ensure_single_threaded()?;
    // SAFETY: ensure_single_threaded just checked this process has one
    // thread, so the child may allocate and call any libc function; flag 0
    // is a plain fork.
    let cloned = unsafe { clone_fork(0) }
        .map_err(|e| EngineError::sys("clone the intermediate process", e))?;
    let ipid = match cloned {
        CloneResult::Child => {
            drop(parent_sock);
            drop(pid_r);
            intermediate(&plan, init_pidfd.as_fd(), flags, child_sock, pid_w)
        }
        CloneResult::Parent(ipid) => ipid,
    };
    drop(child_sock);
    drop(pid_w);
    let mut buf = [0u8; 4];
    let n =
        nix::unistd::read(&pid_r, &mut buf).map_err(|e| EngineError::sys("read exec pid", e))?;
    let _ = nix::sys::wait::waitpid(ipid, None);
    let raw = if n == 4 {
        i32::from_le_bytes(buf)
    } else {
        -libc::EPIPE
    };
    if raw <= 0 {
        return Err(EngineError::sys(
            "join the container's namespaces",
            Errno::from_raw(-raw),
        ));
    }
    let pid = Pid::from_raw(raw);
    let mut guard = ChildGuard {
        pid,
        pidfd: nucleus_sys::pidfd::pidfd_open(pid).ok(),
        armed: true,
    };
    tracing::debug!(pid = raw, "exec process cloned");
    if let Some(cg) = req.cgroup {
        // Forked from a caller already in the container's cgroup (the exec
        // server), the process is in it too: a write would only cost time.
        if !cg.holds(raw) {
            cg.add_pid(raw)?;
        }
    }
    if let Some(adj) = process.oom_score_adj {
        let path = format!("/proc/{raw}/oom_score_adj");
        std::fs::write(&path, adj.to_string())
            .map_err(|e| EngineError::io("write oomScoreAdj to", path, e))?;
    }
    sync::send(parent_sock.as_raw_fd(), Msg::Go, i64::from(raw), "", None)
        .map_err(|e| child_gone(&mut guard, e))?;
    match sync::recv(parent_sock.as_fd()).map_err(|e| child_gone(&mut guard, e))? {
        Some(f) if f.msg == Msg::Ready => {
            // A NOTIFY profile: the agent on listenerPath gets this process's fd too.
            if let (Some(fd), Some(p)) = (f.fd, seccomp) {
                if let Some(path) = p.listener_path() {
                    let annotations = req.spec.annotations().clone().unwrap_or_default();
                    let state = crate::state::oci_state(
                        req.id,
                        crate::state::Status::Running,
                        req.init_pid,
                        req.bundle,
                        &annotations,
                    )
                    .to_string();
                    seccomp::send_to_listener(
                        path,
                        &state,
                        raw,
                        p.listener_metadata(),
                        fd.as_fd(),
                    )?;
                }
            }
        }
        Some(f) if f.msg == Msg::Error => return Err(f.child_error("exec")),
        _ => return Err(child_gone(&mut guard, Errno::EPIPE)),
    }
    Ok(Launched {
        pid,
        sync: parent_sock,
        guard,
    })
}

/// Role: intermediate, host pid namespace, privileged. Joins the init's
/// namespaces, clones the exec process as our parent's child, reports its
/// pid and exits.
fn intermediate(
    plan: &ExecPlan<'_>,
    init: BorrowedFd<'_>,
    flags: CloneFlags,
    sock: OwnedFd,
    pid_pipe: OwnedFd,
) -> ! {
    let result = (|| -> std::result::Result<i32, Errno> {
        // One call joins them all, user namespace first, as of Linux 5.8.
        setns(init, flags)?;
        // SAFETY: this process is a single-threaded fork of the runtime;
        // CLONE_PARENT has no memory-sharing effect.
        match unsafe { clone_fork(libc::CLONE_PARENT) }? {
            CloneResult::Child => exec_main(plan, sock),
            CloneResult::Parent(pid) => Ok(pid.as_raw()),
        }
    })();
    let value = result.unwrap_or_else(|e| -(e as i32));
    let _ = nix::unistd::write(&pid_pipe, &value.to_le_bytes());
    // SAFETY: _exit skips atexit handlers and destructors that belong to the
    // runtime's copy of this process.
    unsafe { libc::_exit(0) }
}

/// Role: the exec process, inside all the container's namespaces.
fn exec_main(plan: &ExecPlan<'_>, sock: OwnedFd) -> ! {
    match exec_steps(plan, sock.as_fd()) {
        Ok(never) => match never {},
        Err(e) => child::fail(sock.as_fd(), e),
    }
}

fn exec_steps(plan: &ExecPlan<'_>, sock: BorrowedFd<'_>) -> std::result::Result<Never, StepError> {
    nix::sys::prctl::set_dumpable(false).step("exec", || "clear dumpable".into())?;
    nucleus_sys::signal::reset_signals().step("exec", || "reset signal dispositions".into())?;
    // Before seccomp, which may not allow close_range (see child::run).
    nucleus_sys::fd::close_range_cloexec(3 + plan.preserve_fds)
        .step("exec", || "mark fds close-on-exec".into())?;
    match sync::recv(sock).step("sync", || "wait for the parent".into())? {
        Some(f) if f.msg == Msg::Go => {}
        _ => {
            return Err(StepError::new(
                "sync",
                "parent went away before setup",
                Errno::EPIPE,
            ))
        }
    }
    if plan.process.terminal {
        if let Some(console) = plan.console {
            crate::tty::setup_console(console, plan.console_size, false, plan.process.uid)?;
        }
    }
    let exe = child::restrict_and_report_ready(plan.process, plan.restrictions, sock)?;
    child::wait_for_start(sock)?;
    child::exec(&exe, plan.process)
}
