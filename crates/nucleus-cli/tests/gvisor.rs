//! The gVisor backend on Debian's runsc and its ptrace platform, through an
//! OCI bundle's `org.nucleus.runtime=gvisor` annotation and through the
//! docker-like `run --runtime gvisor`: the workload sees gVisor's kernel, the
//! verbs work through runsc, fields gVisor cannot honour are refused by name,
//! and nothing is left afterwards (no runsc process, state or cgroup), even
//! after runsc's own processes are killed.
//!
//! Under gVisor a regular file as stdout is written at the sentry's own
//! offset per process, so each script prints from one process only.

#[macro_use]
mod common;

use common::{wait_until, Bundle, Ctx};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

const RUNSC: &str = "/usr/bin/runsc";

/// Skips unless root, busybox and runsc are there.
macro_rules! require_gvisor {
    () => {
        require!(root, busybox);
        if !Path::new(RUNSC).is_file() {
            eprintln!("skipped: needs {RUNSC} (apt-get install runsc)");
            return;
        }
    };
}

/// A default busybox bundle selecting gVisor on the ptrace platform.
fn gvisor(ctx: &Ctx) -> Bundle {
    ctx.bundle().edit(|s| {
        s["annotations"] = json!({
            "org.nucleus.runtime": "gvisor",
            "org.nucleus.gvisor.platform": "ptrace",
        });
    })
}

/// Host processes that belong to runsc under this test's root.
fn runsc_processes(root: &Path) -> Vec<String> {
    let needle = root.to_string_lossy().into_owned();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains("runsc") && text.contains(&needle) {
            out.push(format!("{}: {text}", entry.file_name().to_string_lossy()));
        }
    }
    out
}

