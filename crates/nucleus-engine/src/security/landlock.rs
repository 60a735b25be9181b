//! Landlock: parse a policy (TOML), check in the parent that the kernel's
//! ABI can enforce it, and enforce it in the container's init.
//!
//! ```toml
//! min_abi = 4
//! [[rules]]
//! path = "/usr"
//! access = ["read", "execute"]
//! [[rules]]
//! path = "/work"
//! access = ["read", "write", "create", "remove", "refer"]
//! [[net]]
//! port = 443
//! access = ["connect"]
//! scope = ["signal"]   # top-level key; must come before the first table
//! ```
//!
//! The ruleset handles every access right the kernel's ABI knows (and this
//! module can name), so whatever a policy does not grant is denied, network
//! included. Fail closed: a policy the kernel cannot enforce in full is an
//! error unless degraded security is allowed.
//!
//! This module never decides which paths a container gets, beyond
//! [`default_agent_policy`]; it does not mount or open anything in the parent.

use super::policy_error::PolicyError;
use landlock::{
    make_bitflags, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, LandlockStatus,
    NetPort, PathBeneath, PathFd, PathFdError, RestrictSelf, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// OCI annotation whose value is the policy TOML text.
pub const ANNOTATION: &str = "org.nucleus.landlock";

const KIND: &str = "landlock";

/// A Landlock policy: filesystem rules, TCP port rules and IPC scopes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LandlockPolicy {
    /// Refuse to run on a kernel whose Landlock ABI is older.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_abi: Option<u32>,
    /// `[[rules]]`: access granted beneath a path.
    #[serde(default)]
    pub rules: Vec<FsRule>,
    /// `[[net]]`: TCP access granted to a port (ABI 4).
    #[serde(default)]
    pub net: Vec<NetRule>,
    /// IPC scoping (ABI 6): block abstract unix sockets and signals that
    /// leave the sandbox.
    #[serde(default, deserialize_with = "de_scopes")]
    pub scope: BTreeSet<ScopeKind>,
}

/// Access granted beneath one path (a directory, or a single file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsRule {
    /// A container path, resolved after pivot_root.
    pub path: PathBuf,
    /// Shorthands are expanded when parsing; this is the full set.
    #[serde(deserialize_with = "de_fs_access")]
    pub access: BTreeSet<FsAccess>,
}

/// TCP access granted to one port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetRule {
    pub port: u16,
    #[serde(deserialize_with = "de_net_access")]
    pub access: BTreeSet<NetAccess>,
}

/// One Landlock filesystem access right, by its kernel name without the
/// `LANDLOCK_ACCESS_FS_` prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsAccess {
    Execute,
    WriteFile,
    ReadFile,
    ReadDir,
    RemoveDir,
    RemoveFile,
    MakeChar,
    MakeDir,
    MakeReg,
    MakeSock,
    MakeFifo,
    MakeBlock,
    MakeSym,
    Refer,
    Truncate,
    IoctlDev,
}

/// TCP access to a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetAccess {
    Bind,
    Connect,
}

/// An IPC scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeKind {
    AbstractUnixSocket,
    Signal,
}

use FsAccess::*;

const ALL_FS: [FsAccess; 16] = [
    Execute, WriteFile, ReadFile, ReadDir, RemoveDir, RemoveFile, MakeChar, MakeDir, MakeReg,
    MakeSock, MakeFifo, MakeBlock, MakeSym, Refer, Truncate, IoctlDev,
];
const MAKE: [FsAccess; 7] = [
    MakeChar, MakeDir, MakeReg, MakeSock, MakeFifo, MakeBlock, MakeSym,
];

