//! Putting the init in its cgroups without the slow path.
//!
//! Writing a pid to a v1 `cgroup.procs` takes the global threadgroup rwsem
//! for writing, which waits for an RCU grace period: ~10-15 ms per start on
//! this hybrid host. A thread that moves *itself* by writing `0` to v1
//! `tasks` skips that lock (kernel/cgroup/cgroup.c, cgroup_procs_write_start),
//! and the init is single-threaded, so that moves the whole process. The
//! parent opens the files (the kernel checks the opener's credentials, so
//! this also works from inside a new user namespace); the child writes.
//! On v2, clone3(CLONE_INTO_CGROUP) starts the child in place.

use crate::error::{EngineError, Result};
use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use nucleus_cgroups::Cgroup;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Descriptors opened by the parent before clone.
#[derive(Debug, Default)]
pub(crate) struct CgroupJoin {
    /// v1 `tasks` files, one per hierarchy, opened for writing.
    pub v1_tasks: Vec<OwnedFd>,
    /// The v2 directory, for CLONE_INTO_CGROUP.
    pub v2_dir: Option<OwnedFd>,
}

impl CgroupJoin {
    pub(crate) fn open(cg: &Cgroup) -> Result<CgroupJoin> {
        let mut join = CgroupJoin::default();
        for d in &cg.v1 {
            let path = d.path.join("tasks");
            let fd = open(&path, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(|e| EngineError::io("open cgroup tasks file", &path, e.into()))?;
            join.v1_tasks.push(fd);
        }
        if let Some(dir) = cg.v2_dir() {
            let fd = open(
                dir,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| EngineError::io("open cgroup directory", dir, e.into()))?;
            join.v2_dir = Some(fd);
        }
        Ok(join)
    }

    pub(crate) fn v2(&self) -> Option<BorrowedFd<'_>> {
        self.v2_dir.as_ref().map(|f| f.as_fd())
    }
}

/// Child side: move the calling (single-threaded) process into every v1
/// hierarchy's cgroup.
pub(crate) fn join_v1_self(tasks: &[OwnedFd]) -> Result<(), Errno> {
    for fd in tasks {
        nix::unistd::write(fd, b"0")?;
    }
    Ok(())
}
