//! The docker-like front end: `nucleus run` with flags (the agent sandbox),
//! and the verbs that manage containers by name. The model lives in
//! `nucleus-sandbox`; this module only parses flags, prints results and
//! picks exit codes.
//!
//! - `argv`: tells the runc forms of `run`, `ps` and `kill` from these.
//! - `run_flags` → `flags_to_spec` → `nucleus_sandbox::run`.
//! - `manage`: ps, logs, stop, kill, rm, attach, stats, inspect, port, printed.

pub mod argv;
mod flags_to_spec;
mod manage;
mod run;
pub mod run_flags;

use anyhow::Result;
use clap::Subcommand;
use nucleus_engine::state::StateRoot;
use std::path::Path;

pub use run::RUNTIME_ERROR;
pub use run_flags::RunFlags;

/// The global flags a docker-like verb needs.
#[derive(Debug, Clone, Copy)]
pub struct Globals<'a> {
    pub root: &'a Path,
    pub data_root: &'a Path,
    pub log: Option<&'a Path>,
    pub debug: bool,
    /// Not root (or `--rootless`): a user namespace for the sandbox.
    pub rootless: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// `run` in its docker-like form (chosen by `argv::rewrite`)
    #[command(name = "__agent-run", hide = true)]
    AgentRun(Box<RunFlags>),
    /// The per-container monitor of `run -d` (arguments: `nucleus_sandbox::monitor::MonitorArgs`)
    #[command(name = "__monitor", hide = true)]
    Monitor {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
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
    /// List a container's published ports, or where one port is published
    Port(manage::PortArgs),
    /// Housekeeping of the state root
    #[command(subcommand)]
    System(manage::SystemCommand),
}

/// Runs one docker-like verb; returns the exit code.
pub fn dispatch(g: &Globals<'_>, command: Command) -> Result<i32> {
    let root = StateRoot::new(g.root);
    match command {
        Command::AgentRun(f) => Ok(run::run(g, &f)),
        Command::Monitor { args } => run::monitor(&root, &args),
        Command::DockerPs(a) => manage::ps(&root, &a),
        Command::DockerKill(a) => manage::kill(&root, &a),
        Command::Logs(a) => manage::logs(&root, &a),
        Command::Stop(a) => manage::stop(&root, &a),
        Command::Rm(a) => manage::rm(&root, &a),
        Command::Attach(a) => manage::attach(&root, &a),
        Command::Stats(a) => manage::stats(&root, &a),
        Command::Inspect(a) => manage::inspect(&root, &a),
        Command::Port(a) => manage::port(&root, &a),
        Command::System(manage::SystemCommand::Prune) => manage::system_prune(&root),
    }
}
