//! [`Service`]: what a front end can do with sandboxes, independent of how
//! it is asked. The HTTP routes and the MCP tools (`nucleus-mcp`) both call
//! these methods; blocking library calls run on tokio's blocking pool, so
//! every method must be called inside a tokio runtime.

use crate::error::ApiError;
use crate::exec::{ExecEvent, ExecRequest, ExecStdin};
use crate::sandboxes::CreateRequest;
use crate::{blocking, events, exec, files, sandboxes, AppState, Shared};
use axum::body::Bytes;
use nucleus_sandbox::monitor::standby::Standby;
use nucleus_sandbox::monitor::MonitorCommand;
use serde_json::Value;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::mpsc;

/// How long after a create its standby monitor is replaced.
const REFILL_DELAY: std::time::Duration = std::time::Duration::from_millis(15);

/// The sandboxes under one state root.
#[derive(Debug, Clone)]
pub struct Service {
    pub(crate) state: Shared,
}

impl Service {
    /// Sandboxes under `root`, images and networks under `data_root`;
    /// `exe` is the `nucleus` binary that monitors and `exec` run as,
    /// `debug` passes `--debug` to them.
    pub fn new(root: PathBuf, data_root: PathBuf, exe: PathBuf, debug: bool) -> Service {
        let standby = Arc::new(Standby::new(
            MonitorCommand {
                exe: exe.clone(),
                debug,
                exec_sockets: None,
                standby: None,
            },
            &root,
        ));
        Service {
            state: Arc::new(AppState {
                root,
                data_root,
                exe,
                debug,
                create_lock: std::sync::Mutex::new(()),
                exec_servers: Default::default(),
                standby,
            }),
        }
    }

    /// Starts the next create's monitor, in the background; whoever
    /// creates next may use it. Under the create lock: no create's
    /// secret descriptors are open meanwhile.
    pub fn prepare_monitor(&self) {
        self.prepare_monitor_after(std::time::Duration::ZERO);
    }

