//! Resource verbs on a live container: pause, resume, update, stats,
//! events and ps. The mutating verbs (pause, resume, update) hold the
//! container's lock; the read-only ones (stats, events, ps) do not, so a
//! long `events` never blocks `kill` or `delete`.

use crate::error::{EngineError, Result};
use crate::state::{status_of, ContainerState, StateRoot, Status};
use nucleus_cgroups::{Cgroup, Stats};
use oci_spec::runtime::{Linux, LinuxResources};
use serde::Serialize;
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often `events` looks for OOM kills and for the container's exit.
const EVENTS_POLL: Duration = Duration::from_millis(100);

/// Freezes every process of a running container.
pub fn pause(root: &StateRoot, id: &str) -> Result<()> {
    let dir = root.open(id)?;
    let state = dir.load()?;
    if crate::backend::gvisor::is_gvisor(&state) {
        drop(dir);
        return crate::backend::gvisor::pause(root, id);
    }
    let status = dir.status(&state);
    if status != Status::Running {
        return Err(EngineError::WrongStatus {
            id: id.to_string(),
            status: status.to_string(),
            op: "pause a container that is not running",
        });
    }
    cgroup_of(&state)?.freeze()?;
    tracing::debug!(id, "container paused");
    Ok(())
}

/// Thaws a paused container.
pub fn resume(root: &StateRoot, id: &str) -> Result<()> {
    let dir = root.open(id)?;
    let state = dir.load()?;
    if crate::backend::gvisor::is_gvisor(&state) {
        drop(dir);
        return crate::backend::gvisor::resume(root, id);
    }
    let status = dir.status(&state);
    if status != Status::Paused {
        return Err(EngineError::WrongStatus {
            id: id.to_string(),
            status: status.to_string(),
            op: "resume a container that is not paused",
        });
    }
    cgroup_of(&state)?.thaw()?;
    tracing::debug!(id, "container resumed");
    Ok(())
}

/// Applies `delta` to a container's cgroup and records the merged result
/// in its stored spec (`linux.resources`). Only the sections `delta` sets
/// are written; each is written merged with what the container already
/// has, so that e.g. a new memory limit is applied together with the
/// recorded swap limit. Returns the merged resources.
pub fn update(root: &StateRoot, id: &str, delta: &LinuxResources) -> Result<LinuxResources> {
    let dir = root.open(id)?;
    let mut state = dir.load()?;
    let status = dir.status(&state);
    if status == Status::Stopped {
        return Err(EngineError::WrongStatus {
            id: id.to_string(),
            status: status.to_string(),
            op: "update the resources of a stopped container",
        });
    }
    let current = state
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().clone())
        .unwrap_or_default();
    // Device rules are not updated, as with runc: containerd's CRI plugin sends
    // the spec's whole `linux.resources`, whose device list is only the
    // deny-all that the runtime's default device rules follow at create;
    // written alone it would cut a running container off /dev/null.
    let mut delta = delta.clone();
    if delta.devices().is_some() {
        tracing::debug!(
            id,
            "linux.resources.devices is not updated on a running container"
        );
        delta.set_devices(None);
    }
    let (mut merged, mut to_apply) = merge_resources(&current, &delta)?;
    // As runc: `--memory -1` alone lifts the swap limit too, since the
    // kernel never lets memory+swap fall below the memory limit.
    if delta
        .memory()
        .as_ref()
        .is_some_and(|m| m.limit() == Some(-1) && m.swap().is_none())
    {
        for r in [&mut merged, &mut to_apply] {
            if let Some(m) = r.memory_mut() {
                m.set_swap(Some(-1));
            }
        }
    }
    cgroup_of(&state)?.apply(&to_apply)?;
    let linux = state.spec.linux_mut().get_or_insert_with(Linux::default);
    linux.set_resources(Some(merged.clone()));
    dir.save(&state)?;
    tracing::debug!(id, "container resources updated");
    Ok(merged)
}

