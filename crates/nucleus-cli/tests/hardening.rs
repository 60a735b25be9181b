//! Setup steps that used to fail only in some configurations: descriptors marked
//! close-on-exec after seccomp, failures after `create` lost by `start`, exec.fifo and
//! bind sources out of reach of a user-namespace or non-root init, a cwd reachable only
//! with the capabilities being dropped, NOTIFY on `write`, and `update` orderings the
//! kernel refuses.

#[macro_use]
mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{Bundle, Ctx, Out};
use serde_json::json;

/// `<runtime> --root ROOT ARGS...` started by `sh -c PRELUDE`, so the runtime inherits
/// what the prelude sets up (an open fd, a umask).
fn rt_after(ctx: &Ctx, prelude: &str, args: &[&str]) -> Out {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!("{prelude}; exec \"$0\" \"$@\""))
        .arg(common::runtime())
        .arg("--root")
        .arg(ctx.root())
        .args(args);
    common::exec(cmd, &ctx.scratch("io"), common::CMD_TIMEOUT)
}

fn with_tmpfs(bundle: Bundle) -> Bundle {
    bundle.with_mount(
        json!({ "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                              "options": ["nosuid", "nodev", "mode=1777"] }),
    )
}

/// Maps the container's root to host uid/gid 100000 in a new user namespace.
fn in_userns(bundle: Bundle) -> Bundle {
    let bundle = bundle.with_namespace("user").edit(|s| {
        let map = json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
        s["linux"]["uidMappings"] = map.clone();
        s["linux"]["gidMappings"] = map;
        // A cgroup v1 hierarchy cannot be mounted from inside a user namespace.
        s["mounts"]
            .as_array_mut()
            .unwrap()
            .retain(|m| m["type"] != "cgroup");
    });
    bundle.make_world_accessible();
    bundle
}

#[track_caller]
fn assert_running(ctx: &Ctx, id: &str, comm: &str) {
    ctx.wait_status(id, "running");
    let pid = ctx.pid(id);
    let seen = common::wait_until(Duration::from_secs(5), || {
        fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
    });
    assert!(seen, "container {id} (pid {pid}) is not running {comm}");
}

// ---------------------------------------------------------------------------------------
// Descriptors and seccomp (issue 11, item 8)
// ---------------------------------------------------------------------------------------

/// An allow-list era profile: everything but `close_range`.
fn profile_without_close_range() -> serde_json::Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["close_range"], "action": "SCMP_ACT_ERRNO" }]
    })
}

#[test]
fn a_profile_that_refuses_close_range_still_runs_the_container() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx
        .bundle()
        .edit(|s| s["linux"]["seccomp"] = profile_without_close_range());
    let out = ctx.run(&bundle.with_sh("echo ran"));
    out.assert_ok();
    assert_eq!(out.out(), "ran", "{out}");

    // With create/start the same failure would be silent: start exiting 0, nothing running.
    let bundle = ctx
        .bundle()
        .with_args(&["sleep", "100"])
        .edit(|s| s["linux"]["seccomp"] = profile_without_close_range());
    let id = ctx.id();
    ctx.create(&bundle, &id);
    ctx.start(&id);
    assert_running(&ctx, &id, "sleep");
    ctx.rt(&["delete", "--force", &id]).assert_ok();
    ctx.finish();
}

#[test]
fn start_container_hooks_see_no_descriptor_the_runtime_inherited() {
    require!(root, busybox);
    let ctx = Ctx::new();
    // The hook runs in the container: busybox's ls lists its own fds.
    let hook =
        json!({ "path": "/bin/sh", "args": ["sh", "-c", "ls /proc/self/fd > /tmp/hook-fds"] });
    let bundle = with_tmpfs(ctx.bundle())
        .edit(|s| s["hooks"] = json!({ "startContainer": [hook] }))
        .with_sh("echo hook: $(cat /tmp/hook-fds); echo workload: $(ls /proc/self/fd)");
    bundle.write();
    let id = ctx.id();
    // fd 7 open without close-on-exec, as a careless caller would leave it.
    let out = rt_after(
        &ctx,
        "exec 7</dev/null",
        &["run", "--bundle", bundle.path().to_str().unwrap(), &id],
    );
    out.assert_ok();
    let line = |prefix: &str| -> Vec<String> {
        let l = out
            .stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix}\n{out}"));
        l[prefix.len()..]
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    // 0-2, plus the directory ls reads.
    assert_eq!(line("hook:"), ["0", "1", "2", "3"], "{out}");
    assert_eq!(line("workload:"), ["0", "1", "2", "3"], "{out}");
    ctx.finish();
}

