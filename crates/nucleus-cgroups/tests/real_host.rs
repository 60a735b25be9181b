//! Real-kernel tests: run as root against the host's cgroupfs. Each test
//! works in its own cgroup below the test process's cgroup (pid + counter
//! names), cleans up in Drop guards, and prints `skipped: <reason>` when it
//! cannot run. Safe to run in parallel.

use nucleus_cgroups::{Cgroup, CgroupError, Host, Mode};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique_id() -> String {
    format!(
        "nucleus-test-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// Returns the host, or prints why the test is skipped.
fn require_root() -> Option<Host> {
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: not root");
        return None;
    }
    match Host::detect() {
        Ok(h) => Some(h),
        Err(e) => {
            println!("skipped: no usable cgroupfs: {e}");
            None
        }
    }
}

/// A view of the real host restricted to some mountinfo lines, e.g. only
/// the cgroup2 mount, to drive the v2-only or v1-only code paths for real.
fn host_view(keep: impl Fn(&str) -> bool) -> (tempfile::TempDir, Host) {
    let d = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let kept: String = text
        .lines()
        .filter(|l| keep(l))
        .map(|l| format!("{l}\n"))
        .collect();
    let mi = d.path().join("mountinfo");
    std::fs::write(&mi, kept).unwrap();
    let host = Host::detect_from(&mi, Path::new("/proc/self/cgroup")).unwrap();
    (d, host)
}

fn is_v2_line(l: &str) -> bool {
    l.contains(" - cgroup2 ")
}

/// Destroys the cgroup on drop.
struct CgroupGuard(Cgroup);

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        if let Err(e) = self.0.destroy() {
            eprintln!("cleanup: {e}");
        }
    }
}

/// A child process killed and reaped on drop. It waits for a line on
/// stdin before it allocates and runs, so that it does so inside the
/// cgroup it was moved to.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Proc {
    /// `sh` that, once released, holds ~4 MB and runs `sleep` as a child.
    fn sleeper() -> Proc {
        Self::spawn("read l; x=$(head -c 4000000 /dev/zero | tr '\\0' a); sleep 100; echo ${#x}")
    }

    /// `sh` that, once released, spins on the CPU.
    fn spinner() -> Proc {
        Self::spawn("read l; while :; do :; done")
    }

    fn spawn(script: &str) -> Proc {
        let mut child = Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        Proc { child, stdin }
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    fn release(&mut self) {
        let mut s = self.stdin.take().unwrap();
        s.write_all(b"go\n").unwrap();
    }
}

impl Drop for Proc {
    /// Bounded: a child left frozen by a failed test is leaked, not waited on forever.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let start = Instant::now();
        while matches!(self.child.try_wait(), Ok(None)) && start.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap()
        .trim()
        .to_owned()
}

