//! Shared harness for the privileged integration tests: the runtime under test, a per-test
//! state root (`Ctx`), an OCI bundle builder with a busybox rootfs (`Bundle`), and the
//! leak checks every test ends with (`Ctx::finish`).
//!
//! The runtime is `CARGO_BIN_EXE_nucleus` unless `NUCLEUS_TEST_RUNTIME` names another one,
//! so the same tests can be checked against runc or crun. Assertions on nucleus's own error
//! wording go through `is_nucleus()`.
//!
//! Every runtime invocation writes its stdout/stderr to files, never pipes: a created or
//! detached container inherits them, and a pipe would never reach EOF while it lives.
#![allow(dead_code)]

use std::fmt;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

/// Skips the test, printing `skipped: <reason>`, unless every named requirement holds.
/// Requirements: `root`, `busybox`, `userns`.
macro_rules! require {
    ($($req:ident),+ $(,)?) => {
        for req in [$(stringify!($req)),+] {
            if let Some(reason) = common::unmet(req) {
                eprintln!("skipped: {reason}");
                return;
            }
        }
    };
}

#[macro_use]
pub mod managers;
pub mod registry;

/// Static busybox from Debian's `busybox-static`; copied into every test rootfs.
pub const BUSYBOX: &str = "/bin/busybox";

/// How long any single runtime invocation may take before the test fails.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(60);

/// Applets linked into the test rootfs.
const APPLETS: &[&str] = &[
    "sh", "cat", "ls", "echo", "hostname", "id", "sleep", "grep", "mount", "touch", "true",
    "false", "readlink", "stat", "test", "wc", "ps", "head", "env", "pwd", "mkdir", "tty",
    "printf", "dd", "cut", "tr", "rm", "kill", "stty", "sed", "umount", "ln", "chmod",
];

/// Returns why `req` is not met on this host, or `None` when it is.
pub fn unmet(req: &str) -> Option<String> {
    match req {
        "root" => {
            let euid = nix::unistd::geteuid();
            (!euid.is_root()).then(|| format!("needs root (euid is {euid})"))
        }
        "busybox" => (!Path::new(BUSYBOX).is_file())
            .then(|| format!("needs {BUSYBOX} (apt-get install busybox-static)")),
        "userns" => {
            let max = fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap_or_default();
            (max.trim().parse::<u64>().unwrap_or(0) == 0).then(|| {
                "needs user namespaces (/proc/sys/user/max_user_namespaces is 0)".to_string()
            })
        }
        other => Some(format!("unknown requirement `{other}`")),
    }
}

/// The runtime binary under test.
pub fn runtime() -> PathBuf {
    match std::env::var_os("NUCLEUS_TEST_RUNTIME") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_nucleus")),
    }
}

/// runc, for tests that run the same step under both runtimes and compare:
/// `NUCLEUS_TEST_RUNC`, else `/usr/sbin/runc` or `/usr/bin/runc` if installed.
pub fn runc() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NUCLEUS_TEST_RUNC").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    ["/usr/sbin/runc", "/usr/bin/runc"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// True when the runtime under test is nucleus (not runc/crun through `NUCLEUS_TEST_RUNTIME`).
pub fn is_nucleus() -> bool {
    runtime().file_name().is_some_and(|name| name == "nucleus")
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A container id unique across parallel tests and test binaries:
/// `nucleus-t-<pid>-<counter>`. The default cgroup is named after the id (as
/// runc's is), so the prefix keeps the host's leftover-cgroup checks working.
pub fn unique_id() -> String {
    format!(
        "nucleus-t-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The result of one runtime (or helper) invocation.
pub struct Out {
    pub cmd: String,
    /// Exit code; `None` when it was killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics with the command, exit code and both streams unless it exited 0.
    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert!(self.success(), "command failed unexpectedly\n{self}");
        self
    }

    /// Panics unless it exited non-zero (a runtime error, not a crash by signal).
    #[track_caller]
    pub fn assert_fail(&self) -> &Self {
        assert!(
            matches!(self.code, Some(c) if c != 0),
            "command should have failed with a non-zero exit\n{self}"
        );
        self
    }

    /// stdout with surrounding whitespace removed.
    pub fn out(&self) -> &str {
        self.stdout.trim()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{self}"))
    }
}

impl fmt::Display for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  command: {}", self.cmd)?;
        writeln!(f, "  exit:    {:?}", self.code)?;
        writeln!(f, "  stdout:  {:?}", self.stdout)?;
        write!(f, "  stderr:  {:?}", self.stderr)
    }
}