#[test]
fn a_failure_after_create_is_an_error_of_start() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx.bundle().with_args(&["/bin/not-a-program"]);
    // Executable, but no format the kernel knows: execve fails with ENOEXEC after start.
    let bad = bundle.rootfs().join("bin/not-a-program");
    fs::write(&bad, b"\x00\x01\x02 not an executable").unwrap();
    fs::set_permissions(&bad, fs::Permissions::from_mode(0o755)).unwrap();
    let id = ctx.id();
    ctx.create(&bundle, &id);
    let out = ctx.rt(&["start", &id]);
    out.assert_fail();
    if common::is_nucleus() {
        assert!(
            out.stderr.contains("execve") && out.stderr.contains("Exec format error"),
            "{out}"
        );
    }
    ctx.rt(&["delete", "--force", &id]).assert_ok();
    ctx.finish();
}

// ---------------------------------------------------------------------------------------
// exec.fifo and bind sources out of the init's reach (item 9)
// ---------------------------------------------------------------------------------------

#[test]
fn a_non_root_process_user_starts_after_create_under_umask_022() {
    require!(root, busybox);
    let ctx = Ctx::new();
    // No CAP_DAC_OVERRIDE to open the fifo regardless of its mode.
    let bundle = ctx
        .bundle()
        .with_args(&["sleep", "100"])
        .with_caps(&[])
        .edit(|s| {
            s["process"]["user"] = json!({ "uid": 1000, "gid": 1000 });
        });
    bundle.write();
    let id = ctx.id();
    rt_after(
        &ctx,
        "umask 022",
        &["create", "--bundle", bundle.path().to_str().unwrap(), &id],
    )
    .assert_ok();
    ctx.start(&id);
    assert_running(&ctx, &id, "sleep");
    let pid = ctx.pid(&id);
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        common::status_field(&status, "Uid").starts_with("1000\t"),
        "{status}"
    );
    ctx.rt(&["delete", "--force", &id]).assert_ok();
    ctx.finish();
}

#[test]
fn a_user_namespace_container_is_created_and_started() {
    require!(root, busybox, userns);
    let ctx = Ctx::new();
    let bundle = in_userns(ctx.bundle().with_args(&["sleep", "100"]));
    let id = ctx.id();
    ctx.create(&bundle, &id);
    ctx.start(&id);
    assert_running(&ctx, &id, "sleep");
    ctx.rt(&["delete", "--force", &id]).assert_ok();
    ctx.finish();
}

#[test]
fn a_bind_source_the_mapped_user_cannot_reach_is_mounted() {
    require!(root, busybox, userns);
    let ctx = Ctx::new();
    // Only root on the host can pass through `private`.
    let private = ctx.scratch("private");
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    let data: PathBuf = private.join("data");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("hello"), "from the host\n").unwrap();
    fs::set_permissions(data.join("hello"), fs::Permissions::from_mode(0o644)).unwrap();
    ctx.watch(&private);
    let bundle = in_userns(ctx.bundle()).with_bind(&data, "/mnt/data", &["ro"]);
    // The rootfs belongs to host root, so the mapped root cannot make the mount point.
    fs::create_dir(bundle.rootfs().join("mnt/data")).unwrap();
    let out =
        ctx.run(&bundle.with_sh("cat /mnt/data/hello; grep ' /mnt/data ' /proc/self/mountinfo"));
    out.assert_ok();
    let mut lines = out.stdout.lines();
    assert_eq!(lines.next(), Some("from the host"), "{out}");
    // Nothing mounted there may propagate back to the host.
    let info = lines
        .next()
        .unwrap_or_else(|| panic!("no /mnt/data in mountinfo\n{out}"));
    assert!(
        !info.contains("shared:"),
        "the bind is shared with the host: {info}"
    );
    ctx.finish();
}

