//! The container's filesystem: read-only root, masked and read-only paths, bind and tmpfs
//! mounts, /dev, and mount destinations that try to escape the rootfs through symlinks.

#[macro_use]
mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use common::{is_mount_point, is_nucleus, Ctx};
use serde_json::json;

#[test]
fn readonly_root_refuses_writes() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let out = ctx.run(
        &ctx.bundle()
            .with_sh("touch /x; echo rc=$?; touch /tmp/y; echo tmp=$?"),
    );
    out.assert_ok();
    assert!(out.stdout.contains("rc=1"), "{out}");
    assert!(out.stderr.contains("Read-only file system"), "{out}");
    // /tmp is part of the read-only root in this spec, too.
    assert!(out.stdout.contains("tmp=1"), "{out}");

    let bundle = ctx
        .bundle()
        .with_readonly_root(false)
        .with_sh("touch /x && echo ok");
    let out = ctx.run(&bundle);
    out.assert_ok();
    assert_eq!(out.out(), "ok");
    assert!(
        bundle.rootfs().join("x").exists(),
        "write to a writable root did not land in the rootfs"
    );
    ctx.finish();
}

#[test]
fn masked_paths_read_empty() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx.bundle().edit(|s| {
        let masked = s["linux"]["maskedPaths"].as_array_mut().unwrap();
        masked.push(json!("/secret-dir"));
        masked.push(json!("/secret-file"));
        masked.push(json!("/does/not/exist"));
    });
    fs::create_dir(bundle.rootfs().join("secret-dir")).unwrap();
    fs::write(bundle.rootfs().join("secret-dir/key"), "hunter2").unwrap();
    fs::write(bundle.rootfs().join("secret-file"), "hunter2").unwrap();
    // Which of the default-masked /proc files exist depends on the kernel's config.
    let proc_files: Vec<&str> = [
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/sched_debug",
    ]
    .into_iter()
    .filter(|f| Path::new(f).exists())
    .collect();
    let script = format!(
        "for f in {}; do echo \"$f $(wc -c < $f)\"; done; ls -A /secret-dir | wc -l; wc -c < /secret-file; \
         cat /secret-dir/key /secret-file 2>/dev/null; true",
        proc_files.join(" ")
    );
    let out = ctx.sh(bundle, &script);
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    let want: Vec<String> = proc_files
        .iter()
        .map(|f| format!("{f} 0"))
        .chain(["0".into(), "0".into()])
        .collect();
    assert_eq!(lines, want, "masked paths leak content: {out}");
    ctx.finish();
}

#[test]
fn readonly_paths_refuse_writes() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx.bundle().with_readonly_root(false).edit(|s| {
        s["linux"]["readonlyPaths"]
            .as_array_mut()
            .unwrap()
            .push(json!("/data"))
    });
    fs::create_dir(bundle.rootfs().join("data")).unwrap();
    let out = ctx.run(&bundle.with_sh(
        "echo 1 > /proc/sys/net/ipv4/ip_forward; echo sys=$?; \
         touch /data/x; echo data=$?; touch /other; echo other=$?",
    ));
    out.assert_ok();
    assert!(out.stdout.contains("sys=1"), "{out}");
    assert!(out.stdout.contains("data=1"), "{out}");
    assert!(out.stdout.contains("other=0"), "{out}");
    // EROFS from the read-only bind, not EPERM/EACCES from missing privileges.
    assert_eq!(
        out.stderr.matches("Read-only file system").count(),
        2,
        "{out}"
    );
    ctx.finish();
}

#[test]
fn bind_mount_shows_host_content_and_writes_through() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let host = ctx.scratch("share");
    fs::write(host.join("hello.txt"), "from the host\n").unwrap();
    // /mnt/share does not exist in the rootfs: the runtime creates the mount point.
    let bundle = ctx.bundle().with_bind(&host, "/mnt/share", &["rw"]);
    let out = ctx.sh(
        bundle,
        "cat /mnt/share/hello.txt; echo from-container > /mnt/share/back.txt",
    );
    assert_eq!(out, "from the host");
    assert_eq!(
        fs::read_to_string(host.join("back.txt")).unwrap(),
        "from-container\n"
    );
    ctx.finish();
}

