//! The string forms of `SandboxSpec` values (`512m`, `SRC:DEST:ro`,
//! `nofile=512:1024`, ...), shared by every front end. Each parser refuses
//! a value with a [`SandboxError::InvalidValue`] naming the field and the
//! value as given.

use crate::error::{Field, Result, SandboxError};
use crate::spec::{ContextMode, IoKind, IoLimit, IoRate, Network, Secret, Tmpfs, Ulimit, Volume};
use std::path::{Path, PathBuf};

/// Where a secret lands when no destination is given.
pub const SECRETS_DIR: &str = "/run/secrets";

/// Bytes: a number with an optional k, m, g or t suffix (powers of 1024,
/// an optional trailing `b`).
pub fn parse_size(s: &str) -> Option<i64> {
    let lower = s.trim().to_ascii_lowercase();
    let t = lower.strip_suffix('b').unwrap_or(&lower);
    let (num, mult) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1i64 << 10),
        'm' => (&t[..t.len() - 1], 1 << 20),
        'g' => (&t[..t.len() - 1], 1 << 30),
        't' => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    num.parse::<i64>().ok()?.checked_mul(mult)
}

/// `resources.memory`: a size of at least 1m.
pub fn memory(s: &str) -> Result<i64> {
    parse_size(s).filter(|b| *b >= 1 << 20).ok_or_else(|| {
        SandboxError::invalid(
            Field::Memory,
            s,
            "expected a size of at least 1m (e.g. 512m, 2g)",
        )
    })
}

/// `resources.memory_swap`: a size, or -1 for unlimited.
pub fn memory_swap(s: &str) -> Result<i64> {
    if s == "-1" {
        return Ok(-1);
    }
    parse_size(s)
        .filter(|b| *b > 0)
        .ok_or_else(|| SandboxError::invalid(Field::MemorySwap, s, "expected a size or -1"))
}

/// `resources.cpus`: 0.01 to 1024.
pub fn cpus(s: &str) -> Result<f64> {
    s.parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n >= 0.01 && *n <= 1024.0)
        .ok_or_else(|| {
            SandboxError::invalid(Field::Cpus, s, "expected a number of CPUs, e.g. 0.5 or 2")
        })
}

/// `resources.cpu_weight`: 1 to 10000.
pub fn cpu_weight(s: &str) -> Result<u64> {
    s.parse()
        .ok()
        .filter(|n| (1..=10_000).contains(n))
        .ok_or_else(|| SandboxError::invalid(Field::CpuWeight, s, "expected 1 to 10000"))
}

/// `resources.pids`: a positive number, or -1/0/max/unlimited (returned as -1).
pub fn pids(s: &str) -> Result<i64> {
    match s {
        "-1" | "0" | "max" | "unlimited" => Ok(-1),
        _ => s.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
            SandboxError::invalid(Field::Pids, s, "expected a positive number or -1")
        }),
    }
}

/// `DEVICE:KIND=RATE[,KIND=RATE]` with KIND rbps, wbps, riops or wiops.
/// The device is looked up when the spec is compiled.
pub fn io_limit(s: &str) -> Result<IoLimit> {
    let bad = |why: &str| SandboxError::invalid(Field::IoLimit, s, why);
    let (dev, limits) = s
        .rsplit_once(':')
        .ok_or_else(|| bad("expected DEVICE:KIND=RATE[,KIND=RATE]"))?;
    let mut rates = Vec::new();
    for kv in limits.split(',') {
        let (kind, rate) = kv
            .split_once('=')
            .ok_or_else(|| bad("expected KIND=RATE"))?;
        let kind = match kind {
            "rbps" => IoKind::Rbps,
            "wbps" => IoKind::Wbps,
            "riops" => IoKind::Riops,
            "wiops" => IoKind::Wiops,
            _ => return Err(bad("KIND must be rbps, wbps, riops or wiops")),
        };
        let rate = parse_size(rate)
            .filter(|r| *r > 0)
            .ok_or_else(|| bad("RATE must be a positive number (bps may have k, m or g)"))?;
        rates.push(IoRate { kind, rate });
    }
    Ok(IoLimit {
        device: dev.to_string(),
        rates,
    })
}

