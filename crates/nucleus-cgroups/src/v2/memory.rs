//! v2 memory controller: `memory.max`, `memory.swap.max`, `memory.low`.
//! v1-only knobs (swappiness, OOM killer off) are errors.

use crate::controller::Ctl;
use crate::convert::{swap_to_v2, v2_limit};
use crate::v1::memory::check_usage_in;
use crate::CgroupError;
use oci_spec::runtime::LinuxMemory;

pub(crate) fn apply(ctl: Ctl, mem: &LinuxMemory) -> Result<(), CgroupError> {
    if mem.kernel().is_some() || mem.kernel_tcp().is_some() {
        tracing::warn!("linux.resources.memory.kernel and kernelTCP are ignored: cgroup v2 has no kernel memory limit");
    }
    if let Some(s) = mem.swappiness() {
        return Err(unsupported(
            "linux.resources.memory.swappiness",
            s.to_string(),
            "no per-cgroup swappiness",
        ));
    }
    if mem.disable_oom_killer() == Some(true) {
        return Err(unsupported(
            "linux.resources.memory.disableOOMKiller",
            "true".into(),
            "the OOM killer cannot be disabled",
        ));
    }
    let limit = mem.limit();
    if let (Some(l), Some(true)) = (limit, mem.check_before_update()) {
        check_usage_in(ctl, "memory.current", l)?;
    }
    if let Some(swap) = mem.swap().or(limit.filter(|l| *l == -1).map(|_| 0)) {
        let v = swap_to_v2(swap, limit)?;
        if v == -1 && !ctl.has_file("memory.swap.max") {
            tracing::debug!("no swap accounting; unlimited swap needs no write");
        } else if v != 0 {
            ctl.write("memory.swap.max", &v2_limit(v))?;
        }
    }
    if let Some(l) = limit {
        ctl.write("memory.max", &v2_limit(l))?;
    }
    if let Some(r) = mem.reservation() {
        ctl.write("memory.low", &v2_limit(r))?;
    }
    Ok(())
}

pub(crate) fn unsupported(field: &'static str, value: String, reason: &'static str) -> CgroupError {
    CgroupError::Unsupported {
        field,
        value,
        version: "v2",
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::testing::{files, read};

    fn mem(json: &str) -> LinuxMemory {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn writes_limit_swap_and_low() {
        let d = tempfile::tempdir().unwrap();
        files(
            d.path(),
            &[
                ("memory.max", "max"),
                ("memory.swap.max", "max"),
                ("memory.low", "0"),
                ("memory.current", "10"),
            ],
        );
        let ctl = Ctl::at("memory", d.path());
        apply(
            ctl,
            &mem(r#"{"limit":1000,"swap":3000,"reservation":500,"checkBeforeUpdate":true}"#),
        )
        .unwrap();
        assert_eq!(read(d.path(), "memory.max"), "1000");
        assert_eq!(read(d.path(), "memory.swap.max"), "2000");
        assert_eq!(read(d.path(), "memory.low"), "500");
        apply(ctl, &mem(r#"{"limit":-1}"#)).unwrap();
        assert_eq!(read(d.path(), "memory.max"), "max");
        assert_eq!(read(d.path(), "memory.swap.max"), "max");
    }

    #[test]
    fn v1_only_knobs_are_errors() {
        let d = tempfile::tempdir().unwrap();
        let ctl = Ctl::at("memory", d.path());
        let err = apply(ctl, &mem(r#"{"swappiness":10}"#))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "`linux.resources.memory.swappiness` = `10` is not supported on cgroup v2: no per-cgroup swappiness");
        assert!(apply(ctl, &mem(r#"{"disableOOMKiller":true}"#)).is_err());
        apply(ctl, &mem(r#"{"disableOOMKiller":false}"#)).unwrap();
    }
}
