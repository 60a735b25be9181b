//! `exec`: a second process in a running container. It must land in every namespace and
//! cgroup of the container's init, get the container's seccomp filter, take the process
//! settings from the flags (or `--process`), and report its exit code.

#[macro_use]
mod common;

use std::fs;
use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    accept_until, cap_mask, install_sysprobe, parse_probe, pty_master, read_pty, recv_fd,
    status_field, Bundle, Ctx, DEFAULT_CAPS,
};
use serde_json::json;

/// The value of `Field:` in a /proc/PID/status dump.
/// A bundle whose init sleeps, so there is a running container to exec into.
fn sleeper(ctx: &Ctx) -> Bundle {
    ctx.bundle().with_args(&["sleep", "1000"])
}

/// `run -d` the bundle under `id`; returns the init's host pid once it is running.
#[track_caller]
fn run_detached(ctx: &Ctx, bundle: &Bundle, id: &str) -> i32 {
    ctx.run_with(bundle, id, &["-d"]).assert_ok();
    ctx.wait_status(id, "running");
    ctx.pid(id)
}

/// `exec ID sh -c SCRIPT` in the foreground.
fn exec_sh(ctx: &Ctx, id: &str, script: &str) -> common::Out {
    ctx.rt(&["exec", id, "sh", "-c", script])
}

/// Reads the pid a `--pid-file` holds, waiting for it to appear.
#[track_caller]
fn read_pid_file(path: &Path) -> i32 {
    let mut text = String::new();
    let found = common::wait_until(Duration::from_secs(10), || {
        text = fs::read_to_string(path).unwrap_or_default();
        !text.trim().is_empty()
    });
    assert!(found, "pid file {} never written", path.display());
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("pid file holds {text:?}"))
}

/// `readlink /proc/PID/ns/KIND` from the host.
fn ns_of(pid: i32, kind: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .unwrap_or_else(|e| panic!("readlink /proc/{pid}/ns/{kind}: {e}"))
        .to_string_lossy()
        .into_owned()
}

#[test]
fn exec_lands_in_the_containers_namespaces() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = sleeper(&ctx).with_hostname("exec-box");
    fs::write(bundle.rootfs().join("etc/marker"), "inside-the-rootfs\n").unwrap();
    let id = ctx.id();
    let init = run_detached(&ctx, &bundle, &id);

    let out = exec_sh(
        &ctx,
        &id,
        "readlink /proc/self/ns/pid; readlink /proc/1/ns/pid; tr '\\0' ' ' < /proc/1/cmdline; echo; \
         readlink /proc/self/ns/mnt; readlink /proc/self/ns/uts; hostname; cat /etc/marker; \
         ps -o pid,comm",
    );
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[0],
        ns_of(init, "pid"),
        "exec is not in the init's pid namespace\n{out}"
    );
    assert_eq!(
        lines[1], lines[0],
        "pid 1 is in another pid namespace\n{out}"
    );
    assert_eq!(
        lines[2].trim(),
        "sleep 1000",
        "pid 1 is not the container's init\n{out}"
    );
    assert_eq!(
        lines[3],
        ns_of(init, "mnt"),
        "exec is not in the init's mount namespace\n{out}"
    );
    assert_eq!(
        lines[4],
        ns_of(init, "uts"),
        "exec is not in the init's uts namespace\n{out}"
    );
    assert_eq!(lines[5], "exec-box", "{out}");
    assert_eq!(
        lines[6], "inside-the-rootfs",
        "exec does not see the container's rootfs\n{out}"
    );
    // busybox ps: "PID   COMMAND"; pid 1 is the sleeping init, no host process is listed.
    let procs: Vec<(String, String)> = lines[8..]
        .iter()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.to_string(), f.next()?.to_string()))
        })
        .collect();
    assert!(
        procs.contains(&("1".to_string(), "sleep".to_string())),
        "ps does not show the init as pid 1\n{out}"
    );
    assert!(procs.len() <= 4, "host processes visible to exec\n{out}");

    // From the host: a detached exec shares every namespace of the init.
    let pid_file = ctx.scratch("exec").join("pid");
    ctx.rt(&[
        "exec",
        "-d",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
        "sleep",
        "1000",
    ])
    .assert_ok();
    let pid = read_pid_file(&pid_file);
    ctx.record_pid(pid);
    assert_ne!(pid, init);
    for kind in ["pid", "mnt", "uts", "ipc", "net", "cgroup"] {
        assert_eq!(
            ns_of(pid, kind),
            ns_of(init, kind),
            "{kind} namespace differs"
        );
    }
    assert_eq!(
        fs::read_link(format!("/proc/{pid}/root")).unwrap(),
        fs::read_link(format!("/proc/{init}/root")).unwrap()
    );

    ctx.rt(&["delete", "--force", &id]).assert_ok();
    ctx.finish();
}

