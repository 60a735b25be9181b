//! The runc resource verbs: ps, pause, resume, update, events. Flags,
//! output and exit codes as runc's; the work is done by the engine.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use nucleus_engine::lifecycle::resources as engine;
use nucleus_engine::oci_spec::runtime::LinuxResources;
use nucleus_engine::state::StateRoot;
use serde_json::{json, Map, Value};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum ResourceCommand {
    /// List the processes in a container
    Ps(PsArgs),
    /// Suspend every process in a container
    Pause { id: String },
    /// Resume every process in a paused container
    Resume { id: String },
    /// Update a container's resource limits
    Update(Box<UpdateArgs>),
    /// Print resource statistics and OOM notifications of a container
    Events(EventsArgs),
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Output format: table or json
    #[arg(short, long, default_value = "table")]
    format: String,
    id: String,
    /// Arguments for the host's `ps` (default `-ef`), after `--`
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    ps_args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Print statistics once and exit
    #[arg(long)]
    stats: bool,
    /// Time between statistics events (e.g. 5s, 500ms, 1m)
    #[arg(long, default_value = "5s")]
    interval: String,
    /// Print the connections and DNS queries the egress policy refused instead
    #[arg(long, conflicts_with = "stats")]
    denials: bool,
    /// With --denials: keep printing new denials until the container stops
    #[arg(short, long, requires = "denials")]
    follow: bool,
    /// With --denials: json (one object a line) or table
    #[arg(long, default_value = "json", requires = "denials")]
    format: String,
    id: String,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// JSON file with the new `linux.resources` (`-` for stdin); other flags are then ignored
    #[arg(short, long)]
    resources: Option<PathBuf>,
    /// Block IO weight (10-1000)
    #[arg(long)]
    blkio_weight: Option<u16>,
    /// CPU CFS period (microseconds)
    #[arg(long)]
    cpu_period: Option<u64>,
    /// CPU CFS quota (microseconds per period; -1 for none)
    #[arg(long, allow_hyphen_values = true)]
    cpu_quota: Option<i64>,
    /// CPU CFS burst (microseconds)
    #[arg(long)]
    cpu_burst: Option<u64>,
    /// CPU realtime period (microseconds)
    #[arg(long)]
    cpu_rt_period: Option<u64>,
    /// CPU realtime runtime (microseconds)
    #[arg(long, allow_hyphen_values = true)]
    cpu_rt_runtime: Option<i64>,
    /// CPU shares (relative weight)
    #[arg(long = "cpu-share", alias = "cpu-shares")]
    cpu_share: Option<u64>,
    /// SCHED_IDLE for the cgroup (0 or 1)
    #[arg(long)]
    cpu_idle: Option<i64>,
    /// CPUs to use (e.g. 0-3,7)
    #[arg(long)]
    cpuset_cpus: Option<String>,
    /// Memory nodes to use (e.g. 0-1)
    #[arg(long)]
    cpuset_mems: Option<String>,
    /// Memory limit (bytes, or with a k/m/g suffix; -1 for none)
    #[arg(long, allow_hyphen_values = true)]
    memory: Option<String>,
    /// Memory soft limit (bytes, or with a k/m/g suffix)
    #[arg(long, allow_hyphen_values = true)]
    memory_reservation: Option<String>,
    /// Memory plus swap limit (bytes, or with a k/m/g suffix; -1 for none)
    #[arg(long, allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Deprecated kernel memory limit: accepted and ignored
    #[arg(long, allow_hyphen_values = true)]
    kernel_memory: Option<String>,
    /// Kernel TCP buffer memory limit (bytes, or with a k/m/g suffix)
    #[arg(long, allow_hyphen_values = true)]
    kernel_memory_tcp: Option<String>,
    /// Maximum number of processes (-1 or 0 for none)
    #[arg(long, allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    id: String,
}