impl fmt::Debug for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Runs `cmd` with stdin from /dev/null and stdout/stderr into files under `io_dir`,
/// killing it and panicking after `timeout`.
pub fn exec(mut cmd: Command, io_dir: &Path, timeout: Duration) -> Out {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let out_path = io_dir.join(format!("{n}.out"));
    let err_path = io_dir.join(format!("{n}.err"));
    let desc = describe(&cmd);
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).expect("create stdout file"))
        .stderr(fs::File::create(&err_path).expect("create stderr file"));
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn `{desc}`: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`{desc}` did not finish within {timeout:?}\n  stdout: {:?}\n  stderr: {:?}",
                fs::read_to_string(&out_path).unwrap_or_default(),
                fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Out {
        cmd: desc,
        code: status.code(),
        stdout: fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        let arg = arg.to_string_lossy();
        if arg.is_empty() || arg.contains([' ', '\'', '"']) {
            s.push_str(&format!("'{}'", arg.replace('\'', r"'\''")));
        } else {
            s.push_str(&arg);
        }
    }
    s
}

/// Polls `cond` every 10ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Field 22 of /proc/PID/stat (start time in clock ticks), so a reused pid is not mistaken
/// for the container's process.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// True if `pid` exists and is not a zombie.
pub fn pid_alive(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].trim_start().chars().next());
    !matches!(state, Some('Z') | Some('X') | None)
}

// ---------------------------------------------------------------------------------------
// Capabilities
// ---------------------------------------------------------------------------------------

