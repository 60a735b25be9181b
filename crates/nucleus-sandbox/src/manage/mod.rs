//! The docker-like management verbs: `ps`, `logs`, `stop`, `kill`, `rm`,
//! `attach`, `stats`, `inspect` and `port`, as functions that return data. Each
//! finds a container by exact id, name or unique id prefix
//! (`StateRoot::resolve`) and calls the engine; printing is the front end's.

use crate::clock;
use crate::error::{Result, SandboxError};
use crate::logs::{self, Entry};
use crate::monitor::{ExitRecord, MONITOR_LOG};
use crate::names;
use crate::net_attach::NetPlan;
use nucleus_engine::lifecycle;
use nucleus_engine::state::{
    ContainerState, StateRoot, Status, LOCK_FILE, NAMES_DIR, NAME_ANNOTATION,
    OWNED_BUNDLE_ANNOTATION, STATE_FILE,
};
use nucleus_engine::EngineError;
use serde::Serialize;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

mod network;
mod ports;
mod stats;
pub use network::{denials, is_live, DenialLog};
pub use ports::{ports, PublishedPort};
pub use stats::{Stats, StatsSampler};

/// A container as the docker-like verbs see it.
#[derive(Debug, Clone)]
pub struct View {
    pub state: ContainerState,
    pub status: Status,
    pub exit: Option<ExitRecord>,
}

impl View {
    pub fn load(root: &StateRoot, query: &str) -> Result<View> {
        let id = names::resolve(root, query)?;
        let state = root.peek(&id).map_err(|source| SandboxError::Resolve {
            query: query.to_string(),
            source: Box::new(source),
        })?;
        let status = root.status_of(&state);
        let exit = bundle_dir(&state).and_then(|b| ExitRecord::read(&b));
        Ok(View {
            state,
            status,
            exit,
        })
    }

    pub fn name(&self) -> &str {
        self.state
            .annotations
            .get(NAME_ANNOTATION)
            .map(String::as_str)
            .unwrap_or("")
    }

    pub fn command(&self) -> String {
        self.state
            .spec
            .process()
            .as_ref()
            .and_then(|p| p.args().clone())
            .unwrap_or_default()
            .join(" ")
    }

    /// `running`, `exited`, `created` or `paused`.
    pub fn state_word(&self) -> &'static str {
        match self.status {
            Status::Stopped => "exited",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Created | Status::Creating => "created",
        }
    }

    /// `Up 5 minutes`, `Exited (3) 2 seconds ago`, ...
    pub fn status_text(&self) -> String {
        let since = |t: &str| {
            clock::parse_rfc3339(t)
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .map(clock::human)
                .unwrap_or_default()
        };
        match (self.status, &self.exit) {
            (Status::Stopped, Some(e)) => {
                let why = if e.timed_out { ", timed out" } else { "" };
                format!(
                    "Exited ({}{why}) {} ago",
                    e.exit_code,
                    since(&e.finished_at)
                )
            }
            (Status::Stopped, None) => "Exited".into(),
            (Status::Running, _) => format!("Up {}", since(&self.state.created)),
            (Status::Paused, _) => format!("Up {} (Paused)", since(&self.state.created)),
            _ => "Created".into(),
        }
    }

    fn pid(&self) -> i32 {
        if self.status == Status::Stopped {
            0
        } else {
            self.state.pid
        }
    }

    pub fn summary(&self) -> ContainerSummary {
        ContainerSummary {
            id: self.state.id.clone(),
            names: self.name().to_string(),
            command: self.command(),
            created_at: self.state.created.clone(),
            state: self.state_word().to_string(),
            status: self.status_text(),
            pid: self.pid(),
            exit_code: self
                .exit
                .as_ref()
                .filter(|_| self.status == Status::Stopped)
                .map(|e| e.exit_code),
        }
    }
}

/// One line of `ps`, in Docker's field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerSummary {
    pub id: String,
    pub names: String,
    pub command: String,
    pub created_at: String,
    pub state: String,
    pub status: String,
    pub pid: i32,
    pub exit_code: Option<i32>,
}