/// The rlimits a ulimit may name.
const ULIMITS: &[&str] = &[
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// `NAME=SOFT[:HARD]`; `-1` or `unlimited` for no limit.
pub fn ulimit(u: &str) -> Result<Ulimit> {
    let bad = |why: &str| SandboxError::invalid(Field::Ulimit, u, why);
    let (name, values) = u
        .split_once('=')
        .ok_or_else(|| bad("expected NAME=SOFT[:HARD]"))?;
    let name = name.to_ascii_lowercase();
    if !ULIMITS.contains(&name.as_str()) {
        return Err(bad(&format!("unknown limit `{name}`")));
    }
    let num = |s: &str| -> Result<u64> {
        match s {
            "-1" | "unlimited" => Ok(u64::MAX),
            _ => s
                .parse()
                .map_err(|_| bad("limits are numbers or `unlimited`")),
        }
    };
    let (soft, hard) = match values.split_once(':') {
        Some((s, h)) => (num(s)?, num(h)?),
        None => (num(values)?, num(values)?),
    };
    if soft > hard {
        return Err(bad("the soft limit is above the hard limit"));
    }
    Ok(Ulimit { name, soft, hard })
}

/// Seconds, a positive number.
pub fn timeout(t: &str) -> Result<f64> {
    t.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e9)
        .ok_or_else(|| {
            SandboxError::invalid(Field::Timeout, t, "expected a positive number of seconds")
        })
}

/// An absolute container path other than `/`.
pub(crate) fn check_destination(field: Field, value: &str, dest: &str, what: &str) -> Result<()> {
    if !dest.starts_with('/') || dest == "/" {
        return Err(SandboxError::invalid(
            field,
            value,
            format!("{what} must be an absolute path other than /"),
        ));
    }
    Ok(())
}

/// `SRC:DEST[:ro|rw]`; SRC must be an absolute host path.
pub fn volume(v: &str) -> Result<Volume> {
    let parts: Vec<&str> = v.split(':').collect();
    let (src, dest, mode) = match parts.as_slice() {
        [s, d] => (*s, *d, "rw"),
        [s, d, m] => (*s, *d, *m),
        _ => {
            return Err(SandboxError::invalid(
                Field::Volume,
                v,
                "expected SRC:DEST[:ro|rw]",
            ))
        }
    };
    if !src.starts_with('/') {
        return Err(SandboxError::invalid(
            Field::Volume,
            v,
            "SRC must be an absolute host path (named volumes are not supported)",
        ));
    }
    check_destination(Field::Volume, v, dest, "DEST")?;
    let read_only = match mode {
        "rw" => false,
        "ro" => true,
        _ => {
            return Err(SandboxError::invalid(
                Field::Volume,
                v,
                "the mode must be ro or rw",
            ))
        }
    };
    Ok(Volume {
        source: PathBuf::from(src),
        destination: dest.to_string(),
        read_only,
    })
}

/// `DEST[:SIZE]`.
pub fn tmpfs(t: &str) -> Result<Tmpfs> {
    let (dest, size) = match t.split_once(':') {
        Some((d, s)) => (d, Some(s)),
        None => (t, None),
    };
    check_destination(Field::Tmpfs, t, dest, "DEST")?;
    let size = match size {
        Some(s) => Some(parse_size(s).filter(|b| *b > 0).ok_or_else(|| {
            SandboxError::invalid(
                Field::Tmpfs,
                t,
                "SIZE must be bytes or a number with k, m or g",
            )
        })?),
        None => None,
    };
    Ok(Tmpfs {
        destination: dest.to_string(),
        size,
    })
}

/// `SRC[:DEST]`; a relative or missing DEST lands in `/run/secrets`.
pub fn secret(s: &str) -> Result<Secret> {
    let (src, dest) = match s.split_once(':') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    if src.is_empty() {
        return Err(SandboxError::invalid(
            Field::Secret,
            s,
            "expected SRC[:DEST]",
        ));
    }
    let source = PathBuf::from(src);
    let destination = match dest {
        Some(d) if d.starts_with('/') => d.to_string(),
        Some(d) if !d.is_empty() && !d.contains("..") => format!("{SECRETS_DIR}/{d}"),
        Some(d) => {
            return Err(SandboxError::invalid(
                Field::Secret,
                s,
                format!("bad destination `{d}`"),
            ))
        }
        None => {
            let name = source
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| SandboxError::invalid(Field::Secret, s, "SRC has no file name"))?;
            format!("{SECRETS_DIR}/{name}")
        }
    };
    if destination.split('/').any(|c| c == "..") || destination == "/" {
        return Err(SandboxError::invalid(
            Field::Secret,
            s,
            "DEST must not contain `..`",
        ));
    }
    Ok(Secret {
        source,
        destination,
    })
}