/// Merges `delta` into `current` (objects field by field, arrays and
/// scalars replaced). Returns the merged resources and the part to write:
/// the merged value of every top-level section that `delta` sets.
fn merge_resources(
    current: &LinuxResources,
    delta: &LinuxResources,
) -> Result<(LinuxResources, LinuxResources)> {
    let to_json = |r: &LinuxResources| {
        serde_json::to_value(r)
            .map_err(|e| EngineError::invalid("linux.resources", format!("{r:?}"), e.to_string()))
    };
    let mut merged = to_json(current)?;
    let delta = to_json(delta)?;
    merge_json(&mut merged, &delta);
    let mut apply = serde_json::Map::new();
    if let (Value::Object(d), Value::Object(m)) = (&delta, &merged) {
        for key in d.keys() {
            if let Some(v) = m.get(key) {
                apply.insert(key.clone(), v.clone());
            }
        }
    }
    let parse = |v: Value| {
        let text = v.to_string();
        serde_json::from_value::<LinuxResources>(v)
            .map_err(|e| EngineError::invalid("linux.resources", text, e.to_string()))
    };
    Ok((parse(merged)?, parse(Value::Object(apply))?))
}

fn merge_json(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                if v.is_null() {
                    continue;
                }
                match a.get_mut(k) {
                    Some(existing) => merge_json(existing, v),
                    None => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (into, from) => *into = from.clone(),
    }
}

/// Resource usage of a container that has not stopped.
pub fn stats(root: &StateRoot, id: &str) -> Result<Stats> {
    let state = root.peek(id)?;
    let status = root.status_of(&state);
    if status == Status::Stopped {
        return Err(EngineError::WrongStatus {
            id: id.to_string(),
            status: status.to_string(),
            op: "read the statistics of a stopped container",
        });
    }
    Ok(cgroup_of(&state)?.stats()?)
}

/// Host pids of every process in the container's cgroup, sorted. A
/// stopped container whose cgroup is gone has none.
pub fn pids(root: &StateRoot, id: &str) -> Result<Vec<i32>> {
    let state = root.peek(id)?;
    match &state.cgroup {
        Some(cg) => Ok(cg.pids()?),
        None => Ok(Vec::new()),
    }
}

