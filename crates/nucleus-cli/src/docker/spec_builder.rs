//! `nucleus run` flags → an OCI spec plus the few files the bundle needs.
//! Pure: everything read from the host (the system layout, passwd and group,
//! env files, policy files, device numbers) comes in through `Inputs`, so
//! the translation is table-tested below without root.
//!
//! Every refused value is a `FlagError` naming the flag and the value.

use super::agent_root::{self, HostLayout, Symlink, MASKED_PATHS, READONLY_PATHS};
use super::run_flags::RunFlags;
use nucleus_engine::security::landlock::{self as ll, FsAccess, FsRule};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Docker's exit code for a failure of the runtime itself (bad flags included).
pub const RUNTIME_ERROR_CODE: i32 = 125;

/// Annotation that turns unenforceable protections into warnings.
pub const DEGRADED_ANNOTATION: &str = "org.nucleus.allow-degraded-security";

/// `PATH` inside the container.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Default `pids.max` (PRODUCT.md: agent mode's default cgroup limits).
const DEFAULT_PIDS: i64 = 1024;

/// Where `--secret SRC` lands when no destination is given.
const SECRETS_DIR: &str = "/run/secrets";

/// A flag value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagError {
    pub flag: String,
    pub value: String,
    pub reason: String,
}

impl FlagError {
    pub fn new(flag: &str, value: impl Into<String>, reason: impl Into<String>) -> Self {
        FlagError {
            flag: flag.to_string(),
            value: value.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for FlagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: invalid value `{}`: {}",
            self.flag, self.value, self.reason
        )
    }
}

impl std::error::Error for FlagError {}

type Result<T> = std::result::Result<T, FlagError>;

/// Policy files, already read (and checked against their pins) by the caller.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    /// `linux.seccomp` to use; `None` means the agent default.
    pub seccomp: Option<Value>,
    /// `process.capabilities` from `--caps-policy`.
    pub caps: Option<Value>,
    /// Landlock policy TOML from `--landlock-policy`.
    pub landlock: Option<String>,
}

/// Everything the translation reads besides the flags.
pub struct Inputs<'a> {
    pub id: &'a str,
    /// Agent mode's host layout (unused with `--rootfs`).
    pub host: &'a HostLayout,
    /// `/etc/passwd` and `/etc/group` of the host (agent mode) or the rootfs.
    pub passwd: &'a str,
    pub group: &'a str,
    /// `--env-file` contents, in flag order.
    pub env_files: &'a [(PathBuf, String)],
    /// The host's environment, for `-e KEY` without a value.
    pub host_env: &'a dyn Fn(&str) -> Option<String>,
    /// The host's resolv.conf (copied for `--network host`).
    pub host_resolv: &'a str,
    /// Block device path → (major, minor), for `--io-limit`.
    pub device: &'a dyn Fn(&str) -> Option<(i64, i64)>,
    /// `linux.seccomp` of agent mode, used unless `--seccomp-profile` is given.
    pub default_seccomp: &'a Value,
    pub policies: &'a Policies,
}

/// How `--context` gets into the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextMode {
    Copy,
    Bind,
}

/// The bundle to write: the spec, plus what `bundle` must make on disk.
#[derive(Debug, Clone)]
pub struct Plan {
    pub spec: Value,
    /// Agent mode: the rootfs is `<bundle>/rootfs`, made by us.
    pub generated_root: bool,
    /// Files to write, relative to the bundle: (path, contents).
    pub files: Vec<(String, String)>,
    /// Symlinks to create, relative to the bundle's rootfs.
    pub symlinks: Vec<Symlink>,
    /// Empty directories to create, relative to the bundle's rootfs.
    pub dirs: Vec<String>,
    /// `--secret`: (host file, container path).
    pub secrets: Vec<(PathBuf, String)>,
    pub context: Option<(PathBuf, ContextMode)>,
    pub uid: u32,
    pub gid: u32,
    pub timeout: Option<Duration>,
}

