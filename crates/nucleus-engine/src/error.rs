//! The engine's one public error type. Every variant names the operation
//! that failed and carries the path, field or value involved.

use std::path::PathBuf;

/// Errors returned by the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// container id `{id}` is invalid: {reason}
    #[error("container id `{id}` is invalid: {reason}")]
    InvalidId { id: String, reason: &'static str },

    #[error("container `{id}` already exists")]
    AlreadyExists { id: String },

    #[error("the name `{name}` is already in use")]
    NameInUse { name: String },

    #[error("container `{id}` does not exist")]
    NotFound { id: String },

    #[error("container `{id}` is {status}: cannot {op}")]
    WrongStatus {
        id: String,
        status: String,
        op: &'static str,
    },

    #[error("cannot read `{path}`: {source}")]
    ReadSpec {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("`{path}` is not a valid OCI config: {source}")]
    ParseSpec {
        path: PathBuf,
        source: serde_json::Error,
    },

    // runc's clients match on "cannot exec in a paused container".
    #[error("cannot exec in a paused container `{id}`")]
    ExecPaused { id: String },

    #[error("{field}: {reason} (got `{value}`)")]
    InvalidSpec {
        field: String,
        value: String,
        reason: String,
    },

    #[error("failed to {op} `{path}`: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("failed to {op}: {source}")]
    Sys {
        op: &'static str,
        source: nix::errno::Errno,
    },

    #[error("container setup failed at step `{step}`: {detail}")]
    Child { step: String, detail: String },

    // "error running hook" is the phrase runc's clients match on.
    #[error("error running hook: {kind} hook `{path}`: {reason}")]
    Hook {
        kind: &'static str,
        path: PathBuf,
        reason: String,
    },

    #[error("attach step for container init {pid} failed: {source}")]
    Attach {
        pid: i32,
        source: crate::attach::AttachError,
    },

    #[error("timed out after {}s waiting for the lock `{}`: {holder}", .waited.as_secs_f32(), .path.display())]
    LockTimeout {
        path: PathBuf,
        waited: std::time::Duration,
        holder: String,
    },

    #[error("failed to remove state directory `{}` (left: {}): {source}", .path.display(), .left.join(", "))]
    RemoveState {
        path: PathBuf,
        left: Vec<String>,
        source: std::io::Error,
    },

    #[error("{op} failed: {detail}")]
    Criu { op: &'static str, detail: String },

    #[error("corrupt state file `{path}`: {source}")]
    CorruptState {
        path: PathBuf,
        source: serde_json::Error,
    },

    /// What an unprivileged caller lacks: a helper, user namespaces, a cgroup.
    #[error("rootless: {reason}")]
    Rootless { reason: String },

    #[error("{0}")]
    Cgroup(#[from] nucleus_cgroups::CgroupError),

    #[error("{0}")]
    Seccomp(#[from] crate::security::seccomp::SeccompError),

    #[error("{0}")]
    Policy(#[from] crate::security::PolicyError),

    #[error("{0}")]
    Gvisor(#[from] nucleus_gvisor::GvisorError),

    #[error("{primary}; cleanup also failed: {cleanup}")]
    WithCleanup {
        primary: Box<EngineError>,
        cleanup: Box<EngineError>,
    },
}

impl EngineError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EngineError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn sys(op: &'static str, source: nix::errno::Errno) -> Self {
        EngineError::Sys { op, source }
    }

    pub(crate) fn invalid(
        field: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        EngineError::InvalidSpec {
            field: field.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }

    /// A hint for the user when the cause is a well-known host limitation.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            EngineError::Child { detail, .. } if detail.contains("setrlimit") && detail.contains("EPERM") => {
                Some("raising a hard rlimit needs CAP_SYS_RESOURCE on the host; lower the value in process.rlimits")
            }
            EngineError::Sys { source: nix::errno::Errno::EPERM, op } if op.contains("clone") => {
                Some("creating namespaces needs root or a user namespace")
            }
            EngineError::Criu { detail, .. } if detail.contains("criu check") => {
                Some("CRIU releases older than the kernel often cannot dump it (Debian's criu 3.17 on Linux 6.x); install a newer criu")
            }
            EngineError::ExecPaused { .. } => Some("resume it first, or pass --ignore-paused to exec anyway (the process starts frozen)"),
            _ => None,
        }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
