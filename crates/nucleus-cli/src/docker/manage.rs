//! The docker-like management verbs: `ps`, `logs`, `stop`, `kill`, `rm`,
//! `attach`, `stats` and `inspect`. Each finds a container by exact id,
//! name or unique id prefix (`StateRoot::resolve`) and calls the engine.

use super::clock;
use super::logs;
use super::monitor::ExitRecord;
use anyhow::{bail, Context, Result};
use clap::Args;
use nucleus_engine::lifecycle;
use nucleus_engine::state::{
    ContainerState, StateRoot, Status, NAME_ANNOTATION, OWNED_BUNDLE_ANNOTATION,
};
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

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
pub struct InspectArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

/// A container as the docker-like verbs see it.
struct View {
    state: ContainerState,
    status: Status,
    exit: Option<ExitRecord>,
}

impl View {
    fn load(root: &StateRoot, query: &str) -> Result<View> {
        let id = root
            .resolve(query)
            .with_context(|| format!("no such container `{query}`"))?;
        let state = root
            .peek(&id)
            .with_context(|| format!("no such container `{query}`"))?;
        let status = root.status_of(&state);
        let exit = bundle_dir(&state).and_then(|b| ExitRecord::read(&b));
        Ok(View {
            state,
            status,
            exit,
        })
    }

    fn name(&self) -> &str {
        self.state
            .annotations
            .get(NAME_ANNOTATION)
            .map(String::as_str)
            .unwrap_or("")
    }

    fn command(&self) -> String {
        self.state
            .spec
            .process()
            .as_ref()
            .and_then(|p| p.args().clone())
            .unwrap_or_default()
            .join(" ")
    }

    /// `running`, `exited`, `created` or `paused`.
    fn state_word(&self) -> &'static str {
        match self.status {
            Status::Stopped => "exited",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Created | Status::Creating => "created",
        }
    }

    fn status_text(&self) -> String {
        let since = |t: &str| {
            clock::parse_rfc3339(t)
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .map(clock::human)
                .unwrap_or_default()
        };
        match (self.status, &self.exit) {
            (Status::Stopped, Some(e)) => {
                let why = if e.timed_out { ", timed out" } else { "" };
                format!(
                    "Exited ({}{why}) {} ago",
                    e.exit_code,
                    since(&e.finished_at)
                )
            }
            (Status::Stopped, None) => "Exited".into(),
            (Status::Running, _) => format!("Up {}", since(&self.state.created)),
            (Status::Paused, _) => format!("Up {} (Paused)", since(&self.state.created)),
            _ => "Created".into(),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "Id": self.state.id,
            "Names": self.name(),
            "Command": self.command(),
            "CreatedAt": self.state.created,
            "State": self.state_word(),
            "Status": self.status_text(),
            "Pid": if self.status == Status::Stopped { 0 } else { self.state.pid },
            "ExitCode": self.exit.as_ref().filter(|_| self.status == Status::Stopped).map(|e| e.exit_code),
        })
    }
}

fn bundle_dir(state: &ContainerState) -> Option<PathBuf> {
    state
        .annotations
        .get(OWNED_BUNDLE_ANNOTATION)
        .map(PathBuf::from)
}

pub fn ps(root: &StateRoot, a: &PsArgs) -> Result<i32> {
    let mut views = Vec::new();
    for id in root.ids()? {
        let Ok(v) = View::load(root, &id) else {
            continue;
        };
        if a.all || v.status != Status::Stopped {
            views.push(v);
        }
    }
    views.sort_by(|x, y| y.state.created.cmp(&x.state.created));
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for v in &views {
            writeln!(out, "{}", v.state.id)?;
        }
        return Ok(0);
    }
    match a.format.as_str() {
        "json" => {
            for v in &views {
                writeln!(out, "{}", v.to_json())?;
            }
        }
        "table" => {
            writeln!(
                out,
                "{:<12}   {:<22}   {:<19}   {:<32}   NAMES",
                "CONTAINER ID", "COMMAND", "CREATED", "STATUS"
            )?;
            for v in &views {
                let mut cmd = v.command();
                if cmd.chars().count() > 20 {
                    cmd = format!("{}…", cmd.chars().take(19).collect::<String>());
                }
                let short: String = v.state.id.chars().take(12).collect();
                writeln!(
                    out,
                    "{short:<12}   {:<22}   {:<19}   {:<32}   {}",
                    format!("\"{cmd}\""),
                    v.state.created.get(..19).unwrap_or(""),
                    v.status_text(),
                    v.name()
                )?;
            }
        }
        other => bail!("--format: invalid value `{other}` (expected table or json)"),
    }
    Ok(0)
}