/// Translates the flags. The caller adds the context and secret mounts
/// (whose sources exist only once the bundle is written).
pub fn build(f: &RunFlags, inp: &Inputs<'_>) -> Result<Plan> {
    let agent = f.rootfs.is_none();
    if let Some(name) = &f.name {
        nucleus_engine::state::validate_id(name)
            .map_err(|e| FlagError::new("--name", name, reason_of(&e.to_string())))?;
    }
    if f.detach && f.tty {
        return Err(FlagError::new(
            "-t/--tty",
            "true",
            "a terminal is not supported with -d",
        ));
    }
    if f.detach && f.keep {
        return Err(FlagError::new(
            "--keep",
            "true",
            "detached containers are kept until `rm` anyway",
        ));
    }
    let args = command(f)?;
    let hostname = match &f.hostname {
        Some(h) => {
            if h.is_empty()
                || h.len() > 64
                || !h
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                return Err(FlagError::new(
                    "--hostname",
                    h,
                    "expected letters, digits, `-` and `.`, at most 64",
                ));
            }
            h.clone()
        }
        None => inp.id.chars().take(12).collect(),
    };
    let user = resolve_user(f, inp)?;
    let cwd = match &f.workdir {
        Some(w) if !w.starts_with('/') => {
            return Err(FlagError::new(
                "-w/--workdir",
                w,
                "must be an absolute path",
            ))
        }
        Some(w) => w.clone(),
        None => "/".to_string(),
    };
    let host_network = match f.network.as_deref().unwrap_or("none") {
        "none" => false,
        "host" if f.allow_host_network => true,
        "host" => {
            return Err(FlagError::new(
                "--network",
                "host",
                "host networking needs --allow-host-network",
            ))
        }
        "bridge" => {
            return Err(FlagError::new(
                "--network",
                "bridge",
                "not supported yet (none or host)",
            ))
        }
        other => return Err(FlagError::new("--network", other, "expected none or host")),
    };
    let context = match (&f.context, f.context_mode.as_deref()) {
        (None, Some(m)) => return Err(FlagError::new("--context-mode", m, "needs --context")),
        (None, None) => None,
        (Some(dir), mode) => {
            let mode = match mode.unwrap_or("copy") {
                "copy" => ContextMode::Copy,
                "bind" => ContextMode::Bind,
                other => {
                    return Err(FlagError::new(
                        "--context-mode",
                        other,
                        "expected copy or bind",
                    ))
                }
            };
            Some((dir.clone(), mode))
        }
    };

    let env = environment(f, inp, &hostname, &user)?;
    let mut mounts = agent_root::base_mounts(agent || f.read_only);
    let mut symlinks = Vec::new();
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    // Generated /etc files live in the bundle and are bound read-only over
    // the root, which in agent mode is a shared skeleton (see bundle.rs).
    let resolv = if host_network {
        inp.host_resolv.to_string()
    } else {
        String::new()
    };
    files.push(("etc/hosts".to_string(), agent_root::hosts_file(&hostname)));
    files.push(("etc/hostname".to_string(), format!("{hostname}\n")));
    files.push(("etc/resolv.conf".to_string(), resolv));
    let mut generated = vec!["hosts", "hostname", "resolv.conf"];
    if agent {
        let (sys, links) = agent_root::system_mounts(inp.host);
        mounts.extend(sys);
        symlinks = links;
        files.push(("etc/passwd".into(), user.passwd.clone()));
        files.push(("etc/group".into(), user.group.clone()));
        generated.extend(["passwd", "group"]);
        dirs.push("root".to_string());
        dirs.push("etc".to_string());
    }
    // A given rootfs keeps its own passwd; only the network files are ours.
    for name in generated {
        mounts.push(json!({"destination": format!("/etc/{name}"), "type": "bind", "source": format!("etc/{name}"), "options": ["rbind", "ro", "nosuid", "nodev"]}));
    }

    let mut writable: Vec<PathBuf> = Vec::new();
    let mut readable: Vec<PathBuf> = Vec::new();
    for v in &f.volume {
        let (m, rw) = volume(v)?;
        let dest = PathBuf::from(m["destination"].as_str().unwrap_or("/"));
        if rw {
            writable.push(dest)
        } else {
            readable.push(dest)
        }
        mounts.push(m);
    }
    for t in &f.tmpfs {
        let m = tmpfs(t)?;
        writable.push(PathBuf::from(m["destination"].as_str().unwrap_or("/")));
        mounts.push(m);
    }
    match &context {
        Some((_, ContextMode::Copy)) => writable.push("/context".into()),
        Some((_, ContextMode::Bind)) => readable.push("/context".into()),
        None => {}
    }
    let secrets = f
        .secret
        .iter()
        .map(|s| secret(s))
        .collect::<Result<Vec<_>>>()?;
    for (_, dest) in &secrets {
        if !dest.starts_with("/run/") && !dest.starts_with("/tmp/") {
            readable.push(dest.into());
        }
    }
    let mut annotations = serde_json::Map::new();
    if let Some(name) = &f.name {
        annotations.insert(nucleus_engine::state::NAME_ANNOTATION.into(), json!(name));
    }
    if f.allow_degraded_security {
        annotations.insert(DEGRADED_ANNOTATION.into(), json!("true"));
    }
    if let Some(text) = landlock_text(f, inp, agent, &writable, &readable)? {
        annotations.insert(ll::ANNOTATION.into(), json!(text));
    }

    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "mount"}),
        json!({"type": "uts"}),
        json!({"type": "ipc"}),
        json!({"type": "cgroup"}),
    ];
    if !host_network {
        namespaces.push(json!({"type": "network"}));
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "resources": resources(f, inp)?,
        "maskedPaths": MASKED_PATHS,
        "readonlyPaths": READONLY_PATHS,
    });
    // Assigned, not inside json!: the macro would re-serialize the whole
    // profile (hundreds of rules) into a new Value, on the start path.
    linux["seccomp"] = inp
        .policies
        .seccomp
        .clone()
        .unwrap_or_else(|| inp.default_seccomp.clone());
    if host_network {
        // The host's /sys belongs to the host's network namespace: not ours to mount.
        mounts.retain(|m| m["destination"] != "/sys");
        linux["maskedPaths"] = json!(MASKED_PATHS
            .iter()
            .filter(|p| !p.starts_with("/sys"))
            .collect::<Vec<_>>());
    }
    let mut process = json!({
        "terminal": f.tty,
        "user": { "uid": user.uid, "gid": user.gid },
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": capabilities(f, inp)?,
        "noNewPrivileges": true,
    });
    if !user.additional.is_empty() {
        process["user"]["additionalGids"] = json!(user.additional);
    }
    let rlimits = f
        .ulimit
        .iter()
        .map(|u| ulimit(u))
        .collect::<Result<Vec<_>>>()?;
    if !rlimits.is_empty() {
        process["rlimits"] = json!(rlimits);
    }
    let root = match &f.rootfs {
        None => json!({"path": "rootfs", "readonly": true}),
        Some(dir) => json!({"path": dir, "readonly": f.read_only}),
    };
    let mut spec = json!({
        "ociVersion": nucleus_engine::spec::OCI_VERSION,
        "root": root,
        "hostname": hostname,
    });
    spec["process"] = process;
    spec["mounts"] = Value::Array(mounts);
    spec["linux"] = linux;
    spec["annotations"] = Value::Object(annotations);
    Ok(Plan {
        spec,
        generated_root: agent,
        files,
        symlinks,
        dirs,
        secrets,
        context,
        uid: user.uid,
        gid: user.gid,
        timeout: f.timeout.as_deref().map(timeout).transpose()?,
    })
}

