//! The per-container monitor of a detached run. No daemon: each `run -d`
//! starts one small process (its own session) that
//! - creates and starts the container with `lifecycle::spawn`, so it is the
//!   init's parent and reaps it;
//! - holds the container's stdio (stdin /dev/null, stdout and stderr pipes)
//!   and writes them to the size-capped JSON log;
//! - enforces `--timeout`, records the exit status in `<bundle>/exit.json`,
//!   and with `--rm` deletes the container.
//!
//! The CLI starts it by executing itself (`__monitor`): the CLI crate has no
//! `unsafe`, and `fork` is. Its stdout is a pipe back to the CLI that
//! carries one line, `ok` or `err CODE MESSAGE`, once the workload runs.
//! It has no threads and one 8 KiB read buffer.

use super::clock;
use super::logs::{LineSplitter, LogWriter, MAX_LOG_BYTES};
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nucleus_engine::lifecycle::{self, RunOptions};
use nucleus_engine::state::StateRoot;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

pub const EXIT_FILE: &str = "exit.json";
/// The monitor's own diagnostics; its presence marks a monitored container.
pub const MONITOR_LOG: &str = "monitor.log";
/// How long to keep reading output after the init has exited.
const DRAIN: Duration = Duration::from_millis(500);

/// Arguments of the hidden `__monitor` verb.
#[derive(Debug, Args)]
pub struct MonitorArgs {
    #[arg(long)]
    pub id: String,
    #[arg(long)]
    pub bundle: PathBuf,
    /// Seconds before the container is killed
    #[arg(long)]
    pub timeout: Option<f64>,
    /// Delete the container once it has exited
    #[arg(long)]
    pub rm: bool,
}

/// How a container ended, as `ps` and `inspect` show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
        std::fs::write(&tmp, serde_json::to_vec(self)?)
            .with_context(|| format!("write `{}`", tmp.display()))?;
        std::fs::rename(&tmp, bundle.join(EXIT_FILE))
            .with_context(|| format!("rename `{}`", tmp.display()))
    }
}

/// Why a detached start failed: the exit code for the CLI and the message.
#[derive(Debug)]
pub struct StartFailure {
    pub code: i32,
    pub message: String,
}