/// `copy` or `bind`.
pub fn context_mode(m: &str) -> Result<ContextMode> {
    match m {
        "copy" => Ok(ContextMode::Copy),
        "bind" => Ok(ContextMode::Bind),
        other => Err(SandboxError::invalid(
            Field::ContextMode,
            other,
            "expected copy or bind",
        )),
    }
}

/// `none` or `host`.
/// `--runtime native|gvisor`, with the gVisor options.
pub fn runtime(
    name: &str,
    platform: Option<&str>,
    runsc: Option<&std::path::Path>,
) -> Result<crate::spec::Runtime> {
    use crate::spec::Runtime;
    match name {
        "native" => {
            if let Some(r) = runsc {
                return Err(SandboxError::invalid(
                    Field::Runtime,
                    "native",
                    format!("--gvisor-runsc `{}` needs --runtime gvisor", r.display()),
                ));
            }
            if let Some(p) = platform {
                return Err(SandboxError::invalid(
                    Field::GvisorPlatform,
                    p,
                    "only with --runtime gvisor",
                ));
            }
            Ok(Runtime::Native)
        }
        "gvisor" => {
            if let Some(p) = platform.filter(|p| !matches!(*p, "systrap" | "ptrace" | "kvm")) {
                return Err(SandboxError::invalid(
                    Field::GvisorPlatform,
                    p,
                    "expected systrap, ptrace or kvm",
                ));
            }
            Ok(Runtime::Gvisor {
                platform: platform.map(str::to_string),
                runsc: runsc.map(std::path::Path::to_path_buf),
            })
        }
        other => Err(SandboxError::invalid(
            Field::Runtime,
            other,
            "expected native or gvisor",
        )),
    }
}

/// `--cgroup-parent`: a cgroup path (no `..`, no NUL) or `NAME.slice`.
pub fn cgroup_parent(p: &str) -> Result<String> {
    let bad = |reason: &str| Err(SandboxError::invalid(Field::CgroupParent, p, reason));
    if p.trim_matches('/').is_empty() {
        return bad("expected a cgroup path (/ABS/PATH or REL/PATH) or NAME.slice");
    }
    if p.contains('\0') {
        return bad("contains a NUL byte");
    }
    if p.split('/').any(|c| c == "..") {
        return bad("`..` is not allowed");
    }
    if p.contains(':') {
        return bad("`:` is not allowed (give a path or NAME.slice)");
    }
    Ok(p.to_string())
}

/// `linux.cgroupsPath` for container `id` below `parent`: a systemd slice
/// becomes `SLICE:nucleus:ID` (the engine's `<slices>/nucleus-ID.scope`).
pub fn cgroups_path(parent: Option<&str>, id: &str) -> String {
    match parent {
        None => format!("nucleus-{id}"),
        Some(s) if s.ends_with(".slice") && !s.contains('/') => format!("{s}:nucleus:{id}"),
        Some(p) if p.trim_start_matches('/').is_empty() => format!("/nucleus-{id}"),
        Some(p) => format!("{}/nucleus-{id}", p.trim_end_matches('/')),
    }
}

pub fn network(n: &str) -> Result<Network> {
    match n {
        "none" => Ok(Network::None),
        "host" => Ok(Network::Host),
        "pasta" => Ok(Network::Pasta),
        "slirp4netns" => Ok(Network::Slirp4netns),
        other if other.starts_with("container:") => match &other["container:".len()..] {
            "" => Err(SandboxError::invalid(
                Field::Network,
                other,
                "expected container:NAME (a running container's name or id)",
            )),
            name => Ok(Network::Container(name.to_string())),
        },
        "" => Err(SandboxError::invalid(
            Field::Network,
            "",
            "expected none, host, bridge, pasta, slirp4netns or a network's name",
        )),
        other => Ok(Network::Attached(other.to_string())),
    }
}