fn proc_state(pid: i32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("State:"))
        .unwrap_or("")
        .trim()
        .to_owned()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until the cgroup holds exactly `n` processes (the shell and its
/// children, once the `$(...)` helpers are gone).
fn wait_pids(cg: &Cgroup, n: usize) -> Vec<i32> {
    let mut pids = Vec::new();
    wait_until(&format!("{n} pids"), || {
        pids = cg.pids().unwrap();
        pids.len() == n
    });
    pids
}

/// Checks freeze, is_frozen and thaw on a spinning process: frozen it
/// leaves state R (v1 shows D, v2 shows S); thawed it runs again.
fn check_freeze_thaw(cg: &Cgroup, pid: i32) {
    wait_until("spinner running", || proc_state(pid).starts_with('R'));
    cg.freeze().unwrap();
    assert!(cg.is_frozen().unwrap());
    for _ in 0..5 {
        let s = proc_state(pid);
        assert!(!s.starts_with('R'), "frozen process is running: {s}");
        std::thread::sleep(Duration::from_millis(20));
    }
    cg.thaw().unwrap();
    assert!(!cg.is_frozen().unwrap());
    wait_until("spinner running again", || proc_state(pid).starts_with('R'));
}

fn assert_gone(dirs: &[PathBuf]) {
    for d in dirs {
        assert!(!d.exists(), "`{}` still exists", d.display());
    }
}

fn all_dirs(cg: &Cgroup) -> Vec<PathBuf> {
    cg.dirs().map(|d| d.path.clone()).collect()
}

#[test]
fn detect_matches_the_host() {
    let Some(host) = require_root() else { return };
    let unified_at_root = nix::sys::statfs::statfs("/sys/fs/cgroup")
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
    if unified_at_root {
        assert_eq!(host.mode(), Mode::V2);
    } else {
        assert_ne!(host.mode(), Mode::V2);
    }
    for h in host.v1_hierarchies() {
        assert!(h.own_dir.is_dir(), "{}", h.own_dir.display());
    }
    if let Some(v2) = host.v2_hierarchy() {
        assert!(v2.own_dir.is_dir());
    }
    println!("mode: {:?}", host.mode());
}

#[test]
fn limits_are_written_to_the_real_files() {
    let Some(host) = require_root() else { return };
    let cg = Cgroup::resolve(&host, None, &unique_id()).unwrap();
    let guard = CgroupGuard(cg.clone());
    cg.create().unwrap();
    cg.create().unwrap();
    let res = serde_json::from_str(
        r#"{"memory":{"limit":67108864,"reservation":33554432},
            "pids":{"limit":32},
            "cpu":{"shares":512,"quota":50000,"period":100000,"cpus":"0"}}"#,
    )
    .unwrap();
    cg.apply(&res).unwrap();
    match (cg.v1_dir("memory"), cg.v2_dir()) {
        (Some(m), _) => {
            assert_eq!(read(m, "memory.limit_in_bytes"), "67108864");
            assert_eq!(read(m, "memory.soft_limit_in_bytes"), "33554432");
            assert_eq!(read(cg.v1_dir("pids").unwrap(), "pids.max"), "32");
            let cpu = cg.v1_dir("cpu").unwrap();
            assert_eq!(read(cpu, "cpu.shares"), "512");
            assert_eq!(read(cpu, "cpu.cfs_quota_us"), "50000");
            assert_eq!(read(cg.v1_dir("cpuset").unwrap(), "cpuset.cpus"), "0");
            if let Some(dev) = cg.v1_dir("devices") {
                let rules = r#"{"devices":[{"allow":false,"access":"rwm"},
                                {"allow":true,"type":"c","major":1,"minor":3,"access":"rw"}]}"#;
                cg.apply(&serde_json::from_str(rules).unwrap()).unwrap();
                assert_eq!(read(dev, "devices.list"), "c 1:3 rw");
            }
        }
        (None, Some(u)) => {
            assert_eq!(read(u, "memory.max"), "67108864");
            assert_eq!(read(u, "pids.max"), "32");
            assert_eq!(read(u, "cpu.max"), "50000 100000");
        }
        (None, None) => unreachable!(),
    }
    drop(guard);
    assert_gone(&all_dirs(&cg));
}

