//! The per-container monitor of a detached run. No daemon: each detached
//! sandbox gets one small process (its own session) that
//! - creates and starts the container with `lifecycle::spawn_with` (running
//!   the network attachment step), so it is the init's parent and reaps it;
//! - holds the container's stdio (stdin /dev/null, stdout and stderr pipes)
//!   and writes them to the size-capped JSON log;
//! - runs the sandbox's side tasks (`side_task`) alongside the container;
//! - enforces the timeout, records the exit status in `<bundle>/exit.json`,
//!   and with `rm` deletes the container.
//!
//! The monitor is a re-executed binary, not a fork: the front ends have no
//! `unsafe`, and a fork of a threaded server would be. [`start`] runs
//! `EXE --root ROOT --log BUNDLE/monitor.log [--debug] __monitor ARGS`;
//! the binary must send `__monitor ARGS` to [`MonitorArgs::parse`] and
//! [`serve`]. The monitor's stdout is a pipe back to the starter that
//! carries one line, `ok` or `err KIND MESSAGE`, once the workload runs.
//! It has no threads and one 8 KiB read buffer.

use crate::clock;
use crate::error::{render_chain, LaunchFailure, Result, SandboxError};
use crate::logs::{LineSplitter, LogWriter, MAX_LOG_BYTES};
use crate::network::{EngineStep, NetworkAttach};
use crate::side_task::{SideTask, SideTasks, TaskContext};
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nucleus_engine::lifecycle::{self, RunOptions};
use nucleus_engine::state::StateRoot;
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

pub const EXIT_FILE: &str = "exit.json";
/// The monitor's own diagnostics; its presence marks a monitored container.
pub const MONITOR_LOG: &str = "monitor.log";
/// The hidden verb the monitor binary answers to.
pub const MONITOR_VERB: &str = "__monitor";
/// How long to keep reading output after the init has exited.
const DRAIN: Duration = Duration::from_millis(500);

/// What the monitor is asked to do: the part of its argv after `__monitor`.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorArgs {
    pub id: String,
    pub bundle: PathBuf,
    /// Kill the container after this long.
    pub timeout: Option<Duration>,
    /// Delete the container once it has exited.
    pub rm: bool,
}

impl MonitorArgs {
    /// `--id ID --bundle DIR [--timeout SECS] [--rm]`.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![
            "--id".into(),
            self.id.clone().into(),
            "--bundle".into(),
            self.bundle.clone().into(),
        ];
        if let Some(t) = self.timeout {
            a.push("--timeout".into());
            a.push(t.as_secs_f64().to_string().into());
        }
        if self.rm {
            a.push("--rm".into());
        }
        a
    }

    /// Parses what `to_args` wrote.
    pub fn parse(args: &[String]) -> Result<MonitorArgs> {
        let bad = |v: &str| SandboxError::MonitorArgs { arg: v.to_string() };
        let (mut id, mut bundle, mut timeout, mut rm) = (None, None, None, false);
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--id" => id = it.next().cloned(),
                "--bundle" => bundle = it.next().map(PathBuf::from),
                "--timeout" => {
                    let v = it.next().ok_or_else(|| bad(a))?;
                    timeout = Some(Duration::from_secs_f64(crate::parse::timeout(v)?));
                }
                "--rm" => rm = true,
                other => return Err(bad(other)),
            }
        }
        match (id, bundle) {
            (Some(id), Some(bundle)) => Ok(MonitorArgs {
                id,
                bundle,
                timeout,
                rm,
            }),
            _ => Err(bad(&args.join(" "))),
        }
    }
}

/// The binary to run as monitor and its diagnostics switch.
#[derive(Debug, Clone)]
pub struct MonitorCommand {
    pub exe: PathBuf,
    pub debug: bool,
}

impl MonitorCommand {
    /// This process's own executable (the `nucleus` binary).
    pub fn current_exe(debug: bool) -> Result<MonitorCommand> {
        let exe = std::env::current_exe().map_err(|e| SandboxError::MonitorStart {
            reason: format!("cannot find the nucleus binary: {e}"),
        })?;
        Ok(MonitorCommand { exe, debug })
    }
}

/// How a container ended, as `ps` and `inspect` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitRecord {
    pub exit_code: i32,
    pub finished_at: String,
    #[serde(default)]
    pub timed_out: bool,
}

