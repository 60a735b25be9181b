//! Crash safety: a runtime killed at any step of create, start, run or delete leaves
//! nothing that `delete --force` cannot clean up, quickly, and the id is usable again.
//!
//! Named steps come from `nucleus_engine::fault::STEPS` (`NUCLEUS_FAULT=<step>` makes a
//! debug build SIGKILL itself there); random-time `kill -9` covers the moments between
//! them. `NUCLEUS_FAULT_ITERATIONS` sets the number of random kills (default 100).

#[macro_use]
mod common;

use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{wait_until, Bundle, Ctx, Out};

/// How long `delete --force` may take after a fault.
const DELETE_BOUND: Duration = Duration::from_secs(15);

/// `<runtime> --root ROOT ARGS...` with extra environment, killed after `timeout`.
fn rt_env(ctx: &Ctx, env: &[(&str, &str)], args: &[&str], timeout: Duration) -> Out {
    let mut cmd = Command::new(common::runtime());
    cmd.arg("--root").arg(ctx.root()).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    common::exec(cmd, &ctx.scratch("io"), timeout)
}

/// Starts a runtime verb in the background (output discarded).
fn spawn(ctx: &Ctx, args: &[&str]) -> Child {
    Command::new(common::runtime())
        .arg("--root")
        .arg(ctx.root())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn runtime")
}

/// `delete --force ID` must succeed within `DELETE_BOUND` (or find nothing when the
/// runtime died before it made the state directory).
#[track_caller]
fn force_delete(ctx: &Ctx, id: &str, context: &str) {
    let t = Instant::now();
    let out = rt_env(
        ctx,
        &[],
        &["delete", "--force", id],
        DELETE_BOUND + Duration::from_secs(5),
    );
    let nothing = out.stderr.contains("does not exist") && !ctx.root().join(id).exists();
    assert!(
        out.success() || nothing,
        "{context}: delete --force failed\n{out}"
    );
    assert!(
        t.elapsed() < DELETE_BOUND,
        "{context}: delete --force took {:?}",
        t.elapsed()
    );
}

/// Cgroup directories named after the container, anywhere in the host's hierarchies.
fn container_cgroups(id: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, name: &str, depth: u32, out: &mut Vec<PathBuf>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.filter_map(|e| e.ok()) {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if e.file_name() == name {
                out.push(e.path());
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

/// Processes whose cgroup path names the container.
fn container_processes(id: &str) -> Vec<i32> {
    let needle = format!("/nucleus-{id}");
    let Ok(rd) = fs::read_dir("/proc") else {
        return vec![];
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| common::pid_alive(*pid))
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|c| {
                c.lines()
                    .any(|l| l.ends_with(&needle) || l.contains(&format!("{needle}/")))
            })
        })
        .collect()
}

/// Nothing of container `id` is left: no state, cgroup, process or mount.
#[track_caller]
fn assert_clean(ctx: &Ctx, id: &str, bundle: &Bundle, context: &str) {
    let dir = ctx.root().join(id);
    assert!(
        !dir.exists(),
        "{context}: state left: {:?}",
        fs::read_dir(&dir).map(|r| r.count())
    );
    let procs_gone = wait_until(Duration::from_secs(5), || {
        container_processes(id).is_empty()
    });
    assert!(
        procs_gone,
        "{context}: container processes left: {:?}",
        container_processes(id)
    );
    let cgroups_gone = wait_until(Duration::from_secs(2), || container_cgroups(id).is_empty());
    assert!(
        cgroups_gone,
        "{context}: cgroups left: {:?}",
        container_cgroups(id)
    );
    let mounts = common::mounts_under(&[bundle.path().to_path_buf(), ctx.root().to_path_buf()]);
    assert!(mounts.is_empty(), "{context}: mounts left: {mounts:?}");
}

/// The verbs that reach `step`, as (setup verbs, faulted verb).
fn plans_for(step: &str) -> Vec<(&'static [&'static str], &'static str)> {
    if step.starts_with("start-") {
        vec![(&["create"], "start")]
    } else if step.starts_with("delete-") {
        vec![(&["create", "start"], "delete")]
    } else if step.starts_with("run-") {
        vec![(&[], "run")]
    } else if step == "create-pid-file" {
        vec![(&[], "create")]
    } else {
        // create's own steps and the launch they share with run.
        vec![(&[], "create"), (&[], "run")]
    }
}

