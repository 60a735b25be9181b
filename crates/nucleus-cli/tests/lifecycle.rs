//! OCI lifecycle: create, start, state, kill, delete, run, list, spec, features.

#[macro_use]
mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::{pid_alive, wait_until, Ctx};

#[test]
fn create_start_kill_delete_walks_the_states() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx.bundle().with_args(&["sleep", "100"]);
    let id = ctx.id();

    ctx.create(&bundle, &id);
    let state = ctx.state(&id);
    assert_eq!(state["id"], id.id(), "state: {state}");
    assert_eq!(state["status"], "created", "state: {state}");
    assert!(
        state["ociVersion"].as_str().is_some_and(|v| !v.is_empty()),
        "state: {state}"
    );
    let pid = state["pid"].as_i64().expect("pid in state");
    assert!(pid > 0, "state: {state}");
    let pid = i32::try_from(pid).unwrap();
    assert!(
        pid_alive(pid),
        "created container's pid {pid} does not exist"
    );
    let reported = state["bundle"].as_str().expect("bundle in state");
    assert!(
        Path::new(reported).is_absolute(),
        "bundle is not absolute: {reported}"
    );
    assert_eq!(
        fs::canonicalize(reported).unwrap(),
        fs::canonicalize(bundle.path()).unwrap(),
        "state: {state}"
    );
    // The user process must not run before `start`: pid 1 is still the runtime's init.
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    assert_ne!(comm.trim(), "sleep", "process ran before start");

    ctx.start(&id);
    let state = ctx.state(&id);
    assert_eq!(state["status"], "running", "state: {state}");
    assert_eq!(
        state["pid"].as_i64(),
        Some(i64::from(pid)),
        "pid changed across start"
    );
    assert!(
        wait_until(Duration::from_secs(5), || {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
        }),
        "container pid {pid} never exec'd sleep"
    );

    ctx.kill(&id, "KILL");
    ctx.wait_status(&id, "stopped");
    assert!(
        wait_until(Duration::from_secs(5), || !pid_alive(pid)),
        "pid {pid} survived SIGKILL"
    );

    ctx.delete(&id);
    let out = ctx.rt(&["state", &id]);
    out.assert_fail();
    assert!(
        ctx.root_entries().is_empty(),
        "state left: {:?}",
        ctx.root_entries()
    );
    ctx.finish();
}

#[test]
fn run_returns_the_process_exit_code() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let out = ctx.run(&ctx.bundle().with_sh("echo out; echo err >&2; exit 7"));
    assert_eq!(out.code, Some(7), "{out}");
    assert_eq!(out.out(), "out", "{out}");
    assert!(out.stderr.contains("err"), "{out}");

    let out = ctx.run(&ctx.bundle().with_args(&["true"]));
    assert_eq!(out.code, Some(0), "{out}");
    let out = ctx.run(&ctx.bundle().with_args(&["false"]));
    assert_eq!(out.code, Some(1), "{out}");
    ctx.finish();
}

#[test]
fn run_removes_the_container_when_it_exits() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx.bundle().with_args(&["true"]);
    let id = ctx.id();
    ctx.run_with(&bundle, &id, &[]).assert_ok();
    // runc keeps no state for a foreground run once it has returned.
    ctx.rt(&["state", &id]).assert_fail();
    assert!(
        ctx.root_entries().is_empty(),
        "state left: {:?}",
        ctx.root_entries()
    );
    ctx.finish();
}

#[test]
fn list_json_shows_the_container() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx.bundle().with_args(&["sleep", "100"]);
    let id = ctx.id();
    ctx.create(&bundle, &id);

    let out = ctx.rt(&["list", "--format", "json"]);
    out.assert_ok();
    let list = out.json();
    let entries = list
        .as_array()
        .unwrap_or_else(|| panic!("list is not an array\n{out}"));
    let entry = entries
        .iter()
        .find(|e| e["id"] == id.id())
        .unwrap_or_else(|| panic!("{} missing from list\n{out}", id.id()));
    assert_eq!(entry["status"], "created", "{out}");
    assert!(entry["pid"].as_i64().is_some_and(|p| p > 0), "{out}");
    assert_eq!(
        entries.len(),
        1,
        "only this test's container is under its root\n{out}"
    );

    let out = ctx.rt(&["list"]);
    out.assert_ok();
    assert!(
        out.stdout.contains(id.id()),
        "table list misses the id\n{out}"
    );

    ctx.rt(&["delete", "--force", &id]).assert_ok();
    let out = ctx.rt(&["list", "--format", "json"]);
    out.assert_ok();
    // runc prints `null` for an empty list.
    let empty = out.json();
    assert!(
        empty.is_null() || empty.as_array().is_some_and(|a| a.is_empty()),
        "{out}"
    );
    ctx.finish();
}

