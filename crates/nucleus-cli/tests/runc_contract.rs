//! runc's command-line contract beyond the OCI spec, as containerd's shim, conmon, CRI-O
//! and scripts read it: exit codes, version and help, message texts, the default
//! `config.json`, the default cgroup name, exec flags, hooks, terminals and log lines.
//!
//! Each scenario runs once with nucleus and, where runc 1.1 is installed
//! (`/usr/sbin/runc`, or `NUCLEUS_TEST_RUNC`), once with runc on the same kind of bundle;
//! the observations must match. Where nucleus deliberately differs, the test says so and
//! checks nucleus's own behaviour.

#[macro_use]
mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{accept_until, pty_master, read_pty, recv_fd, wait_until, Bundle, Ctx, Out};
use serde_json::{json, Value};

fn nucleus() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nucleus"))
}

/// Runs `scenario` under nucleus and, when installed, under runc, each in its own `Ctx`
/// (checked for leftovers afterwards); returns `(runtime name, observation)` pairs.
fn each_runtime<T>(scenario: impl Fn(&Ctx) -> T) -> Vec<(&'static str, T)> {
    let mut runtimes = vec![("nucleus", nucleus())];
    match common::runc() {
        Some(runc) => runtimes.push(("runc", runc)),
        None => eprintln!("note: runc is not installed; checking nucleus alone"),
    }
    runtimes
        .into_iter()
        .map(|(name, bin)| {
            let ctx = Ctx::with_runtime(bin);
            let seen = scenario(&ctx);
            ctx.finish();
            (name, seen)
        })
        .collect()
}

/// Asserts every runtime observed what nucleus observed.
#[track_caller]
fn assert_same<T: PartialEq + std::fmt::Debug>(seen: &[(&str, T)]) {
    let (_, ours) = &seen[0];
    for (name, theirs) in &seen[1..] {
        assert_eq!(ours, theirs, "nucleus and {name} differ (left: nucleus)");
    }
}

/// `<runtime> ARGS` without a state root (version, help, spec).
fn bare(ctx: &Ctx, cwd: &Path, args: &[&str]) -> Out {
    let mut cmd = Command::new(ctx.runtime());
    cmd.current_dir(cwd).args(args);
    common::exec(cmd, &ctx.scratch("io"), common::CMD_TIMEOUT)
}

/// A detached `sleep` container (no terminal), running when this returns.
fn sleeper(ctx: &Ctx, bundle: &Bundle, id: &str) {
    ctx.run_with(bundle, id, &["--detach"]).assert_ok();
    ctx.wait_status(id, "running");
    ctx.pid(id);
}

fn sleep_bundle(ctx: &Ctx) -> Bundle {
    ctx.bundle().with_args(&["sleep", "300"])
}

#[test]
fn version_prints_version_commit_and_spec() {
    let seen = each_runtime(|ctx| {
        let dir = ctx.scratch("cwd");
        let short = bare(ctx, &dir, &["-v"]);
        let long = bare(ctx, &dir, &["--version"]);
        short.assert_ok();
        assert_eq!(short.stdout, long.stdout, "-v and --version differ");
        let lines: Vec<String> = short.stdout.lines().take(3).map(str::to_string).collect();
        assert!(lines[0].contains(" version "), "{short}");
        // The shape scripts parse: `NAME version X`, `commit: C`, `spec: S`.
        lines
            .iter()
            .map(|l| {
                l.split([' ', ':'])
                    .find(|w| !w.is_empty())
                    .unwrap_or("")
                    .to_string()
            })
            .skip(1)
            .collect::<Vec<_>>()
    });
    assert_same(&seen);
    assert_eq!(seen[0].1, ["commit", "spec"]);
}

#[test]
fn help_topics_and_verb_help() {
    const VERBS: &[&str] = &[
        "create",
        "start",
        "run",
        "exec",
        "state",
        "kill",
        "delete",
        "list",
        "spec",
        "features",
        "ps",
        "pause",
        "resume",
        "update",
        "events",
        "checkpoint",
        "restore",
    ];
    let seen = each_runtime(|ctx| {
        let dir = ctx.scratch("cwd");
        let mut codes = Vec::new();
        for verb in VERBS {
            let topic = bare(ctx, &dir, &["help", verb]);
            let short = bare(ctx, &dir, &[verb, "-h"]);
            assert!(
                !topic.stdout.trim().is_empty(),
                "help {verb} printed nothing\n{topic}"
            );
            assert!(
                !short.stdout.trim().is_empty(),
                "{verb} -h printed nothing\n{short}"
            );
            codes.push((verb.to_string(), topic.code, short.code));
        }
        let unknown = bare(ctx, &dir, &["help", "no-such-topic"]);
        assert!(
            unknown.stderr.contains("No help topic for 'no-such-topic'"),
            "{unknown}"
        );
        let verb = bare(ctx, &dir, &["no-such-verb"]);
        (codes, unknown.code, verb.code)
    });
    assert_same(&seen);
    let (codes, unknown, verb) = &seen[0].1;
    assert!(
        codes.iter().all(|(_, a, b)| *a == Some(0) && *b == Some(0)),
        "{codes:?}"
    );
    assert_eq!((*unknown, *verb), (Some(3), Some(3)));
}