/// The engine's message after "is invalid: ", for `--name`.
fn reason_of(msg: &str) -> String {
    msg.split_once(": ")
        .map(|(_, r)| r.to_string())
        .unwrap_or_else(|| msg.to_string())
}

/// `-- CMD ARGS`, or with `--rootfs` the positional words; `/bin/sh` by default.
fn command(f: &RunFlags) -> Result<Vec<String>> {
    if !f.command_follows && f.rootfs.is_none() {
        if let Some(image) = f.args.first() {
            return Err(FlagError::new(
                "IMAGE",
                image,
                "images are not supported yet; give --rootfs or put the command after `--`",
            ));
        }
    }
    if f.args.is_empty() {
        return Ok(vec!["/bin/sh".into()]);
    }
    Ok(f.args.clone())
}

/// The workload's identity and the passwd/group files that name it.
#[derive(Debug)]
struct User {
    uid: u32,
    gid: u32,
    additional: Vec<u32>,
    home: String,
    passwd: String,
    group: String,
}

/// `name:x:uid:gid:gecos:home:shell` lines → (name, uid, gid, home).
fn passwd_entries(text: &str) -> impl Iterator<Item = (&str, u32, u32, &str)> {
    text.lines().filter_map(|l| {
        let p: Vec<&str> = l.split(':').collect();
        (p.len() >= 7).then_some(())?;
        Some((p[0], p[2].parse().ok()?, p[3].parse().ok()?, p[5]))
    })
}

/// `name:x:gid:members` lines → (name, gid).
fn group_entries(text: &str) -> impl Iterator<Item = (&str, u32)> {
    text.lines().filter_map(|l| {
        let p: Vec<&str> = l.split(':').collect();
        (p.len() >= 3).then_some(())?;
        Some((p[0], p[2].parse().ok()?))
    })
}

fn resolve_group(flag: &str, g: &str, group: &str) -> Result<u32> {
    if let Ok(n) = g.parse::<u32>() {
        return Ok(n);
    }
    group_entries(group)
        .find(|(n, _)| *n == g)
        .map(|(_, id)| id)
        .ok_or_else(|| FlagError::new(flag, g, "no such group"))
}

fn resolve_user(f: &RunFlags, inp: &Inputs<'_>) -> Result<User> {
    let agent = f.rootfs.is_none();
    let (uid, gid, name, home) = match f.user.as_deref() {
        None | Some("") => (0, 0, "root".to_string(), "/root".to_string()),
        Some(spec) => {
            let (u, g) = match spec.split_once(':') {
                Some((u, g)) => (u, Some(g)),
                None => (spec, None),
            };
            let (uid, pw_gid, name, home) = if let Ok(uid) = u.parse::<u32>() {
                match passwd_entries(inp.passwd).find(|e| e.1 == uid) {
                    Some((n, _, gid, home)) => (uid, gid, n.to_string(), home.to_string()),
                    None => (
                        uid,
                        uid,
                        if uid == 0 {
                            "root".into()
                        } else {
                            format!("user{uid}")
                        },
                        "/tmp".to_string(),
                    ),
                }
            } else {
                let (_, uid, gid, home) = passwd_entries(inp.passwd)
                    .find(|e| e.0 == u)
                    .ok_or_else(|| {
                        FlagError::new("-u/--user", spec, format!("no user `{u}` in /etc/passwd"))
                    })?;
                (uid, gid, u.to_string(), home.to_string())
            };
            let gid = match g {
                Some(g) => resolve_group("-u/--user", g, inp.group)?,
                None => pw_gid,
            };
            (uid, gid, name, home)
        }
    };
    let additional = f
        .group_add
        .iter()
        .map(|g| resolve_group("--group-add", g, inp.group))
        .collect::<Result<Vec<_>>>()?;
    // Agent mode: a read-only root, so a non-root user's home is /tmp.
    let home = if agent && uid != 0 {
        "/tmp".to_string()
    } else if uid == 0 {
        "/root".to_string()
    } else {
        home
    };
    let mut passwd = String::from("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
    if uid != 0 && uid != 65534 {
        passwd.push_str(&format!("{name}:x:{uid}:{gid}::{home}:/bin/sh\n"));
    }
    let mut group = String::from("root:x:0:\ntty:x:5:\nnogroup:x:65534:\n");
    let mut listed: BTreeSet<u32> = [0, 5, 65534].into();
    for g in std::iter::once(gid).chain(additional.iter().copied()) {
        if listed.insert(g) {
            let gname = group_entries(inp.group)
                .find(|e| e.1 == g)
                .map(|e| e.0.to_string())
                .unwrap_or_else(|| format!("group{g}"));
            group.push_str(&format!("{gname}:x:{g}:\n"));
        }
    }
    Ok(User {
        uid,
        gid,
        additional,
        home,
        passwd,
        group,
    })
}

fn environment(f: &RunFlags, inp: &Inputs<'_>, hostname: &str, user: &User) -> Result<Vec<String>> {
    let mut env: Vec<String> = vec![
        DEFAULT_PATH.into(),
        format!("HOSTNAME={hostname}"),
        format!("HOME={}", user.home),
    ];
    if f.tty {
        env.push("TERM=xterm".into());
    }
    let mut set = |kv: String| {
        let key = kv
            .split_once('=')
            .map(|(k, _)| k.to_string())
            .unwrap_or_default();
        env.retain(|e| e.split_once('=').map(|(k, _)| k) != Some(key.as_str()));
        env.push(kv);
    };
    for (path, text) in inp.env_files {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let flag = format!("--env-file {}:{}", path.display(), n + 1);
            if let Some(kv) = env_entry(&flag, line, inp)? {
                set(kv);
            }
        }
    }
    for e in &f.env {
        if let Some(kv) = env_entry("-e/--env", e, inp)? {
            set(kv);
        }
    }
    env.retain(|e| !e.is_empty());
    Ok(env)
}

