//! The container's init between clone and execve.
//!
//! Role: child, inside the new namespaces, privileged (root on the host, or
//! root in its own user namespace). It reads a plan the parent built and
//! executes it in one fixed order; it never logs. Failures go to the parent
//! as one `Error` frame naming the step, then the child exits.
//!
//! The engine is single-threaded when it clones (checked in `parent`), so
//! the ordinary allocator is safe to use here.

use super::sync::{self, Msg};
use super::{StepContext, StepError};
use crate::hooks::{self, HookKind};
use crate::namespaces::NamespacePlan;
use crate::process::{self, ProcessPlan};
use crate::rootfs::{self, RootfsPlan};
use crate::security::seccomp::SeccompProgram;
use crate::state::Status;
use nix::errno::Errno;
use nix::fcntl::{open, openat, OFlag};
use nix::sched::{setns, CloneFlags};
use nix::sys::stat::Mode;
use nix::unistd::{setresgid, setresuid, Gid, Uid};
use oci_spec::runtime::Spec;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

/// How the init waits for the go-ahead to exec.
#[derive(Debug)]
pub(crate) enum WaitFor<'a> {
    /// `create`: block opening `exec.fifo` for writing until `start` reads
    /// it. The fd (O_PATH) was opened by the parent: the state directory
    /// may be out of reach once we are in a user namespace or another user.
    Fifo(BorrowedFd<'a>),
    /// `run`: a `Start` frame on the sync socket.
    Socket,
}

/// The kernel-enforced restrictions applied at the end of setup.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Restrictions<'a> {
    pub seccomp: Option<&'a SeccompProgram>,
    pub landlock: Option<&'a crate::security::landlock::LandlockPolicy>,
    pub allow_degraded: bool,
}

/// Everything the child needs, built by the parent before clone.
#[derive(Debug)]
pub(crate) struct ChildPlan<'a> {
    pub id: &'a str,
    pub spec: &'a Spec,
    pub rootfs: RootfsPlan<'a>,
    pub namespaces: &'a NamespacePlan,
    pub process: &'a ProcessPlan,
    pub restrictions: Restrictions<'a>,
    pub wait: WaitFor<'a>,
    /// The parent's state-directory lock: closed first thing, so the
    /// init never keeps the lock alive after the runtime dies.
    pub state_lock: Option<std::os::fd::RawFd>,
    pub console_socket: Option<BorrowedFd<'a>>,
    pub no_pivot: bool,
    pub preserve_fds: u32,
    pub runtime_hooks: bool,
    /// v1 `tasks` files the child writes `0` to, joining its cgroups itself.
    pub cgroup_tasks: &'a [OwnedFd],
    /// Stay dumpable until GO: an unprivileged parent writes the id maps
    /// and runs the attach step through /proc/<init> (decided by the parent:
    /// in here, geteuid() changes as soon as the maps are written).
    pub late_dumpable: bool,
}

/// Role: intermediate, on the host side of pid namespaces, privileged.
/// Joins the user and pid namespaces given by path, clones the init as a
/// sibling (CLONE_PARENT, so the runtime stays its parent), reports the
/// init's pid on `pid_pipe` and exits.
pub(crate) fn intermediate_main(plan: &ChildPlan<'_>, sync_fd: OwnedFd, pid_pipe: OwnedFd) -> ! {
    let result = (|| -> Result<i32, Errno> {
        for (flag, path) in plan
            .namespaces
            .join
            .iter()
            .filter(|(f, _)| crate::namespaces::is_early(*f))
        {
            let fd = open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())?;
            setns(fd.as_fd(), *flag)?;
        }
        let flags = plan.namespaces.clone_flags().bits() | libc::CLONE_PARENT;
        // SAFETY: this process is a single-threaded fork of the runtime (it was
        // checked before the first clone); flags hold no CLONE_VM.
        match unsafe { nucleus_sys::clone::clone_fork(flags) }? {
            nucleus_sys::clone::CloneResult::Child => main(plan, sync_fd),
            nucleus_sys::clone::CloneResult::Parent(pid) => Ok(pid.as_raw()),
        }
    })();
    let value = result.unwrap_or_else(|e| -(e as i32));
    let _ = nix::unistd::write(&pid_pipe, &value.to_le_bytes());
    // SAFETY: _exit skips the runtime's atexit handlers and destructors,
    // which belong to the parent's copy of this process.
    unsafe { libc::_exit(0) }
}

