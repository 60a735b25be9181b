//! What the contained process observes: identity, namespaces, capabilities, limits, env.

#[macro_use]
mod common;

use std::fs;

use common::{cap_mask, status_field, Ctx, DEFAULT_CAPS};
use serde_json::json;

#[test]
fn hostname_is_the_specs() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let out = ctx.sh(
        ctx.bundle().with_hostname("nucleus-box-7"),
        "hostname; cat /proc/sys/kernel/hostname",
    );
    assert_eq!(out, "nucleus-box-7\nnucleus-box-7");
    ctx.finish();
}

#[test]
fn process_is_pid_1_in_its_own_pid_namespace() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let out = ctx.sh(
        ctx.bundle(),
        "echo $$; cat /proc/1/comm; ls /proc | grep -c '^[0-9]'",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1", "shell is not pid 1: {out}");
    assert_eq!(lines[1], "sh", "{out}");
    // sh, ls and grep at most: no host processes are visible.
    let visible: u32 = lines[2].parse().unwrap();
    assert!(
        visible <= 4,
        "{visible} processes visible in the container's /proc"
    );
    ctx.finish();
}

#[test]
fn effective_capabilities_match_the_spec() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let status = ctx.sh(ctx.bundle(), "cat /proc/self/status");
    let want = format!("{:016x}", cap_mask(DEFAULT_CAPS));
    assert_eq!(want, "00000000a80425fb", "harness cap table is wrong");
    assert_eq!(status_field(&status, "CapEff"), want);
    assert_eq!(status_field(&status, "CapPrm"), want);
    assert_eq!(status_field(&status, "CapBnd"), want);

    let status = ctx.sh(
        ctx.bundle().with_caps(&["CAP_CHOWN", "CAP_KILL"]),
        "cat /proc/self/status",
    );
    assert_eq!(status_field(&status, "CapEff"), "0000000000000021");
    assert_eq!(status_field(&status, "CapBnd"), "0000000000000021");

    let status = ctx.sh(ctx.bundle().with_caps(&[]), "cat /proc/self/status");
    assert_eq!(status_field(&status, "CapEff"), "0000000000000000");
    assert_eq!(status_field(&status, "CapBnd"), "0000000000000000");
    ctx.finish();
}

#[test]
fn dropped_capabilities_are_enforced() {
    require!(root, busybox);
    let ctx = Ctx::new();
    // The default set has no CAP_SYS_ADMIN, so sethostname(2) must fail.
    let out = ctx.run(
        &ctx.bundle()
            .with_sh("hostname evil 2>&1; echo rc=$?; hostname"),
    );
    out.assert_ok();
    assert!(
        out.stdout.contains("rc=1"),
        "hostname change succeeded without CAP_SYS_ADMIN\n{out}"
    );
    assert!(out.stdout.trim_end().ends_with("nucleus-test"), "{out}");
    ctx.finish();
}

#[test]
fn no_new_privileges_is_set_as_asked() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let status = ctx.sh(ctx.bundle(), "cat /proc/self/status");
    assert_eq!(status_field(&status, "NoNewPrivs"), "1");
    let bundle = ctx
        .bundle()
        .edit(|s| s["process"]["noNewPrivileges"] = json!(false));
    let status = ctx.sh(bundle, "cat /proc/self/status");
    assert_eq!(status_field(&status, "NoNewPrivs"), "0");
    ctx.finish();
}

#[test]
fn env_comes_from_the_spec() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx
        .bundle()
        .with_env("GREETING=hello world")
        .with_env("EMPTY=");
    let out = ctx.sh(
        bundle,
        r#"echo "[$GREETING]"; echo "[$PATH]"; env | grep -c '^EMPTY=$'; echo "[$TERM]""#,
    );
    assert_eq!(
        out,
        "[hello world]\n[/usr/sbin:/usr/bin:/sbin:/bin]\n1\n[xterm]"
    );
    ctx.finish();
}

#[test]
fn cwd_comes_from_the_spec() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx.bundle().with_cwd("/srv/app");
    fs::create_dir_all(bundle.rootfs().join("srv/app")).unwrap();
    assert_eq!(ctx.sh(bundle, "pwd"), "/srv/app");
    ctx.finish();
}

#[test]
fn user_and_groups_come_from_the_spec() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx.bundle().edit(|s| {
        s["process"]["user"] = json!({ "uid": 1000, "gid": 1001, "additionalGids": [10, 2000] })
    });
    let out = ctx.sh(bundle, "id -u; id -g; cat /proc/self/status");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("1000"));
    assert_eq!(lines.next(), Some("1001"));
    let status: String = lines.collect::<Vec<_>>().join("\n");
    assert_eq!(status_field(&status, "Uid"), "1000\t1000\t1000\t1000");
    assert_eq!(status_field(&status, "Gid"), "1001\t1001\t1001\t1001");
    let groups: Vec<&str> = status_field(&status, "Groups").split_whitespace().collect();
    assert!(
        groups.contains(&"10") && groups.contains(&"2000"),
        "groups {groups:?}"
    );
    assert!(
        !groups.contains(&"0"),
        "root's supplementary group kept: {groups:?}"
    );
    ctx.finish();
}

