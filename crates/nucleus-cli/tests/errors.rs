//! Refusals: bad config, bad ids, duplicate ids, missing containers. Each must exit non-zero,
//! say why on stderr, and leave nothing under `--root`.

#[macro_use]
mod common;

use std::fs;

use common::{is_nucleus, Ctx, Out};
use serde_json::json;

/// Asserts a refused `create` left no state behind and no container exists.
#[track_caller]
fn assert_refused_cleanly(ctx: &Ctx, out: &Out, id: &str) {
    out.assert_fail();
    assert!(
        !out.stderr.trim().is_empty(),
        "failure without a message on stderr\n{out}"
    );
    assert!(
        out.stdout.trim().is_empty(),
        "errors belong on stderr, not stdout\n{out}"
    );
    assert!(
        ctx.root_entries().is_empty(),
        "refused create left state: {:?}\n{out}",
        ctx.root_entries()
    );
    ctx.rt(&["state", id]).assert_fail();
}

#[test]
fn malformed_config_json_is_refused() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx
        .bundle()
        .with_raw_config("{ \"ociVersion\": \"1.0.2\", this is not json");
    let id = ctx.id();
    let out = ctx.create_with(&bundle, &id, &[]);
    assert_refused_cleanly(&ctx, &out, &id);
    if is_nucleus() {
        assert!(
            out.stderr.contains("config.json"),
            "error should name config.json\n{out}"
        );
    }
    ctx.finish();
}

#[test]
fn missing_config_json_is_refused() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx.bundle();
    let id = ctx.id();
    // `rt` directly: the Ctx verbs would write config.json first.
    let out = ctx.rt(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    assert_refused_cleanly(&ctx, &out, &id);
    assert!(
        out.stderr.contains("config.json"),
        "error should name config.json\n{out}"
    );
    ctx.finish();
}

#[test]
fn unsupported_oci_version_is_refused() {
    require!(root, busybox);
    let ctx = Ctx::new();
    for version in ["0.1.0", "2.0.0"] {
        let bundle = ctx
            .bundle()
            .with_args(&["true"])
            .edit(|s| s["ociVersion"] = json!(version));
        let id = ctx.id();
        let out = ctx.create_with(&bundle, &id, &[]);
        if !is_nucleus() && out.success() {
            // runc 1.1 does not check ociVersion; nothing more to learn from it here.
            eprintln!(
                "note: {} accepted ociVersion {version}",
                common::runtime().display()
            );
            ctx.rt(&["delete", "--force", &id]).assert_ok();
            continue;
        }
        assert_refused_cleanly(&ctx, &out, &id);
        if is_nucleus() {
            assert!(
                out.stderr.contains("ociVersion"),
                "error should name ociVersion\n{out}"
            );
            assert!(
                out.stderr.contains(version),
                "error should quote the version\n{out}"
            );
        }
    }
    ctx.finish();
}

#[test]
fn missing_rootfs_is_refused_naming_the_path() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx
        .bundle()
        .with_args(&["true"])
        .edit(|s| s["root"]["path"] = json!("no-such-rootfs"));
    let id = ctx.id();
    let out = ctx.create_with(&bundle, &id, &[]);
    assert_refused_cleanly(&ctx, &out, &id);
    assert!(
        out.stderr.contains("no-such-rootfs"),
        "error should name the missing rootfs\n{out}"
    );
    ctx.finish();
}

#[test]
fn bad_container_ids_are_refused() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx.bundle().with_args(&["true"]);
    let long = "x".repeat(1025);
    for bad in ["../x", "a/b", "..", ".", "/abs", long.as_str()] {
        let out = ctx.create_with(&bundle, bad, &[]);
        out.assert_fail();
        assert!(
            ctx.root_entries().is_empty(),
            "id {bad:?} left state: {:?}\n{out}",
            ctx.root_entries()
        );
        if is_nucleus() {
            assert!(
                out.stderr.to_lowercase().contains("id"),
                "error should be about the id\n{out}"
            );
        }
        // Nothing may have been created next to the root, either.
        let parent = ctx.root().parent().unwrap();
        assert!(
            !parent.join("x").exists() && !parent.join("a").exists(),
            "id {bad:?} escaped the root"
        );
    }
    // `run` validates the same way.
    let out = ctx.run_with(&bundle, "../x", &[]);
    out.assert_fail();
    assert!(ctx.root_entries().is_empty(), "{out}");
    ctx.finish();
}

