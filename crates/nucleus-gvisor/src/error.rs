//! The crate's one error type: each variant names the operation that failed
//! and carries the path, field or value involved.

use std::path::PathBuf;

/// Errors of the gVisor backend.
#[derive(Debug, thiserror::Error)]
pub enum GvisorError {
    #[error("runsc not found (looked for {looked}); install Debian's `runsc` or name one with `org.nucleus.gvisor.runsc`")]
    RunscNotFound { looked: String },

    #[error("failed to {op} `{path}`: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("`{runsc} {verb}` failed ({status}): {detail}")]
    Runsc {
        runsc: PathBuf,
        verb: String,
        status: String,
        detail: String,
    },

    #[error("gVisor platform `{requested}` is not available here ({why}); platforms that work: {working}")]
    PlatformUnavailable {
        requested: String,
        why: String,
        working: String,
    },

    #[error("no gVisor platform works on this host: {detail}")]
    NoPlatform { detail: String },

    #[error("{field}: gVisor cannot honour it: {reason} (got `{value}`; set org.nucleus.allow-degraded-security=true to run without it)")]
    Unsupported {
        field: String,
        value: String,
        reason: String,
    },

    #[error("{field}: {reason} (got `{value}`)")]
    Refused {
        field: String,
        value: String,
        reason: String,
    },

    #[error("corrupt gVisor record `{path}`: {source}")]
    CorruptRecord {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl GvisorError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        GvisorError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = GvisorError> = std::result::Result<T, E>;
