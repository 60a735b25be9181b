//! The harness of the container-manager tests (managers.rs, docker.rs, cri.rs): an image
//! built at test time from busybox, a `Sandbox` that owns a test's temporary directory and
//! the daemons started from it (containerd, dockerd), its leak checks and its cleanup, and
//! the side-by-side comparison of what a manager's user observes with nucleus and runc.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{exec, mounts_under, pid_alive, wait_until, Out};
use serde_json::json;
use tempfile::TempDir;

/// Any single manager command; containerd and podman are slow on a loaded machine.
pub const TIMEOUT: Duration = Duration::from_secs(180);

/// The tag the image is built under (umoci's tag; the `ref.name` annotation of the index).
pub const TAG: &str = "nucleus-mgr";

/// Applets linked into the image.
pub const APPLETS: &[&str] = &[
    "sh", "cat", "echo", "sleep", "id", "tty", "ls", "true", "false", "hostname", "ps", "grep",
    "test", "pwd", "env", "kill", "head", "stty", "dd", "readlink", "tr", "cut", "ip",
];

pub fn nucleus() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nucleus"))
}

/// `name` on PATH (or in the sbin directories, which root's PATH may lack).
pub fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain([
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ])
        .map(|dir| Path::new(dir).join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        });
    found
}

/// Skips the test (prints `skipped: …` and returns) unless every tool is installed.
#[allow(unused_macros)]
macro_rules! require_tools {
    ($($name:expr),+ $(,)?) => {
        for name in [$($name),+] {
            if common::managers::tool(name).is_none() {
                eprintln!("skipped: needs `{name}` (apt-get install containerd podman umoci)");
                return;
            }
        }
    };
}

/// Quotes `s` for `sh -c`.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// One observable result of one step, compared between the runtimes.
pub type Observations = Vec<(String, String)>;

pub fn observe(obs: &mut Observations, step: &str, value: impl Into<String>) {
    obs.push((step.to_string(), value.into()));
}

// ---------------------------------------------------------------------------------------
// The image
// ---------------------------------------------------------------------------------------

/// containerd's shim sockets (/run/containerd/s) and podman's fixed host
/// paths are shared by the whole machine; the leak checks compare them
/// before and after, so the manager tests take turns.
pub static SHARED_HOST_STATE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Fills `rootfs` with the static busybox and its applet links.
pub fn populate_rootfs(rootfs: &Path) {
    for dir in ["bin", "proc", "sys", "dev", "tmp", "etc", "root"] {
        fs::create_dir_all(rootfs.join(dir)).expect("create rootfs dir");
    }
    fs::copy(super::BUSYBOX, rootfs.join("bin/busybox")).expect("copy busybox");
    for applet in APPLETS {
        symlink("busybox", rootfs.join("bin").join(applet)).expect("link applet");
    }
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    fs::write(rootfs.join("etc/group"), "root:x:0:\n").expect("group");
}

/// Builds an OCI image archive (a tar of an OCI image layout whose index names the image
/// `TAG`) from busybox, in `dir`; returns the archive's path. Uses umoci when installed
/// (and `NUCLEUS_TEST_NO_UMOCI` is unset).
pub fn build_image(dir: &Path, io: &Path) -> PathBuf {
    build_image_running(dir, io, &["sh"])
}

/// `build_image` with `cmd` as the image's default command (a CRI pause image needs
/// one that keeps running).
pub fn build_image_running(dir: &Path, io: &Path, cmd: &[&str]) -> PathBuf {
    let layout = build_layout(dir, io, cmd);
    tar_layout(&layout, &dir.join("image.tar"), io)
}

/// The same image as an archive `docker load` takes: the OCI layout plus the
/// `manifest.json` of `docker save` naming the same blobs, tagged `repo_tag`.
pub fn build_docker_image(dir: &Path, io: &Path, repo_tag: &str) -> PathBuf {
    let layout = build_layout(dir, io, &["sh"]);
    let read_json = |path: PathBuf| -> serde_json::Value {
        let text =
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
    };
    let blob = |digest: &serde_json::Value| {
        let hex = digest
            .as_str()
            .and_then(|d| d.strip_prefix("sha256:"))
            .expect("a sha256 digest");
        format!("blobs/sha256/{hex}")
    };
    let index = read_json(layout.join("index.json"));
    let manifest = read_json(layout.join(blob(&index["manifests"][0]["digest"])));
    let layers: Vec<String> = manifest["layers"]
        .as_array()
        .expect("manifest layers")
        .iter()
        .map(|l| blob(&l["digest"]))
        .collect();
    let docker = json!([{ "Config": blob(&manifest["config"]["digest"]), "RepoTags": [repo_tag], "Layers": layers }]);
    fs::write(layout.join("manifest.json"), docker.to_string()).expect("write manifest.json");
    tar_layout(&layout, &dir.join("image-docker.tar"), io)
}