#[test]
fn hugetlb_and_unified_use_the_v2_dir() {
    let Some(host) = require_root() else { return };
    if !host
        .v2_hierarchy()
        .is_some_and(|h| h.controllers.iter().any(|c| c == "hugetlb"))
    {
        println!("skipped: no hugetlb controller on cgroup2");
        return;
    }
    let cg = Cgroup::resolve(&host, None, &unique_id()).unwrap();
    let _guard = CgroupGuard(cg.clone());
    cg.create().unwrap();
    let dir = cg.v2_dir().unwrap().to_owned();
    if !dir.join("hugetlb.2MB.max").exists() {
        println!("skipped: no 2MB huge pages");
        return;
    }
    let res = serde_json::from_str(
        r#"{"hugepageLimits":[{"pageSize":"2MB","limit":4194304}],"unified":{"cgroup.max.depth":"3"}}"#,
    )
    .unwrap();
    cg.apply(&res).unwrap();
    assert_eq!(read(&dir, "hugetlb.2MB.max"), "4194304");
    assert_eq!(read(&dir, "cgroup.max.depth"), "3");
    let bad = serde_json::from_str(r#"{"hugepageLimits":[{"pageSize":"3MB","limit":1}]}"#).unwrap();
    let err = cg.apply(&bad).unwrap_err().to_string();
    assert!(err.contains("page size not supported"), "{err}");
}

#[test]
fn process_lifecycle_on_the_full_host() {
    let Some(host) = require_root() else { return };
    let id = unique_id();
    let cg = Cgroup::resolve(&host, None, &id).unwrap();
    let guard = CgroupGuard(cg.clone());
    cg.create().unwrap();
    cg.apply(&serde_json::from_str(r#"{"pids":{"limit":16}}"#).unwrap())
        .unwrap();

    let mut p = Proc::sleeper();
    cg.add_pid(p.pid()).unwrap();
    p.release();
    let pids = wait_pids(&cg, 2);
    assert!(pids.contains(&p.pid()), "{pids:?}");
    let own = std::fs::read_to_string(format!("/proc/{}/cgroup", p.pid())).unwrap();
    // Every hierarchy line names our leaf.
    assert!(own.lines().all(|l| l.ends_with(&format!("/{id}"))), "{own}");

    // The shell's command substitution forks helpers before `sleep`
    // settles: wait for the steady state of exactly sh + sleep.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut stats = cg.stats().unwrap();
    while stats.pids.current != 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        stats = cg.stats().unwrap();
    }
    assert!(stats.memory.usage.usage > 0, "{stats:?}");
    assert_eq!(stats.pids.current, 2);
    assert_eq!(stats.pids.limit, 16);
    let json = serde_json::to_value(&stats).unwrap();
    assert!(json["memory"]["usage"]["usage"].as_u64().unwrap() > 0);

    // SIGTERM takes the freeze + signal-each path on every host.
    cg.kill_all(libc::SIGTERM).unwrap();
    let status = p.child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGTERM)
    );
    assert!(!cg.is_frozen().unwrap());
    drop(guard);
    assert_gone(&all_dirs(&cg));
}

#[test]
fn freeze_and_thaw_on_the_full_host() {
    let Some(host) = require_root() else { return };
    let cg = Cgroup::resolve(&host, None, &unique_id()).unwrap();
    let mut p = Proc::spinner();
    // Declared after `p`, so dropped first: it thaws and kills.
    let _guard = CgroupGuard(cg.clone());
    cg.create().unwrap();
    cg.add_pid(p.pid()).unwrap();
    p.release();
    check_freeze_thaw(&cg, p.pid());
    // destroy() of a frozen cgroup still kills and removes it.
    cg.freeze().unwrap();
    cg.destroy().unwrap();
    let status = p.child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    assert_gone(&all_dirs(&cg));
}

#[test]
fn v2_dir_freeze_kill_and_procs() {
    let Some(host) = require_root() else { return };
    if host.v2_hierarchy().is_none() {
        println!("skipped: no cgroup2 mount");
        return;
    }
    // Only the cgroup2 mount: drives the v2 code paths on any host.
    let (_tmp, v2_host) = host_view(is_v2_line);
    assert_eq!(v2_host.mode(), Mode::V2);
    let cg = Cgroup::resolve(&v2_host, None, &unique_id()).unwrap();
    let mut p = Proc::spinner();
    let guard = CgroupGuard(cg.clone());
    cg.create().unwrap();
    assert!(cg.v1.is_empty());
    let dir = cg.v2_dir().unwrap().to_owned();

    cg.add_pid(p.pid()).unwrap();
    p.release();
    assert_eq!(cg.pids().unwrap(), [p.pid()]);
    assert_eq!(read(&dir, "cgroup.procs"), p.pid().to_string());
    check_freeze_thaw(&cg, p.pid());

    // SIGKILL goes through cgroup.kill when the kernel has it.
    cg.kill_all(libc::SIGKILL).unwrap();
    let status = p.child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    wait_until("empty cgroup", || cg.pids().unwrap().is_empty());
    assert!(cg.stats().unwrap().cpu.usage.total > 0);
    drop(guard);
    assert!(!dir.exists());
}

