//! The crate's one error type. Variants are named after the failing
//! operation and carry the path and value involved.

use std::io;
use std::path::PathBuf;

/// Errors from cgroup management.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A cgroup file or `/proc` file could not be read.
    #[error("failed to read `{path}`: {source}")]
    ReadFile { path: PathBuf, source: io::Error },

    /// A cgroup file could not be written.
    #[error("failed to write `{value}` to `{path}`: {source}")]
    WriteFile {
        path: PathBuf,
        value: String,
        source: io::Error,
    },

    /// A cgroup file held something we could not parse.
    #[error("failed to parse `{value}` read from `{path}`: {reason}")]
    ParseFile {
        path: PathBuf,
        value: String,
        reason: String,
    },

    /// A cgroup directory could not be created.
    #[error("failed to create cgroup directory `{path}`: {source}")]
    CreateDir { path: PathBuf, source: io::Error },

    /// A cgroup directory could not be removed.
    #[error("failed to remove cgroup directory `{path}`: {source}")]
    RemoveDir { path: PathBuf, source: io::Error },

    /// A cgroup directory could not be listed.
    #[error("failed to list cgroup directory `{path}`: {source}")]
    ListDir { path: PathBuf, source: io::Error },

    /// mountinfo shows no usable cgroup hierarchy.
    #[error("no cgroup filesystem found in `{mountinfo}`")]
    DetectNoCgroupFs { mountinfo: PathBuf },

    /// A mount point said to be cgroupfs is something else.
    #[error("`{path}` is listed as `{fstype}` in mountinfo but statfs says otherwise")]
    DetectFsMagic { path: PathBuf, fstype: &'static str },

    /// The caller's own cgroup is missing for a mounted hierarchy.
    #[error("`{proc_cgroup}` has no entry for the `{hierarchy}` hierarchy")]
    DetectOwnCgroup {
        proc_cgroup: PathBuf,
        hierarchy: String,
    },

    /// `linux.cgroupsPath` or the container id cannot be used.
    #[error("invalid cgroups path `{path}`: {reason}")]
    ResolvePath { path: String, reason: &'static str },

    /// The host has no hierarchy offering this controller.
    #[error("controller `{controller}` is not available on this host: cannot write `{value}` to `{file}`")]
    ControllerUnavailable {
        controller: String,
        file: String,
        value: String,
    },

    /// A resource the host's cgroup version cannot express.
    #[error("`{field}` = `{value}` is not supported on cgroup {version}: {reason}")]
    Unsupported {
        field: &'static str,
        value: String,
        version: &'static str,
        reason: &'static str,
    },

    /// A resource value outside what the kernel accepts.
    #[error("invalid value `{value}` for `{field}`: {reason}")]
    InvalidValue {
        field: &'static str,
        value: String,
        reason: String,
    },

    /// `checkBeforeUpdate` refused a memory limit under current usage.
    #[error("memory limit `{limit}` is lower than current usage `{usage}` of `{path}`")]
    MemoryBelowUsage {
        path: PathBuf,
        limit: i64,
        usage: u64,
    },

    /// A device rule that cgroup v2 cannot enforce without a BPF program.
    #[error("device rule `{rule}` cannot be enforced on cgroup v2: BPF device programs are not supported yet")]
    DevicesUnenforceable { rule: String },

    /// A start into a frozen cgroup would leave the init stopped forever.
    #[error("cgroup is frozen: `{path}` is {state}; thaw it before starting a container in it")]
    Frozen { path: PathBuf, state: String },

    /// Freezing or thawing did not settle in time.
    #[error("timed out after {millis}ms waiting for `{path}` to become `{state}`")]
    FreezeTimeout {
        path: PathBuf,
        state: &'static str,
        millis: u128,
    },

    /// A signal could not be delivered.
    #[error("failed to send signal {signal} to pid {pid}: {source}")]
    Signal {
        pid: i32,
        signal: i32,
        source: nix::errno::Errno,
    },

    /// Processes were still alive when the cgroup had to be removed.
    #[error("cgroup `{path}` still has processes {pids:?} after {millis}ms")]
    DestroyBusy {
        path: PathBuf,
        pids: Vec<i32>,
        millis: u128,
    },
}

impl CgroupError {
    /// Whether the kernel refused a write with EINVAL.
    pub(crate) fn is_einval(&self) -> bool {
        matches!(self, CgroupError::WriteFile { source, .. } if source.raw_os_error() == Some(libc::EINVAL))
    }
}
