//! The crate's one public error type. Each variant names the operation that
//! failed and carries the field, path or value involved; bad input names
//! the [`Field`] of [`crate::SandboxSpec`] it came from, so every front end
//! can say it in its own words (the CLI names the flag).

use nucleus_engine::EngineError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// A field of [`crate::SandboxSpec`] (or of a run's options) that a value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    Name,
    Image,
    Rootfs,
    Command,
    Tty,
    Keep,
    Env,
    /// A line of an env file (`line` counts from 1), or the file itself.
    EnvFile {
        path: PathBuf,
        line: Option<usize>,
    },
    Workdir,
    Hostname,
    User,
    GroupAdd,
    Volume,
    Tmpfs,
    Context,
    ContextMode,
    Secret,
    Memory,
    MemorySwap,
    Cpus,
    CpuWeight,
    Pids,
    IoLimit,
    CgroupParent,
    Ulimit,
    Timeout,
    CapAdd,
    CapDrop,
    SeccompProfile,
    SeccompProfileSha256,
    CapsPolicy,
    CapsPolicySha256,
    LandlockPolicy,
    LandlockPolicySha256,
    Network,
    Publish,
    PublishAll,
    /// `port CONTAINER PRIVATE_PORT[/PROTO]`
    PrivatePort,
    EgressAllow,
    EgressDeny,
    EgressDenyAll,
    EgressDomain,
    Dns,
    DnsSearch,
    AddHost,
    Runtime,
    GvisorPlatform,
    Userns,
    UidMap,
    GidMap,
}

impl fmt::Display for Field {
    /// The field's path in a serialized `SandboxSpec`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Field::EnvFile {
                path,
                line: Some(n),
            } => return write!(f, "env_file {}:{n}", path.display()),
            Field::EnvFile { path, line: None } => return write!(f, "env_file {}", path.display()),
            Field::Name => "name",
            Field::Image => "rootfs.image",
            Field::Rootfs => "rootfs.directory",
            Field::Command => "command",
            Field::Tty => "tty",
            Field::Keep => "keep",
            Field::Env => "env",
            Field::Workdir => "workdir",
            Field::Hostname => "hostname",
            Field::User => "user",
            Field::GroupAdd => "group_add",
            Field::Volume => "volumes",
            Field::Tmpfs => "tmpfs",
            Field::Context => "context.source",
            Field::ContextMode => "context.mode",
            Field::Secret => "secrets",
            Field::Memory => "resources.memory",
            Field::MemorySwap => "resources.memory_swap",
            Field::Cpus => "resources.cpus",
            Field::CpuWeight => "resources.cpu_weight",
            Field::Pids => "resources.pids",
            Field::IoLimit => "resources.io_limits",
            Field::CgroupParent => "resources.cgroup_parent",
            Field::Ulimit => "ulimits",
            Field::Timeout => "timeout",
            Field::CapAdd => "security.cap_add",
            Field::CapDrop => "security.cap_drop",
            Field::SeccompProfile => "security.seccomp_profile",
            Field::SeccompProfileSha256 => "security.seccomp_profile.sha256",
            Field::CapsPolicy => "security.caps_policy",
            Field::CapsPolicySha256 => "security.caps_policy.sha256",
            Field::LandlockPolicy => "security.landlock_policy",
            Field::LandlockPolicySha256 => "security.landlock_policy.sha256",
            Field::Network => "network",
            Field::Publish => "net.publish",
            Field::PublishAll => "net.publish_all",
            Field::PrivatePort => "port.private_port",
            Field::EgressAllow => "net.egress_allow",
            Field::EgressDeny => "net.egress_deny",
            Field::EgressDenyAll => "net.egress_deny_all",
            Field::EgressDomain => "net.egress_domain",
            Field::Dns => "net.dns",
            Field::DnsSearch => "net.dns_search",
            Field::AddHost => "net.add_host",
            Field::Runtime => "runtime",
            Field::GvisorPlatform => "runtime.gvisor.platform",
            Field::Userns => "userns.mode",
            Field::UidMap => "userns.uid_map",
            Field::GidMap => "userns.gid_map",
        };
        f.write_str(s)
    }
}

