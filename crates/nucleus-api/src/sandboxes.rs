//! Sandboxes: create (detached, under a monitor of its own), list, get,
//! stop, delete, logs and stats, each a blocking call into
//! `nucleus_sandbox` (which [`Service`] runs on tokio's blocking pool), and
//! the `/v1/sandboxes` routes over them.

use crate::error::ApiError;
use crate::{AppState, Service};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use nucleus_engine::state::StateRoot;
use nucleus_sandbox::manage::{self, View};
use nucleus_sandbox::monitor::MonitorCommand;
use nucleus_sandbox::run::{Extensions, RunOptions, RunOutcome};
use nucleus_sandbox::{parse, RootfsSource, SandboxSpec};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// What a sandbox runs when the request names no command: a shell that
/// waits, and exits at once on SIGTERM so `stop` is quick.
pub const KEEP_ALIVE: &[&str] = &[
    "/bin/sh",
    "-c",
    "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done",
];

/// `POST /v1/sandboxes`. The short fields cover what agents set most; `spec`
/// takes a whole `SandboxSpec`, which the short fields then override.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CreateRequest {
    pub name: Option<String>,
    pub image: Option<String>,
    pub rootfs: Option<PathBuf>,
    /// Bytes, or a string with a k/m/g suffix.
    pub memory: Option<Value>,
    pub cpus: Option<f64>,
    pub pids: Option<i64>,
    /// Seconds; the sandbox is killed and removed after that long.
    pub timeout: Option<f64>,
    pub env: BTreeMap<String, String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    /// `SRC:DEST[:ro]`.
    pub volumes: Vec<String>,
    pub network: Option<String>,
    pub command: Vec<String>,
    pub allow_degraded_security: bool,
    pub spec: Option<SandboxSpec>,
}

impl CreateRequest {
    /// The `SandboxSpec` this request means.
    pub fn to_spec(&self) -> Result<SandboxSpec, ApiError> {
        let mut s = self.spec.clone().unwrap_or_default();
        if self.name.is_some() {
            s.name.clone_from(&self.name);
        }
        match (&self.image, &self.rootfs) {
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid(
                    "image",
                    self.image.clone().unwrap_or_default(),
                    "give `image` or `rootfs`, not both",
                ))
            }
            (Some(i), None) => s.rootfs = RootfsSource::Image(i.clone()),
            (None, Some(r)) => s.rootfs = RootfsSource::Directory(r.clone()),
            (None, None) => {}
        }
        if let Some(m) = &self.memory {
            s.resources.memory = Some(match m {
                Value::Number(n) => n.as_i64().ok_or_else(|| {
                    ApiError::invalid("memory", n.to_string(), "not a whole number of bytes")
                })?,
                Value::String(t) => parse::memory(t)?,
                other => {
                    return Err(ApiError::invalid(
                        "memory",
                        other.to_string(),
                        "a number of bytes or a string such as \"512m\"",
                    ))
                }
            });
        }
        if self.cpus.is_some() {
            s.resources.cpus = self.cpus;
        }
        if self.pids.is_some() {
            s.resources.pids = self.pids;
        }
        if self.timeout.is_some() {
            s.timeout = self.timeout;
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') {
                return Err(ApiError::invalid("env", k, "a name without `=`"));
            }
            s.env.push(format!("{k}={v}"));
        }
        if self.workdir.is_some() {
            s.workdir.clone_from(&self.workdir);
        }
        if self.user.is_some() {
            s.user.clone_from(&self.user);
        }
        for v in &self.volumes {
            s.volumes.push(parse::volume(v)?);
        }
        if let Some(n) = &self.network {
            s.network = parse::network(n)?;
        }
        if !self.command.is_empty() {
            s.command.clone_from(&self.command);
        }
        // Run by an ordinary user, a sandbox gets a user namespace, as
        // `nucleus run` does (the engine refuses one without).
        if !rustix::process::geteuid().is_root()
            && s.userns.mode == nucleus_sandbox::userns::UsernsMode::Host
        {
            s.userns.mode = nucleus_sandbox::userns::UsernsMode::Private;
        }
        // A sandbox waits for commands: an image's own entrypoint and
        // command would run and exit (the image needs a /bin/sh).
        if s.command.is_empty() {
            s.command = KEEP_ALIVE.iter().map(|a| a.to_string()).collect();
            if matches!(s.rootfs, RootfsSource::Image(_)) && s.entrypoint.is_none() {
                s.entrypoint = Some(String::new());
            }
        }
        s.security.allow_degraded_security |= self.allow_degraded_security;
        Ok(s)
    }
}

fn describe(root: &StateRoot, id: &str) -> Result<Value, ApiError> {
    let v = View::load(root, id)?;
    Ok(serde_json::to_value(v.summary()).unwrap_or(Value::Null))
}

/// Starts `spec` detached (under its own monitor) and describes it.
pub(crate) fn create(st: &AppState, spec: &SandboxSpec) -> Result<Value, ApiError> {
    let opts = RunOptions {
        detach: true,
        rm: true,
        ..RunOptions::default()
    };
    // Each monitor forks the sandbox's exec server, its socket bound
    // before the create returns (`exec_server`).
    let monitor = MonitorCommand {
        exe: st.exe.clone(),
        debug: st.debug,
        exec_sockets: Some(crate::exec_server::socket_dir(st)),
        standby: Some(st.standby.clone()),
    };
    let outcome = {
        let _one = st.create_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut ext = Extensions::with_stores(&st.root, &st.data_root);
        nucleus_sandbox::run::run(&st.root, spec, &opts, &mut ext, &monitor)?
    };
    let id = match outcome {
        RunOutcome::Detached { id } => id,
        RunOutcome::Exited { id, .. } => id,
    };
    describe(&StateRoot::new(&st.root), &id)
}