impl ExitRecord {
    pub fn read(bundle: &Path) -> Option<ExitRecord> {
        serde_json::from_slice(&std::fs::read(bundle.join(EXIT_FILE)).ok()?).ok()
    }

    /// Written with rename, so a reader never sees half a record.
    pub fn write(&self, bundle: &Path) -> Result<()> {
        let tmp = bundle.join(".exit.json.tmp");
        let text = serde_json::to_vec(self).map_err(|e| SandboxError::Encode {
            what: "the exit record",
            reason: e.to_string(),
        })?;
        std::fs::write(&tmp, text).map_err(|e| SandboxError::io("write", &tmp, e))?;
        std::fs::rename(&tmp, bundle.join(EXIT_FILE))
            .map_err(|e| SandboxError::io("rename", &tmp, e))
    }
}

/// Starter side: runs the monitor for container `a.id` (bundle already
/// written, secret fds open and inheritable) and waits for its report.
pub fn start(cmd: &MonitorCommand, root: &Path, a: &MonitorArgs) -> Result<()> {
    let fail = |reason: String| SandboxError::MonitorStart { reason };
    let log = a.bundle.join(MONITOR_LOG);
    // Made here, not by the binary's logging: it marks the container as monitored.
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| SandboxError::io("create", &log, e))?;
    let mut c = Command::new(&cmd.exe);
    c.arg("--root").arg(root).arg("--log").arg(&log);
    if cmd.debug {
        c.arg("--debug");
    }
    c.arg(MONITOR_VERB).args(a.to_args());
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| fail(format!("{e}")))?;
    let Some(out) = child.stdout.take() else {
        return Err(fail("it has no status pipe".into()));
    };
    let mut line = String::new();
    let _ = BufReader::new(out).read_line(&mut line);
    match line.trim_end().split_once(' ') {
        None if line.trim_end() == "ok" => Ok(()),
        Some(("err", rest)) => {
            let (kind, message) = rest.split_once(' ').unwrap_or(("runtime", rest));
            // The monitor exits right after reporting; reap it.
            let _ = child.wait();
            Err(SandboxError::MonitorReport {
                kind: LaunchFailure::from_str_lossy(kind),
                message: message.to_string(),
            })
        }
        _ => {
            let _ = child.wait();
            Err(fail("it exited before the container started".into()))
        }
    }
}