impl FsAccess {
    fn name(self) -> &'static str {
        match self {
            Execute => "execute",
            WriteFile => "write_file",
            ReadFile => "read_file",
            ReadDir => "read_dir",
            RemoveDir => "remove_dir",
            RemoveFile => "remove_file",
            MakeChar => "make_char",
            MakeDir => "make_dir",
            MakeReg => "make_reg",
            MakeSock => "make_sock",
            MakeFifo => "make_fifo",
            MakeBlock => "make_block",
            MakeSym => "make_sym",
            Refer => "refer",
            Truncate => "truncate",
            IoctlDev => "ioctl_dev",
        }
    }

    /// The Landlock ABI that introduced this right.
    fn min_abi(self) -> u32 {
        match self {
            Refer => 2,
            Truncate => 3,
            IoctlDev => 5,
            _ => 1,
        }
    }

    fn to_landlock(self) -> AccessFs {
        match self {
            Execute => AccessFs::Execute,
            WriteFile => AccessFs::WriteFile,
            ReadFile => AccessFs::ReadFile,
            ReadDir => AccessFs::ReadDir,
            RemoveDir => AccessFs::RemoveDir,
            RemoveFile => AccessFs::RemoveFile,
            MakeChar => AccessFs::MakeChar,
            MakeDir => AccessFs::MakeDir,
            MakeReg => AccessFs::MakeReg,
            MakeSock => AccessFs::MakeSock,
            MakeFifo => AccessFs::MakeFifo,
            MakeBlock => AccessFs::MakeBlock,
            MakeSym => AccessFs::MakeSym,
            Refer => AccessFs::Refer,
            Truncate => AccessFs::Truncate,
            IoctlDev => AccessFs::IoctlDev,
        }
    }

    /// Expands a policy word: a full right name or a shorthand.
    fn expand(word: &str) -> Option<Vec<FsAccess>> {
        let rights = match word {
            "read" => vec![ReadFile, ReadDir],
            "write" => vec![WriteFile, Truncate],
            "create" => MAKE.to_vec(),
            "remove" => vec![RemoveDir, RemoveFile],
            "readdir" => vec![ReadDir],
            other => vec![*ALL_FS.iter().find(|a| a.name() == other)?],
        };
        Some(rights)
    }
}

impl NetAccess {
    fn to_landlock(self) -> AccessNet {
        match self {
            NetAccess::Bind => AccessNet::BindTcp,
            NetAccess::Connect => AccessNet::ConnectTcp,
        }
    }
}

impl ScopeKind {
    fn name(self) -> &'static str {
        match self {
            ScopeKind::AbstractUnixSocket => "abstract_unix_socket",
            ScopeKind::Signal => "signal",
        }
    }

    fn to_landlock(self) -> Scope {
        match self {
            ScopeKind::AbstractUnixSocket => Scope::AbstractUnixSocket,
            ScopeKind::Signal => Scope::Signal,
        }
    }
}

/// ABI that introduced TCP port rules.
const NET_ABI: u32 = 4;
/// ABI that introduced IPC scoping.
const SCOPE_ABI: u32 = 6;

/// Rights this module can grant. Rights of newer ABIs (e.g. `resolve_unix`,
/// UDP) are left unhandled: handling them would deny them with no way to
/// grant them back.
fn known_fs() -> BitFlags<AccessFs> {
    ALL_FS.iter().map(|a| a.to_landlock()).collect()
}

fn known_net() -> BitFlags<AccessNet> {
    make_bitflags!(AccessNet::{BindTcp | ConnectTcp})
}

const FS_WORDS: &str = "read, write, create, remove, readdir, execute, read_file, write_file, \
     read_dir, remove_dir, remove_file, make_char, make_dir, make_reg, make_sock, make_fifo, \
     make_block, make_sym, refer, truncate, ioctl_dev";

fn de_fs_access<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeSet<FsAccess>, D::Error> {
    let words = Vec::<String>::deserialize(d)?;
    if words.is_empty() {
        return Err(serde::de::Error::custom("`rules.access` is empty"));
    }
    let mut set = BTreeSet::new();
    for word in &words {
        let rights = FsAccess::expand(word).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown access `{word}` in `rules.access`; expected one of {FS_WORDS}"
            ))
        })?;
        set.extend(rights);
    }
    Ok(set)
}

fn de_net_access<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeSet<NetAccess>, D::Error> {
    let words = Vec::<String>::deserialize(d)?;
    if words.is_empty() {
        return Err(serde::de::Error::custom("`net.access` is empty"));
    }
    words
        .iter()
        .map(|word| match word.as_str() {
            "bind" => Ok(NetAccess::Bind),
            "connect" => Ok(NetAccess::Connect),
            _ => Err(serde::de::Error::custom(format!(
                "unknown access `{word}` in `net.access`; expected bind or connect"
            ))),
        })
        .collect()
}

