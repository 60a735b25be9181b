//! `POST /v1/sandboxes/{id}/exec`: runs a command in a sandbox and streams
//! its output as it comes, one JSON object per line
//! (`application/x-ndjson`):
//! `{"type":"stdout","data":"<base64>"}`, the same for `stderr`, then
//! `{"type":"exit","exit_code":N,"timed_out":false}` (or `{"type":"error",…}`).
//!
//! The command runs through `nucleus exec` as a child process: the engine
//! forks the exec'd process from its caller, which must not be this
//! threaded server. `--log` keeps nucleus's own diagnostics out of the
//! workload's stderr; `--pid-file` gives the pid a timeout kills.

use crate::error::ApiError;
use crate::Shared;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::Response;
use axum::Json;
use base64::Engine as _;
use nucleus_engine::state::StateRoot;
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// The exit code `nucleus exec` uses for its own failures.
const EXEC_RUNTIME_ERRORS: [i32; 2] = [255, 1];

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecRequest {
    /// argv; or give `shell`.
    pub cmd: Vec<String>,
    /// A command line for `/bin/sh -c`.
    pub shell: Option<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<String>,
    /// `uid[:gid]`.
    pub user: Option<String>,
    /// Base64 bytes written to the command's stdin, which is then closed.
    pub stdin: Option<String>,
    /// Seconds; the command is killed after that long.
    pub timeout: Option<f64>,
    /// A pseudo-terminal (stdout and stderr then arrive as `stdout`).
    pub tty: bool,
}

impl ExecRequest {
    fn argv(&self) -> Result<Vec<String>, ApiError> {
        match (&self.shell, self.cmd.is_empty()) {
            (Some(_), false) => Err(ApiError::invalid(
                "cmd",
                self.cmd.join(" "),
                "give `cmd` or `shell`, not both",
            )),
            (Some(s), true) => Ok(vec!["/bin/sh".into(), "-c".into(), s.clone()]),
            (None, false) => Ok(self.cmd.clone()),
            (None, true) => Err(ApiError::invalid("cmd", "", "a command is required")),
        }
    }
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Files of one exec under `<root>/.api/`, removed on drop.
struct ExecFiles {
    pid: PathBuf,
    log: PathBuf,
}

impl ExecFiles {
    fn new(root: &std::path::Path) -> Result<Self, ApiError> {
        let dir = root.join(".api");
        std::fs::create_dir_all(&dir)
            .map_err(|e| ApiError::Exec(format!("create {}: {e}", dir.display())))?;
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let stem = format!("exec-{}-{n}", std::process::id());
        Ok(ExecFiles {
            pid: dir.join(format!("{stem}.pid")),
            log: dir.join(format!("{stem}.log")),
        })
    }

    fn read_pid(&self) -> Option<i32> {
        std::fs::read_to_string(&self.pid).ok()?.trim().parse().ok()
    }

    /// nucleus's own error, if it logged one.
    fn runtime_error(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.log).ok()?;
        let line = text
            .lines()
            .rev()
            .find(|l| l.contains("level=error") || l.contains("error"))?;
        Some(line.to_string())
    }
}

impl Drop for ExecFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pid);
        let _ = std::fs::remove_file(&self.log);
    }
}

