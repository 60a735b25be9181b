//! The on-disk record under `<data root>/networks/`: network definitions,
//! leases and attachment records, all changed under one flock so parallel
//! starts never hand out the same address.
//!
//! ```text
//! networks/.lock
//! networks/defs/<network>.json        Network
//! networks/leases/<network>.json      { container id: Lease }
//! networks/attachments/<id>.json      Attachment (what was installed, for teardown)
//! networks/events/<id>.jsonl          egress denials
//! ```

use crate::error::{NetError, Result};
use nix::fcntl::{Flock, FlockArg};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The default persistent data root, as for images.
pub const DEFAULT_DATA_ROOT: &str = "/var/lib/nucleus";

/// Paths below one data root.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// Held while the store is being changed; dropping it unlocks.
#[derive(Debug)]
pub struct StoreLock {
    _lock: Flock<File>,
}

impl Store {
    /// Open (and create) `<data_root>/networks`.
    pub fn open(data_root: &Path) -> Result<Store> {
        let dir = data_root.join("networks");
        for sub in ["defs", "leases", "attachments", "events"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(|e| NetError::io("create directory", &p, e))?;
        }
        Ok(Store { dir })
    }

    pub fn lock(&self) -> Result<StoreLock> {
        let path = self.dir.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| NetError::io("open", &path, e))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| NetError::io("lock", &path, std::io::Error::from(errno)))?;
        Ok(StoreLock { _lock: lock })
    }

    pub fn def_path(&self, network: &str) -> PathBuf {
        self.dir.join("defs").join(format!("{network}.json"))
    }

    pub fn leases_path(&self, network: &str) -> PathBuf {
        self.dir.join("leases").join(format!("{network}.json"))
    }

    pub fn attachment_path(&self, id: &str) -> PathBuf {
        self.dir.join("attachments").join(format!("{id}.json"))
    }

    pub fn events_path(&self, id: &str) -> PathBuf {
        self.dir.join("events").join(format!("{id}.jsonl"))
    }

    pub fn defs_dir(&self) -> PathBuf {
        self.dir.join("defs")
    }

    pub fn attachments_dir(&self) -> PathBuf {
        self.dir.join("attachments")
    }
}

/// Read a JSON file; `None` when it does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| NetError::Corrupt {
                path: path.into(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(NetError::io("read", path, e)),
    }
}

/// Write a JSON file atomically (temp file, fsync, rename): for network
/// definitions, which must survive a power loss.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    write_atomic(path, value, true)
}

/// Write a lease file or an attachment record atomically (temp file,
/// rename) without fsync. They describe veths, rules and processes that a
/// reboot removes anyway (and `reconcile` repairs stale ones), and the
/// rename alone keeps them whole across a crash of the process; an fsync
/// would add a disk flush, several ms, to every start and stop.
pub(crate) fn write_state<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    write_atomic(path, value, false)
}

fn write_atomic<T: Serialize>(path: &Path, value: &T, durable: bool) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| NetError::Corrupt {
        path: path.into(),
        source,
    })?;
    let mut f = File::create(&tmp).map_err(|e| NetError::io("create", &tmp, e))?;
    f.write_all(&bytes)
        .and_then(|()| if durable { f.sync_all() } else { Ok(()) })
        .map_err(|e| NetError::io("write", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| NetError::io("rename into", path, e))
}

pub(crate) fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(NetError::io("remove", path, e)),
    }
}

/// The stems of `*.json` files in a directory, sorted.
pub(crate) fn list_json(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| NetError::io("read directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| NetError::io("read directory", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".json") {
            out.push(stem.to_string());
        }
    }
    out.sort();
    Ok(out)
}
