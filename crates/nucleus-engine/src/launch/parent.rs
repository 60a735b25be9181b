//! The runtime side of starting a container.
//!
//! Role: parent, on the host, privileged. Builds the whole plan, clones the
//! init with its new namespaces, writes id maps, places it in its cgroups,
//! runs the runtime-namespace hooks, and waits for the init to report ready.
//! A `ChildGuard` kills and reaps the init if anything fails before then.

use super::cgroup_join::CgroupJoin;
use super::child::{self, ChildPlan, WaitFor};
use super::sync::{self, Msg};
use crate::error::{EngineError, Result};
use crate::hooks::{self, HookKind};
use crate::namespaces;
use crate::process::ProcessPlan;
use crate::rootfs::{self, RootfsPlan};
use crate::security::seccomp::{self, SeccompProgram};
use crate::state::{ContainerDir, ContainerState};
use crate::userns;
use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use nucleus_cgroups::Cgroup;
use nucleus_sys::clone::{clone3_into_cgroup, clone_fork, CloneResult};
use oci_spec::runtime::Spec;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Whether the init waits on `exec.fifo` (create) or on the sync socket (run).
#[derive(Debug)]
pub(crate) enum LaunchMode {
    Create { fifo: PathBuf },
    Run,
}

/// Inputs to [`launch`].
#[derive(Debug)]
pub(crate) struct LaunchRequest<'a> {
    pub id: &'a str,
    pub spec: &'a Spec,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub mode: LaunchMode,
    pub console_socket: Option<&'a Path>,
    /// A connected socket to send the pty master to, instead of a path.
    pub console_fd: Option<OwnedFd>,
    pub no_pivot: bool,
    pub preserve_fds: u32,
    pub cgroup: Option<&'a Cgroup>,
    /// The host's hierarchies, for `cgroup` mounts inside the container.
    pub cgroup_mounts: &'a [rootfs::CgroupHierarchy],
    /// Where compiled seccomp programs are cached.
    pub seccomp_cache: Option<&'a Path>,
    /// Where to save `state.json`; it is written while the init sets up.
    pub state_dir: Option<&'a ContainerDir>,
    /// The front end's attach step (see `crate::attach`).
    pub attach: Option<&'a mut dyn crate::attach::Attach>,
}

/// A container init that is set up and waiting to exec.
#[derive(Debug)]
pub(crate) struct Launched {
    pub pid: Pid,
    /// Parent end of the sync socket (run mode sends `Start` on it).
    pub sync: OwnedFd,
    pub(super) guard: ChildGuard,
}

impl Launched {
    /// The init is ours to keep: don't kill it on drop.
    pub(crate) fn disarm(&mut self) {
        self.guard.armed = false;
    }
}

/// Kills and reaps the child on drop unless disarmed.
#[derive(Debug)]
pub(super) struct ChildGuard {
    pub(super) pid: Pid,
    pub(super) pidfd: Option<OwnedFd>,
    pub(super) armed: bool,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        match &self.pidfd {
            Some(fd) => {
                let _ = nucleus_sys::pidfd::pidfd_send_signal(fd.as_fd(), Signal::SIGKILL as i32);
            }
            None => {
                let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
            }
        }
        // Bounded: a task stopped by the v1 freezer only dies once thawed.
        let start = std::time::Instant::now();
        let mut pause = std::time::Duration::from_micros(100);
        while matches!(
            waitpid(self.pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)),
            Ok(WaitStatus::StillAlive)
        ) {
            if start.elapsed() > REAP_TIMEOUT {
                tracing::warn!(pid = self.pid.as_raw(), "container init did not exit after SIGKILL (is its cgroup frozen?); not waiting");
                return;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(std::time::Duration::from_millis(10));
        }
    }
}

/// How long a failed launch waits for the killed init to exit.
const REAP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// How often a launch waiting for the init checks that its cgroup has not
/// been frozen meanwhile (a frozen init never answers).
const FROZEN_CHECK_MS: u16 = 1000;

