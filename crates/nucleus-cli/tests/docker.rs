//! Docker Engine drives nucleus as it drives runc: a private `dockerd` (Debian's docker.io)
//! registers nucleus with `--add-runtime`, and every scenario runs once with
//! `--runtime nucleus` and once with `--runtime runc`; what the `docker` user observes
//! (exit codes, output, states, the limits in the container's cgroup) must be the same.
//!
//! dockerd gets its own data root, exec root, pidfile, socket, daemon.json and cgroup
//! parent, no bridge and no iptables rules, and talks to a private containerd (the one
//! `managers.rs` uses, without its CRI plugin). The image is the busybox image of the
//! manager tests, loaded with `docker load`. The test ends by checking that no process,
//! mount, cgroup or runtime state was left, and a Drop guard removes what a failed test left.
//!
//! Needs root, `dockerd`, `docker`, `containerd` and `containerd-shim-runc-v2`; otherwise it
//! prints `skipped: <reason>` and passes.

#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::managers::*;
use common::Out;

/// The image's name once loaded.
const IMAGE: &str = "localhost/nucleus-docker:latest";

struct Docker<'a> {
    sb: &'a Sandbox,
    host: String,
    cli_config: PathBuf,
}

impl Docker<'_> {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_HOST", &self.host)
            .arg("--config")
            .arg(&self.cli_config)
            .args(args);
        cmd
    }

    fn docker(&self, args: &[&str]) -> Out {
        self.sb.run(self.command(args))
    }

    fn inspect(&self, name: &str, format: &str) -> String {
        self.docker(&["inspect", "--format", format, name])
            .stdout
            .trim()
            .to_string()
    }
}

/// Starts dockerd with every directory in the sandbox, nucleus registered as the
/// `nucleus` runtime, on the private containerd at `containerd`.
fn start_dockerd<'a>(sb: &'a mut Sandbox, containerd: &Path, cgroup_parent: &str) -> Docker<'a> {
    let base = sb.dir("docker");
    // dockerd 20.10 writes its identity key to this fixed path, and makes the plugin dir.
    // Parents first: they are removed last.
    sb.host_dir("/etc/docker/key.json", false);
    sb.host_dir("/run/docker", false);
    sb.host_dir("/run/docker/plugins", false);
    sb.cgroup_parents.push(cgroup_parent.to_string());
    std::fs::write(base.join("daemon.json"), "{}").expect("write daemon.json");
    let sock = base.join("docker.sock");
    let mut cmd = Command::new("dockerd");
    cmd.arg("--config-file")
        .arg(base.join("daemon.json"))
        .arg("--data-root")
        .arg(base.join("data"))
        .arg("--exec-root")
        .arg(base.join("exec"))
        .arg("--pidfile")
        .arg(base.join("docker.pid"))
        .arg("--host")
        .arg(format!("unix://{}", sock.display()))
        .arg("--containerd")
        .arg(containerd)
        .args([
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
            "--ip-forward=false",
        ])
        .args([
            "--userland-proxy=false",
            "--storage-driver",
            "vfs",
            "--exec-opt",
            "native.cgroupdriver=cgroupfs",
        ])
        .arg("--cgroup-parent")
        .arg(cgroup_parent)
        .arg("--add-runtime")
        .arg(format!("nucleus={}", nucleus().display()));
    let host = format!("unix://{}", sock.display());
    let cli_config = sb.dir("docker/cli");
    let probe = {
        let (host, cli_config) = (host.clone(), cli_config.clone());
        move || {
            let mut cmd = Command::new("docker");
            cmd.env("DOCKER_HOST", &host)
                .arg("--config")
                .arg(&cli_config)
                .arg("version");
            sock.exists() && quietly_succeeds(cmd)
        }
    };
    start_daemon(sb, cmd, &base.join("dockerd.log"), probe);
    Docker {
        sb,
        host,
        cli_config,
    }
}

/// `FILE` of the container's own cgroup, as the host sees it (`None`: no such file).
fn cgroup_file(pid: &str, file: &str) -> Option<String> {
    let pid: i32 = pid.parse().ok()?;
    common::cgroup_dirs(pid)
        .iter()
        .find_map(|d| std::fs::read_to_string(d.join(file)).ok())
        .map(|s| s.trim().to_string())
}

