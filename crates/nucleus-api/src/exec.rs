//! Running a command in a sandbox: [`start`] yields its output as
//! [`ExecEvent`]s as they come, ending with its exit (or an error).
//! `POST /v1/sandboxes/{id}/exec` streams them one JSON object per line
//! (`application/x-ndjson`):
//! `{"type":"stdout","data":"<base64>"}`, the same for `stderr`, then
//! `{"type":"exit","exit_code":N,"timed_out":false}` (or `{"type":"error",…}`).
//! The request is JSON, or (content type [`STREAM_CONTENT_TYPE`]) one
//! line of JSON followed by the command's stdin, fed to it as it arrives.
//!
//! The command runs through `nucleus exec` as a child process: the engine
//! forks the exec'd process from its caller, which must not be this
//! threaded server. `--pid-file` tells the two apart: stderr before the
//! pid file exists is nucleus's own (an error event if nothing ran), and
//! the pid is what a timeout kills, with its descendants.

use crate::error::ApiError;
use crate::{AppState, Service, Shared};
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use base64::Engine as _;
use nucleus_engine::state::StateRoot;
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// The exit code `nucleus exec` uses for its own failures.
const EXEC_RUNTIME_ERRORS: [i32; 2] = [255, 1];

#[derive(Debug, Default, Clone, Deserialize)]
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

/// What a running command produced, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEvent {
    Stdout(Bytes),
    Stderr(Bytes),
    /// The command ended (`timed_out`: killed by its timeout).
    Exit {
        code: i32,
        timed_out: bool,
    },
    /// Nothing ran, or waiting for it failed: `message` says why.
    Error {
        message: String,
        exit_code: Option<i32>,
    },
}

impl ExecEvent {
    /// The NDJSON line the HTTP API sends for this event.
    fn to_line(&self) -> Bytes {
        let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
        let v = match self {
            ExecEvent::Stdout(d) => json!({"type": "stdout", "data": b64(d)}),
            ExecEvent::Stderr(d) => json!({"type": "stderr", "data": b64(d)}),
            ExecEvent::Exit { code, timed_out } => {
                json!({"type": "exit", "exit_code": code, "timed_out": timed_out})
            }
            ExecEvent::Error { message, exit_code } => match exit_code {
                Some(c) => json!({"type": "error", "message": message, "exit_code": c}),
                None => json!({"type": "error", "message": message}),
            },
        };
        let mut b = serde_json::to_vec(&v).unwrap_or_default();
        b.push(b'\n');
        Bytes::from(b)
    }
}

/// A finished command's output, gathered from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
    pub timed_out: bool,
    /// Bytes dropped past the `limit` given to [`ExecOutput::gather`].
    pub truncated: u64,
}

impl ExecOutput {
    /// Reads events to the end, keeping at most `limit` bytes of each
    /// stream; an `Error` event is the error.
    pub async fn gather(
        mut events: mpsc::Receiver<ExecEvent>,
        limit: usize,
    ) -> Result<ExecOutput, ApiError> {
        let mut out = ExecOutput::default();
        let keep = |buf: &mut Vec<u8>, d: &[u8], dropped: &mut u64| {
            let room = limit.saturating_sub(buf.len()).min(d.len());
            buf.extend_from_slice(&d[..room]);
            *dropped += (d.len() - room) as u64;
        };
        while let Some(e) = events.recv().await {
            match e {
                ExecEvent::Stdout(d) => keep(&mut out.stdout, &d, &mut out.truncated),
                ExecEvent::Stderr(d) => keep(&mut out.stderr, &d, &mut out.truncated),
                ExecEvent::Exit { code, timed_out } => {
                    out.exit_code = code;
                    out.timed_out = timed_out;
                    return Ok(out);
                }
                ExecEvent::Error { message, .. } => return Err(ApiError::Exec(message)),
            }
        }
        Err(ApiError::Exec(
            "the command's output ended without an exit".into(),
        ))
    }
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
}

