//! Real container managers drive the runtime exactly as they drive runc: containerd
//! (through its runc v2 shim, the path Kubernetes takes) with `ctr`, and podman (through
//! conmon). Every scenario runs once with nucleus and once with runc; what the user of the
//! manager can observe (outputs, exit codes, task states) must be the same.
//!
//! The image is built at test time from Debian's `busybox-static` with umoci (without
//! umoci, or with `NUCLEUS_TEST_NO_UMOCI=1`, as a hand-written OCI layout). containerd
//! runs on a private socket with its root, state, fifos and runtime state in a temporary
//! directory; podman gets its own containers.conf, storage and run directories. Each
//! test ends by checking that no mount, process, cgroup or runtime state was left
//! behind, and a Drop guard removes whatever a failed test left.
//!
//! Needs root, `containerd` + `ctr` (containerd test) or `podman` + `conmon` (podman test);
//! otherwise each test prints `skipped: <reason>` and passes.

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::managers::*;
use common::{wait_until, Out};

/// podman's default rlimits for root (RLIMIT_NOFILE and RLIMIT_NPROC are both raised to
/// this); a host whose hard limits are lower needs CAP_SYS_RESOURCE to grant them.
const PODMAN_DEFAULT_RLIMIT: u64 = 1_048_576;

/// Lowered limits the podman runs ask for, so they fit under this host's hard limits.
const ULIMITS: &[&str] = &[
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

// ---------------------------------------------------------------------------------------
// containerd
// ---------------------------------------------------------------------------------------

struct Ctr<'a> {
    sb: &'a Sandbox,
    sock: PathBuf,
    ns: String,
    runtime: PathBuf,
    runc_root: PathBuf,
    fifo_dir: PathBuf,
}

impl Ctr<'_> {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.env("TMPDIR", self.sb.path().join("tmp"))
            .arg("-a")
            .arg(&self.sock)
            .arg("-n")
            .arg(&self.ns)
            .args(args);
        cmd
    }

    fn ctr(&self, args: &[&str]) -> Out {
        self.sb.run(self.command(args))
    }

    /// The flags every `ctr run` takes: the runtime under test and private directories.
    fn run_args(&self) -> Vec<String> {
        vec![
            "--runc-binary".into(),
            self.runtime.to_string_lossy().into_owned(),
            "--runc-root".into(),
            self.runc_root.to_string_lossy().into_owned(),
            "--fifo-dir".into(),
            self.fifo_dir.to_string_lossy().into_owned(),
        ]
    }

    /// `ctr run [flags] IMAGE ID CMD...`.
    fn run(&self, flags: &[&str], image: &str, id: &str, cmd: &[&str]) -> Out {
        let mut args: Vec<String> = vec!["run".into()];
        args.extend(self.run_args());
        args.extend(flags.iter().map(|s| s.to_string()));
        args.push(image.into());
        args.push(id.into());
        args.extend(cmd.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.ctr(&refs)
    }

    /// Runs `ctr ARGS` under `script`, which gives it the terminal `--tty` needs.
    fn with_tty(&self, args: &[String]) -> Out {
        let cmd = self.command(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let mut line: Vec<String> = cmd
            .get_envs()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    k.to_string_lossy(),
                    sh_quote(&v.unwrap_or_default().to_string_lossy())
                )
            })
            .collect();
        line.insert(0, "env".into());
        line.push("ctr".into());
        line.extend(cmd.get_args().map(|a| sh_quote(&a.to_string_lossy())));
        let mut script = Command::new("script");
        script.args(["-qec", &line.join(" "), "/dev/null"]);
        self.sb.run(script)
    }

    /// The task's status as `ctr task ls` shows it (`None`: no task).
    fn status(&self, id: &str) -> Option<String> {
        let out = self.ctr(&["task", "ls"]);
        out.assert_ok();
        out.stdout.lines().skip(1).find_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.first() == Some(&id)).then(|| cols.get(2).unwrap_or(&"").to_string())
        })
    }

    /// Waits (up to a minute) for the task to reach `want`; returns the last status seen.
    fn wait_status(&self, id: &str, want: &str) -> String {
        let mut last = None;
        wait_until(Duration::from_secs(60), || {
            last = self.status(id);
            last.as_deref() == Some(want)
        });
        last.unwrap_or_else(|| "<no task>".into())
    }

    /// Number of processes `ctr task ps` lists.
    fn pid_count(&self, id: &str) -> usize {
        let out = self.ctr(&["task", "ps", id]);
        out.assert_ok();
        out.stdout
            .lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .count()
    }
}

