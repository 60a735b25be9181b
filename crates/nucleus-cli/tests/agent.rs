//! The docker-like front end on the real kernel: `nucleus run` building agent mode's
//! host-derived sandbox (context, secrets, volumes, limits, timeout, exit codes), detached
//! containers with their monitor, and the management verbs (`ps`, `logs`, `attach`,
//! `stop`, `kill`, `rm`, `stats`, `inspect`), names included, up to 50 at once.
//!
//! Every test ends with `finish_agent`: no state, generated bundle, name, mount, process
//! or cgroup may be left behind.

#[macro_use]
mod common;

use common::{Ctx, Out};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

/// Runs `nucleus run ARGS` (the docker-like form) and returns its output.
fn run(ctx: &Ctx, args: &[&str]) -> Out {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    ctx.rt(&all)
}

/// `key=value` lines printed by a probe script.
fn fields(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// `ps -a --format json`, one object per line.
fn ps_all(ctx: &Ctx) -> Vec<Value> {
    let out = ctx.rt(&["ps", "-a", "--format", "json"]);
    out.assert_ok();
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad ps line {l:?}: {e}")))
        .collect()
}

/// The init pid of a running container, from `inspect`; recorded for the leak checks.
fn init_pid(ctx: &Ctx, name: &str) -> i32 {
    let out = ctx.rt(&["inspect", name]);
    out.assert_ok();
    let pid = out.json()[0]["State"]["Pid"].as_i64().unwrap_or(0);
    let pid = i32::try_from(pid).expect("pid fits");
    if pid > 0 {
        ctx.record_pid(pid);
    }
    pid
}

#[test]
fn agent_sandbox_runs_host_programs_locked_down() {
    require!(root);
    let ctx = Ctx::new();
    let scratch = ctx.scratch("agent");
    let context = scratch.join("ctx");
    fs::create_dir_all(context.join("src")).unwrap();
    fs::write(context.join("src/main.txt"), "from-context\n").unwrap();
    let secret = scratch.join("token");
    fs::write(&secret, "s3cret-value\n").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let volume = scratch.join("vol");
    fs::create_dir_all(&volume).unwrap();
    ctx.watch(&scratch);

    let script = r#"
        ls -la / >/dev/null && echo ls=ok
        echo context=$(cat /context/src/main.txt)
        echo secret=$(cat /run/secrets/x)
        echo secret_mode=$(stat -c %a /run/secrets/x)
        echo secret_fs=$(stat -f -c %T /run/secrets/x)
        grep -q ' /run/secrets/x .* - tmpfs ' /proc/self/mountinfo && echo secret_mount=tmpfs
        echo k=$K
        echo capeff=$(awk '/^CapEff/ {print $2}' /proc/self/status)
        echo nonewprivs=$(awk '/^NoNewPrivs/ {print $2}' /proc/self/status)
        echo seccomp=$(awk '/^Seccomp:/ {print $2}' /proc/self/status)
        touch /usr/nucleus-probe 2>/dev/null && echo usr=writable || echo usr=readonly
        touch /tmp/probe && echo tmp=writable
        echo data > /vol/written && echo vol=writable
        cat /etc/shadow >/dev/null 2>&1 && echo shadow=readable || echo shadow=unreadable
        test -e /etc/shadow && echo shadow_present=yes || echo shadow_present=no
        mkdir -p /tmp/m && mount -t tmpfs none /tmp/m 2>/dev/null && echo mount=ok || echo mount=denied
        cat /sys/class/net/lo/mtu >/dev/null 2>&1 && echo sys=readable || echo sys=landlocked
        echo user=$(id -un)
        exit 7
    "#;
    let out = run(
        &ctx,
        &[
            "--context",
            context.to_str().unwrap(),
            "--secret",
            &format!("{}:/run/secrets/x", secret.display()),
            "-e",
            "K=V",
            "-v",
            &format!("{}:/vol", volume.display()),
            "--",
            "/bin/sh",
            "-c",
            script,
        ],
    );
    assert_eq!(
        out.code,
        Some(7),
        "the workload's exit code comes back\n{out}"
    );
    let f = fields(&out.stdout);
    let want = [
        ("ls", "ok"),
        ("context", "from-context"),
        ("secret", "s3cret-value"),
        ("secret_mode", "400"),
        ("secret_fs", "tmpfs"),
        ("secret_mount", "tmpfs"),
        ("k", "V"),
        ("capeff", "0000000000000000"),
        ("nonewprivs", "1"),
        ("seccomp", "2"),
        ("usr", "readonly"),
        ("tmp", "writable"),
        ("vol", "writable"),
        ("shadow", "unreadable"),
        ("shadow_present", "no"),
        ("mount", "denied"),
        ("sys", "landlocked"),
        ("user", "root"),
    ];
    for (k, v) in want {
        assert_eq!(f.get(k).map(String::as_str), Some(v), "{k}\n{out}");
    }
    assert_eq!(
        fs::read_to_string(volume.join("written")).unwrap(),
        "data\n"
    );
    // The context was copied: the original is untouched, the copy went with the container.
    assert!(!context.join("new").exists());
    ctx.finish_agent();
}

#[test]
fn context_bind_is_read_only_and_secret_belongs_to_the_user() {
    require!(root);
    let ctx = Ctx::new();
    let scratch = ctx.scratch("bind");
    fs::write(scratch.join("f"), "x\n").unwrap();
    let secret = scratch.join("api-key");
    fs::write(&secret, "k\n").unwrap();
    ctx.watch(&scratch);
    let out = run(
        &ctx,
        &[
            "-u",
            "nobody",
            "--context",
            scratch.to_str().unwrap(),
            "--context-mode",
            "bind",
            "--secret",
            secret.to_str().unwrap(),
            "--",
            "/bin/sh",
            "-c",
            "cat /context/f; touch /context/g 2>/dev/null && echo ctx=writable || echo ctx=readonly; \
             echo owner=$(stat -c %U /run/secrets/api-key); cat /run/secrets/api-key; id -u",
        ],
    );
    out.assert_ok();
    assert_eq!(
        out.stdout, "x\nctx=readonly\nowner=nobody\nk\n65534\n",
        "{out}"
    );
    ctx.finish_agent();
}

#[test]
fn memory_limit_stops_a_tmpfs_write() {
    require!(root);
    let ctx = Ctx::new();
    let out = run(
        &ctx,
        &[
            "--memory",
            "32M",
            "--",
            "/bin/sh",
            "-c",
            "dd if=/dev/zero of=/tmp/big bs=1M count=64 2>/dev/null; echo dd=$?",
        ],
    );
    let f = fields(&out.stdout);
    let dd: i32 = f
        .get("dd")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no dd status\n{out}"));
    assert_ne!(
        dd, 0,
        "a 64 MiB write must fail under a 32 MiB limit\n{out}"
    );
    ctx.finish_agent();
}

#[test]
fn timeout_kills_within_two_seconds() {
    require!(root);
    let ctx = Ctx::new();
    let start = Instant::now();
    let out = run(&ctx, &["--timeout", "1", "--", "sleep", "20"]);
    let took = start.elapsed();
    assert!(took < Duration::from_secs(2), "took {took:?}\n{out}");
    assert_eq!(out.code, Some(137), "{out}");
    assert!(out.stderr.contains("--timeout"), "says so\n{out}");
    ctx.finish_agent();
}

#[test]
fn exit_codes_follow_docker() {
    require!(root);
    let ctx = Ctx::new();
    assert_eq!(run(&ctx, &["--", "/no/such/program"]).code, Some(127));
    assert_eq!(run(&ctx, &["--", "no-such-program"]).code, Some(127));
    assert_eq!(run(&ctx, &["--", "/etc/hostname"]).code, Some(126));
    assert_eq!(run(&ctx, &["--", "/bin/sh", "-c", "exit 3"]).code, Some(3));
    assert_eq!(run(&ctx, &["--", "/bin/true"]).code, Some(0));
    ctx.finish_agent();
}

#[test]
fn bad_flag_values_exit_125_naming_flag_and_value() {
    require!(root);
    let ctx = Ctx::new();
    for (args, needle) in [
        (
            &["--memory", "lots", "--", "true"][..],
            "--memory: invalid value `lots`",
        ),
        (
            &["--cpus", "zero", "--", "true"][..],
            "--cpus: invalid value `zero`",
        ),
        (
            &["--pids", "-5", "--", "true"][..],
            "--pids: invalid value `-5`",
        ),
        (
            &["--ulimit", "nofile=x", "--", "true"][..],
            "--ulimit: invalid value `nofile=x`",
        ),
        (
            &["-v", "/no/such/dir:/x", "--", "true"][..],
            "-v/--volume: invalid value `/no/such/dir:/x`",
        ),
        (
            &["--secret", "/no/such/file", "--", "true"][..],
            "--secret: invalid value `/no/such/file`",
        ),
        (
            &["--context", "/no/such/dir", "--", "true"][..],
            "--context: invalid value `/no/such/dir`",
        ),
        (
            &["--network", "host", "--", "true"][..],
            "--network: invalid value `host`",
        ),
        (
            &["--timeout", "soon", "--", "true"][..],
            "--timeout: invalid value `soon`",
        ),
        (
            &["--cap-add", "FLY", "--", "true"][..],
            "--cap-add: invalid value `FLY`",
        ),
        (
            &["-u", "no-such-user", "--", "true"][..],
            "-u/--user: invalid value `no-such-user`",
        ),
        (
            &["--seccomp-profile", "/no/such.json", "--", "true"][..],
            "--seccomp-profile: invalid value `/no/such.json`",
        ),
        (
            &["--landlock-policy-sha256", "abc", "--", "true"][..],
            "--landlock-policy-sha256: invalid value `abc`",
        ),
        (&["--no-such-flag", "--", "true"][..], "--no-such-flag"),
        (&["--memory"][..], "--memory"),
        (&["alpine"][..], "IMAGE: invalid value `alpine`"),
    ] {
        let out = run(&ctx, args);
        assert_eq!(out.code, Some(125), "{args:?}\n{out}");
        assert_eq!(
            out.stderr
                .lines()
                .filter(|l| !l.contains("level=warning"))
                .count(),
            1,
            "one line\n{out}"
        );
        assert!(
            out.stderr.contains(needle),
            "{args:?} should say {needle:?}\n{out}"
        );
    }
    ctx.finish_agent();
}

#[test]
fn detached_container_managed_by_name() {
    require!(root);
    let ctx = Ctx::new();
    let out = run(
        &ctx,
        &[
            "-d",
            "--name",
            "web",
            "--",
            "/bin/sh",
            "-c",
            "echo started; echo warn >&2; trap 'exit 5' TERM; while :; do sleep 0.1; done",
        ],
    );
    out.assert_ok();
    let id = out.out().to_string();
    assert_eq!(id.len(), 64, "prints the id\n{out}");
    init_pid(&ctx, "web");

    let ps = ctx.rt(&["ps"]);
    ps.assert_ok();
    assert!(
        ps.stdout.contains("web") && ps.stdout.contains(&id[..12]),
        "{ps}"
    );
    // The same name cannot be taken twice.
    let dup = run(&ctx, &["-d", "--name", "web", "--", "true"]);
    assert_eq!(dup.code, Some(125), "{dup}");
    assert!(dup.stderr.contains("already in use"), "{dup}");

    assert!(common::wait_until(Duration::from_secs(5), || ctx
        .rt(&["logs", "web"])
        .stdout
        .contains("started")));
    let logs = ctx.rt(&["logs", "web"]);
    assert!(
        logs.stderr.contains("warn"),
        "stderr goes to stderr\n{logs}"
    );
    let raw =
        fs::read_to_string(ctx.root().join(".bundles").join(&id).join("container.log")).unwrap();
    let first: Value = serde_json::from_str(raw.lines().next().unwrap()).unwrap();
    assert!(
        first["time"].is_string() && first["stream"].is_string() && first["log"].is_string(),
        "{first}"
    );

    let attach = ctx.rt(&[
        "attach",
        "web",
        "--",
        "/bin/sh",
        "-c",
        "echo inside-$(hostname); cat /proc/1/comm",
    ]);
    attach.assert_ok();
    assert_eq!(
        attach.stdout,
        format!("inside-{}\nsh\n", &id[..12]),
        "{attach}"
    );
    // By unique id prefix too.
    assert!(ctx.rt(&["attach", &id[..10], "--", "true"]).success());

    let stats = ctx.rt(&["stats", "--no-stream", "--format", "json", "web"]);
    stats.assert_ok();
    let s: Value = serde_json::from_str(stats.stdout.trim()).unwrap();
    assert!(s["Pids"].as_u64().unwrap_or(0) >= 1, "{stats}");

    let stop = ctx.rt(&["stop", "-t", "5", "web"]);
    stop.assert_ok();
    let all = ps_all(&ctx);
    let web = all
        .iter()
        .find(|c| c["Names"] == "web")
        .unwrap_or_else(|| panic!("web in ps -a: {all:?}"));
    assert_eq!(web["State"], "exited");
    assert_eq!(web["ExitCode"], 5, "{web}");
    assert!(
        !ctx.rt(&["ps"]).stdout.contains("web"),
        "not running any more"
    );
    let inspect = ctx.rt(&["inspect", "web"]).json();
    assert_eq!(inspect[0]["State"]["ExitCode"], 5);
    assert_eq!(inspect[0]["Limits"]["pids"]["limit"], 1024);

    ctx.rt(&["rm", "web"]).assert_ok();
    assert!(ps_all(&ctx).is_empty());
    assert!(!ctx.rt(&["logs", "web"]).success());
    ctx.finish_agent();
}

#[test]
fn detached_kill_with_signal_and_timeout() {
    require!(root);
    let ctx = Ctx::new();
    run(
        &ctx,
        &[
            "-d",
            "--name",
            "k",
            "--",
            "/bin/sh",
            "-c",
            "trap 'exit 9' USR1; while :; do sleep 0.1; done",
        ],
    )
    .assert_ok();
    init_pid(&ctx, "k");
    ctx.rt(&["kill", "-s", "USR1", "k"]).assert_ok();
    assert!(common::wait_until(Duration::from_secs(5), || ps_all(&ctx)
        .iter()
        .any(|c| c["Names"] == "k" && c["ExitCode"] == 9)));

    run(
        &ctx,
        &["-d", "--name", "t", "--timeout", "1", "--", "sleep", "30"],
    )
    .assert_ok();
    init_pid(&ctx, "t");
    let start = Instant::now();
    assert!(common::wait_until(Duration::from_secs(5), || ps_all(&ctx)
        .iter()
        .any(|c| c["Names"] == "t" && c["ExitCode"] == 137)));
    assert!(start.elapsed() < Duration::from_secs(3));
    let inspect = ctx.rt(&["inspect", "t"]).json();
    assert_eq!(inspect[0]["State"]["TimedOut"], true);

    // --rm: gone once it exits.
    run(&ctx, &["-d", "--rm", "--name", "gone", "--", "true"]).assert_ok();
    assert!(common::wait_until(Duration::from_secs(5), || !ps_all(&ctx)
        .iter()
        .any(|c| c["Names"] == "gone")));
    ctx.finish_agent();
}

#[test]
fn fifty_concurrent_sandboxes() {
    require!(root);
    let ctx = Ctx::new();
    let n = 50;
    let root = ctx.root().to_path_buf();
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let root = root.clone();
            std::thread::spawn(move || {
                std::process::Command::new(common::runtime())
                    .arg("--root")
                    .arg(&root)
                    .args([
                        "run",
                        "-d",
                        "--name",
                        &format!("box{i}"),
                        "--",
                        "/bin/sh",
                        "-c",
                        "echo up; sleep 60",
                    ])
                    .stdin(std::process::Stdio::null())
                    .output()
                    .expect("run nucleus")
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let out = h.join().unwrap();
        assert!(
            out.status.success(),
            "box{i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let all = ps_all(&ctx);
    assert_eq!(all.len(), n, "{all:?}");
    assert!(all.iter().all(|c| c["State"] == "running"), "{all:?}");
    for i in 0..n {
        init_pid(&ctx, &format!("box{i}"));
    }
    let ids: Vec<String> = all
        .iter()
        .map(|c| c["Id"].as_str().unwrap().to_string())
        .collect();
    let mut args = vec!["rm", "-f"];
    args.extend(ids.iter().map(String::as_str));
    ctx.rt(&args).assert_ok();
    assert!(ps_all(&ctx).is_empty());
    ctx.finish_agent();
}

#[test]
fn concurrent_runs_with_one_name_only_one_wins() {
    require!(root);
    let ctx = Ctx::new();
    let root = ctx.root().to_path_buf();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let root = root.clone();
            std::thread::spawn(move || {
                std::process::Command::new(common::runtime())
                    .arg("--root")
                    .arg(&root)
                    .args(["run", "-d", "--name", "only", "--", "sleep", "30"])
                    .stdin(std::process::Stdio::null())
                    .output()
                    .expect("run nucleus")
            })
        })
        .collect();
    let wins = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|o| o.status.success())
        .count();
    assert_eq!(wins, 1);
    assert_eq!(ps_all(&ctx).len(), 1);
    ctx.finish_agent();
}

#[test]
fn landlock_policy_confines_writes_even_on_a_writable_volume() {
    require!(root);
    let ctx = Ctx::new();
    let scratch = ctx.scratch("ll");
    let (allowed, denied) = (scratch.join("allowed"), scratch.join("denied"));
    fs::create_dir_all(&allowed).unwrap();
    fs::create_dir_all(&denied).unwrap();
    let policy = scratch.join("policy.toml");
    fs::write(
        &policy,
        "[[rules]]\npath = \"/\"\naccess = [\"read\", \"execute\"]\n[[rules]]\npath = \"/a\"\naccess = [\"read\", \"write\", \"create\"]\n",
    )
    .unwrap();
    ctx.watch(&scratch);
    let out = run(
        &ctx,
        &[
            "--landlock-policy",
            policy.to_str().unwrap(),
            "-v",
            &format!("{}:/a", allowed.display()),
            "-v",
            &format!("{}:/d", denied.display()),
            "--",
            "/bin/sh",
            "-c",
            "touch /a/ok && echo a=ok; touch /d/no 2>/dev/null && echo d=written || echo d=denied",
        ],
    );
    out.assert_ok();
    assert_eq!(out.stdout, "a=ok\nd=denied\n", "{out}");
    assert!(!denied.join("no").exists());
    ctx.finish_agent();
}

#[test]
fn oci_run_forms_still_work() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx.bundle().with_sh("echo oci");
    bundle.write();
    // One positional, no `--`, and ./config.json: runc's `run ID`.
    let id = ctx.id();
    let out = ctx.rt_in(bundle.path(), &["run", &id]);
    out.assert_ok();
    assert_eq!(out.out(), "oci");
    // `--bundle` always means runc's form.
    let out = ctx.run_with(&bundle, &ctx.id(), &[]);
    out.assert_ok();
    // runc's `ps ID` and `kill ID SIG` are untouched: a missing id is an error, not a listing.
    assert!(!ctx.rt(&["ps", "no-such-container"]).success());
    ctx.finish_agent();
}