/// The image layout in `dir/oci-layout`, built with umoci or by hand.
fn build_layout(dir: &Path, io: &Path, cmd: &[&str]) -> PathBuf {
    let layout = dir.join("oci-layout");
    match tool("umoci").filter(|_| std::env::var_os("NUCLEUS_TEST_NO_UMOCI").is_none()) {
        Some(umoci) => build_with_umoci(&umoci, dir, &layout, io, cmd),
        None => build_by_hand(dir, &layout, io, cmd),
    }
    layout
}

/// Tars `layout` into `archive` and removes the layout.
fn tar_layout(layout: &Path, archive: &Path, io: &Path) -> PathBuf {
    let mut tar = Command::new("tar");
    tar.arg("-C").arg(layout).arg("-cf").arg(archive).arg(".");
    exec(tar, io, TIMEOUT).assert_ok();
    fs::remove_dir_all(layout).expect("remove layout");
    archive.to_path_buf()
}

fn build_with_umoci(umoci: &Path, dir: &Path, layout: &Path, io: &Path, cmd: &[&str]) {
    let image = format!("{}:{TAG}", layout.display());
    let bundle = dir.join("umoci-bundle");
    let run = |args: &[&str]| {
        let mut cmd = Command::new(umoci);
        cmd.args(args);
        exec(cmd, io, TIMEOUT).assert_ok();
    };
    run(&["init", "--layout", &layout.to_string_lossy()]);
    run(&["new", "--image", &image]);
    run(&["unpack", "--image", &image, &bundle.to_string_lossy()]);
    populate_rootfs(&bundle.join("rootfs"));
    run(&["repack", "--image", &image, &bundle.to_string_lossy()]);
    let mut config = vec![
        "config",
        "--image",
        &image,
        "--config.env",
        "PATH=/bin",
        "--config.workingdir",
        "/",
    ];
    for arg in cmd {
        config.extend(["--config.cmd", arg]);
    }
    run(&config);
    run(&["gc", "--layout", &layout.to_string_lossy()]);
    fs::remove_dir_all(&bundle).expect("remove umoci bundle");
}

/// sha256 of a file, as `sha256:<hex>`, and its size.
pub fn digest(path: &Path, io: &Path) -> (String, u64) {
    let mut cmd = Command::new("sha256sum");
    cmd.arg(path);
    let out = exec(cmd, io, TIMEOUT);
    out.assert_ok();
    let hex = out
        .stdout
        .split_whitespace()
        .next()
        .expect("sha256sum output")
        .to_string();
    (
        format!("sha256:{hex}"),
        fs::metadata(path).expect("stat blob").len(),
    )
}

/// Moves `file` into the layout's blob store under its digest; returns (digest, size).
pub fn add_blob(layout: &Path, file: &Path, io: &Path) -> (String, u64) {
    let (digest, size) = digest(file, io);
    let dest = layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    fs::rename(file, dest).expect("store blob");
    (digest, size)
}

/// The OCI image layout written directly: an uncompressed tar layer, the image config,
/// the manifest and the index, each blob named by its sha256.
pub fn build_by_hand(dir: &Path, layout: &Path, io: &Path, cmd: &[&str]) {
    fs::create_dir_all(layout.join("blobs/sha256")).expect("create layout");
    let rootfs = dir.join("image-rootfs");
    populate_rootfs(&rootfs);
    let layer = dir.join("layer.tar");
    let mut tar = Command::new("tar");
    tar.args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
        .arg(&rootfs)
        .arg("-cf")
        .arg(&layer)
        .arg(".");
    exec(tar, io, TIMEOUT).assert_ok();
    fs::remove_dir_all(&rootfs).expect("remove image rootfs");
    let (layer_digest, layer_size) = add_blob(layout, &layer, io);
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let config = json!({
        "architecture": arch,
        "os": "linux",
        "config": { "Cmd": cmd, "Env": ["PATH=/bin"], "WorkingDir": "/" },
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
    });
    let config_file = dir.join("config.json");
    fs::write(&config_file, config.to_string()).expect("write image config");
    let (config_digest, config_size) = add_blob(layout, &config_file, io);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size }],
    });
    let manifest_file = dir.join("manifest.json");
    fs::write(&manifest_file, manifest.to_string()).expect("write manifest");
    let (manifest_digest, manifest_size) = add_blob(layout, &manifest_file, io);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "platform": { "architecture": arch, "os": "linux" },
            "annotations": { "org.opencontainers.image.ref.name": TAG },
        }],
    });
    fs::write(layout.join("index.json"), index.to_string()).expect("write index");
    fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("write oci-layout");
}