/// Entry point of the child. Never returns.
pub(crate) fn main(plan: &ChildPlan<'_>, sync_fd: OwnedFd) -> ! {
    let sock = sync_fd.as_fd();
    match run(plan, sock) {
        Ok(never) => match never {},
        Err(e) => fail(sock, e),
    }
}

pub(crate) enum Never {}

fn hook_state(plan: &ChildPlan<'_>, pid: i64, status: Status) -> String {
    let pid = i32::try_from(pid).unwrap_or(0);
    crate::state::oci_state(
        plan.id,
        status,
        pid,
        plan.rootfs.bundle,
        &plan.spec.annotations().clone().unwrap_or_default(),
    )
    .to_string()
}

fn run(plan: &ChildPlan<'_>, sock: BorrowedFd<'_>) -> Result<Never, StepError> {
    if let Some(fd) = plan.state_lock {
        // SAFETY: `fd` is this process's copy of the parent's lock file,
        // which nothing in the child owns or uses; closing it only drops our
        // reference to the shared open file description.
        unsafe { libc::close(fd) };
    }
    // Not dumpable until execve: processes in the container cannot open
    // /proc/<init>/exe (the runtime binary) or ptrace us (CVE-2019-5736).
    // An unprivileged parent writes our id maps itself, which it may only
    // while /proc/<init> is still its own: then this waits for sync 1
    // (no container process exists before it).
    let late_dumpable = plan.late_dumpable;
    if !late_dumpable {
        nix::sys::prctl::set_dumpable(false).step("init", || "clear dumpable".into())?;
    }
    let _ = nix::sys::prctl::set_name(c"nucleus:[init]");
    // The parent may block signals it forwards; the workload must not inherit that.
    nucleus_sys::signal::reset_signals().step("init", || "reset signal dispositions".into())?;
    // Before any hook runs and before seccomp (which may not allow
    // close_range): whatever the runtime inherited never reaches a hook or
    // the workload. Everything opened from here on is close-on-exec.
    nucleus_sys::fd::close_range_cloexec(3 + plan.preserve_fds)
        .step("init", || "mark fds close-on-exec".into())?;

    // Before anything else runs in it, the process joins its v1 cgroups.
    crate::launch::cgroup_join::join_v1_self(plan.cgroup_tasks)
        .step("cgroups", || "join v1 cgroups".into())?;

    // Sync 1: the parent has written our id maps (and, on the slow path, cgroups).
    let go = sync::recv(sock).step("sync", || "wait for the parent".into())?;
    let host_pid = match go {
        Some(f) if f.msg == Msg::Go => f.value,
        _ => {
            return Err(StepError::new(
                "sync",
                "parent went away before setup",
                Errno::EPIPE,
            ))
        }
    };
    if late_dumpable {
        nix::sys::prctl::set_dumpable(false).step("init", || "clear dumpable".into())?;
    }

    if plan.namespaces.creates(CloneFlags::CLONE_NEWCGROUP) {
        // Only now are we in our cgroups, so the new namespace is rooted there.
        nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
            .step("namespaces", || "unshare cgroup namespace".into())?;
    }
    for (flag, path) in plan
        .namespaces
        .join
        .iter()
        .filter(|(f, _)| !crate::namespaces::is_early(*f))
    {
        let fd = open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .step("namespaces", || format!("open `{}`", path.display()))?;
        setns(fd.as_fd(), *flag).step("namespaces", || format!("setns `{}`", path.display()))?;
    }
    if plan.namespaces.creates(CloneFlags::CLONE_NEWNET) {
        // A new network namespace has only loopback, and it starts down.
        nucleus_sys::net::set_loopback_up().step("network", || "bring up lo".into())?;
    }
    if plan.namespaces.in_userns() {
        // Become root of the user namespace now that the maps exist.
        setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
            .step("userns", || "setresgid 0".into())?;
        setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            .step("userns", || "setresuid 0".into())?;
    }

    let root = rootfs::prepare_root(&plan.rootfs)?;
    rootfs::mount_all(&plan.rootfs, root.as_fd())?;
    rootfs::ensure_cwd(root.as_fd(), &plan.process.cwd)?;

    if plan.runtime_hooks {
        sync::send(sock.as_raw_fd(), Msg::RunRuntimeHooks, 0, "", None)
            .step("sync", || "request runtime hooks".into())?;
        match sync::recv(sock).step("sync", || "wait for runtime hooks".into())? {
            Some(f) if f.msg == Msg::RuntimeHooksDone => {}
            _ => {
                return Err(StepError::new(
                    "sync",
                    "parent went away during hooks",
                    Errno::EPIPE,
                ))
            }
        }
    }
    hooks::run_all(
        HookKind::CreateContainer,
        plan.spec,
        &hook_state(plan, host_pid, Status::Creating),
    )
    .map_err(|e| StepError::new("createContainer hooks", e.to_string(), Errno::EIO))?;

    // Held across pivot_root: /proc/self/fd of the host's procfs lets us
    // reopen the parent's fifo fd for writing later.
    let fifo = match plan.wait {
        WaitFor::Fifo(fifo) => {
            let fds = open(
                "/proc/self/fd",
                OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .step("init", || "open /proc/self/fd".into())?;
            Some((fifo, fds))
        }
        WaitFor::Socket => None,
    };

    rootfs::switch_root(root.as_fd(), plan.no_pivot)?;
    drop(root);

    if let Some(h) = plan.spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(h).step("hostname", || format!("sethostname `{h}`"))?;
    }
    if let Some(d) = plan.spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        nucleus_sys::uts::setdomainname(d).step("hostname", || format!("setdomainname `{d}`"))?;
    }
    write_sysctls(plan.spec)?;
    rootfs::finish(plan.spec)?;

    match (plan.process.terminal, plan.console_socket) {
        (true, Some(sock)) => {
            let size = plan
                .spec
                .process()
                .as_ref()
                .and_then(|p| p.console_size())
                .map(|b| {
                    (
                        u16::try_from(b.height()).unwrap_or(u16::MAX),
                        u16::try_from(b.width()).unwrap_or(u16::MAX),
                    )
                });
            crate::tty::setup_console(sock, size, true, plan.process.uid)?
        }
        (true, None) => {
            return Err(StepError::new(
                "console",
                "process.terminal is true but no console socket was given",
                Errno::EINVAL,
            ))
        }
        (false, _) => {
            nix::unistd::setsid().step("init", || "setsid".into())?;
        }
    }

    let exe = restrict_and_report_ready(plan.process, plan.restrictions, sock)?;

    let started = match fifo {
        Some((fifo, fds)) => Some(open_fifo(fifo, &fds)?),
        None => {
            wait_for_start(sock)?;
            None
        }
    };

    let result = (|| {
        // Like runc, a hook without `env` sees the container process's environment.
        let process_env = plan
            .spec
            .process()
            .as_ref()
            .and_then(|p| p.env().as_deref())
            .unwrap_or_default();
        hooks::run_all_with_env(
            HookKind::StartContainer,
            plan.spec,
            &hook_state(plan, host_pid, Status::Running),
            process_env,
        )
        .map_err(|e| StepError::new("startContainer hooks", e.to_string(), Errno::EIO))?;
        if let Some(w) = &started {
            // `start` reads this byte, then waits for EOF: our close-on-exec
            // write end closes exactly when execve succeeds.
            nix::unistd::write(w, FIFO_GO).step("start", || "write exec fifo".into())?;
        }
        exec(&exe, plan.process)
    })();
    if let (Err(e), Some(w)) = (&result, &started) {
        // `create` has returned: `start`, on the fifo's other end, is the
        // one left to report this.
        let _ = nix::unistd::write(
            w,
            format!("{}{}: {}: {}", FIFO_ERROR, e.step, e.detail, e.errno.desc()).as_bytes(),
        );
    }
    result
}