fn de_scopes<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeSet<ScopeKind>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|word| match word.as_str() {
            "abstract_unix_socket" => Ok(ScopeKind::AbstractUnixSocket),
            "signal" => Ok(ScopeKind::Signal),
            _ => Err(serde::de::Error::custom(format!(
                "unknown scope `{word}` in `scope`; expected abstract_unix_socket or signal"
            ))),
        })
        .collect()
}

/// Parses a Landlock policy. Shorthands expand to full rights: `read` =
/// read_file + read_dir, `write` = write_file + truncate, `create` = every
/// make_*, `remove` = remove_dir + remove_file, `readdir` = read_dir.
/// Unknown keys and values are errors naming the field and line.
pub fn parse_policy(text: &str) -> Result<LandlockPolicy, PolicyError> {
    let policy: LandlockPolicy =
        toml::from_str(text).map_err(|err| PolicyError::from_toml(KIND, text, &err))?;
    for (i, rule) in policy.rules.iter().enumerate() {
        // Relative paths would resolve against the init's cwd at apply time.
        if !rule.path.is_absolute() {
            return Err(PolicyError::ParseToml {
                kind: KIND,
                location: format!("`rules[{i}].path`"),
                message: format!("path `{}` is not absolute", rule.path.display()),
            });
        }
    }
    Ok(policy)
}

/// The policy carried in the [`ANNOTATION`] of an OCI spec, if any.
pub fn policy_from_annotations(
    annotations: Option<&HashMap<String, String>>,
) -> Result<Option<LandlockPolicy>, PolicyError> {
    annotations
        .and_then(|a| a.get(ANNOTATION))
        .map(|text| parse_policy(text))
        .transpose()
}

/// System paths of agent mode: read and execute.
const SYSTEM_PATHS: [&str; 8] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt",
];

/// The agent-mode default: read and execute on system paths, read on `/etc`
/// and `/proc`, read-write on the devices in `/dev`, and full read-write
/// (create, remove, rename, execute) on `/tmp`, `/dev/shm`, `/run` and each
/// of `writable` (volumes, the workspace). Nothing else, network included.
///
/// `/` gets `read_dir` so `ls /` works; Landlock rules are hierarchical, so
/// that lets the agent list (not read) every directory. The container root
/// holds only what nucleus mounted, so the names reveal nothing new.
///
/// Writable paths get `execute` because agents build and run their own
/// programs there (compilers, virtualenvs); with an interpreter available,
/// denying it would add little.
pub fn default_agent_policy(writable: &[PathBuf]) -> LandlockPolicy {
    let read_exec = BTreeSet::from([ReadFile, ReadDir, Execute]);
    let read = BTreeSet::from([ReadFile, ReadDir]);
    let devices = BTreeSet::from([ReadFile, WriteFile, ReadDir, IoctlDev]);
    let mut read_write: BTreeSet<FsAccess> = ALL_FS.into_iter().collect();
    // Device nodes belong in /dev only; CAP_MKNOD is dropped anyway.
    read_write.remove(&MakeChar);
    read_write.remove(&MakeBlock);
    read_write.remove(&IoctlDev);

    let rule = |path: &Path, access: &BTreeSet<FsAccess>| FsRule {
        path: path.to_owned(),
        access: access.clone(),
    };
    let mut rules = vec![rule(Path::new("/"), &BTreeSet::from([ReadDir]))];
    rules.extend(SYSTEM_PATHS.iter().map(|p| rule(Path::new(p), &read_exec)));
    rules.push(rule(Path::new("/etc"), &read));
    rules.push(rule(Path::new("/proc"), &read));
    rules.push(rule(Path::new("/dev"), &devices));
    for path in ["/tmp", "/dev/shm", "/run"] {
        rules.push(rule(Path::new(path), &read_write));
    }
    rules.extend(writable.iter().map(|p| rule(p, &read_write)));
    LandlockPolicy {
        min_abi: None,
        rules,
        net: Vec::new(),
        scope: BTreeSet::new(),
    }
}

