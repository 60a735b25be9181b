//! A monitor started ahead of need, so that no binary start (fork, exec,
//! ld.so's relocations, ~2-3 ms) is on the path of a create.
//!
//! A long-running front end (the API server) keeps one [`Standby`]: the
//! binary runs `__monitor --standby` with a unix socket as its stdout and
//! blocks reading it. A create sends the usual monitor arguments as one
//! line ([`MonitorArgs::to_args`], JSON), and from then on the process is
//! an ordinary monitor, reporting `ok` or `err …` on the same socket. An
//! unused standby sees end-of-file when its starter goes away and exits, so
//! none is left behind; a used one outlives its starter like every monitor.
//!
//! A standby inherits what its starter has open and inheritable when it
//! is started: [`Standby::refill`] must be called when no such descriptor
//! (a create's secrets) is open, and a create that passes secret
//! descriptors does not use a standby (their numbers are in its spec).

use super::{read_report, MonitorArgs, MonitorCommand, MONITOR_LOG, MONITOR_VERB};
use crate::error::{Result, SandboxError};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

/// The argument that makes `__monitor` wait for its work.
pub const STANDBY_ARG: &str = "--standby";

/// One waiting monitor: the process and our end of its socket.
#[derive(Debug)]
struct Waiting {
    child: Child,
    ctl: UnixStream,
}

/// At most one monitor waiting for the next create of one front end.
#[derive(Debug)]
pub struct Standby {
    cmd: MonitorCommand,
    root: PathBuf,
    waiting: Mutex<Option<Waiting>>,
}

impl Standby {
    /// Standby monitors of `cmd` for containers under `root` (none started yet).
    pub fn new(cmd: MonitorCommand, root: &Path) -> Standby {
        Standby {
            cmd,
            root: root.to_path_buf(),
            waiting: Mutex::new(None),
        }
    }

    /// Starts a standby monitor unless one waits. Call it only while no
    /// inheritable descriptor is open that a monitor must not get.
    pub fn refill(&self) -> Result<()> {
        let mut w = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if w.as_mut()
            .is_some_and(|w| matches!(w.child.try_wait(), Ok(None)))
        {
            return Ok(());
        }
        if let Some(mut gone) = w.take() {
            let _ = gone.child.wait();
        }
        *w = Some(self.spawn()?);
        Ok(())
    }

    fn spawn(&self) -> Result<Waiting> {
        let fail = |reason: String| SandboxError::MonitorStart { reason };
        let (ours, theirs) = UnixStream::pair().map_err(|e| fail(format!("socketpair: {e}")))?;
        let mut c = Command::new(&self.cmd.exe);
        c.arg("--root").arg(&self.root);
        if self.cmd.debug {
            c.arg("--debug");
        }
        c.arg(MONITOR_VERB).arg(STANDBY_ARG);
        let child = c
            .stdin(Stdio::null())
            .stdout(Stdio::from(OwnedFd::from(theirs)))
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| fail(format!("{e}")))?;
        Ok(Waiting { child, ctl: ours })
    }

    /// Hands container `a.id` (bundle written) to the waiting monitor and
    /// waits for its report; `None` when no standby is there (or it is
    /// gone), so the caller starts a monitor the ordinary way.
    pub(crate) fn start(&self, a: &MonitorArgs) -> Option<Result<()>> {
        let mut w = self
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()?;
        // Made here, not by the monitor: it marks the container as monitored.
        let log = a.bundle.join(MONITOR_LOG);
        if let Err(e) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
        {
            return Some(Err(SandboxError::io("create", &log, e)));
        }
        let args: Vec<String> = a
            .to_args()
            .into_iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        let mut line = serde_json::to_vec(&args).unwrap_or_default();
        line.push(b'\n');
        if (&w.ctl).write_all(&line).is_err() {
            // It died waiting (killed?): start one the ordinary way.
            let _ = w.child.kill();
            let _ = w.child.wait();
            return None;
        }
        Some(read_report(BufReader::new(&w.ctl), &mut w.child))
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        // Closing our end is what tells it to go; reap it.
        let w = self.waiting.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(mut w) = w.take() {
            drop(w.ctl);
            let _ = w.child.wait();
        }
    }
}

/// Monitor side of `__monitor --standby`: waits on stdout (the socket)
/// for the arguments of its container. `None` when the starter went away
/// first: nothing to do.
pub fn wait_for_work() -> Result<Option<MonitorArgs>> {
    // Role: standby monitor, on the host; its own session from the start,
    // so the starter's terminal signals never reach it.
    let _ = nix::unistd::setsid();
    let _ = nix::sys::prctl::set_name(c"nucleus:[mon]");
    let ctl = nix::unistd::dup(std::io::stdout()).map_err(|source| SandboxError::Sys {
        op: "keep the standby socket",
        source,
    })?;
    let mut line = String::new();
    // The starter sends one line and then waits: nothing is read past it.
    let n = BufReader::new(std::fs::File::from(ctl))
        .read_line(&mut line)
        .map_err(|e| SandboxError::io("read", "the standby socket", e))?;
    if n == 0 || !line.ends_with('\n') {
        return Ok(None);
    }
    let args: Vec<String> =
        serde_json::from_str(&line).map_err(|_| SandboxError::MonitorArgs { arg: line.clone() })?;
    MonitorArgs::parse(&args).map(Some)
}