impl Drop for ExecFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pid);
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Relays one output pipe. With `gate`, output is held back until that
/// file (the pid file) exists: before it, whatever arrives on stderr is
/// nucleus's own error, and what is still held at EOF is returned.
async fn pump(
    mut r: impl AsyncRead + Unpin,
    event: fn(Bytes) -> ExecEvent,
    tx: mpsc::Sender<ExecEvent>,
    gate: Option<PathBuf>,
) -> Vec<u8> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut held = Vec::new();
    let mut open = gate.is_none();
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return held,
            Ok(n) => {
                if !open {
                    open = gate.as_ref().is_some_and(|g| g.exists());
                    held.extend_from_slice(&buf[..n]);
                    if !open {
                        continue;
                    }
                    let out = std::mem::take(&mut held);
                    if tx.send(event(Bytes::from(out))).await.is_err() {
                        return Vec::new();
                    }
                    continue;
                }
                if tx
                    .send(event(Bytes::copy_from_slice(&buf[..n])))
                    .await
                    .is_err()
                {
                    return held;
                }
            }
        }
    }
}

/// `pid` and every process descended from it (from
/// `/proc/<pid>/task/<tid>/children`), so a shell's children go too.
fn tree(pid: i32) -> Vec<i32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() && all.len() < 4096 {
        let p = all[i];
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for t in tasks.flatten() {
                if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
                    all.extend(
                        text.split_whitespace()
                            .filter_map(|c| c.parse::<i32>().ok()),
                    );
                }
            }
        }
        i += 1;
    }
    all
}