/// Runtime errors of every verb, on a container that does not exist, a running one and a
/// paused one: exec's are 255 (so they cannot be mistaken for the workload's exit 1),
/// every other verb's are 1.
#[test]
fn runtime_errors_exit_like_runc() {
    require!(root, busybox);
    let seen = each_runtime(|ctx| {
        let mut codes = Vec::new();
        let missing: &[&[&str]] = &[
            &["exec", "no-such", "true"],
            &["start", "no-such"],
            &["state", "no-such"],
            &["kill", "no-such", "KILL"],
            &["kill", "no-such", "0"],
            &["delete", "no-such"],
            &["pause", "no-such"],
            &["resume", "no-such"],
            &["ps", "no-such"],
            &["update", "--pids-limit", "10", "no-such"],
            &["events", "--stats", "no-such"],
            &["run", "--bundle", "/no/such/bundle", "no-such"],
            &["create", "--bundle", "/no/such/bundle", "no-such"],
        ];
        for args in missing {
            let out = ctx.rt(args);
            codes.push((args.join(" "), out.code));
        }
        let bundle = sleep_bundle(ctx);
        let id = ctx.id();
        sleeper(ctx, &bundle, &id);
        let pid_file = "/no/such/dir/pid";
        for args in [
            vec!["exec", "--pid-file", pid_file, &id, "true"],
            vec!["exec", &id, "/no/such/binary"],
            vec!["exec", &id, "sh", "-c", "exit 1"],
            vec!["exec", &id, "sh", "-c", "exit 255"],
            vec!["kill", &id, "0"],
            vec!["kill", &id, "NOSUCHSIGNAL"],
            vec!["start", &id],
            vec!["delete", &id],
        ] {
            let out = ctx.rt(&args);
            codes.push((args.join(" ").replace(id.id(), "ID"), out.code));
        }
        if ctx.rt(&["pause", &id]).success() {
            let out = ctx.rt(&["exec", &id, "true"]);
            codes.push(("exec (paused)".into(), out.code));
            ctx.rt(&["resume", &id]).assert_ok();
        }
        ctx.rt(&["kill", &id, "KILL"]).assert_ok();
        ctx.wait_status(&id, "stopped");
        let out = ctx.rt(&["kill", &id, "0"]);
        codes.push(("kill 0 (stopped)".into(), out.code));
        ctx.delete(&id);
        codes
    });
    assert_same(&seen);
    for (cmd, code) in &seen[0].1 {
        let want = match cmd.as_str() {
            "exec ID sh -c exit 1" => 1,
            c if c.contains("exit 255") || c.starts_with("exec") => 255,
            "kill ID 0" => 0,
            _ => 1,
        };
        assert_eq!(*code, Some(want), "`{cmd}`");
    }
}

/// `spec` writes what `runc spec` writes, field for field; only `hostname` and
/// `ociVersion` name the runtime and the spec version it implements.
#[test]
fn spec_matches_runc_spec() {
    let seen = each_runtime(|ctx| {
        let mut specs = Vec::new();
        for rootless in [false, true] {
            let dir = ctx.scratch(if rootless { "rootless" } else { "rootful" });
            let mut args = vec!["spec"];
            if rootless {
                args.push("--rootless");
            }
            bare(ctx, &dir, &args).assert_ok();
            let again = bare(ctx, &dir, &args);
            assert!(
                !again.success(),
                "spec overwrote an existing config.json\n{again}"
            );
            let text = fs::read_to_string(dir.join("config.json")).expect("read config.json");
            let mut v: Value = serde_json::from_str(&text).expect("config.json is JSON");
            let obj = v.as_object_mut().expect("an object");
            assert!(obj.remove("hostname").is_some() && obj.remove("ociVersion").is_some());
            specs.push(v);
        }
        specs
    });
    assert_same(&seen);
}

