//! Invoking runsc. A [`Runsc`] is one container's runsc: the binary, its own
//! `--root` under nucleus's state directory, and the global flags chosen at
//! create. Every verb goes through [`Runsc::command`], so later verbs use
//! exactly the flags `create` used.

use crate::error::{GvisorError, Result};
use serde::{Deserialize, Serialize};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// gVisor's `--network` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// Loopback only, inside gVisor's netstack (a new network namespace without a path).
    None,
    /// The interfaces of the network namespace the spec names, handed to gVisor's netstack.
    Sandbox,
    /// The host's network stack (no network namespace in the spec).
    Host,
}

impl Network {
    pub fn as_flag(self) -> &'static str {
        match self {
            Network::None => "none",
            Network::Sandbox => "sandbox",
            Network::Host => "host",
        }
    }
}

/// One container's runsc and the global flags every verb gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runsc {
    pub binary: PathBuf,
    /// runsc's `--root`: its own state, kept inside nucleus's container directory.
    pub root: PathBuf,
    pub platform: String,
    pub network: Network,
    /// `--oci-seccomp`: gVisor enforces `linux.seccomp` inside the sandbox.
    pub oci_seccomp: bool,
    /// runsc's `--log`, so its diagnostics never reach the workload's stdout.
    pub log: PathBuf,
    /// A network namespace `create` and `run` are started in (with
    /// `nsenter`), so that `--network=host` means that namespace's stack.
    #[serde(default)]
    pub netns: Option<PathBuf>,
    /// `create` and `run` see an empty `/proc/sys/net` (see
    /// [`nucleus_sys::command::hide_proc_sys_net`]), so that a runsc that
    /// takes every namespace for the host's hands this one to its netstack.
    #[serde(default)]
    pub hide_net_sysctl: bool,
}

impl Runsc {
    /// `runsc <global flags> <verb>`, ready for the verb's own arguments.
    pub fn command(&self, verb: &str) -> Command {
        self.command_with(&[], verb)
    }

    /// [`Runsc::command`] with `extra` global flags first.
    pub fn command_with(&self, extra: &[&str], verb: &str) -> Command {
        let mut cmd = match &self.netns {
            Some(ns) if matches!(verb, "create" | "run") => {
                let mut c = Command::new("nsenter");
                c.arg(flag("net", ns)).arg("--").arg(&self.binary);
                c
            }
            _ => Command::new(&self.binary),
        };
        if self.hide_net_sysctl && matches!(verb, "create" | "run") {
            nucleus_sys::command::hide_proc_sys_net(&mut cmd);
        }
        cmd.args(extra)
            .arg(flag("root", &self.root))
            .arg(format!("--platform={}", self.platform))
            .arg(format!("--network={}", self.network.as_flag()))
            .arg(flag("log", &self.log));
        if self.oci_seccomp {
            cmd.arg("--oci-seccomp");
        }
        cmd.arg(verb);
        cmd
    }

    /// Runs `verb` with `args` to completion, its stdio not shared with any
    /// workload; returns stdout, or the error with runsc's own message.
    pub fn call<S: AsRef<OsStr>>(&self, verb: &str, args: &[S]) -> Result<String> {
        let mut cmd = self.command(verb);
        cmd.args(args).stdin(Stdio::null());
        tracing::debug!(verb, runsc = %self.binary.display(), "runsc");
        let out = cmd
            .output()
            .map_err(|e| GvisorError::io("run", &self.binary, e))?;
        if !out.status.success() {
            return Err(self.failed(verb, &out.status.to_string(), &out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The error for a failed verb: runsc's last non-empty stderr line, or
    /// the tail of its log when stderr was not ours to read.
    pub fn failed(&self, verb: &str, status: &str, stderr: &[u8]) -> GvisorError {
        let text = String::from_utf8_lossy(stderr);
        let mut detail = last_line(&text);
        if detail.is_empty() {
            detail = std::fs::read_to_string(&self.log)
                .map(|t| last_line(&t))
                .unwrap_or_default();
        }
        if detail.contains("cannot run with network enabled in root network namespace") {
            detail.push_str(" (this runsc cannot use a network namespace's interfaces on this kernel; use --network none, or a newer runsc)");
        }
        GvisorError::Runsc {
            runsc: self.binary.clone(),
            verb: verb.to_string(),
            status: status.to_string(),
            detail,
        }
    }

    /// Whether runsc still has state for `id` (`runsc state` succeeds).
    pub fn knows(&self, id: &str) -> bool {
        self.call("state", &[id]).is_ok()
    }
}

fn flag(name: &str, path: &Path) -> std::ffi::OsString {
    let mut s = std::ffi::OsString::from(format!("--{name}="));
    s.push(path);
    s
}

fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}

/// Waits for `child` at most `limit`; on expiry kills its whole process group
/// (runsc's gofer shares it) and returns `None`.
pub fn wait_bounded(
    child: &mut std::process::Child,
    limit: Duration,
) -> Result<Option<std::process::ExitStatus>> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(Some(status)),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => break,
            Err(e) => return Err(GvisorError::io("wait for", "runsc", e)),
        }
    }
    if let Ok(pgid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = child.kill();
    let _ = child.wait();
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_verb_gets_the_create_flags() {
        let r = Runsc {
            binary: "/usr/bin/runsc".into(),
            root: "/run/nucleus/c1/runsc".into(),
            platform: "ptrace".into(),
            network: Network::Sandbox,
            oci_seccomp: true,
            log: "/run/nucleus/c1/runsc.log".into(),
            netns: None,
            hide_net_sysctl: false,
        };
        let cmd = r.command("kill");
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
        assert_eq!(
            args,
            [
                "--root=/run/nucleus/c1/runsc",
                "--platform=ptrace",
                "--network=sandbox",
                "--log=/run/nucleus/c1/runsc.log",
                "--oci-seccomp",
                "kill"
            ]
        );
    }

    #[test]
    fn failure_detail_is_the_last_stderr_line() {
        assert_eq!(last_line("a\nerror: boom\n\n"), "error: boom");
        assert_eq!(last_line(""), "");
    }
}