#[test]
fn duplicate_id_is_refused() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx.bundle().with_args(&["sleep", "100"]);
    let id = ctx.id();
    ctx.create(&bundle, &id);
    let pid = ctx.state(&id)["pid"].as_i64().unwrap();

    let other = ctx.bundle().with_args(&["true"]);
    let out = ctx.create_with(&other, &id, &[]);
    out.assert_fail();
    assert!(
        out.stderr.contains(id.id()) || out.stderr.contains("exists"),
        "{out}"
    );
    // The first container is untouched.
    let state = ctx.state(&id);
    assert_eq!(state["status"], "created", "{state}");
    assert_eq!(state["pid"].as_i64(), Some(pid), "{state}");
    assert_eq!(ctx.root_entries(), [id.id().to_string()]);

    let out = ctx.run_with(&other, &id, &[]);
    out.assert_fail();
    assert_eq!(ctx.state(&id)["status"], "created");

    ctx.rt(&["delete", "--force", &id]).assert_ok();
    ctx.finish();
}

#[test]
fn verbs_on_an_unknown_container_fail() {
    require!(root);
    let ctx = Ctx::new();
    let id = ctx.id();
    for args in [
        vec!["state", id.id()],
        vec!["start", id.id()],
        vec!["kill", id.id(), "KILL"],
        vec!["delete", id.id()],
    ] {
        let out = ctx.rt(&args);
        out.assert_fail();
        assert!(
            out.stderr.contains(id.id()) || out.stderr.contains("not exist"),
            "{out}"
        );
    }
    assert!(ctx.root_entries().is_empty(), "{:?}", ctx.root_entries());
    ctx.finish();
}

#[test]
fn bad_signal_is_refused() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx.bundle().with_args(&["sleep", "100"]);
    let id = ctx.id();
    ctx.create(&bundle, &id);
    ctx.start(&id);
    for bad in ["SIGNOPE", "999", "-1"] {
        let out = ctx.rt(&["kill", &id, bad]);
        out.assert_fail();
    }
    assert_eq!(ctx.status(&id).as_deref(), Some("running"));
    ctx.rt(&["delete", "--force", &id]).assert_ok();
    ctx.finish();
}

#[test]
fn start_twice_fails_the_second_time() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx.bundle().with_args(&["sleep", "100"]);
    let id = ctx.id();
    ctx.create(&bundle, &id);
    ctx.start(&id);
    ctx.rt(&["start", &id]).assert_fail();
    assert_eq!(ctx.status(&id).as_deref(), Some("running"));
    ctx.rt(&["delete", "--force", &id]).assert_ok();
    ctx.finish();
}

#[test]
fn missing_executable_is_reported() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx.bundle().with_args(&["/no/such/binary"]);
    let id = ctx.id();
    let out = ctx.run_with(&bundle, &id, &[]);
    out.assert_fail();
    assert!(
        out.stderr.contains("/no/such/binary"),
        "error should name the executable\n{out}"
    );
    ctx.finish();
}

#[test]
fn invalid_mount_is_refused_and_cleaned_up() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx.bundle().with_args(&["true"]).with_bind(
        &ctx.scratch("gone").join("does-not-exist"),
        "/mnt/x",
        &[],
    );
    let id = ctx.id();
    let out = ctx.create_with(&bundle, &id, &[]);
    assert_refused_cleanly(&ctx, &out, &id);
    assert!(
        out.stderr.contains("does-not-exist"),
        "error should name the mount source\n{out}"
    );
    ctx.finish();
}

#[test]
fn relative_bundle_path_is_reported_absolute() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx.bundle().with_args(&["sleep", "100"]);
    bundle.write();
    let id = ctx.id();
    let parent = bundle.path().parent().unwrap();
    let name = bundle.path().file_name().unwrap().to_str().unwrap();
    ctx.rt_in(parent, &["create", "--bundle", name, &id])
        .assert_ok();
    let state = ctx.state(&id);
    assert_eq!(
        fs::canonicalize(state["bundle"].as_str().unwrap()).unwrap(),
        fs::canonicalize(bundle.path()).unwrap(),
        "{state}"
    );
    assert!(
        state["bundle"].as_str().unwrap().starts_with('/'),
        "{state}"
    );
    ctx.rt(&["delete", "--force", &id]).assert_ok();
    ctx.finish();
}

#[test]
fn log_format_json_records_the_error_as_json_lines() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx
        .bundle()
        .with_args(&["true"])
        .edit(|s| s["root"]["path"] = json!("no-such-rootfs"));
    bundle.write();
    let id = ctx.id();
    let log = ctx.scratch("log").join("runtime.log");
    let out = ctx.rt(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "create",
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id,
    ]);
    assert_refused_cleanly(&ctx, &out, &id);
    let text = fs::read_to_string(&log).expect("--log file written");
    // containerd's shim reads this file line by line.
    assert!(
        text.ends_with('\n'),
        "log does not end with a newline: {text:?}"
    );
    let entries: Vec<serde_json::Value> = text
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l:?}"))
        })
        .collect();
    let error = entries
        .iter()
        .find(|e| e["level"] == "error")
        .unwrap_or_else(|| panic!("no error entry in log: {text:?}"));
    assert!(
        error["msg"]
            .as_str()
            .is_some_and(|m| m.contains("no-such-rootfs")),
        "{error}"
    );
    assert!(error["time"].is_string(), "{error}");
    ctx.finish();
}