/// `nucleus spec`'s config.json runs as it is with a busybox rootfs, and with `cgroup`
/// appended (twice, as tools that add it without looking do). runc refuses a repeated
/// namespace ("duplicated ns"); nucleus accepts a repeat that is identical.
#[test]
fn default_spec_runs_and_identical_duplicate_namespaces_are_accepted() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx.bundle();
    let written = ctx.rt_in(bundle.path(), &["spec"]);
    written.assert_ok();
    let text = fs::read_to_string(bundle.path().join("config.json")).unwrap();
    let mut spec: Value = serde_json::from_str(&text).unwrap();
    spec["process"]["terminal"] = json!(false);
    spec["process"]["args"] = json!(["sh", "-c", "echo ran"]);
    let out = ctx.run(&bundle.edit(|s| *s = spec.clone()));
    out.assert_ok();
    assert_eq!(out.out(), "ran");
    // runc is silent about the ambient caps the kernel cannot raise; so is nucleus.
    assert_eq!(out.stderr, "", "{out}");

    let with_cgroup = ctx.bundle().edit(|s| {
        *s = spec.clone();
        for _ in 0..2 {
            s["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({ "type": "cgroup" }));
        }
    });
    let out = ctx.run(&with_cgroup.with_sh("readlink /proc/self/ns/cgroup"));
    out.assert_ok();
    let host_ns = fs::read_link("/proc/self/ns/cgroup").unwrap();
    assert_ne!(
        out.out(),
        host_ns.to_string_lossy(),
        "no cgroup namespace was made"
    );

    let conflicting = ctx.bundle().edit(|s| {
        s["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "type": "uts", "path": "/proc/1/ns/uts" }));
    });
    let out = ctx.run(&conflicting);
    out.assert_fail();
    assert!(
        out.stderr.contains("linux.namespaces[6].type") && out.stderr.contains("different paths"),
        "{out}"
    );
    ctx.finish();
}

/// The default cgroup is the container id below the caller's cgroup, as runc's is.
#[test]
fn default_cgroup_is_named_after_the_id() {
    require!(root, busybox);
    let seen = each_runtime(|ctx| {
        let bundle = sleep_bundle(ctx);
        let id = ctx.id();
        sleeper(ctx, &bundle, &id);
        let pid = ctx.pid(&id);
        let dirs = common::cgroup_dirs(pid);
        assert!(!dirs.is_empty(), "container pid {pid} is in no cgroup");
        let named: Vec<bool> = dirs
            .iter()
            .map(|d| d.file_name().is_some_and(|n| n == id.id()))
            .collect();
        ctx.rt(&["delete", "--force", &id]).assert_ok();
        named
    });
    assert_same(&seen);
    assert!(
        seen[0].1.iter().all(|n| *n),
        "a hierarchy's leaf is not the id: {:?}",
        seen[0].1
    );
}

#[test]
fn exec_into_a_paused_container_and_ignore_paused() {
    require!(root, busybox);
    let seen = each_runtime(|ctx| {
        let bundle = sleep_bundle(ctx);
        let id = ctx.id();
        sleeper(ctx, &bundle, &id);
        if !ctx.rt(&["pause", &id]).success() {
            ctx.rt(&["delete", "--force", &id]).assert_ok();
            return None;
        }
        let refused = ctx.rt(&["exec", &id, "echo", "ran"]);
        assert!(
            refused.stderr.contains("cannot exec in a paused container"),
            "{refused}"
        );
        assert!(refused.stderr.contains("--ignore-paused"), "{refused}");

        // With --ignore-paused the process is made but starts frozen: it runs on resume.
        let out_path = ctx.scratch("ignore").join("out");
        let mut child = Command::new(ctx.runtime())
            .arg("--root")
            .arg(ctx.root())
            .args(["exec", "--ignore-paused", &id, "echo", "ran"])
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out_path).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn exec --ignore-paused");
        thread::sleep(Duration::from_millis(500));
        let ran_while_paused = fs::read_to_string(&out_path)
            .unwrap_or_default()
            .contains("ran");
        ctx.rt(&["resume", &id]).assert_ok();
        let done = wait_until(Duration::from_secs(20), || {
            child.try_wait().ok().flatten().is_some()
        });
        if !done {
            let _ = child.kill();
        }
        let status = child.wait().unwrap();
        ctx.rt(&["delete", "--force", &id]).assert_ok();
        Some((
            refused.code,
            ran_while_paused,
            status.code(),
            fs::read_to_string(&out_path).unwrap().trim().to_string(),
        ))
    });
    if seen[0].1.is_none() {
        eprintln!("skipped: `pause` is not available here");
        return;
    }
    assert_same(&seen);
    assert_eq!(
        seen[0].1,
        Some((Some(255), false, Some(0), "ran".to_string()))
    );
}

