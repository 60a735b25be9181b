//! v1 cpu controller: shares, CFS quota/period/burst, RT runtime/period
//! and `cpu.idle`. cpuset lives in `cpuset.rs`.

use crate::controller::Ctl;
use crate::{fs, CgroupError};
use oci_spec::runtime::LinuxCpu;

pub(crate) fn apply(ctl: Ctl, cpu: &LinuxCpu) -> Result<(), CgroupError> {
    if let Some(shares) = cpu.shares() {
        ctl.write("cpu.shares", &shares.to_string())?;
        // The kernel clamps silently; report it as runc does.
        let dir = ctl.dir_for("cpu.shares", &shares.to_string())?;
        let got = fs::read_u64_opt(dir, "cpu.shares")?;
        if got.is_some_and(|g| g != shares) {
            return Err(CgroupError::InvalidValue {
                field: "linux.resources.cpu.shares",
                value: shares.to_string(),
                reason: format!("the kernel clamped it to `{}`", got.unwrap_or_default()),
            });
        }
    }
    set_period_and_quota(
        ctl,
        cpu.period().filter(|p| *p != 0),
        cpu.quota().filter(|q| *q != 0).map(|q| q.max(-1)),
    )?;
    if let Some(b) = cpu.burst() {
        ctl.write("cpu.cfs_burst_us", &b.to_string())?;
    }
    // RT period before runtime, as the runtime is bounded by the period.
    if let Some(p) = cpu.realtime_period() {
        ctl.write("cpu.rt_period_us", &p.to_string())?;
    }
    if let Some(r) = cpu.realtime_runtime() {
        ctl.write("cpu.rt_runtime_us", &r.to_string())?;
    }
    if let Some(i) = cpu.idle() {
        ctl.write("cpu.idle", &i.to_string())?;
    }
    Ok(())
}

/// The kernel checks each write's quota/period ratio against the parent's
/// (EINVAL if it exceeds it), so the intermediate pair must be valid too:
/// period first suits a growing period, quota first a shrinking one. Try
/// period first, and on EINVAL the other order.
fn set_period_and_quota(
    ctl: Ctl,
    period: Option<u64>,
    quota: Option<i64>,
) -> Result<(), CgroupError> {
    let write_period = || period.map_or(Ok(()), |p| ctl.write("cpu.cfs_period_us", &p.to_string()));
    let write_quota = || quota.map_or(Ok(()), |q| ctl.write("cpu.cfs_quota_us", &q.to_string()));
    match write_period().and_then(|()| write_quota()) {
        Err(e) if period.is_some() && quota.is_some() && e.is_einval() => {
            tracing::debug!("cfs period then quota was refused; writing quota first");
            write_quota()?;
            write_period()
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::testing::{files, read};

    #[test]
    fn writes_every_cpu_field() {
        let d = tempfile::tempdir().unwrap();
        let names = [
            "cpu.shares",
            "cpu.cfs_period_us",
            "cpu.cfs_quota_us",
            "cpu.cfs_burst_us",
            "cpu.rt_period_us",
            "cpu.rt_runtime_us",
            "cpu.idle",
        ];
        files(d.path(), &names.map(|n| (n, "")));
        let cpu: LinuxCpu = serde_json::from_str(
            r#"{"shares":512,"quota":-5,"period":50000,"burst":1000,"realtimePeriod":1000000,"realtimeRuntime":950000,"idle":1}"#,
        )
        .unwrap();
        apply(Ctl::at("cpu", d.path()), &cpu).unwrap();
        let got: Vec<String> = names.iter().map(|n| read(d.path(), n)).collect();
        assert_eq!(
            got,
            ["512", "50000", "-1", "1000", "1000000", "950000", "1"]
        );
    }
}
