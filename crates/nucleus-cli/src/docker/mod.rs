//! The docker-like front end: `nucleus run` with flags (the agent sandbox),
//! and the verbs that manage containers by name. Like every front end it
//! only translates into an OCI spec and calls the engine's lifecycle; it
//! holds no container logic of its own.
//!
//! - `argv`: tells the runc forms of `run`, `ps` and `kill` from these.
//! - `run_flags` → `spec_builder` (+ `agent_root`) → `bundle` → engine.
//! - `monitor`, `logs`: detached containers.
//! - `manage`: ps, logs, stop, kill, rm, attach, stats, inspect.

pub mod agent_root;
pub mod argv;
mod bundle;
mod clock;
mod logs;
mod manage;
mod monitor;
mod names;
mod run;
pub mod run_flags;
pub mod spec_builder;

use anyhow::Result;
use clap::Subcommand;
use nucleus_engine::state::StateRoot;
use std::path::Path;

pub use run_flags::RunFlags;

/// The global flags a docker-like verb needs.
#[derive(Debug, Clone, Copy)]
pub struct Globals<'a> {
    pub root: &'a Path,
    pub log: Option<&'a Path>,
    pub debug: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// `run` in its docker-like form (chosen by `argv::rewrite`)
    #[command(name = "__agent-run", hide = true)]
    AgentRun(Box<RunFlags>),
    /// The per-container monitor of `run -d`
    #[command(name = "__monitor", hide = true)]
    Monitor(monitor::MonitorArgs),
    /// `ps` without a container id: list containers
    #[command(name = "__docker-ps", hide = true)]
    DockerPs(manage::PsArgs),
    /// `kill -s SIG NAME...`
    #[command(name = "__docker-kill", hide = true)]
    DockerKill(manage::DockerKillArgs),
    /// Print a container's output
    Logs(manage::LogsArgs),
    /// Stop containers: SIGTERM, then SIGKILL after a grace period
    Stop(manage::StopArgs),
    /// Remove containers
    Rm(manage::RmArgs),
    /// Run a command (default /bin/sh) inside a running container
    Attach(manage::AttachArgs),
    /// Show CPU, memory and pids usage
    Stats(manage::StatsArgs),
    /// Show a container's configuration and state as JSON
    Inspect(manage::InspectArgs),
}

/// Runs one docker-like verb; returns the exit code.
pub fn dispatch(g: &Globals<'_>, command: Command) -> Result<i32> {
    let root = StateRoot::new(g.root);
    match command {
        Command::AgentRun(f) => Ok(run::run(g, &f)),
        Command::Monitor(a) => monitor::run(&root, &a),
        Command::DockerPs(a) => manage::ps(&root, &a),
        Command::DockerKill(a) => manage::kill(&root, &a),
        Command::Logs(a) => manage::logs(&root, &a),
        Command::Stop(a) => manage::stop(&root, &a),
        Command::Rm(a) => manage::rm(&root, &a),
        Command::Attach(a) => manage::attach(&root, &a),
        Command::Stats(a) => manage::stats(&root, &a),
        Command::Inspect(a) => manage::inspect(&root, &a),
    }
}