/// The exit code ctr reports (as a warning) when it removes a task that exited non-zero.
fn reported_exit_code(out: &Out) -> String {
    out.stderr
        .split("exit code ")
        .nth(1)
        .map(|rest| rest.chars().take_while(char::is_ascii_digit).collect())
        .unwrap_or_else(|| "0".into())
}

/// The scenario, driven through ctr with `runtime` as the runc binary.
fn containerd_scenario(
    sb: &mut Sandbox,
    sock: &Path,
    archive: &Path,
    label: &str,
    runtime: &Path,
) -> Observations {
    let pid = std::process::id();
    let ns = format!("{label}-mgr-{pid}");
    sb.cgroup_parents.push(ns.clone());
    let runc_root = sb.dir(&format!("runc-root/{label}"));
    // The shim passes `--root <runc-root>/<namespace>`.
    sb.runtime_roots
        .push((runtime.to_path_buf(), runc_root.join(&ns)));
    let ids: Vec<String> = ["out", "err", "exec", "term", "tty"]
        .iter()
        .map(|s| format!("{label}-{s}-{pid}"))
        .collect();
    sb.ids.extend(ids.iter().cloned());
    let sb = &*sb;
    let ctr = Ctr {
        sb,
        sock: sock.to_path_buf(),
        ns,
        runtime: runtime.to_path_buf(),
        runc_root,
        fifo_dir: sb.dir("fifo"),
    };
    let (id_out, id_err, id_exec, id_term, id_tty) = (&ids[0], &ids[1], &ids[2], &ids[3], &ids[4]);
    let mut obs = Observations::new();

    // The image, in this namespace's store.
    let import = ctr.ctr(&[
        "images",
        "import",
        "--all-platforms",
        "--base-name",
        "localhost/nucleus",
        &archive.to_string_lossy(),
    ]);
    import.assert_ok();
    let image = import
        .stdout
        .split_whitespace()
        .skip_while(|w| *w != "unpacking")
        .nth(1)
        .unwrap_or_else(|| panic!("no image name in the import output\n{import}"))
        .to_string();

    // Foreground run: the workload's stdout, stderr and exit code reach the user.
    let out = ctr.run(
        &["--rm"],
        &image,
        id_out,
        &["sh", "-c", "echo out-line; echo err-line >&2; exit 7"],
    );
    observe(&mut obs, "run: exit code", format!("{:?}", out.code));
    observe(&mut obs, "run: stdout", out.stdout.trim());
    observe(
        &mut obs,
        "run: stderr has the workload's line",
        out.stderr.contains("err-line").to_string(),
    );
    let out = ctr.run(
        &["--rm"],
        &image,
        id_out,
        &["sh", "-c", "echo pid=$$ uid=$(id -u) cwd=$(pwd) path=$PATH"],
    );
    observe(
        &mut obs,
        "run: process view",
        format!("{:?} {}", out.code, out.stdout.trim()),
    );

    // A failed create: the shim shows the runtime's error (read back from its --log file).
    let out = ctr.run(&["--rm"], &image, id_err, &["/no/such/binary"]);
    observe(
        &mut obs,
        "run missing binary: exit code",
        format!("{:?}", out.code),
    );
    observe(
        &mut obs,
        "run missing binary: error names the binary",
        (out.stderr.contains("OCI runtime create failed")
            && out.stderr.contains("/no/such/binary"))
        .to_string(),
    );
    let left = ctr.ctr(&["containers", "ls", "-q"]);
    observe(
        &mut obs,
        "run missing binary: containers left",
        left.stdout.trim(),
    );

    // Detached run, then exec, ps, metrics, pause/resume, kill --all.
    let out = ctr.run(&["-d"], &image, id_exec, &["sleep", "1000"]);
    observe(&mut obs, "run -d: exit code", format!("{:?}", out.code));
    observe(
        &mut obs,
        "run -d: status",
        ctr.wait_status(id_exec, "RUNNING"),
    );
    let out = ctr.ctr(&[
        "task",
        "exec",
        "--fifo-dir",
        &ctr.fifo_dir.to_string_lossy(),
        "--exec-id",
        "e1",
        id_exec,
        "sh",
        "-c",
        "echo exec-out $$; exit 5",
    ]);
    observe(&mut obs, "task exec: exit code", format!("{:?}", out.code));
    observe(
        &mut obs,
        "task exec: stdout has output",
        out.stdout.contains("exec-out").to_string(),
    );
    let out = ctr.ctr(&[
        "task",
        "exec",
        "--fifo-dir",
        &ctr.fifo_dir.to_string_lossy(),
        "--exec-id",
        "e2",
        "--cwd",
        "/tmp",
        "--user",
        "0",
        id_exec,
        "pwd",
    ]);
    observe(
        &mut obs,
        "task exec --cwd: stdout",
        format!("{:?} {}", out.code, out.stdout.trim()),
    );
    let out = ctr.ctr(&[
        "task",
        "exec",
        "--fifo-dir",
        &ctr.fifo_dir.to_string_lossy(),
        "--exec-id",
        "e3",
        id_exec,
        "/no/such/binary",
    ]);
    observe(
        &mut obs,
        "task exec missing binary: exit code",
        format!("{:?}", out.code),
    );
    observe(
        &mut obs,
        "task exec missing binary: error names the binary",
        (out.stderr.contains("OCI runtime exec failed") && out.stderr.contains("/no/such/binary"))
            .to_string(),
    );
    let tty_exec: Vec<String> = [
        "task",
        "exec",
        "-t",
        "--fifo-dir",
        &ctr.fifo_dir.to_string_lossy(),
        "--exec-id",
        "e4",
        id_exec,
        "sh",
        "-c",
        "tty; echo tty-exec-ok",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = ctr.with_tty(&tty_exec);
    let text = tty_text(&out.stdout);
    observe(
        &mut obs,
        "task exec -t: exit code",
        format!("{:?}", out.code),
    );
    observe(
        &mut obs,
        "task exec -t: on a pty",
        (text.contains("/dev/pts/") && text.contains("tty-exec-ok")).to_string(),
    );
    observe(
        &mut obs,
        "task ps: processes",
        ctr.pid_count(id_exec).to_string(),
    );
    let out = ctr.ctr(&["task", "metrics", id_exec]);
    observe(
        &mut obs,
        "task metrics: exit code",
        format!("{:?}", out.code),
    );
    let out = ctr.ctr(&["task", "pause", id_exec]);
    observe(&mut obs, "task pause: exit code", format!("{:?}", out.code));
    observe(
        &mut obs,
        "task pause: status",
        ctr.wait_status(id_exec, "PAUSED"),
    );
    let out = ctr.ctr(&["task", "resume", id_exec]);
    observe(
        &mut obs,
        "task resume: exit code",
        format!("{:?}", out.code),
    );
    observe(
        &mut obs,
        "task resume: status",
        ctr.wait_status(id_exec, "RUNNING"),
    );
    let out = ctr.ctr(&[
        "task",
        "exec",
        "-d",
        "--fifo-dir",
        &ctr.fifo_dir.to_string_lossy(),
        "--exec-id",
        "bg",
        id_exec,
        "sleep",
        "1000",
    ]);
    observe(
        &mut obs,
        "task exec -d: exit code",
        format!("{:?}", out.code),
    );
    wait_until(Duration::from_secs(30), || ctr.pid_count(id_exec) == 2);
    observe(
        &mut obs,
        "task exec -d: processes",
        ctr.pid_count(id_exec).to_string(),
    );
    let out = ctr.ctr(&["task", "kill", "--all", "-s", "SIGKILL", id_exec]);
    observe(
        &mut obs,
        "task kill --all SIGKILL: exit code",
        format!("{:?}", out.code),
    );
    observe(
        &mut obs,
        "task kill --all SIGKILL: status",
        ctr.wait_status(id_exec, "STOPPED"),
    );
    let out = ctr.ctr(&["task", "rm", id_exec]);
    observe(&mut obs, "task rm: exit code", format!("{:?}", out.code));
    observe(
        &mut obs,
        "task rm: reported exit status",
        reported_exit_code(&out),
    );
    let out = ctr.ctr(&["containers", "rm", id_exec]);
    observe(
        &mut obs,
        "container rm: exit code",
        format!("{:?}", out.code),
    );

    // SIGTERM reaches a workload that handles it (resent until the trap is installed:
    // an init without a handler ignores SIGTERM).
    let out = ctr.run(
        &["-d"],
        &image,
        id_term,
        &[
            "sh",
            "-c",
            "trap 'exit 3' TERM; while :; do sleep 0.1; done",
        ],
    );
    observe(
        &mut obs,
        "run -d (trap): exit code",
        format!("{:?}", out.code),
    );
    ctr.wait_status(id_term, "RUNNING");
    let stopped = wait_until(Duration::from_secs(60), || {
        ctr.ctr(&["task", "kill", id_term]);
        wait_until(Duration::from_millis(500), || {
            ctr.status(id_term).as_deref() == Some("STOPPED")
        })
    });
    observe(&mut obs, "task kill SIGTERM: stopped", stopped.to_string());
    let out = ctr.ctr(&["task", "rm", id_term]);
    observe(
        &mut obs,
        "task kill SIGTERM: reported exit status",
        reported_exit_code(&out),
    );
    ctr.ctr(&["containers", "rm", id_term]);

    // A terminal: `ctr run --tty` under script.
    let mut args: Vec<String> = vec!["run".into()];
    args.extend(ctr.run_args());
    for a in [
        "--rm",
        "-t",
        image.as_str(),
        id_tty.as_str(),
        "sh",
        "-c",
        "tty; test -t 0 && test -t 1 && echo tty-ok; exit 4",
    ] {
        args.push(a.to_string());
    }
    let out = ctr.with_tty(&args);
    let text = tty_text(&out.stdout);
    observe(&mut obs, "run --tty: exit code", format!("{:?}", out.code));
    observe(
        &mut obs,
        "run --tty: output",
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("|"),
    );

    // Nothing is left in containerd, nor in the runtime's state.
    observe(
        &mut obs,
        "end: tasks",
        ctr.ctr(&["task", "ls", "-q"]).stdout.trim(),
    );
    observe(
        &mut obs,
        "end: containers",
        ctr.ctr(&["containers", "ls", "-q"]).stdout.trim(),
    );
    let left: Vec<String> = dir_entries(&ctr.runc_root.join(&ctr.ns))
        .into_iter()
        .collect();
    observe(&mut obs, "end: runtime state", left.join(","));
    let rm = ctr.ctr(&["images", "rm", &image]);
    rm.assert_ok();
    obs
}

#[test]
fn containerd_runs_nucleus_like_runc() {
    let _serial = SHARED_HOST_STATE.lock().unwrap_or_else(|e| e.into_inner());
    require!(root, busybox);
    require_tools!(
        "containerd",
        "ctr",
        "containerd-shim-runc-v2",
        "script",
        "tar"
    );
    let mut sb = Sandbox::new("nucleus-mgr-ctr-");
    let archive = build_image(&sb.dir("image"), &sb.io.clone());
    let sock = start_containerd(&mut sb, None);

    let ours = containerd_scenario(&mut sb, &sock, &archive, "nucleus", &nucleus());
    let theirs =
        tool("runc").map(|runc| containerd_scenario(&mut sb, &sock, &archive, "runc", &runc));
    print_side_by_side(
        "containerd (ctr → containerd-shim-runc-v2 → runtime)",
        &ours,
        theirs.as_ref(),
    );

    // What must hold for nucleus regardless of runc.
    assert_eq!(value(&ours, "run: exit code"), "Some(7)");
    assert_eq!(value(&ours, "run: stdout"), "out-line");
    assert_eq!(value(&ours, "run: stderr has the workload's line"), "true");
    assert_eq!(
        value(&ours, "run: process view"),
        "Some(0) pid=1 uid=0 cwd=/ path=/bin"
    );
    assert_eq!(
        value(&ours, "run missing binary: error names the binary"),
        "true"
    );
    assert_eq!(value(&ours, "run -d: status"), "RUNNING");
    assert_eq!(value(&ours, "task exec: exit code"), "Some(5)");
    assert_eq!(value(&ours, "task exec: stdout has output"), "true");
    assert_eq!(value(&ours, "task exec --cwd: stdout"), "Some(0) /tmp");
    assert_eq!(value(&ours, "task exec -t: on a pty"), "true");
    assert_eq!(value(&ours, "task pause: status"), "PAUSED");
    assert_eq!(value(&ours, "task resume: status"), "RUNNING");
    assert_eq!(value(&ours, "task exec -d: processes"), "2");
    assert_eq!(value(&ours, "task kill --all SIGKILL: status"), "STOPPED");
    assert_eq!(value(&ours, "task rm: reported exit status"), "137");
    assert_eq!(value(&ours, "task kill SIGTERM: reported exit status"), "3");
    assert_eq!(value(&ours, "run --tty: exit code"), "Some(4)");
    assert_eq!(value(&ours, "run --tty: output"), "/dev/pts/0|tty-ok");
    assert_eq!(value(&ours, "end: containers"), "");
    assert_eq!(value(&ours, "end: runtime state"), "");
    if let Some(theirs) = &theirs {
        assert_same(&ours, theirs);
    } else {
        eprintln!("note: runc is not installed; nucleus was not compared with it");
    }
    sb.finish();
}

// ---------------------------------------------------------------------------------------
// podman
// ---------------------------------------------------------------------------------------

struct Podman<'a> {
    sb: &'a Sandbox,
    runtime: PathBuf,
    cgroup_parent: String,
}