fn line(v: serde_json::Value) -> Bytes {
    let mut b = serde_json::to_vec(&v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

async fn pump(mut r: impl AsyncRead + Unpin, stream: &'static str, tx: mpsc::Sender<Bytes>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let data = base64::engine::general_purpose::STANDARD.encode(&buf[..n]);
                if tx
                    .send(line(json!({"type": stream, "data": data})))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

fn kill(pid: Option<i32>) {
    if let Some(p) = pid.and_then(rustix::process::Pid::from_raw) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
}

pub async fn exec(
    State(st): State<Shared>,
    Path(query): Path<String>,
    Json(req): Json<ExecRequest>,
) -> Result<Response, ApiError> {
    let argv = req.argv()?;
    let stdin = match &req.stdin {
        Some(s) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| ApiError::invalid("stdin", "…", format!("not base64: {e}")))?,
        ),
        None => None,
    };
    if let Some(t) = req.timeout {
        if !(t > 0.0 && t <= 86400.0) {
            return Err(ApiError::invalid(
                "timeout",
                t.to_string(),
                "seconds, more than 0 and at most 86400",
            ));
        }
    }
    let root = StateRoot::new(&st.root);
    let id = nucleus_sandbox::names::resolve(&root, &query)?;
    let files = ExecFiles::new(&st.root)?;

    let mut c = tokio::process::Command::new(&st.exe);
    c.arg("--root").arg(&st.root).arg("--log").arg(&files.log);
    c.arg("exec").arg("--pid-file").arg(&files.pid);
    if let Some(cwd) = &req.cwd {
        c.arg("--cwd").arg(cwd);
    }
    for (k, v) in &req.env {
        if k.is_empty() || k.contains('=') {
            return Err(ApiError::invalid("env", k, "a name without `=`"));
        }
        c.arg("--env").arg(format!("{k}={v}"));
    }
    if let Some(u) = &req.user {
        c.arg("--user").arg(u);
    }
    if req.tty {
        c.arg("--tty");
    }
    c.arg(&id).args(&argv);
    c.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let mut child = c.spawn().map_err(|e| ApiError::Exec(e.to_string()))?;

    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let out = child.stdout.take();
    let err = child.stderr.take();
    let input = child.stdin.take();
    let timeout = req.timeout.map(Duration::from_secs_f64);
    tokio::spawn(async move {
        if let (Some(mut w), Some(data)) = (input, stdin) {
            tokio::spawn(async move {
                let _ = w.write_all(&data).await;
            });
        }
        let pumps = tokio::spawn({
            let tx = tx.clone();
            async move {
                let a = out.map(|o| tokio::spawn(pump(o, "stdout", tx.clone())));
                let b = err.map(|e| tokio::spawn(pump(e, "stderr", tx)));
                if let Some(a) = a {
                    let _ = a.await;
                }
                if let Some(b) = b {
                    let _ = b.await;
                }
            }
        });
        let mut timed_out = false;
        let status = tokio::select! {
            s = child.wait() => s,
            _ = async { match timeout { Some(t) => tokio::time::sleep(t).await, None => std::future::pending().await } } => {
                timed_out = true;
                kill(files.read_pid());
                child.wait().await
            }
            _ = tx.closed() => {
                // The client went away: nothing reads the output any more.
                kill(files.read_pid());
                child.wait().await
            }
        };
        let _ = pumps.await;
        let code = match status {
            Ok(s) => s.code().unwrap_or(-1),
            Err(e) => {
                let _ = tx
                    .send(line(json!({"type": "error", "message": e.to_string()})))
                    .await;
                return;
            }
        };
        // A runtime failure before the command ran has no pid and a logged error.
        if EXEC_RUNTIME_ERRORS.contains(&code) && files.read_pid().is_none() {
            if let Some(msg) = files.runtime_error() {
                let _ = tx
                    .send(line(
                        json!({"type": "error", "message": msg, "exit_code": code}),
                    ))
                    .await;
                return;
            }
        }
        let _ = tx
            .send(line(
                json!({"type": "exit", "exit_code": code, "timed_out": timed_out}),
            ))
            .await;
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let body = Body::from_stream(tokio_stream::StreamExt::map(
        stream,
        Ok::<Bytes, std::convert::Infallible>,
    ));
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(body)
        .map_err(|e| ApiError::Runtime(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_forms() {
        let r = ExecRequest {
            shell: Some("echo hi".into()),
            ..Default::default()
        };
        assert_eq!(r.argv().unwrap(), ["/bin/sh", "-c", "echo hi"]);
        let r = ExecRequest {
            cmd: vec!["ls".into()],
            shell: Some("x".into()),
            ..Default::default()
        };
        assert!(r.argv().unwrap_err().to_string().contains("not both"));
        assert!(ExecRequest::default().argv().is_err());
    }
}