/// Capability names by number (linux/capability.h).
pub const CAP_NAMES: &[&str] = &[
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

/// Docker's default capability set.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The bitmask /proc/PID/status shows for a set of capability names.
pub fn cap_mask(caps: &[&str]) -> u64 {
    caps.iter()
        .map(|name| {
            let bit = CAP_NAMES
                .iter()
                .position(|n| n == name)
                .unwrap_or_else(|| panic!("unknown capability {name}"));
            1u64 << bit
        })
        .fold(0, |acc, bit| acc | bit)
}

// ---------------------------------------------------------------------------------------
// Bundle
// ---------------------------------------------------------------------------------------

/// An OCI bundle in its own TempDir: a busybox rootfs and a config.json edited as JSON.
pub struct Bundle {
    dir: TempDir,
    pub spec: Value,
    /// When set, written verbatim as config.json instead of `spec`.
    raw_config: Option<String>,
}

impl Bundle {
    /// A bundle with a busybox rootfs and the default spec running `sh`.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("nucleus-bundle-")
            .tempdir()
            .expect("bundle tempdir");
        let rootfs = dir.path().join("rootfs");
        build_rootfs(&rootfs);
        Bundle {
            dir,
            spec: default_spec(),
            raw_config: None,
        }
    }

    /// Absolute bundle path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// Sets `process.args`.
    pub fn with_args(mut self, args: &[&str]) -> Self {
        self.spec["process"]["args"] = json!(args);
        self
    }

    /// Sets `process.args` to `sh -c SCRIPT`.
    pub fn with_sh(self, script: &str) -> Self {
        self.with_args(&["sh", "-c", script])
    }

    pub fn with_hostname(mut self, name: &str) -> Self {
        self.spec["hostname"] = json!(name);
        self
    }

    pub fn with_env(mut self, kv: &str) -> Self {
        self.spec["process"]["env"]
            .as_array_mut()
            .expect("process.env")
            .push(json!(kv));
        self
    }

    pub fn with_cwd(mut self, cwd: &str) -> Self {
        self.spec["process"]["cwd"] = json!(cwd);
        self
    }

    pub fn with_readonly_root(mut self, readonly: bool) -> Self {
        self.spec["root"]["readonly"] = json!(readonly);
        self
    }

    /// Appends an entry to `mounts`.
    pub fn with_mount(mut self, mount: Value) -> Self {
        self.spec["mounts"]
            .as_array_mut()
            .expect("mounts")
            .push(mount);
        self
    }

    /// Bind-mounts host `src` at `dest` (with extra options, e.g. `ro`).
    pub fn with_bind(self, src: &Path, dest: &str, extra: &[&str]) -> Self {
        let mut options = vec!["rbind"];
        options.extend_from_slice(extra);
        self.with_mount(json!({
            "destination": dest, "type": "bind", "source": src, "options": options
        }))
    }

    /// Sets all of `process.capabilities` except ambient to `caps`.
    pub fn with_caps(mut self, caps: &[&str]) -> Self {
        self.spec["process"]["capabilities"] = json!({
            "bounding": caps, "effective": caps, "permitted": caps
        });
        self
    }

    /// Appends a namespace of `kind` to `linux.namespaces`.
    pub fn with_namespace(mut self, kind: &str) -> Self {
        self.spec["linux"]["namespaces"]
            .as_array_mut()
            .expect("namespaces")
            .push(json!({ "type": kind }));
        self
    }

    /// Edits the spec in place.
    pub fn edit(mut self, f: impl FnOnce(&mut Value)) -> Self {
        f(&mut self.spec);
        self
    }

    /// Uses `text` verbatim as config.json.
    pub fn with_raw_config(mut self, text: &str) -> Self {
        self.raw_config = Some(text.to_string());
        self
    }

    /// Writes config.json; the `Ctx` verbs call this before invoking the runtime.
    pub fn write(&self) {
        let text = match &self.raw_config {
            Some(raw) => raw.clone(),
            None => serde_json::to_string_pretty(&self.spec).expect("serialize spec"),
        };
        fs::write(self.path().join("config.json"), text).expect("write config.json");
    }

    /// Makes the bundle traversable by other users (for user-namespace tests, where the
    /// container's root is an unprivileged host uid).
    pub fn make_world_accessible(&self) {
        fs::set_permissions(self.path(), fs::Permissions::from_mode(0o755)).expect("chmod bundle");
    }
}

impl Default for Bundle {
    fn default() -> Self {
        Self::new()
    }
}

/// Builds a minimal busybox rootfs at `rootfs`.
pub fn build_rootfs(rootfs: &Path) {
    for dir in ["bin", "proc", "dev", "sys", "tmp", "etc", "root", "mnt"] {
        fs::create_dir_all(rootfs.join(dir)).expect("create rootfs dir");
    }
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777)).expect("chmod tmp");
    fs::copy(BUSYBOX, rootfs.join("bin/busybox")).expect("copy busybox into rootfs");
    for applet in APPLETS {
        symlink("busybox", rootfs.join("bin").join(applet)).expect("applet symlink");
    }
    fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .expect("write passwd");
    fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n",
    )
    .expect("write group");
}

