//! Signalling every process of a cgroup and removing its directories.

use crate::cgroup::{child_dirs, Cgroup, CgroupDir, Place};
use crate::{fs, CgroupError};
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::ErrorKind;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long `destroy` waits for killed processes to leave.
const DESTROY_TIMEOUT: Duration = Duration::from_secs(2);

impl Cgroup {
    /// Sends `signal` to every process. SIGKILL on v2 uses `cgroup.kill`
    /// when the kernel has it (5.14+), which cannot race with fork.
    /// Otherwise the cgroup is frozen while signalling, so that no child
    /// forked meanwhile escapes, and thawed after unless it was frozen
    /// before.
    pub fn kill_all(&self, signal: i32) -> Result<(), CgroupError> {
        let sig = Signal::try_from(signal).map_err(|source| CgroupError::Signal {
            pid: 0,
            signal,
            source,
        })?;
        let kill_file = self
            .v2
            .as_ref()
            .filter(|d| sig == Signal::SIGKILL && fs::exists(&d.path, "cgroup.kill"));
        let has_freezer = self.freezer().is_ok();
        let frozen_before = has_freezer && self.is_frozen()?;
        let freeze = has_freezer && !frozen_before && kill_file.is_none();
        if freeze {
            self.freeze()?;
        }
        let result = match kill_file {
            Some(d) => fs::write(&d.path, "cgroup.kill", "1"),
            None => self.signal_each(sig),
        };
        // A SIGKILLed task frozen by the v1 freezer only dies once thawed.
        let v1_frozen = frozen_before && matches!(self.freezer(), Ok(Place::V1(_)));
        if freeze || (v1_frozen && sig == Signal::SIGKILL) {
            self.thaw()?;
        }
        result
    }

    fn signal_each(&self, sig: Signal) -> Result<(), CgroupError> {
        for pid in self.pids()? {
            match kill(Pid::from_raw(pid), sig) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(source) => {
                    return Err(CgroupError::Signal {
                        pid,
                        signal: sig as i32,
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    /// SIGKILLs what is left, waits (bounded) until no process remains,
    /// then removes every directory: children first, then the leaf, then
    /// the ancestors `resolve` found missing, if empty. A missing
    /// directory is success, so this is idempotent.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        let start = Instant::now();
        // Fast path: an empty leaf with no children just goes (one rmdir
        // per hierarchy instead of reading every cgroup.procs).
        if self
            .dirs()
            .all(|d| matches!(std::fs::remove_dir(&d.path), Ok(())) || !d.path.exists())
        {
            for d in self.dirs() {
                remove_dir(d, start)?;
            }
            return Ok(());
        }
        let mut pause = Duration::from_millis(1);
        loop {
            let pids = self.pids()?;
            if pids.is_empty() {
                break;
            }
            if start.elapsed() > DESTROY_TIMEOUT {
                let path = self
                    .dirs()
                    .next()
                    .map(|d| d.path.clone())
                    .unwrap_or_default();
                return Err(CgroupError::DestroyBusy {
                    path,
                    pids,
                    millis: DESTROY_TIMEOUT.as_millis(),
                });
            }
            self.kill_all(libc::SIGKILL)?;
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
        for d in self.dirs() {
            remove_dir(d, start)?;
        }
        tracing::debug!(dirs = ?self.dirs().map(|d| &d.path).collect::<Vec<_>>(), "destroyed cgroup");
        Ok(())
    }
}

fn remove_dir(d: &CgroupDir, start: Instant) -> Result<(), CgroupError> {
    remove_tree(&d.path, start)?;
    for ancestor in d.path.ancestors().skip(1).take(d.new_ancestors) {
        match std::fs::remove_dir(ancestor) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            // Shared with another cgroup that still lives: leave it to that one.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::ENOTEMPTY)) => break,
            Err(source) => {
                return Err(CgroupError::RemoveDir {
                    path: ancestor.to_owned(),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// rmdir depth first. EBUSY right after the last task exits is retried
/// until the destroy deadline.
fn remove_tree(dir: &Path, start: Instant) -> Result<(), CgroupError> {
    for child in child_dirs(dir)? {
        remove_tree(&child, start)?;
    }
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY) && start.elapsed() < DESTROY_TIMEOUT =>
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(source) => {
                return Err(CgroupError::RemoveDir {
                    path: dir.to_owned(),
                    source,
                })
            }
        }
    }
}