    /// [`Service::prepare_monitor`] after `delay`: a create's own exec
    /// server and first command go first (the machine may have 2 cores).
    fn prepare_monitor_after(&self, delay: std::time::Duration) {
        let st = self.state.clone();
        tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let _ = tokio::task::spawn_blocking(move || {
                let _one = st.create_lock.lock().unwrap_or_else(|p| p.into_inner());
                if let Err(e) = st.standby.refill() {
                    tracing::warn!(error = %e, "no standby monitor");
                }
            })
            .await;
        });
    }

    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&AppState) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let st = self.state.clone();
        blocking(move || f(&st)).await
    }

    /// Creates a sandbox, detached under its own monitor (it outlives this
    /// process), and describes it (`Id`, `Name`, `State`, …). Its exec
    /// server is a fork of the monitor, listening before this returns;
    /// when the monitor could not fork one, it is started meanwhile, so
    /// the first command does not wait for it.
    pub async fn create(&self, req: &CreateRequest) -> Result<Value, ApiError> {
        let spec = req.to_spec()?;
        let made = self.call(move |st| sandboxes::create(st, &spec)).await;
        // The standby (if it was used) is replaced once the reply and a
        // first command are likely through.
        self.prepare_monitor_after(REFILL_DELAY);
        let made = made?;
        let running = made.get("State").and_then(Value::as_str) == Some("running");
        if let (true, Some(id)) = (running, made.get("Id").and_then(Value::as_str)) {
            if !crate::exec_server::socket_path(&self.state, id).exists() {
                crate::exec_server::prestart(&self.state, id);
            }
        }
        Ok(made)
    }

    /// Every sandbox, running or not.
    pub async fn list(&self) -> Result<Value, ApiError> {
        self.call(sandboxes::list).await
    }

    /// One sandbox's summary and its full inspect document.
    pub async fn get(&self, id: &str) -> Result<Value, ApiError> {
        let id = id.to_string();
        self.call(move |st| sandboxes::get(st, &id)).await
    }

    /// SIGTERM, then SIGKILL after `grace` seconds (10 by default).
    pub async fn stop(&self, id: &str, grace: Option<f64>) -> Result<(), ApiError> {
        let grace = sandboxes::stop_grace(grace)?;
        let id = id.to_string();
        self.call(move |st| sandboxes::stop(st, &id, grace)).await
    }

    /// Kills and removes a sandbox.
    pub async fn delete(&self, id: &str) -> Result<(), ApiError> {
        let id = id.to_string();
        self.call(move |st| sandboxes::delete(st, &id)).await
    }

    /// The main process's output, as the monitor logged it.
    pub async fn logs(&self, id: &str) -> Result<Value, ApiError> {
        let id = id.to_string();
        self.call(move |st| sandboxes::logs(st, &id)).await
    }

    /// CPU, memory and pids of a running sandbox.
    pub async fn stats(&self, id: &str) -> Result<Value, ApiError> {
        let id = id.to_string();
        self.call(move |st| sandboxes::stats(st, &id)).await
    }

    /// The sandbox's events as they happen (`started`, `oom`, `stats` every
    /// `stats` seconds when given, and last `exited`).
    pub async fn events(
        &self,
        id: &str,
        stats: Option<f64>,
    ) -> Result<mpsc::Receiver<Value>, ApiError> {
        let id = id.to_string();
        self.call(move |st| events::start(st, &id, stats)).await
    }

    /// Starts a command; its output and exit arrive as events. Dropping
    /// the receiver kills the command.
    pub fn exec(&self, id: &str, req: &ExecRequest) -> Result<mpsc::Receiver<ExecEvent>, ApiError> {
        exec::start(&self.state, id, req, ExecStdin::FromRequest)
    }

    /// [`Service::exec`] with stdin from `stdin`.
    pub fn exec_with_stdin(
        &self,
        id: &str,
        req: &ExecRequest,
        stdin: ExecStdin,
    ) -> Result<mpsc::Receiver<ExecEvent>, ApiError> {
        exec::start(&self.state, id, req, stdin)
    }

    /// Opens a regular file in the sandbox: the file and its size.
    pub async fn open_file(&self, id: &str, path: &str) -> Result<(std::fs::File, u64), ApiError> {
        let (id, path) = (id.to_string(), path.to_string());
        self.call(move |st| files::open_read(st, &id, &path)).await
    }

    /// A whole file, refused when larger than `limit` bytes.
    pub async fn read_file(&self, id: &str, path: &str, limit: u64) -> Result<Vec<u8>, ApiError> {
        let (file, size) = self.open_file(id, path).await?;
        if size > limit {
            return Err(ApiError::invalid(
                "path",
                path,
                format!("the file has {size} bytes, more than the {limit} that can be read whole"),
            ));
        }
        let path = path.to_string();
        blocking(move || {
            let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            file.take(limit + 1)
                .read_to_end(&mut data)
                .map_err(|e| ApiError::invalid("path", &path, e.to_string()))?;
            if data.len() as u64 > limit {
                return Err(ApiError::invalid(
                    "path",
                    &path,
                    format!("the file grew past {limit} bytes while read"),
                ));
            }
            Ok(data)
        })
        .await
    }

    /// Writes `body` to a file (created or truncated), with missing parent
    /// directories when `parents`; the bytes written.
    pub async fn write_file<S, E>(
        &self,
        id: &str,
        path: &str,
        parents: bool,
        mode: u32,
        body: S,
    ) -> Result<u64, ApiError>
    where
        S: tokio_stream::Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        files::write(self.state.clone(), id, path, parents, mode, body).await
    }

    /// [`Service::write_file`] with the bytes at hand.
    pub async fn write_bytes(
        &self,
        id: &str,
        path: &str,
        parents: bool,
        mode: Option<&str>,
        data: Vec<u8>,
    ) -> Result<u64, ApiError> {
        let mode = files::parse_mode(mode)?;
        let body = tokio_stream::once(Ok::<Bytes, std::convert::Infallible>(Bytes::from(data)));
        self.write_file(id, path, parents, mode, body).await
    }

    /// The entries of a directory (`name`, `type`, `size`, `mode`, …).
    pub async fn list_dir(&self, id: &str, path: &str) -> Result<Value, ApiError> {
        let (id, path) = (id.to_string(), path.to_string());
        self.call(move |st| files::list(st, &id, &path)).await
    }

    /// One entry, not following a final symlink.
    pub async fn stat_file(&self, id: &str, path: &str) -> Result<Value, ApiError> {
        let (id, path) = (id.to_string(), path.to_string());
        self.call(move |st| files::stat(st, &id, &path)).await
    }

    /// Removes a file, or a directory (with its contents when `recursive`).
    pub async fn remove_file(&self, id: &str, path: &str, recursive: bool) -> Result<(), ApiError> {
        let (id, path) = (id.to_string(), path.to_string());
        self.call(move |st| files::remove(st, &id, &path, recursive))
            .await
    }
}
