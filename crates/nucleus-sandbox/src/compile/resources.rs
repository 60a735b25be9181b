//! cgroup limits (`linux.resources`) and rlimits (`process.rlimits`).

use super::Inputs;
use crate::error::{Field, Result, SandboxError};
use crate::spec::SandboxSpec;
use serde_json::{json, Value};

/// Default `pids.max` (PRODUCT.md: agent mode's default cgroup limits).
const DEFAULT_PIDS: i64 = 1024;

/// cpu.cfs_period_us for `cpus`.
const CPU_PERIOD: u64 = 100_000;

/// Rootless without a writable cgroup: the first limit asked for, if any.
fn limit_without_cgroup(s: &SandboxSpec) -> Option<(Field, String)> {
    let r = &s.resources;
    let num = |v: Option<i64>| v.map(|v| v.to_string());
    [
        (Field::Memory, num(r.memory)),
        (Field::MemorySwap, num(r.memory_swap)),
        (Field::Cpus, r.cpus.map(|c| c.to_string())),
        (Field::CpuWeight, r.cpu_weight.map(|w| w.to_string())),
        (Field::Pids, num(r.pids.filter(|p| *p > 0))),
        (Field::IoLimit, r.io_limits.first().map(ToString::to_string)),
    ]
    .into_iter()
    .find_map(|(f, v)| Some((f, v?)))
}

pub(super) fn linux_resources(s: &SandboxSpec, inp: &Inputs<'_>) -> Result<Value> {
    let res = &s.resources;
    let mut r = json!({"devices": [{"allow": false, "access": "rwm"}]});
    if !inp.cgroup {
        if let Some((field, value)) = limit_without_cgroup(s) {
            if !s.security.allow_degraded_security {
                return Err(SandboxError::invalid(
                    field,
                    value,
                    "rootless: there is no cgroup this user can write (no delegated cgroup v2 subtree), so the limit cannot be enforced; drop it or pass --allow-degraded-security",
                ));
            }
        }
    }
    match res.pids {
        // Without a cgroup the default falls back to RLIMIT_NPROC (`rlimits`).
        None if !inp.cgroup => {}
        None => r["pids"] = json!({"limit": DEFAULT_PIDS}),
        Some(n) if n > 0 => r["pids"] = json!({"limit": n}),
        Some(_) => {}
    }
    let mut memory = serde_json::Map::new();
    if let Some(b) = res.memory {
        memory.insert("limit".into(), json!(b));
    }
    if let Some(b) = res.memory_swap {
        memory.insert("swap".into(), json!(b));
    }
    if !memory.is_empty() {
        r["memory"] = Value::Object(memory);
    }
    let mut cpu = serde_json::Map::new();
    if let Some(n) = res.cpus {
        cpu.insert("period".into(), json!(CPU_PERIOD));
        // validate() keeps n in [0.01, 1024], so the quota fits easily.
        #[allow(clippy::cast_possible_truncation)]
        let quota = (n * CPU_PERIOD as f64).round() as i64;
        cpu.insert("quota".into(), json!(quota));
    }
    if let Some(weight) = res.cpu_weight {
        // cpu.shares that the engine's conversion (shares → weight) maps back to this weight.
        let shares = 2 + ((weight - 1) * 262_142).div_ceil(9_999);
        cpu.insert("shares".into(), json!(shares));
    }
    if !cpu.is_empty() {
        r["cpu"] = Value::Object(cpu);
    }
    let mut blkio = serde_json::Map::new();
    for limit in &res.io_limits {
        let dev = limit.device.as_str();
        let (major, minor) = match dev
            .split_once(':')
            .map(|(a, b)| (a.parse::<i64>(), b.parse::<i64>()))
        {
            Some((Ok(a), Ok(b))) => (a, b),
            _ => (inp.device)(dev).ok_or_else(|| {
                SandboxError::invalid(
                    Field::IoLimit,
                    limit.to_string(),
                    format!("`{dev}` is not a block device (or MAJOR:MINOR)"),
                )
            })?,
        };
        for rate in &limit.rates {
            let list = blkio
                .entry(rate.kind.oci_key())
                .or_insert_with(|| json!([]));
            if let Some(a) = list.as_array_mut() {
                a.push(json!({"major": major, "minor": minor, "rate": rate.rate}));
            }
        }
    }
    if !blkio.is_empty() {
        r["blockIO"] = Value::Object(blkio);
    }
    Ok(r)
}

/// `process.rlimits` entries, one per ulimit; without a cgroup, the
/// default pids limit as RLIMIT_NPROC (at most the caller's hard limit).
pub(super) fn rlimits(s: &SandboxSpec, inp: &Inputs<'_>) -> Vec<Value> {
    let mut out: Vec<Value> = s.ulimits.iter().map(|u| json!({"type": format!("RLIMIT_{}", u.name.to_ascii_uppercase()), "soft": u.soft, "hard": u.hard})).collect();
    let has_nproc = s
        .ulimits
        .iter()
        .any(|u| u.name.eq_ignore_ascii_case("nproc"));
    if !inp.cgroup && s.resources.pids.is_none() && !has_nproc {
        let n = inp.nproc_hard.min(DEFAULT_PIDS.unsigned_abs());
        tracing::debug!(
            limit = n,
            "rootless: no writable cgroup; the default pids limit is RLIMIT_NPROC instead (it counts every process of the user's host uid)"
        );
        out.push(json!({"type": "RLIMIT_NPROC", "soft": n, "hard": n}));
    }
    out
}
