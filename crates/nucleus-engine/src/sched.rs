//! `process.scheduler`, `process.execCPUAffinity` and `linux.memoryPolicy`:
//! parsed and validated in the parent into fixed-size values, applied by the
//! child before it drops privileges (no allocation there).

use crate::error::{EngineError, Result};
use crate::launch::{StepContext, StepError};
use nix::sched::CpuSet;
use nucleus_sys::sched::SchedAttr;
use oci_spec::runtime::{
    LinuxMemoryPolicy, LinuxSchedulerFlag, LinuxSchedulerPolicy, MemoryPolicyFlagType,
    MemoryPolicyModeType, Process, Scheduler, Spec,
};

/// Node masks cover this many 64-bit words (1024 nodes, the kernel's usual MAX_NUMNODES).
const NODE_WORDS: usize = 16;

/// What to apply; every field `None` means the kernel's defaults stay.
#[derive(Debug, Clone, Default)]
pub(crate) struct SchedPlan {
    pub scheduler: Option<SchedAttr>,
    pub affinity_initial: Option<CpuSet>,
    pub affinity_final: Option<CpuSet>,
    /// `mode | flags` and the node mask for `set_mempolicy`.
    pub memory_policy: Option<(i32, [u64; NODE_WORDS])>,
}

impl SchedPlan {
    /// The process-level settings of `p`.
    pub(crate) fn from_process(p: &Process) -> Result<SchedPlan> {
        let mut plan = SchedPlan {
            scheduler: p.scheduler().as_ref().map(sched_attr).transpose()?,
            ..SchedPlan::default()
        };
        if let Some(a) = p.exec_cpu_affinity() {
            plan.affinity_initial = a
                .initial()
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(|s| cpu_set("process.execCPUAffinity.initial", s))
                .transpose()?;
            plan.affinity_final = a
                .cpu_affinity_final()
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(|s| cpu_set("process.execCPUAffinity.final", s))
                .transpose()?;
        }
        Ok(plan)
    }

    /// Adds the container-level `linux.memoryPolicy` of `spec`.
    pub(crate) fn with_memory_policy(mut self, spec: &Spec) -> Result<SchedPlan> {
        if let Some(mp) = spec
            .linux()
            .as_ref()
            .and_then(|l| l.memory_policy().as_ref())
        {
            self.memory_policy = memory_policy(mp)?;
        }
        Ok(self)
    }

    /// Applies the plan to the calling process (the child, still privileged).
    pub(crate) fn apply(&self) -> std::result::Result<(), StepError> {
        if let Some(set) = &self.affinity_initial {
            nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), set)
                .step("execCPUAffinity", || "sched_setaffinity (initial)".into())?;
        }
        if let Some((mode, nodes)) = &self.memory_policy {
            nucleus_sys::sched::set_mempolicy(*mode, nodes_in_use(nodes))
                .step("memoryPolicy", || format!("set_mempolicy mode {mode:#x}"))?;
        }
        if let Some(attr) = &self.scheduler {
            nucleus_sys::sched::sched_setattr_self(attr).step("scheduler", || {
                format!(
                    "sched_setattr policy {} (real-time policies need CAP_SYS_NICE)",
                    attr.policy
                )
            })?;
        }
        if let Some(set) = &self.affinity_final {
            nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), set)
                .step("execCPUAffinity", || "sched_setaffinity (final)".into())?;
        }
        Ok(())
    }
}

/// The mask up to its last non-zero word (an empty slice for no nodes).
fn nodes_in_use(nodes: &[u64; NODE_WORDS]) -> &[u64] {
    let used = nodes.iter().rposition(|w| *w != 0).map_or(0, |i| i + 1);
    &nodes[..used]
}