/// `KEY=VALUE`, or `KEY` alone for the host's value (skipped when unset).
fn env_entry(flag: &str, e: &str, inp: &Inputs<'_>) -> Result<Option<String>> {
    let key = e.split_once('=').map(|(k, _)| k).unwrap_or(e);
    if key.is_empty() || key.contains('\0') || e.contains('\0') {
        return Err(FlagError::new(flag, e, "expected KEY=VALUE"));
    }
    if e.contains('=') {
        return Ok(Some(e.to_string()));
    }
    Ok((inp.host_env)(key).map(|v| format!("{key}={v}")))
}

/// `-v SRC:DEST[:ro|rw]` → (mount, writable). SRC must be an absolute host path.
fn volume(v: &str) -> Result<(Value, bool)> {
    let parts: Vec<&str> = v.split(':').collect();
    let (src, dest, mode) = match parts.as_slice() {
        [s, d] => (*s, *d, "rw"),
        [s, d, m] => (*s, *d, *m),
        _ => {
            return Err(FlagError::new(
                "-v/--volume",
                v,
                "expected SRC:DEST[:ro|rw]",
            ))
        }
    };
    if !src.starts_with('/') {
        return Err(FlagError::new(
            "-v/--volume",
            v,
            "SRC must be an absolute host path (named volumes are not supported)",
        ));
    }
    if !dest.starts_with('/') || dest == "/" {
        return Err(FlagError::new(
            "-v/--volume",
            v,
            "DEST must be an absolute path other than /",
        ));
    }
    let rw = match mode {
        "rw" => true,
        "ro" => false,
        _ => {
            return Err(FlagError::new(
                "-v/--volume",
                v,
                "the mode must be ro or rw",
            ))
        }
    };
    let mut options = vec!["rbind", "nosuid", "nodev"];
    if !rw {
        options.push("ro");
    }
    Ok((
        json!({"destination": dest, "type": "bind", "source": src, "options": options}),
        rw,
    ))
}