/// `exec -p` with a process that has no `user`: nucleus runs it as the container's
/// user. runc runs it as uid 0 (Go's zero value), which would make such an exec more
/// privileged than the container; nucleus deliberately differs.
#[test]
fn exec_process_json_without_user_runs_as_the_containers_user() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle =
        sleep_bundle(&ctx).edit(|s| s["process"]["user"] = json!({ "uid": 65534, "gid": 65534 }));
    let id = ctx.id();
    sleeper(&ctx, &bundle, &id);
    let path = ctx.scratch("process").join("process.json");
    fs::write(&path, r#"{"args": ["/bin/id"], "cwd": "/"}"#).unwrap();
    let out = ctx.rt(&["exec", "-p", path.to_str().unwrap(), &id]);
    out.assert_ok();
    assert!(
        out.out()
            .starts_with("uid=65534(nobody) gid=65534(nogroup)"),
        "{out}"
    );
    ctx.rt(&["delete", "--force", &id]).assert_ok();
    ctx.finish();
}

/// `exec --cgroup [CONTROLLER:]PATH` puts the process in an existing sub-cgroup.
#[test]
fn exec_cgroup_places_the_process_in_a_sub_cgroup() {
    require!(root, busybox);
    let seen = each_runtime(|ctx| {
        let bundle = sleep_bundle(ctx);
        let id = ctx.id();
        sleeper(ctx, &bundle, &id);
        let pid = ctx.pid(&id);
        let Some(pids_dir) = common::cgroup_dirs(pid)
            .into_iter()
            .find(|d| d.starts_with("/sys/fs/cgroup/pids"))
        else {
            ctx.rt(&["delete", "--force", &id]).assert_ok();
            return None;
        };
        fs::create_dir(pids_dir.join("sub")).expect("make the sub-cgroup");
        let lines = |out: &Out| -> Vec<String> {
            out.stdout
                .lines()
                .filter(|l| l.contains(":pids:") || l.contains(":memory:"))
                .map(str::to_string)
                .collect()
        };
        let into = ctx.rt(&[
            "exec",
            "--cgroup",
            "pids:sub",
            &id,
            "cat",
            "/proc/self/cgroup",
        ]);
        into.assert_ok();
        let missing = ctx.rt(&["exec", "--cgroup", "pids:nosub", &id, "true"]);
        ctx.rt(&["delete", "--force", &id]).assert_ok();
        assert!(!pids_dir.exists(), "delete left {}", pids_dir.display());
        Some((lines(&into), missing.code))
    });
    if seen[0].1.is_none() {
        eprintln!("skipped: no v1 pids hierarchy");
        return;
    }
    assert_same(&seen);
    let (lines, missing) = seen[0].1.clone().unwrap();
    assert!(lines.iter().any(|l| l.ends_with(":pids:/sub")), "{lines:?}");
    assert!(lines.iter().any(|l| l.ends_with(":memory:/")), "{lines:?}");
    assert_eq!(missing, Some(255));
}

