//! A sandbox's events, as they happen: `started` (at once, for a running
//! sandbox), `oom` each time the kernel OOM-kills one of its processes,
//! `stats` every `?stats=SECONDS` when asked, and last `exited` with the
//! exit code, whether its timeout killed it and how many OOM kills there
//! were. `GET /v1/sandboxes/{id}/events` streams them as NDJSON.
//!
//! OOM kills and stats come from the engine's `events` (the cgroup's
//! counters). The exit code is the monitor's exit record; the monitor
//! removes a sandbox right after writing it, so the bundle directory is
//! watched with inotify and the record read the moment it is renamed in.
//! The OOM counter is polled (every 100 ms) while the sandbox runs: an OOM
//! kill that ends the sandbox at once may show only as its exit code (137).

use crate::error::ApiError;
use crate::{AppState, Service};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::Response;
use nucleus_engine::lifecycle::resources;
use nucleus_engine::state::{StateRoot, Status, OWNED_BUNDLE_ANNOTATION};
use nucleus_sandbox::manage::View;
use nucleus_sandbox::monitor::ExitRecord;
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::inotify;
use serde::Deserialize;
use serde_json::{json, Value};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;

/// How often the exit watcher looks again without an inotify event.
const EXIT_POLL: Duration = Duration::from_millis(100);
/// The stats interval when none is asked for: in effect, never.
const NO_STATS: Duration = Duration::from_secs(365 * 86400);

/// Streams `id`'s events; the receiver ends after `exited`.
pub(crate) fn start(
    st: &AppState,
    query: &str,
    stats: Option<f64>,
) -> Result<mpsc::Receiver<Value>, ApiError> {
    let interval = match stats {
        Some(s) if s > 0.0 && s <= 86400.0 => Duration::from_secs_f64(s),
        Some(s) => {
            return Err(ApiError::invalid(
                "stats",
                s.to_string(),
                "seconds, more than 0 and at most 86400",
            ))
        }
        None => NO_STATS,
    };
    let root = StateRoot::new(&st.root);
    let view = View::load(&root, query)?;
    let id = view.state.id.clone();
    let bundle = view
        .state
        .annotations
        .get(OWNED_BUNDLE_ANNOTATION)
        .map(PathBuf::from);
    let (tx, rx) = mpsc::channel(64);
    if view.status == Status::Stopped {
        let _ = tx.try_send(exited(&id, view.exit.as_ref(), 0));
        return Ok(rx);
    }
    let _ = tx.try_send(json!({
        "type": "started",
        "id": id,
        "pid": view.state.pid,
        "created": view.state.created,
    }));
    let state_root = st.root.clone();
    std::thread::spawn(move || {
        let watcher = {
            let (bundle, tx, root, id) = (bundle, tx.clone(), state_root.clone(), id.clone());
            std::thread::spawn(move || watch_exit(&root, &id, bundle.as_deref(), &tx))
        };
        let mut ooms = 0u64;
        let root = StateRoot::new(&state_root);
        let _ = resources::events(&root, &id, interval, &mut |e| {
            if e.kind == "oom" {
                ooms += 1;
            }
            let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
            if let Some(o) = v.as_object_mut() {
                o.remove("id");
            }
            tx.blocking_send(v)
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
        });
        let record = watcher.join().ok().flatten();
        let _ = tx.blocking_send(exited(&id, record.as_ref(), ooms));
    });
    Ok(rx)
}

fn exited(id: &str, record: Option<&ExitRecord>, ooms: u64) -> Value {
    json!({
        "type": "exited",
        "id": id,
        "exit_code": record.map(|r| r.exit_code),
        "timed_out": record.is_some_and(|r| r.timed_out),
        "finished_at": record.map(|r| r.finished_at.clone()),
        "oom_kills": ooms,
    })
}

fn watch(dir: &std::path::Path) -> Option<OwnedFd> {
    let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK).ok()?;
    inotify::add_watch(
        &fd,
        dir,
        inotify::WatchFlags::MOVED_TO | inotify::WatchFlags::CLOSE_WRITE,
    )
    .ok()?;
    Some(fd)
}

/// Waits until the sandbox has exited (or is gone) and returns its exit
/// record, if it could be read before the sandbox was removed.
fn watch_exit(
    root: &std::path::Path,
    id: &str,
    bundle: Option<&std::path::Path>,
    tx: &mpsc::Sender<Value>,
) -> Option<ExitRecord> {
    let bundle = bundle?;
    // Held until we return: a monitor removing its sandbox waits for us.
    let _reading = ExitRecord::watch(bundle);
    let notify = watch(bundle);
    let dir = StateRoot::new(root).container_dir(id);
    let mut buf = [0u8; 4096];
    loop {
        if let Some(r) = ExitRecord::read(bundle) {
            return Some(r);
        }
        if !dir.exists() || tx.is_closed() {
            return ExitRecord::read(bundle);
        }
        match &notify {
            Some(fd) => {
                let mut fds = [PollFd::new(fd, PollFlags::IN)];
                let t = Timespec::try_from(EXIT_POLL).unwrap_or(Timespec {
                    tv_sec: 0,
                    tv_nsec: 100_000_000,
                });
                let _ = rustix::event::poll(&mut fds, Some(&t));
                while matches!(rustix::io::read(fd, &mut buf), Ok(n) if n > 0) {}
            }
            None => std::thread::sleep(EXIT_POLL),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EventsQuery {
    /// Also a `stats` event every this many seconds.
    pub stats: Option<f64>,
}

/// `GET /v1/sandboxes/{id}/events[?stats=SECONDS]`.
pub async fn events_route(
    State(sv): State<Service>,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let events = sv.events(&id, q.stats).await?;
    let stream = tokio_stream::wrappers::ReceiverStream::new(events);
    let body = Body::from_stream(tokio_stream::StreamExt::map(stream, |v| {
        let mut b = serde_json::to_vec(&v).unwrap_or_default();
        b.push(b'\n');
        Ok::<Bytes, std::convert::Infallible>(Bytes::from(b))
    }));
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(body)
        .map_err(|e| ApiError::Runtime(e.to_string()))
}