#[test]
fn exec_is_placed_in_the_containers_cgroups() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let id = ctx.id();
    let bundle = sleeper(&ctx);
    let init = run_detached(&ctx, &bundle, &id);
    let pid_file = ctx.scratch("exec").join("pid");
    ctx.rt(&[
        "exec",
        "--detach",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
        "sleep",
        "1000",
    ])
    .assert_ok();
    let pid = read_pid_file(&pid_file);
    ctx.record_pid(pid);
    assert!(
        common::pid_alive(pid),
        "detached exec process {pid} is not running"
    );

    let cgroup = |pid: i32| fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let (ours, theirs) = (cgroup(pid), cgroup(init));
    assert_eq!(
        ours, theirs,
        "exec process {pid} is in other cgroups than init {init}"
    );
    assert_ne!(
        theirs,
        cgroup(std::process::id() as i32),
        "the container is in the test's own cgroup, so this proves nothing"
    );
    // The container's cgroup lists both processes.
    let dirs = common::cgroup_dirs(init);
    assert!(!dirs.is_empty(), "no cgroup dirs for init {init}");
    for dir in &dirs {
        let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        let procs: Vec<&str> = procs.lines().collect();
        assert!(
            procs.contains(&pid.to_string().as_str()) && procs.contains(&init.to_string().as_str()),
            "{} lists {procs:?}, not both {init} and {pid}",
            dir.display()
        );
    }

    ctx.rt(&["delete", "--force", &id]).assert_ok();
    assert!(
        common::wait_until(Duration::from_secs(5), || !common::pid_alive(pid)),
        "exec process {pid} survived delete --force"
    );
    ctx.finish();
}

#[test]
fn exec_returns_the_process_exit_code() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let id = ctx.id();
    let bundle = sleeper(&ctx);
    run_detached(&ctx, &bundle, &id);

    let out = exec_sh(&ctx, &id, "exit 9");
    assert_eq!(out.code, Some(9), "{out}");
    let out = exec_sh(&ctx, &id, "exit 0");
    assert_eq!(out.code, Some(0), "{out}");
    let killed = exec_sh(&ctx, &id, "kill -9 $$");
    assert_eq!(
        killed.code,
        Some(137),
        "SIGKILL should give 128+9\n{killed}"
    );
    let killed = exec_sh(&ctx, &id, "kill -TERM $$");
    assert_eq!(
        killed.code,
        Some(143),
        "SIGTERM should give 128+15\n{killed}"
    );
    // Output reaches the caller and the container keeps running.
    let out = exec_sh(&ctx, &id, "echo out; echo err >&2");
    out.assert_ok();
    assert_eq!(out.out(), "out");
    assert!(out.stderr.contains("err"), "{out}");
    assert_eq!(ctx.status(&id).as_deref(), Some("running"));

    let missing = ctx.rt(&["exec", &id, "/no/such/binary"]);
    missing.assert_fail();

    ctx.rt(&["delete", "--force", &id]).assert_ok();
    ctx.finish();
}