pub fn logs(root: &StateRoot, a: &LogsArgs) -> Result<i32> {
    let v = View::load(root, &a.container)?;
    let Some(dir) = bundle_dir(&v.state) else {
        bail!(
            "container `{}` has no logs (it was not started by `nucleus run -d`)",
            a.container
        )
    };
    let mut entries = logs::read_all(&dir);
    if let Some(n) = a.tail {
        let skip = entries.len().saturating_sub(n);
        entries.drain(..skip);
    }
    match logs::print(&entries, a.timestamps) {
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            return Ok(0)
        }
        r => r?,
    }
    if a.follow {
        let id = v.state.id.clone();
        let dir2 = dir.clone();
        logs::follow(&dir, a.timestamps, || {
            // Done once it has stopped and the monitor has recorded the exit (its last write).
            root.peek(&id)
                .map(|s| root.status_of(&s) == Status::Stopped)
                .unwrap_or(true)
                && (ExitRecord::read(&dir2).is_some() || !dir2.exists())
        })?;
    }
    Ok(0)
}

/// Polls until the container has stopped (or `limit` passes).
fn wait_stopped(root: &StateRoot, id: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        match root.peek(id) {
            Ok(s) if root.status_of(&s) != Status::Stopped => {}
            _ => return true,
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn stop(root: &StateRoot, a: &StopArgs) -> Result<i32> {
    let mut code = 0;
    for q in &a.containers {
        let r = (|| -> Result<()> {
            let v = View::load(root, q)?;
            let id = &v.state.id;
            if v.status != Status::Stopped {
                lifecycle::kill(root, id, libc::SIGTERM, false)
                    .or_else(ignore_stopped)
                    .with_context(|| format!("stop `{q}`"))?;
                if !wait_stopped(root, id, Duration::from_secs(a.time)) {
                    lifecycle::kill(root, id, libc::SIGKILL, true)
                        .or_else(ignore_stopped)
                        .with_context(|| format!("kill `{q}`"))?;
                    wait_stopped(root, id, Duration::from_secs(10));
                }
            }
            // Let the monitor record the exit before we report it stopped.
            wait_for_exit_record(&v.state);
            Ok(())
        })();
        code = report_each(q, r, code);
    }
    Ok(code)
}

fn ignore_stopped(e: nucleus_engine::EngineError) -> Result<(), nucleus_engine::EngineError> {
    match e {
        nucleus_engine::EngineError::WrongStatus { .. } => Ok(()),
        other => Err(other),
    }
}

/// Prints the name on success (as Docker does) or the error; returns the
/// verb's exit code so far.
fn report_each(q: &str, r: Result<()>, code: i32) -> i32 {
    match r {
        Ok(()) => {
            println!("{q}");
            code
        }
        Err(e) => {
            crate::logging::report(&e, false);
            1
        }
    }
}

pub fn kill(root: &StateRoot, a: &DockerKillArgs) -> Result<i32> {
    let sig = nucleus_engine::signal::parse_signal(&a.signal)
        .map_err(|e| anyhow::anyhow!("--signal: {e}"))?;
    let mut code = 0;
    for q in &a.containers {
        let r = (|| -> Result<()> {
            let id = root
                .resolve(q)
                .with_context(|| format!("no such container `{q}`"))?;
            lifecycle::kill(root, &id, sig, false).with_context(|| format!("kill `{q}`"))?;
            Ok(())
        })();
        code = report_each(q, r, code);
    }
    Ok(code)
}

pub fn rm(root: &StateRoot, a: &RmArgs) -> Result<i32> {
    let mut code = 0;
    for q in &a.containers {
        let r = (|| -> Result<()> {
            let v = View::load(root, q)?;
            let id = &v.state.id;
            if v.status != Status::Stopped {
                if !a.force {
                    bail!(
                        "container `{q}` is {}: stop it first or use `rm -f`",
                        v.status
                    );
                }
                lifecycle::kill(root, id, libc::SIGKILL, true)
                    .or_else(ignore_stopped)
                    .with_context(|| format!("kill `{q}`"))?;
                wait_stopped(root, id, Duration::from_secs(10));
            }
            // The monitor writes into the bundle until it has recorded the exit;
            // deleting before that would race its last writes.
            wait_for_exit_record(&v.state);
            match lifecycle::delete(root, id, true) {
                // A `--rm` monitor got there first.
                Ok(()) | Err(nucleus_engine::EngineError::NotFound { .. }) => Ok(()),
                Err(e) => Err(anyhow::Error::from(e).context(format!("remove `{q}`"))),
            }
        })();
        code = report_each(q, r, code);
    }
    Ok(code)
}

/// Waits (briefly) until a detached container's monitor has recorded its exit.
fn wait_for_exit_record(state: &ContainerState) {
    let Some(dir) = bundle_dir(state).filter(|d| d.join(super::monitor::MONITOR_LOG).exists())
    else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    while ExitRecord::read(&dir).is_none() && dir.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn attach(root: &StateRoot, a: &AttachArgs) -> Result<i32> {
    let id = root
        .resolve(&a.container)
        .with_context(|| format!("no such container `{}`", a.container))?;
    let mut process = lifecycle::container_process(root, &id)
        .with_context(|| format!("attach to `{}`", a.container))?;
    let args = if a.command.is_empty() {
        vec!["/bin/sh".to_string()]
    } else {
        a.command.clone()
    };
    process.set_args(Some(args));
    let tty = nix::unistd::isatty(std::io::stdin()).unwrap_or(false);
    process.set_terminal(Some(tty));
    let opts = lifecycle::ExecOptions {
        process,
        console_socket: None,
        pid_file: None,
        detach: false,
        preserve_fds: 0,
    };
    match lifecycle::exec(root, &id, &opts) {
        Ok(code) => Ok(code),
        Err(e) => {
            let e = anyhow::Error::from(e).context(format!("attach to `{}`", a.container));
            crate::logging::report(&e, false);
            Ok(super::run::exit_code_for(&e))
        }
    }
}

/// One sample of a container's usage.
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
    let targets: Vec<String> = if a.containers.is_empty() {
        root.ids()?
            .into_iter()
            .filter(|id| {
                root.peek(id)
                    .is_ok_and(|s| root.status_of(&s) == Status::Running)
            })
            .collect()
    } else {
        a.containers
            .iter()
            .map(|q| {
                root.resolve(q)
                    .with_context(|| format!("no such container `{q}`"))
            })
            .collect::<Result<_>>()?
    };
    let total = host_memory();
    let mut prev: Vec<Option<Sample>> = targets
        .iter()
        .map(|id| root.peek(id).ok().and_then(|s| sample(&s)))
        .collect();
    loop {
        std::thread::sleep(Duration::from_millis(if a.no_stream { 250 } else { 1000 }));
        let mut out = std::io::stdout().lock();
        if a.format == "table" {
            writeln!(
                out,
                "{:<12}   {:<20}   {:<8}   {:<24}   PIDS",
                "CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT"
            )?;
        }
        for (i, id) in targets.iter().enumerate() {
            let Ok(state) = root.peek(id) else { continue };
            let now = sample(&state);
            let cpu = match (&prev[i], &now) {
                (Some(p), Some(n)) => {
                    let wall = n.at.duration_since(p.at).as_nanos().max(1) as f64;
                    n.cpu_ns.saturating_sub(p.cpu_ns) as f64 / wall * 100.0
                }
                _ => 0.0,
            };
            let (mem, limit, pids) = now
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
            if a.format == "json" {
                writeln!(
                    out,
                    "{}",
                    json!({"Id": id, "Name": name, "CPUPerc": format!("{cpu:.2}%"), "MemUsage": mem, "MemLimit": limit, "Pids": pids})
                )?;
            } else {
                let short: String = id.chars().take(12).collect();
                writeln!(
                    out,
                    "{short:<12}   {name:<20}   {:<8}   {:<24}   {pids}",
                    format!("{cpu:.2}%"),
                    format!("{} / {}", human_bytes(mem), human_bytes(limit))
                )?;
            }
            prev[i] = now;
        }
        out.flush()?;
        if a.no_stream {
            return Ok(0);
        }
    }
}

pub fn inspect(root: &StateRoot, a: &InspectArgs) -> Result<i32> {
    let mut all = Vec::new();
    for q in &a.containers {
        let v = View::load(root, q)?;
        let spec = serde_json::to_value(&v.state.spec)?;
        let process = &spec["process"];
        all.push(json!({
            "Id": v.state.id,
            "Name": v.name(),
            "Created": v.state.created,
            "State": {
                "Status": v.state_word(),
                "Running": v.status == Status::Running,
                "Paused": v.status == Status::Paused,
                "Pid": if v.status == Status::Stopped { 0 } else { v.state.pid },
                "ExitCode": v.exit.as_ref().map(|e| e.exit_code),
                "FinishedAt": v.exit.as_ref().map(|e| e.finished_at.clone()),
                "TimedOut": v.exit.as_ref().is_some_and(|e| e.timed_out),
            },
            "Config": {
                "Hostname": spec["hostname"],
                "Cmd": process["args"],
                "Env": process["env"],
                "WorkingDir": process["cwd"],
                "User": process["user"],
                "Tty": process["terminal"],
            },
            "Mounts": spec["mounts"],
            "Limits": spec["linux"]["resources"],
            "Security": {
                "Capabilities": process["capabilities"],
                "NoNewPrivileges": process["noNewPrivileges"],
                "Seccomp": !spec["linux"]["seccomp"].is_null(),
                "Landlock": v.state.annotations.get(nucleus_engine::security::landlock::ANNOTATION),
            },
            "Bundle": v.state.bundle,
            "Rootfs": v.state.rootfs,
            "Annotations": v.state.annotations,
        }));
    }
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &all)?;
    writeln!(out)?;
    Ok(0)
}
