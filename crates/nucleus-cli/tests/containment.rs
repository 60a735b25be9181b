//! Holes in the container's walls found by running the runtime the way clients and attackers
//! do: leftovers of the old root under `--no-pivot`, `linux.devices` widening the device
//! cgroup, the host's cgroup tree without a cgroup namespace, symlinked `/proc`, absent
//! capability sets, starts into a frozen cgroup, and a read-only `/dev` with submounts.
//! Each asserts what the contained process observes; all run against runc too
//! (`NUCLEUS_TEST_RUNTIME=/usr/sbin/runc`).

#[macro_use]
mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{is_nucleus, Ctx};
use serde_json::json;

/// A process that makes its own user, mount and pid namespaces (CAP_SYS_ADMIN there) must
/// not be able to mount a fresh proc: that needs a fully visible proc in its mount
/// namespace, and without pivot_root the host's old one used to stay there.
#[test]
fn no_pivot_leaves_no_host_proc_to_mount_again() {
    require!(root, busybox, userns);
    let ctx = Ctx::new();
    let script = "/bin/busybox unshare -mrpf /bin/busybox sh -c \
                  'echo in-ns; mount -t proc none /proc && echo mounted || echo refused'";
    // In a user namespace the host's mounts are locked and cannot be detached, only covered.
    for (flags, userns) in [
        (&[][..], false),
        (&["--no-pivot"][..], false),
        (&["--no-pivot"][..], true),
    ] {
        let mut bundle = ctx.bundle().with_sh(script);
        if userns {
            bundle = bundle.with_namespace("user").edit(|s| {
                let map = json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
                s["linux"]["uidMappings"] = map.clone();
                s["linux"]["gidMappings"] = map;
                // A cgroup v1 hierarchy cannot be mounted in a user and cgroup namespace.
                s["mounts"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|m| m["type"] != "cgroup");
            });
            bundle.make_world_accessible();
        }
        let id = ctx.id();
        let out = ctx.run_with(&bundle, &id, flags);
        out.assert_ok();
        let case = format!("{flags:?} userns={userns}");
        assert!(
            out.stdout.contains("in-ns"),
            "unshare failed, test proves nothing ({case}):\n{out}"
        );
        assert!(
            out.stdout.contains("refused"),
            "proc mounted again ({case}):\n{out}"
        );
        assert!(
            out.stderr.to_lowercase().contains("permission denied"),
            "{case}:\n{out}"
        );
    }
    ctx.finish();
}

/// `linux.devices` creates a node; only `linux.resources.devices` decides whether it opens.
#[test]
fn linux_devices_do_not_widen_a_deny_all_device_cgroup() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx
        .bundle()
        .edit(|s| {
            s["linux"]["devices"] = json!([
                { "path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 0o666 }
            ]);
        })
        .with_sh(
            "test -c /dev/kmsg && echo node; \
             echo nucleus-containment-test > /dev/kmsg && echo wrote || echo denied; \
             echo x > /dev/null && echo null-ok; \
             grep -c '^c 1:11 ' /sys/fs/cgroup/devices/devices.list; true",
        );
    let out = ctx.run(&bundle);
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines, ["node", "denied", "null-ok", "0"], "{out}");
    ctx.finish();
}

/// A spec without `process.capabilities`, or without one of its sets, gets empty sets.
#[test]
fn absent_capability_sets_are_empty() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let script = "grep ^Cap /proc/self/status";
    let none = ctx.bundle().edit(|s| {
        s["process"].as_object_mut().unwrap().remove("capabilities");
    });
    let out = ctx.sh(none, script);
    for line in out.lines() {
        assert!(
            line.ends_with("0000000000000000"),
            "no capabilities in the spec: {line}\n{out}"
        );
    }
    let no_bounding = ctx.bundle().edit(|s| {
        s["process"]["capabilities"]
            .as_object_mut()
            .unwrap()
            .remove("bounding");
    });
    let out = ctx.sh(no_bounding, script);
    assert!(
        out.lines().any(|l| l == "CapBnd:\t0000000000000000"),
        "absent bounding set is not empty:\n{out}"
    );
    ctx.finish();
}