/// The init's next frame; while none comes, fails if the cgroup is frozen.
fn next_frame(
    sock: std::os::fd::BorrowedFd<'_>,
    cgroup: Option<&Cgroup>,
) -> Result<std::result::Result<Option<sync::Frame>, Errno>> {
    use nix::poll::{poll, PollFd, PollFlags};
    loop {
        let mut fds = [PollFd::new(sock, PollFlags::POLLIN)];
        match poll(&mut fds, nix::poll::PollTimeout::from(FROZEN_CHECK_MS)) {
            Ok(0) => {
                if let Some(cg) = cgroup {
                    cg.ensure_thawed()?;
                }
            }
            Ok(_) => return Ok(sync::recv(sock)),
            Err(Errno::EINTR) => {}
            Err(e) => return Ok(Err(e)),
        }
    }
}

pub(super) fn ensure_single_threaded() -> Result<()> {
    // A thread joined a moment ago is counted until the kernel has reaped
    // it, a little after `join` returned, later still on a busy host: look
    // again for up to 100 ms.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(100);
    loop {
        let status = std::fs::read_to_string("/proc/self/status")
            .map_err(|e| EngineError::io("read", "/proc/self/status", e))?;
        let threads = status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .map(str::trim)
            .unwrap_or("?")
            .to_string();
        if threads == "1" {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(EngineError::invalid(
                "runtime",
                threads,
                "the engine must start containers from a single-threaded process",
            ));
        }
        std::thread::yield_now();
    }
}

fn hook_state(req: &LaunchRequest<'_>, pid: Pid) -> String {
    let annotations = req.spec.annotations().clone().unwrap_or_default();
    crate::state::oci_state(
        req.id,
        crate::state::Status::Creating,
        pid.as_raw(),
        req.bundle,
        &annotations,
    )
    .to_string()
}