impl Podman<'_> {
    fn podman(&self, args: &[&str]) -> Out {
        let p = self.sb.path();
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", p.join("podman/containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", p.join("podman/storage.conf"))
            .env(
                "CONTAINERS_REGISTRIES_CONF",
                p.join("podman/registries.conf"),
            )
            .env("TMPDIR", p.join("tmp"))
            .arg("--root")
            .arg(p.join("podman/storage"))
            .arg("--runroot")
            .arg(p.join("podman/run"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
            ])
            .arg("--tmpdir")
            .arg(p.join("podman/libpod"))
            .arg("--runtime")
            .arg(&self.runtime)
            .args(args);
        self.sb.run(cmd)
    }

    /// `podman run --rm --net none --cgroup-parent P EXTRA... IMAGE CMD...`.
    fn run(&self, extra: &[&str], image: &str, cmd: &[&str]) -> Out {
        let mut args = vec![
            "run",
            "--net",
            "none",
            "--cgroup-parent",
            &self.cgroup_parent,
        ];
        args.extend_from_slice(extra);
        args.push(image);
        args.extend_from_slice(cmd);
        self.podman(&args)
    }

    fn status(&self, name: &str) -> String {
        self.podman(&["inspect", "--format", "{{.State.Status}}", name])
            .stdout
            .trim()
            .to_string()
    }
}