fn sched_attr(s: &Scheduler) -> Result<SchedAttr> {
    let policy = match s.policy() {
        LinuxSchedulerPolicy::SchedOther => 0,
        LinuxSchedulerPolicy::SchedFifo => 1,
        LinuxSchedulerPolicy::SchedRr => 2,
        LinuxSchedulerPolicy::SchedBatch => 3,
        LinuxSchedulerPolicy::SchedIso => 4,
        LinuxSchedulerPolicy::SchedIdle => 5,
        LinuxSchedulerPolicy::SchedDeadline => 6,
    };
    let mut flags = 0u64;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            LinuxSchedulerFlag::SchedResetOnFork => 0x01,
            LinuxSchedulerFlag::SchedFlagReclaim => 0x02,
            LinuxSchedulerFlag::SchedFlagDLOverrun => 0x04,
            LinuxSchedulerFlag::SchedFlagKeepPolicy => 0x08,
            LinuxSchedulerFlag::SchedFlagKeepParams => 0x10,
            LinuxSchedulerFlag::SchedFlagUtilClampMin => 0x20,
            LinuxSchedulerFlag::SchedFlagUtilClampMax => 0x40,
        };
    }
    let nice = s.nice().unwrap_or(0);
    if !(-20..=19).contains(&nice) {
        return Err(EngineError::invalid(
            "process.scheduler.nice",
            nice.to_string(),
            "must be -20 to 19",
        ));
    }
    let priority = u32::try_from(s.priority().unwrap_or(0)).map_err(|_| {
        EngineError::invalid(
            "process.scheduler.priority",
            format!("{:?}", s.priority()),
            "must not be negative",
        )
    })?;
    let realtime = matches!(policy, 1 | 2);
    if realtime && !(1..=99).contains(&priority) {
        return Err(EngineError::invalid(
            "process.scheduler.priority",
            priority.to_string(),
            "SCHED_FIFO and SCHED_RR need a priority of 1 to 99",
        ));
    }
    if !realtime && priority != 0 {
        return Err(EngineError::invalid(
            "process.scheduler.priority",
            priority.to_string(),
            "only SCHED_FIFO and SCHED_RR take a priority",
        ));
    }
    let deadline_fields = [s.runtime(), s.deadline(), s.period()];
    if policy != 6 && deadline_fields.iter().any(|f| f.is_some()) {
        return Err(EngineError::invalid(
            "process.scheduler.runtime",
            format!("{deadline_fields:?}"),
            "runtime, deadline and period are for SCHED_DEADLINE only",
        ));
    }
    Ok(SchedAttr {
        size: 0,
        policy,
        flags,
        nice,
        priority,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
        util_min: 0,
        util_max: 0,
    })
}

/// Parses a list such as `0-3,7` into bits; `max` bounds the values.
fn parse_list(field: &str, list: &str, max: usize, mut set: impl FnMut(usize)) -> Result<()> {
    let bad = |reason: &str| EngineError::invalid(field, list, reason);
    for part in list.split(',').map(str::trim) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let (lo, hi): (usize, usize) = match (lo.parse(), hi.parse()) {
            (Ok(lo), Ok(hi)) if lo <= hi => (lo, hi),
            _ => return Err(bad("must be a list of numbers and ranges such as `0-3,7`")),
        };
        if hi >= max {
            return Err(bad(&format!("values must be below {max}")));
        }
        (lo..=hi).for_each(&mut set);
    }
    Ok(())
}

fn cpu_set(field: &str, list: &str) -> Result<CpuSet> {
    let mut set = CpuSet::new();
    let mut failed = false;
    parse_list(field, list, CpuSet::count(), |cpu| {
        failed |= set.set(cpu).is_err()
    })?;
    if failed {
        return Err(EngineError::invalid(field, list, "cpu out of range"));
    }
    Ok(set)
}