/// A startContainer hook without `env` gets the container process's environment.
#[test]
fn start_container_hook_without_env_gets_the_process_env() {
    require!(root, busybox);
    let seen = each_runtime(|ctx| {
        let shared = ctx.scratch("hookout");
        let bundle = ctx
            .bundle()
            .with_env("FROM_PROCESS=yes")
            .with_bind(&shared, "/hookout", &[])
            .with_args(&["true"])
            .edit(|s| {
                s["hooks"] = json!({ "startContainer": [
                    { "path": "/bin/sh", "args": ["sh", "-c", "env > /hookout/env"] }
                ]});
            });
        ctx.run(&bundle).assert_ok();
        let mut env: Vec<String> = fs::read_to_string(shared.join("env"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        // The shell adds its own PWD/SHLVL. runc also adds HOME from the rootfs's
        // /etc/passwd to the process's environment; nucleus passes process.env as given.
        env.retain(|l| {
            !l.starts_with("PWD=") && !l.starts_with("SHLVL=") && !l.starts_with("HOME=")
        });
        env.sort();
        env
    });
    assert_same(&seen);
    assert!(
        seen[0].1.contains(&"FROM_PROCESS=yes".to_string()),
        "{:?}",
        seen[0].1
    );
}

/// A hook killed by a signal fails the create with "error running hook"; nucleus also
/// names the signal.
#[test]
fn hook_killed_by_a_signal_is_reported() {
    require!(root, busybox);
    let seen = each_runtime(|ctx| {
        let bundle = ctx.bundle().with_args(&["true"]).edit(|s| {
            s["hooks"] = json!({ "createRuntime": [
                { "path": "/bin/sh", "args": ["sh", "-c", "kill -KILL $$"] }
            ]});
        });
        let id = ctx.id();
        let out = ctx.create_with(&bundle, &id, &[]);
        if ctx.runtime() == nucleus() {
            assert!(out.stderr.contains("signal 9 (SIGKILL)"), "{out}");
        }
        let _ = ctx.rt(&["delete", "--force", &id]);
        (out.code, out.stderr.contains("error running hook"))
    });
    assert_same(&seen);
    assert_eq!(seen[0].1, (Some(1), true));
}

/// `--debug` lines have logrus's text shape: `time="…" level=debug msg=…`.
#[test]
fn debug_text_lines_are_logrus_key_values() {
    require!(root, busybox);
    let seen = each_runtime(|ctx| {
        let bundle = ctx.bundle().with_args(&["true"]);
        bundle.write();
        let id = ctx.id();
        let out = ctx.rt(&[
            "--debug",
            "run",
            "--bundle",
            bundle.path().to_str().unwrap(),
            &id,
        ]);
        out.assert_ok();
        let debug: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.contains(" level=debug "))
            .collect();
        assert!(!debug.is_empty(), "no debug lines\n{out}");
        debug.iter().all(|l| {
            let rest = l
                .strip_prefix("time=\"")
                .and_then(|r| r.split_once("\" level=debug msg="));
            rest.is_some()
        })
    });
    assert_same(&seen);
    assert!(seen[0].1);
}

/// The pty of a terminal process belongs to the process's uid with group tty (5).
#[test]
fn terminal_pty_is_owned_by_the_process_user_and_tty_group() {
    require!(root, busybox);
    let seen = each_runtime(|ctx| {
        let bundle = ctx
            .bundle()
            .edit(|s| {
                s["process"]["terminal"] = json!(true);
                s["process"]["user"] = json!({ "uid": 65534, "gid": 65534 });
            })
            .with_sh("stat -c 'owner=%u:%g' $(tty)");
        let id = ctx.id();
        let sock = ctx.scratch("console").join("sock");
        let listener = UnixListener::bind(&sock).expect("bind console socket");
        let (create, master) = thread::scope(|s| {
            let create = s.spawn(|| {
                ctx.create_with(&bundle, &id, &["--console-socket", sock.to_str().unwrap()])
            });
            let deadline = Instant::now() + common::CMD_TIMEOUT;
            let master = accept_until(&listener, deadline, || create.is_finished())
                .map(|stream| recv_fd(&stream));
            (create.join().expect("create thread"), master)
        });
        create.assert_ok();
        let mut master = pty_master(master.expect("a pty master"));
        ctx.start(&id);
        let text = read_pty(&mut master, Duration::from_secs(20));
        ctx.wait_status(&id, "stopped");
        ctx.delete(&id);
        text.lines()
            .find(|l| l.starts_with("owner="))
            .unwrap_or("")
            .trim()
            .to_string()
    });
    assert_same(&seen);
    assert_eq!(seen[0].1, "owner=65534:5");
}

/// A container placed in a cgroup that already holds a process gets runc's warning.
/// runc looks at the v1 `devices` hierarchy only; nucleus at every hierarchy.
#[test]
fn non_empty_cgroup_gets_runcs_warning() {
    require!(root, busybox);
    if !Path::new("/sys/fs/cgroup/devices/cgroup.procs").exists() {
        eprintln!("skipped: no v1 devices hierarchy");
        return;
    }
    let seen = each_runtime(|ctx| {
        let id = ctx.id();
        let name = format!("{}-busy", id.id());
        let dir = Path::new("/sys/fs/cgroup/devices").join(&name);
        fs::create_dir(&dir).expect("make the busy cgroup");
        let mut occupant = Command::new("sleep")
            .arg("300")
            .spawn()
            .expect("spawn sleep");
        fs::write(dir.join("cgroup.procs"), occupant.id().to_string())
            .expect("move sleep into the cgroup");
        let bundle = ctx
            .bundle()
            .with_args(&["true"])
            .edit(|s| s["linux"]["cgroupsPath"] = json!(format!("/{name}")));
        let out = ctx.run_with(&bundle, &id, &[]);
        let _ = occupant.kill();
        let _ = occupant.wait();
        let _ = ctx.rt(&["delete", "--force", &id]);
        wait_until(Duration::from_secs(5), || {
            fs::remove_dir(&dir).is_ok() || !dir.exists()
        });
        for h in fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let _ = fs::remove_dir(h.path().join(&name));
        }
        out.stderr
            .contains("container's cgroup is not empty: 1 process(es) found")
    });
    assert_same(&seen);
    assert!(seen[0].1);
}

