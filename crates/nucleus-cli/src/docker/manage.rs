//! The docker-like management verbs as the CLI shows them: clap arguments,
//! tables and `--format json`, one line per container acted on. The verbs
//! themselves are `nucleus_sandbox::manage`.

use super::run::{exit_code_for, report};
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use nucleus_engine::state::StateRoot;
use nucleus_sandbox::logs::Entry;
use nucleus_sandbox::manage::{self, StatsSampler};
use nucleus_sandbox::SandboxError;
use serde_json::json;
use std::io::Write;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers (default: running ones)
    #[arg(short, long)]
    all: bool,
    /// Print only ids
    #[arg(short, long)]
    quiet: bool,
    /// Output format: table or json (one object per line)
    #[arg(short = 'f', long, default_value = "table")]
    format: String,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new output until the container stops
    #[arg(short, long)]
    follow: bool,
    /// Print only the last N lines
    #[arg(short = 'n', long = "tail")]
    tail: Option<usize>,
    /// Prefix each line with its time
    #[arg(short, long)]
    timestamps: bool,
    container: String,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait after SIGTERM before SIGKILL
    #[arg(short = 't', long = "time", default_value_t = 10)]
    time: u64,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DockerKillArgs {
    /// Signal to send (name or number)
    #[arg(short, long, default_value = "KILL")]
    signal: String,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill a running container first
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    container: String,
    /// Command to run inside (default /bin/sh), after `--`
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print one sample and exit
    #[arg(long)]
    no_stream: bool,
    /// Output format: table or json (one object per line)
    #[arg(long, default_value = "table")]
    format: String,
    /// Containers (default: every running one)
    containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PortArgs {
    container: String,
    /// One port: `80` or `80/udp` (tcp when no protocol is given)
    private_port: Option<String>,
    /// Output format: table or json (one object per line)
    #[arg(long, default_value = "table")]
    format: String,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn ps(root: &StateRoot, a: &PsArgs) -> Result<i32> {
    if !a.quiet && a.format != "json" && a.format != "table" {
        bail!(
            "--format: invalid value `{}` (expected table or json)",
            a.format
        );
    }
    let list = manage::ps(root, a.all)?;
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for c in &list {
            writeln!(out, "{}", c.id)?;
        }
        return Ok(0);
    }
    if a.format == "json" {
        for c in &list {
            // Through a Value: keys in the same (sorted) order as ever.
            writeln!(out, "{}", serde_json::to_value(c)?)?;
        }
        return Ok(0);
    }
    writeln!(
        out,
        "{:<12}   {:<22}   {:<19}   {:<32}   NAMES",
        "CONTAINER ID", "COMMAND", "CREATED", "STATUS"
    )?;
    for c in &list {
        let mut cmd = c.command.clone();
        if cmd.chars().count() > 20 {
            cmd = format!("{}…", cmd.chars().take(19).collect::<String>());
        }
        let short: String = c.id.chars().take(12).collect();
        writeln!(
            out,
            "{short:<12}   {:<22}   {:<19}   {:<32}   {}",
            format!("\"{cmd}\""),
            c.created_at.get(..19).unwrap_or(""),
            c.status,
            c.names
        )?;
    }
    Ok(0)
}

/// Prints entries: stdout ones to stdout, stderr ones to stderr.
fn print_entries(entries: &[Entry], timestamps: bool) -> std::io::Result<()> {
    let mut so = std::io::stdout().lock();
    let mut se = std::io::stderr().lock();
    for e in entries {
        let w: &mut dyn Write = if e.stream == "stderr" {
            &mut se
        } else {
            &mut so
        };
        if timestamps {
            write!(w, "{} ", e.time)?;
        }
        w.write_all(e.log.as_bytes())?;
    }
    so.flush()
}

pub fn logs(root: &StateRoot, a: &LogsArgs) -> Result<i32> {
    let mut logs = manage::logs(root, &a.container)?;
    if let Some(n) = a.tail {
        let skip = logs.entries.len().saturating_sub(n);
        logs.entries.drain(..skip);
    }
    let broken = |e: &std::io::Error| e.kind() == std::io::ErrorKind::BrokenPipe;
    match print_entries(&logs.entries, a.timestamps) {
        Err(e) if broken(&e) => return Ok(0),
        r => r?,
    }
    if a.follow {
        logs.follow(root, |e| {
            print_entries(std::slice::from_ref(e), a.timestamps)
        })?;
    }
    Ok(0)
}

/// Prints the name on success (as Docker does) or the error; returns the
/// verb's exit code so far.
fn report_each(q: &str, r: Result<(), SandboxError>, code: i32) -> i32 {
    match r {
        Ok(()) => {
            println!("{q}");
            code
        }
        Err(e) => {
            report(&e, false);
            1
        }
    }
}

pub fn stop(root: &StateRoot, a: &StopArgs) -> Result<i32> {
    Ok(a.containers.iter().fold(0, |code, q| {
        report_each(q, manage::stop(root, q, Duration::from_secs(a.time)), code)
    }))
}

pub fn kill(root: &StateRoot, a: &DockerKillArgs) -> Result<i32> {
    let sig = nucleus_engine::signal::parse_signal(&a.signal)
        .map_err(|e| anyhow::anyhow!("--signal: {e}"))?;
    Ok(a.containers.iter().fold(0, |code, q| {
        report_each(q, manage::kill(root, q, sig), code)
    }))
}

pub fn rm(root: &StateRoot, a: &RmArgs) -> Result<i32> {
    Ok(a.containers.iter().fold(0, |code, q| {
        report_each(q, manage::rm(root, q, a.force), code)
    }))
}

/// `system` verbs.
#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Remove stopped containers, and the user namespace rootless containers
    /// share once none is left; prints what went
    Prune,
}