/// What the init writes on `exec.fifo`: the go-ahead byte once the
/// startContainer hooks ran, or an error line if a step after that failed.
pub(crate) const FIFO_GO: &[u8] = b"0";
pub(crate) const FIFO_ERROR: &str = "E";

/// The tail shared by the init and exec'd processes: cwd, rlimits, user and
/// capabilities, no_new_privs, the executable check, seccomp (last), then
/// READY to the parent (with the seccomp notify fd, if any).
pub(crate) fn restrict_and_report_ready(
    process: &ProcessPlan,
    r: Restrictions<'_>,
    sock: BorrowedFd<'_>,
) -> Result<CString, StepError> {
    // chdir while the capabilities still allow it (as runc does); a cwd
    // only the new user can reach is retried after the switch.
    let cwd_early = nix::unistd::chdir(&process.cwd);
    process::apply_rlimits(process)?;
    process::apply_scheduling(process)?;
    // Without no_new_privs, seccomp and Landlock need CAP_SYS_ADMIN: load
    // them while we still have it (as runc does); the profile must then
    // allow the few calls that drop privileges.
    let mut notify_fd = None;
    let early = !process.no_new_privs;
    if early {
        apply_landlock(r)?;
        notify_fd = load_seccomp(r)?;
    }
    process::apply_identity(process)?;
    if cwd_early.is_err() {
        nix::unistd::chdir(&process.cwd).step("cwd", || {
            format!("chdir `{}` as uid {}", process.cwd.display(), process.uid)
        })?;
    }
    if process.no_new_privs {
        nix::sys::prctl::set_no_new_privs()
            .step("no_new_privs", || "prctl(PR_SET_NO_NEW_PRIVS)".into())?;
    }
    let exe = process::find_executable(process)?;
    if !early {
        apply_landlock(r)?;
        // seccomp last: everything after it is a handful of syscalls.
        notify_fd = load_seccomp(r)?;
    }
    sync::send(
        sock.as_raw_fd(),
        Msg::Ready,
        0,
        "",
        notify_fd.as_ref().map(|f| f.as_raw_fd()),
    )
    .step("sync", || "report ready".into())?;
    Ok(exe)
}