/// `linux.resources.unified` on a v1 or hybrid host is refused before anything is made,
/// as an invalid configuration naming the field.
#[test]
fn unified_on_a_v1_host_is_an_invalid_configuration() {
    require!(root, busybox);
    let v2_only = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .all(|l| !l.contains(" - cgroup "));
    if v2_only {
        eprintln!("skipped: this host is cgroup v2 only");
        return;
    }
    let seen = each_runtime(|ctx| {
        let bundle = ctx
            .bundle()
            .with_args(&["true"])
            .edit(|s| s["linux"]["resources"]["unified"] = json!({ "memory.min": "0" }));
        let out = ctx.run(&bundle);
        assert!(
            out.stderr.contains("invalid configuration")
                && out.stderr.contains("unified on cgroup v1"),
            "{out}"
        );
        if ctx.runtime() == nucleus() {
            assert!(
                out.stderr.contains("linux.resources.unified") && out.stderr.contains("memory.min"),
                "{out}"
            );
        }
        out.code
    });
    assert_same(&seen);
    assert_eq!(seen[0].1, Some(1));
}

#[test]
fn spec_pts_mount_has_gid_5_and_ambient_caps() {
    let ctx = Ctx::new();
    let dir = ctx.scratch("spec");
    bare(&ctx, &dir, &["spec"]).assert_ok();
    let v: Value =
        serde_json::from_str(&fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let pts = v["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/dev/pts")
        .unwrap();
    assert!(
        pts["options"].as_array().unwrap().contains(&json!("gid=5")),
        "{pts}"
    );
    assert_eq!(
        v["process"]["capabilities"]["ambient"],
        v["process"]["capabilities"]["bounding"]
    );
    assert!(!v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .contains(&json!({ "type": "cgroup" })));
    let meta = fs::metadata(dir.join("config.json")).unwrap();
    assert_eq!(meta.uid(), nix::unistd::getuid().as_raw());
    ctx.finish();
}

/// Recursive mount options (`rro`, `rnoatime`, ...) reach the mounts below a recursive
/// bind too, through `mount_setattr(AT_RECURSIVE)`; the plain ones only the top mount.
#[test]
fn recursive_mount_options_apply_to_sub_mounts() {
    require!(root, busybox);
    if !common::is_mount_point(Path::new("/sys/fs/cgroup/pids")) {
        eprintln!("skipped: needs the v1 pids hierarchy mounted below /sys/fs/cgroup");
        return;
    }
    let seen = each_runtime(|ctx| {
        let mut opts = Vec::new();
        for extra in [&["ro"][..], &["rro", "rnoatime", "rnosymfollow"][..]] {
            let script = "grep -E ' /mnt/cg(/pids)? ' /proc/self/mountinfo | cut -d' ' -f5,6";
            let bundle = ctx
                .bundle()
                .with_bind(Path::new("/sys/fs/cgroup"), "/mnt/cg", extra)
                .with_sh(script);
            let out = ctx.run(&bundle);
            out.assert_ok();
            let mut lines: Vec<String> = out.stdout.lines().map(str::to_string).collect();
            lines.sort();
            opts.push(lines);
        }
        opts
    });
    assert_same(&seen);
    let (plain, recursive) = (&seen[0].1[0], &seen[0].1[1]);
    let pids = |lines: &[String]| {
        lines
            .iter()
            .find(|l| l.starts_with("/mnt/cg/pids "))
            .cloned()
            .unwrap_or_default()
    };
    assert!(
        pids(plain).contains(" rw,"),
        "plain ro reached the sub-mount: {plain:?}"
    );
    assert!(
        pids(recursive).contains(" ro,")
            && pids(recursive).contains("noatime")
            && pids(recursive).contains("nosymfollow"),
        "{recursive:?}"
    );
}

/// `process.scheduler`, `process.execCPUAffinity` and `linux.memoryPolicy` are applied
/// (runc 1.1 predates them and ignores them, so nucleus alone is checked). The workload
/// reads its policy and nice value from /proc/self/stat, its CPUs from /proc/self/status
/// and its memory policy from /proc/self/numa_maps.
#[test]
fn scheduler_affinity_and_memory_policy_are_applied() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let script = "set -- $(sed 's/.*) //' /proc/self/stat); echo policy=${39} nice=${17}; \
                  grep Cpus_allowed_list /proc/self/status; \
                  grep -m1 -o -E ' (default|bind:[0-9,-]+) ' /proc/self/numa_maps";
    let bundle = ctx
        .bundle()
        .edit(|s| {
            s["process"]["scheduler"] = json!({ "policy": "SCHED_BATCH", "nice": 5 });
            s["process"]["execCPUAffinity"] = json!({ "initial": "0-1", "final": "0" });
            s["linux"]["memoryPolicy"] = json!({ "mode": "MPOL_BIND", "nodes": "0" });
        })
        .with_sh(script);
    let out = ctx.run(&bundle);
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().map(str::trim).collect();
    // SCHED_BATCH is policy 3.
    assert_eq!(lines[0], "policy=3 nice=5", "{out}");
    assert_eq!(lines[1].split_whitespace().last(), Some("0"), "{out}");
    assert_eq!(lines[2], "bind:0", "{out}");

    // MPOL_DEFAULT with no nodes is a no-op; with nodes it is refused by name.
    let default = ctx
        .bundle()
        .edit(|s| s["linux"]["memoryPolicy"] = json!({ "mode": "MPOL_DEFAULT" }))
        .with_sh("grep -m1 -o -E ' default ' /proc/self/numa_maps");
    assert_eq!(ctx.run(&default).assert_ok().out(), "default");
    for (field, value, needle) in [
        (
            "memoryPolicy",
            json!({ "mode": "MPOL_DEFAULT", "nodes": "0" }),
            "linux.memoryPolicy.nodes",
        ),
        (
            "memoryPolicy",
            json!({ "mode": "MPOL_BIND", "nodes": "9999" }),
            "linux.memoryPolicy.nodes",
        ),
    ] {
        let bad = ctx
            .bundle()
            .edit(|s| s["linux"][field] = value.clone())
            .with_args(&["true"]);
        let out = ctx.run(&bad);
        out.assert_fail();
        assert!(out.stderr.contains(needle), "{out}");
    }
    let bad = ctx
        .bundle()
        .edit(|s| s["process"]["scheduler"] = json!({ "policy": "SCHED_FIFO" }))
        .with_args(&["true"]);
    let out = ctx.run(&bad);
    out.assert_fail();
    assert!(out.stderr.contains("process.scheduler.priority"), "{out}");
    ctx.finish();
}