/// Writes podman's private configuration: nothing of the host's containers.conf,
/// storage.conf or registries.conf applies, and its locks, events, networks and temporary
/// files stay in the sandbox.
fn podman_config(sb: &Sandbox) {
    let p = sb.dir("podman");
    for d in [
        "storage", "run", "libpod", "net", "volumes", "static", "imgtmp",
    ] {
        sb.dir(&format!("podman/{d}"));
    }
    sb.dir("tmp");
    let conf = format!(
        r#"[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{p}/events.log"
lock_type = "file"
tmp_dir = "{p}/libpod"
static_dir = "{p}/static"
volume_path = "{p}/volumes"
image_copy_tmp_dir = "{p}/imgtmp"

[network]
network_config_dir = "{p}/net"
"#,
        p = p.display()
    );
    fs::write(p.join("containers.conf"), conf).expect("write containers.conf");
    let storage = format!(
        "[storage]\ndriver = \"vfs\"\nrunroot = \"{p}/run\"\ngraphroot = \"{p}/storage\"\n",
        p = p.display()
    );
    fs::write(p.join("storage.conf"), storage).expect("write storage.conf");
    fs::write(
        p.join("registries.conf"),
        "unqualified-search-registries = []\n",
    )
    .expect("write registries.conf");
}

/// The hard limit of `resource` in this process.
fn hard_limit(resource: nix::sys::resource::Resource) -> u64 {
    nix::sys::resource::getrlimit(resource)
        .map(|(_, hard)| hard)
        .unwrap_or(u64::MAX)
}

