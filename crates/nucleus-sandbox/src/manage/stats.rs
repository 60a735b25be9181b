//! `stats`: CPU, memory and pids usage sampled from the containers' cgroups.

use crate::error::{Result, SandboxError};
use crate::names;
use nucleus_engine::state::{ContainerState, StateRoot, Status, NAME_ANNOTATION};
use serde::Serialize;
use std::time::Instant;

/// One container's usage, as `stats` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    pub id: String,
    pub name: String,
    /// Percent of one CPU since the previous sample.
    pub cpu_percent: f64,
    pub mem_usage: u64,
    /// The memory limit, or the host's memory when unlimited.
    pub mem_limit: u64,
    pub pids: u64,
    /// False when the container has no cgroup (rootless without a
    /// writable one): then there is nothing to measure.
    pub has_cgroup: bool,
}

/// One raw sample of a container's cgroup.
#[derive(Debug, Clone, Copy)]
struct Sample {
    cpu_ns: u64,
    at: Instant,
    mem: u64,
    limit: u64,
    pids: u64,
}

fn sample(state: &ContainerState) -> Option<Sample> {
    let s = state.cgroup.as_ref()?.stats().ok()?;
    Some(Sample {
        cpu_ns: s.cpu.usage.total,
        at: Instant::now(),
        mem: s.memory.usage.usage,
        limit: s.memory.usage.limit,
        pids: s.pids.current,
    })
}

fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Samples containers' usage; CPU is the share used between two samples.
#[derive(Debug)]
pub struct StatsSampler<'a> {
    root: &'a StateRoot,
    targets: Vec<String>,
    prev: Vec<Option<Sample>>,
    host_memory: u64,
}

impl<'a> StatsSampler<'a> {
    /// The named containers, or every running one; takes the first sample.
    pub fn new(root: &'a StateRoot, queries: &[String]) -> Result<Self> {
        let targets: Vec<String> = if queries.is_empty() {
            root.ids()
                .map_err(SandboxError::engine("list"))?
                .into_iter()
                .filter(|id| {
                    root.peek(id)
                        .is_ok_and(|s| root.status_of(&s) == Status::Running)
                })
                .collect()
        } else {
            queries
                .iter()
                .map(|q| names::resolve(root, q))
                .collect::<Result<_>>()?
        };
        let prev = targets
            .iter()
            .map(|id| root.peek(id).ok().and_then(|s| sample(&s)))
            .collect();
        Ok(StatsSampler {
            root,
            targets,
            prev,
            host_memory: host_memory(),
        })
    }

    /// Usage since the previous call (or `new`), for containers still there.
    pub fn sample(&mut self) -> Vec<Stats> {
        let total = self.host_memory;
        let mut out = Vec::new();
        for (i, id) in self.targets.iter().enumerate() {
            let Ok(state) = self.root.peek(id) else {
                continue;
            };
            let now = sample(&state);
            let cpu_percent = match (&self.prev[i], &now) {
                (Some(p), Some(n)) => {
                    let wall = n.at.duration_since(p.at).as_nanos().max(1) as f64;
                    n.cpu_ns.saturating_sub(p.cpu_ns) as f64 / wall * 100.0
                }
                _ => 0.0,
            };
            let (mem_usage, mem_limit, pids) = now
                .as_ref()
                .map(|n| {
                    (
                        n.mem,
                        if n.limit == 0 || n.limit >= total {
                            total
                        } else {
                            n.limit
                        },
                        n.pids,
                    )
                })
                .unwrap_or((0, total, 0));
            let name = state
                .annotations
                .get(NAME_ANNOTATION)
                .cloned()
                .unwrap_or_default();
            out.push(Stats {
                id: id.clone(),
                name,
                cpu_percent,
                mem_usage,
                mem_limit,
                pids,
                has_cgroup: state.cgroup.is_some(),
            });
            self.prev[i] = now;
        }
        out
    }
}