// ---------------------------------------------------------------------------------------
// The sandbox: temp dir, started daemons, and everything to check and clean up
// ---------------------------------------------------------------------------------------

/// Owns a test's temporary directory and what the managers made outside it. Drop kills
/// the processes started from it, unmounts, removes cgroups and runtime state.
pub struct Sandbox {
    pub tmp: TempDir,
    pub io: PathBuf,
    /// Daemons started for the test (containerd, dockerd), stopped last first.
    pub daemons: Vec<Child>,
    /// Top-level cgroup names the containers were put under (removed at the end).
    pub cgroup_parents: Vec<String>,
    /// (runtime, --root) pairs whose containers are force-deleted at the end.
    pub runtime_roots: Vec<(PathBuf, PathBuf)>,
    /// Container ids (the runtime's ids) this test made.
    pub ids: BTreeSet<String>,
    /// Host directories a manager creates outside the sandbox that did not exist before
    /// this test: removed at the end (`true`: with their contents).
    pub host_dirs: Vec<(PathBuf, bool)>,
    /// Entries of the containerd shims' socket directory before the test.
    pub shim_sockets_before: BTreeSet<String>,
}

/// The containerd shims' socket directory (fixed in containerd 1.6).
pub const SHIM_SOCKET_DIR: &str = "/run/containerd/s";

pub fn dir_entries(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Every cgroup hierarchy's mount point (v1 controllers and cgroup2).
pub fn cgroup_mounts() -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let fstype = post.split(' ').next()?;
            let mount_point = pre.split(' ').nth(4)?;
            (fstype == "cgroup" || fstype == "cgroup2").then(|| PathBuf::from(mount_point))
        })
        .collect();
    mounts.sort();
    mounts.dedup();
    mounts
}

/// Directories at or below `dir`, deepest first.
pub fn dirs_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.filter_map(|e| e.ok()) {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(dirs_below(&e.path()));
            }
        }
    }
    if dir.is_dir() {
        out.push(dir.to_path_buf());
    }
    out
}

/// Live processes (not this one) whose command line mentions `needle`, with that line.
pub fn processes_mentioning(needle: &str) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
    {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me || !pid_alive(pid) {
            continue;
        }
        let Ok(raw) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let line = String::from_utf8_lossy(&raw).replace('\0', " ");
        if line.contains(needle) {
            found.push((pid, line.trim().to_string()));
        }
    }
    found
}

