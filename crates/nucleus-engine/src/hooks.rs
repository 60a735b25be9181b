//! OCI hooks: each runs with the container state JSON on stdin, its own
//! argv and environment, and an optional timeout. Output is captured in a
//! memfd (no threads, no pipe deadlock) and quoted in the error on failure.

use crate::error::{EngineError, Result};
use nix::sys::memfd::{memfd_create, MFdFlags};
use oci_spec::runtime::Hook;
use std::io::{Read, Seek, Write};
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};

/// The hook points of the OCI runtime spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl HookKind {
    pub fn name(self) -> &'static str {
        match self {
            HookKind::Prestart => "prestart",
            HookKind::CreateRuntime => "createRuntime",
            HookKind::CreateContainer => "createContainer",
            HookKind::StartContainer => "startContainer",
            HookKind::Poststart => "poststart",
            HookKind::Poststop => "poststop",
        }
    }

    /// The hooks of this kind in `spec`, in order.
    pub fn of(self, spec: &oci_spec::runtime::Spec) -> &[Hook] {
        let Some(h) = spec.hooks() else { return &[] };
        #[allow(deprecated)]
        let list = match self {
            HookKind::Prestart => h.prestart(),
            HookKind::CreateRuntime => h.create_runtime(),
            HookKind::CreateContainer => h.create_container(),
            HookKind::StartContainer => h.start_container(),
            HookKind::Poststart => h.poststart(),
            HookKind::Poststop => h.poststop(),
        };
        list.as_deref().unwrap_or_default()
    }
}

/// Runs every hook of `kind` in order; stops at the first failure.
pub fn run_all(kind: HookKind, spec: &oci_spec::runtime::Spec, state_json: &str) -> Result<()> {
    run_all_with_env(kind, spec, state_json, &[])
}

/// Like [`run_all`], but a hook without an `env` of its own gets
/// `fallback_env` (runc gives startContainer hooks the process's environment).
pub fn run_all_with_env(
    kind: HookKind,
    spec: &oci_spec::runtime::Spec,
    state_json: &str,
    fallback_env: &[String],
) -> Result<()> {
    for hook in kind.of(spec) {
        tracing::debug!(hook = kind.name(), path = %hook.path().display(), "running hook");
        run_one(kind, hook, state_json, fallback_env)?;
    }
    Ok(())
}

fn run_one(kind: HookKind, hook: &Hook, state_json: &str, fallback_env: &[String]) -> Result<()> {
    let fail = |reason: String| EngineError::Hook {
        kind: kind.name(),
        path: hook.path().clone(),
        reason,
    };
    if let Some(t) = hook.timeout() {
        if t <= 0 {
            return Err(fail(format!("timeout must be positive (got `{t}`)")));
        }
    }
    let output = memfd_create("nucleus-hook-output", MFdFlags::MFD_CLOEXEC)
        .map_err(|e| fail(format!("cannot create output buffer: {e}")))?;
    let output = std::fs::File::from(output);
    let mut cmd = Command::new(hook.path());
    let args = hook.args().as_deref().unwrap_or_default();
    if let Some((argv0, rest)) = args.split_first() {
        cmd.arg0(argv0).args(rest);
    }
    cmd.env_clear();
    for kv in hook.env().as_deref().unwrap_or(fallback_env) {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    let out2 = output.try_clone().map_err(|e| fail(e.to_string()))?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::from(
            output.try_clone().map_err(|e| fail(e.to_string()))?,
        ))
        .stderr(Stdio::from(out2));
    let mut child = cmd
        .spawn()
        .map_err(|e| fail(format!("cannot start: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook may exit without reading its stdin; EPIPE is not an error then.
        let _ = stdin.write_all(state_json.as_bytes());
    }
    let status = wait_with_timeout(&mut child, hook.timeout()).map_err(fail)?;
    if status.success() {
        return Ok(());
    }
    let mut text = String::new();
    let mut output = output;
    let _ = output.rewind();
    let _ = output.take(4096).read_to_string(&mut text);
    let how = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (_, Some(sig)) => match nix::sys::signal::Signal::try_from(sig) {
            Ok(name) => format!("killed by signal {sig} ({name})"),
            Err(_) => format!("killed by signal {sig}"),
        },
        _ => "unknown status".to_string(),
    };
    let text = text.trim();
    Err(fail(if text.is_empty() {
        how
    } else {
        format!("{how}: {text}")
    }))
}

fn wait_with_timeout(
    child: &mut std::process::Child,
    timeout: Option<i64>,
) -> Result<std::process::ExitStatus, String> {
    let Some(secs) = timeout else {
        return child.wait().map_err(|e| e.to_string());
    };
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).map_err(|e| e.to_string())?);
    let pidfd = nucleus_sys::pidfd::pidfd_open(pid).map_err(|e| e.to_string())?;
    let limit = std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    if nucleus_sys::pidfd::wait_exit(pidfd.as_fd(), limit).map_err(|e| e.to_string())? {
        return child.wait().map_err(|e| e.to_string());
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(format!("timed out after {secs}s"))
}