fn verb_args<'a>(verb: &'a str, bundle: &'a str, id: &'a str) -> Vec<&'a str> {
    match verb {
        "create" => vec!["create", "--bundle", bundle, id],
        "run" => vec!["run", "--bundle", bundle, id],
        "start" => vec!["start", id],
        "delete" => vec!["delete", "--force", id],
        other => panic!("no verb {other}"),
    }
}

#[test]
fn a_fault_at_every_named_step_is_cleaned_up_by_delete_force() {
    require!(root, busybox);
    if !common::is_nucleus() || !cfg!(debug_assertions) {
        eprintln!("skipped: needs a debug build of nucleus (NUCLEUS_FAULT)");
        return;
    }
    let ctx = Ctx::new();
    let sleeper = ctx.bundle().with_args(&["sleep", "100"]);
    sleeper.write();
    // `run` must get to its end: a workload that exits at once.
    let quick = ctx.bundle().with_args(&["true"]);
    quick.write();
    for step in nucleus_engine::fault::STEPS {
        for (setup, verb) in plans_for(step) {
            let bundle = if verb == "run" { &quick } else { &sleeper };
            let b = bundle.path().to_str().unwrap();
            let id = ctx.id();
            let context = format!("NUCLEUS_FAULT={step} on {verb}");
            for s in setup {
                rt_env(&ctx, &[], &verb_args(s, b, &id), common::CMD_TIMEOUT).assert_ok();
            }
            let out = rt_env(
                &ctx,
                &[("NUCLEUS_FAULT", step)],
                &verb_args(verb, b, &id),
                common::CMD_TIMEOUT,
            );
            assert_eq!(
                out.code, None,
                "{context}: the runtime was not killed at the step\n{out}"
            );
            force_delete(&ctx, &id, &context);
            assert_clean(&ctx, &id, bundle, &context);
            // The id can be used again.
            if verb == "create" {
                rt_env(&ctx, &[], &verb_args("create", b, &id), common::CMD_TIMEOUT).assert_ok();
                force_delete(&ctx, &id, &context);
                assert_clean(&ctx, &id, bundle, &context);
            }
        }
    }
    ctx.finish();
}

/// A small xorshift generator: the tests need no cryptographic randomness, only a seed
/// to print so a failing sequence can be replayed (`NUCLEUS_FAULT_SEED`).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn random_kill_9_of_create_start_and_delete_is_cleaned_up_by_delete_force() {
    require!(root, busybox);
    let iterations: u64 = std::env::var("NUCLEUS_FAULT_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let seed = std::env::var("NUCLEUS_FAULT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            (now.as_secs() << 32 | u64::from(now.subsec_nanos())) | 1
        });
    eprintln!("random kill -9: {iterations} iterations, NUCLEUS_FAULT_SEED={seed}");
    let mut rng = Rng(seed);
    let ctx = Ctx::new();
    let bundle = ctx.bundle().with_args(&["sleep", "100"]);
    bundle.write();
    let b = bundle.path().to_str().unwrap();
    let mut killed_mid_way = 0;
    for i in 0..iterations {
        let id = ctx.id();
        let verb = ["create", "start", "delete"][usize::try_from(rng.below(3)).unwrap()];
        let setup: &[&str] = match verb {
            "start" => &["create"],
            "delete" => &["create", "start"],
            _ => &[],
        };
        for s in setup {
            rt_env(&ctx, &[], &verb_args(s, b, &id), common::CMD_TIMEOUT).assert_ok();
        }
        // A create takes tens of milliseconds in a debug build, start and delete less.
        let window = if verb == "create" { 120_000 } else { 50_000 };
        let delay = Duration::from_micros(rng.below(window));
        let context = format!("iteration {i} (seed {seed}): kill -9 of {verb} after {delay:?}");
        let mut child = spawn(&ctx, &verb_args(verb, b, &id));
        std::thread::sleep(delay);
        let _ = child.kill();
        let status = child.wait().expect("wait for the killed runtime");
        if status.code().is_none() {
            killed_mid_way += 1;
        }
        force_delete(&ctx, &id, &context);
        assert_clean(&ctx, &id, &bundle, &context);
    }
    eprintln!("random kill -9: {killed_mid_way} of {iterations} runtimes were killed before they finished");
    ctx.finish();
}

