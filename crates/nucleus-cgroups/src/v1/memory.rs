//! v1 memory controller: `memory.limit_in_bytes`, `memory.memsw.*`,
//! soft limit, swappiness, OOM killer and kernel TCP memory.

use crate::controller::Ctl;
use crate::{fs, CgroupError};
use oci_spec::runtime::LinuxMemory;

const LIMIT: &str = "memory.limit_in_bytes";
const MEMSW: &str = "memory.memsw.limit_in_bytes";

pub(crate) fn apply(ctl: Ctl, mem: &LinuxMemory) -> Result<(), CgroupError> {
    if let Some(k) = mem.kernel() {
        // As runc: kernel memory limits are deprecated upstream.
        tracing::warn!(
            value = k,
            "linux.resources.memory.kernel is ignored: kernel memory limits are deprecated"
        );
    }
    if let Some(t) = mem.kernel_tcp() {
        ctl.write("memory.kmem.tcp.limit_in_bytes", &t.to_string())?;
    }
    let limit = mem.limit();
    if let (Some(l), Some(true)) = (limit, mem.check_before_update()) {
        check_usage(ctl, l)?;
    }
    set_limit_and_swap(ctl, limit, mem.swap())?;
    if let Some(r) = mem.reservation() {
        ctl.write("memory.soft_limit_in_bytes", &r.to_string())?;
    }
    if let Some(s) = mem.swappiness() {
        if s > 100 {
            return Err(CgroupError::InvalidValue {
                field: "linux.resources.memory.swappiness",
                value: s.to_string(),
                reason: "must be between 0 and 100".into(),
            });
        }
        ctl.write("memory.swappiness", &s.to_string())?;
    }
    if mem.disable_oom_killer() == Some(true) {
        ctl.write("memory.oom_control", "1")?;
    }
    Ok(())
}

/// Refuses a limit under current usage (OCI `checkBeforeUpdate`).
pub(crate) fn check_usage_in(ctl: Ctl, file: &str, limit: i64) -> Result<(), CgroupError> {
    let dir = ctl.dir_for(file, &limit.to_string())?;
    let usage = fs::read_u64_opt(dir, file)?.unwrap_or(0);
    if limit > 0 && usage > limit.unsigned_abs() {
        return Err(CgroupError::MemoryBelowUsage {
            path: dir.join(file),
            limit,
            usage,
        });
    }
    Ok(())
}

fn check_usage(ctl: Ctl, limit: i64) -> Result<(), CgroupError> {
    check_usage_in(ctl, "memory.usage_in_bytes", limit)
}

/// The kernel keeps `limit <= memsw`, so the order of the two writes
/// depends on whether memsw grows or shrinks past the current limit.
fn set_limit_and_swap(ctl: Ctl, limit: Option<i64>, swap: Option<i64>) -> Result<(), CgroupError> {
    // As runc: unlimited memory with no swap value means unlimited swap too.
    let implied = limit == Some(-1) && swap.is_none();
    let swap = if implied { Some(-1) } else { swap };
    let Some(swap) = swap else {
        return limit.map_or(Ok(()), |l| ctl.write(LIMIT, &l.to_string()));
    };
    if swap == -1 && !ctl.has_file(MEMSW) {
        tracing::debug!("no swap accounting; unlimited swap needs no write");
        return limit.map_or(Ok(()), |l| ctl.write(LIMIT, &l.to_string()));
    }
    if let Some(l) = limit.filter(|l| *l > 0) {
        if swap > 0 && swap < l {
            return Err(CgroupError::InvalidValue {
                field: "linux.resources.memory.swap",
                value: swap.to_string(),
                reason: format!("memory+swap must be >= the memory limit `{l}`"),
            });
        }
    }
    let dir = ctl.dir_for(MEMSW, &swap.to_string())?;
    let current = fs::read_u64_opt(dir, LIMIT)?.unwrap_or(u64::MAX);
    let swap_first = swap < 0 || current <= swap.unsigned_abs();
    if swap_first {
        ctl.write(MEMSW, &swap.to_string())?;
    }
    if let Some(l) = limit {
        ctl.write(LIMIT, &l.to_string())?;
    }
    if !swap_first {
        ctl.write(MEMSW, &swap.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::testing::{files, read};

    fn mem(json: &str) -> LinuxMemory {
        serde_json::from_str(json).unwrap()
    }

    fn fresh(dir: &std::path::Path) {
        files(
            dir,
            &[
                (LIMIT, "9223372036854771712\n"),
                (MEMSW, "9223372036854771712\n"),
                ("memory.usage_in_bytes", "5000\n"),
                ("memory.soft_limit_in_bytes", ""),
                ("memory.swappiness", "60"),
                ("memory.oom_control", "oom_kill_disable 0"),
                ("memory.kmem.tcp.limit_in_bytes", ""),
            ],
        );
    }

    #[test]
    fn writes_every_memory_field() {
        let d = tempfile::tempdir().unwrap();
        fresh(d.path());
        let m = mem(
            r#"{"limit":1048576,"swap":2097152,"reservation":524288,"swappiness":10,
                      "disableOOMKiller":true,"kernel":1,"kernelTCP":4096}"#,
        );
        apply(Ctl::at("memory", d.path()), &m).unwrap();
        assert_eq!(read(d.path(), LIMIT), "1048576");
        assert_eq!(read(d.path(), MEMSW), "2097152");
        assert_eq!(read(d.path(), "memory.soft_limit_in_bytes"), "524288");
        assert_eq!(read(d.path(), "memory.swappiness"), "10");
        assert_eq!(read(d.path(), "memory.oom_control"), "1");
        assert_eq!(read(d.path(), "memory.kmem.tcp.limit_in_bytes"), "4096");
    }

    #[test]
    fn unlimited_memory_implies_unlimited_swap() {
        let d = tempfile::tempdir().unwrap();
        fresh(d.path());
        apply(Ctl::at("memory", d.path()), &mem(r#"{"limit":-1}"#)).unwrap();
        assert_eq!(read(d.path(), MEMSW), "-1");
        assert_eq!(read(d.path(), LIMIT), "-1");
    }

    #[test]
    fn rejects_bad_values() {
        let d = tempfile::tempdir().unwrap();
        fresh(d.path());
        let ctl = Ctl::at("memory", d.path());
        let err = apply(ctl, &mem(r#"{"limit":100,"swap":50}"#))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("memory+swap must be >= the memory limit `100`"),
            "{err}"
        );
        let err = apply(ctl, &mem(r#"{"swappiness":101}"#))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid value `101` for `linux.resources.memory.swappiness`"),
            "{err}"
        );
        let err = apply(ctl, &mem(r#"{"limit":4000,"checkBeforeUpdate":true}"#))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("memory limit `4000` is lower than current usage `5000` of `"),
            "{err}"
        );
        apply(ctl, &mem(r#"{"limit":6000,"checkBeforeUpdate":true}"#)).unwrap();
    }

    #[test]
    fn absent_controller_is_an_error() {
        let ctl = Ctl {
            name: "memory",
            dir: None,
        };
        let err = apply(ctl, &mem(r#"{"limit":100}"#))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "controller `memory` is not available on this host: cannot write `100` to `memory.limit_in_bytes`");
    }
}