fn memory_policy(mp: &LinuxMemoryPolicy) -> Result<Option<(i32, [u64; NODE_WORDS])>> {
    let nodes_text = mp.nodes().as_deref().unwrap_or("").trim();
    let mut nodes = [0u64; NODE_WORDS];
    if !nodes_text.is_empty() {
        parse_list(
            "linux.memoryPolicy.nodes",
            nodes_text,
            NODE_WORDS * 64,
            |n| nodes[n / 64] |= 1 << (n % 64),
        )?;
    }
    let flags: i32 = mp
        .flags()
        .iter()
        .flatten()
        .map(|f| match f {
            MemoryPolicyFlagType::MpolFNumaBalancing => 1 << 13,
            MemoryPolicyFlagType::MpolFRelativeNodes => 1 << 14,
            MemoryPolicyFlagType::MpolFStaticNodes => 1 << 15,
        })
        .fold(0, |a, b| a | b);
    let (mode, takes_nodes) = match mp.mode() {
        MemoryPolicyModeType::MpolDefault => (0, false),
        MemoryPolicyModeType::MpolPreferred => (1, true),
        MemoryPolicyModeType::MpolBind => (2, true),
        MemoryPolicyModeType::MpolInterleave => (3, true),
        MemoryPolicyModeType::MpolLocal => (4, false),
        MemoryPolicyModeType::MpolPreferredMany => (5, true),
        MemoryPolicyModeType::MpolWeightedInterleave => (6, true),
    };
    match (takes_nodes, nodes_text.is_empty()) {
        (false, false) => {
            return Err(EngineError::invalid(
                "linux.memoryPolicy.nodes",
                nodes_text,
                format!("{} takes no nodes", mp.mode()),
            ))
        }
        (true, true) => {
            return Err(EngineError::invalid(
                "linux.memoryPolicy.nodes",
                "",
                format!("{} needs nodes", mp.mode()),
            ))
        }
        _ => {}
    }
    // MPOL_DEFAULT without flags is what every process has already.
    if mode == 0 && flags == 0 {
        return Ok(None);
    }
    Ok(Some((mode | flags, nodes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: &str) -> Result<Option<(i32, [u64; NODE_WORDS])>> {
        memory_policy(&serde_json::from_str(json).unwrap())
    }

    #[test]
    fn memory_policy_modes_and_nodes() {
        assert_eq!(policy(r#"{"mode": "MPOL_DEFAULT"}"#).unwrap(), None);
        let (mode, nodes) =
            policy(r#"{"mode": "MPOL_BIND", "nodes": "0,2-3", "flags": ["MPOL_F_STATIC_NODES"]}"#)
                .unwrap()
                .unwrap();
        assert_eq!(mode, 2 | 1 << 15);
        assert_eq!(nodes_in_use(&nodes), &[0b1101]);
        let err = policy(r#"{"mode": "MPOL_DEFAULT", "nodes": "0"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("linux.memoryPolicy.nodes") && err.contains("takes no nodes"),
            "{err}"
        );
        let err = policy(r#"{"mode": "MPOL_INTERLEAVE"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs nodes"), "{err}");
        let err = policy(r#"{"mode": "MPOL_BIND", "nodes": "3-1"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`3-1`"), "{err}");
    }

    #[test]
    fn scheduler_is_checked() {
        let s = |json: &str| sched_attr(&serde_json::from_str(json).unwrap());
        let a = s(r#"{"policy": "SCHED_FIFO", "priority": 10, "flags": ["SCHED_RESET_ON_FORK"]}"#)
            .unwrap();
        assert_eq!((a.policy, a.priority, a.flags), (1, 10, 1));
        assert_eq!(
            s(r#"{"policy": "SCHED_BATCH", "nice": 5}"#).unwrap().nice,
            5
        );
        assert!(s(r#"{"policy": "SCHED_RR"}"#)
            .unwrap_err()
            .to_string()
            .contains("1 to 99"));
        assert!(s(r#"{"policy": "SCHED_OTHER", "nice": 40}"#)
            .unwrap_err()
            .to_string()
            .starts_with("process.scheduler.nice"));
        assert!(s(r#"{"policy": "SCHED_OTHER", "runtime": 5}"#)
            .unwrap_err()
            .to_string()
            .contains("SCHED_DEADLINE"));
    }

    #[test]
    fn cpu_lists() {
        let set = cpu_set("f", "0-1,3").unwrap();
        assert!(
            set.is_set(0).unwrap()
                && set.is_set(1).unwrap()
                && !set.is_set(2).unwrap()
                && set.is_set(3).unwrap()
        );
        assert!(cpu_set("f", "x").unwrap_err().to_string().starts_with("f:"));
        assert!(cpu_set("f", "100000").is_err());
    }
}