/// `--userns`: `host`, `auto`, `keep-id` or `nomap`. Rootless, `host` and
/// `auto` (and no flag) are the private namespace (container root is the
/// caller), as podman's rootless `host` is; as root, `auto` maps only the
/// root user's subordinate range and `keep-id`/`nomap` are refused.
pub fn userns_mode(v: Option<&str>, rootless: bool) -> Result<crate::userns::UsernsMode> {
    use crate::userns::UsernsMode;
    match (v.unwrap_or("host"), rootless) {
        ("host" | "auto" | "", true) => Ok(UsernsMode::Private),
        ("keep-id", true) => Ok(UsernsMode::KeepId),
        ("nomap", true) => Ok(UsernsMode::NoMap),
        ("host" | "", false) => Ok(UsernsMode::Host),
        ("auto", false) => Ok(UsernsMode::NoMap),
        (m @ ("keep-id" | "nomap"), false) => Err(SandboxError::invalid(
            Field::Userns,
            m,
            "only rootless (run as an ordinary user, or with --rootless)",
        )),
        (other, _) => Err(SandboxError::invalid(
            Field::Userns,
            other,
            "expected host, auto, keep-id or nomap",
        )),
    }
}

/// `--uidmap`/`--gidmap CONTAINER:HOST:SIZE`.
pub fn id_map(field: Field, v: &str) -> Result<crate::userns::IdMap> {
    let parts: Vec<&str> = v.split(':').collect();
    let nums: Vec<u32> = parts.iter().filter_map(|p| p.parse().ok()).collect();
    match nums[..] {
        [container, host, size] if parts.len() == 3 && size > 0 => {
            if u64::from(container) + u64::from(size) > 1 << 32
                || u64::from(host) + u64::from(size) > 1 << 32
            {
                return Err(SandboxError::invalid(field, v, "the range goes past 2^32"));
            }
            Ok(crate::userns::IdMap {
                container,
                host,
                size,
            })
        }
        _ => Err(SandboxError::invalid(
            field,
            v,
            "expected CONTAINER:HOST:SIZE (numbers, SIZE at least 1)",
        )),
    }
}

/// Every capability this runtime knows, for `ALL`.
pub const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// A capability name (with or without `CAP_`, any case) or `ALL` → full names.
pub fn cap_names(field: Field, value: &str) -> Result<Vec<String>> {
    let upper = value.to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(ALL_CAPS.iter().map(|c| c.to_string()).collect());
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if ALL_CAPS.contains(&full.as_str()) {
        Ok(vec![full])
    } else {
        Err(SandboxError::invalid(field, value, "unknown capability"))
    }
}

/// A `KEY=VALUE` entry (or a `KEY` to look up) must have a key and no NUL.
pub(crate) fn check_env(field: Field, e: &str) -> Result<()> {
    let key = e.split_once('=').map(|(k, _)| k).unwrap_or(e);
    if key.is_empty() || key.contains('\0') || e.contains('\0') {
        return Err(SandboxError::invalid(field, e, "expected KEY=VALUE"));
    }
    Ok(())
}

/// `KEY=VALUE`, or `KEY` alone for the caller's value of it (`None` when unset).
pub fn env_entry(
    field: Field,
    e: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>> {
    check_env(field, e)?;
    if e.contains('=') {
        return Ok(Some(e.to_string()));
    }
    Ok(lookup(e).map(|v| format!("{e}={v}")))
}

/// The entries of an env file (`KEY=VALUE` lines; blank lines and `#` comments skipped).
pub fn env_file(
    path: &Path,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let field = Field::EnvFile {
            path: path.to_path_buf(),
            line: Some(n + 1),
        };
        if let Some(kv) = env_entry(field, line, lookup)? {
            out.push(kv);
        }
    }
    Ok(out)
}