#[test]
fn readonly_bind_mount_refuses_writes() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let host = ctx.scratch("share");
    fs::write(host.join("hello.txt"), "original\n").unwrap();
    let bundle = ctx.bundle().with_bind(&host, "/mnt/share", &["ro"]);
    let out = ctx.run(&bundle.with_sh(
        "cat /mnt/share/hello.txt; echo changed > /mnt/share/hello.txt; echo rc=$?; touch /mnt/share/new; echo rc=$?",
    ));
    out.assert_ok();
    assert_eq!(out.stdout, "original\nrc=1\nrc=1\n", "{out}");
    assert!(out.stderr.contains("Read-only file system"), "{out}");
    assert_eq!(
        fs::read_to_string(host.join("hello.txt")).unwrap(),
        "original\n"
    );
    assert!(!host.join("new").exists());
    ctx.finish();
}

#[test]
fn bind_mount_of_a_single_file() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let host = ctx.scratch("file");
    fs::write(host.join("resolv.conf"), "nameserver 192.0.2.1\n").unwrap();
    let bundle = ctx
        .bundle()
        .with_bind(&host.join("resolv.conf"), "/etc/resolv.conf", &["ro"]);
    assert_eq!(
        ctx.sh(bundle, "cat /etc/resolv.conf"),
        "nameserver 192.0.2.1"
    );
    ctx.finish();
}

#[test]
fn tmpfs_mount_honours_size_and_mode() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx.bundle().with_mount(json!({
        "destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "nodev", "size=1m", "mode=1777"]
    }));
    let out = ctx.sh(bundle, "grep ' /scratch ' /proc/mounts; stat -c %a /scratch; echo hi > /scratch/f && cat /scratch/f");
    let lines: Vec<&str> = out.lines().collect();
    let fields: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(fields[2], "tmpfs", "{out}");
    let opts: Vec<&str> = fields[3].split(',').collect();
    assert!(opts.contains(&"size=1024k"), "size not applied: {out}");
    assert!(opts.contains(&"nosuid") && opts.contains(&"nodev"), "{out}");
    assert_eq!(lines[1], "1777", "{out}");
    assert_eq!(lines[2], "hi", "{out}");
    ctx.finish();
}

#[test]
fn default_devices_exist_and_work() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let script =
        "for d in null zero full random urandom tty; do test -c /dev/$d || echo missing $d; done; \
        for l in fd stdin stdout stderr ptmx; do echo $l=$(readlink /dev/$l); done; \
        echo x > /dev/null && echo null-ok; \
        head -c 4 /dev/zero | wc -c; head -c 16 /dev/urandom | wc -c; \
        echo x > /dev/full 2>/dev/null || echo full-refuses; \
        test -d /dev/pts && test -d /dev/shm && test -d /dev/mqueue && echo dirs-ok";
    let out = ctx.sh(ctx.bundle(), script);
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert!(!out.contains("missing"), "{out}");
    assert_eq!(
        &lines[..5],
        [
            "fd=/proc/self/fd",
            "stdin=/proc/self/fd/0",
            "stdout=/proc/self/fd/1",
            "stderr=/proc/self/fd/2",
            "ptmx=pts/ptmx"
        ],
        "{out}"
    );
    assert_eq!(
        &lines[5..],
        ["null-ok", "4", "16", "full-refuses", "dirs-ok"],
        "{out}"
    );
    ctx.finish();
}

#[test]
fn devices_cgroup_or_mknod_does_not_expose_host_disks() {
    require!(root, busybox);
    let ctx = Ctx::new();
    // Only the default devices appear; the host's block devices do not.
    let out = ctx.sh(ctx.bundle(), "ls /dev");
    for name in out.split_whitespace() {
        assert!(
            [
                "null", "zero", "full", "random", "urandom", "tty", "console", "fd", "stdin",
                "stdout", "stderr", "ptmx", "pts", "shm", "mqueue", "core",
            ]
            .contains(&name),
            "unexpected /dev entry {name:?} in: {out}"
        );
    }
    ctx.finish();
}