#[test]
fn rlimits_are_applied() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx.bundle().edit(|s| {
        s["process"]["rlimits"] = json!([
            { "type": "RLIMIT_NOFILE", "soft": 1234, "hard": 2048 },
            { "type": "RLIMIT_NPROC", "soft": 777, "hard": 888 }
        ]);
    });
    let out = ctx.sh(
        bundle,
        "ulimit -n; grep -E '^Max (open files|processes)' /proc/self/limits",
    );
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("1234"));
    let rest: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    assert!(
        rest.iter()
            .any(|f| f[..3] == ["Max", "processes", "777"] && f[3] == "888"),
        "{out}"
    );
    assert!(
        rest.iter()
            .any(|f| f[1] == "open" && f[3] == "1234" && f[4] == "2048"),
        "{out}"
    );
    ctx.finish();
}

#[test]
fn oom_score_adj_is_applied() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx
        .bundle()
        .edit(|s| s["process"]["oomScoreAdj"] = json!(123));
    assert_eq!(ctx.sh(bundle, "cat /proc/self/oom_score_adj"), "123");
    ctx.finish();
}

#[test]
fn sysctl_is_set_in_the_new_net_namespace_only() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let host_before = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let bundle = ctx
        .bundle()
        .edit(|s| s["linux"]["sysctl"] = json!({ "net.ipv4.ip_forward": "1" }));
    assert_eq!(ctx.sh(bundle, "cat /proc/sys/net/ipv4/ip_forward"), "1");
    let bundle = ctx
        .bundle()
        .edit(|s| s["linux"]["sysctl"] = json!({ "net.ipv4.ip_forward": "0" }));
    assert_eq!(ctx.sh(bundle, "cat /proc/sys/net/ipv4/ip_forward"), "0");
    assert_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_before,
        "host sysctl changed"
    );
    ctx.finish();
}

#[test]
fn namespaces_isolate_network_and_cgroups() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let out = ctx.sh(
        ctx.bundle(),
        "ls /sys/class/net; echo --; cat /proc/self/cgroup",
    );
    let (net, cgroup) = out.split_once("--").unwrap();
    assert_eq!(
        net.split_whitespace().collect::<Vec<_>>(),
        ["lo"],
        "network namespace shows host links"
    );
    for line in cgroup.trim().lines() {
        assert!(
            line.ends_with(":/"),
            "cgroup namespace root is not /: {line}"
        );
    }
    ctx.finish();
}

#[test]
fn user_namespace_maps_root_to_an_unprivileged_host_uid() {
    require!(root, busybox, userns);
    let ctx = Ctx::new();
    let bundle = ctx.bundle().with_namespace("user").edit(|s| {
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
    let id = ctx.id();
    bundle.write();
    let out = ctx.run_with(
        &bundle.with_sh("cat /proc/self/uid_map /proc/self/gid_map; id -u"),
        &id,
        &[],
    );
    out.assert_ok();
    let lines: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["0", "100000", "65536"], "{out}");
    assert_eq!(lines[1], ["0", "100000", "65536"], "{out}");
    assert_eq!(lines[2], ["0"], "{out}");
    ctx.finish();
}

#[test]
fn loopback_is_up_in_a_new_network_namespace() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let out = ctx.sh(
        ctx.bundle(),
        "busybox ip link show lo; busybox ip -o link | wc -l",
    );
    assert!(out.contains("LOOPBACK,UP"), "{out}");
    assert_eq!(
        out.lines().last(),
        Some("1"),
        "only loopback is present: {out}"
    );
    ctx.finish();
}

#[test]
fn personality_and_io_priority_apply() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx.bundle().edit(|c| {
        c["linux"]["personality"] = json!({"domain": "LINUX32"});
        c["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0});
    });
    let out = ctx.sh(bundle, "uname -m; cat /proc/self/personality");
    assert_eq!(out, "i686\n00000008");
    ctx.finish();
}

#[test]
fn unsupported_fields_are_refused_by_name() {
    require!(root, busybox);
    if !common::is_nucleus() {
        println!("skipped: nucleus-specific wording");
        return;
    }
    let ctx = Ctx::new();
    let bundle = ctx.bundle().with_sh("echo ran").edit(|c| {
        c["process"]["apparmorProfile"] = json!("docker-default");
    });
    let out = ctx.run(&bundle);
    out.assert_fail();
    assert!(
        out.stderr.contains("process.apparmorProfile") && out.stderr.contains("docker-default"),
        "{out}"
    );
    assert!(!out.stdout.contains("ran"), "{out}");
    ctx.finish();
}
