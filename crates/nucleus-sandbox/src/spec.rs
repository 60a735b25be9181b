//! `SandboxSpec`: what a docker-like run asks for, typed and independent of
//! any command line. The CLI's `nucleus run` flags, a later HTTP API and
//! compose all fill one in (the string forms are parsed by [`crate::parse`]);
//! [`crate::compile`] turns it into an OCI spec. `validate` checks what one
//! field alone cannot (and needs no host access).

use crate::error::{Field, Result, SandboxError};
use crate::rootfs::RootfsSource;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One sandbox, as a front end describes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxSpec {
    /// Unique under the state root; also accepted wherever an id is.
    pub name: Option<String>,
    pub rootfs: RootfsSource,
    /// Read-only root (always so for the host-derived root).
    pub read_only: bool,
    /// Replaces an image's entrypoint (and drops its cmd), as Docker's
    /// `--entrypoint`; `""` means none.
    pub entrypoint: Option<String>,
    /// argv; empty means the image's command, else `/bin/sh`.
    pub command: Vec<String>,
    pub tty: bool,
    /// `KEY=VALUE`, applied in order over the defaults (PATH, HOSTNAME, HOME).
    pub env: Vec<String>,
    /// Absolute; `/` by default.
    pub workdir: Option<String>,
    /// The first 12 characters of the id by default.
    pub hostname: Option<String>,
    /// `USER[:GROUP]`, names or numbers, resolved against the root's passwd and group.
    pub user: Option<String>,
    /// Additional groups, names or numbers.
    pub group_add: Vec<String>,
    pub volumes: Vec<Volume>,
    pub tmpfs: Vec<Tmpfs>,
    pub context: Option<Context>,
    pub secrets: Vec<Secret>,
    pub resources: Resources,
    pub ulimits: Vec<Ulimit>,
    /// Seconds after which the container is killed.
    pub timeout: Option<f64>,
    pub security: Security,
    pub network: Network,
    /// Ports, egress policy and DNS of an [`Network::Attached`] network.
    pub net: NetOptions,
    /// Which backend runs the sandbox.
    #[serde(default)]
    pub runtime: Runtime,
    /// The user namespace (none by default; rootless front ends ask for one).
    #[serde(default)]
    pub userns: crate::userns::UserNamespace,
}

/// The backend: the native engine, or gVisor's runsc.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Runtime {
    #[default]
    Native,
    Gvisor {
        /// `systrap`, `ptrace` or `kvm`; probed and chosen when absent.
        #[serde(default)]
        platform: Option<String>,
        /// The runsc binary; the usual paths when absent.
        #[serde(default)]
        runsc: Option<PathBuf>,
    },
}

impl Runtime {
    pub fn is_gvisor(&self) -> bool {
        matches!(self, Runtime::Gvisor { .. })
    }
}

/// A host path bind-mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// Absolute host path.
    pub source: PathBuf,
    /// Absolute container path other than `/`.
    pub destination: String,
    #[serde(default)]
    pub read_only: bool,
}

impl std::fmt::Display for Volume {
    /// `SRC:DEST[:ro]`, the `-v` spelling.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}{}",
            self.source.display(),
            self.destination,
            if self.read_only { ":ro" } else { "" }
        )
    }
}

/// A tmpfs mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tmpfs {
    pub destination: String,
    /// Bytes; the kernel's default (half of RAM) when absent.
    #[serde(default)]
    pub size: Option<i64>,
}

/// How the context directory gets in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContextMode {
    /// A writable copy, owned by the workload user.
    #[default]
    Copy,
    /// The directory itself, read-only.
    Bind,
}

/// A host directory that appears at `/context`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    pub source: PathBuf,
    #[serde(default)]
    pub mode: ContextMode,
}

/// A file kept in memory inside the container (mode 0400, the workload's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    pub source: PathBuf,
    /// Absolute container path, without `..`.
    pub destination: String,
}

/// cgroup limits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Resources {
    /// Bytes, at least 1 MiB.
    pub memory: Option<i64>,
    /// Memory plus swap in bytes, at least `memory`; -1 for unlimited.
    pub memory_swap: Option<i64>,
    /// Number of CPUs, 0.01 to 1024.
    pub cpus: Option<f64>,
    /// 1 to 10000 (the cgroup v2 scale).
    pub cpu_weight: Option<u64>,
    /// Maximum processes; `None` is the agent default (1024), 0 or less unlimited.
    pub pids: Option<i64>,
    pub io_limits: Vec<IoLimit>,
    /// The cgroup the container's goes below (`--cgroup-parent`): absolute
    /// from the hierarchy's root, relative from the caller's own cgroup, or
    /// a systemd slice (`user.slice`); checked by [`crate::parse::cgroup_parent`].
    pub cgroup_parent: Option<String>,
}

/// Block I/O throttling of one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoLimit {
    /// A block device path, or `MAJOR:MINOR`.
    pub device: String,
    pub rates: Vec<IoRate>,
}