/// Clones the init, drives it through setup, and returns once it is ready
/// to exec, with the container's state as saved. On error the init is
/// killed and reaped.
pub(crate) fn launch(mut req: LaunchRequest<'_>) -> Result<(Launched, ContainerState)> {
    let process_spec = req
        .spec
        .process()
        .as_ref()
        .ok_or_else(|| EngineError::invalid("process", "null", "process is required"))?;
    let process =
        crate::process::with_personality(ProcessPlan::from_spec(process_spec)?, req.spec)?;
    let mut ns = namespaces::plan(req.spec)?;
    if !ns.creates(CloneFlags::CLONE_NEWNS)
        && !ns.join.iter().any(|(f, _)| *f == CloneFlags::CLONE_NEWNS)
    {
        return Err(EngineError::invalid(
            "linux.namespaces",
            "[...]",
            "a mount namespace is required: nucleus never mounts into the runtime's own namespace, where a crash would leave the mounts on the host",
        ));
    }
    let time_offsets = super::timens::offsets_text(req.spec)?;
    if time_offsets.is_some() {
        let newtime = CloneFlags::from_bits_retain(libc::CLONE_NEWTIME);
        if !ns.creates(newtime) {
            return Err(EngineError::invalid(
                "linux.timeOffsets",
                "{...}",
                "needs a new time namespace (a `time` entry in linux.namespaces without a path)",
            ));
        }
        // The init enters the namespace the runtime prepares for its children.
        ns.create.remove(newtime);
    }
    let seccomp: Option<SeccompProgram> =
        match req.spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
            Some(profile) => Some(crate::security::seccomp_cache::compile_cached(
                profile,
                req.seccomp_cache,
            )?),
            None => None,
        };
    let console =
        crate::tty::console_socket(process.terminal, req.console_socket, req.console_fd.take())?;
    let fifo_fd = match &req.mode {
        LaunchMode::Create { fifo } => Some(make_fifo(fifo)?),
        LaunchMode::Run => None,
    };
    crate::fault::point("launch-fifo-made");
    let wait = match &fifo_fd {
        Some(fd) => WaitFor::Fifo(fd.as_fd()),
        None => WaitFor::Socket,
    };
    let landlock = crate::spec::landlock_policy(req.spec)?;
    let bind_sources = rootfs::open_bind_sources(req.spec, req.bundle, ns.in_userns())?;
    let overlay = crate::spec::rootfs_overlay(req.spec)?;
    // Resources are set on the (empty) cgroup before the init exists.
    if let Some(cg) = req.cgroup {
        let mut res = req
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().clone())
            .unwrap_or_default();
        // Unprivileged, the device controller cannot be set (v1's files
        // need CAP_SYS_ADMIN); the user namespace bounds devices instead:
        // no node can be made there, only bound from the host.
        res.set_devices(
            nix::unistd::geteuid()
                .is_root()
                .then(|| crate::devices::cgroup_rules(req.spec)),
        );
        cg.apply(&res)?;
    }
    // The fast join is for the direct clone only; the intermediate path
    // (joining pid/user namespaces) has the parent write cgroup.procs.
    let join = match req.cgroup {
        Some(cg) if !ns.needs_intermediate() => Some(CgroupJoin::open(cg)?),
        _ => None,
    };
    let idmap_userns = super::idmap::userns_fds(req.spec)?;
    let runtime_hooks = !HookKind::Prestart.of(req.spec).is_empty()
        || !HookKind::CreateRuntime.of(req.spec).is_empty();
    // A joined user namespace too: the init was forked from the runtime,
    // so once not dumpable its /proc entries need host privilege.
    let attach_before_go = ns.in_userns() && !nix::unistd::geteuid().is_root();
    let plan = ChildPlan {
        id: req.id,
        spec: req.spec,
        rootfs: RootfsPlan {
            spec: req.spec,
            rootfs: req.rootfs,
            bundle: req.bundle,
            in_userns: ns.in_userns(),
            cgroupns: ns.creates(CloneFlags::CLONE_NEWCGROUP)
                || ns
                    .join
                    .iter()
                    .any(|(f, _)| *f == CloneFlags::CLONE_NEWCGROUP),
            cgroups: req.cgroup_mounts,
            bind_sources: &bind_sources,
            overlay: overlay.as_deref(),
            idmap_userns: &idmap_userns,
        },
        namespaces: &ns,
        process: &process,
        restrictions: child::Restrictions {
            seccomp: seccomp.as_ref(),
            landlock: landlock.as_ref(),
            allow_degraded: crate::spec::allows_degraded(req.spec),
        },
        wait,
        state_lock: req.state_dir.map(|d| d.lock_fd()),
        console_socket: console.as_ref().map(|c| c.as_fd()),
        no_pivot: req.no_pivot,
        preserve_fds: req.preserve_fds,
        runtime_hooks,
        cgroup_tasks: join
            .as_ref()
            .map(|j| j.v1_tasks.as_slice())
            .unwrap_or_default(),
        late_dumpable: attach_before_go,
    };
    let (parent_sock, child_sock) =
        sync::pair().map_err(|e| EngineError::sys("create sync socket", e))?;

    if ns.creates(CloneFlags::CLONE_NEWUSER) && !nix::unistd::geteuid().is_root() {
        if let Some(reason) = userns::userns_disabled_reason() {
            return Err(EngineError::Rootless { reason });
        }
    }
    // A step working on threads of its own joins them before the clone.
    if let Some(step) = req.attach.as_deref_mut() {
        step.before_clone();
    }
    ensure_single_threaded()?;
    let children_timens = time_offsets
        .as_deref()
        .map(super::timens::ChildrenTimeNamespace::enter)
        .transpose()?;
    let mut in_v2 = false;
    let pid = if ns.needs_intermediate() {
        let (pid_r, pid_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| EngineError::sys("create pipe", e))?;
        // SAFETY: ensure_single_threaded just checked this process has one
        // thread, so the child may allocate and call any libc function; flag 0
        // is a plain fork.
        let cloned = unsafe { clone_fork(0) }
            .map_err(|e| EngineError::sys("clone the intermediate process", e))?;
        match cloned {
            CloneResult::Child => {
                drop(parent_sock);
                drop(pid_r);
                child::intermediate_main(&plan, child_sock, pid_w)
            }
            CloneResult::Parent(ipid) => {
                drop(pid_w);
                let mut buf = [0u8; 4];
                let n = nix::unistd::read(&pid_r, &mut buf)
                    .map_err(|e| EngineError::sys("read init pid", e))?;
                let _ = waitpid(ipid, None);
                let raw = if n == 4 {
                    i32::from_le_bytes(buf)
                } else {
                    -libc::EPIPE
                };
                if raw <= 0 {
                    return Err(EngineError::sys(
                        "join user/pid namespaces and clone the init",
                        Errno::from_raw(-raw),
                    ));
                }
                Pid::from_raw(raw)
            }
        }
    } else {
        let flags = ns.clone_flags().bits();
        let v2 = join.as_ref().and_then(|j| j.v2());
        let cloned = match v2 {
            // SAFETY: as for clone_fork below; `v2` is an open cgroup2 directory.
            Some(dir) => match unsafe { clone3_into_cgroup(flags, dir) } {
                Ok(r) => {
                    in_v2 = true;
                    Ok(r)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "clone3 into the cgroup failed; falling back to clone");
                    // SAFETY: see below.
                    unsafe { clone_fork(flags) }
                }
            },
            // SAFETY: ensure_single_threaded just checked this process has one
            // thread, so the child may use the allocator and any libc function
            // until it execs; the flags are namespace flags only (no CLONE_VM).
            None => unsafe { clone_fork(flags) },
        }
        .map_err(|e| EngineError::sys("clone the container init", e))?;
        match cloned {
            CloneResult::Child => {
                drop(parent_sock);
                child::main(&plan, child_sock)
            }
            CloneResult::Parent(pid) => pid,
        }
    };
    // Later children (hooks) start in the runtime's own time namespace again.
    drop(children_timens);
    drop(child_sock);
    let mut guard = ChildGuard {
        pid,
        pidfd: nucleus_sys::pidfd::pidfd_open(pid).ok(),
        armed: true,
    };
    tracing::debug!(id = req.id, pid = pid.as_raw(), "cloned container init");
    crate::fault::point("launch-cloned");

    if ns.in_userns() {
        let linux = req.spec.linux().as_ref();
        let uid = linux
            .and_then(|l| l.uid_mappings().clone())
            .unwrap_or_default();
        let gid = linux
            .and_then(|l| l.gid_mappings().clone())
            .unwrap_or_default();
        if ns.creates(CloneFlags::CLONE_NEWUSER) {
            userns::write_id_maps(pid.as_raw(), &uid, &gid)?;
        } else {
            userns::verify_joined_maps(pid.as_raw(), &uid, &gid)?;
        }
    }
    crate::fault::point("launch-maps-written");
    if let Some(cg) = req.cgroup {
        match &join {
            // The child joins v1 itself; v2 only needs the slow path if clone3 failed.
            Some(_) if in_v2 => {}
            Some(_) => {
                if let Some(dir) = cg.v2_dir() {
                    let path = dir.join("cgroup.procs");
                    std::fs::write(&path, pid.as_raw().to_string())
                        .map_err(|e| EngineError::io("write", path, e))?;
                }
            }
            None => cg.add_pid(pid.as_raw())?,
        }
    }
    if let Some(adj) = process.oom_score_adj {
        let path = format!("/proc/{}/oom_score_adj", pid.as_raw());
        std::fs::write(&path, adj.to_string())
            .map_err(|e| EngineError::io("write oomScoreAdj to", path, e))?;
    }
    let start_time = crate::state::proc_start_time(pid.as_raw())
        .map(|(t, _)| t)
        .unwrap_or(0);
    // Unprivileged, /proc/<init>/ns is ours only while the init is still
    // dumpable, that is before GO (see child::run): attach then. The
    // namespaces, maps and cgroups exist already.
    if attach_before_go {
        run_attach(&mut req, pid)?;
    }

    sync::send(
        parent_sock.as_raw_fd(),
        Msg::Go,
        i64::from(pid.as_raw()),
        "",
        None,
    )
    .map_err(|e| child_gone(&mut guard, e))?;
    crate::fault::point("launch-go-sent");
    // Written while the init mounts its root: on a 2-core host this costs
    // the start path nothing. If the init then fails, the caller's
    // reservation removes the directory.
    let state = initial_state(&req, pid, start_time);
    if let Some(dir) = req.state_dir {
        dir.save(&state)?;
    }
    crate::fault::point("launch-state-saved");
    // Namespaces exist and the init is blocked in setup: it cannot exec
    // before READY, so the workload never runs unattached.
    if !attach_before_go {
        run_attach(&mut req, pid)?;
    }
    loop {
        let frame =
            next_frame(parent_sock.as_fd(), req.cgroup)?.map_err(|e| child_gone(&mut guard, e))?;
        let Some(frame) = frame else {
            return Err(child_gone(&mut guard, Errno::EPIPE));
        };
        match frame.msg {
            Msg::RunRuntimeHooks => {
                let state = hook_state(&req, pid);
                hooks::run_all(HookKind::Prestart, req.spec, &state)?;
                hooks::run_all(HookKind::CreateRuntime, req.spec, &state)?;
                sync::send(parent_sock.as_raw_fd(), Msg::RuntimeHooksDone, 0, "", None)
                    .map_err(|e| child_gone(&mut guard, e))?;
            }
            Msg::Ready => {
                if let (Some(fd), Some(p)) = (frame.fd, seccomp.as_ref()) {
                    if let Some(path) = p.listener_path() {
                        let state = hook_state(&req, pid);
                        seccomp::send_to_listener(
                            path,
                            &state,
                            pid.as_raw(),
                            p.listener_metadata(),
                            fd.as_fd(),
                        )?;
                    }
                }
                break;
            }
            Msg::Error => return Err(frame.child_error("init")),
            other => {
                return Err(EngineError::Child {
                    step: "sync".into(),
                    detail: format!("unexpected message {other:?}"),
                });
            }
        }
    }
    crate::fault::point("launch-ready");
    Ok((
        Launched {
            pid,
            sync: parent_sock,
            guard,
        },
        state,
    ))
}