/// The running kernel's Landlock ABI; 0 when Landlock is not built in or
/// not enabled.
fn kernel_abi() -> Result<(u32, ABI), PolicyError> {
    // With no flags and no_new_privs off, RestrictSelf only probes the
    // kernel: it makes no restrict_self call.
    let status = RestrictSelf::default()
        .no_new_privs(false)
        .apply()
        .map_err(|source| PolicyError::ApplyLandlock {
            step: "probe the kernel for",
            source,
        })?;
    Ok(match status.landlock {
        LandlockStatus::Available {
            effective_abi,
            kernel_abi,
        } => {
            let known = effective_abi as u32;
            // Newer than this crate knows: report the real number.
            let raw = kernel_abi
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(known);
            (raw, effective_abi)
        }
        _ => (0, ABI::Unsupported),
    })
}

impl LandlockPolicy {
    /// What this policy needs from the kernel: (feature, minimum ABI).
    fn requirements(&self) -> Vec<(String, u32)> {
        let mut needs = Vec::new();
        if let Some(min) = self.min_abi {
            needs.push((format!("`min_abi = {min}`"), min));
        }
        needs.push(("landlock".to_owned(), 1));
        let used: BTreeSet<FsAccess> = self
            .rules
            .iter()
            .flat_map(|r| r.access.iter().copied())
            .collect();
        for access in used.into_iter().filter(|a| a.min_abi() > 1) {
            needs.push((format!("access `{}`", access.name()), access.min_abi()));
        }
        if !self.net.is_empty() {
            needs.push(("`[[net]]` rules".to_owned(), NET_ABI));
        }
        for scope in &self.scope {
            needs.push((format!("scope `{}`", scope.name()), SCOPE_ABI));
        }
        needs
    }

    /// Runs in the parent before clone: the kernel's ABI must satisfy
    /// `min_abi` and every feature the policy uses (refer 2, truncate 3,
    /// net rules 4, ioctl_dev 5, scope 6). Fails closed; with
    /// `allow_degraded` the shortfalls come back as warnings instead.
    pub fn check_supported(&self, allow_degraded: bool) -> Result<Vec<String>, PolicyError> {
        let (kernel, _) = kernel_abi()?;
        let mut warnings = Vec::new();
        for (feature, required) in self.requirements() {
            if required <= kernel {
                continue;
            }
            if !allow_degraded {
                return Err(PolicyError::CheckLandlockAbi {
                    feature,
                    required,
                    kernel,
                });
            }
            warnings.push(format!(
                "landlock policy needs {feature} (abi `{required}`), but the kernel has landlock abi `{kernel}`: not enforced"
            ));
        }
        Ok(warnings)
    }