/// A runc-like default spec: busybox `sh`, Docker's default capabilities, a read-only root
/// and the usual /proc, /dev, /sys mounts and masks.
pub fn default_spec() -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": ["sh"],
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": DEFAULT_CAPS,
                "effective": DEFAULT_CAPS,
                "permitted": DEFAULT_CAPS
            },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs", "readonly": true },
        "hostname": "nucleus-test",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
              "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
              "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
              "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs",
              "options": ["nosuid", "noexec", "nodev", "ro"] },
            { "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
              "options": ["nosuid", "noexec", "nodev", "relatime", "ro"] }
        ],
        "linux": {
            "resources": { "devices": [{ "allow": false, "access": "rwm" }] },
            "namespaces": [
                { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
                { "type": "uts" }, { "type": "mount" }, { "type": "cgroup" }
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}

// ---------------------------------------------------------------------------------------
// Ctx: one state root per test, the OCI verbs, and the leak checks
// ---------------------------------------------------------------------------------------

/// Runs `delete --force ID` on drop, so a failing test does not leak its container.
pub struct ContainerGuard {
    pub id: String,
    root: PathBuf,
    runtime: PathBuf,
}

impl ContainerGuard {
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl std::ops::Deref for ContainerGuard {
    type Target = str;
    fn deref(&self) -> &str {
        &self.id
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        force_delete(&self.runtime, &self.root, &self.id);
    }
}

fn force_delete(runtime: &Path, root: &Path, id: &str) {
    // Once the test's root is gone there is nothing to delete, and runc would recreate it.
    if !root.is_dir() {
        return;
    }
    let _ = Command::new(runtime)
        .arg("--root")
        .arg(root)
        .args(["delete", "--force", id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A process seen inside a container, checked for liveness at the end of the test.
#[derive(Clone, Debug)]
struct SeenProcess {
    pid: i32,
    start: u64,
    cgroups: Vec<PathBuf>,
}

/// Per-test context: a private `--root`, a scratch dir for command output, and a record of
/// everything the test created so `finish` can prove nothing was left behind.
pub struct Ctx {
    root: TempDir,
    io: TempDir,
    ids: Mutex<Vec<String>>,
    watched_paths: Mutex<Vec<PathBuf>>,
    seen: Mutex<Vec<SeenProcess>>,
    runtime: PathBuf,
}

impl Ctx {
    pub fn new() -> Self {
        Self::with_runtime(runtime())
    }

    /// A context whose verbs run `runtime` (e.g. [`runc`]) instead of the one under test.
    pub fn with_runtime(runtime: PathBuf) -> Self {
        let root = tempfile::Builder::new()
            .prefix("nucleus-root-")
            .tempdir()
            .expect("root tempdir");
        let io = tempfile::Builder::new()
            .prefix("nucleus-io-")
            .tempdir()
            .expect("io tempdir");
        Ctx {
            root,
            io,
            ids: Mutex::new(Vec::new()),
            watched_paths: Mutex::new(vec![]),
            seen: Mutex::new(Vec::new()),
            runtime,
        }
    }

    /// The runtime binary this context's verbs run.
    pub fn runtime(&self) -> &Path {
        &self.runtime
    }

    /// The `--root` state directory.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The image data root (`NUCLEUS_DATA_ROOT`), so no test touches `/var/lib/nucleus`.
    pub fn data_root(&self) -> PathBuf {
        self.io.path().join("data-root")
    }

    /// A scratch directory for the test's own files (host logs, bind sources).
    pub fn scratch(&self, name: &str) -> PathBuf {
        let dir = self.io.path().join(name);
        fs::create_dir_all(&dir).expect("create scratch dir");
        fs::set_permissions(self.io.path(), fs::Permissions::from_mode(0o755)).expect("chmod io");
        dir
    }

    /// A fresh unique id, force-deleted when the guard drops.
    pub fn id(&self) -> ContainerGuard {
        let id = unique_id();
        self.ids.lock().unwrap().push(id.clone());
        ContainerGuard {
            id,
            root: self.root.path().to_path_buf(),
            runtime: self.runtime.clone(),
        }
    }

    /// Also checks at `finish` that nothing is mounted at or below `path`.
    pub fn watch(&self, path: &Path) {
        self.watched_paths.lock().unwrap().push(path.to_path_buf());
    }

    /// A new default bundle, watched for leftover mounts and processes.
    pub fn bundle(&self) -> Bundle {
        let bundle = Bundle::new();
        self.watch(bundle.path());
        bundle
    }

    /// `<runtime> --root ROOT ARGS...`, with a timeout.
    pub fn rt(&self, args: &[&str]) -> Out {
        let mut cmd = Command::new(&self.runtime);
        cmd.env("NUCLEUS_DATA_ROOT", self.data_root())
            .arg("--root")
            .arg(self.root())
            .args(args);
        exec(cmd, self.io.path(), CMD_TIMEOUT)
    }

    /// Like `rt`, run from `cwd`.
    pub fn rt_in(&self, cwd: &Path, args: &[&str]) -> Out {
        let mut cmd = Command::new(&self.runtime);
        cmd.current_dir(cwd)
            .env("NUCLEUS_DATA_ROOT", self.data_root())
            .arg("--root")
            .arg(self.root())
            .args(args);
        exec(cmd, self.io.path(), CMD_TIMEOUT)
    }

    /// `run --bundle B [FLAGS] ID` in the foreground; the container's stdout is `out.stdout`.
    pub fn run_with(&self, bundle: &Bundle, id: &str, flags: &[&str]) -> Out {
        bundle.write();
        let b = bundle.path().to_str().expect("utf-8 bundle path");
        let mut args = vec!["run", "--bundle", b];
        args.extend_from_slice(flags);
        args.push(id);
        self.rt(&args)
    }

    /// `run --bundle B ID` with a fresh id; returns the exit code and the output.
    pub fn run(&self, bundle: &Bundle) -> Out {
        let id = self.id();
        self.run_with(bundle, &id, &[])
    }

    /// Runs `sh -c SCRIPT` in `bundle` and asserts it exits 0; returns trimmed stdout.
    #[track_caller]
    pub fn sh(&self, bundle: Bundle, script: &str) -> String {
        let bundle = bundle.with_sh(script);
        let out = self.run(&bundle);
        out.assert_ok();
        out.out().to_string()
    }

    /// `create --bundle B [FLAGS] ID`.
    pub fn create_with(&self, bundle: &Bundle, id: &str, flags: &[&str]) -> Out {
        bundle.write();
        let b = bundle.path().to_str().expect("utf-8 bundle path");
        let mut args = vec!["create", "--bundle", b];
        args.extend_from_slice(flags);
        args.push(id);
        self.rt(&args)
    }

    #[track_caller]
    pub fn create(&self, bundle: &Bundle, id: &str) -> Out {
        let out = self.create_with(bundle, id, &[]);
        out.assert_ok();
        out
    }

    #[track_caller]
    pub fn start(&self, id: &str) -> Out {
        let out = self.rt(&["start", id]);
        out.assert_ok();
        out
    }

    /// `state ID`, parsed. Panics if it fails. Records the pid for the leak checks.
    #[track_caller]
    pub fn state(&self, id: &str) -> Value {
        let out = self.rt(&["state", id]);
        out.assert_ok();
        let state = out.json();
        if let Some(pid) = state["pid"].as_i64().filter(|p| *p > 0) {
            self.record_pid(i32::try_from(pid).expect("pid fits i32"));
        }
        state
    }

    /// The container's pid from `state ID`.
    #[track_caller]
    pub fn pid(&self, id: &str) -> i32 {
        let state = self.state(id);
        let pid = state["pid"]
            .as_i64()
            .unwrap_or_else(|| panic!("no pid in state: {state}"));
        i32::try_from(pid).unwrap_or_else(|_| panic!("pid out of range in state: {state}"))
    }

    /// `state ID` status, or `None` when `state` fails.
    pub fn status(&self, id: &str) -> Option<String> {
        let out = self.rt(&["state", id]);
        if !out.success() {
            return None;
        }
        out.json()["status"].as_str().map(str::to_string)
    }

    /// Polls `state` until the status is `want`; panics after 10s.
    #[track_caller]
    pub fn wait_status(&self, id: &str, want: &str) {
        let mut last = None;
        let ok = wait_until(Duration::from_secs(10), || {
            last = self.status(id);
            last.as_deref() == Some(want)
        });
        assert!(
            ok,
            "container {id} never reached status {want:?}; last status {last:?}"
        );
    }

    #[track_caller]
    pub fn kill(&self, id: &str, signal: &str) -> Out {
        let out = self.rt(&["kill", id, signal]);
        out.assert_ok();
        out
    }

    #[track_caller]
    pub fn delete(&self, id: &str) -> Out {
        let out = self.rt(&["delete", id]);
        out.assert_ok();
        out
    }

    /// Remembers a container process so `finish` can check it is gone.
    pub fn record_pid(&self, pid: i32) {
        let Some(start) = start_time(pid) else { return };
        let mut seen = self.seen.lock().unwrap();
        if seen.iter().any(|p| p.pid == pid && p.start == start) {
            return;
        }
        let cgroups = cgroup_dirs(pid)
            .into_iter()
            .filter(|dir| !cgroup_dirs(std::process::id() as i32).contains(dir))
            .collect();
        seen.push(SeenProcess {
            pid,
            start,
            cgroups,
        });
    }

    /// Entries left in the state root.
    /// Entries under `--root` other than the runtime's caches, which are meant
    /// to outlive containers: compiled seccomp programs (keyed by profile),
    /// agent-mode root skeletons (keyed by the host's layout), and the gVisor probe.
    pub fn root_entries(&self) -> Vec<String> {
        fs::read_dir(self.root())
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != ".seccomp-cache" && n != ".agent-rootfs" && n != ".gvisor")
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Force-deletes every container this test made, then asserts that nothing is left:
    /// no state under `--root`, no host mounts under watched paths, no live container
    /// processes, no leftover cgroups, and no process rooted in a watched path.
    #[track_caller]
    pub fn finish(self) {
        for id in self.ids.lock().unwrap().iter() {
            force_delete(&self.runtime, self.root(), id);
        }
        let mut problems = Vec::new();

        let entries = self.root_entries();
        if !entries.is_empty() {
            problems.push(format!(
                "state root {} still holds {entries:?}",
                self.root().display()
            ));
        }

        let mut watched = self.watched_paths.lock().unwrap().clone();
        watched.push(self.root().to_path_buf());
        for mount in mounts_under(&watched) {
            problems.push(format!("host mount left behind: {mount}"));
        }

        for p in self.seen.lock().unwrap().iter() {
            let gone = wait_until(Duration::from_secs(5), || {
                start_time(p.pid) != Some(p.start) || !pid_alive(p.pid)
            });
            if !gone {
                problems.push(format!("container process {} still alive", p.pid));
            }
            for dir in &p.cgroups {
                // The kernel may take a moment to release a cgroup after its last task exits.
                if !wait_until(Duration::from_secs(2), || !dir.exists()) {
                    problems.push(format!("cgroup left behind: {}", dir.display()));
                }
            }
        }

        for (pid, link) in processes_rooted_in(&watched) {
            problems.push(format!("process {pid} has {link} inside a test path"));
        }

        assert!(
            problems.is_empty(),
            "test left things behind:\n  {}",
            problems.join("\n  ")
        );
    }
}

impl Default for Ctx {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        // `finish` consumed the ids already on the success path; this covers panics.
        for id in self.ids.lock().unwrap().iter() {
            force_delete(&self.runtime, self.root.path(), id);
        }
    }
}

/// Mount points in our mount namespace at or below any of `paths`.
pub fn mounts_under(paths: &[PathBuf]) -> Vec<String> {
    let info = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|mp| paths.iter().any(|p| Path::new(mp).starts_with(p)))
        .collect()
}

/// True if `path` is itself a mount point in our mount namespace.
pub fn is_mount_point(path: &Path) -> bool {
    mounts_under(&[path.to_path_buf()])
        .iter()
        .any(|mp| Path::new(mp) == path)
}

fn unescape_mountinfo(field: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo octal.
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let octal = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(octal, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// (pid, "cwd"/"root") for processes whose cwd or root lies inside any of `paths`.
fn processes_rooted_in(paths: &[PathBuf]) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in rd.filter_map(|e| e.ok()) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == std::process::id() as i32 || !pid_alive(pid) {
            continue;
        }
        for link in ["cwd", "root"] {
            if let Ok(target) = fs::read_link(format!("/proc/{pid}/{link}")) {
                if paths.iter().any(|p| target.starts_with(p)) {
                    found.push((pid, format!("{link} {}", target.display())));
                }
            }
        }
    }
    found
}

/// The cgroup directories (on this host's cgroupfs mounts) that `pid` belongs to.
pub fn cgroup_dirs(pid: i32) -> Vec<PathBuf> {
    let Ok(cgroup) = fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return vec![];
    };
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    // mountinfo: "36 25 0:31 / /sys/fs/cgroup/memory rw,... shared:15 - cgroup cgroup rw,memory"
    let mounts: Vec<(String, String, String, String)> = info
        .lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            let fstype = (*post.first()?).to_string();
            if fstype != "cgroup" && fstype != "cgroup2" {
                return None;
            }
            Some((
                fstype,
                pre[3].to_string(),
                unescape_mountinfo(pre[4]),
                post.get(2)?.to_string(),
            ))
        })
        .collect();
    let mut dirs = Vec::new();
    // /proc/PID/cgroup: "4:memory:/a/b" (v1) or "0::/a/b" (v2)
    for line in cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if path == "/" {
            continue;
        }
        let mount = mounts.iter().find(|(fstype, _, _, opts)| {
            if controllers.is_empty() {
                fstype == "cgroup2"
            } else {
                fstype == "cgroup"
                    && controllers
                        .split(',')
                        .all(|c| opts.split(',').any(|o| o == c))
            }
        });
        if let Some((_, mount_root, mount_point, _)) = mount {
            if let Ok(rel) = Path::new(path).strip_prefix(mount_root) {
                dirs.push(Path::new(mount_point).join(rel));
            }
        }
    }
    dirs
}

