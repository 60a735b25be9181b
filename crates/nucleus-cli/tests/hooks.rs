//! OCI hooks: order, the state JSON on stdin, env, failure and timeout.
//!
//! Every hook is `/bin/sh -c` appending its name to `<log>/order` and saving its stdin to
//! `<log>/<name>.json`. The log dir is bind-mounted at the same path inside the container,
//! so the hooks that run in the container's namespaces (createContainer, startContainer)
//! write to the same place whether the runtime runs them before or after pivot_root.

#[macro_use]
mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{wait_until, Bundle, Ctx};
use serde_json::{json, Value};

const HOOKS: &[&str] = &[
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

fn logging_hook(log: &Path, name: &str) -> Value {
    let log = log.display();
    json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", format!("cat > {log}/{name}.json; echo {name} >> {log}/order; echo \"$HOOK_VAR\" > {log}/{name}.env")],
        "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", format!("HOOK_VAR={name}-env")]
    })
}

fn bundle_with_all_hooks(ctx: &Ctx, log: &Path) -> Bundle {
    let mut hooks = serde_json::Map::new();
    for name in HOOKS {
        hooks.insert((*name).to_string(), json!([logging_hook(log, name)]));
    }
    ctx.bundle()
        .with_bind(log, log.to_str().unwrap(), &["rw"])
        .edit(|s| s["hooks"] = Value::Object(hooks))
        .with_sh(&format!("echo container >> {}/order", log.display()))
}

/// The runtime-spec runs poststart after the user process starts (lifecycle step 9).
/// runc before 1.3 runs it at the end of `create` (opencontainers/runc#4347, fixed by
/// opencontainers/runc#5186), so only nucleus is held to it.
fn poststart_after_start() -> bool {
    common::is_nucleus()
}