/// The front end's attach step, if any.
fn run_attach(req: &mut LaunchRequest<'_>, pid: Pid) -> Result<()> {
    if let Some(step) = req.attach.as_deref_mut() {
        step.attach(pid.as_raw())
            .map_err(|source| EngineError::Attach {
                pid: pid.as_raw(),
                source,
            })?;
    }
    Ok(())
}

/// Makes `exec.fifo` and opens it (O_PATH) for the init, which may not be
/// able to reach it by path (a user namespace, a non-root user). The mode
/// is set after mkfifo so the umask cannot narrow it: the init reopens it
/// for writing after it changed user, and the 0700 state directory is what
/// keeps everyone else out.
fn make_fifo(fifo: &Path) -> Result<OwnedFd> {
    use std::os::unix::fs::PermissionsExt;
    nix::unistd::mkfifo(fifo, nix::sys::stat::Mode::from_bits_truncate(0o622))
        .map_err(|e| EngineError::io("create exec fifo", fifo, e.into()))?;
    std::fs::set_permissions(fifo, std::fs::Permissions::from_mode(0o622))
        .map_err(|e| EngineError::io("chmod exec fifo", fifo, e))?;
    nix::fcntl::open(
        fifo,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| EngineError::io("open exec fifo", fifo, e.into()))
}

fn initial_state(req: &LaunchRequest<'_>, pid: Pid, start_time: u64) -> ContainerState {
    ContainerState {
        id: req.id.to_string(),
        pid: pid.as_raw(),
        pid_start_time: start_time,
        bundle: req.bundle.to_path_buf(),
        rootfs: req.rootfs.to_path_buf(),
        created: crate::timefmt::rfc3339(std::time::SystemTime::now()),
        annotations: req.spec.annotations().clone().unwrap_or_default(),
        cgroup: req.cgroup.cloned(),
        spec: req.spec.clone(),
    }
}

/// The child closed the socket or the send failed: say how it ended.
pub(super) fn child_gone(guard: &mut ChildGuard, errno: Errno) -> EngineError {
    let how = match waitpid(guard.pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => format!("exited with status {code}"),
        Ok(WaitStatus::Signaled(_, sig, _)) => format!("was killed by {sig}"),
        _ => format!("stopped responding ({errno})"),
    };
    EngineError::Child {
        step: "sync".into(),
        detail: format!("container init {how} during setup"),
    }
}
