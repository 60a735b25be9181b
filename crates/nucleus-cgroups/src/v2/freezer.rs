//! v2 freezing via the core `cgroup.freeze` file; completion is read from
//! `frozen` in `cgroup.events`.

use crate::{fs, CgroupError};
use std::path::Path;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) fn freeze(dir: &Path) -> Result<(), CgroupError> {
    set(dir, true)
}

pub(crate) fn thaw(dir: &Path) -> Result<(), CgroupError> {
    set(dir, false)
}

pub(crate) fn is_frozen(dir: &Path) -> Result<bool, CgroupError> {
    Ok(fs::read_keyed(dir, "cgroup.events")?.get("frozen") == Some(&1))
}

/// Writes `cgroup.freeze` and polls `cgroup.events` until `frozen` matches.
fn set(dir: &Path, frozen: bool) -> Result<(), CgroupError> {
    fs::write(dir, "cgroup.freeze", if frozen { "1" } else { "0" })?;
    let start = Instant::now();
    let mut pause = Duration::from_micros(100);
    while is_frozen(dir)? != frozen {
        if start.elapsed() > TIMEOUT {
            if frozen {
                // Leave the cgroup usable rather than half frozen.
                if let Err(e) = fs::write(dir, "cgroup.freeze", "0") {
                    tracing::warn!(error = %e, "failed to thaw after freeze timeout");
                }
            }
            let state = if frozen { "frozen 1" } else { "frozen 0" };
            return Err(CgroupError::FreezeTimeout {
                path: dir.join("cgroup.events"),
                state,
                millis: TIMEOUT.as_millis(),
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::testing::files;

    #[test]
    fn reads_frozen_from_events() {
        let d = tempfile::tempdir().unwrap();
        files(
            d.path(),
            &[
                ("cgroup.freeze", "0"),
                ("cgroup.events", "populated 1\nfrozen 1\n"),
            ],
        );
        freeze(d.path()).unwrap();
        assert!(is_frozen(d.path()).unwrap());
    }
}