fn order(log: &Path) -> Vec<String> {
    fs::read_to_string(log.join("order"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn position(order: &[String], name: &str) -> usize {
    order
        .iter()
        .position(|n| n == name)
        .unwrap_or_else(|| panic!("hook {name} never ran; order: {order:?}"))
}

#[test]
fn hooks_run_in_oci_order_with_state_on_stdin() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let log = ctx.scratch("hooks");
    let bundle = bundle_with_all_hooks(&ctx, &log);
    let id = ctx.id();

    ctx.create(&bundle, &id);
    let after_create = order(&log);
    let pid = ctx.state(&id)["pid"].as_i64().unwrap();
    for name in ["prestart", "createRuntime", "createContainer"] {
        assert!(
            after_create.contains(&name.to_string()),
            "{name} did not run during create: {after_create:?}"
        );
    }
    for name in ["startContainer", "poststart", "container", "poststop"] {
        if name == "poststart" && !poststart_after_start() {
            continue;
        }
        assert!(
            !after_create.contains(&name.to_string()),
            "{name} ran during create: {after_create:?}"
        );
    }

    ctx.start(&id);
    ctx.wait_status(&id, "stopped");
    // poststart runs after start returns or before; wait for it either way.
    assert!(wait_until(Duration::from_secs(5), || order(&log)
        .contains(&"poststart".to_string())));
    assert!(
        !order(&log).contains(&"poststop".to_string()),
        "poststop ran before delete"
    );
    ctx.delete(&id);

    let order = order(&log);
    let at = |name| position(&order, name);
    assert!(at("prestart") < at("createContainer"), "{order:?}");
    assert!(at("createRuntime") < at("createContainer"), "{order:?}");
    assert!(at("createContainer") < at("startContainer"), "{order:?}");
    assert!(
        at("startContainer") < at("container"),
        "startContainer must run before the user process: {order:?}"
    );
    if poststart_after_start() {
        assert!(at("startContainer") < at("poststart"), "{order:?}");
    }
    assert!(at("poststart") < at("poststop"), "{order:?}");
    assert_eq!(order.len(), HOOKS.len() + 1, "a hook ran twice: {order:?}");

    for name in HOOKS {
        let text = fs::read_to_string(log.join(format!("{name}.json"))).unwrap();
        let state: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{name} got bad state JSON ({e}): {text:?}"));
        assert_eq!(state["id"], id.id(), "{name}: {state}");
        assert!(state["ociVersion"].is_string(), "{name}: {state}");
        assert!(state["status"].is_string(), "{name}: {state}");
        assert_eq!(
            fs::canonicalize(state["bundle"].as_str().unwrap_or_default()).ok(),
            fs::canonicalize(bundle.path()).ok(),
            "{name}: {state}"
        );
        match *name {
            "poststop" => {}
            // These run in the container's pid namespace, where the init is pid 1.
            "createContainer" | "startContainer" => {
                let got = state["pid"].as_i64();
                assert!(
                    got == Some(pid) || got == Some(1),
                    "{name} got the wrong pid: {state}"
                );
            }
            _ => assert_eq!(
                state["pid"].as_i64(),
                Some(pid),
                "{name} got the wrong pid: {state}"
            ),
        }
        let env = fs::read_to_string(log.join(format!("{name}.env"))).unwrap();
        assert_eq!(
            env.trim(),
            format!("{name}-env"),
            "{name} did not get its env"
        );
    }
    ctx.finish();
}

#[test]
fn run_fires_every_hook() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let log = ctx.scratch("hooks");
    let bundle = bundle_with_all_hooks(&ctx, &log);
    ctx.run(&bundle).assert_ok();
    let order = order(&log);
    for name in HOOKS {
        position(&order, name);
    }
    assert!(
        position(&order, "startContainer") < position(&order, "container"),
        "{order:?}"
    );
    assert!(
        position(&order, "poststart") < position(&order, "poststop"),
        "{order:?}"
    );
    ctx.finish();
}

#[test]
fn hook_timeout_fails_create() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx.bundle().with_args(&["true"]).edit(|s| {
        s["hooks"] = json!({ "prestart": [{ "path": "/bin/sleep", "args": ["sleep", "5"], "timeout": 1 }] });
    });
    let id = ctx.id();
    let started = Instant::now();
    let out = ctx.create_with(&bundle, &id, &[]);
    let took = started.elapsed();
    out.assert_fail();
    assert!(
        took < Duration::from_millis(4500),
        "create waited {took:?} for a hook with a 1s timeout\n{out}"
    );
    if common::is_nucleus() {
        assert!(
            out.stderr.contains("prestart") && out.stderr.contains("timed out"),
            "{out}"
        );
    }
    assert!(
        ctx.root_entries().is_empty(),
        "failed create left state: {:?}",
        ctx.root_entries()
    );
    ctx.rt(&["state", &id]).assert_fail();
    ctx.finish();
}

#[test]
fn failing_create_runtime_hook_fails_create() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx.bundle().with_args(&["true"]).edit(|s| {
        s["hooks"] = json!({ "createRuntime": [{ "path": "/bin/sh", "args": ["sh", "-c", "echo hook-says-no >&2; exit 3"] }] });
    });
    let id = ctx.id();
    let out = ctx.create_with(&bundle, &id, &[]);
    out.assert_fail();
    if common::is_nucleus() {
        assert!(out.stderr.contains("createRuntime"), "{out}");
    }
    assert!(
        ctx.root_entries().is_empty(),
        "failed create left state: {:?}",
        ctx.root_entries()
    );
    ctx.finish();
}

#[test]
fn failing_poststop_hook_does_not_block_delete() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx.bundle().with_args(&["true"]).edit(|s| {
        s["hooks"] = json!({ "poststop": [{ "path": "/bin/false", "args": ["false"] }] });
    });
    let id = ctx.id();
    ctx.create(&bundle, &id);
    ctx.start(&id);
    ctx.wait_status(&id, "stopped");
    // The spec says a failing poststop hook is logged and the runtime carries on.
    let _ = ctx.rt(&["delete", &id]);
    ctx.rt(&["state", &id]).assert_fail();
    ctx.finish();
}