/// Reads an env file and parses it.
pub fn read_env_file(path: &Path, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        SandboxError::invalid(
            Field::EnvFile {
                path: path.to_path_buf(),
                line: None,
            },
            path.display().to_string(),
            e.to_string(),
        )
    })?;
    env_file(path, &text, lookup)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_parents() {
        assert_eq!(cgroups_path(None, "c1"), "nucleus-c1");
        assert_eq!(cgroups_path(Some("/a/b/"), "c1"), "/a/b/nucleus-c1");
        assert_eq!(cgroups_path(Some("rel"), "c1"), "rel/nucleus-c1");
        assert_eq!(
            cgroups_path(Some("user.slice"), "c1"),
            "user.slice:nucleus:c1"
        );
        for bad in ["", "/", "a/../b", "..", "a:b:c", "a\0b"] {
            let e = cgroup_parent(bad).unwrap_err();
            assert!(matches!(
                e,
                SandboxError::InvalidValue {
                    field: Field::CgroupParent,
                    ..
                }
            ));
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("1k"), Some(1024));
        assert_eq!(parse_size("32M"), Some(32 << 20));
        assert_eq!(parse_size("2gb"), Some(2 << 30));
        assert_eq!(parse_size("1.5g"), None);
        assert_eq!(parse_size("m"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn values_parse() {
        assert_eq!(
            volume("/h:/v:ro").unwrap(),
            Volume {
                source: "/h".into(),
                destination: "/v".into(),
                read_only: true
            }
        );
        assert_eq!(
            tmpfs("/t:64m").unwrap(),
            Tmpfs {
                destination: "/t".into(),
                size: Some(64 << 20)
            }
        );
        assert_eq!(secret("/s/k:api").unwrap().destination, "/run/secrets/api");
        assert_eq!(
            secret("/s/token").unwrap().destination,
            "/run/secrets/token"
        );
        assert_eq!(
            ulimit("NOFILE=512:1024").unwrap(),
            Ulimit {
                name: "nofile".into(),
                soft: 512,
                hard: 1024
            }
        );
        assert_eq!(ulimit("core=unlimited").unwrap().hard, u64::MAX);
        assert_eq!(pids("max").unwrap(), -1);
        assert_eq!(
            io_limit("/dev/sda:rbps=1m,wiops=100").unwrap().to_string(),
            "/dev/sda:rbps=1048576,wiops=100"
        );
        assert_eq!(
            cap_names(Field::CapAdd, "net_bind_service").unwrap(),
            ["CAP_NET_BIND_SERVICE"]
        );
        assert_eq!(
            cap_names(Field::CapAdd, "all").unwrap().len(),
            ALL_CAPS.len()
        );
        let lookup = |k: &str| (k == "H").then(|| "v".to_string());
        assert_eq!(
            env_file(Path::new("/e"), "# c\nA=1\n\nH\nU\n", &lookup).unwrap(),
            ["A=1", "H=v"]
        );
    }

    #[test]
    fn bad_values_name_the_field_and_value() {
        let lookup = |_: &str| None;
        let cases: Vec<(SandboxError, Field, &str)> = vec![
            (memory("lots").unwrap_err(), Field::Memory, "lots"),
            (memory("512k").unwrap_err(), Field::Memory, "512k"),
            (memory_swap("1x").unwrap_err(), Field::MemorySwap, "1x"),
            (cpus("-1").unwrap_err(), Field::Cpus, "-1"),
            (cpu_weight("0").unwrap_err(), Field::CpuWeight, "0"),
            (pids("-5").unwrap_err(), Field::Pids, "-5"),
            (timeout("0").unwrap_err(), Field::Timeout, "0"),
            (ulimit("nofile").unwrap_err(), Field::Ulimit, "nofile"),
            (ulimit("bogus=1").unwrap_err(), Field::Ulimit, "bogus=1"),
            (
                ulimit("nofile=2:1").unwrap_err(),
                Field::Ulimit,
                "nofile=2:1",
            ),
            (
                io_limit("/dev/sda:xbps=1").unwrap_err(),
                Field::IoLimit,
                "/dev/sda:xbps=1",
            ),
            (volume("rel:/x").unwrap_err(), Field::Volume, "rel:/x"),
            (volume("/a:/b:rx").unwrap_err(), Field::Volume, "/a:/b:rx"),
            (volume("/a:/").unwrap_err(), Field::Volume, "/a:/"),
            (tmpfs("/t:big").unwrap_err(), Field::Tmpfs, "/t:big"),
            (secret("/s:../x").unwrap_err(), Field::Secret, "/s:../x"),
            (
                context_mode("move").unwrap_err(),
                Field::ContextMode,
                "move",
            ),
            (network("").unwrap_err(), Field::Network, ""),
            (
                cap_names(Field::CapDrop, "fly").unwrap_err(),
                Field::CapDrop,
                "fly",
            ),
            (
                env_entry(Field::Env, "=x", &lookup).unwrap_err(),
                Field::Env,
                "=x",
            ),
            (
                env_file(Path::new("/e"), "A=1\n=x\n", &lookup).unwrap_err(),
                Field::EnvFile {
                    path: "/e".into(),
                    line: Some(2),
                },
                "=x",
            ),
        ];
        for (e, field, value) in cases {
            match &e {
                SandboxError::InvalidValue {
                    field: f, value: v, ..
                } => assert_eq!((f, v.as_str()), (&field, value)),
                other => panic!("{other}"),
            }
            assert!(!e.to_string().contains('\n'));
        }
    }
}