#[test]
fn absent_controller_is_an_error_on_a_v2_only_view() {
    let Some(host) = require_root() else { return };
    let Some(v2) = host.v2_hierarchy() else {
        println!("skipped: no cgroup2 mount");
        return;
    };
    if v2.controllers.iter().any(|c| c == "memory") {
        println!("skipped: cgroup2 has the memory controller");
        return;
    }
    let (_tmp, v2_host) = host_view(is_v2_line);
    let cg = Cgroup::resolve(&v2_host, None, &unique_id()).unwrap();
    let _guard = CgroupGuard(cg.clone());
    cg.create().unwrap();
    let err = cg
        .apply(&serde_json::from_str(r#"{"memory":{"limit":1048576}}"#).unwrap())
        .unwrap_err();
    assert!(
        matches!(err, CgroupError::ControllerUnavailable { .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "controller `memory` is not available on this host: cannot write `1048576` to `memory.max`"
    );
}

#[test]
fn memory_limit_below_usage_is_an_error() {
    let Some(host) = require_root() else { return };
    let cg = Cgroup::resolve(&host, None, &unique_id()).unwrap();
    let _guard = CgroupGuard(cg.clone());
    cg.create().unwrap();
    let mut p = Proc::sleeper();
    cg.add_pid(p.pid()).unwrap();
    p.release();
    wait_pids(&cg, 2);
    wait_until("memory charged", || {
        cg.stats().unwrap().memory.usage.usage > 4_000_000
    });
    let res =
        serde_json::from_str(r#"{"memory":{"limit":1048576,"checkBeforeUpdate":true}}"#).unwrap();
    let err = cg.apply(&res).unwrap_err().to_string();
    assert!(
        err.starts_with("memory limit `1048576` is lower than current usage `"),
        "{err}"
    );
}

#[test]
fn destroy_removes_created_ancestors_and_is_idempotent() {
    let Some(host) = require_root() else { return };
    let id = unique_id();
    let base = format!("{id}-base");
    let cg = Cgroup::resolve(&host, Some(&format!("{base}/a/b")), &id).unwrap();
    let guard = CgroupGuard(cg.clone());
    cg.create().unwrap();
    let bases: Vec<PathBuf> = cg
        .dirs()
        .map(|d| d.path.parent().unwrap().parent().unwrap().to_owned())
        .collect();
    assert!(bases.iter().all(|b| b.ends_with(&base) && b.is_dir()));
    // A child directory made by the workload is removed too.
    std::fs::create_dir(cg.dirs().next().unwrap().path.join("inner")).unwrap();
    cg.destroy().unwrap();
    cg.destroy().unwrap();
    assert_gone(&bases);
    drop(guard);
}

#[test]
fn systemd_form_maps_to_a_scope_below_the_root() {
    let Some(host) = require_root() else { return };
    let id = unique_id();
    // `-` in a slice name means nesting; keep our slice one level deep.
    let slice = format!("nucleustest-{}", id.replace('-', "_"));
    let cg = Cgroup::resolve(&host, Some(&format!("{slice}.slice:nt:{id}")), &id).unwrap();
    let guard = CgroupGuard(cg.clone());
    cg.create().unwrap();
    for d in cg.dirs() {
        let expect = d
            .mountpoint
            .join(format!("nucleustest.slice/{slice}.slice/nt-{id}.scope"));
        assert_eq!(d.path, expect);
        assert!(expect.is_dir());
    }
    drop(guard);
    // Our slice was created by us, so it is gone; `nucleustest.slice` may be
    // shared with a concurrent run.
    for d in cg.dirs() {
        assert!(!d
            .mountpoint
            .join(format!("nucleustest.slice/{slice}.slice"))
            .exists());
    }
}
