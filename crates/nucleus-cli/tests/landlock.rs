//! Landlock through the runtime: a policy carried in the spec's
//! `org.nucleus.landlock` annotation confines what the contained process
//! may write and connect to, whatever the mounts allow.

#[macro_use]
mod common;

use common::{is_nucleus, Ctx};
use std::net::TcpListener;

fn with_policy(bundle: common::Bundle, policy: &str) -> common::Bundle {
    let policy = policy.to_string();
    bundle.edit(move |c| {
        c["annotations"]["org.nucleus.landlock"] = serde_json::Value::String(policy);
    })
}

#[test]
fn writes_are_confined_even_on_writable_binds() {
    require!(root, busybox);
    if !is_nucleus() {
        println!("skipped: Landlock annotations are a nucleus feature");
        return;
    }
    let ctx = Ctx::new();
    let allowed = ctx.scratch("allowed");
    let denied = ctx.scratch("denied");
    let policy = r#"
min_abi = 1
[[rules]]
path = "/"
access = ["read", "execute"]
[[rules]]
path = "/allowed"
access = ["read", "write", "create", "remove"]
"#;
    let bundle = with_policy(ctx.bundle(), policy)
        .with_bind(&allowed, "/allowed", &["rw"])
        .with_bind(&denied, "/denied", &["rw"]);
    let out = ctx.sh(
        bundle,
        "echo in > /allowed/x && echo allowed-ok; \
         if echo out > /denied/x 2>/tmp/err || true; then cat /tmp/err 2>/dev/null; fi; \
         test -e /denied/x && echo denied-written || echo denied-refused",
    );
    assert!(out.contains("allowed-ok"), "{out}");
    assert!(out.contains("denied-refused"), "{out}");
    assert_eq!(std::fs::read_to_string(allowed.join("x")).unwrap(), "in\n");
    assert!(
        !denied.join("x").exists(),
        "a write outside the policy reached the host"
    );
    ctx.finish();
}

#[test]
fn net_rules_limit_tcp_connect() {
    require!(root, busybox);
    if !is_nucleus() {
        println!("skipped: Landlock annotations are a nucleus feature");
        return;
    }
    let ctx = Ctx::new();
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let (p_open, p_closed) = (
        open.local_addr().unwrap().port(),
        closed.local_addr().unwrap().port(),
    );
    for l in [open, closed] {
        std::thread::spawn(move || {
            for conn in l.incoming().take(2) {
                drop(conn);
            }
        });
    }
    let policy = format!(
        "min_abi = 4\n[[rules]]\npath = \"/\"\naccess = [\"read\", \"execute\"]\n[[net]]\nport = {p_open}\naccess = [\"connect\"]\n"
    );
    // Share the host network namespace so the listeners are reachable.
    let bundle = with_policy(ctx.bundle(), &policy).edit(|c| {
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "network");
    });
    let out = ctx.sh(
        bundle,
        &format!(
            "busybox nc 127.0.0.1 {p_open} </dev/null && echo open-ok; \
             busybox nc 127.0.0.1 {p_closed} </dev/null 2>&1 || echo closed-refused"
        ),
    );
    assert!(out.contains("open-ok"), "{out}");
    assert!(out.contains("closed-refused"), "{out}");
    ctx.finish();
}

#[test]
fn unmet_min_abi_refuses_to_start() {
    require!(root, busybox);
    if !is_nucleus() {
        println!("skipped: Landlock annotations are a nucleus feature");
        return;
    }
    let ctx = Ctx::new();
    let bundle = with_policy(ctx.bundle().with_sh("echo ran"), "min_abi = 99\n");
    let out = ctx.run(&bundle);
    out.assert_fail();
    assert!(!out.stdout.contains("ran"), "{out}");
    assert!(out.stderr.contains("99"), "{out}");
    ctx.finish();
}

#[test]
fn malformed_policy_names_the_line() {
    require!(root, busybox);
    if !is_nucleus() {
        println!("skipped: Landlock annotations are a nucleus feature");
        return;
    }
    let ctx = Ctx::new();
    let bundle = with_policy(
        ctx.bundle().with_sh("echo ran"),
        "min_abi = 1\n[[rules]]\npath = \"/\"\naccess = [\"fly\"]\n",
    );
    let out = ctx.run(&bundle);
    out.assert_fail();
    assert!(
        out.stderr.contains("line 4") && out.stderr.contains("fly"),
        "{out}"
    );
    ctx.finish();
}
