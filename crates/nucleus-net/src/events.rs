//! Egress denial events: one JSON object per line, appended to the
//! container's events file (`networks/events/<id>.jsonl`), read by
//! `nucleus events NAME` and `inspect`.

use crate::error::{NetError, Result};
use serde::{Deserialize, Serialize};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressEvent {
    /// RFC 3339, UTC.
    pub time: String,
    pub container: String,
    /// `dns` for a refused query, `connect` for a refused connection.
    pub kind: String,
    /// The name queried, or the destination `ADDR:PORT/PROTO`.
    pub target: String,
    /// The rule that refused it, e.g. `egress-domain`, `default-deny`, `rebinding`.
    pub rule: String,
}

/// Appends events for one container.
#[derive(Debug, Clone)]
pub struct EventSink {
    path: PathBuf,
    container: String,
}

impl EventSink {
    pub fn new(path: PathBuf, container: &str) -> EventSink {
        EventSink {
            path,
            container: container.into(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Record one denial. One `write` per line with O_APPEND keeps lines whole.
    pub fn emit(&self, kind: &str, target: &str, rule: &str) -> Result<()> {
        let ev = EgressEvent {
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            container: self.container.clone(),
            kind: kind.into(),
            target: target.into(),
            rule: rule.into(),
        };
        let mut line = serde_json::to_vec(&ev).map_err(|source| NetError::Corrupt {
            path: self.path.clone(),
            source,
        })?;
        line.push(b'\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| NetError::io("open", &self.path, e))?;
        f.write_all(&line)
            .map_err(|e| NetError::io("append to", &self.path, e))
    }
}

/// All events recorded for a container, oldest first; none when there is no file.
pub fn read(path: &Path) -> Result<Vec<EgressEvent>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(NetError::io("read", path, e)),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).map_err(|source| NetError::Corrupt {
                path: path.into(),
                source,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_as_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let sink = EventSink::new(dir.path().join("e.jsonl"), "c1");
        sink.emit("dns", "denied.test", "egress-domain").unwrap();
        sink.emit("connect", "198.18.0.1:80/tcp", "default-deny")
            .unwrap();
        let evs = read(sink.path()).unwrap();
        assert_eq!(evs.len(), 2);
        assert_eq!(
            (evs[0].container.as_str(), evs[0].target.as_str()),
            ("c1", "denied.test")
        );
        assert!(evs[1].time.ends_with('Z'));
    }
}
