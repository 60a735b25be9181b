//! nucleus-api: `nucleus serve`, the sandbox API for agent frameworks. An
//! HTTP/JSON server on a unix socket (mode 0600) and, with a bearer token,
//! on a TCP address. It is a second front end of `nucleus-sandbox`, beside
//! the CLI: sandboxes are created through `nucleus_sandbox::run` (detached,
//! so each has its own monitor and outlives this server), managed through
//! `nucleus_sandbox::manage`, and commands run through the `nucleus exec`
//! verb in the sandbox's exec server, a fork of its monitor (the engine
//! forks, which a threaded server must not do itself; see `exec_server`).
//! A standby monitor waits for the next create, so no binary start is on
//! its path. Files are read and written through `/proc/<pid>/root`
//! with every path resolved inside the sandbox's root (`files`).
//!
//! The HTTP routes are thin: what they do is [`Service`]'s, which other
//! front ends (the MCP server, `nucleus-mcp`) call the same way.
//!
//! It knows no command line: the CLI fills in a [`ServeConfig`].
#![forbid(unsafe_code)]

mod auth;
mod error;
mod events;
mod exec;
mod exec_server;
mod files;
mod listen;
mod openapi;
mod reaper;
mod sandboxes;
mod service;

pub use error::ApiError;
pub use exec::{ExecEvent, ExecOutput, ExecRequest, ExecStdin, STREAM_CONTENT_TYPE};
pub use reaper::run as reap_monitors;
pub use sandboxes::CreateRequest;
pub use service::Service;

use axum::routing::{get, post};
use axum::Router;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// What `nucleus serve` was asked for.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The engine's state root (`--root`).
    pub root: PathBuf,
    /// Images and networks (`--data-root`).
    pub data_root: PathBuf,
    /// The unix socket to listen on.
    pub socket: PathBuf,
    /// An optional TCP address; needs `token_file`.
    pub listen: Option<SocketAddr>,
    /// A file holding the bearer token for TCP clients.
    pub token_file: Option<PathBuf>,
    /// The `nucleus` binary: monitors and `exec` run it.
    pub exe: PathBuf,
    /// Pass `--debug` to the processes it starts.
    pub debug: bool,
}

/// What every handler shares (wrapped by [`Service`]).
#[derive(Debug)]
pub(crate) struct AppState {
    pub root: PathBuf,
    pub data_root: PathBuf,
    pub exe: PathBuf,
    pub debug: bool,
    /// Creates run one at a time: a create briefly holds inheritable
    /// descriptors (secrets) that another create's monitor must not get.
    pub create_lock: std::sync::Mutex<()>,
    /// Each sandbox's exec server launch, shared by whoever needs it
    /// first (the create that starts it, or an exec arriving meanwhile).
    pub exec_servers: exec_server::Launches,
    /// The monitor the next create uses, started ahead of need; refilled
    /// under `create_lock`, when no create's secrets are open.
    pub standby: Arc<nucleus_sandbox::monitor::standby::Standby>,
}

pub(crate) type Shared = Arc<AppState>;

/// Runs a blocking library call on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Runtime(e.to_string()))?
}

/// The routes, without authentication.
fn router(service: Service) -> Router {
    Router::new()
        .route("/v1/health", get(sandboxes::health))
        .route("/openapi.json", get(openapi::document))
        .route(
            "/v1/sandboxes",
            post(sandboxes::create_route).get(sandboxes::list_route),
        )
        .route(
            "/v1/sandboxes/{id}",
            get(sandboxes::get_route).delete(sandboxes::delete_route),
        )
        .route("/v1/sandboxes/{id}/stop", post(sandboxes::stop_route))
        .route("/v1/sandboxes/{id}/logs", get(sandboxes::logs_route))
        .route("/v1/sandboxes/{id}/stats", get(sandboxes::stats_route))
        .route("/v1/sandboxes/{id}/events", get(events::events_route))
        .route("/v1/sandboxes/{id}/exec", post(exec::exec_route))
        .route(
            "/v1/sandboxes/{id}/files",
            get(files::read_route)
                .put(files::write_route)
                .delete(files::remove_route),
        )
        .route("/v1/sandboxes/{id}/files/list", get(files::list_route))
        .route("/v1/sandboxes/{id}/files/stat", get(files::stat_route))
        .route(
            "/v1/sandboxes/{id}/files/archive",
            get(files::archive_get).put(files::archive_put),
        )
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(service)
}

/// Runs the server until SIGINT or SIGTERM.
pub fn serve(cfg: ServeConfig) -> Result<(), ApiError> {
    let token = auth::load_token(cfg.listen.is_some(), cfg.token_file.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| ApiError::Runtime(e.to_string()))?;
    let service = Service::new(
        cfg.root.clone(),
        cfg.data_root.clone(),
        cfg.exe.clone(),
        cfg.debug,
    );
    runtime.spawn(reaper::run());
    {
        let _rt = runtime.enter();
        service.prepare_monitor();
    }
    runtime.block_on(listen::run(cfg, router(service), token))
}