    /// Runs in the container's init after pivot_root (paths are container
    /// paths), just before seccomp. Opens each rule path, handles every
    /// access right the kernel's ABI knows, adds the rules and calls
    /// restrict_self (which also sets no_new_privs).
    ///
    /// A rule whose path does not exist is skipped: a system path such as
    /// `/lib32` may be absent from an image. Directory-only rights are
    /// dropped from a rule on a file. Enforcement must be full
    /// (`RulesetStatus::FullyEnforced`) unless `allow_degraded`, which
    /// enforces what the kernel supports (nothing, without Landlock).
    pub fn apply(&self, allow_degraded: bool) -> Result<(), PolicyError> {
        if !allow_degraded {
            self.check_supported(false)?;
        }
        let (_, abi) = kernel_abi()?;
        if abi == ABI::Unsupported {
            // Only reachable when degraded: check_supported refused above.
            return Ok(());
        }
        let level = if allow_degraded {
            CompatLevel::BestEffort
        } else {
            CompatLevel::HardRequirement
        };
        let fs_handled = AccessFs::from_all(abi) & known_fs();
        let net_handled = AccessNet::from_all(abi) & known_net();
        let scopes: BitFlags<Scope> = self.scope.iter().map(|s| s.to_landlock()).collect();
        let err = |step| move |source| PolicyError::ApplyLandlock { step, source };

        let mut ruleset = Ruleset::default()
            .set_compatibility(level)
            .handle_access(fs_handled)
            .map_err(err("handle filesystem access in"))?;
        if !net_handled.is_empty() {
            ruleset = ruleset
                .handle_access(net_handled)
                .map_err(err("handle network access in"))?;
        }
        if !scopes.is_empty() {
            ruleset = ruleset.scope(scopes).map_err(err("set the scopes of"))?;
        }
        let mut created = ruleset.create().map_err(err("create"))?;

        for rule in &self.rules {
            let fd = match PathFd::new(&rule.path) {
                Ok(fd) => fd,
                Err(PathFdError::OpenCall { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    continue
                }
                Err(source) => {
                    return Err(PolicyError::OpenLandlockPath {
                        path: rule.path.clone(),
                        source,
                    })
                }
            };
            let stat =
                nix::sys::stat::fstat(&fd).map_err(|source| PolicyError::StatLandlockPath {
                    path: rule.path.clone(),
                    source,
                })?;
            let mut access: BitFlags<AccessFs> =
                rule.access.iter().map(|a| a.to_landlock()).collect();
            access &= fs_handled;
            if stat.st_mode & libc::S_IFMT != libc::S_IFDIR {
                access &= AccessFs::from_file(abi);
            }
            if access.is_empty() {
                continue;
            }
            created = created
                .add_rule(PathBeneath::new(fd, access))
                .map_err(err("add a path rule to"))?;
        }
        for rule in &self.net {
            let access: BitFlags<AccessNet> = rule
                .access
                .iter()
                .map(|a| a.to_landlock())
                .collect::<BitFlags<_>>()
                & net_handled;
            if access.is_empty() {
                continue;
            }
            created = created
                .add_rule(NetPort::new(rule.port, access))
                .map_err(err("add a port rule to"))?;
        }

        let status = created.restrict_self().map_err(err("enforce"))?;
        if status.ruleset != RulesetStatus::FullyEnforced && !allow_degraded {
            return Err(PolicyError::CheckLandlockEnforced {
                status: format!("{:?}", status.ruleset),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::test_child::{assert_exit, sh_after};
    use nix::sys::wait::WaitStatus;
    use std::net::TcpListener;

    #[test]
    fn parse_expands_shorthands() {
        let policy = parse_policy(
            r#"
            min_abi = 3
            scope = ["signal", "abstract_unix_socket"]
            [[rules]]
            path = "/usr"
            access = ["read", "execute"]
            [[rules]]
            path = "/work"
            access = ["write", "create", "remove", "readdir", "refer", "ioctl_dev"]
            [[net]]
            port = 8080
            access = ["bind", "connect"]
            "#,
        )
        .expect("valid policy");
        assert_eq!(policy.min_abi, Some(3));
        assert_eq!(
            policy.rules[0].access,
            BTreeSet::from([ReadFile, ReadDir, Execute])
        );
        let mut work = BTreeSet::from([
            WriteFile, Truncate, RemoveDir, RemoveFile, ReadDir, Refer, IoctlDev,
        ]);
        work.extend(MAKE);
        assert_eq!(policy.rules[1].access, work);
        assert_eq!(policy.net[0].port, 8080);
        assert_eq!(
            policy.net[0].access,
            BTreeSet::from([NetAccess::Bind, NetAccess::Connect])
        );
        assert_eq!(
            policy.scope,
            BTreeSet::from([ScopeKind::Signal, ScopeKind::AbstractUnixSocket])
        );
        // Full names parse to the same rights, and the canonical form round-trips.
        let text = toml::to_string(&policy).expect("serialize");
        assert_eq!(parse_policy(&text).expect("reparse"), policy);
    }

    #[test]
    fn parse_full_names() {
        let names = ALL_FS.map(FsAccess::name);
        let text = format!("[[rules]]\npath = \"/x\"\naccess = {names:?}\n");
        let policy = parse_policy(&text).expect("full names");
        assert_eq!(policy.rules[0].access, ALL_FS.into_iter().collect());
    }

    #[test]
    fn unknown_access_names_field_and_line() {
        let text = "[[rules]]\npath = \"/tmp\"\naccess = [\"read\", \"fly\"]\n";
        let err = parse_policy(text).expect_err("unknown access");
        let msg = err.to_string();
        assert!(
            msg.starts_with(
                "invalid landlock policy at line 3: unknown access `fly` in `rules.access`"
            ),
            "{msg}"
        );

        let err = parse_policy("[[net]]\nport = 1\naccess = [\"listen\"]\n").expect_err("net");
        let msg = err.to_string();
        assert!(
            msg.contains("line 3") && msg.contains("`listen` in `net.access`"),
            "{msg}"
        );

        let err = parse_policy("scope = [\"ptrace\"]\n").expect_err("scope");
        assert!(
            err.to_string()
                .contains("line 1: unknown scope `ptrace` in `scope`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let err = parse_policy("[[rules]]\npath = \"/tmp\"\naccess = [\"read\"]\nmode = 1\n")
            .expect_err("unknown key");
        let msg = err.to_string();
        assert!(msg.contains("unknown field `mode`"), "{msg}");
        let err = parse_policy("[[net]]\nport = 70000\naccess = [\"bind\"]\n").expect_err("port");
        assert!(err.to_string().contains("line 2"), "{err}");
        let err =
            parse_policy("[[rules]]\npath = \"tmp\"\naccess = [\"read\"]\n").expect_err("relative");
        assert_eq!(
            err.to_string(),
            "invalid landlock policy at `rules[0].path`: path `tmp` is not absolute"
        );
        let err = parse_policy("[[rules]]\npath = \"/tmp\"\naccess = []\n").expect_err("empty");
        assert!(err.to_string().contains("`rules.access` is empty"), "{err}");
    }

    #[test]
    fn annotation_carries_the_policy() {
        let mut annotations = HashMap::new();
        assert_eq!(
            policy_from_annotations(Some(&annotations)).expect("none"),
            None
        );
        annotations.insert(ANNOTATION.to_owned(), "min_abi = 1\n".to_owned());
        let policy = policy_from_annotations(Some(&annotations))
            .expect("parse")
            .expect("some");
        assert_eq!(policy.min_abi, Some(1));
    }

    #[test]
    fn min_abi_beyond_kernel_is_refused() {
        let (kernel, _) = kernel_abi().expect("probe");
        let policy = parse_policy("min_abi = 99\n").expect("parse");
        let err = policy.check_supported(false).expect_err("abi 99");
        assert_eq!(
            err.to_string(),
            format!("landlock policy needs `min_abi = 99` (abi `99`), but the kernel has landlock abi `{kernel}`")
        );
        let warnings = policy.check_supported(true).expect("degraded");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("`99`"), "{warnings:?}");
    }

    #[test]
    fn default_policy_is_supported_here() {
        let policy = default_agent_policy(&[PathBuf::from("/work")]);
        assert!(policy.check_supported(false).expect("supported").is_empty());
        assert!(policy
            .rules
            .iter()
            .any(|r| r.path == Path::new("/work") && r.access.contains(&MakeReg)));
        assert!(policy.net.is_empty());
    }

    /// Runs `/bin/sh -c script` after `setup` and under `policy`.
    /// Exit 120: setup failed; 121: the policy did not apply.
    fn run_confined(
        policy: &LandlockPolicy,
        setup: impl FnOnce() -> bool,
        script: &str,
    ) -> WaitStatus {
        sh_after(
            || {
                if !setup() {
                    120
                } else if policy.apply(false).is_err() {
                    121
                } else {
                    0
                }
            },
            script,
        )
    }

    fn system_read_exec() -> LandlockPolicy {
        let mut policy = default_agent_policy(&[]);
        // Keep system paths and /dev; drop the writable defaults.
        policy.rules.retain(|r| {
            !["/tmp", "/run", "/dev/shm"]
                .iter()
                .any(|p| r.path == Path::new(p))
        });
        policy
    }

    #[test]
    fn fs_rules_confine_writes() {
        let a = tempfile::tempdir_in("/tmp").expect("tempdir a");
        let b = tempfile::tempdir_in("/tmp").expect("tempdir b");
        let c = tempfile::tempdir_in("/tmp").expect("tempdir c");
        let mut policy = system_read_exec();
        let text = format!(
            "[[rules]]\npath = \"{}\"\naccess = [\"read\", \"write\", \"create\", \"remove\"]\n\
             [[rules]]\npath = \"/nonexistent/skipped\"\naccess = [\"read\"]\n",
            a.path().display()
        );
        policy
            .rules
            .extend(parse_policy(&text).expect("parse").rules);
        let (a_path, b_path, c_path) = (
            a.path().to_owned(),
            b.path().to_owned(),
            c.path().to_owned(),
        );
        let d_path = b_path.join("d");
        // In a private mount namespace: B bound at C, A bound at B/d.
        // Rules tag the directory's inode, not its name: a grant follows a
        // bind mount of A anywhere, and a bind of B stays denied.
        let bind = move || {
            use nix::mount::{mount, MsFlags};
            let bind = |from: &Path, to: &Path| {
                mount(Some(from), to, None::<&str>, MsFlags::MS_BIND, None::<&str>).is_ok()
            };
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).is_ok()
                && mount(
                    None::<&str>,
                    "/",
                    None::<&str>,
                    MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                    None::<&str>,
                )
                .is_ok()
                && bind(&b_path, &c_path)
                && std::fs::create_dir(&d_path).is_ok()
                && bind(&a_path, &d_path)
        };
        let script = format!(
            r#"
            A={a}; B={b}; C={c}
            denied() {{ out=$( (eval "$1") 2>&1 ); [ $? -ne 0 ] && case "$out" in *"Permission denied"*) true;; *) false;; esac; }}
            echo ok > $A/f && [ "$(cat $A/f)" = ok ] || exit 2
            mkdir $A/d && rm -r $A/d && rm $A/f || exit 3
            denied "echo no > $B/f" || exit 4
            [ ! -e $B/f ] || exit 5
            denied "echo no > $C/g" || exit 6
            denied "mkdir $B/e" || exit 7
            echo ok > $B/d/g && [ -e $A/g ] || exit 11
            echo ok > /dev/null || exit 8
            cat /etc/passwd > /dev/null || exit 9
            denied "echo no > /etc/nucleus-landlock-test" || exit 10
            exit 0
            "#,
            a = a.path().display(),
            b = b.path().display(),
            c = c.path().display(),
        );
        assert_exit(run_confined(&policy, bind, &script), 0);
        assert!(!b.path().join("f").exists());
    }

    #[test]
    fn default_agent_policy_confines_writes() {
        let work = tempfile::tempdir_in("/var/tmp").expect("workspace");
        let other = tempfile::tempdir_in("/var/tmp").expect("other");
        let policy = default_agent_policy(&[work.path().to_owned()]);
        let script = format!(
            r#"
            W={w}; O={o}
            denied() {{ out=$( (eval "$1") 2>&1 ); [ $? -ne 0 ] && case "$out" in *"Permission denied"*) true;; *) false;; esac; }}
            ls -la / > /dev/null || exit 2
            echo ok > $W/f && mv $W/f $W/g && mkdir $W/d && mv $W/g $W/d/h || exit 3
            printf '#!/bin/sh\nexit 0\n' > $W/run.sh && chmod +x $W/run.sh && $W/run.sh || exit 4
            T=$(mktemp) && echo ok > $T && rm $T || exit 5
            cat /proc/self/status > /dev/null || exit 6
            denied "echo no > $O/f" || exit 7
            denied "cat /var/lib/dpkg/status" || exit 8
            exit 0
            "#,
            w = work.path().display(),
            o = other.path().display(),
        );
        assert_exit(run_confined(&policy, || true, &script), 0);
    }

    #[test]
    fn net_rule_allows_one_port() {
        let allowed = TcpListener::bind("127.0.0.1:0").expect("listen");
        let other = TcpListener::bind("127.0.0.1:0").expect("listen");
        let p = allowed.local_addr().expect("addr").port();
        let q = other.local_addr().expect("addr").port();
        let mut policy = system_read_exec();
        policy.net = parse_policy(&format!("[[net]]\nport = {p}\naccess = [\"connect\"]\n"))
            .expect("parse")
            .net;
        let script = format!(
            r#"exec python3 -c '
import socket, sys
s = socket.socket(); s.connect(("127.0.0.1", {p}))
t = socket.socket()
try:
    t.connect(("127.0.0.1", {q}))
except OSError as e:
    sys.exit(0 if e.errno == 13 else 3)
sys.exit(4)
'"#
        );
        assert_exit(run_confined(&policy, || true, &script), 0);
    }
}