/// `checkpoint` and `restore` take runc's flags and go through CRIU. Where CRIU cannot
/// dump (Debian's criu 3.17 on this kernel), both fail with exit 1 as runc's do, nucleus
/// saying why (`criu check`), and the container keeps running. Without criu installed,
/// nucleus says so.
#[test]
fn checkpoint_and_restore_go_through_criu() {
    require!(root, busybox);
    let criu_works = Command::new("criu")
        .arg("check")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let seen = each_runtime(|ctx| {
        let bundle = sleep_bundle(ctx);
        let id = ctx.id();
        sleeper(ctx, &bundle, &id);
        let images = ctx.scratch("images");
        let work = ctx.scratch("work");
        let (img, wk) = (images.to_str().unwrap(), work.to_str().unwrap());
        let flags = [
            "--image-path",
            img,
            "--work-path",
            wk,
            "--tcp-established",
            "--ext-unix-sk",
            "--shell-job",
            "--file-locks",
            "--manage-cgroups-mode",
            "soft",
        ];
        let mut args = vec!["checkpoint", "--leave-running"];
        args.extend_from_slice(&flags);
        args.push(&id);
        let dump = ctx.rt(&args);
        let status = ctx.status(&id);
        let b = bundle.path().to_str().unwrap();
        let restored_id = format!("{}-restored", id.id());
        let mut args = vec!["restore", "--detach", "--bundle", b];
        args.extend_from_slice(&flags);
        args.push(&restored_id);
        let restore = ctx.rt(&args);
        let _ = ctx.rt(&["delete", "--force", &restored_id]);
        ctx.rt(&["delete", "--force", &id]).assert_ok();
        if ctx.runtime() == nucleus() {
            let why = if matches!(&criu_works, Ok(s) if !s.success()) {
                "criu check"
            } else {
                "criu"
            };
            assert!(
                dump.stderr.contains(why) && restore.stderr.contains(why),
                "{dump}\n{restore}"
            );
        }
        (dump.code, status, restore.code)
    });
    match criu_works {
        Ok(s) if !s.success() => {
            assert_same(&seen);
            assert_eq!(seen[0].1, (Some(1), Some("running".to_string()), Some(1)));
        }
        Ok(_) => eprintln!("note: criu works here; checkpoint/restore results: {seen:?}"),
        Err(_) => assert!(seen[0].1 .0 == Some(1), "nucleus without criu: {seen:?}"),
    }
}

/// A seccomp agent that cannot be reached fails the run with runc's wording.
#[test]
fn unreachable_seccomp_agent_is_reported_as_runc_does() {
    require!(root, busybox);
    let seen = each_runtime(|ctx| {
        let sock = ctx.scratch("agent").join("none.sock");
        let bundle = ctx.bundle().with_args(&["true"]).edit(|s| {
            s["linux"]["seccomp"] = json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "listenerPath": sock,
                "syscalls": [{ "names": ["mkdir"], "action": "SCMP_ACT_NOTIFY" }]
            });
        });
        let out = ctx.run(&bundle);
        (
            out.code,
            out.stderr.contains("failed to connect with seccomp agent"),
        )
    });
    assert_same(&seen);
    assert_eq!(seen[0].1, (Some(1), true));
}

