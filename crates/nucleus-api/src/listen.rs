//! The listeners: the unix socket (made mode 0600 before anyone can
//! connect) and the optional TCP address behind the token check.

use crate::auth;
use crate::error::ApiError;
use crate::ServeConfig;
use axum::Router;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

pub async fn run(cfg: ServeConfig, app: Router, token: Option<Arc<str>>) -> Result<(), ApiError> {
    let fail = |addr: String, e: std::io::Error| ApiError::Listen {
        addr,
        reason: e.to_string(),
    };
    let sock = cfg.socket.display().to_string();
    if let Some(parent) = cfg.socket.parent() {
        std::fs::create_dir_all(parent).map_err(|e| fail(sock.clone(), e))?;
    }
    // A socket left by a server that died is replaced; a live one is not.
    if std::os::unix::net::UnixStream::connect(&cfg.socket).is_ok() {
        return Err(ApiError::Listen {
            addr: sock,
            reason: "another server is listening there".into(),
        });
    }
    let _ = std::fs::remove_file(&cfg.socket);
    // Bound under a umask that leaves only the owner's bits, then chmod
    // for certainty: the socket is never reachable by others.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let unix = tokio::net::UnixListener::bind(&cfg.socket);
    rustix::process::umask(old);
    let unix = unix.map_err(|e| fail(sock.clone(), e))?;
    std::fs::set_permissions(&cfg.socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| fail(sock.clone(), e))?;
    tracing::info!(socket = %sock, "serving the sandbox API");

    let shutdown = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    };
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut tasks = tokio::task::JoinSet::new();
    {
        let mut rx = stop_tx.subscribe();
        let app = app.clone();
        tasks.spawn(async move {
            axum::serve(unix, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.recv().await;
                })
                .await
        });
    }
    if let (Some(addr), Some(token)) = (cfg.listen, token) {
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| fail(addr.to_string(), e))?;
        tracing::info!(%addr, "serving the sandbox API on TCP (bearer token required)");
        let app = app.layer(axum::middleware::from_fn_with_state(
            token,
            auth::require_token,
        ));
        let mut rx = stop_tx.subscribe();
        tasks.spawn(async move {
            axum::serve(tcp, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.recv().await;
                })
                .await
        });
    }
    shutdown.await;
    let _ = stop_tx.send(());
    while tasks.join_next().await.is_some() {}
    let _ = std::fs::remove_file(&cfg.socket);
    Ok(())
}
