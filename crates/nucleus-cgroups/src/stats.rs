//! Resource usage in the shape of runc's `events --stats` `data` object,
//! and the dispatch that fills it from whichever hierarchy serves each
//! controller. Absent controllers leave their section empty.

use crate::cgroup::{Cgroup, Place};
use crate::{v1, v2, CgroupError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Everything `stats()` reports.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub cpu: CpuStats,
    pub memory: MemoryStats,
    pub pids: PidsStats,
    pub blkio: BlkioStats,
    /// Keyed by page size, e.g. `2MB`.
    pub hugetlb: BTreeMap<String, HugetlbStats>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuStats {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

/// Nanoseconds.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuUsage {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub total: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Throttling {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub periods: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    /// Nanoseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

/// Bytes. An unlimited limit is `u64::MAX`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryStats {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache: u64,
    pub usage: MemoryEntry,
    /// Memory plus swap, as on v1.
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// `memory.stat` as read.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
    /// Processes killed by the OOM killer (not in runc's shape).
    #[serde(rename = "oomKill", default)]
    pub oom_kill: u64,
}

/// A `limit` of 0 means no limit, as runc reports it.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidsStats {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub current: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub limit: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlkioStats {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HugetlbStats {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

impl Cgroup {
    /// Reads usage for every controller the host offers.
    pub fn stats(&self) -> Result<Stats, CgroupError> {
        let mut s = Stats::default();
        match self.place("memory", "memory") {
            Some(Place::V1(d)) => s.memory = v1::stats::memory(d)?,
            Some(Place::V2(d)) => s.memory = v2::stats::memory(d)?,
            None => {}
        }
        // cpu.stat is a core file on v2, so usage is there without the controller.
        if let Some(d) = self.v1_dir("cpuacct") {
            s.cpu.usage = v1::stats::cpu_usage(d)?;
        } else if let Some(d) = self.v2_dir() {
            s.cpu.usage = v2::stats::cpu_usage(d)?;
        }
        match self.place("cpu", "cpu") {
            Some(Place::V1(d)) => s.cpu.throttling = v1::stats::throttling(d)?,
            Some(Place::V2(d)) => s.cpu.throttling = v2::stats::throttling(d)?,
            None => {}
        }
        if let Some(Place::V1(d) | Place::V2(d)) = self.place("pids", "pids") {
            s.pids = v1::stats::pids(d)?;
        }
        match self.place("blkio", "io") {
            Some(Place::V1(d)) => s.blkio = v1::stats::blkio(d)?,
            Some(Place::V2(d)) => s.blkio = v2::stats::io(d)?,
            None => {}
        }
        match self.place("hugetlb", "hugetlb") {
            Some(Place::V1(d)) => s.hugetlb = v1::stats::hugetlb(d)?,
            Some(Place::V2(d)) => s.hugetlb = v2::stats::hugetlb(d)?,
            None => {}
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_in_runc_shape() {
        let mut s = Stats::default();
        s.memory.usage = MemoryEntry {
            limit: 10,
            usage: 5,
            max: 6,
            failcnt: 0,
        };
        s.cpu.throttling.throttled_periods = 2;
        s.hugetlb.insert("2MB".into(), HugetlbStats::default());
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["memory"]["usage"]["usage"], 5);
        assert_eq!(v["memory"]["kernelTCP"]["limit"], 0);
        assert_eq!(v["cpu"]["throttling"]["throttledPeriods"], 2);
        assert_eq!(v["cpu"]["usage"]["kernel"], 0);
        assert!(v["pids"].as_object().unwrap().is_empty());
        assert_eq!(v["hugetlb"]["2MB"]["failcnt"], 0);
    }
}