impl Sandbox {
    pub fn new(prefix: &str) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("tempdir");
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).expect("chmod tempdir");
        let io = tmp.path().join("io");
        fs::create_dir_all(&io).expect("create io dir");
        Sandbox {
            tmp,
            io,
            daemons: Vec::new(),
            cgroup_parents: Vec::new(),
            runtime_roots: Vec::new(),
            ids: BTreeSet::new(),
            host_dirs: Vec::new(),
            shim_sockets_before: dir_entries(Path::new(SHIM_SOCKET_DIR)),
        }
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    pub fn needle(&self) -> String {
        self.path().to_string_lossy().into_owned()
    }

    /// A directory inside the sandbox, created.
    pub fn dir(&self, name: &str) -> PathBuf {
        let dir = self.path().join(name);
        fs::create_dir_all(&dir).expect("create sandbox dir");
        dir
    }

    /// Remembers `path` (a directory, or a file such as dockerd's /etc/docker/key.json) for
    /// removal at the end if it does not exist yet.
    pub fn host_dir(&mut self, path: &str, recursive: bool) {
        if !Path::new(path).exists() {
            self.host_dirs.push((PathBuf::from(path), recursive));
        }
    }

    pub fn run(&self, cmd: Command) -> Out {
        exec(cmd, &self.io, TIMEOUT)
    }

    /// Where the cgroup parents can be, in every hierarchy: a relative cgroups path is
    /// taken from the root by some runtimes and from the caller's own cgroup by others (runc
    /// on v1), and this process may itself sit below the root (a nested memory cgroup).
    fn cgroup_parent_dirs(&self) -> Vec<PathBuf> {
        let mut bases = cgroup_mounts();
        bases.extend(super::cgroup_dirs(std::process::id() as i32));
        let mut dirs: Vec<PathBuf> = bases
            .iter()
            .flat_map(|b| {
                self.cgroup_parents
                    .iter()
                    .map(move |p| b.join(p.trim_start_matches('/')))
            })
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// Cgroup directories below our parents whose name contains a container id.
    pub fn leftover_cgroups(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for parent in self.cgroup_parent_dirs() {
            for dir in dirs_below(&parent) {
                let name = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                // podman names a container's cgroup `libpod-<id>`.
                if name.starts_with("libpod-")
                    || self.ids.iter().any(|id| name.contains(id.as_str()))
                {
                    found.push(dir);
                }
            }
        }
        found
    }

    /// Asserts that the managers cleaned up after themselves (run after the daemons are
    /// stopped), then cleans up the rest and checks that too.
    #[track_caller]
    pub fn finish(mut self) {
        self.stop_daemons();
        let needle = self.needle();
        let mut problems = Vec::new();
        if !wait_until(Duration::from_secs(30), || {
            processes_mentioning(&needle).is_empty()
        }) {
            for (pid, line) in processes_mentioning(&needle) {
                problems.push(format!("process {pid} left running: {line}"));
            }
        }
        for mount in mounts_under(&[self.path().to_path_buf()]) {
            problems.push(format!("mount left behind: {mount}"));
        }
        for (runtime, root) in &self.runtime_roots {
            for id in &self.ids {
                if root.join(id).exists() {
                    problems.push(format!(
                        "{} state left behind: {}",
                        runtime.display(),
                        root.join(id).display()
                    ));
                }
            }
        }
        // A cgroup may take a moment to go after its last task.
        if !wait_until(Duration::from_secs(5), || {
            self.leftover_cgroups().is_empty()
        }) {
            for dir in self.leftover_cgroups() {
                problems.push(format!("cgroup left behind: {}", dir.display()));
            }
        }
        // The directory is the machine's: a shim (ours, or another test's) may take a
        // moment to remove its socket after it exits.
        let new_sockets = || -> Vec<String> {
            dir_entries(Path::new(SHIM_SOCKET_DIR))
                .difference(&self.shim_sockets_before)
                .cloned()
                .collect()
        };
        wait_until(Duration::from_secs(10), || new_sockets().is_empty());
        let new_sockets = new_sockets();
        if !new_sockets.is_empty() {
            problems.push(format!(
                "shim sockets left in {SHIM_SOCKET_DIR}: {new_sockets:?}"
            ));
        }
        self.cleanup();
        for parent in self.cgroup_parent_dirs() {
            if parent.exists() {
                problems.push(format!("cgroup parent not removable: {}", parent.display()));
            }
        }
        assert!(
            problems.is_empty(),
            "the managers left things behind:\n  {}",
            problems.join("\n  ")
        );
    }

    /// Stops the daemons, the last started first: SIGTERM, then SIGKILL after 20 s.
    pub fn stop_daemons(&mut self) {
        while let Some(child) = self.daemons.pop() {
            stop_daemon(child);
        }
    }

    /// Best effort, idempotent: whatever a failed test left.
    fn cleanup(&mut self) {
        self.stop_daemons();
        // Shims, conmon, podman cleanup processes: all name the sandbox on their command line.
        for (pid, _) in processes_mentioning(&self.needle()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for (runtime, root) in &self.runtime_roots {
            for id in &self.ids {
                if root.join(id).exists() {
                    let mut cmd = Command::new(runtime);
                    cmd.arg("--root").arg(root).args(["delete", "--force", id]);
                    cmd.stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null());
                    let _ = cmd.status();
                }
            }
        }
        // Container processes name no sandbox path (a failed CRI test's pause `sleep`):
        // they are found in the cgroups below our parents, thawed if frozen, and killed.
        for parent in self.cgroup_parent_dirs() {
            for dir in dirs_below(&parent) {
                let _ = fs::write(dir.join("freezer.state"), "THAWED");
                let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                for pid in procs
                    .split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok())
                {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        let mut mounts = mounts_under(&[self.path().to_path_buf()]);
        mounts.sort();
        for mount in mounts.iter().rev() {
            let _ = nix::mount::umount2(mount.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        for parent in self.cgroup_parent_dirs() {
            for dir in dirs_below(&parent) {
                let _ = wait_until(Duration::from_secs(2), || {
                    fs::remove_dir(&dir).is_ok() || !dir.exists()
                });
            }
        }
        for (dir, recursive) in self.host_dirs.iter().rev() {
            // A runtime root we made: nucleus keeps its seccomp filter cache there.
            let _ = fs::remove_dir_all(dir.join(".seccomp-cache"));
            let _ = if dir.is_file() {
                fs::remove_file(dir)
            } else if *recursive {
                fs::remove_dir_all(dir)
            } else {
                fs::remove_dir(dir)
            };
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// SIGTERM, then SIGKILL if it has not exited within 20 s.
fn stop_daemon(mut child: Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let stopped = wait_until(Duration::from_secs(20), || {
        child.try_wait().ok().flatten().is_some()
    });
    if !stopped {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Text as it comes through a pty: no carriage returns or NULs.
pub fn tty_text(s: &str) -> String {
    s.replace(['\r', '\0'], "").replace("^@", "")
}

/// Starts containerd on a private socket, with every directory inside the sandbox. `cri`:
/// the CRI plugin's configuration (TOML tables appended to the config); `None` disables it.
pub fn start_containerd(sb: &mut Sandbox, cri: Option<&str>) -> PathBuf {
    let base = sb.dir("containerd");
    let sock = base.join("containerd.sock");
    let config = format!(
        r#"version = 2
root = "{root}"
state = "{state}"
{disabled}

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
{cri}"#,
        root = base.join("root").display(),
        state = base.join("state").display(),
        sock = sock.display(),
        opt = base.join("opt").display(),
        disabled = if cri.is_some() {
            ""
        } else {
            r#"disabled_plugins = ["io.containerd.grpc.v1.cri"]"#
        },
        cri = cri.unwrap_or_default(),
    );
    let config_path = base.join("config.toml");
    fs::write(&config_path, config).expect("write containerd config");
    // The shims' sockets go to a fixed directory in containerd 1.6.
    sb.host_dir("/run/containerd", true);
    let mut cmd = Command::new("containerd");
    cmd.arg("--config").arg(&config_path);
    start_daemon(sb, cmd, &base.join("containerd.log"), || {
        let mut cmd = Command::new("ctr");
        cmd.arg("-a").arg(&sock).arg("version");
        sock.exists() && quietly_succeeds(cmd)
    });
    sock
}

/// Runs `cmd` with its output discarded; true if it exits 0 (a daemon's readiness probe).
pub fn quietly_succeeds(mut cmd: Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts `cmd` as one of the sandbox's daemons (TMPDIR in the sandbox, output to `log`)
/// and waits up to a minute for `ready`; fails the test with the log if it never is.
pub fn start_daemon(sb: &mut Sandbox, mut cmd: Command, log: &Path, ready: impl FnMut() -> bool) {
    let file = fs::File::create(log).expect("create daemon log");
    let child = cmd
        .env("TMPDIR", sb.dir("tmp"))
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("dup log"))
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {:?}: {e}", cmd.get_program()));
    sb.daemons.push(child);
    let up = wait_until(Duration::from_secs(60), ready);
    assert!(
        up,
        "{:?} did not come up:\n{}",
        cmd.get_program(),
        fs::read_to_string(log).unwrap_or_default()
    );
}

pub fn print_side_by_side(title: &str, a: &Observations, b: Option<&Observations>) {
    let mut text = format!("{title}\n{:<48} | {:<40} | runc\n", "step", "nucleus");
    for (i, (step, value)) in a.iter().enumerate() {
        let other = b
            .and_then(|b| b.get(i))
            .map(|(_, v)| v.as_str())
            .unwrap_or("-");
        let _ = writeln!(text, "{step:<48} | {value:<40} | {other}");
    }
    eprintln!("{text}");
}

#[track_caller]
pub fn assert_same(a: &Observations, b: &Observations) {
    let diffs: Vec<String> = a
        .iter()
        .zip(b)
        .filter(|(x, y)| x != y)
        .map(|((step, va), (_, vb))| format!("{step}: nucleus {va:?}, runc {vb:?}"))
        .collect();
    assert!(
        diffs.is_empty() && a.len() == b.len(),
        "nucleus and runc differ:\n  {}",
        diffs.join("\n  ")
    );
}

pub fn value<'a>(obs: &'a Observations, step: &str) -> &'a str {
    obs.iter()
        .find(|(s, _)| s == step)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no step {step}"))
}