#[test]
fn kill_by_signal_number_and_name_reaches_the_process() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let host = ctx.scratch("sig");
    // pid 1 ignores signals it has no handler for, so trap them.
    let bundle = ctx.bundle().with_bind(&host, "/out", &[]).with_sh(
        "trap 'echo usr1 >> /out/log' USR1; trap 'echo term >> /out/log; exit 0' TERM; \
                  echo ready > /out/ready; while true; do sleep 0.1; done",
    );
    let id = ctx.id();
    ctx.create(&bundle, &id);
    ctx.start(&id);
    assert!(
        wait_until(Duration::from_secs(10), || host.join("ready").exists()),
        "container never started"
    );

    ctx.kill(&id, &libc::SIGUSR1.to_string());
    assert!(
        wait_until(Duration::from_secs(10), || {
            fs::read_to_string(host.join("log")).is_ok_and(|l| l.contains("usr1"))
        }),
        "SIGUSR1 by number never arrived"
    );
    assert_eq!(ctx.status(&id).as_deref(), Some("running"));

    ctx.kill(&id, "SIGTERM");
    assert!(
        wait_until(Duration::from_secs(10), || {
            fs::read_to_string(host.join("log")).is_ok_and(|l| l.contains("term"))
        }),
        "SIGTERM by name never arrived"
    );
    ctx.wait_status(&id, "stopped");
    ctx.delete(&id);
    ctx.finish();
}

#[test]
fn kill_defaults_to_term() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let host = ctx.scratch("sig");
    let bundle = ctx.bundle().with_bind(&host, "/out", &[]).with_sh(
        "trap 'echo term > /out/log; exit 0' TERM; echo ready > /out/ready; \
                  while true; do sleep 0.1; done",
    );
    let id = ctx.id();
    ctx.create(&bundle, &id);
    ctx.start(&id);
    assert!(
        wait_until(Duration::from_secs(10), || host.join("ready").exists()),
        "container never started"
    );
    ctx.rt(&["kill", &id]).assert_ok();
    ctx.wait_status(&id, "stopped");
    assert_eq!(
        fs::read_to_string(host.join("log"))
            .unwrap_or_default()
            .trim(),
        "term"
    );
    ctx.delete(&id);
    ctx.finish();
}

#[test]
fn kill_signal_9_stops_the_container() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx.bundle().with_args(&["sleep", "100"]);
    let id = ctx.id();
    ctx.create(&bundle, &id);
    ctx.start(&id);
    ctx.kill(&id, "9");
    ctx.wait_status(&id, "stopped");
    ctx.delete(&id);
    ctx.finish();
}

#[test]
fn delete_force_removes_a_running_container() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx.bundle().with_args(&["sleep", "100"]);
    let id = ctx.id();
    ctx.create(&bundle, &id);
    ctx.start(&id);
    let pid = ctx.pid(&id);

    // Plain delete refuses a running container.
    ctx.rt(&["delete", &id]).assert_fail();
    assert_eq!(ctx.status(&id).as_deref(), Some("running"));

    ctx.rt(&["delete", "--force", &id]).assert_ok();
    assert!(
        wait_until(Duration::from_secs(5), || !pid_alive(pid)),
        "pid {pid} survived delete --force"
    );
    ctx.rt(&["state", &id]).assert_fail();
    ctx.finish();
}

#[test]
fn delete_force_removes_a_created_container() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx.bundle().with_args(&["sleep", "100"]);
    let id = ctx.id();
    ctx.create(&bundle, &id);
    let pid = ctx.pid(&id);
    ctx.rt(&["delete", "--force", &id]).assert_ok();
    assert!(
        wait_until(Duration::from_secs(5), || !pid_alive(pid)),
        "pid {pid} survived delete --force"
    );
    ctx.rt(&["state", &id]).assert_fail();
    ctx.finish();
}

#[test]
fn run_detach_then_delete_force() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx.bundle().with_args(&["sleep", "100"]);
    let id = ctx.id();
    let out = ctx.run_with(&bundle, &id, &["--detach"]);
    out.assert_ok();
    let state = ctx.state(&id);
    assert_eq!(state["status"], "running", "state: {state}");
    let pid = ctx.pid(&id);
    assert!(pid_alive(pid));
    ctx.rt(&["delete", "--force", &id]).assert_ok();
    assert!(
        wait_until(Duration::from_secs(5), || !pid_alive(pid)),
        "pid {pid} survived delete --force"
    );
    ctx.finish();
}