/// SIGKILL to the exec'd process and its descendants.
fn kill(pid: Option<i32>) {
    let Some(pid) = pid else { return };
    for p in tree(pid)
        .into_iter()
        .filter_map(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
}

/// Where a command's stdin comes from.
#[derive(Debug)]
pub enum ExecStdin {
    /// `/dev/null`, or the request's base64 `stdin`.
    FromRequest,
    /// Chunks as they come; stdin is closed when the sender is dropped.
    Stream(mpsc::Receiver<Bytes>),
}

/// Feeds a command's stdin, then closes it.
async fn feed(mut w: Box<dyn AsyncWrite + Send + Unpin>, source: StdinSource) {
    match source {
        StdinSource::Bytes(data) => {
            let _ = w.write_all(&data).await;
        }
        StdinSource::Stream(mut rx) => {
            while let Some(chunk) = rx.recv().await {
                if w.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[derive(Debug)]
enum StdinSource {
    Bytes(Vec<u8>),
    Stream(mpsc::Receiver<Bytes>),
}

type Reader = Box<dyn AsyncRead + Send + Unpin>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// What runs a command: a `nucleus exec` child, or a worker of the
/// sandbox's exec server.
enum Runner {
    Child(tokio::process::Child),
    Server(crate::exec_server::Exit),
}

impl Runner {
    /// Its exit code, as `nucleus exec`'s (-1 when killed by a signal).
    async fn wait(&mut self) -> std::io::Result<i32> {
        match self {
            Runner::Child(c) => c.wait().await.map(|s| s.code().unwrap_or(-1)),
            Runner::Server(s) => s.wait().await,
        }
    }
}

/// Starts `nucleus <args>` through the sandbox's exec server, or when
/// that is not possible as a child process.
async fn launch(
    st: &AppState,
    id: &str,
    args: &[std::ffi::OsString],
    stdin: bool,
) -> Result<(Runner, Reader, Reader, Option<Writer>), String> {
    let utf8: Option<Vec<String>> = std::iter::once(st.root.as_os_str())
        .chain(args.iter().map(|a| a.as_os_str()))
        .map(|a| a.to_str().map(str::to_string))
        .collect();
    if let Some(text) = utf8 {
        if let Some(s) = crate::exec_server::start(st, id, &text[1..], stdin).await {
            let input = s.stdin.map(|w| Box::new(w) as Writer);
            let runner = Runner::Server(s.exit);
            return Ok((runner, Box::new(s.stdout), Box::new(s.stderr), input));
        }
    }
    let mut c = tokio::process::Command::new(&st.exe);
    c.arg("--root").arg(&st.root).args(args);
    c.stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = c
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", st.exe.display()))?;
    let out = child.stdout.take().ok_or("no stdout pipe")?;
    let err = child.stderr.take().ok_or("no stderr pipe")?;
    let input = child.stdin.take().map(|w| Box::new(w) as Writer);
    Ok((Runner::Child(child), Box::new(out), Box::new(err), input))
}

/// Starts `req` in sandbox `query`; its events arrive on the receiver.
/// Dropping the receiver kills the command.
pub(crate) fn start(
    st: &Shared,
    query: &str,
    req: &ExecRequest,
    input: ExecStdin,
) -> Result<mpsc::Receiver<ExecEvent>, ApiError> {
    let argv = req.argv()?;
    let stdin = match (&req.stdin, input) {
        (Some(_), ExecStdin::Stream(_)) => {
            return Err(ApiError::invalid(
                "stdin",
                "…",
                "give stdin in the request or as the streamed body, not both",
            ))
        }
        (Some(s), ExecStdin::FromRequest) => Some(StdinSource::Bytes(
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| ApiError::invalid("stdin", "…", format!("not base64: {e}")))?,
        )),
        (None, ExecStdin::Stream(rx)) => Some(StdinSource::Stream(rx)),
        (None, ExecStdin::FromRequest) => None,
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
    let id = nucleus_sandbox::names::resolve(&root, query)?;
    let files = ExecFiles::new(&st.root)?;

    let mut args: Vec<std::ffi::OsString> = vec!["--log".into(), files.log.clone().into()];
    args.extend(["exec".into(), "--pid-file".into(), files.pid.clone().into()]);
    if let Some(cwd) = &req.cwd {
        args.extend(["--cwd".into(), cwd.into()]);
    }
    for (k, v) in &req.env {
        if k.is_empty() || k.contains('=') {
            return Err(ApiError::invalid("env", k, "a name without `=`"));
        }
        args.extend(["--env".into(), format!("{k}={v}").into()]);
    }
    if let Some(u) = &req.user {
        args.extend(["--user".into(), u.into()]);
    }
    if req.tty {
        args.push("--tty".into());
    }
    args.push(id.clone().into());
    args.extend(argv.iter().map(Into::into));

    let (tx, rx) = mpsc::channel::<ExecEvent>(64);
    let timeout = req.timeout.map(Duration::from_secs_f64);
    let st = st.clone();
    tokio::spawn(async move {
        let (mut proc, out, err, input) = match launch(&st, &id, &args, stdin.is_some()).await {
            Ok(l) => l,
            Err(message) => {
                let _ = tx
                    .send(ExecEvent::Error {
                        message,
                        exit_code: None,
                    })
                    .await;
                return;
            }
        };
        if let (Some(w), Some(source)) = (input, stdin) {
            tokio::spawn(feed(w, source));
        }
        let gate = Some(files.pid.clone());
        let out_pump = Some(tokio::spawn(pump(out, ExecEvent::Stdout, tx.clone(), None)));
        let err_pump = Some(tokio::spawn(pump(err, ExecEvent::Stderr, tx.clone(), gate)));
        let pumps = async move {
            if let Some(a) = out_pump {
                let _ = a.await;
            }
            match err_pump {
                Some(b) => b.await.unwrap_or_default(),
                None => Vec::new(),
            }
        };
        let mut timed_out = false;
        let status = tokio::select! {
            s = proc.wait() => s,
            _ = async { match timeout { Some(t) => tokio::time::sleep(t).await, None => std::future::pending().await } } => {
                timed_out = true;
                kill(files.read_pid());
                proc.wait().await
            }
            _ = tx.closed() => {
                // The client went away: nothing reads the output any more.
                kill(files.read_pid());
                proc.wait().await
            }
        };
        // After a kill, a process that escaped the tree may still hold the
        // pipes: give the output a moment, not forever.
        let held = if timed_out || tx.is_closed() {
            tokio::time::timeout(Duration::from_millis(500), pumps)
                .await
                .unwrap_or_default()
        } else {
            pumps.await
        };
        let code = match status {
            Ok(c) => c,
            Err(e) => {
                let _ = tx
                    .send(ExecEvent::Error {
                        message: e.to_string(),
                        exit_code: None,
                    })
                    .await;
                return;
            }
        };
        if files.read_pid().is_none() && EXEC_RUNTIME_ERRORS.contains(&code) {
            // Nothing was executed: what nucleus said is the error.
            let text = String::from_utf8_lossy(&held);
            let message = text.trim().trim_start_matches("nucleus: ").to_string();
            let _ = tx
                .send(ExecEvent::Error {
                    message,
                    exit_code: Some(code),
                })
                .await;
            return;
        }
        if !held.is_empty() {
            let _ = tx.send(ExecEvent::Stderr(Bytes::from(held))).await;
        }
        let _ = tx.send(ExecEvent::Exit { code, timed_out }).await;
    });
    Ok(rx)
}

/// The content type of an exec request whose body streams stdin: one line
/// of JSON (the [`ExecRequest`]), then the stdin bytes until the body ends.
pub const STREAM_CONTENT_TYPE: &str = "application/x-nucleus-exec-stream";
/// The longest request line (or JSON body) accepted.
const REQUEST_LIMIT: usize = 1 << 20;

fn parse_request(text: &[u8]) -> Result<ExecRequest, ApiError> {
    serde_json::from_slice(text).map_err(|e| ApiError::invalid("body", "…", e.to_string()))
}

/// Reads the request line of a streaming exec; the rest of the body goes
/// to the returned receiver as it comes.
async fn split_stream(body: Body) -> Result<(ExecRequest, mpsc::Receiver<Bytes>), ApiError> {
    let mut chunks = body.into_data_stream();
    let mut head: Vec<u8> = Vec::new();
    let rest = loop {
        let Some(chunk) = tokio_stream::StreamExt::next(&mut chunks).await else {
            return Err(ApiError::invalid(
                "body",
                "…",
                "the request line (JSON, then a newline) is missing",
            ));
        };
        let chunk = chunk.map_err(|e| ApiError::invalid("body", "…", e.to_string()))?;
        if let Some(nl) = chunk.iter().position(|b| *b == b'\n') {
            head.extend_from_slice(&chunk[..nl]);
            break chunk.slice(nl + 1..);
        }
        head.extend_from_slice(&chunk);
        if head.len() > REQUEST_LIMIT {
            return Err(ApiError::invalid(
                "body",
                "…",
                format!("the request line is longer than {REQUEST_LIMIT} bytes"),
            ));
        }
    };
    let req = parse_request(&head)?;
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        if !rest.is_empty() && tx.send(rest).await.is_err() {
            return;
        }
        while let Some(Ok(chunk)) = tokio_stream::StreamExt::next(&mut chunks).await {
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
    });
    Ok((req, rx))
}

/// `POST /v1/sandboxes/{id}/exec`: a JSON [`ExecRequest`], or with
/// [`STREAM_CONTENT_TYPE`] a request line and then stdin.
pub async fn exec_route(
    State(sv): State<Service>,
    Path(query): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let streaming = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(STREAM_CONTENT_TYPE));
    let events = if streaming {
        let (req, stdin) = split_stream(body).await?;
        sv.exec_with_stdin(&query, &req, ExecStdin::Stream(stdin))?
    } else {
        let bytes = axum::body::to_bytes(body, REQUEST_LIMIT)
            .await
            .map_err(|e| ApiError::invalid("body", "…", e.to_string()))?;
        sv.exec(&query, &parse_request(&bytes)?)?
    };
    let stream = tokio_stream::wrappers::ReceiverStream::new(events);
    let body = Body::from_stream(tokio_stream::StreamExt::map(stream, |e| {
        Ok::<Bytes, std::convert::Infallible>(e.to_line())
    }));
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