/// `system prune`: the removed containers' ids, one a line, then the
/// holder's line if it was stopped.
pub fn system_prune(root: &StateRoot) -> Result<i32> {
    let report = manage::prune(root)?;
    for id in &report.containers {
        println!("{id}");
    }
    if let Some(pid) = report.userns_holder {
        println!("stopped the shared user namespace (pid {pid})");
    }
    Ok(0)
}

pub fn attach(root: &StateRoot, a: &AttachArgs) -> Result<i32> {
    let tty = nix::unistd::isatty(std::io::stdin()).unwrap_or(false);
    match manage::attach(root, &a.container, &a.command, tty) {
        Ok(code) => Ok(code),
        // The process could not be started: Docker's exit codes.
        Err(e @ SandboxError::Container { .. }) if is_exec_failure(&e) => {
            report(&e, false);
            Ok(exit_code_for(&e))
        }
        Err(e) => Err(e.into()),
    }
}

fn is_exec_failure(e: &SandboxError) -> bool {
    matches!(e, SandboxError::Container { source, .. } if matches!(**source, SandboxError::Engine { op: "exec", .. }))
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.2}{}", UNITS[u])
}

pub fn stats(root: &StateRoot, a: &StatsArgs) -> Result<i32> {
    if a.format != "table" && a.format != "json" {
        bail!(
            "--format: invalid value `{}` (expected table or json)",
            a.format
        );
    }
    let mut sampler = StatsSampler::new(root, &a.containers)?;
    loop {
        std::thread::sleep(Duration::from_millis(if a.no_stream { 250 } else { 1000 }));
        let samples = sampler.sample();
        let mut out = std::io::stdout().lock();
        if a.format == "table" {
            writeln!(
                out,
                "{:<12}   {:<20}   {:<8}   {:<24}   PIDS",
                "CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT"
            )?;
        }
        for s in &samples {
            let cpu = format!("{:.2}%", s.cpu_percent);
            if a.format == "json" {
                writeln!(
                    out,
                    "{}",
                    json!({"Id": s.id, "Name": s.name, "CPUPerc": cpu, "MemUsage": s.mem_usage, "MemLimit": s.mem_limit, "Pids": s.pids, "Cgroup": s.has_cgroup})
                )?;
            } else if !s.has_cgroup {
                let short: String = s.id.chars().take(12).collect();
                writeln!(
                    out,
                    "{short:<12}   {:<20}   no cgroup (rootless without a delegated cgroup): usage not measured",
                    s.name
                )?;
            } else {
                let short: String = s.id.chars().take(12).collect();
                writeln!(
                    out,
                    "{short:<12}   {:<20}   {cpu:<8}   {:<24}   {}",
                    s.name,
                    format!(
                        "{} / {}",
                        human_bytes(s.mem_usage),
                        human_bytes(s.mem_limit)
                    ),
                    s.pids
                )?;
            }
        }
        out.flush()?;
        if a.no_stream {
            return Ok(0);
        }
    }
}

/// Docker's lines: `80/tcp -> 0.0.0.0:8080`, or only `0.0.0.0:8080` when
/// one port was asked for.
pub fn port(root: &StateRoot, a: &PortArgs) -> Result<i32> {
    if a.format != "json" && a.format != "table" {
        bail!(
            "--format: invalid value `{}` (expected table or json)",
            a.format
        );
    }
    let ports = manage::ports(root, &a.container, a.private_port.as_deref())?;
    let mut out = std::io::stdout().lock();
    for p in &ports {
        if a.format == "json" {
            writeln!(out, "{}", serde_json::to_string(p)?)?;
        } else if a.private_port.is_some() {
            writeln!(out, "{}", p.public())?;
        } else {
            writeln!(out, "{} -> {}", p.private(), p.public())?;
        }
    }
    Ok(0)
}

pub fn inspect(root: &StateRoot, a: &InspectArgs) -> Result<i32> {
    let all = a
        .containers
        .iter()
        .map(|q| manage::inspect(root, q))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &all)?;
    writeln!(out)?;
    Ok(0)
}
