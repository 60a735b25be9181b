//! v1 freezer controller: `freezer.state` (THAWED, FREEZING, FROZEN).

use crate::{fs, CgroupError};
use std::path::Path;
use std::time::{Duration, Instant};

const STATE: &str = "freezer.state";
const TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) fn freeze(dir: &Path) -> Result<(), CgroupError> {
    set(dir, "FROZEN")
}

pub(crate) fn thaw(dir: &Path) -> Result<(), CgroupError> {
    set(dir, "THAWED")
}

pub(crate) fn is_frozen(dir: &Path) -> Result<bool, CgroupError> {
    Ok(fs::read(dir, STATE)? == "FROZEN")
}

/// Writes `state` until the kernel reports it: FREEZING can stall while
/// tasks sit in uninterruptible sleep, and rewriting retries them.
fn set(dir: &Path, state: &'static str) -> Result<(), CgroupError> {
    let start = Instant::now();
    let mut pause = Duration::from_micros(100);
    loop {
        fs::write(dir, STATE, state)?;
        if fs::read(dir, STATE)? == state {
            return Ok(());
        }
        if start.elapsed() > TIMEOUT {
            if state == "FROZEN" {
                // Leave the cgroup usable rather than half frozen.
                if let Err(e) = fs::write(dir, STATE, "THAWED") {
                    tracing::warn!(error = %e, "failed to thaw after freeze timeout");
                }
            }
            return Err(CgroupError::FreezeTimeout {
                path: dir.join(STATE),
                state,
                millis: TIMEOUT.as_millis(),
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_file_settles_immediately() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(STATE), "THAWED\n").unwrap();
        freeze(d.path()).unwrap();
        assert!(is_frozen(d.path()).unwrap());
        thaw(d.path()).unwrap();
        assert!(!is_frozen(d.path()).unwrap());
    }
}
