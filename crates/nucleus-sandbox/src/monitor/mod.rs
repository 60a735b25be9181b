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
//! It has one 8 KiB read buffer, and no threads unless an attached
//! network runs its resolver beside the container.

pub mod standby;
mod supervise;

use crate::error::{render_chain, LaunchFailure, Result, SandboxError};
use crate::net_attach::{NetAttach, NetPlan};
use crate::network::{EngineStep, NetworkAttach};
use crate::side_task::SideTasks;
use crate::user_net::{UserNet, UserNetPlan};
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nucleus_engine::lifecycle::{self, BoundExecServer, ExecHandler, RunOptions};
use nucleus_engine::state::StateRoot;
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use supervise::supervise;

pub const EXIT_FILE: &str = "exit.json";
/// In the bundle: held shared by whoever waits for the exit record, so a
/// monitor that removes its container on exit lets them read it first.
const EXIT_WATCH_LOCK: &str = "exit.lock";
/// How long a removing monitor waits for readers of the exit record.
const EXIT_READERS_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// The monitor's own diagnostics; its presence marks a monitored container.
pub const MONITOR_LOG: &str = "monitor.log";
/// The hidden verb the monitor binary answers to.
pub const MONITOR_VERB: &str = "__monitor";

/// What the monitor is asked to do: the part of its argv after `__monitor`.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorArgs {
    pub id: String,
    pub bundle: PathBuf,
    /// Kill the container after this long.
    pub timeout: Option<Duration>,
    /// Delete the container once it has exited.
    pub rm: bool,
    /// Serve execs on this socket: a fork of the monitor in the
    /// container's cgroups (`nucleus_engine::lifecycle::BoundExecServer`),
    /// bound before the monitor reports the container started.
    pub exec_socket: Option<PathBuf>,
}