// ---------------------------------------------------------------------------------------
// process.cwd (item 10)
// ---------------------------------------------------------------------------------------

#[test]
fn a_cwd_only_the_dropped_capabilities_could_enter_is_entered() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx.bundle().with_caps(&[]).with_cwd("/work");
    let work = bundle.rootfs().join("work");
    fs::create_dir(&work).unwrap();
    std::os::unix::fs::chown(&work, Some(1234), Some(1234)).unwrap();
    fs::set_permissions(&work, fs::Permissions::from_mode(0o700)).unwrap();
    let out = ctx.run(&bundle.with_sh("pwd"));
    out.assert_ok();
    assert_eq!(out.out(), "/work", "{out}");
    ctx.finish();
}

// ---------------------------------------------------------------------------------------
// seccomp NOTIFY on write (item 12)
// ---------------------------------------------------------------------------------------

#[test]
fn notify_on_write_is_refused_naming_the_syscall_and_field() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let sock = ctx.scratch("agent").join("agent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let bundle = ctx.bundle().with_sh("echo should not run").edit(|s| {
        s["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": sock,
            "syscalls": [
                { "names": ["getpgid"], "action": "SCMP_ACT_ERRNO" },
                { "names": ["mkdir", "write"], "action": "SCMP_ACT_NOTIFY" }
            ]
        });
    });
    let out = ctx.run(&bundle);
    out.assert_fail();
    assert!(!out.stdout.contains("should not run"), "{out}");
    if common::is_nucleus() {
        assert!(
            out.stderr.contains("linux.seccomp.syscalls[1].names[1]")
                && out.stderr.contains("`write`"),
            "{out}"
        );
    }
    ctx.finish();
}

// ---------------------------------------------------------------------------------------
// update orderings (item 13)
// ---------------------------------------------------------------------------------------

fn v1_file(ctx: &Ctx, id: &str, path: &str) -> String {
    let out = ctx.rt(&["exec", id, "cat", path]);
    out.assert_ok();
    out.out().to_string()
}

#[test]
fn update_memory_unlimited_lifts_a_memory_and_swap_limit() {
    require!(root, busybox);
    if !std::path::Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists() {
        eprintln!("skipped: needs cgroup v1 memory with swap accounting");
        return;
    }
    let ctx = Ctx::new();
    let mib = 1024 * 1024;
    let bundle = ctx.bundle().with_args(&["sleep", "100"]).edit(|s| {
        s["linux"]["resources"]["memory"] = json!({ "limit": 64 * mib, "swap": 128 * mib });
    });
    let id = ctx.id();
    ctx.create(&bundle, &id);
    ctx.start(&id);
    let limit = "/sys/fs/cgroup/memory/memory.limit_in_bytes";
    let memsw = "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes";
    assert_eq!(v1_file(&ctx, &id, limit), (64 * mib).to_string());
    ctx.rt(&["update", "--memory", "-1", &id]).assert_ok();
    let unlimited = fs::read_to_string("/sys/fs/cgroup/memory/memory.limit_in_bytes").unwrap();
    assert_eq!(v1_file(&ctx, &id, limit), unlimited.trim());
    assert_eq!(v1_file(&ctx, &id, memsw), unlimited.trim());
    ctx.rt(&["delete", "--force", &id]).assert_ok();
    ctx.finish();
}

/// A cpu cgroup made by the test (removed on drop), so the container has a parent quota.
struct ParentCpu(PathBuf);