#[test]
fn pid_file_holds_the_container_pid() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx.bundle().with_args(&["sleep", "100"]);
    let id = ctx.id();
    let pid_file = ctx.scratch("pid").join("container.pid");
    ctx.create_with(&bundle, &id, &["--pid-file", pid_file.to_str().unwrap()])
        .assert_ok();
    let written: i64 = fs::read_to_string(&pid_file)
        .expect("pid file written")
        .trim()
        .parse()
        .expect("pid file holds a number");
    assert_eq!(Some(written), ctx.state(&id)["pid"].as_i64());
    ctx.rt(&["delete", "--force", &id]).assert_ok();
    ctx.finish();
}

#[test]
fn exited_container_is_stopped_until_deleted() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx.bundle().with_args(&["true"]);
    let id = ctx.id();
    ctx.create(&bundle, &id);
    ctx.start(&id);
    ctx.wait_status(&id, "stopped");
    // Starting a stopped container is an error; the state survives it.
    ctx.rt(&["start", &id]).assert_fail();
    assert_eq!(ctx.status(&id).as_deref(), Some("stopped"));
    ctx.delete(&id);
    ctx.rt(&["state", &id]).assert_fail();
    ctx.finish();
}

#[test]
fn spec_writes_a_default_config() {
    require!(root);
    let ctx = Ctx::new();
    let dir = ctx.scratch("spec");
    ctx.rt(&["spec", "--bundle", dir.to_str().unwrap()])
        .assert_ok();
    let spec: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(dir.join("config.json")).expect("config.json written"),
    )
    .unwrap();
    assert!(
        spec["ociVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "{spec}"
    );
    assert_eq!(spec["root"]["path"], "rootfs", "{spec}");
    assert!(
        spec["process"]["args"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{spec}"
    );
    let namespaces: Vec<&str> = spec["linux"]["namespaces"]
        .as_array()
        .expect("linux.namespaces")
        .iter()
        .filter_map(|n| n["type"].as_str())
        .collect();
    for ns in ["pid", "mount"] {
        assert!(
            namespaces.contains(&ns),
            "default spec lacks {ns} namespace: {namespaces:?}"
        );
    }

    // Without --bundle it writes into the working directory, and refuses to overwrite.
    let cwd = ctx.scratch("spec-cwd");
    ctx.rt_in(&cwd, &["spec"]).assert_ok();
    assert!(cwd.join("config.json").is_file());
    ctx.rt_in(&cwd, &["spec"]).assert_fail();

    let rootless = ctx.scratch("spec-rootless");
    ctx.rt(&["spec", "--rootless", "--bundle", rootless.to_str().unwrap()])
        .assert_ok();
    let spec: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(rootless.join("config.json")).unwrap()).unwrap();
    let has_user_ns = spec["linux"]["namespaces"]
        .as_array()
        .is_some_and(|a| a.iter().any(|n| n["type"] == "user"));
    assert!(has_user_ns, "rootless spec lacks a user namespace: {spec}");
    assert!(
        spec["linux"]["uidMappings"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{spec}"
    );
    ctx.finish();
}

#[test]
fn features_prints_json() {
    require!(root);
    let ctx = Ctx::new();
    let out = ctx.rt(&["features"]);
    out.assert_ok();
    let features = out.json();
    assert!(
        features["ociVersionMin"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "{out}"
    );
    assert!(
        features["ociVersionMax"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "{out}"
    );
    let hooks = features["hooks"].as_array().expect("hooks list");
    for hook in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        assert!(
            hooks.iter().any(|h| h == hook),
            "features lacks hook {hook}\n{out}"
        );
    }
    ctx.finish();
}

#[test]
fn parallel_containers_do_not_interfere() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundles: Vec<_> = (0..4)
        .map(|i| {
            ctx.bundle()
                .with_sh(&format!("hostname; exit {i}"))
                .with_hostname(&format!("h{i}"))
        })
        .collect();
    let ids: Vec<_> = (0..4).map(|_| ctx.id()).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = bundles
            .iter()
            .zip(&ids)
            .map(|(b, id)| s.spawn(|| ctx_run(&ctx, b, id)))
            .collect();
        for (i, h) in (0..).zip(handles) {
            let (code, out) = h.join().unwrap();
            assert_eq!(code, Some(i), "container {i}: {out}");
            assert_eq!(out.trim(), format!("h{i}"));
        }
    });
    ctx.finish();
}

fn ctx_run(ctx: &Ctx, bundle: &common::Bundle, id: &str) -> (Option<i32>, String) {
    let out = ctx.run_with(bundle, id, &[]);
    (out.code, out.stdout.clone())
}