impl std::fmt::Display for IoLimit {
    /// `DEVICE:KIND=RATE[,KIND=RATE]`, the `--io-limit` spelling.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rates: Vec<String> = self
            .rates
            .iter()
            .map(|r| format!("{}={}", r.kind.as_str(), r.rate))
            .collect();
        write!(f, "{}:{}", self.device, rates.join(","))
    }
}

/// One throttle: bytes or operations per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoRate {
    pub kind: IoKind,
    pub rate: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IoKind {
    Rbps,
    Wbps,
    Riops,
    Wiops,
}

impl IoKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IoKind::Rbps => "rbps",
            IoKind::Wbps => "wbps",
            IoKind::Riops => "riops",
            IoKind::Wiops => "wiops",
        }
    }

    /// The `linux.resources.blockIO` list this kind goes to.
    pub fn oci_key(self) -> &'static str {
        match self {
            IoKind::Rbps => "throttleReadBpsDevice",
            IoKind::Wbps => "throttleWriteBpsDevice",
            IoKind::Riops => "throttleReadIOPSDevice",
            IoKind::Wiops => "throttleWriteIOPSDevice",
        }
    }
}

/// A resource limit (`RLIMIT_<NAME>`); `u64::MAX` is unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    /// Lowercase, e.g. `nofile`.
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

/// A policy file and the SHA-256 it must have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyFile {
    pub path: PathBuf,
    #[serde(default)]
    pub sha256: Option<String>,
}

/// Capabilities and policy files; everything is dropped and denied by default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Security {
    /// Capability names (with or without `CAP_`) or `ALL`.
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// OCI seccomp profile (JSON) instead of the agent default.
    pub seccomp_profile: Option<PolicyFile>,
    /// Capabilities policy (TOML).
    pub caps_policy: Option<PolicyFile>,
    /// Landlock policy (TOML) instead of the agent default.
    pub landlock_policy: Option<PolicyFile>,
    /// Warn instead of failing when a protection cannot be applied.
    pub allow_degraded_security: bool,
    /// Needed for [`Network::Host`].
    pub allow_host_network: bool,
}

/// The container's network.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// A network namespace with only loopback.
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// A namespace of its own joined to a nucleus-net network: `bridge`
    /// (the default bridge) or a user-defined network's name.
    Attached(String),
    /// Another running container's namespace, by name or id
    /// (`container:NAME`); the sandbox adds nothing to it.
    Container(String),
    /// A namespace of its own served by `pasta` (Debian's `passt`), run
    /// by whoever starts the container: outbound through pasta's host
    /// sockets, `net.publish` forwarded from the host (`user_net`).
    Pasta,
    /// As [`Network::Pasta`] through `slirp4netns`: outbound and the host's
    /// loopback at 10.0.2.2, no published ports.
    Slirp4netns,
}

impl Network {
    /// As `--network` spells it.
    pub fn as_flag(&self) -> String {
        match self {
            Network::None => "none".into(),
            Network::Host => "host".into(),
            Network::Attached(n) => n.clone(),
            Network::Container(n) => format!("container:{n}"),
            Network::Pasta => "pasta".into(),
            Network::Slirp4netns => "slirp4netns".into(),
        }
    }
}

/// What an attached network adds, in the string forms of Docker's flags
/// (parsed by nucleus-net when the run starts).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetOptions {
    /// `[IP:]HOST:CTR[/tcp|udp]`.
    pub publish: Vec<String>,
    /// `-P`: every port in the image's `ExposedPorts` on a free host port.
    pub publish_all: bool,
    /// `CIDR[:PORT[/tcp|udp]]`.
    pub egress_allow: Vec<String>,
    pub egress_deny: Vec<String>,
    pub egress_deny_all: bool,
    /// Names (`*.example.com` wildcards) whose addresses become reachable.
    pub egress_domain: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    /// `NAME:IP`.
    pub add_host: Vec<String>,
}

impl NetOptions {
    /// The first option that needs an attached network, and its value.
    pub fn first_set(&self) -> Option<(Field, String)> {
        let first = |v: &[String]| v.first().cloned();
        [
            (Field::Publish, first(&self.publish)),
            (
                Field::PublishAll,
                self.publish_all.then(|| "true".to_string()),
            ),
            (Field::EgressAllow, first(&self.egress_allow)),
            (Field::EgressDeny, first(&self.egress_deny)),
            (
                Field::EgressDenyAll,
                self.egress_deny_all.then(|| "true".to_string()),
            ),
            (Field::EgressDomain, first(&self.egress_domain)),
        ]
        .into_iter()
        .find_map(|(f, v)| v.map(|v| (f, v)))
    }
}