/// Runs one resource verb; returns the exit code.
pub fn dispatch(root: &StateRoot, command: ResourceCommand) -> Result<i32> {
    match command {
        ResourceCommand::Ps(a) => ps(root, &a),
        ResourceCommand::Pause { id } => {
            engine::pause(root, &id).with_context(|| format!("pause `{id}`"))?;
            Ok(0)
        }
        ResourceCommand::Resume { id } => {
            engine::resume(root, &id).with_context(|| format!("resume `{id}`"))?;
            Ok(0)
        }
        ResourceCommand::Update(a) => {
            let delta = update_delta(&a)?;
            engine::update(root, &a.id, &delta).with_context(|| format!("update `{}`", a.id))?;
            Ok(0)
        }
        ResourceCommand::Events(a) => events(root, &a),
    }
}

fn ps(root: &StateRoot, a: &PsArgs) -> Result<i32> {
    let pids = engine::pids(root, &a.id).with_context(|| format!("ps `{}`", a.id))?;
    let mut out = std::io::stdout().lock();
    match a.format.as_str() {
        "json" => {
            if !a.ps_args.is_empty() {
                bail!(
                    "ps `{}`: ps arguments `{}` cannot be used with --format json",
                    a.id,
                    a.ps_args.join(" ")
                );
            }
            serde_json::to_writer(&mut out, &pids)?;
            writeln!(out)?;
        }
        "table" => {
            let table =
                engine::ps_table(&pids, &a.ps_args).with_context(|| format!("ps `{}`", a.id))?;
            out.write_all(table.as_bytes())?;
        }
        other => bail!("--format: invalid value `{other}` (expected table or json)"),
    }
    Ok(0)
}

fn events(root: &StateRoot, a: &EventsArgs) -> Result<i32> {
    if a.denials {
        return crate::denials::print(root, &a.id, a.follow, &a.format);
    }
    let mut out = std::io::stdout().lock();
    if a.stats {
        let stats = engine::stats(root, &a.id).with_context(|| format!("events `{}`", a.id))?;
        let e = engine::Event {
            kind: "stats",
            id: a.id.clone(),
            data: Some(stats),
        };
        serde_json::to_writer(&mut out, &e)?;
        writeln!(out)?;
        return Ok(0);
    }
    let interval = parse_duration(&a.interval)
        .with_context(|| format!("--interval: invalid value `{}`", a.interval))?;
    if interval.is_zero() {
        bail!(
            "--interval: invalid value `{}`: must be greater than 0",
            a.interval
        );
    }
    let mut sink = |e: &engine::Event| -> std::io::Result<()> {
        serde_json::to_writer(&mut out, e)?;
        writeln!(out)?;
        out.flush()
    };
    engine::events(root, &a.id, interval, &mut sink)
        .with_context(|| format!("events `{}`", a.id))?;
    Ok(0)
}

/// The resources `update` asks for: the `-r` file as is, else the flags.
fn update_delta(a: &UpdateArgs) -> Result<LinuxResources> {
    if let Some(path) = &a.resources {
        if update_flags_given(a) {
            tracing::warn!("--resources is given: the other update flags are ignored");
        }
        let text = if path.as_os_str() == "-" {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("--resources: read stdin")?;
            s
        } else {
            std::fs::read_to_string(path)
                .with_context(|| format!("--resources: read `{}`", path.display()))?
        };
        return serde_json::from_str(&text).with_context(|| {
            format!(
                "--resources: `{}` is not valid linux.resources JSON",
                path.display()
            )
        });
    }
    let mut memory = Map::new();
    for (flag, key, value) in [
        ("--memory", "limit", &a.memory),
        ("--memory-reservation", "reservation", &a.memory_reservation),
        ("--memory-swap", "swap", &a.memory_swap),
        ("--kernel-memory", "kernel", &a.kernel_memory),
        ("--kernel-memory-tcp", "kernelTCP", &a.kernel_memory_tcp),
    ] {
        if let Some(v) = value {
            let bytes = parse_bytes(v).with_context(|| format!("{flag}: invalid value `{v}`"))?;
            memory.insert(key.into(), json!(bytes));
        }
    }
    if a.kernel_memory.is_some() {
        tracing::warn!("--kernel-memory is deprecated and ignored: the kernel no longer supports kernel memory limits");
    }
    let mut cpu = Map::new();
    let nums: [(&str, Option<Value>); 7] = [
        ("shares", a.cpu_share.map(Value::from)),
        ("quota", a.cpu_quota.map(Value::from)),
        ("period", a.cpu_period.map(Value::from)),
        ("burst", a.cpu_burst.map(Value::from)),
        ("realtimeRuntime", a.cpu_rt_runtime.map(Value::from)),
        ("realtimePeriod", a.cpu_rt_period.map(Value::from)),
        ("idle", a.cpu_idle.map(Value::from)),
    ];
    for (key, v) in nums {
        if let Some(v) = v {
            cpu.insert(key.into(), v);
        }
    }
    for (key, v) in [("cpus", &a.cpuset_cpus), ("mems", &a.cpuset_mems)] {
        if let Some(v) = v {
            cpu.insert(key.into(), json!(v));
        }
    }
    let mut res = Map::new();
    if !memory.is_empty() {
        res.insert("memory".into(), Value::Object(memory));
    }
    if !cpu.is_empty() {
        res.insert("cpu".into(), Value::Object(cpu));
    }
    if let Some(l) = a.pids_limit {
        res.insert("pids".into(), json!({ "limit": l }));
    }
    if let Some(w) = a.blkio_weight {
        res.insert("blockIO".into(), json!({ "weight": w }));
    }
    let text = Value::Object(res).to_string();
    serde_json::from_str(&text)
        .with_context(|| format!("update flags give invalid resources `{text}`"))
}

