//! v2 statistics readers: memory, cpu.stat, io.stat and hugetlb files
//! into `Stats` sections. pids shares v1's reader.

use crate::fs;
use crate::stats::{
    BlkioEntry, BlkioStats, CpuUsage, HugetlbStats, MemoryEntry, MemoryStats, Throttling,
};
use crate::CgroupError;
use std::collections::BTreeMap;
use std::path::Path;

pub(crate) fn memory(dir: &Path) -> Result<MemoryStats, CgroupError> {
    let one = |f: &str| fs::read_u64_opt(dir, f).map(Option::unwrap_or_default);
    let events = fs::read_keyed(dir, "memory.events")?;
    let swap_events = fs::read_keyed(dir, "memory.swap.events")?;
    let raw = fs::read_keyed(dir, "memory.stat")?;
    let (usage, limit) = (one("memory.current")?, one("memory.max")?);
    let (swap, swap_max) = (
        one("memory.swap.current")?,
        fs::read_u64_opt(dir, "memory.swap.max")?,
    );
    Ok(MemoryStats {
        cache: raw.get("file").copied().unwrap_or(0),
        usage: MemoryEntry {
            limit,
            usage,
            max: one("memory.peak")?,
            failcnt: events.get("max").copied().unwrap_or(0),
        },
        // As v1's memsw: memory plus swap.
        swap: MemoryEntry {
            limit: swap_max.map_or(0, |s| s.saturating_add(limit)),
            usage: usage + swap,
            max: 0,
            failcnt: swap_events.get("max").copied().unwrap_or(0),
        },
        kernel: MemoryEntry::default(),
        kernel_tcp: MemoryEntry::default(),
        oom_kill: events.get("oom_kill").copied().unwrap_or(0),
        raw,
    })
}

/// `cpu.stat` is a core file: usage is there even without the controller.
pub(crate) fn cpu_usage(dir: &Path) -> Result<CpuUsage, CgroupError> {
    let st = fs::read_keyed(dir, "cpu.stat")?;
    let ns = |k: &str| st.get(k).copied().unwrap_or(0) * 1000;
    Ok(CpuUsage {
        total: ns("usage_usec"),
        kernel: ns("system_usec"),
        user: ns("user_usec"),
        ..Default::default()
    })
}

pub(crate) fn throttling(dir: &Path) -> Result<Throttling, CgroupError> {
    let st = fs::read_keyed(dir, "cpu.stat")?;
    let get = |k: &str| st.get(k).copied().unwrap_or(0);
    Ok(Throttling {
        periods: get("nr_periods"),
        throttled_periods: get("nr_throttled"),
        throttled_time: get("throttled_usec") * 1000,
    })
}

/// Lines `8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0`.
pub(crate) fn io(dir: &Path) -> Result<BlkioStats, CgroupError> {
    let text = fs::read_opt(dir, "io.stat")?.unwrap_or_default();
    let mut out = BlkioStats::default();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let Some((Ok(major), Ok(minor))) = it
            .next()
            .and_then(|d| d.split_once(':'))
            .map(|(a, b)| (a.parse(), b.parse()))
        else {
            continue;
        };
        for kv in it {
            let Some((k, Ok(value))) = kv.split_once('=').map(|(k, v)| (k, v.parse::<u64>()))
            else {
                continue;
            };
            let (list, op) = match k {
                "rbytes" => (&mut out.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut out.io_service_bytes_recursive, "Write"),
                "dbytes" => (&mut out.io_service_bytes_recursive, "Discard"),
                "rios" => (&mut out.io_serviced_recursive, "Read"),
                "wios" => (&mut out.io_serviced_recursive, "Write"),
                "dios" => (&mut out.io_serviced_recursive, "Discard"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.to_owned(),
                value,
            });
        }
    }
    Ok(out)
}

pub(crate) fn hugetlb(dir: &Path) -> Result<BTreeMap<String, HugetlbStats>, CgroupError> {
    let mut out = BTreeMap::new();
    for size in crate::v1::stats::page_sizes(dir, ".current")? {
        let usage = fs::read_u64_opt(dir, &format!("hugetlb.{size}.current"))?.unwrap_or(0);
        let failcnt = fs::read_keyed(dir, &format!("hugetlb.{size}.events"))?
            .get("max")
            .copied()
            .unwrap_or(0);
        out.insert(
            size,
            HugetlbStats {
                usage,
                max: 0,
                failcnt,
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::testing::files;

    #[test]
    fn reads_v2_files() {
        let d = tempfile::tempdir().unwrap();
        files(d.path(), &[
            ("memory.current", "100"),
            ("memory.max", "max"),
            ("memory.peak", "120"),
            ("memory.swap.current", "5"),
            ("memory.swap.max", "max"),
            ("memory.events", "low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n"),
            ("memory.stat", "anon 10\nfile 20\n"),
            ("cpu.stat", "usage_usec 10\nuser_usec 6\nsystem_usec 4\nnr_periods 3\nnr_throttled 1\nthrottled_usec 7\n"),
            ("io.stat", "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0\n"),
            ("hugetlb.2MB.current", "0"),
            ("hugetlb.2MB.events", "max 3\n"),
        ]);
        let m = memory(d.path()).unwrap();
        assert_eq!(
            (m.usage.usage, m.usage.limit, m.usage.max, m.usage.failcnt),
            (100, u64::MAX, 120, 2)
        );
        assert_eq!(
            (m.swap.usage, m.swap.limit, m.cache, m.oom_kill),
            (105, u64::MAX, 20, 1)
        );
        assert_eq!(cpu_usage(d.path()).unwrap().total, 10_000);
        assert_eq!(throttling(d.path()).unwrap().throttled_time, 7000);
        let b = io(d.path()).unwrap();
        assert_eq!(b.io_service_bytes_recursive.len(), 3);
        assert_eq!(b.io_serviced_recursive[1].value, 4);
        assert_eq!(hugetlb(d.path()).unwrap()["2MB"].failcnt, 3);
    }
}