/// The ids of every container this dockerd created (for the leak checks).
fn created_ids(dk: &Docker<'_>) -> Vec<String> {
    // `--until` ends the stream; a second's wait puts the last event before it.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let until = until.to_string();
    let out = dk.docker(&[
        "events",
        "--since",
        "0",
        "--until",
        &until,
        "--filter",
        "event=create",
        "--format",
        "{{.Actor.ID}}",
    ]);
    out.assert_ok();
    out.stdout.split_whitespace().map(str::to_string).collect()
}

/// The scenario, with `--runtime runtime`.
fn docker_scenario(dk: &Docker<'_>, runtime: &str) -> Observations {
    let name = format!("{runtime}-docker-{}", std::process::id());
    let run = |extra: &[&str], cmd: &[&str]| {
        let mut args = vec!["run", "--network", "none", "--runtime", runtime];
        args.extend_from_slice(extra);
        args.push(IMAGE);
        args.extend_from_slice(cmd);
        dk.docker(&args)
    };
    let mut obs = Observations::new();

    // Foreground: output, exit code, the process's view; a missing binary; a terminal.
    let out = run(
        &["--rm"],
        &["sh", "-c", "echo out-line; echo err-line >&2; exit 7"],
    );
    observe(&mut obs, "run: exit code", format!("{:?}", out.code));
    observe(&mut obs, "run: stdout", out.stdout.trim());
    observe(&mut obs, "run: stderr", out.stderr.trim());
    let out = run(
        &["--rm"],
        &["sh", "-c", "echo pid=$$ uid=$(id -u) cwd=$(pwd) path=$PATH"],
    );
    observe(
        &mut obs,
        "run: process view",
        format!("{:?} {}", out.code, out.stdout.trim()),
    );
    let out = run(&["--rm"], &["/no/such/binary"]);
    observe(
        &mut obs,
        "run missing binary: exit code",
        format!("{:?}", out.code),
    );
    observe(
        &mut obs,
        "run missing binary: error names the binary",
        out.stderr.contains("/no/such/binary").to_string(),
    );
    let out = run(&["--rm", "-t"], &["sh", "-c", "tty; exit 4"]);
    observe(
        &mut obs,
        "run -t: output",
        format!("{:?} {}", out.code, tty_text(&out.stdout).trim()),
    );
    // Out of memory: the kernel kills the process, and Docker hears of it from the shim.
    // The hog waits a second (the shim watches for OOM only once `start` has returned)
    // and the shell outlives it, so that the OOM event comes before the exit event:
    // dockerd records OOMKilled only then, with either runtime.
    let oom = format!("{name}-oom");
    let hog = "sleep 1; dd if=/dev/zero of=/dev/null bs=64M count=1; st=$?; sleep 1; exit $st";
    let out = run(&["--name", &oom, "--memory", "8m"], &["sh", "-c", hog]);
    observe(
        &mut obs,
        "run out of memory: exit code",
        format!("{:?}", out.code),
    );
    observe(
        &mut obs,
        "run out of memory: OOMKilled",
        dk.inspect(&oom, "{{.State.OOMKilled}}"),
    );
    dk.docker(&["rm", &oom]).assert_ok();

    // Detached, with limits: logs, exec, stats, update, pause/unpause, top, stop, rm.
    let script = "trap 'exit 3' TERM; echo started; while :; do sleep 0.1; done";
    let limits = [
        "--memory",
        "32m",
        "--cpu-shares",
        "512",
        "--pids-limit",
        "50",
    ];
    let out = run(
        &[&["-d", "--name", &name][..], &limits[..]].concat(),
        &["sh", "-c", script],
    );
    observe(&mut obs, "run -d: exit code", format!("{:?}", out.code));
    observe(
        &mut obs,
        "run -d: status",
        dk.inspect(&name, "{{.State.Status}}"),
    );
    let pid = dk.inspect(&name, "{{.State.Pid}}");
    for file in [
        "memory.limit_in_bytes",
        "cpu.shares",
        "pids.max",
        "blkio.bfq.weight",
    ] {
        observe(
            &mut obs,
            &format!("run -d: cgroup {file}"),
            format!("{:?}", cgroup_file(&pid, file)),
        );
    }
    common::wait_until(std::time::Duration::from_secs(30), || {
        dk.docker(&["logs", &name]).stdout.contains("started")
    });
    let out = dk.docker(&["logs", &name]);
    observe(
        &mut obs,
        "logs",
        format!("{:?} {}", out.code, out.stdout.trim()),
    );
    let out = dk.docker(&["exec", &name, "sh", "-c", "echo exec-out $(id -u); exit 4"]);
    observe(
        &mut obs,
        "exec: exit code and stdout",
        format!("{:?} {}", out.code, out.stdout.trim()),
    );
    let out = dk.docker(&["exec", "-w", "/tmp", "-u", "0", &name, "pwd"]);
    observe(
        &mut obs,
        "exec -w: stdout",
        format!("{:?} {}", out.code, out.stdout.trim()),
    );
    let out = dk.docker(&["exec", &name, "/no/such/binary"]);
    observe(
        &mut obs,
        "exec missing binary: exit code",
        format!("{:?}", out.code),
    );
    let out = dk.docker(&["exec", "-t", &name, "tty"]);
    observe(
        &mut obs,
        "exec -t: output",
        format!("{:?} {}", out.code, tty_text(&out.stdout).trim()),
    );
    let out = dk.docker(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.MemUsage}}|{{.PIDs}}",
        &name,
    ]);
    let limit = out
        .stdout
        .trim()
        .split_once(" / ")
        .map(|(_, rest)| rest.to_string())
        .unwrap_or_default();
    observe(&mut obs, "stats: exit code", format!("{:?}", out.code));
    observe(&mut obs, "stats: memory limit and pids", limit);
    let out = dk.docker(&[
        "update",
        "--memory",
        "64m",
        "--memory-swap",
        "128m",
        "--cpu-shares",
        "256",
        &name,
    ]);
    observe(&mut obs, "update: exit code", format!("{:?}", out.code));
    for file in [
        "memory.limit_in_bytes",
        "memory.memsw.limit_in_bytes",
        "cpu.shares",
    ] {
        observe(
            &mut obs,
            &format!("update: cgroup {file}"),
            format!("{:?}", cgroup_file(&pid, file)),
        );
    }
    // What the container itself reads: its own cgroup, not the host's hierarchy.
    let seen = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.shares; ls /sys/fs/cgroup/memory | grep -c -e '-docker-'";
    let out = dk.docker(&["exec", &name, "sh", "-c", seen]);
    observe(
        &mut obs,
        "update: the container's own view",
        format!(
            "{:?} {}",
            out.code,
            out.stdout.split_whitespace().collect::<Vec<_>>().join(" ")
        ),
    );
    let out = dk.docker(&["pause", &name]);
    observe(&mut obs, "pause: exit code", format!("{:?}", out.code));
    observe(
        &mut obs,
        "pause: status",
        dk.inspect(&name, "{{.State.Status}}"),
    );
    observe(
        &mut obs,
        "pause: freezer",
        format!("{:?}", cgroup_file(&pid, "freezer.state")),
    );
    let out = dk.docker(&["unpause", &name]);
    observe(&mut obs, "unpause: exit code", format!("{:?}", out.code));
    observe(
        &mut obs,
        "unpause: status",
        dk.inspect(&name, "{{.State.Status}}"),
    );
    let out = dk.docker(&["top", &name]);
    let rows: Vec<&str> = out.stdout.lines().skip(1).collect();
    let workload = rows.iter().any(|r| r.contains("sh -c trap"));
    observe(
        &mut obs,
        "top: exit code and the workload listed",
        format!("{:?} {workload}", out.code),
    );
    let out = dk.docker(&["stop", "-t", "30", &name]);
    observe(&mut obs, "stop: exit code", format!("{:?}", out.code));
    observe(
        &mut obs,
        "stop: status and exit code",
        dk.inspect(&name, "{{.State.Status}} {{.State.ExitCode}}"),
    );
    let out = dk.docker(&["rm", &name]);
    observe(&mut obs, "rm: exit code", format!("{:?}", out.code));

    // A container killed by SIGKILL, then removed with `rm -f` while running.
    let out = run(&["-d", "--name", &name], &["sleep", "1000"]);
    observe(
        &mut obs,
        "run -d (sleep): exit code",
        format!("{:?}", out.code),
    );
    let out = dk.docker(&["kill", &name]);
    observe(&mut obs, "kill: exit code", format!("{:?}", out.code));
    common::wait_until(std::time::Duration::from_secs(30), || {
        dk.inspect(&name, "{{.State.Status}}") == "exited"
    });
    observe(
        &mut obs,
        "kill: status and exit code",
        dk.inspect(&name, "{{.State.Status}} {{.State.ExitCode}}"),
    );
    dk.docker(&["rm", &name]).assert_ok();
    let out = run(&["-d", "--name", &name], &["sleep", "1000"]);
    observe(
        &mut obs,
        "run -d (rm -f): exit code",
        format!("{:?}", out.code),
    );
    let out = dk.docker(&["rm", "-f", &name]);
    observe(&mut obs, "rm -f: exit code", format!("{:?}", out.code));

    observe(
        &mut obs,
        "end: containers",
        dk.docker(&["ps", "-aq"]).stdout.trim(),
    );
    obs
}