// ---------------------------------------------------------------------------------------
// sysprobe: a static helper that makes one raw syscall (for seccomp and exec tests)
// ---------------------------------------------------------------------------------------

/// C source of `/bin/sysprobe NR [ARG...]`: calls syscall NR with up to six arguments and
/// prints `ret=R errno=E` (E is 0 on success). An ARG is an integer (decimal, 0x hex, or
/// negative) or `s:TEXT`, a pointer to the string TEXT.
const SYSPROBE_C: &str = r#"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(int argc, char **argv) {
    long a[6] = {0};
    if (argc < 2 || argc > 8) { fprintf(stderr, "usage: sysprobe NR [ARG...]\n"); return 2; }
    long nr = strtol(argv[1], NULL, 0);
    for (int i = 2; i < argc; i++) {
        const char *s = argv[i];
        if (s[0] == 's' && s[1] == ':') a[i - 2] = (long)(s + 2);
        else if (s[0] == '-') a[i - 2] = strtol(s, NULL, 0);
        else a[i - 2] = (long)strtoul(s, NULL, 0);
    }
    errno = 0;
    long r = syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
    printf("ret=%ld errno=%d\n", r, r == -1 ? errno : 0);
    return 0;
}
"#;

/// Compiles sysprobe statically with the host's `cc` into `rootfs/bin/sysprobe`.
/// Returns why it cannot (no compiler) so the caller can skip; panics if compiling fails.
pub fn install_sysprobe(rootfs: &Path) -> Result<(), String> {
    let cc = ["cc", "gcc"]
        .into_iter()
        .find(|cc| {
            Command::new(cc)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .ok_or_else(|| "needs a C compiler (cc) with static libc for sysprobe".to_string())?;
    let src = rootfs.join("sysprobe.c");
    fs::write(&src, SYSPROBE_C).expect("write sysprobe.c");
    let out = Command::new(cc)
        .args(["-static", "-O2", "-o"])
        .arg(rootfs.join("bin/sysprobe"))
        .arg(&src)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {cc}: {e}"));
    fs::remove_file(&src).expect("remove sysprobe.c");
    assert!(
        out.status.success(),
        "compiling sysprobe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Parses sysprobe's `ret=R errno=E` line into (R, E).
#[track_caller]
pub fn parse_probe(line: &str) -> (i64, i32) {
    let line = line.trim();
    let parsed = line.strip_prefix("ret=").and_then(|rest| {
        let (ret, errno) = rest.split_once(" errno=")?;
        Some((ret.parse().ok()?, errno.parse().ok()?))
    });
    parsed.unwrap_or_else(|| panic!("not a sysprobe line: {line:?}"))
}

// ---------------------------------------------------------------------------------------
// Docker-like front end: the generated bundles and names live under the root too
// ---------------------------------------------------------------------------------------

impl Ctx {
    /// `finish` for tests of the docker-like verbs: `rm -f` everything still listed, check
    /// that no generated bundle or name is left (the name lock may stay), drop those two
    /// runtime directories, then run the usual leak checks.
    #[track_caller]
    pub fn finish_agent(self) {
        let left = self.rt(&["ps", "-aq"]);
        for id in left.stdout.split_whitespace() {
            let _ = self.rt(&["rm", "-f", id]);
        }
        let bundles = self.root().join(".bundles");
        let names = self.root().join(".names");
        let list = |dir: &Path| -> Vec<String> {
            fs::read_dir(dir)
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        let stray_bundles: Vec<String> = list(&bundles)
            .into_iter()
            .filter(|n| n != ".names.lock")
            .collect();
        let stray_names = list(&names);
        assert!(
            stray_bundles.is_empty(),
            "generated bundles left behind: {stray_bundles:?}"
        );
        assert!(stray_names.is_empty(), "names left behind: {stray_names:?}");
        let _ = fs::remove_dir_all(&bundles);
        let _ = fs::remove_dir_all(&names);
        self.finish();
    }
}

// ---------------------------------------------------------------------------------------
// Shared by several test files
// ---------------------------------------------------------------------------------------

/// The value of `Field:` in a /proc/self/status dump.
pub fn status_field<'a>(status: &'a str, field: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in status:\n{status}"))
        .trim()
}

/// Accepts one connection, giving up early if `done()` says the runtime already exited.
pub fn accept_until(
    listener: &std::os::unix::net::UnixListener,
    deadline: Instant,
    done: impl Fn() -> bool,
) -> Option<std::os::unix::net::UnixStream> {
    listener.set_nonblocking(true).unwrap();
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                return Some(stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if done() || Instant::now() > deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("accept on unix socket: {e}"),
        }
    }
}

/// Receives the single fd the runtime passes with SCM_RIGHTS.
pub fn recv_fd(stream: &std::os::unix::net::UnixStream) -> std::os::fd::OwnedFd {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .expect("recvmsg on console socket");
    for c in msg.cmsgs().expect("parse control messages") {
        if let ControlMessageOwned::ScmRights(fds) = c {
            assert_eq!(fds.len(), 1, "expected exactly one fd, got {fds:?}");
            // SAFETY: the kernel just installed this fd in our table for us; nothing else owns it.
            return unsafe { OwnedFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("console socket message carried no SCM_RIGHTS fd");
}

/// A pty master received from the runtime, as a non-blocking file for [`read_pty`].
pub fn pty_master(fd: std::os::fd::OwnedFd) -> std::fs::File {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL).unwrap());
    fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).unwrap();
    std::fs::File::from(fd)
}

/// Reads a pty master until the slave side is closed (EIO) or `timeout` passes;
/// the text comes back without the terminal's carriage returns.
pub fn read_pty(master: &mut std::fs::File, timeout: Duration) -> String {
    use std::io::Read;
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match master.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            // Linux reports a hung-up pty master as EIO.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) => panic!("read pty master: {e}"),
        }
    }
    String::from_utf8_lossy(&out).replace('\r', "")
}
