//! The error type of the policy-file modules (pinning, capabilities TOML,
//! Landlock TOML and enforcement). Each variant is named after the operation
//! that failed and carries the path, field or value; it holds no policy.

use std::io;
use std::path::PathBuf;

/// Why a policy file could not be read, parsed, checked or applied.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("failed to read policy `{}`", .path.display())]
    ReadPolicy { path: PathBuf, source: io::Error },

    #[error("policy `{}` is larger than `{max}` bytes", .path.display())]
    CheckPolicySize { path: PathBuf, max: u64 },

    #[error("policy `{}` is not valid utf-8", .path.display())]
    DecodePolicy {
        path: PathBuf,
        source: std::string::FromUtf8Error,
    },

    #[error("expected sha256 `{value}` is not 64 hex digits")]
    ParsePin { value: String },

    #[error("policy `{}` has sha256 `{actual}`, expected `{expected}`", .path.display())]
    CheckPin {
        path: PathBuf,
        actual: String,
        expected: String,
    },

    /// Malformed TOML or a bad key or value; `location` is `line N` when the
    /// parser knows where, else the field.
    #[error("invalid {kind} policy at {location}: {message}")]
    ParseToml {
        kind: &'static str,
        location: String,
        message: String,
    },

    #[error("capabilities policy: unknown capability `{value}` in `[{table}] keep`")]
    ParseCapability { table: &'static str, value: String },

    #[error("landlock policy needs {feature} (abi `{required}`), but the kernel has landlock abi `{kernel}`")]
    CheckLandlockAbi {
        feature: String,
        required: u32,
        /// 0 when Landlock is not built in or not enabled.
        kernel: u32,
    },

    #[error("failed to open landlock rule path `{}`", .path.display())]
    OpenLandlockPath {
        path: PathBuf,
        source: landlock::PathFdError,
    },

    #[error("failed to stat landlock rule path `{}`", .path.display())]
    StatLandlockPath {
        path: PathBuf,
        source: nix::errno::Errno,
    },

    #[error("failed to {step} the landlock ruleset")]
    ApplyLandlock {
        step: &'static str,
        source: landlock::RulesetError,
    },

    #[error("landlock ruleset was not fully enforced (status `{status}`)")]
    CheckLandlockEnforced { status: String },
}

impl PolicyError {
    /// Builds [`PolicyError::ParseToml`] from a toml error, turning its byte
    /// span into a line number of `text`.
    pub(crate) fn from_toml(kind: &'static str, text: &str, err: &toml::de::Error) -> Self {
        let location = match err.span() {
            Some(span) => {
                let start = span.start.min(text.len());
                let line = text
                    .get(..start)
                    .map_or(1, |head| head.matches('\n').count() + 1);
                format!("line {line}")
            }
            None => "top level".to_owned(),
        };
        PolicyError::ParseToml {
            kind,
            location,
            message: err.message().trim_end().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_error_names_the_line() {
        let text = "a = 1\nb = [\n";
        let err = toml::from_str::<toml::Table>(text).expect_err("malformed");
        let msg = PolicyError::from_toml("test", text, &err).to_string();
        assert!(msg.starts_with("invalid test policy at line "), "{msg}");
    }
}