/// `linux.timeOffsets` shift the container's boottime and monotonic clocks in its time
/// namespace (runc 1.1 predates them, so nucleus alone is checked); the runtime's own
/// clocks and later children are untouched. A spec without a mount namespace is refused
/// with the reason (nucleus never mounts into the runtime's own namespace).
#[test]
fn time_offsets_shift_the_containers_clocks() {
    require!(root, busybox);
    if !Path::new("/proc/self/ns/time").exists() {
        eprintln!("skipped: no time namespaces on this kernel");
        return;
    }
    const YEAR: i64 = 365 * 86_400;
    let ctx = Ctx::new();
    let bundle = ctx
        .bundle()
        .with_namespace("time")
        .edit(|s| {
            s["linux"]["timeOffsets"] =
                json!({ "boottime": { "secs": YEAR }, "monotonic": { "secs": YEAR } })
        })
        .with_sh("cut -d. -f1 /proc/uptime");
    let out = ctx.run(&bundle);
    out.assert_ok();
    let host_uptime: i64 = fs::read_to_string("/proc/uptime")
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let uptime: i64 = out.out().parse().unwrap_or_else(|_| panic!("{out}"));
    assert!(
        uptime >= YEAR && uptime - YEAR <= host_uptime + 60,
        "uptime {uptime} vs host {host_uptime}\n{out}"
    );

    let without_ns = ctx
        .bundle()
        .edit(|s| s["linux"]["timeOffsets"] = json!({ "boottime": { "secs": 5 } }))
        .with_args(&["true"]);
    let out = ctx.run(&without_ns);
    out.assert_fail();
    assert!(
        out.stderr.contains("linux.timeOffsets") && out.stderr.contains("time namespace"),
        "{out}"
    );

    let no_mount_ns = ctx
        .bundle()
        .edit(|s| {
            s["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .retain(|n| n["type"] != "mount")
        })
        .with_args(&["true"]);
    let out = ctx.run(&no_mount_ns);
    out.assert_fail();
    assert!(
        out.stderr.contains("a mount namespace is required")
            && out.stderr.contains("never mounts into"),
        "{out}"
    );
    ctx.finish();
}

/// `idmap`/`ridmap` binds show the source's files through the mount's own id mappings
/// (`mount_setattr(MOUNT_ATTR_IDMAP)`); runc 1.1 predates them, so nucleus alone is
/// checked. Mappings without the option, or the option without mappings, are refused.
#[test]
fn idmapped_bind_mounts_map_file_owners() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let src = ctx.scratch("idmap-src");
    fs::write(src.join("mine"), "x").unwrap();
    fs::write(src.join("roots"), "x").unwrap();
    nix::unistd::chown(&src.join("mine"), Some(1000.into()), Some(1000.into())).unwrap();
    let maps = json!([{ "containerID": 0, "hostID": 1000, "size": 1 }]);
    let mut observed = Vec::new();
    for opt in ["idmap", "ridmap"] {
        let bundle = ctx
            .bundle()
            .with_mount(json!({
                "destination": "/mnt/ids", "type": "bind", "source": src,
                "options": ["rbind", opt], "uidMappings": maps, "gidMappings": maps
            }))
            .with_sh("stat -c '%n %u:%g' /mnt/ids/mine /mnt/ids/roots");
        let out = ctx.run(&bundle);
        out.assert_ok();
        observed.push(out.stdout.clone());
    }
    for out in &observed {
        // The mount maps on-disk ids down through its user namespace, as the
        // container's own user namespace would: on-disk 0 shows as host 1000, and
        // on-disk 1000, outside the map, as the overflow id.
        assert_eq!(out, "/mnt/ids/mine 65534:65534\n/mnt/ids/roots 1000:1000\n");
    }
    // The host still sees its own owners.
    assert_eq!(fs::metadata(src.join("mine")).unwrap().uid(), 1000);

    for (mount, needle) in [
        (
            json!({ "destination": "/mnt/ids", "type": "bind", "source": src, "options": ["rbind"], "uidMappings": maps, "gidMappings": maps }),
            "need the `idmap` or `ridmap` option",
        ),
        (
            json!({ "destination": "/mnt/ids", "type": "bind", "source": src, "options": ["rbind", "idmap"] }),
            "needs uidMappings and gidMappings",
        ),
    ] {
        let out = ctx.run(&ctx.bundle().with_mount(mount).with_args(&["true"]));
        out.assert_fail();
        assert!(out.stderr.contains(needle), "{out}");
    }
    ctx.finish();
}