impl Drop for ParentCpu {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

#[test]
fn update_cpu_period_and_quota_under_a_smaller_parent_quota() {
    require!(root, busybox);
    let cpu_root = PathBuf::from("/sys/fs/cgroup/cpu");
    if !cpu_root.join("cpu.cfs_quota_us").exists() {
        eprintln!("skipped: needs the cgroup v1 cpu controller");
        return;
    }
    let ctx = Ctx::new();
    // Declared before the container, so it is removed after it even on a panic.
    let name = format!("nucleus-test-parent-{}", common::unique_id());
    let parent = ParentCpu(cpu_root.join(&name));
    let id = ctx.id();
    fs::create_dir(&parent.0).unwrap();
    // Half a CPU for the parent.
    fs::write(parent.0.join("cpu.cfs_quota_us"), "50000").unwrap();
    let bundle = ctx.bundle().with_args(&["sleep", "100"]).edit(|s| {
        s["linux"]["cgroupsPath"] = json!(format!("/{name}/ctr"));
        s["linux"]["resources"]["cpu"] = json!({ "quota": 25000, "period": 100000 });
    });
    ctx.create(&bundle, &id);
    ctx.start(&id);
    // A shorter period: written first, 25000/25000 would exceed the parent's half.
    ctx.rt(&[
        "update",
        "--cpu-period",
        "25000",
        "--cpu-quota",
        "10000",
        &id,
    ])
    .assert_ok();
    assert_eq!(
        v1_file(&ctx, &id, "/sys/fs/cgroup/cpu/cpu.cfs_period_us"),
        "25000"
    );
    assert_eq!(
        v1_file(&ctx, &id, "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
        "10000"
    );
    // And back to a longer one, where quota first would be refused.
    ctx.rt(&[
        "update",
        "--cpu-period",
        "100000",
        "--cpu-quota",
        "40000",
        &id,
    ])
    .assert_ok();
    assert_eq!(
        v1_file(&ctx, &id, "/sys/fs/cgroup/cpu/cpu.cfs_period_us"),
        "100000"
    );
    assert_eq!(
        v1_file(&ctx, &id, "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
        "40000"
    );
    ctx.rt(&["delete", "--force", &id]).assert_ok();
    ctx.finish();
    drop(parent);
}

/// A process alone in a user namespace mapped as `in_userns` maps (a
/// holder, like the rootless one); killed on drop.
struct UsernsHolder(std::process::Child);

impl UsernsHolder {
    fn start() -> UsernsHolder {
        let child = Command::new("unshare")
            .args(["--user", "sleep", "100"])
            .spawn()
            .expect("unshare --user sleep");
        let holder = UsernsHolder(child);
        let pid = holder.0.id();
        // unshare(2) happens before sleep is executed.
        assert!(common::wait_until(Duration::from_secs(5), || {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
        }));
        for file in ["uid_map", "gid_map"] {
            fs::write(format!("/proc/{pid}/{file}"), "0 100000 65536\n").expect(file);
        }
        holder
    }

    fn ns_path(&self) -> String {
        format!("/proc/{}/ns/user", self.0.id())
    }
}

impl Drop for UsernsHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_joined_user_namespace_must_map_what_the_spec_says() {
    require!(root, busybox, userns);
    let ctx = Ctx::new();
    let holder = UsernsHolder::start();
    let join = |bundle: Bundle| {
        let path = holder.ns_path();
        bundle.edit(move |s| {
            for n in s["linux"]["namespaces"].as_array_mut().unwrap() {
                if n["type"] == "user" {
                    n["path"] = json!(path);
                }
            }
        })
    };
    // The maps it has: the container runs in that namespace.
    let bundle = join(in_userns(ctx.bundle().with_args(&["sleep", "100"])));
    let id = ctx.id();
    ctx.create(&bundle, &id);
    ctx.start(&id);
    assert_running(&ctx, &id, "sleep");
    let pid = ctx.pid(&id);
    assert_eq!(
        fs::read_link(format!("/proc/{pid}/ns/user")).unwrap(),
        fs::read_link(holder.ns_path()).unwrap()
    );
    ctx.rt(&["delete", "--force", &id]).assert_ok();
    // Other maps (the namespace is not the one meant): refused by field.
    let wrong = join(in_userns(ctx.bundle().with_args(&["true"]))).edit(|s| {
        s["linux"]["uidMappings"] = json!([{ "containerID": 0, "hostID": 200000, "size": 65536 }]);
    });
    let id = ctx.id();
    let out = ctx.create_with(&wrong, &id, &[]);
    out.assert_fail();
    if common::is_nucleus() {
        assert!(
            out.stderr.contains("linux.uidMappings") && out.stderr.contains("0 100000 65536"),
            "{out}"
        );
    }
    let _ = ctx.rt(&["delete", "--force", &id]);
    ctx.finish();
}