#[test]
fn exec_gets_the_containers_seccomp_filter() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = sleeper(&ctx)
        .with_mount(json!({ "destination": "/tmp", "type": "tmpfs", "source": "tmpfs" }))
        .edit(|s| {
            s["linux"]["seccomp"] = json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [
                    { "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EXDEV }
                ]
            })
        });
    if let Err(reason) = install_sysprobe(&bundle.rootfs()) {
        eprintln!("skipped: {reason}");
        return;
    }
    let id = ctx.id();
    run_detached(&ctx, &bundle, &id);

    let out = exec_sh(&ctx, &id, "grep '^Seccomp:' /proc/self/status");
    out.assert_ok();
    assert_eq!(
        status_field(out.out(), "Seccomp"),
        "2",
        "exec runs without a filter\n{out}"
    );

    let mkdirat = libc::SYS_mkdirat.to_string();
    let out = ctx.rt(&[
        "exec",
        &id,
        "sysprobe",
        &mkdirat,
        "-100",
        "s:/tmp/blocked",
        "0755",
    ]);
    out.assert_ok();
    assert_eq!(
        parse_probe(out.out()),
        (-1, libc::EXDEV),
        "mkdirat not refused with the profile's errno\n{out}"
    );
    let out = exec_sh(
        &ctx,
        &id,
        "mkdir /tmp/blocked 2>&1; echo rc=$?; touch /tmp/file && echo touched",
    );
    assert!(
        out.stdout.contains("cross-device link"),
        "busybox mkdir not refused with EXDEV\n{out}"
    );
    assert!(out.stdout.contains("rc=1"), "{out}");
    assert!(
        out.stdout.contains("touched"),
        "an allowed syscall failed\n{out}"
    );

    // Without a profile there is no filter.
    let plain = ctx.id();
    let plain_bundle = sleeper(&ctx);
    run_detached(&ctx, &plain_bundle, &plain);
    let out = exec_sh(&ctx, &plain, "grep '^Seccomp:' /proc/self/status");
    out.assert_ok();
    assert_eq!(status_field(out.out(), "Seccomp"), "0", "{out}");

    ctx.rt(&["delete", "--force", &id]).assert_ok();
    ctx.rt(&["delete", "--force", &plain]).assert_ok();
    ctx.finish();
}

#[test]
fn exec_env_cwd_and_user_flags() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = sleeper(&ctx).with_env("FROM_SPEC=spec");
    fs::create_dir_all(bundle.rootfs().join("srv/work")).unwrap();
    let id = ctx.id();
    run_detached(&ctx, &bundle, &id);

    // Without flags: the container's process settings.
    let out = exec_sh(&ctx, &id, "echo \"[$FROM_SPEC]\"; pwd; id -u; id -g");
    out.assert_ok();
    assert_eq!(out.out(), "[spec]\n/\n0\n0");

    let out = ctx.rt(&[
        "exec",
        "--env",
        "GREETING=hello world",
        "--env",
        "FROM_SPEC=flag",
        "--cwd",
        "/srv/work",
        "--user",
        "1000:1000",
        "--additional-gids",
        "2000",
        &id,
        "sh",
        "-c",
        "echo \"[$GREETING]\"; echo \"[$FROM_SPEC]\"; env | grep -c '^FROM_SPEC='; pwd; id; \
         grep -E '^(Uid|Gid|Groups):' /proc/self/status",
    ]);
    out.assert_ok();
    let text = out.out();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "[hello world]", "{out}");
    assert_eq!(
        lines[1], "[flag]",
        "--env must override the spec's value\n{out}"
    );
    assert_eq!(lines[2], "1", "duplicate FROM_SPEC in env\n{out}");
    assert_eq!(lines[3], "/srv/work", "{out}");
    assert!(lines[4].starts_with("uid=1000 gid=1000"), "{out}");
    assert_eq!(status_field(text, "Uid"), "1000\t1000\t1000\t1000");
    assert_eq!(status_field(text, "Gid"), "1000\t1000\t1000\t1000");
    assert_eq!(status_field(text, "Groups"), "2000");

    // A uid alone keeps the spec's gid.
    let out = ctx.rt(&["exec", "-u", "1234", &id, "id"]);
    out.assert_ok();
    assert!(out.out().starts_with("uid=1234 gid=0"), "{out}");

    ctx.rt(&["delete", "--force", &id]).assert_ok();
    ctx.finish();
}

#[test]
fn exec_cap_adds_a_capability() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let id = ctx.id();
    let bundle = sleeper(&ctx);
    let init = run_detached(&ctx, &bundle, &id);
    let base = format!("{:016x}", cap_mask(DEFAULT_CAPS));

    let out = exec_sh(
        &ctx,
        &id,
        "grep ^Cap /proc/self/status; hostname changed 2>/dev/null; echo rc=$?",
    );
    out.assert_ok();
    assert_eq!(status_field(out.out(), "CapEff"), base, "{out}");
    assert!(
        out.stdout.contains("rc=1"),
        "sethostname allowed without CAP_SYS_ADMIN\n{out}"
    );

    let out = ctx.rt(&[
        "exec",
        "--cap",
        "CAP_SYS_ADMIN",
        &id,
        "sh",
        "-c",
        "grep ^Cap /proc/self/status; hostname changed && hostname",
    ]);
    out.assert_ok();
    let mut caps = DEFAULT_CAPS.to_vec();
    caps.push("CAP_SYS_ADMIN");
    let want = format!("{:016x}", cap_mask(&caps));
    assert_eq!(status_field(out.out(), "CapEff"), want, "{out}");
    assert_eq!(status_field(out.out(), "CapPrm"), want, "{out}");
    assert_eq!(status_field(out.out(), "CapBnd"), want, "{out}");
    assert!(
        out.out().ends_with("changed"),
        "CAP_SYS_ADMIN not usable\n{out}"
    );

    // The init keeps its own set.
    let status = fs::read_to_string(format!("/proc/{init}/status")).unwrap();
    assert_eq!(status_field(&status, "CapEff"), base);

    ctx.rt(&["delete", "--force", &id]).assert_ok();
    ctx.finish();
}