/// Without a cgroup namespace, a `cgroup` mount shows the container's own cgroup at the top of
/// each hierarchy, never the host's tree; with a user namespace, too (the mount used to fail).
#[test]
fn cgroup_mount_without_cgroup_namespace_binds_only_the_containers_cgroup() {
    require!(root, busybox, userns);
    if !Path::new("/sys/fs/cgroup/pids/cgroup.procs").exists() {
        eprintln!("skipped: needs a v1 pids hierarchy at /sys/fs/cgroup/pids");
        return;
    }
    let ctx = Ctx::new();
    let script = "cat /sys/fs/cgroup/pids/pids.max; \
                  for d in /sys/fs/cgroup/pids/*; do [ -d \"$d\" ] && echo \"host dir $d\"; done; \
                  echo 1 > /sys/fs/cgroup/pids/pids.max 2>/dev/null && echo writable; true";
    for userns in [false, true] {
        let mut bundle = ctx.bundle().edit(|s| {
            s["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .retain(|n| n["type"] != "cgroup");
            s["linux"]["resources"]["pids"] = json!({ "limit": 77 });
        });
        if userns {
            bundle = bundle.with_namespace("user").edit(|s| {
                let map = json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
                s["linux"]["uidMappings"] = map.clone();
                s["linux"]["gidMappings"] = map;
            });
            bundle.make_world_accessible();
        }
        let out = ctx.run(&bundle.with_sh(script));
        out.assert_ok();
        assert_eq!(
            out.out(),
            "77",
            "userns={userns}: the container sees more than its own cgroup:\n{out}"
        );
    }
    ctx.finish();
}

/// proc and sysfs are mounted only on an ordinary directory, never through a symlink.
#[test]
fn proc_and_sysfs_are_not_mounted_through_a_symlink() {
    require!(root, busybox);
    let ctx = Ctx::new();
    for (dest, fstype) in [("proc", "proc"), ("sys", "sysfs")] {
        let bundle = ctx.bundle().with_sh("echo started");
        let rootfs = bundle.rootfs();
        fs::remove_dir(rootfs.join(dest)).unwrap();
        fs::create_dir(rootfs.join("symlink")).unwrap();
        symlink("/symlink", rootfs.join(dest)).unwrap();
        let out = ctx.run(&bundle);
        out.assert_fail();
        assert!(
            !out.stdout.contains("started"),
            "{fstype} through a symlink:\n{out}"
        );
        if is_nucleus() {
            assert!(
                out.stderr.contains(&format!("`/{dest}`"))
                    && out.stderr.contains("not an ordinary directory"),
                "{out}"
            );
        }
        assert!(
            fs::read_dir(rootfs.join("symlink"))
                .unwrap()
                .next()
                .is_none(),
            "{fstype} landed at /symlink"
        );
    }
    ctx.finish();
}

/// A read-only `/dev` still gets its submounts and device nodes; only then is it read-only.
#[test]
fn read_only_dev_with_submounts() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx
        .bundle()
        .edit(|s| {
            let dev = s["mounts"]
                .as_array_mut()
                .unwrap()
                .iter_mut()
                .find(|m| m["destination"] == "/dev")
                .unwrap();
            dev["options"].as_array_mut().unwrap().push(json!("ro"));
        })
        .with_sh(
            "touch /dev/new 2>/dev/null && echo dev-writable || echo dev-ro; \
             touch /dev/shm/ok && echo shm-ok; echo x > /dev/null && echo null-ok; \
             test -c /dev/pts/ptmx && echo pts-ok; grep -q ' /dev/mqueue ' /proc/self/mounts && echo mqueue-ok",
        );
    let out = ctx.run(&bundle);
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        ["dev-ro", "shm-ok", "null-ok", "pts-ok", "mqueue-ok"],
        "{out}"
    );
    ctx.finish();
}