/// Runs the host's `ps ARGS` (default `-ef`) and keeps the header plus the
/// rows whose PID column names one of `pids`.
pub fn ps_table(pids: &[i32], args: &[String]) -> Result<String> {
    let default = ["-ef".to_string()];
    let args = if args.is_empty() { &default[..] } else { args };
    let out = std::process::Command::new("ps")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| EngineError::io("run", PathBuf::from("ps"), e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(EngineError::invalid(
            "ps arguments",
            args.join(" "),
            format!(
                "ps exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    filter_ps(&text, pids).ok_or_else(|| {
        EngineError::invalid("ps arguments", args.join(" "), "ps printed no PID column")
    })
}

/// The header and the rows of `ps` output whose PID is in `pids`; `None`
/// if the header has no PID column.
fn filter_ps(text: &str, pids: &[i32]) -> Option<String> {
    let mut lines = text.lines();
    let header = lines.next()?;
    let col = header.split_whitespace().position(|h| h == "PID")?;
    let mut out = format!("{header}\n");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    Some(out)
}

/// One line of `events` output, in runc's shape.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Stats>,
}

/// Reports on a container until it stops: a `stats` event every
/// `interval` and an `oom` event each time the kernel OOM-kills one of
/// its processes (the cgroup's `oom_kill` counter, polled). Returns once
/// the container has stopped or been deleted.
pub fn events(
    root: &StateRoot,
    id: &str,
    interval: Duration,
    sink: &mut dyn FnMut(&Event) -> std::io::Result<()>,
) -> Result<()> {
    if interval.is_zero() {
        return Err(EngineError::invalid(
            "--interval",
            format!("{interval:?}"),
            "must be greater than 0",
        ));
    }
    let state = root.peek(id)?;
    let status = root.status_of(&state);
    if status == Status::Stopped {
        return Err(EngineError::WrongStatus {
            id: id.to_string(),
            status: status.to_string(),
            op: "watch the events of a stopped container",
        });
    }
    let cg = cgroup_of(&state)?.clone();
    let dir = root.container_dir(id);
    let mut emit = |e: Event| {
        sink(&e)
            .map_err(|source| EngineError::io("write event to", PathBuf::from("stdout"), source))
    };
    let mut ooms = oom_kills(&cg).unwrap_or(0);
    let mut next_stats = Instant::now() + interval;
    loop {
        let alive = status_of(&dir, &state) != Status::Stopped;
        if let Some(n) = oom_kills(&cg) {
            for _ in ooms..n {
                emit(Event {
                    kind: "oom",
                    id: id.to_string(),
                    data: None,
                })?;
            }
            ooms = ooms.max(n);
        }
        if !alive || !dir.is_dir() {
            tracing::debug!(id, "container stopped; events done");
            return Ok(());
        }
        if Instant::now() >= next_stats {
            match cg.stats() {
                Ok(s) => emit(Event {
                    kind: "stats",
                    id: id.to_string(),
                    data: Some(s),
                })?,
                // The container may have exited and been deleted meanwhile.
                Err(_) if !state.is_alive() => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            next_stats += interval;
            if next_stats < Instant::now() {
                next_stats = Instant::now() + interval;
            }
        }
        let left = next_stats.saturating_duration_since(Instant::now());
        std::thread::sleep(left.min(EVENTS_POLL));
    }
}

/// The `oom_kill` counter of the container's memory cgroup: v1
/// `memory.oom_control`, else v2 `memory.events`. `None` if unreadable.
fn oom_kills(cg: &Cgroup) -> Option<u64> {
    let path = match cg.v1_dir("memory") {
        Some(d) => d.join("memory.oom_control"),
        None => {
            let d = cg
                .v2
                .as_ref()
                .filter(|d| d.controllers.iter().any(|c| c == "memory"))?;
            d.path.join("memory.events")
        }
    };
    let text = std::fs::read_to_string(path).ok()?;
    keyed_value(&text, "oom_kill")
}

/// The value of `key` in a flat-keyed cgroup file (`key value` lines).
fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn cgroup_of(state: &ContainerState) -> Result<&Cgroup> {
    state.cgroup.as_ref().ok_or_else(|| {
        EngineError::invalid("cgroup", state.id.clone(), "the container has no cgroup")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn merge_keeps_recorded_fields_and_applies_touched_sections() {
        let current = res(
            r#"{"memory":{"limit":1000,"swap":2000},"pids":{"limit":5},"devices":[{"allow":false,"access":"rwm"}]}"#,
        );
        let delta = res(r#"{"memory":{"limit":1500},"cpu":{"quota":1000}}"#);
        let (merged, apply) = merge_resources(&current, &delta).unwrap();
        let m = merged.memory().unwrap();
        assert_eq!((m.limit(), m.swap()), (Some(1500), Some(2000)));
        assert_eq!(merged.pids().as_ref().unwrap().limit(), 5);
        assert_eq!(merged.cpu().as_ref().unwrap().quota(), Some(1000));
        // Only memory and cpu are written, memory with its recorded swap.
        assert!(apply.pids().is_none() && apply.devices().is_none());
        assert_eq!(apply.memory().unwrap().swap(), Some(2000));
        assert_eq!(apply.cpu().as_ref().unwrap().quota(), Some(1000));
    }

    #[test]
    fn ps_rows_are_filtered_by_pid_column() {
        let text = "UID PID PPID C STIME TTY TIME CMD\nroot 1 0 0 10:00 ? 00:00:01 init\nroot 42 1 0 10:00 ? 00:00:00 sleep 5\nroot 420 1 0 10:00 ? 00:00:00 x\n";
        assert_eq!(
            filter_ps(text, &[42]).unwrap(),
            "UID PID PPID C STIME TTY TIME CMD\nroot 42 1 0 10:00 ? 00:00:00 sleep 5\n"
        );
        assert!(filter_ps("USER COMMAND\nroot x\n", &[1]).is_none());
    }

    #[test]
    fn oom_kill_counter_is_read_from_keyed_file() {
        assert_eq!(
            keyed_value("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", "oom_kill"),
            Some(3)
        );
        assert_eq!(keyed_value("low 0\n", "oom_kill"), None);
    }

    #[test]
    fn events_serialize_in_runc_shape() {
        let e = Event {
            kind: "oom",
            id: "c1".into(),
            data: None,
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"type":"oom","id":"c1"}"#
        );
        let e = Event {
            kind: "stats",
            id: "c1".into(),
            data: Some(Stats::default()),
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "stats");
        assert!(v["data"]["memory"].is_object());
    }
}