#[test]
fn exec_no_new_privs_flag() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = sleeper(&ctx).edit(|s| s["process"]["noNewPrivileges"] = json!(false));
    let id = ctx.id();
    run_detached(&ctx, &bundle, &id);

    let out = exec_sh(&ctx, &id, "grep ^NoNewPrivs /proc/self/status");
    out.assert_ok();
    assert_eq!(status_field(out.out(), "NoNewPrivs"), "0", "{out}");
    let out = ctx.rt(&[
        "exec",
        "--no-new-privs",
        &id,
        "grep",
        "^NoNewPrivs",
        "/proc/self/status",
    ]);
    out.assert_ok();
    assert_eq!(status_field(out.out(), "NoNewPrivs"), "1", "{out}");

    ctx.rt(&["delete", "--force", &id]).assert_ok();
    ctx.finish();
}

#[test]
fn exec_process_json_describes_the_whole_process() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = sleeper(&ctx).with_env("FROM_SPEC=spec");
    fs::create_dir_all(bundle.rootfs().join("srv")).unwrap();
    let id = ctx.id();
    run_detached(&ctx, &bundle, &id);

    let process = json!({
        "terminal": false,
        "user": { "uid": 1000, "gid": 1001, "additionalGids": [10] },
        "args": ["sh", "-c", "echo \"[$ONLY_HERE][$FROM_SPEC]\"; pwd; id -u; id -g; \
                  grep -E '^(CapBnd|NoNewPrivs|Groups):' /proc/self/status; ulimit -n; exit 7"],
        "env": ["PATH=/bin", "ONLY_HERE=yes"],
        "cwd": "/srv",
        "capabilities": {
            "bounding": ["CAP_KILL", "CAP_CHOWN"],
            "effective": ["CAP_KILL", "CAP_CHOWN"],
            "permitted": ["CAP_KILL", "CAP_CHOWN"]
        },
        "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 333, "soft": 222 }],
        "noNewPrivileges": true
    });
    let path = ctx.scratch("exec").join("process.json");
    fs::write(&path, process.to_string()).unwrap();
    let out = ctx.rt(&["exec", "--process", path.to_str().unwrap(), &id]);
    assert_eq!(out.code, Some(7), "{out}");
    let text = out.out();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0], "[yes][]",
        "env must be the process.json's only\n{out}"
    );
    assert_eq!(lines[1..4], ["/srv", "1000", "1001"], "{out}");
    // uid 1000 keeps no effective capabilities across execve, but the bounding set is the
    // process.json's.
    assert_eq!(status_field(text, "CapBnd"), "0000000000000021", "{out}");
    assert_eq!(status_field(text, "NoNewPrivs"), "1", "{out}");
    assert_eq!(status_field(text, "Groups"), "10", "{out}");
    // `ulimit -n` prints the soft limit.
    assert_eq!(
        lines.last().copied(),
        Some("222"),
        "rlimit not applied\n{out}"
    );

    let bad = ctx.scratch("exec").join("bad.json");
    fs::write(&bad, "{ not json").unwrap();
    ctx.rt(&["exec", "--process", bad.to_str().unwrap(), &id])
        .assert_fail();

    ctx.rt(&["delete", "--force", &id]).assert_ok();
    ctx.finish();
}