fn bundle_dir(state: &ContainerState) -> Option<PathBuf> {
    state
        .annotations
        .get(OWNED_BUNDLE_ANNOTATION)
        .map(PathBuf::from)
}

/// Containers, newest first; stopped ones only with `all`.
pub fn ps(root: &StateRoot, all: bool) -> Result<Vec<ContainerSummary>> {
    let mut views = Vec::new();
    for id in root.ids().map_err(SandboxError::engine("list"))? {
        let Ok(v) = View::load(root, &id) else {
            continue;
        };
        if all || v.status != Status::Stopped {
            views.push(v);
        }
    }
    views.sort_by(|x, y| y.state.created.cmp(&x.state.created));
    Ok(views.iter().map(View::summary).collect())
}

/// A container's log, as read now.
#[derive(Debug, Clone)]
pub struct ContainerLogs {
    pub id: String,
    pub dir: PathBuf,
    pub entries: Vec<Entry>,
}

/// Reads the log of a container started detached.
pub fn logs(root: &StateRoot, query: &str) -> Result<ContainerLogs> {
    let v = View::load(root, query)?;
    let Some(dir) = bundle_dir(&v.state) else {
        return Err(SandboxError::NoLogs {
            query: query.to_string(),
        });
    };
    let entries = logs::read_all(&dir);
    Ok(ContainerLogs {
        id: v.state.id,
        dir,
        entries,
    })
}

impl ContainerLogs {
    /// Hands each entry written from now on to `emit`, until the container
    /// has stopped and its monitor has recorded the exit.
    pub fn follow(
        &self,
        root: &StateRoot,
        emit: impl FnMut(&Entry) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let (id, dir) = (&self.id, &self.dir);
        logs::follow(
            dir,
            || {
                root.peek(id)
                    .map(|s| root.status_of(&s) == Status::Stopped)
                    .unwrap_or(true)
                    && (ExitRecord::read(dir).is_some() || !dir.exists())
            },
            emit,
        )
    }
}