fn has_cap_sys_resource() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(str::trim)
        .unwrap_or("0");
    u64::from_str_radix(eff, 16).unwrap_or(0) & (1 << 24) != 0
}

/// The podman container ids (full) podman knows of.
fn podman_ids(pm: &Podman<'_>) -> Vec<String> {
    pm.podman(&["ps", "-a", "-q", "--no-trunc"])
        .stdout
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn podman_scenario(
    sb: &mut Sandbox,
    image: &str,
    label: &str,
    runtime: &Path,
    default_root: &str,
) -> Observations {
    let pid = std::process::id();
    let cgroup_parent = format!("{label}-mgr-podman-{pid}");
    sb.cgroup_parents.push(cgroup_parent.clone());
    // podman does not pass --root: the runtime keeps state in its default root.
    sb.host_dir(default_root, false);
    sb.runtime_roots
        .push((runtime.to_path_buf(), PathBuf::from(default_root)));
    let name = format!("{label}-podman-{pid}");
    let state_before = dir_entries(Path::new(default_root));
    let pm = Podman {
        sb,
        runtime: runtime.to_path_buf(),
        cgroup_parent: format!("/{cgroup_parent}"),
    };
    let mut obs = Observations::new();
    let mut ids = BTreeSet::new();

    let mut flags = vec!["--rm"];
    flags.extend_from_slice(ULIMITS);
    let out = pm.run(
        &flags,
        image,
        &["sh", "-c", "echo podman-out; echo podman-err >&2; exit 7"],
    );
    observe(&mut obs, "run --rm: exit code", format!("{:?}", out.code));
    observe(&mut obs, "run --rm: stdout", out.stdout.trim());
    observe(
        &mut obs,
        "run --rm: stderr has the workload's line",
        out.stderr.contains("podman-err").to_string(),
    );
    let out = pm.run(
        &flags,
        image,
        &[
            "sh",
            "-c",
            "echo pid=$$ uid=$(id -u); grep -E 'open files|processes' /proc/self/limits",
        ],
    );
    let view: Vec<String> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    observe(
        &mut obs,
        "run --rm: process view and rlimits",
        format!("{:?} {}", out.code, view.join("|")),
    );

    // podman's default rlimits are above this host's hard limits: without --ulimit the
    // runtime must fail, and say which limit.
    let expect_rlimit_failure = !has_cap_sys_resource()
        && hard_limit(nix::sys::resource::Resource::RLIMIT_NOFILE) < PODMAN_DEFAULT_RLIMIT;
    if expect_rlimit_failure {
        let out = pm.run(&["--rm"], image, &["true"]);
        observe(
            &mut obs,
            "run without --ulimit: exit code",
            format!("{:?}", out.code),
        );
        observe(
            &mut obs,
            "run without --ulimit: error names a rlimit",
            out.stderr.to_lowercase().contains("rlimit").to_string(),
        );
        observe(
            &mut obs,
            "run without --ulimit: single error (no failed cleanup)",
            (!out.stderr.contains("Removing container")).to_string(),
        );
        if runtime == nucleus() {
            assert!(
                out.stderr.contains("RLIMIT_NOFILE") || out.stderr.contains("RLIMIT_NPROC"),
                "the rlimit error must name the limit\n{out}"
            );
            assert!(
                out.stderr.contains("CAP_SYS_RESOURCE"),
                "the rlimit error must say what is missing\n{out}"
            );
        }
    }

    // Detached: exec (plain and with a terminal), pause/unpause, top, rm -f.
    let mut flags = vec!["-d", "--name", name.as_str()];
    flags.extend_from_slice(ULIMITS);
    let out = pm.run(&flags, image, &["sleep", "1000"]);
    observe(&mut obs, "run -d: exit code", format!("{:?}", out.code));
    ids.extend(podman_ids(&pm));
    observe(&mut obs, "run -d: status", pm.status(&name));
    let out = pm.podman(&["exec", &name, "sh", "-c", "echo exec-out; exit 4"]);
    observe(
        &mut obs,
        "exec: exit code and stdout",
        format!("{:?} {}", out.code, out.stdout.trim()),
    );
    let out = pm.podman(&["exec", &name, "/no/such/binary"]);
    observe(
        &mut obs,
        "exec missing binary: exit code",
        format!("{:?}", out.code),
    );
    let out = pm.podman(&["exec", "-t", &name, "tty"]);
    observe(
        &mut obs,
        "exec -t: output",
        format!("{:?} {}", out.code, tty_text(&out.stdout).trim()),
    );
    let out = pm.podman(&["pause", &name]);
    observe(&mut obs, "pause: exit code", format!("{:?}", out.code));
    observe(&mut obs, "pause: status", pm.status(&name));
    let out = pm.podman(&["unpause", &name]);
    observe(&mut obs, "unpause: exit code", format!("{:?}", out.code));
    observe(&mut obs, "unpause: status", pm.status(&name));
    let out = pm.podman(&["top", &name, "pid", "args"]);
    observe(
        &mut obs,
        "top",
        format!(
            "{:?} {}",
            out.code,
            out.stdout
                .lines()
                .skip(1)
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join("|")
        ),
    );
    let out = pm.podman(&["rm", "-f", "-t", "0", &name]);
    observe(&mut obs, "rm -f: exit code", format!("{:?}", out.code));

    observe(&mut obs, "end: containers", podman_ids(&pm).join(","));
    // podman's cleanup runs in conmon's exit command; wait for it to finish.
    let needle = sb.needle();
    wait_until(Duration::from_secs(60), || {
        processes_mentioning(&needle).is_empty()
    });
    // Dot entries are the runtime's own (nucleus's seccomp cache), not container state.
    let left: Vec<String> = dir_entries(Path::new(default_root))
        .difference(&state_before)
        .filter(|e| !e.starts_with('.'))
        .cloned()
        .collect();
    observe(&mut obs, "end: runtime state", format!("{left:?}"));
    sb.ids.extend(ids.iter().cloned());
    obs
}

#[test]
fn podman_runs_nucleus_like_runc() {
    let _serial = SHARED_HOST_STATE.lock().unwrap_or_else(|e| e.into_inner());
    require!(root, busybox);
    require_tools!("podman", "conmon", "tar");
    let mut sb = Sandbox::new("nucleus-mgr-podman-");
    // podman writes its blob-info cache to this fixed path when it loads an image.
    sb.host_dir("/var/lib/containers", true);
    let archive = build_image(&sb.dir("image"), &sb.io.clone());
    podman_config(&sb);
    let image = {
        let loader = Podman {
            sb: &sb,
            runtime: nucleus(),
            cgroup_parent: String::new(),
        };
        let load = loader.podman(&["load", "-i", &archive.to_string_lossy()]);
        load.assert_ok();
        load.stdout
            .lines()
            .find_map(|l| {
                l.strip_prefix("Loaded image: ")
                    .or_else(|| l.strip_prefix("Loaded image(s): "))
            })
            .unwrap_or_else(|| panic!("no image name in the load output\n{load}"))
            .trim()
            .to_string()
    };

    let ours = podman_scenario(&mut sb, &image, "nucleus", &nucleus(), "/run/nucleus");
    let theirs =
        tool("runc").map(|runc| podman_scenario(&mut sb, &image, "runc", &runc, "/run/runc"));
    print_side_by_side("podman (podman → conmon → runtime)", &ours, theirs.as_ref());

    assert_eq!(value(&ours, "run --rm: exit code"), "Some(7)");
    assert_eq!(value(&ours, "run --rm: stdout"), "podman-out");
    assert_eq!(
        value(&ours, "run --rm: stderr has the workload's line"),
        "true"
    );
    assert_eq!(
        value(&ours, "run --rm: process view and rlimits"),
        "Some(0) pid=1 uid=0|Max processes 1024 1024 processes|Max open files 1024 1024 files"
    );
    assert_eq!(value(&ours, "run -d: status"), "running");
    assert_eq!(
        value(&ours, "exec: exit code and stdout"),
        "Some(4) exec-out"
    );
    assert_eq!(value(&ours, "exec -t: output"), "Some(0) /dev/pts/0");
    assert_eq!(value(&ours, "pause: status"), "paused");
    assert_eq!(value(&ours, "unpause: status"), "running");
    assert_eq!(value(&ours, "rm -f: exit code"), "Some(0)");
    assert_eq!(value(&ours, "end: containers"), "");
    assert_eq!(value(&ours, "end: runtime state"), "[]");
    if let Some(theirs) = &theirs {
        assert_same(&ours, theirs);
    } else {
        eprintln!("note: runc is not installed; nucleus was not compared with it");
    }
    let rmi = Podman {
        sb: &sb,
        runtime: nucleus(),
        cgroup_parent: String::new(),
    }
    .podman(&["rmi", "-a", "-f"]);
    rmi.assert_ok();
    sb.finish();
}

// ---------------------------------------------------------------------------------------
// What the managers rely on that the OCI runtime spec does not write down
// ---------------------------------------------------------------------------------------

/// containerd's shim and podman's cleanup both call `delete --force` for a container that
/// may already be gone (after a failed create, or a second time); runc then succeeds
/// quietly, while a plain `delete` of an unknown container fails.
#[test]
fn force_delete_of_an_unknown_container_succeeds_like_runc() {
    require!(root);
    let sb = Sandbox::new("nucleus-mgr-delete-");
    let runtimes: Vec<PathBuf> = [Some(nucleus()), tool("runc")]
        .into_iter()
        .flatten()
        .collect();
    for runtime in &runtimes {
        let root = sb.dir(&format!(
            "root-{}",
            runtime.file_name().unwrap().to_string_lossy()
        ));
        let mut cmd = Command::new(runtime);
        cmd.arg("--root")
            .arg(&root)
            .args(["delete", "--force", "no-such-container"]);
        let out = sb.run(cmd);
        assert_eq!(out.code, Some(0), "{out}");
        assert_eq!(out.stderr, "", "{out}");
        let mut cmd = Command::new(runtime);
        cmd.arg("--root")
            .arg(&root)
            .args(["delete", "no-such-container"]);
        sb.run(cmd).assert_fail();
    }
    sb.finish();
}

/// containerd's CRI plugin deletes a task that has exited with `kill --all ID SIGKILL` first
/// (containerd's WithProcessKill); runc then succeeds, as nothing is left to signal, while a
/// plain `kill` of a stopped container fails. A failure there left StopContainer hanging.
#[test]
fn kill_all_of_a_stopped_container_succeeds_like_runc() {
    require!(root, busybox);
    let mut sb = Sandbox::new("nucleus-mgr-killall-");
    let runtimes: Vec<PathBuf> = [Some(nucleus()), tool("runc")]
        .into_iter()
        .flatten()
        .collect();
    for runtime in &runtimes {
        let name = runtime.file_name().unwrap().to_string_lossy().into_owned();
        let root = sb.dir(&format!("root-{name}"));
        let id = format!("killall-{name}-{}", std::process::id());
        sb.ids.insert(id.clone());
        sb.runtime_roots.push((runtime.clone(), root.clone()));
        let bundle = common::Bundle::new().with_args(&["true"]);
        bundle.write();
        let rt = |args: &[&str]| {
            let mut cmd = Command::new(runtime);
            cmd.arg("--root").arg(&root).args(args);
            sb.run(cmd)
        };
        rt(&["create", "--bundle", &bundle.path().to_string_lossy(), &id]).assert_ok();
        rt(&["start", &id]).assert_ok();
        let stopped = wait_until(Duration::from_secs(30), || {
            rt(&["state", &id])
                .stdout
                .contains(r#""status": "stopped""#)
                || rt(&["state", &id]).stdout.contains(r#""status":"stopped""#)
        });
        assert!(
            stopped,
            "{name}: the container did not stop\n{}",
            rt(&["state", &id])
        );
        let out = rt(&["kill", "--all", &id, "KILL"]);
        assert_eq!(
            out.code,
            Some(0),
            "{name}: kill --all of a stopped container\n{out}"
        );
        rt(&["kill", &id, "KILL"]).assert_fail();
        rt(&["delete", &id]).assert_ok();
    }
    sb.finish();
}

/// containerd selects gVisor through nucleus with an annotation alone: `ctr run
/// --runc-binary nucleus --annotation org.nucleus.runtime=gvisor` (needs runsc).
#[test]
fn containerd_selects_gvisor_through_nucleus() {
    let _serial = SHARED_HOST_STATE.lock().unwrap_or_else(|e| e.into_inner());
    require!(root, busybox);
    require_tools!("containerd", "ctr", "containerd-shim-runc-v2", "tar");
    if tool("runsc").is_none() {
        eprintln!("skipped: needs `runsc` (apt-get install runsc)");
        return;
    }
    let mut sb = Sandbox::new("nucleus-mgr-gvisor-");
    let archive = build_image(&sb.dir("image"), &sb.io.clone());
    let sock = start_containerd(&mut sb, None);
    let pid = std::process::id();
    let ns = format!("gvisor-mgr-{pid}");
    sb.cgroup_parents.push(ns.clone());
    let runc_root = sb.dir("runc-root/gvisor");
    sb.runtime_roots.push((nucleus(), runc_root.join(&ns)));
    let (id_run, id_bg) = (format!("gv-run-{pid}"), format!("gv-bg-{pid}"));
    sb.ids.extend([id_run.clone(), id_bg.clone()]);
    {
        let ctr = Ctr {
            sb: &sb,
            sock: sock.clone(),
            ns,
            runtime: nucleus(),
            runc_root,
            fifo_dir: sb.dir("fifo"),
        };
        let import = ctr.ctr(&[
            "images",
            "import",
            "--all-platforms",
            "--base-name",
            "localhost/nucleus",
            &archive.to_string_lossy(),
        ]);
        import.assert_ok();
        let image = import
            .stdout
            .split_whitespace()
            .skip_while(|w| *w != "unpacking")
            .nth(1)
            .unwrap_or_else(|| panic!("no image name in the import output\n{import}"))
            .to_string();
        let gvisor = [
            "--annotation",
            "org.nucleus.runtime=gvisor",
            "--annotation",
            "org.nucleus.gvisor.platform=ptrace",
        ];

        let mut flags = vec!["--rm"];
        flags.extend(gvisor);
        let out = ctr.run(&flags, &image, &id_run, &["sh", "-c", "cat /proc/version"]);
        out.assert_ok();
        assert!(
            out.stdout.starts_with("Linux version 4.4.0"),
            "gVisor's kernel, not the host's\n{out}"
        );

        let mut flags = vec!["-d"];
        flags.extend(gvisor);
        ctr.run(&flags, &image, &id_bg, &["sleep", "600"])
            .assert_ok();
        assert_eq!(ctr.wait_status(&id_bg, "RUNNING"), "RUNNING");
        let exec = ctr.ctr(&[
            "task",
            "exec",
            "--exec-id",
            "e1",
            &id_bg,
            "sh",
            "-c",
            "echo in-gvisor; exit 5",
        ]);
        assert_eq!(exec.code, Some(5), "{exec}");
        assert_eq!(exec.stdout.trim(), "in-gvisor", "{exec}");
        ctr.ctr(&["task", "kill", "-s", "SIGKILL", &id_bg])
            .assert_ok();
        ctr.wait_status(&id_bg, "STOPPED");
        ctr.ctr(&["task", "delete", &id_bg]).assert_ok();
        ctr.ctr(&["container", "delete", &id_bg]).assert_ok();
    }
    sb.finish();
}