fn apply_landlock(r: Restrictions<'_>) -> Result<(), StepError> {
    match r.landlock {
        Some(policy) => policy
            .apply(r.allow_degraded)
            .map_err(|e| StepError::new("landlock", e.to_string(), Errno::EPERM)),
        None => Ok(()),
    }
}

fn load_seccomp(r: Restrictions<'_>) -> Result<Option<OwnedFd>, StepError> {
    match r.seccomp {
        Some(p) => p.load().step("seccomp", || "load filter".into()),
        None => Ok(None),
    }
}

/// Waits for the parent's `Start` frame (run and exec modes).
pub(crate) fn wait_for_start(sock: BorrowedFd<'_>) -> Result<(), StepError> {
    match sync::recv(sock).step("sync", || "wait for start".into())? {
        Some(f) if f.msg == Msg::Start => Ok(()),
        _ => Err(StepError::new(
            "sync",
            "parent went away before start",
            Errno::EPIPE,
        )),
    }
}

/// Reports a failed step to the parent (or, if it is gone, on stderr) and exits.
pub(crate) fn fail(sock: BorrowedFd<'_>, err: StepError) -> ! {
    let text = format!("{}: {}", err.detail, errno_text(err.errno));
    if sync::send(
        sock.as_raw_fd(),
        Msg::Error,
        err.errno as i64,
        &format!("{}\0{}", err.step, text),
        None,
    )
    .is_err()
    {
        // No parent to tell (create has returned): the container's stderr is all that is left.
        eprintln!("nucleus: {}: {}", err.step, text);
    }
    // SAFETY: _exit is async-signal-safe and skips atexit handlers and
    // destructors that belong to the parent's copy of this process.
    unsafe { libc::_exit(if err.step == "exec" { 127 } else { 1 }) }
}

/// strerror's text worded as Go's, and so runc's: lowercase. Docker's CLI
/// picks `docker run`'s exit code from it ("no such file or directory" is
/// 127, "permission denied" 126), case-sensitively.
fn errno_text(errno: Errno) -> String {
    let desc = errno.desc();
    let mut chars = desc.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_ascii_lowercase().to_string() + chars.as_str()
    })
}

fn open_fifo(fifo: BorrowedFd<'_>, fds: &OwnedFd) -> Result<OwnedFd, StepError> {
    let name = fifo.as_raw_fd().to_string();
    // Blocks until `start` opens the other end.
    openat(
        fds.as_fd(),
        Path::new(&name),
        OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .step("start", || "open exec fifo".into())
}

fn write_sysctls(spec: &Spec) -> Result<(), StepError> {
    let Some(map) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    let mut keys: Vec<_> = map.keys().collect();
    keys.sort();
    for key in keys {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        std::fs::write(&path, map[key].as_bytes())
            .step("sysctl", || format!("write `{}` to `{path}`", map[key]))?;
    }
    Ok(())
}

pub(crate) fn exec(exe: &CString, p: &ProcessPlan) -> Result<Never, StepError> {
    let err = nix::unistd::execve(exe, &p.args, &p.env).unwrap_err();
    Err(StepError::new(
        "exec",
        format!("execve `{}`", exe.to_string_lossy()),
        err,
    ))
}
