//! The flags of the docker-like `nucleus run`, as clap parses them. Values
//! stay strings here: `flags_to_spec` parses each one (with the library's
//! parsers) and names the flag and value when it refuses it, so every bad
//! value exits 125 the same way.

use clap::Args;
use std::path::PathBuf;

/// `nucleus run [OPTIONS] [--rootfs DIR] [-- CMD ARGS...]`
#[derive(Debug, Clone, Default, Args)]
pub struct RunFlags {
    /// Name the container (unique under --root)
    #[arg(long)]
    pub name: Option<String>,
    /// Run in the background and print the container id
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Remove the container when it exits (foreground runs are removed anyway)
    #[arg(long)]
    pub rm: bool,
    /// Keep a foreground container's state after it exits
    #[arg(long)]
    pub keep: bool,
    /// Keep stdin open (foreground)
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Set an environment variable (KEY=VALUE, or KEY to pass the host's value)
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE lines)
    #[arg(long)]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// Container hostname
    #[arg(long)]
    pub hostname: Option<String>,
    /// User and group: USER[:GROUP], names or numbers
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Additional groups (names or numbers)
    #[arg(long)]
    pub group_add: Vec<String>,
    /// With an image: run this instead of its entrypoint (its cmd is dropped too)
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Mount the root filesystem read-only (always so in agent mode)
    #[arg(long)]
    pub read_only: bool,
    /// Bind-mount a host path: SRC:DEST[:ro|rw]
    #[arg(short = 'v', long = "volume")]
    pub volume: Vec<String>,
    /// Mount a tmpfs: DEST[:SIZE]
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// A directory that appears at /context
    #[arg(long)]
    pub context: Option<PathBuf>,
    /// How --context gets in: copy (writable, the default) or bind (read-only)
    #[arg(long)]
    pub context_mode: Option<String>,
    /// A secret file kept in memory: SRC[:DEST] (DEST defaults to /run/secrets/NAME)
    #[arg(long)]
    pub secret: Vec<String>,
    /// Memory limit (bytes, or with a k/m/g suffix)
    #[arg(short = 'm', long, allow_hyphen_values = true)]
    pub memory: Option<String>,
    /// Memory plus swap limit (-1 for unlimited)
    #[arg(long, allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Number of CPUs (e.g. 1.5)
    #[arg(long, allow_hyphen_values = true)]
    pub cpus: Option<String>,
    /// CPU weight, 1-10000 (cgroup v2 scale)
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_weight: Option<String>,
    /// Maximum number of processes (default 1024; -1 for unlimited)
    #[arg(long, allow_hyphen_values = true)]
    pub pids: Option<String>,
    /// Block I/O limit: DEVICE:KIND=RATE[,KIND=RATE] with KIND rbps, wbps, riops or wiops
    #[arg(long)]
    pub io_limit: Vec<String>,
    /// The cgroup to create the container's below: /ABS/PATH, REL/PATH (from nucleus's own) or NAME.slice; rootless, one this user can write
    #[arg(long)]
    pub cgroup_parent: Option<String>,
    /// Resource limit: NAME=SOFT[:HARD] (e.g. nofile=1024:2048)
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Kill the container after this many seconds
    #[arg(long, allow_hyphen_values = true)]
    pub timeout: Option<String>,
    /// Add a capability (or ALL)
    #[arg(long)]
    pub cap_add: Vec<String>,
    /// Drop a capability (or ALL)
    #[arg(long)]
    pub cap_drop: Vec<String>,
    /// OCI seccomp profile (JSON) instead of the agent default
    #[arg(long)]
    pub seccomp_profile: Option<PathBuf>,
    /// Expected SHA-256 of --seccomp-profile
    #[arg(long)]
    pub seccomp_profile_sha256: Option<String>,
    /// Capabilities policy (TOML)
    #[arg(long)]
    pub caps_policy: Option<PathBuf>,
    /// Expected SHA-256 of --caps-policy
    #[arg(long)]
    pub caps_policy_sha256: Option<String>,
    /// Landlock policy (TOML) instead of the agent default
    #[arg(long)]
    pub landlock_policy: Option<PathBuf>,
    /// Expected SHA-256 of --landlock-policy
    #[arg(long)]
    pub landlock_policy_sha256: Option<String>,
    /// Warn instead of failing when a protection cannot be applied
    #[arg(long)]
    pub allow_degraded_security: bool,
    /// Network: none (loopback only, the default), host, bridge, a network's name, pasta or slirp4netns (user-mode, rootless)
    #[arg(long)]
    pub network: Option<String>,
    /// Publish a port: [IP:]HOST:CTR[/tcp|udp], or CTR for a free host port
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Publish every port the image exposes (its ExposedPorts) on a free host port
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// DNS server for the container (nucleus's resolver forwards to it)
    #[arg(long)]
    pub dns: Vec<String>,
    /// DNS search domain
    #[arg(long)]
    pub dns_search: Vec<String>,
    /// Add NAME:IP to /etc/hosts
    #[arg(long)]
    pub add_host: Vec<String>,
    /// Allow egress to CIDR[:PORT[/tcp|udp]]; anything not allowed is refused
    #[arg(long)]
    pub egress_allow: Vec<String>,
    /// Refuse egress to CIDR[:PORT[/tcp|udp]]
    #[arg(long)]
    pub egress_deny: Vec<String>,
    /// Refuse all egress not allowed by another rule
    #[arg(long)]
    pub egress_deny_all: bool,
    /// Allow egress to the addresses this name resolves to (`*.example.com` for names below it)
    #[arg(long)]
    pub egress_domain: Vec<String>,
    /// Allow --network host
    #[arg(long)]
    pub allow_host_network: bool,
    /// Backend: native (the default) or gvisor (runsc, an application kernel)
    #[arg(long)]
    pub runtime: Option<String>,
    /// gVisor platform: systrap, ptrace or kvm (default: probed)
    #[arg(long)]
    pub gvisor_platform: Option<String>,
    /// The runsc binary for --runtime gvisor
    #[arg(long)]
    pub gvisor_runsc: Option<PathBuf>,
    /// Run without root (the default when not run as root): a user namespace
    #[arg(long)]
    pub rootless: bool,
    /// User namespace: host, auto, keep-id (your id is the same inside) or nomap
    #[arg(long)]
    pub userns: Option<String>,
    /// Map uids: CONTAINER:HOST:SIZE (rootless, HOST counts from your own id, then your /etc/subuid range)
    #[arg(long)]
    pub uidmap: Vec<String>,
    /// Map gids: CONTAINER:HOST:SIZE (rootless, HOST counts from your own gid, then your /etc/subgid range)
    #[arg(long)]
    pub gidmap: Vec<String>,
    /// Use this directory as the root filesystem instead of the host-derived one
    #[arg(long)]
    pub rootfs: Option<PathBuf>,
    /// Set by `argv::rewrite` when the command line has `--`: then `args`
    /// is the command, else IMAGE [CMD...]
    #[arg(long = "__command-follows", hide = true)]
    pub command_follows: bool,
    /// `-- CMD ARGS...` (or, with --rootfs, CMD ARGS... without `--`)
    #[arg(trailing_var_arg = true)]
    pub args: Vec<String>,
}