#[test]
fn exec_tty_sends_a_pty_to_the_console_socket() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let id = ctx.id();
    let bundle = sleeper(&ctx);
    run_detached(&ctx, &bundle, &id);
    let dir = ctx.scratch("console");
    let sock = dir.join("sock");
    let pid_file = dir.join("pid");
    let listener = UnixListener::bind(&sock).expect("bind console socket");

    let (out, master) = thread::scope(|s| {
        let exec = s.spawn(|| {
            ctx.rt(&[
                "exec", "-t", "-d", "--console-socket", sock.to_str().unwrap(), "--pid-file",
                pid_file.to_str().unwrap(), &id, "sh", "-c",
                "tty; test -t 0 && test -t 1 && test -t 2 && echo all-tty; read line; echo \"got:$line\"",
            ])
        });
        let master = accept_until(&listener, Instant::now() + common::CMD_TIMEOUT, || {
            exec.is_finished()
        })
        .map(|stream| recv_fd(&stream));
        (exec.join().expect("exec thread"), master)
    });
    out.assert_ok();
    let master = master.unwrap_or_else(|| panic!("exec never sent a pty master\n{out}"));
    let pid = read_pid_file(&pid_file);
    ctx.record_pid(pid);

    let mut master = pty_master(master);
    master.write_all(b"ping\n").expect("write to pty master");
    let text = read_pty(&mut master, Duration::from_secs(20));
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert!(
        lines.iter().any(|l| l.starts_with("/dev/pts/")),
        "tty is not a pty: {text:?}"
    );
    assert!(
        lines.contains(&"all-tty"),
        "stdio is not the terminal: {text:?}"
    );
    assert!(
        lines.contains(&"got:ping"),
        "input did not reach the process: {text:?}"
    );

    ctx.rt(&["delete", "--force", &id]).assert_ok();
    ctx.finish();
}

#[test]
fn exec_detach_returns_while_the_process_runs() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let id = ctx.id();
    let bundle = sleeper(&ctx);
    run_detached(&ctx, &bundle, &id);
    let pid_file = ctx.scratch("exec").join("pid");
    let started = Instant::now();
    let out = ctx.rt(&[
        "exec",
        "-d",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
        "sleep",
        "30",
    ]);
    out.assert_ok();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "exec -d waited for the process"
    );
    // runc writes the pid file before returning.
    let text = fs::read_to_string(&pid_file).expect("pid file written before exec -d returns");
    let pid: i32 = text
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("pid file holds {text:?}"));
    ctx.record_pid(pid);
    assert!(
        common::pid_alive(pid),
        "detached process {pid} is not running"
    );
    assert_eq!(
        fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap()
            .trim(),
        "sleep"
    );

    // Inside, it is one of the container's processes, not pid 1.
    let out = exec_sh(
        &ctx,
        &id,
        "for p in /proc/[0-9]*; do cat $p/comm; done | grep -c '^sleep$'",
    );
    out.assert_ok();
    assert_eq!(
        out.out(),
        "2",
        "container does not see init + detached sleep\n{out}"
    );

    ctx.rt(&["delete", "--force", &id]).assert_ok();
    ctx.finish();
}

#[test]
fn exec_into_a_stopped_container_fails() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx.bundle().with_args(&["true"]);
    let id = ctx.id();
    ctx.create(&bundle, &id);
    ctx.start(&id);
    ctx.wait_status(&id, "stopped");

    let out = ctx.rt(&["exec", &id, "true"]);
    out.assert_fail();
    if common::is_nucleus() {
        assert!(
            out.stderr.contains("stopped"),
            "error should say the container is stopped\n{out}"
        );
    }
    ctx.delete(&id);

    let out = ctx.rt(&["exec", &id, "true"]);
    out.assert_fail();
    if common::is_nucleus() {
        assert!(out.stderr.contains("does not exist"), "{out}");
    }
    ctx.finish();
}

#[test]
fn exec_into_a_paused_container_fails_clearly() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let id = ctx.id();
    let bundle = sleeper(&ctx);
    run_detached(&ctx, &bundle, &id);

    let paused = ctx.rt(&["pause", &id]);
    if !paused.success() {
        let reason = paused.stderr.lines().next().unwrap_or("").to_string();
        ctx.rt(&["delete", "--force", &id]).assert_ok();
        ctx.finish();
        eprintln!("skipped: `pause` is not available: {reason}");
        return;
    }
    ctx.wait_status(&id, "paused");
    let started = Instant::now();
    let out = ctx.rt(&["exec", &id, "echo", "ran"]);
    out.assert_fail();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "exec into a paused container took {:?}",
        started.elapsed()
    );
    assert!(
        !out.stdout.contains("ran"),
        "exec ran inside a paused container\n{out}"
    );
    if common::is_nucleus() {
        assert!(
            out.stderr.contains("paused"),
            "error should say the container is paused\n{out}"
        );
    }
    ctx.rt(&["resume", &id]).assert_ok();
    ctx.wait_status(&id, "running");
    exec_sh(&ctx, &id, "true").assert_ok();

    ctx.rt(&["delete", "--force", &id]).assert_ok();
    ctx.finish();
}
