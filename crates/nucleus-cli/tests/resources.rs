#[macro_use]
mod common;
use common::Ctx;

#[test]
fn explore() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let b = ctx.bundle().with_sh("cat /proc/self/cgroup; ls /sys/fs/cgroup; ls /sys/fs/cgroup/cpu; cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpuset/cpuset.cpus /sys/fs/cgroup/pids/pids.max; mount | grep cgroup")
        .edit(|s| s["linux"]["resources"]["cpu"] = serde_json::json!({"quota": 20000, "period": 100000, "cpus": "0"}));
    let out = ctx.run(&b);
    eprintln!("{out}");
    ctx.finish();
}
