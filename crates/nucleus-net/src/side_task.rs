//! What runs beside a container for its lifetime: the resolver, the
//! `::1` port proxies and the NFLOG listener. The monitor of a detached container (or the
//! foreground runtime) owns it; dropping the handle stops it, so no
//! resolver outlives its container.

use crate::dns::Resolver;
use crate::error::{NetError, Result};
use crate::nflog::NflogListener;
use crate::proxy::Proxy;

#[derive(Debug, Default)]
pub struct SideTask {
    pub resolver: Option<Resolver>,
    pub proxies: Vec<Proxy>,
    /// Refused connections, read from the container's NFLOG group.
    pub nflog: Option<NflogListener>,
}

/// A running side task; dropping it stops it and joins its thread.
#[derive(Debug)]
pub struct SideTaskHandle {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for SideTaskHandle {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl SideTask {
    pub fn is_empty(&self) -> bool {
        self.resolver.is_none() && self.proxies.is_empty() && self.nflog.is_none()
    }

    /// Serve on the caller's tokio runtime until every part has stopped.
    pub async fn serve(self) {
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(r) = self.resolver {
            tasks.spawn(async move {
                if let Err(e) = r.serve().await {
                    tracing::warn!(error = %e, "resolver stopped");
                }
            });
        }
        if let Some(l) = self.nflog {
            tasks.spawn(l.serve());
        }
        for p in self.proxies {
            tasks.spawn(p.serve());
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Run on a thread of its own until the handle is dropped.
    pub fn spawn(self) -> Result<SideTaskHandle> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| NetError::Runtime {
                purpose: "the network side task",
                source,
            })?;
        let thread = std::thread::Builder::new()
            .name("nucleus-net".into())
            .spawn(move || {
                rt.block_on(async move {
                    tokio::select! {
                        () = self.serve() => {}
                        _ = rx => {}
                    }
                });
            })
            .map_err(|e| NetError::io("start a thread for", "the network side task", e))?;
        Ok(SideTaskHandle {
            stop: Some(tx),
            thread: Some(thread),
        })
    }
}
