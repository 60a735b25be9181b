//! v2 cpu controller: `cpu.weight` (from shares), `cpu.max`,
//! `cpu.max.burst`, `cpu.idle`. Realtime limits do not exist on v2.

use crate::controller::Ctl;
use crate::convert::shares_to_weight;
use crate::v2::memory::unsupported;
use crate::{fs, CgroupError};
use oci_spec::runtime::LinuxCpu;

pub(crate) fn apply(ctl: Ctl, cpu: &LinuxCpu) -> Result<(), CgroupError> {
    if let Some(r) = cpu.realtime_runtime() {
        return Err(unsupported(
            "linux.resources.cpu.realtimeRuntime",
            r.to_string(),
            "no realtime group scheduling",
        ));
    }
    if let Some(p) = cpu.realtime_period() {
        return Err(unsupported(
            "linux.resources.cpu.realtimePeriod",
            p.to_string(),
            "no realtime group scheduling",
        ));
    }
    if let Some(s) = cpu.shares() {
        ctl.write("cpu.weight", &shares_to_weight(s).to_string())?;
    }
    let quota = cpu.quota();
    let period = cpu.period();
    if quota.is_some() || period.is_some() {
        // `cpu.max` holds both; keep the half that is not being set.
        let value = quota.map_or(String::new(), |q| {
            if q < 0 {
                "max".into()
            } else {
                q.to_string()
            }
        });
        let probe = format!("{value} {}", period.unwrap_or_default());
        let current = fs::read(ctl.dir_for("cpu.max", &probe)?, "cpu.max")?;
        let mut cur = current.split_whitespace();
        let (cur_q, cur_p) = (cur.next().unwrap_or("max"), cur.next().unwrap_or("100000"));
        let q = if value.is_empty() {
            cur_q.to_owned()
        } else {
            value
        };
        let p = period.map_or(cur_p.to_owned(), |p| p.to_string());
        ctl.write("cpu.max", &format!("{q} {p}"))?;
    }
    if let Some(b) = cpu.burst() {
        ctl.write("cpu.max.burst", &b.to_string())?;
    }
    if let Some(i) = cpu.idle() {
        ctl.write("cpu.idle", &i.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::testing::{files, read};

    fn cpu(json: &str) -> LinuxCpu {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn writes_weight_max_burst_idle() {
        let d = tempfile::tempdir().unwrap();
        files(
            d.path(),
            &[
                ("cpu.weight", "100"),
                ("cpu.max", "max 100000\n"),
                ("cpu.max.burst", "0"),
                ("cpu.idle", "0"),
            ],
        );
        let ctl = Ctl::at("cpu", d.path());
        apply(
            ctl,
            &cpu(r#"{"shares":1024,"quota":50000,"burst":10,"idle":1}"#),
        )
        .unwrap();
        assert_eq!(read(d.path(), "cpu.weight"), "39");
        assert_eq!(read(d.path(), "cpu.max"), "50000 100000");
        assert_eq!(read(d.path(), "cpu.max.burst"), "10");
        assert_eq!(read(d.path(), "cpu.idle"), "1");
        apply(ctl, &cpu(r#"{"period":20000}"#)).unwrap();
        assert_eq!(read(d.path(), "cpu.max"), "50000 20000");
        apply(ctl, &cpu(r#"{"quota":-1}"#)).unwrap();
        assert_eq!(read(d.path(), "cpu.max"), "max 20000");
    }

    #[test]
    fn realtime_is_unsupported() {
        let d = tempfile::tempdir().unwrap();
        let err = apply(
            Ctl::at("cpu", d.path()),
            &cpu(r#"{"realtimeRuntime":950000}"#),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("is not supported on cgroup v2"), "{err}");
    }
}