/// `--tmpfs DEST[:SIZE]`.
fn tmpfs(t: &str) -> Result<Value> {
    let (dest, size) = match t.split_once(':') {
        Some((d, s)) => (d, Some(s)),
        None => (t, None),
    };
    if !dest.starts_with('/') || dest == "/" {
        return Err(FlagError::new(
            "--tmpfs",
            t,
            "DEST must be an absolute path other than /",
        ));
    }
    let mut options = vec![
        "nosuid".to_string(),
        "nodev".to_string(),
        "mode=1777".to_string(),
    ];
    if let Some(s) = size {
        let bytes = parse_size(s).filter(|b| *b > 0).ok_or_else(|| {
            FlagError::new(
                "--tmpfs",
                t,
                "SIZE must be bytes or a number with k, m or g",
            )
        })?;
        options.push(format!("size={bytes}"));
    }
    Ok(json!({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": options}))
}

/// `--secret SRC[:DEST]`; a relative or missing DEST lands in /run/secrets.
fn secret(s: &str) -> Result<(PathBuf, String)> {
    let (src, dest) = match s.split_once(':') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    if src.is_empty() {
        return Err(FlagError::new("--secret", s, "expected SRC[:DEST]"));
    }
    let src = PathBuf::from(src);
    let dest = match dest {
        Some(d) if d.starts_with('/') => d.to_string(),
        Some(d) if !d.is_empty() && !d.contains("..") => format!("{SECRETS_DIR}/{d}"),
        Some(d) => {
            return Err(FlagError::new(
                "--secret",
                s,
                format!("bad destination `{d}`"),
            ))
        }
        None => {
            let name = src
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| FlagError::new("--secret", s, "SRC has no file name"))?;
            format!("{SECRETS_DIR}/{name}")
        }
    };
    if dest.split('/').any(|c| c == "..") || dest == "/" {
        return Err(FlagError::new("--secret", s, "DEST must not contain `..`"));
    }
    Ok((src, dest))
}

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

fn resources(f: &RunFlags, inp: &Inputs<'_>) -> Result<Value> {
    let mut r = json!({"devices": [{"allow": false, "access": "rwm"}]});
    let pids = match f.pids.as_deref() {
        None => Some(DEFAULT_PIDS),
        Some("-1" | "0" | "max" | "unlimited") => None,
        Some(p) => Some(
            p.parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| FlagError::new("--pids", p, "expected a positive number or -1"))?,
        ),
    };
    if let Some(n) = pids {
        r["pids"] = json!({"limit": n});
    }
    let mut memory = serde_json::Map::new();
    if let Some(m) = &f.memory {
        let b = parse_size(m).filter(|b| *b >= 1 << 20).ok_or_else(|| {
            FlagError::new(
                "--memory",
                m,
                "expected a size of at least 1m (e.g. 512m, 2g)",
            )
        })?;
        memory.insert("limit".into(), json!(b));
    }
    if let Some(s) = &f.memory_swap {
        let b = if s == "-1" {
            -1
        } else {
            parse_size(s)
                .filter(|b| *b > 0)
                .ok_or_else(|| FlagError::new("--memory-swap", s, "expected a size or -1"))?
        };
        match memory.get("limit").and_then(Value::as_i64) {
            None => return Err(FlagError::new("--memory-swap", s, "needs --memory")),
            Some(limit) if b != -1 && b < limit => {
                return Err(FlagError::new(
                    "--memory-swap",
                    s,
                    "must be at least --memory (it counts memory plus swap)",
                ))
            }
            Some(_) => {}
        }
        memory.insert("swap".into(), json!(b));
    }
    if !memory.is_empty() {
        r["memory"] = Value::Object(memory);
    }
    let mut cpu = serde_json::Map::new();
    if let Some(c) = &f.cpus {
        let n: f64 = c
            .parse()
            .ok()
            .filter(|n: &f64| n.is_finite() && *n >= 0.01 && *n <= 1024.0)
            .ok_or_else(|| {
                FlagError::new("--cpus", c, "expected a number of CPUs, e.g. 0.5 or 2")
            })?;
        let period = 100_000u64;
        cpu.insert("period".into(), json!(period));
        // n is in [0.01, 1024], so the quota fits easily.
        #[allow(clippy::cast_possible_truncation)]
        let quota = (n * period as f64).round() as i64;
        cpu.insert("quota".into(), json!(quota));
    }
    if let Some(w) = &f.cpu_weight {
        let weight: u64 = w
            .parse()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| FlagError::new("--cpu-weight", w, "expected 1 to 10000"))?;
        // cpu.shares that the engine's conversion (shares → weight) maps back to this weight.
        let shares = 2 + ((weight - 1) * 262_142).div_ceil(9_999);
        cpu.insert("shares".into(), json!(shares));
    }
    if !cpu.is_empty() {
        r["cpu"] = Value::Object(cpu);
    }
    let mut blkio = serde_json::Map::new();
    for spec in &f.io_limit {
        let bad = |why: &str| FlagError::new("--io-limit", spec, why.to_string());
        let (dev, limits) = spec
            .rsplit_once(':')
            .ok_or_else(|| bad("expected DEVICE:KIND=RATE[,KIND=RATE]"))?;
        let (major, minor) = match dev
            .split_once(':')
            .map(|(a, b)| (a.parse::<i64>(), b.parse::<i64>()))
        {
            Some((Ok(a), Ok(b))) => (a, b),
            _ => (inp.device)(dev)
                .ok_or_else(|| bad(&format!("`{dev}` is not a block device (or MAJOR:MINOR)")))?,
        };
        for kv in limits.split(',') {
            let (kind, rate) = kv
                .split_once('=')
                .ok_or_else(|| bad("expected KIND=RATE"))?;
            let key = match kind {
                "rbps" => "throttleReadBpsDevice",
                "wbps" => "throttleWriteBpsDevice",
                "riops" => "throttleReadIOPSDevice",
                "wiops" => "throttleWriteIOPSDevice",
                _ => return Err(bad("KIND must be rbps, wbps, riops or wiops")),
            };
            let rate = parse_size(rate)
                .filter(|r| *r > 0)
                .ok_or_else(|| bad("RATE must be a positive number (bps may have k, m or g)"))?;
            let list = blkio.entry(key).or_insert_with(|| json!([]));
            if let Some(a) = list.as_array_mut() {
                a.push(json!({"major": major, "minor": minor, "rate": rate}));
            }
        }
    }
    if !blkio.is_empty() {
        r["blockIO"] = Value::Object(blkio);
    }
    Ok(r)
}