/// CLI side: starts the monitor for container `id` (bundle already
/// written, secret fds open and inheritable) and waits for its report.
pub fn start(
    root: &Path,
    id: &str,
    bundle: &Path,
    timeout: Option<Duration>,
    rm: bool,
    debug: bool,
) -> Result<(), StartFailure> {
    let fail = |message: String| StartFailure { code: 125, message };
    let exe = std::env::current_exe()
        .map_err(|e| fail(format!("cannot find the nucleus binary: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.arg("--root")
        .arg(root)
        .arg("--log")
        .arg(bundle.join(MONITOR_LOG));
    if debug {
        cmd.arg("--debug");
    }
    cmd.arg("__monitor")
        .arg("--id")
        .arg(id)
        .arg("--bundle")
        .arg(bundle);
    if let Some(t) = timeout {
        cmd.arg("--timeout").arg(t.as_secs_f64().to_string());
    }
    if rm {
        cmd.arg("--rm");
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| fail(format!("cannot start the container monitor: {e}")))?;
    let Some(out) = child.stdout.take() else {
        return Err(fail("the container monitor has no status pipe".into()));
    };
    let mut line = String::new();
    let _ = BufReader::new(out).read_line(&mut line);
    match line.trim_end().split_once(' ') {
        None if line.trim_end() == "ok" => Ok(()),
        Some(("err", rest)) => {
            let (code, msg) = rest.split_once(' ').unwrap_or(("125", rest));
            // The monitor exits right after reporting; reap it.
            let _ = child.wait();
            Err(StartFailure {
                code: code.parse().unwrap_or(125),
                message: msg.to_string(),
            })
        }
        _ => {
            let _ = child.wait();
            Err(fail(
                "the container monitor exited before the container started".into(),
            ))
        }
    }
}

/// Monitor side: the `__monitor` verb. Returns the monitor's exit code.
pub fn run(root: &StateRoot, a: &MonitorArgs) -> Result<i32> {
    // Role: monitor, on the host, root; the container init's parent.
    let _ = nix::unistd::setsid();
    let _ = nix::sys::prctl::set_name(c"nucleus:[mon]");
    std::env::set_current_dir("/").context("chdir /")?;
    let status = nix::unistd::dup(std::io::stdout()).context("keep the status pipe")?;
    fcntl(&status, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
        .context("mark the status pipe close-on-exec")?;
    let mut status = File::from(status);
    match start_container(root, a) {
        Ok(started) => {
            let _ = status.write_all(b"ok\n");
            drop(status);
            supervise(root, a, started)
        }
        Err((code, msg)) => {
            let _ = writeln!(status, "err {code} {}", msg.replace('\n', " "));
            Ok(1)
        }
    }
}

struct Started {
    spawned: lifecycle::Spawned,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

fn start_container(root: &StateRoot, a: &MonitorArgs) -> Result<Started, (i32, String)> {
    let setup = |e: anyhow::Error| (125, format!("{e:#}"));
    let devnull = File::open("/dev/null")
        .context("open /dev/null")
        .map_err(setup)?;
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .context("pipe")
        .map_err(setup)?;
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .context("pipe")
        .map_err(setup)?;
    // The init inherits fds 0-2: make them the container's stdio.
    nix::unistd::dup2_stdin(&devnull)
        .context("dup2 stdin")
        .map_err(setup)?;
    nix::unistd::dup2_stdout(&out_w)
        .context("dup2 stdout")
        .map_err(setup)?;
    nix::unistd::dup2_stderr(&err_w)
        .context("dup2 stderr")
        .map_err(setup)?;
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
    let spawned = lifecycle::spawn(root, &a.id, &opts);
    // Only the container holds the pipes' write ends from now on.
    let null_w = OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .context("open /dev/null")
        .map_err(setup)?;
    let _ = nix::unistd::dup2_stdout(&null_w);
    let _ = nix::unistd::dup2_stderr(&null_w);
    match spawned {
        Ok(spawned) => Ok(Started {
            spawned,
            stdout: out_r,
            stderr: err_r,
        }),
        Err(e) => {
            let err = anyhow::Error::from(e);
            Err((super::run::exit_code_for(&err), format!("{err:#}")))
        }
    }
}

fn supervise(root: &StateRoot, a: &MonitorArgs, s: Started) -> Result<i32> {
    let pidfd =
        nucleus_sys::pidfd::pidfd_open(s.spawned.pid).context("pidfd_open the container init")?;
    let deadline = a
        .timeout
        .map(|t| Instant::now() + Duration::from_secs_f64(t));
    let mut log = LogWriter::open(&a.bundle, MAX_LOG_BYTES)?;
    let mut splitters = [LineSplitter::new("stdout"), LineSplitter::new("stderr")];
    let mut pipes = [Some(File::from(s.stdout)), Some(File::from(s.stderr))];
    let mut buf = [0u8; 8192];
    // The spec, plans and parse trees of setup are freed: give the pages back.
    nucleus_sys::mem::release_free_heap();
    let mut exit: Option<i32> = None;
    let mut drain_until = None;
    let mut timed_out = false;
    loop {
        let now = Instant::now();
        if exit.is_none() && !timed_out && deadline.is_some_and(|d| now >= d) {
            tracing::warn!(id = a.id, "timeout reached: killing the container");
            if let Err(e) = lifecycle::kill(root, &a.id, libc::SIGKILL, true) {
                tracing::warn!(id = a.id, error = %e, "cannot kill the container at its timeout");
            }
            timed_out = true;
        }
        if exit.is_some()
            && (pipes.iter().all(Option::is_none) || drain_until.is_some_and(|d| now >= d))
        {
            break;
        }
        let wake = [
            if exit.is_none() && !timed_out {
                deadline
            } else {
                None
            },
            drain_until,
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
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(3);
        let mut which = Vec::with_capacity(3);
        for (i, p) in pipes.iter().enumerate() {
            if let Some(f) = p {
                fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
                which.push(i);
            }
        }
        if exit.is_none() {
            fds.push(PollFd::new(pidfd.as_fd(), PollFlags::POLLIN));
            which.push(2);
        }
        match poll(&mut fds, timeout) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => bail!("poll: {e}"),
            Ok(_) => {}
        }
        let ready: Vec<usize> = fds
            .iter()
            .zip(&which)
            .filter(|(f, _)| f.revents().is_some_and(|r| !r.is_empty()))
            .map(|(_, w)| *w)
            .collect();
        drop(fds);
        for w in ready {
            if w == 2 {
                if let Some(code) = s.spawned.reap()? {
                    exit = Some(code);
                    drain_until = Some(Instant::now() + DRAIN);
                }
                continue;
            }
            let Some(f) = pipes[w].as_mut() else { continue };
            match f.read(&mut buf) {
                Ok(0) | Err(_) => {
                    pipes[w] = None;
                    splitters[w].flush(&mut log)?;
                }
                Ok(n) => splitters[w].feed(&buf[..n], &mut log)?,
            }
        }
    }
    for sp in splitters.iter_mut() {
        sp.flush(&mut log)?;
    }
    let code = exit.ok_or_else(|| anyhow!("container exited without a status"))?;
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