pub(crate) fn list(st: &AppState) -> Result<Value, ApiError> {
    let all = manage::ps(&StateRoot::new(&st.root), true)?;
    Ok(serde_json::to_value(all).unwrap_or(Value::Null))
}

pub(crate) fn get(st: &AppState, id: &str) -> Result<Value, ApiError> {
    let root = StateRoot::new(&st.root);
    let mut v = describe(&root, id)?;
    v["Inspect"] = manage::inspect(&root, id)?;
    Ok(v)
}

/// The grace period of `stop`, checked.
pub(crate) fn stop_grace(seconds: Option<f64>) -> Result<Duration, ApiError> {
    let grace = seconds.unwrap_or(10.0);
    if !(0.0..=3600.0).contains(&grace) {
        return Err(ApiError::invalid(
            "timeout",
            grace.to_string(),
            "seconds from 0 to 3600",
        ));
    }
    Ok(Duration::from_secs_f64(grace))
}

pub(crate) fn stop(st: &AppState, id: &str, grace: Duration) -> Result<(), ApiError> {
    Ok(manage::stop(&StateRoot::new(&st.root), id, grace)?)
}

/// Kills and removes a sandbox.
pub(crate) fn delete(st: &AppState, id: &str) -> Result<(), ApiError> {
    let root = StateRoot::new(&st.root);
    let full = nucleus_sandbox::names::resolve(&root, id).ok();
    manage::rm(&root, id, true)?;
    // The sandbox's exec server died with its cgroup: its socket stays.
    if let Some(full) = full {
        crate::exec_server::remove_files(st, &full);
    }
    Ok(())
}

pub(crate) fn logs(st: &AppState, id: &str) -> Result<Value, ApiError> {
    let l = manage::logs(&StateRoot::new(&st.root), id)?;
    let entries: Vec<Value> = l
        .entries
        .iter()
        .map(|e| json!({"time": e.time, "stream": e.stream, "log": e.log}))
        .collect();
    Ok(Value::Array(entries))
}

pub(crate) fn stats(st: &AppState, id: &str) -> Result<Value, ApiError> {
    let root = StateRoot::new(&st.root);
    let mut sampler = manage::StatsSampler::new(&root, std::slice::from_ref(&id.to_string()))?;
    let first = sampler
        .sample()
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::NotRunning(id.to_string()))?;
    Ok(serde_json::to_value(first).unwrap_or(Value::Null))
}

pub async fn health() -> Json<Value> {
    Json(json!({"ok": true, "version": env!("CARGO_PKG_VERSION")}))
}

pub async fn create_route(
    State(sv): State<Service>,
    Json(req): Json<CreateRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    Ok((StatusCode::CREATED, Json(sv.create(&req).await?)))
}

pub async fn list_route(State(sv): State<Service>) -> Result<Json<Value>, ApiError> {
    Ok(Json(sv.list().await?))
}

pub async fn get_route(
    State(sv): State<Service>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(sv.get(&id).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct StopQuery {
    /// Seconds between SIGTERM and SIGKILL (10 by default).
    pub timeout: Option<f64>,
}

pub async fn stop_route(
    State(sv): State<Service>,
    Path(id): Path<String>,
    Query(q): Query<StopQuery>,
) -> Result<StatusCode, ApiError> {
    sv.stop(&id, q.timeout).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete_route(
    State(sv): State<Service>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    sv.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn logs_route(
    State(sv): State<Service>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(sv.logs(&id).await?))
}

pub async fn stats_route(
    State(sv): State<Service>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(sv.stats(&id).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> CreateRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn short_fields_become_a_spec() {
        let s = req(json!({"memory": "512m", "timeout": 60, "env": {"A": "1"}, "pids": 64}))
            .to_spec()
            .unwrap();
        assert_eq!(s.resources.memory, Some(512 << 20));
        assert_eq!(s.resources.pids, Some(64));
        assert_eq!(s.timeout, Some(60.0));
        assert_eq!(s.env, ["A=1"]);
        assert_eq!(s.command, KEEP_ALIVE);
        assert!(s.rootfs.is_host_derived());
    }

    #[test]
    fn numbers_and_specs() {
        let s = req(json!({"memory": 1048576, "spec": {"hostname": "box"}, "rootfs": "/srv/r"}))
            .to_spec()
            .unwrap();
        assert_eq!(s.resources.memory, Some(1 << 20));
        assert_eq!(s.hostname.as_deref(), Some("box"));
        assert_eq!(s.rootfs, RootfsSource::Directory("/srv/r".into()));
    }

    #[test]
    fn bad_values_name_the_field() {
        let e = req(json!({"memory": "lots"}))
            .to_spec()
            .unwrap_err()
            .to_string();
        assert!(e.contains("memory") && e.contains("lots"), "{e}");
        let e = req(json!({"env": {"A=B": "1"}}))
            .to_spec()
            .unwrap_err()
            .to_string();
        assert!(e.contains("env") && e.contains("A=B"), "{e}");
        assert!(serde_json::from_value::<CreateRequest>(json!({"memroy": 1})).is_err());
    }
}