/// `--ulimit NAME=SOFT[:HARD]` → one `process.rlimits` entry.
fn ulimit(u: &str) -> Result<Value> {
    let bad = |why: &str| FlagError::new("--ulimit", u, why.to_string());
    let (name, values) = u
        .split_once('=')
        .ok_or_else(|| bad("expected NAME=SOFT[:HARD]"))?;
    const NAMES: &[&str] = &[
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
    let name = name.to_ascii_lowercase();
    if !NAMES.contains(&name.as_str()) {
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
    Ok(json!({"type": format!("RLIMIT_{}", name.to_ascii_uppercase()), "soft": soft, "hard": hard}))
}

fn timeout(t: &str) -> Result<Duration> {
    t.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| FlagError::new("--timeout", t, "expected a positive number of seconds"))
}

/// Every capability this runtime knows, for `ALL`.
const ALL_CAPS: &[&str] = &[
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

fn cap_names(flag: &str, value: &str) -> Result<Vec<String>> {
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
        Err(FlagError::new(flag, value, "unknown capability"))
    }
}

/// All sets empty, unless a caps policy sets them; then --cap-add adds to
/// bounding/effective/permitted and --cap-drop removes from every set.
fn capabilities(f: &RunFlags, inp: &Inputs<'_>) -> Result<Value> {
    const SETS: [&str; 5] = [
        "bounding",
        "effective",
        "permitted",
        "inheritable",
        "ambient",
    ];
    let mut sets: Vec<BTreeSet<String>> = SETS
        .iter()
        .map(|s| {
            inp.policies
                .caps
                .as_ref()
                .and_then(|c| c[*s].as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect();
    for c in &f.cap_add {
        for name in cap_names("--cap-add", c)? {
            for set in sets.iter_mut().take(3) {
                set.insert(name.clone());
            }
        }
    }
    for c in &f.cap_drop {
        for name in cap_names("--cap-drop", c)? {
            for set in sets.iter_mut() {
                set.remove(&name);
            }
        }
    }
    let mut out = serde_json::Map::new();
    for (name, set) in SETS.iter().zip(sets) {
        out.insert(name.to_string(), json!(set.into_iter().collect::<Vec<_>>()));
    }
    Ok(Value::Object(out))
}

/// The Landlock policy TOML: `--landlock-policy` as given, or in agent mode
/// the default ruleset (writable volumes, tmpfs and the copied context
/// read-write; read-only volumes, a bound context and secrets outside /run
/// readable). A given `--rootfs` has no default.
fn landlock_text(
    f: &RunFlags,
    inp: &Inputs<'_>,
    agent: bool,
    writable: &[PathBuf],
    readable: &[PathBuf],
) -> Result<Option<String>> {
    if let Some(text) = &inp.policies.landlock {
        return Ok(Some(text.clone()));
    }
    if !agent {
        return Ok(None);
    }
    let mut policy = ll::default_agent_policy(writable);
    let read_exec: BTreeSet<FsAccess> =
        [FsAccess::ReadFile, FsAccess::ReadDir, FsAccess::Execute].into();
    for p in readable {
        policy.rules.push(FsRule {
            path: p.clone(),
            access: read_exec.clone(),
        });
    }
    if let Some(w) = &f.workdir {
        let w = Path::new(w);
        if !policy
            .rules
            .iter()
            .any(|r| w.starts_with(&r.path) && r.path != Path::new("/"))
        {
            policy.rules.push(FsRule {
                path: w.to_path_buf(),
                access: read_exec,
            });
        }
    }
    toml::to_string(&policy).map(Some).map_err(|e| {
        FlagError::new(
            "--landlock-policy",
            "(default)",
            format!("cannot encode the default policy: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::agent_root::HostEntry;
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        f: RunFlags,
    }

    fn flags(args: &[&str]) -> RunFlags {
        let marker = args.contains(&"--").then_some("--__command-follows");
        T::try_parse_from(
            std::iter::once("run")
                .chain(marker)
                .chain(args.iter().copied()),
        )
        .unwrap()
        .f
    }

    fn host() -> HostLayout {
        HostLayout {
            system: vec![
                ("usr".into(), HostEntry::Dir),
                ("bin".into(), HostEntry::Symlink("usr/bin".into())),
            ],
            etc: vec![("ld.so.cache".into(), HostEntry::File)],
        }
    }

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000:Alice:/home/alice:/bin/bash\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:\nalice:x:1000:\n";

    fn build_with(args: &[&str], policies: &Policies) -> Result<Plan> {
        let f = flags(args);
        let host = host();
        let env = |k: &str| (k == "FROM_HOST").then(|| "yes".to_string());
        let dev = |p: &str| (p == "/dev/sda").then_some((8, 0));
        let seccomp = json!({"defaultAction": "SCMP_ACT_ERRNO"});
        let inp = Inputs {
            id: "0123456789abcdef",
            host: &host,
            passwd: PASSWD,
            group: GROUP,
            env_files: &[(PathBuf::from("/x.env"), "# c\nA=1\n\nB=2\n".into())],
            host_env: &env,
            host_resolv: "nameserver 10.0.0.1\n",
            device: &dev,
            default_seccomp: &seccomp,
            policies,
        };
        build(&f, &inp)
    }

    fn plan(args: &[&str]) -> Plan {
        build_with(args, &Policies::default()).unwrap()
    }

    fn err(args: &[&str]) -> FlagError {
        build_with(args, &Policies::default()).unwrap_err()
    }

    fn dests(p: &Plan) -> Vec<String> {
        p.spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn agent_defaults_are_locked_down() {
        let p = plan(&["--", "/bin/true"]);
        let s = &p.spec;
        assert_eq!(s["process"]["args"], json!(["/bin/true"]));
        assert_eq!(s["root"], json!({"path": "rootfs", "readonly": true}));
        assert_eq!(s["process"]["noNewPrivileges"], json!(true));
        for set in [
            "bounding",
            "effective",
            "permitted",
            "inheritable",
            "ambient",
        ] {
            assert_eq!(s["process"]["capabilities"][set], json!([]), "{set}");
        }
        let ns: Vec<&str> = s["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["pid", "mount", "uts", "ipc", "cgroup", "network"]);
        assert_eq!(s["linux"]["resources"]["pids"]["limit"], json!(1024));
        assert_eq!(
            s["linux"]["seccomp"]["defaultAction"],
            json!("SCMP_ACT_ERRNO")
        );
        assert_eq!(s["hostname"], json!("0123456789ab"));
        let d = dests(&p);
        for want in [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/sys",
            "/tmp",
            "/run",
            "/usr",
            "/etc/ld.so.cache",
        ] {
            assert!(d.contains(&want.to_string()), "{want} in {d:?}");
        }
        assert!(!d.iter().any(|d| d.contains("shadow") || d == "/bin"));
        assert!(p.symlinks.contains(&("bin".into(), "usr/bin".into())));
        assert!(s["linux"]["maskedPaths"]
            .as_array()
            .unwrap()
            .contains(&json!("/proc/kcore")));
        let policy = ll::parse_policy(s["annotations"][ll::ANNOTATION].as_str().unwrap()).unwrap();
        assert!(policy
            .rules
            .iter()
            .any(|r| r.path == Path::new("/tmp") && r.access.contains(&FsAccess::WriteFile)));
        let files: Vec<&str> = p.files.iter().map(|(f, _)| f.as_str()).collect();
        assert!(files.contains(&"etc/passwd") && files.contains(&"etc/resolv.conf"));
        assert!(p.timeout.is_none());
    }

    #[test]
    fn no_command_means_sh_and_image_is_refused() {
        assert_eq!(plan(&[]).spec["process"]["args"], json!(["/bin/sh"]));
        let e = err(&["alpine"]);
        assert_eq!(e.flag, "IMAGE");
        assert!(e.to_string().contains("`alpine`"));
    }

    #[test]
    fn env_user_and_workdir() {
        let p = plan(&[
            "-e",
            "K=V",
            "-e",
            "FROM_HOST",
            "-e",
            "UNSET",
            "-e",
            "A=override",
            "-u",
            "alice:staff",
            "--group-add",
            "1000",
            "-w",
            "/work",
            "--",
            "id",
        ]);
        let env: Vec<&str> = p.spec["process"]["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        assert!(
            env.contains(&"K=V")
                && env.contains(&"FROM_HOST=yes")
                && env.contains(&"B=2")
                && env.contains(&"A=override"),
            "{env:?}"
        );
        assert!(!env.iter().any(|e| e.starts_with("UNSET")) && !env.contains(&"A=1"));
        assert!(env.contains(&"HOME=/tmp"));
        assert_eq!(
            p.spec["process"]["user"],
            json!({"uid": 1000, "gid": 50, "additionalGids": [1000]})
        );
        assert_eq!((p.uid, p.gid), (1000, 50));
        assert_eq!(p.spec["process"]["cwd"], json!("/work"));
        let passwd = &p
            .files
            .iter()
            .find(|(f, _)| f.ends_with("passwd"))
            .unwrap()
            .1;
        assert!(passwd.contains("alice:x:1000:50::/tmp:/bin/sh") && !passwd.contains("/bin/bash"));
        assert_eq!(err(&["-u", "mallory"]).flag, "-u/--user");
        assert_eq!(err(&["-u", "alice:nogroup2"]).value, "nogroup2");
        assert_eq!(err(&["-w", "rel"]).flag, "-w/--workdir");
    }

    #[test]
    fn volumes_tmpfs_context_and_secrets() {
        let p = plan(&[
            "-v",
            "/h:/vol",
            "-v",
            "/r:/ro:ro",
            "--tmpfs",
            "/scratch:64m",
            "--context",
            "/ctx",
            "--secret",
            "/s/token",
            "--secret",
            "/s/k:api",
            "--",
            "true",
        ]);
        let m = p.spec["mounts"].as_array().unwrap();
        let vol = m.iter().find(|m| m["destination"] == "/vol").unwrap();
        assert_eq!(vol["options"], json!(["rbind", "nosuid", "nodev"]));
        let ro = m.iter().find(|m| m["destination"] == "/ro").unwrap();
        assert!(ro["options"].as_array().unwrap().contains(&json!("ro")));
        let t = m.iter().find(|m| m["destination"] == "/scratch").unwrap();
        assert!(t["options"]
            .as_array()
            .unwrap()
            .contains(&json!("size=67108864")));
        assert_eq!(p.context, Some((PathBuf::from("/ctx"), ContextMode::Copy)));
        assert_eq!(
            p.secrets,
            vec![
                (PathBuf::from("/s/token"), "/run/secrets/token".into()),
                (PathBuf::from("/s/k"), "/run/secrets/api".into())
            ]
        );
        let policy =
            ll::parse_policy(p.spec["annotations"][ll::ANNOTATION].as_str().unwrap()).unwrap();
        let rule = |path: &str| {
            policy
                .rules
                .iter()
                .find(|r| r.path == Path::new(path))
                .cloned()
        };
        assert!(rule("/vol").unwrap().access.contains(&FsAccess::WriteFile));
        assert!(rule("/context")
            .unwrap()
            .access
            .contains(&FsAccess::WriteFile));
        assert!(!rule("/ro").unwrap().access.contains(&FsAccess::WriteFile));
        let b = plan(&["--context", "/ctx", "--context-mode", "bind"]);
        assert_eq!(b.context, Some((PathBuf::from("/ctx"), ContextMode::Bind)));
    }

    #[test]
    fn resources_translate() {
        let p = plan(&[
            "--memory",
            "32M",
            "--memory-swap",
            "64m",
            "--cpus",
            "1.5",
            "--cpu-weight",
            "100",
            "--pids",
            "50",
            "--io-limit",
            "/dev/sda:rbps=1m,wiops=100",
            "--ulimit",
            "nofile=512:1024",
            "--timeout",
            "2.5",
        ]);
        let r = &p.spec["linux"]["resources"];
        assert_eq!(r["memory"], json!({"limit": 33554432, "swap": 67108864}));
        assert_eq!(r["cpu"]["quota"], json!(150000));
        assert_eq!(r["cpu"]["period"], json!(100000));
        assert_eq!(
            r["cpu"]["shares"],
            json!(2 + (99u64 * 262_142).div_ceil(9_999))
        );
        assert_eq!(r["pids"]["limit"], json!(50));
        assert_eq!(
            r["blockIO"]["throttleReadBpsDevice"],
            json!([{"major": 8, "minor": 0, "rate": 1048576}])
        );
        assert_eq!(
            r["blockIO"]["throttleWriteIOPSDevice"],
            json!([{"major": 8, "minor": 0, "rate": 100}])
        );
        assert_eq!(
            p.spec["process"]["rlimits"],
            json!([{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024}])
        );
        assert_eq!(p.timeout, Some(Duration::from_millis(2500)));
        assert!(plan(&["--pids", "-1"]).spec["linux"]["resources"]
            .get("pids")
            .is_none());
    }

    #[test]
    fn caps_and_policies() {
        let p = plan(&[
            "--cap-add",
            "net_bind_service",
            "--cap-add",
            "CAP_CHOWN",
            "--cap-drop",
            "chown",
        ]);
        assert_eq!(
            p.spec["process"]["capabilities"]["effective"],
            json!(["CAP_NET_BIND_SERVICE"])
        );
        assert_eq!(p.spec["process"]["capabilities"]["ambient"], json!([]));
        let pol = Policies {
            seccomp: Some(json!({"defaultAction": "SCMP_ACT_ALLOW"})),
            caps: Some(
                json!({"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"], "inheritable": [], "ambient": []}),
            ),
            landlock: Some("[[rules]]\npath = \"/tmp\"\naccess = [\"read\"]\n".into()),
        };
        let p = build_with(&["--allow-degraded-security"], &pol).unwrap();
        assert_eq!(
            p.spec["linux"]["seccomp"]["defaultAction"],
            json!("SCMP_ACT_ALLOW")
        );
        assert_eq!(
            p.spec["process"]["capabilities"]["bounding"],
            json!(["CAP_KILL"])
        );
        assert!(p.spec["annotations"][ll::ANNOTATION]
            .as_str()
            .unwrap()
            .contains("/tmp"));
        assert_eq!(p.spec["annotations"][DEGRADED_ANNOTATION], json!("true"));
    }

    #[test]
    fn network_and_rootfs() {
        let h = plan(&["--network", "host", "--allow-host-network"]);
        assert!(!h.spec["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .contains(&json!({"type": "network"})));
        assert!(h
            .files
            .iter()
            .any(|(f, c)| f.ends_with("resolv.conf") && c.contains("10.0.0.1")));
        assert_eq!(err(&["--network", "host"]).flag, "--network");
        assert_eq!(err(&["--network", "bridge"]).value, "bridge");
        let r = plan(&[
            "--rootfs",
            "/images/alpine",
            "--name",
            "web",
            "sh",
            "-c",
            "echo",
        ]);
        assert_eq!(
            r.spec["root"],
            json!({"path": "/images/alpine", "readonly": false})
        );
        assert_eq!(r.spec["process"]["args"], json!(["sh", "-c", "echo"]));
        assert_eq!(
            r.spec["annotations"][nucleus_engine::state::NAME_ANNOTATION],
            json!("web")
        );
        assert!(r.spec["annotations"].get(ll::ANNOTATION).is_none());
        assert!(!r.generated_root);
        assert!(!dests(&r).contains(&"/tmp".to_string()));
        assert!(dests(&r).contains(&"/etc/hosts".to_string()));
    }

    #[test]
    fn spec_is_a_valid_oci_spec() {
        let p = plan(&["-t", "-e", "A=B", "--memory", "64m", "--", "sh"]);
        let spec: nucleus_engine::oci_spec::runtime::Spec = serde_json::from_value(p.spec).unwrap();
        nucleus_engine::spec::validate(&spec, true).unwrap();
    }

    #[test]
    fn bad_values_name_the_flag_and_value() {
        for (args, flag, value) in [
            (&["--memory", "lots"][..], "--memory", "lots"),
            (&["--memory-swap", "1g"][..], "--memory-swap", "1g"),
            (&["--cpus", "-1"][..], "--cpus", "-1"),
            (&["--cpu-weight", "0"][..], "--cpu-weight", "0"),
            (&["--pids", "x"][..], "--pids", "x"),
            (&["--timeout", "0"][..], "--timeout", "0"),
            (&["--ulimit", "nofile"][..], "--ulimit", "nofile"),
            (&["--ulimit", "bogus=1"][..], "--ulimit", "bogus=1"),
            (
                &["--io-limit", "/dev/nope:rbps=1"][..],
                "--io-limit",
                "/dev/nope:rbps=1",
            ),
            (&["-v", "rel:/x"][..], "-v/--volume", "rel:/x"),
            (&["-v", "/a:/b:rx"][..], "-v/--volume", "/a:/b:rx"),
            (&["--tmpfs", "/t:big"][..], "--tmpfs", "/t:big"),
            (&["--cap-add", "fly"][..], "--cap-add", "fly"),
            (&["--context-mode", "copy"][..], "--context-mode", "copy"),
            (&["--hostname", "a/b"][..], "--hostname", "a/b"),
            (&["--name", "a/b"][..], "--name", "a/b"),
            (&["-e", "=x"][..], "-e/--env", "=x"),
            (&["--secret", "/s:../x"][..], "--secret", "/s:../x"),
            (&["-d", "-t"][..], "-t/--tty", "true"),
        ] {
            let e = err(args);
            assert_eq!(
                (e.flag.as_str(), e.value.as_str()),
                (flag, value),
                "{args:?}"
            );
            assert!(!e.to_string().contains('\n'));
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
}