/// The sandbox cgroup of `id` (`nucleus-<id>`, beneath our own) in any hierarchy.
fn sandbox_cgroups(id: &str) -> Vec<String> {
    fn walk(dir: &Path, name: &str, depth: u32, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if e.file_name() == name {
                out.push(e.path().display().to_string());
            } else if depth > 0 {
                walk(&e.path(), name, depth - 1, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(
        Path::new("/sys/fs/cgroup"),
        &format!("nucleus-{id}"),
        4,
        &mut out,
    );
    out
}

/// The gVisor-specific leak checks, then the harness's own.
#[track_caller]
fn finish(ctx: Ctx, ids: &[&str]) {
    finish_with(ctx, ids, Ctx::finish)
}

#[track_caller]
fn finish_with(ctx: Ctx, ids: &[&str], last: fn(Ctx)) {
    let root = ctx.root().to_path_buf();
    for id in ids {
        ctx.rt(&["delete", "--force", id]);
    }
    let gone = wait_until(Duration::from_secs(5), || runsc_processes(&root).is_empty());
    assert!(gone, "runsc processes left: {:?}", runsc_processes(&root));
    for id in ids {
        assert!(
            sandbox_cgroups(id).is_empty(),
            "sandbox cgroups left: {:?}",
            sandbox_cgroups(id)
        );
    }
    last(ctx);
}

#[test]
fn run_reports_exit_codes_and_gvisor_kernel() {
    require_gvisor!();
    let ctx = Ctx::new();
    let out = ctx.run(&gvisor(&ctx).with_sh("cat /proc/version; exit 3"));
    assert_eq!(out.code, Some(3), "{out}");
    let host = std::fs::read_to_string("/proc/version").unwrap();
    assert_ne!(
        out.out(),
        host.trim(),
        "the workload saw the host kernel\n{out}"
    );
    // gVisor's sentry reports its own fixed Linux version.
    assert!(out.out().starts_with("Linux version 4.4.0"), "{out}");

    let out = ctx.run(&gvisor(&ctx).with_sh("kill -9 $$"));
    assert_eq!(out.code, Some(137), "{out}");
    let out = ctx.run(&gvisor(&ctx).with_args(&["/no/such/binary"]));
    out.assert_fail();
    finish(ctx, &[]);
}

#[test]
fn env_user_and_cwd_reach_the_workload() {
    require_gvisor!();
    let ctx = Ctx::new();
    let bundle = gvisor(&ctx)
        .with_env("GREETING=hello gvisor")
        .with_cwd("/tmp")
        .edit(|s| s["process"]["user"] = json!({"uid": 1000, "gid": 1001}))
        .with_sh("echo \"$GREETING|$(id -u):$(id -g)|$(pwd)\"");
    let out = ctx.run(&bundle);
    out.assert_ok();
    assert_eq!(out.out(), "hello gvisor|1000:1001|/tmp", "{out}");
    finish(ctx, &[]);
}

#[test]
fn writes_outside_a_volume_are_refused() {
    require_gvisor!();
    let ctx = Ctx::new();
    let vol = ctx.scratch("vol");
    let bundle = gvisor(&ctx).with_bind(&vol, "/data", &[]).with_sh(
        "echo x > /data/ok && echo volume-ok; echo x > /etc/nope 2>/dev/null || echo root-refused",
    );
    let out = ctx.run(&bundle);
    out.assert_ok();
    assert_eq!(out.out(), "volume-ok\nroot-refused", "{out}");
    assert_eq!(std::fs::read_to_string(vol.join("ok")).unwrap(), "x\n");
    assert!(!bundle.rootfs().join("etc/nope").exists());
    finish(ctx, &[]);
}

#[test]
fn detached_lifecycle_exec_pause_resume() {
    require_gvisor!();
    let ctx = Ctx::new();
    let id = ctx.id();
    let bundle = gvisor(&ctx).with_sh("trap 'exit 7' TERM; while :; do sleep 0.1; done");
    ctx.create(&bundle, &id);
    assert_eq!(ctx.status(&id).as_deref(), Some("created"));
    let sandbox = ctx.pid(&id);
    assert!(
        std::fs::read_to_string(format!("/proc/{sandbox}/cmdline"))
            .unwrap()
            .starts_with("runsc-sandbox"),
        "the recorded pid is runsc's sandbox"
    );
    ctx.start(&id);
    assert_eq!(ctx.status(&id).as_deref(), Some("running"));
    let list = ctx.rt(&["list", "--format", "json"]);
    assert!(list.assert_ok().stdout.contains(&*id), "{list}");

    let out = ctx.rt(&["exec", &id, "sh", "-c", "echo in-sandbox; exit 5"]);
    assert_eq!(out.code, Some(5), "{out}");
    assert_eq!(out.out(), "in-sandbox");

    ctx.rt(&["pause", &id]).assert_ok();
    assert_eq!(ctx.status(&id).as_deref(), Some("paused"));
    ctx.rt(&["exec", &id, "true"]).assert_fail();
    ctx.rt(&["resume", &id]).assert_ok();
    assert_eq!(ctx.status(&id).as_deref(), Some("running"));
    ctx.rt(&["delete", &id]).assert_fail();

    ctx.kill(&id, "TERM");
    ctx.wait_status(&id, "stopped");
    ctx.delete(&id);
    assert!(ctx.status(&id).is_none());
    finish(ctx, &[&id]);
}

#[test]
fn delete_force_cleans_up_after_runsc_is_killed() {
    require_gvisor!();
    let ctx = Ctx::new();
    let id = ctx.id();
    let bundle = gvisor(&ctx).with_args(&["sleep", "600"]);
    ctx.create(&bundle, &id);
    ctx.start(&id);
    assert!(!sandbox_cgroups(&id).is_empty(), "the sandbox has a cgroup");
    // A crash: every runsc process of this container dies at once.
    for p in runsc_processes(ctx.root()) {
        let pid: i32 = p.split(':').next().unwrap().parse().unwrap();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    ctx.wait_status(&id, "stopped");
    ctx.rt(&["delete", "--force", &id]).assert_ok();
    assert!(ctx.status(&id).is_none());
    finish(ctx, &[&id]);
}

#[test]
fn memory_limit_applies_to_the_sandbox() {
    require_gvisor!();
    let ctx = Ctx::new();
    // 32 MiB, then a 60 MB shell variable: the host memory cgroup kills the sandbox.
    let bundle = gvisor(&ctx)
        .edit(|s| s["linux"]["resources"]["memory"] = json!({"limit": 33554432}))
        .with_sh("echo started; x=$(head -c 60000000 /dev/zero | tr '\\0' a); echo survived ${#x}");
    let out = ctx.run(&bundle);
    assert!(out.stdout.starts_with("started"), "{out}");
    assert!(!out.stdout.contains("survived"), "{out}");
    assert_ne!(out.code, Some(0), "{out}");
    finish(ctx, &[]);
}

#[test]
fn unsupported_fields_are_refused_by_name() {
    require_gvisor!();
    let ctx = Ctx::new();
    let landlock = |b: Bundle| {
        b.edit(|s| s["annotations"]["org.nucleus.landlock"] = json!("min_abi = 1\n"))
            .with_args(&["true"])
    };
    let out = ctx.run(&landlock(gvisor(&ctx)));
    out.assert_fail();
    assert!(
        out.stderr
            .contains("annotations.org.nucleus.landlock: gVisor cannot honour it"),
        "{out}"
    );
    let degraded = landlock(gvisor(&ctx))
        .edit(|s| s["annotations"]["org.nucleus.allow-degraded-security"] = json!("true"));
    ctx.run(&degraded).assert_ok();

    let out = ctx.run(
        &gvisor(&ctx)
            .edit(|s| s["linux"]["sysctl"] = json!({"kernel.domainname": "x"}))
            .with_args(&["true"]),
    );
    out.assert_fail();
    assert!(
        out.stderr.contains("linux.sysctl: gVisor cannot honour it"),
        "{out}"
    );

    let out = ctx.run(
        &gvisor(&ctx)
            .edit(|s| s["annotations"]["org.nucleus.runtime"] = json!("kata"))
            .with_args(&["true"]),
    );
    out.assert_fail();
    assert!(
        out.stderr
            .contains("annotations.org.nucleus.runtime: must be `native` or `gvisor` (got `kata`)"),
        "{out}"
    );
    finish(ctx, &[]);
}

#[test]
fn a_platform_that_hangs_is_unavailable() {
    require_gvisor!();
    let ctx = Ctx::new();
    let bundle = gvisor(&ctx)
        .edit(|s| s["annotations"]["org.nucleus.gvisor.platform"] = json!("kvm"))
        .with_args(&["true"]);
    let out = ctx.run(&bundle);
    if out.success() {
        // A host where gVisor's kvm platform does work.
        finish(ctx, &[]);
        return;
    }
    assert!(
        out.stderr
            .contains("gVisor platform `kvm` is not available here"),
        "{out}"
    );
    assert!(out.stderr.contains("platforms that work: ptrace"), "{out}");
    let out = ctx.run(
        &gvisor(&ctx)
            .edit(|s| s["annotations"]["org.nucleus.gvisor.platform"] = json!("systrap"))
            .with_args(&["true"]),
    );
    out.assert_fail();
    assert!(out.stderr.contains("does not have it"), "{out}");
    finish(ctx, &[]);
}

/// `nucleus run --runtime gvisor --gvisor-platform ptrace ARGS`.
fn docker_run(ctx: &Ctx, args: &[&str]) -> common::Out {
    let mut all = vec!["run", "--runtime", "gvisor", "--gvisor-platform", "ptrace"];
    all.extend_from_slice(args);
    ctx.rt(&all)
}

#[test]
fn agent_sandbox_runs_under_gvisor() {
    require_gvisor!();
    let ctx = Ctx::new();
    let out = docker_run(
        &ctx,
        &[
            "--",
            "/bin/sh",
            "-c",
            "v=$(cat /proc/version); touch /usr/nucleus-x 2>/dev/null && r=rw || r=ro; \
             echo t > /tmp/t && t=$(cat /tmp/t); echo \"$v|$r|$t|$(id -u)\"; exit 4",
        ],
    );
    assert_eq!(out.code, Some(4), "{out}");
    let fields: Vec<&str> = out.out().split('|').collect();
    assert!(fields[0].starts_with("Linux version 4.4.0"), "{out}");
    assert_eq!(&fields[1..], ["ro", "t", "0"], "{out}");
    assert!(!Path::new("/usr/nucleus-x").exists());
    finish_with(ctx, &[], Ctx::finish_agent);
}

/// The agent profile's clone3 rule (ENOSYS natively, EPERM from a runsc
/// that ignores errnoRet) must not stop threads; namespaces stay refused.
#[test]
fn threads_start_under_the_agent_profile() {
    require_gvisor!();
    if !Path::new("/usr/bin/python3").exists() {
        eprintln!("skipped: needs python3");
        return;
    }
    let ctx = Ctx::new();
    let out = docker_run(
        &ctx,
        &[
            "--",
            "python3",
            "-c",
            "import threading; t = threading.Thread(target=print, args=('thread-ok',)); t.start(); t.join()",
        ],
    );
    out.assert_ok();
    assert_eq!(out.out(), "thread-ok", "{out}");
    finish_with(ctx, &[], Ctx::finish_agent);
}

#[test]
fn rootfs_sandbox_runs_under_gvisor() {
    require_gvisor!();
    let ctx = Ctx::new();
    let bundle = ctx.bundle();
    let rootfs = bundle.rootfs();
    let out = docker_run(
        &ctx,
        &[
            "--rootfs",
            rootfs.to_str().unwrap(),
            "-e",
            "K=v",
            "-w",
            "/tmp",
            "--",
            "sh",
            "-c",
            "echo \"$(cat /proc/version)|$K|$(pwd)\"",
        ],
    );
    out.assert_ok();
    let fields: Vec<&str> = out.out().split('|').collect();
    assert!(fields[0].starts_with("Linux version 4.4.0"), "{out}");
    assert_eq!(&fields[1..], ["v", "/tmp"], "{out}");
    finish_with(ctx, &[], Ctx::finish_agent);
}

#[test]
fn detached_gvisor_sandbox_is_managed_by_name() {
    require_gvisor!();
    let ctx = Ctx::new();
    let out = docker_run(
        &ctx,
        &[
            "-d",
            "--name",
            "gv",
            "--",
            "/bin/sh",
            "-c",
            "echo started; trap 'exit 5' TERM; while :; do sleep 0.1; done",
        ],
    );
    out.assert_ok();
    assert!(wait_until(Duration::from_secs(10), || ctx
        .rt(&["logs", "gv"])
        .stdout
        .contains("started")));
    let attach = ctx.rt(&["attach", "gv", "--", "/bin/sh", "-c", "echo inside"]);
    attach.assert_ok();
    assert_eq!(attach.out(), "inside", "{attach}");

    let inspect = ctx.rt(&["inspect", "gv"]).json();
    let rt = &inspect[0]["Runtime"];
    assert_eq!(rt["Name"], "gvisor", "{rt}");
    assert_eq!(rt["Platform"], "ptrace", "{rt}");
    assert_eq!(rt["Network"], "none", "{rt}");
    let by = |what: &str| {
        rt["Enforcement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["what"] == what)
            .map(|e| e["by"].as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    assert!(by("linux.seccomp").contains("--oci-seccomp"), "{rt}");
    assert!(by("syscalls").contains("sentry"), "{rt}");
    assert!(
        inspect[0]["Security"]["Landlock"].is_null(),
        "no agent Landlock under gVisor"
    );

    ctx.rt(&["stop", "-t", "5", "gv"]).assert_ok();
    let inspect = ctx.rt(&["inspect", "gv"]).json();
    assert_eq!(inspect[0]["State"]["ExitCode"], 5, "{inspect}");
    ctx.rt(&["rm", "gv"]).assert_ok();
    finish_with(ctx, &[], Ctx::finish_agent);
}

#[test]
fn gvisor_flags_are_checked_by_name() {
    require_gvisor!();
    let ctx = Ctx::new();
    let out = ctx.rt(&["run", "--runtime", "kata", "--", "true"]);
    assert_eq!(out.code, Some(125), "{out}");
    assert!(
        out.stderr.contains("--runtime") && out.stderr.contains("kata"),
        "{out}"
    );
    let out = ctx.rt(&["run", "--gvisor-platform", "ptrace", "--", "true"]);
    assert_eq!(out.code, Some(125), "{out}");
    assert!(out.stderr.contains("only with --runtime gvisor"), "{out}");
    let out = docker_run(&ctx, &["--gvisor-platform", "xen", "--", "true"]);
    assert_eq!(out.code, Some(125), "{out}");
    let policy = ctx.scratch("p").join("ll.toml");
    std::fs::write(
        &policy,
        "min_abi = 1\n[[rules]]\npath = \"/tmp\"\naccess = [\"read\"]\n",
    )
    .unwrap();
    let out = docker_run(
        &ctx,
        &["--landlock-policy", policy.to_str().unwrap(), "--", "true"],
    );
    assert_eq!(out.code, Some(125), "{out}");
    assert!(
        out.stderr.contains("annotations.org.nucleus.landlock"),
        "{out}"
    );

    let secret = ctx.scratch("s").join("token");
    std::fs::write(&secret, "x").unwrap();
    let arg = format!("{}:/run/secrets/token", secret.display());
    let out = docker_run(&ctx, &["--secret", &arg, "--", "true"]);
    assert_eq!(out.code, Some(125), "{out}");
    assert!(
        out.stderr.contains(".source") && out.stderr.contains("gofer"),
        "{out}"
    );
    finish_with(ctx, &[], Ctx::finish_agent);
}

/// A named network namespace joined to the host by a veth pair, removed on drop.
struct Netns {
    name: String,
    host_if: String,
}

impl Netns {
    fn new(tag: u32) -> Netns {
        let name = format!("gvt-{}-{tag}", std::process::id());
        let host_if = format!("gvh{}{tag}", std::process::id() % 100000);
        let ns_if = format!("gvn{}{tag}", std::process::id() % 100000);
        let net = Netns {
            name: name.clone(),
            host_if: host_if.clone(),
        };
        let ip = |args: &[&str]| {
            let out = std::process::Command::new("ip")
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "ip {args:?}: {out:?}");
        };
        ip(&["netns", "add", &name]);
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &name]);
        ip(&["addr", "add", "10.213.77.1/24", "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&["-n", &name, "addr", "add", "10.213.77.2/24", "dev", &ns_if]);
        ip(&["-n", &name, "link", "set", &ns_if, "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        net
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

#[test]
fn sandbox_network_reaches_a_server_over_a_veth() {
    require_gvisor!();
    let ctx = Ctx::new();
    let net = Netns::new(1);
    let listener = std::net::TcpListener::bind("10.213.77.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut conn, peer) = listener.accept().unwrap();
        let mut buf = [0u8; 5];
        conn.read_exact(&mut buf).unwrap();
        conn.write_all(b"pong\n").unwrap();
        (
            String::from_utf8_lossy(&buf).into_owned(),
            peer.ip().to_string(),
        )
    });
    let bundle = gvisor(&ctx)
        .edit(|s| {
            let ns = s["linux"]["namespaces"].as_array_mut().unwrap();
            ns.retain(|n| n["type"] != "network");
            ns.push(json!({"type": "network", "path": net.path()}));
        })
        .with_sh(&format!("echo ping | nc 10.213.77.1 {port}"));
    std::os::unix::fs::symlink("busybox", bundle.rootfs().join("bin/nc")).unwrap();
    // runsc is started with /proc/sys/net hidden where its check for the
    // host's namespace misfires (Debian's 2022 release on this kernel).
    let out = ctx.run(&bundle);
    out.assert_ok();
    assert_eq!(out.out(), "pong", "{out}");
    let (got, peer) = server.join().unwrap();
    assert_eq!(got, "ping\n");
    assert_eq!(peer, "10.213.77.2", "the connection came through the veth");
    drop(net);
    finish(ctx, &[]);
}

#[test]
fn docker_memory_limit_holds_under_gvisor() {
    require_gvisor!();
    let ctx = Ctx::new();
    let out = docker_run(
        &ctx,
        &[
            "--memory",
            "32m",
            "--",
            "/bin/sh",
            "-c",
            "echo started; x=$(head -c 60000000 /dev/zero | tr '\\0' a); echo survived ${#x}",
        ],
    );
    assert!(out.stdout.starts_with("started"), "{out}");
    assert!(!out.stdout.contains("survived"), "{out}");
    assert_ne!(out.code, Some(0), "{out}");
    finish_with(ctx, &[], Ctx::finish_agent);
}

#[test]
fn foreground_run_passes_signals_to_the_workload() {
    require_gvisor!();
    let ctx = Ctx::new();
    let id = ctx.id();
    let bundle = gvisor(&ctx)
        .with_sh("trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.1; done");
    bundle.write();
    let out_path = ctx.scratch("fg").join("out");
    let mut child = std::process::Command::new(common::runtime())
        .arg("--root")
        .arg(ctx.root())
        .args(["run", "--bundle"])
        .arg(bundle.path())
        .arg(&*id)
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string(&out_path)
            .unwrap_or_default()
            .contains("ready")
    }));
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(7),
        "the workload trapped TERM and exited 7"
    );
    assert!(std::fs::read_to_string(&out_path)
        .unwrap()
        .contains("got-term"));
    finish(ctx, &[&id]);
}

#[test]
fn image_container_runs_under_gvisor_and_leaves_nothing() {
    require_gvisor!();
    if let Some(reason) = common::registry::missing_tools() {
        eprintln!("skipped: {reason}");
        return;
    }
    let ctx = Ctx::new();
    let reg = common::registry::Registry::start();
    let work = tempfile::tempdir().unwrap();
    let layout = common::registry::busybox_layout(work.path());
    let image = reg.push(&layout, "bb", "test/gvisor:1");
    ctx.rt(&["pull", "-q", &image]).assert_ok();

    // The image's env and layers (whiteout applied) under gVisor's kernel, a writable root.
    let out = docker_run(
        &ctx,
        &[
            &image,
            "--",
            "/bin/sh",
            "-c",
            "test ! -e /gone && g=hidden; echo w > /w; \
             echo \"$(cat /proc/version)|$PATH|$(cat /added)|$g|$(cat /w)\"",
        ],
    );
    out.assert_ok();
    let fields: Vec<&str> = out.out().split('|').collect();
    assert!(fields[0].starts_with("Linux version 4.4.0"), "{out}");
    assert_eq!(&fields[1..], ["/bin", "new", "hidden", "w"], "{out}");
    // The image's own command (`/bin/sh`, reading an empty stdin) when none is given.
    docker_run(&ctx, &[&image]).assert_ok();
    // Detached: the overlay root lives until `rm`.
    let id = docker_run(&ctx, &["-d", &image, "--", "/bin/busybox", "sleep", "60"]);
    let id = id.assert_ok().stdout.trim().to_string();
    let roots = ctx.root().join(".image-roots");
    assert!(roots.join(&id).exists(), "no image root for {id}");
    // Removed at once, before runsc has finished setting it up.
    ctx.rt(&["rm", "-f", &id]).assert_ok();

    let left: Vec<_> = std::fs::read_dir(&roots)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "image roots left: {left:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = ctx.root().to_str().unwrap().to_string();
    assert!(!mounts.contains(&root), "mounts left under {root}");
    let users = ctx.data_root().join("users");
    let records: Vec<_> = std::fs::read_dir(&users).unwrap().flatten().collect();
    assert!(records.is_empty(), "image use records left: {records:?}");
    let _ = std::fs::remove_dir(&roots);
    finish_with(ctx, &[&id], Ctx::finish_agent);
}
