//! `gvisor.json` in a container's state directory: which runsc, with which
//! flags, in which cgroup, and what is enforced where. Written before runsc
//! create, so every later verb (and `delete --force` after a crash) drives
//! the same runsc the same way.

use crate::error::{GvisorError, Result};
use crate::runsc::Runsc;
use crate::translate::Enforcement;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// File name of the record inside the container's state directory.
pub const RECORD_FILE: &str = "gvisor.json";

/// What the engine keeps about a gVisor container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub runsc: Runsc,
    pub version: String,
    pub cgroups_path: String,
    pub warnings: Vec<String>,
    pub enforcement: Vec<Enforcement>,
}

impl Record {
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(RECORD_FILE);
        let tmp = dir.join(".gvisor.json.tmp");
        let data =
            serde_json::to_vec_pretty(self).map_err(|source| GvisorError::CorruptRecord {
                path: path.clone(),
                source,
            })?;
        std::fs::write(&tmp, data).map_err(|e| GvisorError::io("write", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| GvisorError::io("rename into place", &path, e))
    }

    /// The record in `dir`, or `None` if the container is not a gVisor one.
    pub fn load(dir: &Path) -> Result<Option<Record>> {
        let path = dir.join(RECORD_FILE);
        match std::fs::read(&path) {
            Ok(text) => serde_json::from_slice(&text)
                .map(Some)
                .map_err(|source| GvisorError::CorruptRecord { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(GvisorError::io("read", &path, e)),
        }
    }
}