/// Mounts a tmpfs at `dest`, whose path runs through a symlink in the rootfs that points at
/// `host_target` on the host. The runtime must resolve it inside the rootfs (the container
/// then sees the tmpfs) or refuse; it must never create, mount or write anything on the host.
fn assert_symlink_destination_is_contained(
    ctx: &Ctx,
    bundle: common::Bundle,
    dest: &str,
    host_target: &Path,
) {
    let bundle = bundle
        .with_readonly_root(false)
        .with_mount(json!({ "destination": dest, "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"] }))
        .with_sh(&format!(
            "touch {dest}/marker; grep ' {} tmpfs ' /proc/self/mounts | wc -l",
            dest_in_rootfs(dest, host_target)
        ));
    let out = ctx.run(&bundle);
    if out.success() {
        assert_eq!(
            out.out(),
            "1",
            "the tmpfs is not where the symlink points inside the rootfs\n{out}"
        );
    } else {
        out.assert_fail();
        if is_nucleus() {
            assert!(
                out.stderr.contains(dest) || out.stderr.contains("symlink"),
                "error should name the mount\n{out}"
            );
        }
    }
    assert!(
        !is_mount_point(host_target),
        "a mount escaped onto the host at {}\n{out}",
        host_target.display()
    );
    let entries: Vec<_> = fs::read_dir(host_target)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        entries.is_empty(),
        "the runtime touched host dir {}: {entries:?}\n{out}",
        host_target.display()
    );
}

/// Where `dest` lands when its first component (a symlink to `host_target`) is resolved
/// with the rootfs as `/`.
fn dest_in_rootfs(dest: &str, host_target: &Path) -> String {
    let rest = dest
        .trim_start_matches('/')
        .split_once('/')
        .map_or("", |(_, rest)| rest);
    format!("{}/{rest}", host_target.display())
}

#[test]
fn absolute_symlink_mount_destination_stays_in_rootfs() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let host_target = ctx.scratch("host-target");
    ctx.watch(&host_target);
    let bundle = ctx.bundle();
    symlink(&host_target, bundle.rootfs().join("evil")).unwrap();
    assert_symlink_destination_is_contained(&ctx, bundle, "/evil/newdir", &host_target);
    ctx.finish();
}

#[test]
fn relative_symlink_mount_destination_stays_in_rootfs() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let host_target = ctx.scratch("host-target");
    ctx.watch(&host_target);
    let bundle = ctx.bundle();
    // Enough `..` to climb out of the bundle from the rootfs, then down to the host dir.
    let rel = format!("../../../../../../../../..{}", host_target.display());
    symlink(&rel, bundle.rootfs().join("evil")).unwrap();
    assert_symlink_destination_is_contained(&ctx, bundle, "/evil/newdir", &host_target);
    ctx.finish();
}

#[test]
fn symlink_mount_destination_itself_stays_in_rootfs() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let host_target = ctx.scratch("host-target");
    ctx.watch(&host_target);
    let bundle = ctx.bundle();
    symlink(&host_target, bundle.rootfs().join("evil")).unwrap();
    // The destination is the symlink itself: mounting "on" it must not follow it out.
    let bundle = bundle
        .with_readonly_root(false)
        .with_mount(json!({ "destination": "/evil", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"] }))
        .with_sh("touch /evil/marker 2>/dev/null; echo done");
    let out = ctx.run(&bundle);
    if !out.success() {
        out.assert_fail();
    }
    assert!(
        !is_mount_point(&host_target),
        "a mount escaped onto the host\n{out}"
    );
    assert!(
        fs::read_dir(&host_target).unwrap().next().is_none(),
        "the container wrote into the host\n{out}"
    );
    ctx.finish();
}

#[test]
fn bind_source_symlink_is_resolved_on_the_host() {
    require!(root, busybox);
    let ctx = Ctx::new();
    // A bind *source* is a host path; symlinks in it are the caller's to choose.
    let host = ctx.scratch("real");
    fs::write(host.join("f"), "real\n").unwrap();
    let link = ctx.scratch("links").join("to-real");
    symlink(&host, &link).unwrap();
    let bundle = ctx.bundle().with_bind(&link, "/mnt/l", &["ro"]);
    assert_eq!(ctx.sh(bundle, "cat /mnt/l/f"), "real");
    ctx.finish();
}
