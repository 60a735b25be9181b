//! v1 statistics readers: memory, cpuacct, cpu throttling, pids, blkio
//! and hugetlb files into `Stats` sections.

use crate::fs;
use crate::stats::{
    BlkioEntry, BlkioStats, CpuUsage, HugetlbStats, MemoryEntry, MemoryStats, PidsStats, Throttling,
};
use crate::CgroupError;
use std::collections::BTreeMap;
use std::path::Path;

pub(crate) fn memory(dir: &Path) -> Result<MemoryStats, CgroupError> {
    let entry = |prefix: &str| -> Result<MemoryEntry, CgroupError> {
        let get = |f: &str| {
            fs::read_u64_opt(dir, &format!("{prefix}.{f}")).map(Option::unwrap_or_default)
        };
        Ok(MemoryEntry {
            limit: get("limit_in_bytes")?,
            usage: get("usage_in_bytes")?,
            max: get("max_usage_in_bytes")?,
            failcnt: get("failcnt")?,
        })
    };
    let raw = fs::read_keyed(dir, "memory.stat")?;
    Ok(MemoryStats {
        cache: raw
            .get("total_cache")
            .or(raw.get("cache"))
            .copied()
            .unwrap_or(0),
        usage: entry("memory")?,
        swap: entry("memory.memsw")?,
        kernel: entry("memory.kmem")?,
        kernel_tcp: entry("memory.kmem.tcp")?,
        oom_kill: fs::read_keyed(dir, "memory.oom_control")?
            .get("oom_kill")
            .copied()
            .unwrap_or(0),
        raw,
    })
}

pub(crate) fn cpu_usage(dir: &Path) -> Result<CpuUsage, CgroupError> {
    let list = |f: &str| -> Result<Vec<u64>, CgroupError> {
        let text = fs::read_opt(dir, f)?.unwrap_or_default();
        text.split_whitespace()
            .map(|v| fs::parse_u64(&dir.join(f), v))
            .collect()
    };
    let one = |f: &str| fs::read_u64_opt(dir, f);
    let (user, kernel) = match (one("cpuacct.usage_user")?, one("cpuacct.usage_sys")?) {
        (Some(u), Some(k)) => (u, k),
        _ => {
            // Older kernels: cpuacct.stat in USER_HZ ticks.
            let st = fs::read_keyed(dir, "cpuacct.stat")?;
            let ns = 1_000_000_000 / clock_ticks();
            (
                st.get("user").copied().unwrap_or(0) * ns,
                st.get("system").copied().unwrap_or(0) * ns,
            )
        }
    };
    Ok(CpuUsage {
        total: one("cpuacct.usage")?.unwrap_or(0),
        percpu: list("cpuacct.usage_percpu")?,
        percpu_kernel: list("cpuacct.usage_percpu_sys")?,
        percpu_user: list("cpuacct.usage_percpu_user")?,
        kernel,
        user,
    })
}

fn clock_ticks() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t.unsigned_abs(),
        _ => 100,
    }
}

pub(crate) fn throttling(dir: &Path) -> Result<Throttling, CgroupError> {
    let st = fs::read_keyed(dir, "cpu.stat")?;
    let get = |k: &str| st.get(k).copied().unwrap_or(0);
    Ok(Throttling {
        periods: get("nr_periods"),
        throttled_periods: get("nr_throttled"),
        throttled_time: get("throttled_time"),
    })
}

/// Same files on v1 and v2; an unlimited `pids.max` reports 0.
pub(crate) fn pids(dir: &Path) -> Result<PidsStats, CgroupError> {
    let limit = fs::read_u64_opt(dir, "pids.max")?
        .filter(|l| *l != u64::MAX)
        .unwrap_or(0);
    Ok(PidsStats {
        current: fs::read_u64_opt(dir, "pids.current")?.unwrap_or(0),
        limit,
    })
}

/// CFQ files if present, else BFQ, else the throttle layer's.
pub(crate) fn blkio(dir: &Path) -> Result<BlkioStats, CgroupError> {
    let read = |name: &str| -> Result<Vec<BlkioEntry>, CgroupError> {
        for prefix in ["blkio.", "blkio.bfq.", "blkio.throttle."] {
            if let Some(text) = fs::read_opt(dir, &format!("{prefix}{name}"))? {
                return Ok(parse_blkio(&text));
            }
        }
        Ok(Vec::new())
    };
    Ok(BlkioStats {
        io_service_bytes_recursive: read("io_service_bytes_recursive")?,
        io_serviced_recursive: read("io_serviced_recursive")?,
    })
}