/// Errors of the docker-like layer.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A value the sandbox cannot use.
    #[error("{field}: invalid value `{value}`: {reason}")]
    InvalidValue {
        field: Field,
        value: String,
        reason: String,
    },

    #[error("cannot claim the name `{name}`: {source}")]
    ClaimName {
        name: String,
        source: Box<EngineError>,
    },

    #[error("no such container `{query}`")]
    Resolve {
        query: String,
        source: Box<EngineError>,
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

    #[error("failed to encode {what}: {reason}")]
    Encode { what: &'static str, reason: String },

    /// The engine refused or failed; `op` is the verb.
    #[error("{source}")]
    Engine {
        op: &'static str,
        source: Box<EngineError>,
    },

    /// A verb on a container failed (`stop`, `kill`, `remove`, `attach to`).
    #[error("{op} `{query}`")]
    Container {
        op: &'static str,
        query: String,
        source: Box<SandboxError>,
    },

    #[error("container `{query}` is {status}: stop it first or use `rm -f`")]
    NotStopped { query: String, status: String },

    #[error("container `{query}` has no logs (it was not started by `nucleus run -d`)")]
    NoLogs { query: String },

    #[error("monitor arguments: unexpected `{arg}` (expected --id ID --bundle DIR [--timeout SECS] [--rm])")]
    MonitorArgs { arg: String },

    #[error("cannot start the container monitor: {reason}")]
    MonitorStart { reason: String },

    /// The monitor reported that the container did not start.
    #[error("{message}")]
    MonitorReport {
        kind: LaunchFailure,
        message: String,
    },

    /// The network attachment step failed (a bridge, a lease, a rule).
    #[error("network `{network}`: {reason}")]
    Network { network: String, reason: String },

    /// The user namespace rootless containers share (`userns_holder`)
    /// could not be made, joined or stopped.
    #[error("the shared user namespace in `{dir}`: {reason}")]
    UsernsHolder { dir: PathBuf, reason: String },

    /// An image root could not be torn down.
    #[error("image roots: {reason}")]
    ImageRoot { reason: String },

    /// For `NetworkAttach` implementations.
    #[error("failed to attach the network of `{id}`: {reason}")]
    AttachNetwork { id: String, reason: String },

    /// For `SideTask` implementations.
    #[error("monitor side task `{task}` failed: {reason}")]
    SideTask { task: String, reason: String },

    #[error("container exited without a status")]
    NoExitStatus,
}

/// Why a container's workload did not run, as Docker's exit codes tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LaunchFailure {
    /// The runtime failed (Docker's 125).
    Runtime,
    /// The command exists but cannot be executed (126).
    NotExecutable,
    /// The command was not found (127).
    NotFound,
}

impl LaunchFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            LaunchFailure::Runtime => "runtime",
            LaunchFailure::NotExecutable => "not_executable",
            LaunchFailure::NotFound => "not_found",
        }
    }

    pub fn from_str_lossy(s: &str) -> Self {
        match s {
            "not_executable" => LaunchFailure::NotExecutable,
            "not_found" => LaunchFailure::NotFound,
            _ => LaunchFailure::Runtime,
        }
    }
}

impl SandboxError {
    pub(crate) fn invalid(
        field: Field,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        SandboxError::InvalidValue {
            field,
            value: value.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SandboxError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn engine(op: &'static str) -> impl FnOnce(EngineError) -> SandboxError {
        move |source| SandboxError::Engine {
            op,
            source: Box::new(source),
        }
    }

    /// Whether the workload failed to execute, and how.
    pub fn launch_failure(&self) -> LaunchFailure {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = cur {
            if let Some(SandboxError::MonitorReport { kind, .. }) = e.downcast_ref::<SandboxError>()
            {
                return *kind;
            }
            if let Some(EngineError::Child { step, detail }) = as_engine(e) {
                if step == "exec" {
                    // The engine words strerror as runc does: lowercase.
                    return if detail
                        .to_ascii_lowercase()
                        .ends_with("no such file or directory")
                    {
                        LaunchFailure::NotFound
                    } else {
                        LaunchFailure::NotExecutable
                    };
                }
            }
            cur = e.source();
        }
        LaunchFailure::Runtime
    }

    /// The engine's hint for a well-known host limitation, if any.
    pub fn hint(&self) -> Option<&'static str> {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = cur {
            if let Some(h) = as_engine(e).and_then(EngineError::hint) {
                return Some(h);
            }
            cur = e.source();
        }
        None
    }
}

/// An engine error in a chain, boxed (as this crate holds them) or not.
fn as_engine<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a EngineError> {
    e.downcast_ref::<EngineError>()
        .or_else(|| e.downcast_ref::<Box<EngineError>>().map(|b| &**b))
}

/// The error and its causes in one line, each said once
/// (`stop `web`: container `web` is stopped: ...`).
pub fn render_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = String::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let text = e.to_string();
        if !msg.contains(&text) {
            if !msg.is_empty() {
                msg.push_str(": ");
            }
            msg.push_str(&text);
        }
        cur = e.source();
    }
    msg
}

pub type Result<T, E = SandboxError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn exec_error(detail: &str) -> SandboxError {
        let child = EngineError::Child {
            step: "exec".into(),
            detail: detail.into(),
        };
        let inner = SandboxError::engine("exec")(child);
        SandboxError::Container {
            op: "attach to",
            query: "web".into(),
            source: Box::new(inner),
        }
    }

    #[test]
    fn launch_failures_are_found_through_the_chain() {
        assert_eq!(
            exec_error("execve `/x`: No such file or directory").launch_failure(),
            LaunchFailure::NotFound
        );
        assert_eq!(
            exec_error("execve `/x`: Permission denied").launch_failure(),
            LaunchFailure::NotExecutable
        );
        assert_eq!(
            SandboxError::NoExitStatus.launch_failure(),
            LaunchFailure::Runtime
        );
        let report = SandboxError::MonitorReport {
            kind: LaunchFailure::NotFound,
            message: "m".into(),
        };
        assert_eq!(report.launch_failure(), LaunchFailure::NotFound);
        assert_eq!(
            LaunchFailure::from_str_lossy(LaunchFailure::NotExecutable.as_str()),
            LaunchFailure::NotExecutable
        );
    }

    #[test]
    fn chains_say_each_cause_once() {
        let e = exec_error("execve `/x`: Permission denied");
        assert_eq!(render_chain(&e), "attach to `web`: container setup failed at step `exec`: execve `/x`: Permission denied");
        let bad = SandboxError::invalid(Field::Memory, "lots", "expected a size");
        assert_eq!(
            bad.to_string(),
            "resources.memory: invalid value `lots`: expected a size"
        );
    }
}
