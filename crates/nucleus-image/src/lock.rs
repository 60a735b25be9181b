//! Advisory file locks (flock) that serialise work on the store:
//! - the store lock: shared by pulls, loads and image lookups for a run,
//!   exclusive for `rmi` and `prune`, so garbage collection never deletes
//!   what a pull is still assembling;
//! - one lock per digest, so two pulls of the same image share one
//!   download and one unpack: the second waits, then finds the work done.

use rustix::fs::{flock, FlockOperation};
use std::fs::{File, OpenOptions};
use std::path::Path;

use crate::error::{ImageError, Result};

/// A held flock; released when dropped (the fd closes).
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Blocks until `path` (created if missing) is locked shared.
    pub fn shared(path: &Path) -> Result<Self> {
        Self::take(path, FlockOperation::LockShared)
    }

    /// Blocks until `path` (created if missing) is locked exclusively.
    pub fn exclusive(path: &Path) -> Result<Self> {
        Self::take(path, FlockOperation::LockExclusive)
    }

    fn take(path: &Path, op: FlockOperation) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(ImageError::fs("open lock file", path))?;
        flock(&file, op).map_err(|e| ImageError::Fs {
            action: "lock",
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn exclusive_waits_for_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l");
        let held = FileLock::exclusive(&path).unwrap();
        let got = Arc::new(AtomicBool::new(false));
        let (p, g) = (path.clone(), got.clone());
        let t = std::thread::spawn(move || {
            let _l = FileLock::exclusive(&p).unwrap();
            g.store(true, Ordering::SeqCst);
        });
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !got.load(Ordering::SeqCst),
            "second lock taken while the first was held"
        );
        drop(held);
        t.join().unwrap();
        assert!(got.load(Ordering::SeqCst));
    }
}
