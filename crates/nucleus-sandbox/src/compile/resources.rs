//! cgroup limits (`linux.resources`) and rlimits (`process.rlimits`).

use super::Inputs;
use crate::error::{Field, Result, SandboxError};
use crate::spec::SandboxSpec;
use serde_json::{json, Value};

/// Default `pids.max` (PRODUCT.md: agent mode's default cgroup limits).
const DEFAULT_PIDS: i64 = 1024;

/// cpu.cfs_period_us for `cpus`.
const CPU_PERIOD: u64 = 100_000;

pub(super) fn linux_resources(s: &SandboxSpec, inp: &Inputs<'_>) -> Result<Value> {
    let res = &s.resources;
    let mut r = json!({"devices": [{"allow": false, "access": "rwm"}]});
    match res.pids {
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

/// `process.rlimits` entries, one per ulimit.
pub(super) fn rlimits(s: &SandboxSpec) -> Vec<Value> {
    s.ulimits.iter().map(|u| json!({"type": format!("RLIMIT_{}", u.name.to_ascii_uppercase()), "soft": u.soft, "hard": u.hard})).collect()
}