#[test]
fn docker_runs_nucleus_like_runc() {
    let _serial = SHARED_HOST_STATE.lock().unwrap_or_else(|e| e.into_inner());
    require!(root, busybox);
    require_tools!(
        "dockerd",
        "docker",
        "containerd",
        "containerd-shim-runc-v2",
        "tar"
    );
    let mut sb = Sandbox::new("nucleus-docker-");
    let archive = build_docker_image(&sb.dir("image"), &sb.io.clone(), IMAGE);
    let containerd = start_containerd(&mut sb, None);
    let cgroup_parent = format!("nucleus-docker-{}", std::process::id());
    // The shim passes `--root <exec-root>/runtime-runc/moby` to either runtime.
    let runtime_root = sb.path().join("docker/exec/runtime-runc/moby");
    sb.runtime_roots.push((nucleus(), runtime_root.clone()));
    if let Some(runc) = tool("runc") {
        sb.runtime_roots.push((runc, runtime_root.clone()));
    }
    let (ours, theirs, ids) = {
        let dk = start_dockerd(&mut sb, &containerd, &cgroup_parent);
        let load = dk.docker(&["load", "-i", &archive.to_string_lossy()]);
        load.assert_ok();
        let ours = docker_scenario(&dk, "nucleus");
        let theirs = tool("runc").map(|_| docker_scenario(&dk, "runc"));
        dk.docker(&["rmi", IMAGE]).assert_ok();
        (ours, theirs, created_ids(&dk))
    };
    sb.ids.extend(ids);
    print_side_by_side(
        "Docker Engine (dockerd → containerd → containerd-shim-runc-v2 → runtime)",
        &ours,
        theirs.as_ref(),
    );

    // What must hold for nucleus regardless of runc.
    assert_eq!(value(&ours, "run: exit code"), "Some(7)");
    assert_eq!(value(&ours, "run: stdout"), "out-line");
    assert_eq!(value(&ours, "run: stderr"), "err-line");
    assert_eq!(
        value(&ours, "run: process view"),
        "Some(0) pid=1 uid=0 cwd=/ path=/bin"
    );
    assert_eq!(value(&ours, "run -t: output"), "Some(4) /dev/pts/0");
    assert_eq!(value(&ours, "run out of memory: exit code"), "Some(137)");
    assert_eq!(value(&ours, "run out of memory: OOMKilled"), "true");
    assert_eq!(value(&ours, "run -d: status"), "running");
    assert_eq!(
        value(&ours, "run -d: cgroup memory.limit_in_bytes"),
        "Some(\"33554432\")"
    );
    assert_eq!(value(&ours, "run -d: cgroup cpu.shares"), "Some(\"512\")");
    assert_eq!(value(&ours, "run -d: cgroup pids.max"), "Some(\"50\")");
    assert_eq!(value(&ours, "logs"), "Some(0) started");
    assert_eq!(
        value(&ours, "exec: exit code and stdout"),
        "Some(4) exec-out 0"
    );
    assert_eq!(value(&ours, "exec -w: stdout"), "Some(0) /tmp");
    assert_eq!(value(&ours, "exec -t: output"), "Some(0) /dev/pts/0");
    assert_eq!(value(&ours, "update: exit code"), "Some(0)");
    assert_eq!(
        value(&ours, "update: cgroup memory.limit_in_bytes"),
        "Some(\"67108864\")"
    );
    assert_eq!(value(&ours, "update: cgroup cpu.shares"), "Some(\"256\")");
    assert_eq!(
        value(&ours, "update: the container's own view"),
        "Some(1) 67108864 256 0"
    );
    assert_eq!(value(&ours, "pause: status"), "paused");
    assert_eq!(value(&ours, "unpause: status"), "running");
    assert_eq!(
        value(&ours, "top: exit code and the workload listed"),
        "Some(0) true"
    );
    assert_eq!(value(&ours, "stop: status and exit code"), "exited 3");
    assert_eq!(value(&ours, "kill: status and exit code"), "exited 137");
    assert_eq!(value(&ours, "rm -f: exit code"), "Some(0)");
    assert_eq!(value(&ours, "end: containers"), "");
    if let Some(theirs) = &theirs {
        assert_same(&ours, theirs);
    } else {
        eprintln!("note: runc is not installed; nucleus was not compared with it");
    }
    sb.finish();
}
