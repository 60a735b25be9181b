//! The gVisor backend behind the lifecycle verbs: a spec annotated
//! `org.nucleus.runtime=gvisor` runs under runsc, with nucleus still owning
//! the state directory (`state.json`, the lock, names, cgroup record), so
//! `list`, `state`, `ps`, `events` and `update` work unchanged. runsc keeps
//! its own state in `<root>/<id>/runsc`, removed with the container.
//!
//! Status comes from the recorded pid (the runsc sandbox, or the `runsc run`
//! process of a foreground run) plus two markers, because runsc's pause
//! does not use the cgroup freezer and a created sandbox has no exec.fifo.

mod launch;
mod netns;
mod verbs;

pub(crate) use launch::{create, run, spawn};
pub use nucleus_gvisor::{Record, RUNTIME_ANNOTATION};
pub(crate) use verbs::{delete, delete_pending, exec, kill, pause, remove, resume, start};

use crate::error::{EngineError, Result};
use crate::state::{ContainerState, Status};
use std::path::Path;

const CREATED_MARKER: &str = "gvisor.created";
const PAUSED_MARKER: &str = "gvisor.paused";

/// Whether the bundle's spec selects gVisor. Specs without the annotation
/// are recognised from the raw bytes, so the native path parses once.
pub(crate) fn selected(bundle: &Path) -> Result<bool> {
    let path = bundle.join("config.json");
    let Ok(bytes) = std::fs::read(&path) else {
        // Let the native path report the unreadable config.
        return Ok(false);
    };
    if !contains(&bytes, RUNTIME_ANNOTATION.as_bytes()) {
        return Ok(false);
    }
    let spec = crate::spec::load(bundle)?;
    runtime_of(spec.annotations().as_ref())
}

/// `true` for `gvisor`, `false` for `native` or no annotation.
pub(crate) fn runtime_of(
    annotations: Option<&std::collections::HashMap<String, String>>,
) -> Result<bool> {
    match annotations
        .and_then(|a| a.get(RUNTIME_ANNOTATION))
        .map(String::as_str)
    {
        None | Some("native") => Ok(false),
        Some("gvisor") => Ok(true),
        Some(other) => Err(EngineError::invalid(
            format!("annotations.{RUNTIME_ANNOTATION}"),
            other,
            "must be `native` or `gvisor`",
        )),
    }
}

/// Whether a recorded container runs under gVisor.
pub fn is_gvisor(state: &ContainerState) -> bool {
    state
        .annotations
        .get(RUNTIME_ANNOTATION)
        .is_some_and(|v| v == "gvisor")
}

/// Status of a gVisor container in `dir`.
pub(crate) fn status(dir: &Path, state: &ContainerState) -> Status {
    if !state.is_alive() {
        return Status::Stopped;
    }
    if dir.join(CREATED_MARKER).exists() {
        return Status::Created;
    }
    if dir.join(PAUSED_MARKER).exists() {
        return Status::Paused;
    }
    Status::Running
}

/// The gVisor record of the container in `dir` (for `inspect`).
pub fn record(dir: &Path) -> Result<Option<Record>> {
    Ok(Record::load(dir)?)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn set_marker(dir: &Path, name: &str, on: bool) -> Result<()> {
    let path = dir.join(name);
    let r = if on {
        std::fs::write(&path, b"")
    } else {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    };
    r.map_err(|e| EngineError::io("write status marker", &path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_annotation_values() {
        let mut a = std::collections::HashMap::new();
        assert!(!runtime_of(Some(&a)).unwrap());
        a.insert(RUNTIME_ANNOTATION.to_string(), "gvisor".to_string());
        assert!(runtime_of(Some(&a)).unwrap());
        a.insert(RUNTIME_ANNOTATION.to_string(), "kata".to_string());
        let err = runtime_of(Some(&a)).unwrap_err().to_string();
        assert_eq!(
            err,
            "annotations.org.nucleus.runtime: must be `native` or `gvisor` (got `kata`)"
        );
    }
}