/// Polls until the container has stopped (or `limit` passes).
fn wait_stopped(root: &StateRoot, id: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        match root.peek(id) {
            Ok(s) if root.status_of(&s) != Status::Stopped => {}
            _ => return true,
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ignore_stopped(e: EngineError) -> Result<(), EngineError> {
    match e {
        EngineError::WrongStatus { .. } => Ok(()),
        other => Err(other),
    }
}

fn in_verb<'q>(op: &'static str, query: &'q str) -> impl FnOnce(EngineError) -> SandboxError + 'q {
    move |e| SandboxError::Container {
        op,
        query: query.to_string(),
        source: Box::new(SandboxError::Engine {
            op,
            source: Box::new(e),
        }),
    }
}

/// SIGTERM, then SIGKILL after `grace`; returns once the exit is recorded.
pub fn stop(root: &StateRoot, query: &str, grace: Duration) -> Result<()> {
    let v = View::load(root, query)?;
    let id = &v.state.id;
    if v.status != Status::Stopped {
        lifecycle::kill(root, id, libc::SIGTERM, false)
            .or_else(ignore_stopped)
            .map_err(in_verb("stop", query))?;
        if !wait_stopped(root, id, grace) {
            lifecycle::kill(root, id, libc::SIGKILL, true)
                .or_else(ignore_stopped)
                .map_err(in_verb("kill", query))?;
            wait_stopped(root, id, Duration::from_secs(10));
        }
    }
    // Let the monitor record the exit before we report it stopped.
    wait_for_exit_record(&v.state);
    Ok(())
}

/// Sends `signal` to the container's init.
pub fn kill(root: &StateRoot, query: &str, signal: i32) -> Result<()> {
    let id = names::resolve(root, query)?;
    lifecycle::kill(root, &id, signal, false).map_err(in_verb("kill", query))
}

/// Removes a stopped container, or with `force` a running one.
pub fn rm(root: &StateRoot, query: &str, force: bool) -> Result<()> {
    remove(root, query, force)?;
    // The last container gone: so is the user namespace they shared. Its
    // removal is done either way; a failure here only leaves the holder.
    if let Err(e) = crate::userns_holder::stop_if_unused(root) {
        tracing::warn!(error = %e, "could not stop the shared user namespace");
    }
    Ok(())
}

fn remove(root: &StateRoot, query: &str, force: bool) -> Result<()> {
    let v = match View::load(root, query) {
        Ok(v) => v,
        Err(e) if force => return remove_unfinished(root, query).unwrap_or(Err(e)),
        Err(e) => return Err(e),
    };
    let id = &v.state.id;
    if v.status != Status::Stopped {
        if !force {
            return Err(SandboxError::NotStopped {
                query: query.to_string(),
                status: v.status.to_string(),
            });
        }
        match lifecycle::kill(root, id, libc::SIGKILL, true).or_else(ignore_stopped) {
            // A `--rm` monitor removed it meanwhile: nothing left to do.
            Ok(()) | Err(EngineError::NotFound { .. }) => {}
            Err(e) => return Err(in_verb("kill", query)(e)),
        }
        wait_stopped(root, id, Duration::from_secs(10));
    }
    // The monitor writes into the bundle until it has recorded the exit;
    // deleting before that would race its last writes.
    wait_for_exit_record(&v.state);
    // Its monitor tears its network down too, but `rm` returns only once
    // the network is free (detaching twice is harmless).
    let net_plan = bundle_dir(&v.state).and_then(|d| NetPlan::read(&d).ok().flatten());
    // pasta outlives its container, and a killed monitor stops nothing.
    if let Some(d) = bundle_dir(&v.state) {
        crate::user_net::stop_recorded(&d);
    }
    match lifecycle::delete(root, id, true) {
        // A `--rm` monitor got there first.
        Ok(()) | Err(EngineError::NotFound { .. }) => {}
        Err(e) => return Err(in_verb("remove", query)(e)),
    }
    if let Some(plan) = net_plan {
        plan.store
            .networking()
            .and_then(|n| n.detach(id))
            .map_err(|e| SandboxError::Network {
                network: plan.network.clone(),
                reason: e.to_string(),
            })?;
    }
    crate::image_store::sweep(root.path())
}

/// A run killed while it started leaves no state file: part of its
/// directory (lock, cgroup record, cgroups), its bundle and its name.
/// `rm -f NAME` (or the full id) removes them; `None` when `query` names
/// no such run, or one too young to tell from a run still starting.
fn remove_unfinished(root: &StateRoot, query: &str) -> Option<Result<()>> {
    let names = root.path().join(NAMES_DIR);
    let id = std::fs::read_to_string(names.join(query))
        .ok()
        .filter(|id| nucleus_engine::state::validate_id(id).is_ok())
        .or_else(|| {
            (nucleus_engine::state::validate_id(query).is_ok()
                && (root.container_dir(query).is_dir()
                    || crate::bundle::bundle_path(root.path(), query).is_dir()))
            .then(|| query.to_string())
        })?;
    if !is_unfinished(root, &id) {
        return None;
    }
    Some(remove_unfinished_id(root, &id).map_err(in_verb("remove", query)))
}

/// Whether `id` is a start that will never finish: its directory has no
/// state file and nobody holds its lock, or (killed before its directory
/// was made) only its bundle is left, older than a start takes.
fn is_unfinished(root: &StateRoot, id: &str) -> bool {
    use nix::fcntl::{Flock, FlockArg};
    let dir = root.container_dir(id);
    if dir.join(STATE_FILE).exists() {
        return false;
    }
    if dir.is_dir() {
        return match std::fs::File::open(dir.join(LOCK_FILE)) {
            Ok(f) => Flock::lock(f, FlockArg::LockExclusiveNonblock).is_ok(),
            Err(_) => true,
        };
    }
    std::fs::metadata(crate::bundle::bundle_path(root.path(), id))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age >= UNFINISHED_AFTER)
}

/// How old a bundle without a container directory must be to count as left over.
const UNFINISHED_AFTER: Duration = Duration::from_secs(60);

fn remove_unfinished_id(root: &StateRoot, id: &str) -> std::result::Result<(), EngineError> {
    let bundle = crate::bundle::bundle_path(root.path(), id);
    crate::user_net::stop_recorded(&bundle);
    if root.container_dir(id).is_dir() {
        match lifecycle::delete(root, id, true) {
            Ok(()) | Err(EngineError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    crate::bundle::remove(&bundle);
    let names = root.path().join(NAMES_DIR);
    for e in std::fs::read_dir(&names).into_iter().flatten().flatten() {
        if let Some(name) = e.file_name().to_str() {
            root.release_name(name, id);
        }
    }
    // Its network record, if any, names this runtime as owner and is
    // repaired by the next start or `network prune`.
    Ok(())
}

/// Ids of starts that will never finish (see [`is_unfinished`]).
fn unfinished(root: &StateRoot) -> Vec<String> {
    let mut ids = Vec::new();
    for dir in [
        root.path().to_path_buf(),
        root.path().join(crate::bundle::BUNDLES_DIR),
    ] {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let Some(id) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !id.starts_with('.')
                && nucleus_engine::state::validate_id(&id).is_ok()
                && !ids.contains(&id)
                && is_unfinished(root, &id)
            {
                ids.push(id);
            }
        }
    }
    ids
}

/// What `prune` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Ids of the stopped containers removed.
    pub containers: Vec<String>,
    /// Pid of the shared user namespace's holder, if it was stopped.
    pub userns_holder: Option<i32>,
}

/// Removes every stopped container, then the shared user namespace when
/// no container is left (`system prune`). A container that cannot be
/// removed is skipped with a warning.
pub fn prune(root: &StateRoot) -> Result<PruneReport> {
    let mut report = PruneReport::default();
    for id in root.ids().map_err(SandboxError::engine("list"))? {
        if !View::load(root, &id).is_ok_and(|v| v.status == Status::Stopped) {
            continue;
        }
        match remove(root, &id, false) {
            Ok(()) => report.containers.push(id),
            Err(e) => tracing::warn!(id, error = %e, "prune: not removed"),
        }
    }
    for id in unfinished(root) {
        match remove_unfinished_id(root, &id) {
            Ok(()) => report.containers.push(id),
            Err(e) => tracing::warn!(id, error = %e, "prune: not removed"),
        }
    }
    report.userns_holder = crate::userns_holder::stop_if_unused(root)?;
    Ok(report)
}

/// Waits (briefly) until a detached container's monitor has recorded its exit.
fn wait_for_exit_record(state: &ContainerState) {
    let Some(dir) = bundle_dir(state).filter(|d| d.join(MONITOR_LOG).exists()) else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    while ExitRecord::read(&dir).is_none() && dir.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `command` (default `/bin/sh`) in the container, with this
/// process's stdio; returns its exit code.
pub fn attach(root: &StateRoot, query: &str, command: &[String], tty: bool) -> Result<i32> {
    let id = names::resolve(root, query)?;
    let in_attach = |e| SandboxError::Container {
        op: "attach to",
        query: query.to_string(),
        source: Box::new(SandboxError::Engine {
            op: "exec",
            source: Box::new(e),
        }),
    };
    let mut process = lifecycle::container_process(root, &id).map_err(in_attach)?;
    let args = if command.is_empty() {
        vec!["/bin/sh".to_string()]
    } else {
        command.to_vec()
    };
    process.set_args(Some(args));
    process.set_terminal(Some(tty));
    let opts = lifecycle::ExecOptions {
        process,
        ..Default::default()
    };
    lifecycle::exec(root, &id, &opts).map_err(in_attach)
}

/// A container's configuration and state, in Docker's shape.
pub fn inspect(root: &StateRoot, query: &str) -> Result<Value> {
    let v = View::load(root, query)?;
    let spec = serde_json::to_value(&v.state.spec).map_err(|e| SandboxError::Encode {
        what: "the container's spec",
        reason: e.to_string(),
    })?;
    let process = &spec["process"];
    Ok(json!({
        "Id": v.state.id,
        "Name": v.name(),
        "Created": v.state.created,
        "State": {
            "Status": v.state_word(),
            "Running": v.status == Status::Running,
            "Paused": v.status == Status::Paused,
            "Pid": v.pid(),
            "ExitCode": v.exit.as_ref().map(|e| e.exit_code),
            "FinishedAt": v.exit.as_ref().map(|e| e.finished_at.clone()),
            "TimedOut": v.exit.as_ref().is_some_and(|e| e.timed_out),
        },
        "Config": {
            "Hostname": spec["hostname"],
            "Cmd": process["args"],
            "Env": process["env"],
            "WorkingDir": process["cwd"],
            "User": process["user"],
            "Tty": process["terminal"],
        },
        "Mounts": spec["mounts"],
        "Limits": spec["linux"]["resources"],
        "Security": {
            "Capabilities": process["capabilities"],
            "NoNewPrivileges": process["noNewPrivileges"],
            "Seccomp": !spec["linux"]["seccomp"].is_null(),
            "Landlock": v.state.annotations.get(nucleus_engine::security::landlock::ANNOTATION),
        },
        "Runtime": runtime_view(root, &v.state),
        "NetworkSettings": network::settings(&v),
        "Bundle": v.state.bundle,
        "Rootfs": v.state.rootfs,
        "Annotations": v.state.annotations,
    }))
}

/// The backend, and under gVisor what is enforced where (from its record).
fn runtime_view(root: &StateRoot, state: &nucleus_engine::state::ContainerState) -> Value {
    if !nucleus_engine::backend::gvisor::is_gvisor(state) {
        return json!({"Name": "native"});
    }
    match nucleus_engine::backend::gvisor::record(&root.container_dir(&state.id)) {
        Ok(Some(r)) => json!({
            "Name": "gvisor",
            "Runsc": r.runsc.binary,
            "Version": r.version,
            "Platform": r.runsc.platform,
            "Network": r.runsc.network.as_flag(),
            "Cgroup": r.cgroups_path,
            "Warnings": r.warnings,
            "Enforcement": r.enforcement,
        }),
        Ok(None) => json!({"Name": "gvisor"}),
        Err(e) => json!({"Name": "gvisor", "Error": e.to_string()}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn view(status: Status, exit: Option<ExitRecord>) -> View {
        let mut process = nucleus_engine::oci_spec::runtime::Process::default();
        process.set_args(Some(vec!["/bin/sh".into(), "-c".into(), "sleep 1".into()]));
        let mut spec = nucleus_engine::oci_spec::runtime::Spec::default();
        spec.set_process(Some(process));
        let state = ContainerState {
            id: "f".repeat(64),
            pid: 42,
            pid_start_time: 1,
            bundle: "/b".into(),
            rootfs: "/r".into(),
            created: clock::rfc3339(SystemTime::now()),
            annotations: HashMap::from([(NAME_ANNOTATION.to_string(), "web".to_string())]),
            cgroup: None,
            spec,
        };
        View {
            state,
            status,
            exit,
        }
    }

    #[test]
    fn summaries_say_what_ps_shows() {
        let up = view(Status::Running, None).summary();
        assert_eq!(
            (
                up.names.as_str(),
                up.command.as_str(),
                up.state.as_str(),
                up.pid
            ),
            ("web", "/bin/sh -c sleep 1", "running", 42)
        );
        assert!(up.status.starts_with("Up "), "{}", up.status);
        assert_eq!(up.exit_code, None);
        let record = ExitRecord {
            exit_code: 3,
            finished_at: clock::rfc3339(SystemTime::now()),
            timed_out: true,
        };
        let done = view(Status::Stopped, Some(record)).summary();
        assert_eq!(
            (done.state.as_str(), done.pid, done.exit_code),
            ("exited", 0, Some(3))
        );
        assert!(
            done.status.starts_with("Exited (3, timed out) "),
            "{}",
            done.status
        );
        let json = serde_json::to_value(&done).unwrap();
        for key in [
            "Id",
            "Names",
            "Command",
            "CreatedAt",
            "State",
            "Status",
            "Pid",
            "ExitCode",
        ] {
            assert!(json.get(key).is_some(), "{key} in {json}");
        }
    }
}