/// A v1 freezer cgroup made (and frozen) by the test; thawed and removed on drop.
struct FrozenCgroup {
    /// The cgroup relative to each hierarchy's root (an absolute `cgroupsPath` prefix).
    rel: String,
}

impl FrozenCgroup {
    fn new(name: &str) -> Option<Self> {
        let own = fs::read_to_string("/proc/self/cgroup").ok()?;
        let own = own.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
            ctrls
                .split(',')
                .any(|c| c == "freezer")
                .then(|| path.trim_end_matches('/').to_string())
        })?;
        let rel = format!("{own}/{name}");
        let cg = FrozenCgroup { rel };
        fs::create_dir(cg.freezer()).ok()?;
        Some(cg)
    }

    /// Freezes the cgroup until the returned guard drops. Declared after a container's
    /// guard, it thaws first, so that `delete --force` is not stuck on a frozen init.
    fn frozen(&self) -> Thaw<'_> {
        fs::write(self.freezer().join("freezer.state"), "FROZEN").expect("freeze");
        Thaw(self)
    }

    fn freezer(&self) -> PathBuf {
        PathBuf::from(format!("/sys/fs/cgroup/freezer{}", self.rel))
    }

    /// This cgroup (or, with `leaf`, its child) in every hierarchy.
    fn dirs(&self, leaf: &str) -> Vec<PathBuf> {
        fs::read_dir("/sys/fs/cgroup")
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| PathBuf::from(format!("{}{}/{leaf}", e.path().display(), self.rel)))
                    .collect()
            })
            .unwrap_or_default()
    }
}

struct Thaw<'a>(&'a FrozenCgroup);

impl Drop for Thaw<'_> {
    fn drop(&mut self) {
        let _ = fs::write(self.0.freezer().join("freezer.state"), "THAWED");
    }
}

impl Drop for FrozenCgroup {
    fn drop(&mut self) {
        let _ = fs::write(self.freezer().join("freezer.state"), "THAWED");
        for leaf in ["ctr", ""] {
            for d in self.dirs(leaf) {
                let _ = fs::remove_dir(&d);
            }
        }
    }
}

/// `run -d` and `create` into a frozen cgroup fail promptly and leave nothing behind, instead
/// of hanging with the init stopped before it runs.
#[test]
fn start_into_a_frozen_cgroup_is_refused_promptly() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let Some(frozen) = FrozenCgroup::new(&format!("nucleus-frozen-{}", common::unique_id())) else {
        eprintln!("skipped: needs a v1 freezer hierarchy at /sys/fs/cgroup/freezer");
        return;
    };
    for verb in ["run", "create"] {
        let path = format!("{}/ctr", frozen.rel);
        let bundle = ctx
            .bundle()
            .with_args(&["sleep", "100"])
            .edit(|s| s["linux"]["cgroupsPath"] = json!(path));
        let id = ctx.id();
        let thaw = frozen.frozen();
        let begun = Instant::now();
        let out = if verb == "run" {
            ctx.run_with(&bundle, &id, &["-d"])
        } else {
            ctx.create_with(&bundle, &id, &[])
        };
        out.assert_fail();
        assert!(
            begun.elapsed() < Duration::from_secs(10),
            "{verb} took {:?}:\n{out}",
            begun.elapsed()
        );
        if is_nucleus() {
            assert!(
                out.stderr.contains("cgroup is frozen") && out.stderr.contains(&frozen.rel),
                "{verb}:\n{out}"
            );
        }
        for d in frozen.dirs("ctr") {
            assert!(!d.exists(), "{verb}: cgroup left behind: {}", d.display());
        }
        assert!(
            ctx.root_entries().is_empty(),
            "{verb}: state left: {:?}",
            ctx.root_entries()
        );
        drop(thaw);
    }
    ctx.finish();
    drop(frozen);
}