impl SandboxSpec {
    /// Checks what no single field's parser can: names, paths, and the
    /// fields that depend on each other. Host files are checked by
    /// [`crate::host::probe`], users by [`crate::compile`].
    pub fn validate(&self) -> Result<()> {
        if let Some(name) = &self.name {
            nucleus_engine::state::validate_id(name)
                .map_err(|e| SandboxError::invalid(Field::Name, name, reason_of(&e.to_string())))?;
        }
        if let Some(h) = &self.hostname {
            if h.is_empty()
                || h.len() > 64
                || !h
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                return Err(SandboxError::invalid(
                    Field::Hostname,
                    h,
                    "expected letters, digits, `-` and `.`, at most 64",
                ));
            }
        }
        if let Some(w) = &self.workdir {
            if !w.starts_with('/') {
                return Err(SandboxError::invalid(
                    Field::Workdir,
                    w,
                    "must be an absolute path",
                ));
            }
        }
        if let Some(p) = &self.resources.cgroup_parent {
            crate::parse::cgroup_parent(p)?;
        }
        if self.network == Network::Host && !self.security.allow_host_network {
            return Err(SandboxError::invalid(
                Field::Network,
                "host",
                "host networking needs --allow-host-network",
            ));
        }
        if matches!(self.network, Network::Pasta | Network::Slirp4netns) && self.runtime.is_gvisor()
        {
            return Err(SandboxError::invalid(
                Field::Network,
                self.network.as_flag(),
                "not available with the gvisor runtime; use network `bridge` as root",
            ));
        }
        if self.network == Network::Pasta {
            let ports = NetOptions {
                publish: Vec::new(),
                ..self.net.clone()
            };
            if let Some((f, value)) = ports.first_set() {
                return Err(SandboxError::invalid(
                    f,
                    value,
                    "not enforced with network `pasta`; use network `bridge` as root",
                ));
            }
        } else if !matches!(self.network, Network::Attached(_)) {
            if let Some((f, value)) = self.net.first_set() {
                return Err(SandboxError::invalid(
                    f,
                    value,
                    format!(
                        "needs network `bridge` or a network's name (network is `{}`)",
                        self.network.as_flag()
                    ),
                ));
            }
        }
        for e in &self.env {
            crate::parse::check_env(Field::Env, e)?;
        }
        for v in &self.volumes {
            crate::parse::check_destination(Field::Volume, &v.to_string(), &v.destination, "DEST")?;
            if !v.source.is_absolute() {
                return Err(SandboxError::invalid(
                    Field::Volume,
                    v.to_string(),
                    "SRC must be an absolute host path (named volumes are not supported)",
                ));
            }
        }
        for t in &self.tmpfs {
            crate::parse::check_destination(Field::Tmpfs, &t.destination, &t.destination, "DEST")?;
        }
        for s in &self.secrets {
            if !s.destination.starts_with('/')
                || s.destination.split('/').any(|c| c == "..")
                || s.destination == "/"
            {
                return Err(SandboxError::invalid(
                    Field::Secret,
                    s.source.display().to_string(),
                    "DEST must not contain `..`",
                ));
            }
        }
        let r = &self.resources;
        if let Some(m) = r.memory {
            if m < 1 << 20 {
                return Err(SandboxError::invalid(
                    Field::Memory,
                    m.to_string(),
                    "expected a size of at least 1m (e.g. 512m, 2g)",
                ));
            }
        }
        if let Some(s) = r.memory_swap {
            match r.memory {
                None => {
                    return Err(SandboxError::invalid(
                        Field::MemorySwap,
                        s.to_string(),
                        "needs --memory",
                    ))
                }
                Some(limit) if s != -1 && s < limit => {
                    return Err(SandboxError::invalid(
                        Field::MemorySwap,
                        s.to_string(),
                        "must be at least --memory (it counts memory plus swap)",
                    ))
                }
                Some(_) => {}
            }
        }
        if let Some(c) = r.cpus {
            if !(c.is_finite() && (0.01..=1024.0).contains(&c)) {
                return Err(SandboxError::invalid(
                    Field::Cpus,
                    c.to_string(),
                    "expected a number of CPUs, e.g. 0.5 or 2",
                ));
            }
        }
        if let Some(w) = r.cpu_weight {
            if !(1..=10_000).contains(&w) {
                return Err(SandboxError::invalid(
                    Field::CpuWeight,
                    w.to_string(),
                    "expected 1 to 10000",
                ));
            }
        }
        for u in &self.ulimits {
            if u.soft > u.hard {
                return Err(SandboxError::invalid(
                    Field::Ulimit,
                    u.name.clone(),
                    "the soft limit is above the hard limit",
                ));
            }
        }
        if let Some(t) = self.timeout {
            if !(t.is_finite() && t > 0.0 && t < 1e9) {
                return Err(SandboxError::invalid(
                    Field::Timeout,
                    t.to_string(),
                    "expected a positive number of seconds",
                ));
            }
        }
        for c in &self.security.cap_add {
            crate::parse::cap_names(Field::CapAdd, c)?;
        }
        for c in &self.security.cap_drop {
            crate::parse::cap_names(Field::CapDrop, c)?;
        }
        Ok(())
    }

    /// The timeout as a duration.
    pub fn timeout(&self) -> Option<std::time::Duration> {
        self.timeout.map(std::time::Duration::from_secs_f64)
    }
}

/// The engine's message after "is invalid: ", for the name.
fn reason_of(msg: &str) -> String {
    msg.split_once(": ")
        .map(|(_, r)| r.to_string())
        .unwrap_or_else(|| msg.to_string())
}