impl MonitorArgs {
    /// `--id ID --bundle DIR [--timeout SECS] [--rm] [--exec-socket PATH]`.
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
        if let Some(s) = &self.exec_socket {
            a.push("--exec-socket".into());
            a.push(s.clone().into());
        }
        a
    }

    /// Parses what `to_args` wrote.
    pub fn parse(args: &[String]) -> Result<MonitorArgs> {
        let bad = |v: &str| SandboxError::MonitorArgs { arg: v.to_string() };
        let (mut id, mut bundle, mut timeout, mut rm) = (None, None, None, false);
        let mut exec_socket = None;
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
                "--exec-socket" => {
                    exec_socket = Some(PathBuf::from(it.next().ok_or_else(|| bad(a))?))
                }
                other => return Err(bad(other)),
            }
        }
        match (id, bundle) {
            (Some(id), Some(bundle)) => Ok(MonitorArgs {
                id,
                bundle,
                timeout,
                rm,
                exec_socket,
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
    /// Have each monitor serve execs on a socket in this directory
    /// ([`exec_socket`]; the API server's choice).
    pub exec_sockets: Option<PathBuf>,
    /// A monitor started ahead of need, used by creates without secret
    /// descriptors (`standby`).
    pub standby: Option<std::sync::Arc<standby::Standby>>,
}

/// `DIR/x-<first 16 hex of id>.sock`: container `id`'s exec socket, short
/// for `sun_path`'s 108 bytes (the server checks the full id of every
/// request).
pub fn exec_socket(dir: &Path, id: &str) -> PathBuf {
    let short: String = id.chars().take(16).collect();
    dir.join(format!("x-{short}.sock"))
}

impl MonitorCommand {
    /// This process's own executable (the `nucleus` binary).
    pub fn current_exe(debug: bool) -> Result<MonitorCommand> {
        let exe = std::env::current_exe().map_err(|e| SandboxError::MonitorStart {
            reason: format!("cannot find the nucleus binary: {e}"),
        })?;
        Ok(MonitorCommand {
            exe,
            debug,
            exec_sockets: None,
            standby: None,
        })
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

    /// Taken by a reader before it waits for the record: while held, a
    /// monitor that removes its container waits (bounded) before removing
    /// the bundle. `None` when the bundle is gone.
    pub fn watch(bundle: &Path) -> Option<std::fs::File> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(bundle.join(EXIT_WATCH_LOCK))
            .ok()?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockShared).ok()?;
        Some(f)
    }

    /// Monitor side, after writing the record and before removing the
    /// container: waits until no reader holds [`ExitRecord::watch`], for at
    /// most [`EXIT_READERS_WAIT`] (a stuck reader never keeps a container).
    pub(crate) fn wait_for_readers(bundle: &Path) {
        let Ok(f) = std::fs::File::open(bundle.join(EXIT_WATCH_LOCK)) else {
            return;
        };
        let deadline = std::time::Instant::now() + EXIT_READERS_WAIT;
        while rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err()
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
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
/// Without secret fds (`inherits_fds` false), a waiting standby monitor
/// is used when there is one.
pub fn start(cmd: &MonitorCommand, root: &Path, a: &MonitorArgs, inherits_fds: bool) -> Result<()> {
    if let (false, Some(s)) = (inherits_fds, &cmd.standby) {
        if let Some(done) = s.start(a) {
            return done;
        }
    }
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
    read_report(BufReader::new(out), &mut child)
}

/// Reads the monitor's one-line report (`ok` or `err KIND MESSAGE`); a
/// monitor that failed is reaped.
fn read_report(mut from: impl BufRead, child: &mut std::process::Child) -> Result<()> {
    let mut line = String::new();
    let _ = from.read_line(&mut line);
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
            Err(SandboxError::MonitorStart {
                reason: "it exited before the container started".into(),
            })
        }
    }
}

/// Monitor side: the `__monitor` verb. Returns the monitor's exit code.
/// With `execs` and `a.exec_socket`, the container's exec server is a
/// fork of the monitor that runs `execs` (see [`start_exec_server`]).
pub fn serve(
    root: &StateRoot,
    a: &MonitorArgs,
    network: &mut dyn NetworkAttach,
    tasks: &dyn SideTasks,
    execs: Option<&dyn ExecHandler>,
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
    // A run on an attached network or with pasta left its plan in the bundle.
    let planned = NetPlan::read(&a.bundle)
        .and_then(|p| p.as_ref().map(NetAttach::new).transpose())
        .map(|n| {
            n.map(|mut n| {
                n.prepare_ahead(&a.id, &a.bundle);
                n
            })
        })
        .and_then(|n| Ok((n, UserNetPlan::read(&a.bundle)?.map(UserNet::new))));
    let started = planned.and_then(|(mut planned, mut user_net)| {
        let step: &mut dyn NetworkAttach = match (planned.as_mut(), user_net.as_mut()) {
            (Some(n), _) => n,
            (None, Some(u)) => u,
            (None, None) => network,
        };
        start_container(root, a, step).map(|s| (s, planned, user_net))
    });
    match started {
        Ok((started, planned, user_net)) => {
            // Bound before `ok`: a first exec sent as soon as the starter
            // hears it waits in the socket's backlog, never for a launch.
            let bound = match (&a.exec_socket, execs) {
                (Some(socket), Some(_)) => bind_exec_server(root, &a.id, socket),
                _ => None,
            };
            let _ = status.write_all(b"ok\n");
            // Closed before the fork: the server must not hold the pipe.
            drop(status);
            let server = match (bound, execs) {
                (Some(b), Some(h)) => start_exec_server(root, &a.id, b, h),
                _ => None,
            };
            let code = supervise(root, a, started, tasks, server);
            // The container is gone (or kept, stopped): tear its network down.
            drop(planned);
            drop(user_net);
            if a.rm {
                crate::image_store::sweep_logged(root.path());
            }
            code
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

/// Binds the container's exec socket; `None` when another server has it or
/// when forking one is not possible, e.g. when a network's resolver thread
/// runs in this process. The API then starts `nucleus exec-server` on the
/// first exec, so that case is only said at debug level.
fn bind_exec_server(root: &StateRoot, id: &str, socket: &Path) -> Option<BoundExecServer> {
    if let Some(dir) = socket.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match BoundExecServer::bind(root, id, socket) {
        Ok(b) => b,
        Err(e) => {
            tracing::debug!(id, error = %e, "no exec server forked by the monitor");
            None
        }
    }
}

/// Forks the bound exec server into the container's cgroups; its pid, a
/// child of the monitor that `supervise` reaps.
fn start_exec_server(
    root: &StateRoot,
    id: &str,
    bound: BoundExecServer,
    execs: &dyn ExecHandler,
) -> Option<nix::unistd::Pid> {
    match bound.fork(root, execs) {
        Ok(pid) => Some(pid),
        Err(e) => {
            tracing::warn!(id, error = %e, "cannot fork the exec server");
            None
        }
    }
}

/// A started container, its init a child of the monitor, and the read
/// ends of its stdout and stderr.
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
            exec_socket: Some("/r/.api/x-abc.sock".into()),
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
                "--rm",
                "--exec-socket",
                "/r/.api/x-abc.sock"
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