/// Holds the flock on `path`, as another runtime would.
fn hold_lock(path: &Path) -> nix::fcntl::Flock<fs::File> {
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .expect("take the lock")
}

#[test]
fn a_verb_waits_for_a_held_lock_with_a_bound_and_names_the_holder() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx.bundle().with_args(&["sleep", "100"]);
    let id = ctx.id();
    ctx.create(&bundle, &id);
    let lock = hold_lock(&ctx.root().join(id.id()).join("lock"));
    let t = Instant::now();
    let out = rt_env(
        &ctx,
        &[("NUCLEUS_LOCK_TIMEOUT_MS", "300")],
        &["delete", "--force", &id],
        Duration::from_secs(40),
    );
    out.assert_fail();
    assert!(
        t.elapsed() < Duration::from_secs(35),
        "took {:?}",
        t.elapsed()
    );
    if common::is_nucleus() {
        let me = format!("held by pid {}", std::process::id());
        assert!(
            out.stderr.contains(&me) && out.stderr.contains("timed out"),
            "{out}"
        );
    }
    drop(lock);
    ctx.rt(&["delete", "--force", &id]).assert_ok();
    ctx.finish();
}

#[test]
fn the_init_of_a_killed_create_does_not_hold_the_state_lock() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx.bundle().with_args(&["sleep", "100"]);
    bundle.write();
    let id = ctx.id();
    // The pid file goes through `<path>.nucleus-tmp`: a fifo there holds create after the
    // launch, with its init set up and waiting, until we kill it.
    let pid_file = ctx.scratch("pid").join("pid");
    nix::unistd::mkfifo(
        &pid_file.with_extension("nucleus-tmp"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let b = bundle.path().to_str().unwrap();
    let mut create = spawn(
        &ctx,
        &[
            "create",
            "--bundle",
            b,
            "--pid-file",
            pid_file.to_str().unwrap(),
            &id,
        ],
    );
    let fifo = ctx.root().join(id.id()).join("exec.fifo");
    let state = ctx.root().join(id.id()).join("state.json");
    assert!(
        wait_until(Duration::from_secs(20), || fifo.exists() && state.exists()),
        "create never set the init up"
    );
    // Ready: the init waits on exec.fifo; create then blocks writing the pid file.
    std::thread::sleep(Duration::from_millis(300));
    create.kill().unwrap();
    create.wait().unwrap();
    let init = ctx.pid(&id);
    assert!(common::pid_alive(init), "the init died with create");
    let lock = fs::OpenOptions::new()
        .write(true)
        .open(ctx.root().join(id.id()).join("lock"))
        .unwrap();
    let free = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock).is_ok();
    assert!(
        free,
        "the state lock is still held (by the orphaned init {init})"
    );
    force_delete(&ctx, &id, "after a create killed once its init was ready");
    assert_clean(
        &ctx,
        &id,
        &bundle,
        "after a create killed once its init was ready",
    );
    ctx.finish();
}

#[test]
fn a_half_written_cgroup_record_does_not_block_delete_force() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx.bundle();
    let id = ctx.id();
    // What a create killed in the middle of writing `cgroup.json` used to leave.
    let dir = ctx.root().join(id.id());
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("lock"), "").unwrap();
    fs::write(
        dir.join("cgroup.json"),
        r#"{"v1":[{"mountpoint":"/sys/fs/cg"#,
    )
    .unwrap();
    force_delete(&ctx, &id, "half-written cgroup.json");
    assert_clean(&ctx, &id, &bundle, "half-written cgroup.json");
    // And the id is free again.
    ctx.create(&bundle.with_args(&["sleep", "100"]), &id);
    ctx.rt(&["delete", "--force", &id]).assert_ok();
    ctx.finish();
}