/// Lines `8:0 Read 4096`; the trailing `Total N` line is skipped.
fn parse_blkio(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (maj, min) = it.next()?.split_once(':')?;
            Some(BlkioEntry {
                major: maj.parse().ok()?,
                minor: min.parse().ok()?,
                op: it.next()?.to_owned(),
                value: it.next()?.parse().ok()?,
            })
        })
        .collect()
}

pub(crate) fn hugetlb(dir: &Path) -> Result<BTreeMap<String, HugetlbStats>, CgroupError> {
    let mut out = BTreeMap::new();
    for size in page_sizes(dir, ".usage_in_bytes")? {
        let get = |f: &str| {
            fs::read_u64_opt(dir, &format!("hugetlb.{size}.{f}")).map(Option::unwrap_or_default)
        };
        let s = HugetlbStats {
            usage: get("usage_in_bytes")?,
            max: get("max_usage_in_bytes")?,
            failcnt: get("failcnt")?,
        };
        out.insert(size, s);
    }
    Ok(out)
}

/// Page sizes offered in `dir`, from file names `hugetlb.<size><suffix>`.
pub(crate) fn page_sizes(dir: &Path, suffix: &str) -> Result<Vec<String>, CgroupError> {
    let entries = std::fs::read_dir(dir).map_err(|source| CgroupError::ListDir {
        path: dir.to_owned(),
        source,
    })?;
    let mut sizes: Vec<String> = entries
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let size = name.strip_prefix("hugetlb.")?.strip_suffix(suffix)?;
            (!size.contains('.')).then(|| size.to_owned())
        })
        .collect();
    sizes.sort();
    Ok(sizes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::testing::files;

    #[test]
    fn reads_v1_files() {
        let d = tempfile::tempdir().unwrap();
        files(
            d.path(),
            &[
                ("memory.usage_in_bytes", "100"),
                ("memory.limit_in_bytes", "9223372036854771712"),
                ("memory.max_usage_in_bytes", "150"),
                ("memory.failcnt", "3"),
                ("memory.stat", "cache 7\ntotal_cache 8\n"),
                (
                    "memory.oom_control",
                    "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
                ),
                ("cpuacct.usage", "1000"),
                ("cpuacct.usage_percpu", "600 400 \n"),
                ("cpuacct.stat", "user 1\nsystem 2\n"),
                (
                    "cpu.stat",
                    "nr_periods 5\nnr_throttled 1\nthrottled_time 99\n",
                ),
                ("pids.current", "3"),
                ("pids.max", "max"),
                (
                    "blkio.throttle.io_service_bytes_recursive",
                    "8:0 Read 4096\n8:0 Write 0\nTotal 4096\n",
                ),
                ("hugetlb.2MB.usage_in_bytes", "0"),
                ("hugetlb.2MB.failcnt", "4"),
                ("hugetlb.2MB.limit_in_bytes", "0"),
            ],
        );
        let m = memory(d.path()).unwrap();
        assert_eq!(
            (
                m.usage.usage,
                m.usage.max,
                m.usage.failcnt,
                m.cache,
                m.oom_kill
            ),
            (100, 150, 3, 8, 2)
        );
        let c = cpu_usage(d.path()).unwrap();
        assert_eq!(
            (c.total, c.percpu.clone(), c.user > 0, c.kernel > c.user),
            (1000, vec![600, 400], true, true)
        );
        assert_eq!(throttling(d.path()).unwrap().throttled_time, 99);
        assert_eq!(
            pids(d.path()).unwrap(),
            PidsStats {
                current: 3,
                limit: 0
            }
        );
        let b = blkio(d.path()).unwrap();
        assert_eq!(b.io_service_bytes_recursive.len(), 2);
        assert_eq!(b.io_service_bytes_recursive[0].op, "Read");
        assert_eq!(hugetlb(d.path()).unwrap()["2MB"].failcnt, 4);
    }
}