/// True if any resource flag besides `--resources` is set.
fn update_flags_given(a: &UpdateArgs) -> bool {
    let strings = [
        &a.cpuset_cpus,
        &a.cpuset_mems,
        &a.memory,
        &a.memory_reservation,
        &a.memory_swap,
        &a.kernel_memory,
        &a.kernel_memory_tcp,
    ];
    let signed = [a.cpu_quota, a.cpu_rt_runtime, a.cpu_idle, a.pids_limit];
    let unsigned = [a.cpu_period, a.cpu_burst, a.cpu_rt_period, a.cpu_share];
    a.blkio_weight.is_some()
        || strings.iter().any(|s| s.is_some())
        || signed.iter().any(Option::is_some)
        || unsigned.iter().any(Option::is_some)
}

/// A byte count as runc's memory flags take it: `-1` (unlimited), or a
/// number with an optional binary suffix (`b`, `k`, `m`, `g`, `t`, `p`,
/// optionally followed by `b` or `ib`; case-insensitive), e.g. `64m`.
fn parse_bytes(s: &str) -> Result<i64> {
    let s = s.trim();
    if s == "-1" {
        return Ok(-1);
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().map_err(|_| {
        anyhow::anyhow!("expected a number of bytes, optionally with a k/m/g/t/p suffix")
    })?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b').filter(|u| !u.is_empty()))
        .unwrap_or(&unit);
    let shift = match unit {
        "" | "b" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        other => bail!("unknown unit `{other}` (expected b, k, m, g, t or p)"),
    };
    let bytes = num * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes >= 9.2e18 {
        bail!("too large");
    }
    #[allow(clippy::cast_possible_truncation)]
    Ok(bytes as i64)
}

/// A duration in Go's syntax, as runc's `--interval` takes it: one or more
/// `<number><unit>` with units ns, us (µs), ms, s, m, h; e.g. `1m30s`.
fn parse_duration(s: &str) -> Result<Duration> {
    let mut rest = s.trim();
    if rest.is_empty() {
        bail!("empty duration");
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..n]
            .parse()
            .map_err(|_| anyhow::anyhow!("expected a number before the unit"))?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => bail!("missing unit (ns, us, ms, s, m or h)"),
            other => bail!("unknown unit `{other}`"),
        };
        rest = &rest[u..];
        total += value * secs;
    }
    Duration::try_from_secs_f64(total).map_err(|e| anyhow::anyhow!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_with_suffixes() {
        assert_eq!(parse_bytes("64m").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("64M").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_bytes("2KiB").unwrap(), 2048);
        assert_eq!(parse_bytes("10kb").unwrap(), 10240);
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert_eq!(parse_bytes("4096b").unwrap(), 4096);
        assert_eq!(parse_bytes("1t").unwrap(), 1 << 40);
        assert_eq!(parse_bytes("-1").unwrap(), -1);
        for bad in ["", "m", "12x", "-5", "1e3", "9999999p"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        for bad in ["", "5", "s", "5x", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