/// Monitor side: the `__monitor` verb. Returns the monitor's exit code.
pub fn serve(
    root: &StateRoot,
    a: &MonitorArgs,
    network: &mut dyn NetworkAttach,
    tasks: &dyn SideTasks,
) -> Result<i32> {
    // Role: monitor, on the host, root; the container init's parent.
    let _ = nix::unistd::setsid();
    let _ = nix::sys::prctl::set_name(c"nucleus:[mon]");
    std::env::set_current_dir("/").map_err(|e| SandboxError::io("chdir to", "/", e))?;
    let status = nix::unistd::dup(std::io::stdout()).map_err(|source| SandboxError::Sys {
        op: "keep the status pipe",
        source,
    })?;
    fcntl(&status, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(|source| SandboxError::Sys {
        op: "mark the status pipe close-on-exec",
        source,
    })?;
    let mut status = File::from(status);
    match start_container(root, a, network) {
        Ok(started) => {
            let _ = status.write_all(b"ok\n");
            drop(status);
            supervise(root, a, started, tasks)
        }
        Err(e) => {
            let _ = writeln!(
                status,
                "err {} {}",
                e.launch_failure().as_str(),
                render_chain(&e).replace('\n', " ")
            );
            Ok(1)
        }
    }
}

struct Started {
    spawned: lifecycle::Spawned,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

fn start_container(
    root: &StateRoot,
    a: &MonitorArgs,
    network: &mut dyn NetworkAttach,
) -> Result<Started> {
    let sys = |op: &'static str| move |source| SandboxError::Sys { op, source };
    let devnull = File::open("/dev/null").map_err(|e| SandboxError::io("open", "/dev/null", e))?;
    let (out_r, out_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys("create the stdout pipe"))?;
    let (err_r, err_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys("create the stderr pipe"))?;
    // The init inherits fds 0-2: make them the container's stdio.
    nix::unistd::dup2_stdin(&devnull).map_err(sys("dup2 stdin"))?;
    nix::unistd::dup2_stdout(&out_w).map_err(sys("dup2 stdout"))?;
    nix::unistd::dup2_stderr(&err_w).map_err(sys("dup2 stderr"))?;
    drop((out_w, err_w));
    let opts = RunOptions {
        bundle: &a.bundle,
        console_socket: None,
        pid_file: None,
        no_pivot: false,
        preserve_fds: 0,
        detach: true,
        keep: true,
        timeout: None,
    };
    let mut step = EngineStep {
        id: &a.id,
        bundle: &a.bundle,
        step: network,
    };
    let spawned = lifecycle::spawn_with(root, &a.id, &opts, Some(&mut step));
    // Only the container holds the pipes' write ends from now on.
    let null_w = OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .map_err(|e| SandboxError::io("open", "/dev/null", e))?;
    let _ = nix::unistd::dup2_stdout(&null_w);
    let _ = nix::unistd::dup2_stderr(&null_w);
    let spawned = spawned.map_err(SandboxError::engine("start"))?;
    Ok(Started {
        spawned,
        stdout: out_r,
        stderr: err_r,
    })
}

/// Kills the container (its timeout passed, or a side task failed to start).
fn kill_container(root: &StateRoot, id: &str, why: &str) {
    tracing::warn!(id, "{why}: killing the container");
    if let Err(e) = lifecycle::kill(root, id, libc::SIGKILL, true) {
        tracing::warn!(id, error = %e, "cannot kill the container");
    }
}

/// Starts each side task; one that fails kills the container.
fn start_tasks(
    root: &StateRoot,
    ctx: &TaskContext<'_>,
    tasks: &dyn SideTasks,
) -> Vec<Box<dyn SideTask>> {
    let mut running = Vec::new();
    for mut t in tasks.for_sandbox(ctx) {
        match t.start(ctx) {
            Ok(()) => running.push(t),
            Err(e) => {
                tracing::error!(id = ctx.id, task = t.name(), error = %render_chain(&e), "side task failed to start");
                kill_container(root, ctx.id, "a side task failed");
            }
        }
    }
    running
}

/// Which fd a poll slot belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Pipe(usize),
    Init,
    Task(usize),
}

fn supervise(
    root: &StateRoot,
    a: &MonitorArgs,
    s: Started,
    task_set: &dyn SideTasks,
) -> Result<i32> {
    let pidfd =
        nucleus_sys::pidfd::pidfd_open(s.spawned.pid).map_err(|source| SandboxError::Sys {
            op: "pidfd_open the container init",
            source,
        })?;
    let deadline = a.timeout.map(|t| Instant::now() + t);
    let mut log = LogWriter::open(&a.bundle, MAX_LOG_BYTES)?;
    let mut splitters = [LineSplitter::new("stdout"), LineSplitter::new("stderr")];
    let mut pipes = [Some(File::from(s.stdout)), Some(File::from(s.stderr))];
    let mut buf = [0u8; 8192];
    let ctx = TaskContext {
        id: &a.id,
        pid: s.spawned.pid.as_raw(),
        bundle: &a.bundle,
    };
    let mut tasks = start_tasks(root, &ctx, task_set);
    // The spec, plans and parse trees of setup are freed: give the pages back.
    nucleus_sys::mem::release_free_heap();
    let mut exit: Option<i32> = None;
    let mut drain_until = None;
    let mut timed_out = false;
    loop {
        let now = Instant::now();
        if exit.is_none() && !timed_out && deadline.is_some_and(|d| now >= d) {
            kill_container(root, &a.id, "timeout reached");
            timed_out = true;
        }
        if exit.is_some()
            && (pipes.iter().all(Option::is_none) || drain_until.is_some_and(|d| now >= d))
        {
            break;
        }
        let task_wake = tasks.iter().filter_map(|t| t.deadline()).min();
        let wake = [
            if exit.is_none() && !timed_out {
                deadline
            } else {
                None
            },
            drain_until,
            task_wake,
        ]
        .into_iter()
        .flatten()
        .min();
        let timeout = match wake {
            Some(w) => {
                PollTimeout::try_from(w.saturating_duration_since(now)).unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(3 + tasks.len());
        let mut which = Vec::with_capacity(3 + tasks.len());
        for (i, p) in pipes.iter().enumerate() {
            if let Some(f) = p {
                fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
                which.push(Slot::Pipe(i));
            }
        }
        if exit.is_none() {
            fds.push(PollFd::new(pidfd.as_fd(), PollFlags::POLLIN));
            which.push(Slot::Init);
        }
        for (i, t) in tasks.iter().enumerate() {
            if let Some(fd) = t.fd() {
                fds.push(PollFd::new(fd, PollFlags::POLLIN));
                which.push(Slot::Task(i));
            }
        }
        match poll(&mut fds, timeout) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(source) => return Err(SandboxError::Sys { op: "poll", source }),
            Ok(_) => {}
        }
        let mut ready: Vec<Slot> = fds
            .iter()
            .zip(&which)
            .filter(|(f, _)| f.revents().is_some_and(|r| !r.is_empty()))
            .map(|(_, w)| *w)
            .collect();
        drop(fds);
        let now = Instant::now();
        for (i, t) in tasks.iter().enumerate() {
            if t.deadline().is_some_and(|d| now >= d) && !ready.contains(&Slot::Task(i)) {
                ready.push(Slot::Task(i));
            }
        }
        let mut failed = Vec::new();
        for w in ready {
            match w {
                Slot::Init => {
                    if let Some(code) = s.spawned.reap().map_err(SandboxError::engine("reap"))? {
                        exit = Some(code);
                        drain_until = Some(Instant::now() + DRAIN);
                        // Stopped as soon as the container is gone, before the exit is recorded.
                        for mut t in tasks.drain(..) {
                            t.stop(&ctx, code);
                        }
                    }
                }
                Slot::Task(i) => {
                    if let Some(t) = tasks.get_mut(i) {
                        if let Err(e) = t.wake(&ctx) {
                            tracing::warn!(id = a.id, task = t.name(), error = %render_chain(&e), "side task failed; stopping it");
                            failed.push(i);
                        }
                    }
                }
                Slot::Pipe(i) => {
                    let Some(f) = pipes[i].as_mut() else { continue };
                    match f.read(&mut buf) {
                        Ok(0) | Err(_) => {
                            pipes[i] = None;
                            splitters[i].flush(&mut log)?;
                        }
                        Ok(n) => splitters[i].feed(&buf[..n], &mut log)?,
                    }
                }
            }
        }
        for i in failed.into_iter().rev() {
            if i < tasks.len() {
                let mut t = tasks.remove(i);
                t.stop(&ctx, -1);
            }
        }
    }
    for sp in splitters.iter_mut() {
        sp.flush(&mut log)?;
    }
    let code = exit.ok_or(SandboxError::NoExitStatus)?;
    let record = ExitRecord {
        exit_code: code,
        finished_at: clock::rfc3339(SystemTime::now()),
        timed_out,
    };
    if let Err(e) = record.write(&a.bundle) {
        // `rm -f` may have removed the bundle already.
        tracing::debug!(error = %e, "exit record not written");
    }
    if !root.container_dir(&a.id).exists() {
        // Deleted behind our back (`delete --force`) while we were writing: our
        // last files may have kept its bundle from being removed.
        let _ = std::fs::remove_dir_all(&a.bundle);
    }
    if a.rm {
        match lifecycle::delete(root, &a.id, true) {
            Ok(()) | Err(nucleus_engine::EngineError::NotFound { .. }) => {}
            Err(e) => {
                tracing::warn!(id = a.id, error = %e, "cannot remove the container after it exited")
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_round_trip() {
        let a = MonitorArgs {
            id: "abc".into(),
            bundle: "/r/.bundles/abc".into(),
            timeout: Some(Duration::from_millis(1500)),
            rm: true,
        };
        let argv: Vec<String> = a
            .to_args()
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(
            argv,
            [
                "--id",
                "abc",
                "--bundle",
                "/r/.bundles/abc",
                "--timeout",
                "1.5",
                "--rm"
            ]
        );
        assert_eq!(MonitorArgs::parse(&argv).unwrap(), a);
        assert!(MonitorArgs::parse(&["--id".into(), "x".into()]).is_err());
        assert!(MonitorArgs::parse(&["--bogus".into()]).is_err());
    }

    #[test]
    fn exit_record_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let r = ExitRecord {
            exit_code: 3,
            finished_at: "2026-01-01T00:00:00Z".into(),
            timed_out: true,
        };
        r.write(dir.path()).unwrap();
        assert_eq!(ExitRecord::read(dir.path()), Some(r));
    }
}
