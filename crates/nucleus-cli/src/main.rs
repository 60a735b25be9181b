//! `nucleus`: parse the command line, set up logging, call the engine, turn
//! errors into runc-compatible exit codes. No container logic lives here.
#![forbid(unsafe_code)]

mod logging;
mod oci;
mod resources;

use clap::{Parser, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// nucleus: a fast, locked-down Linux container runtime (OCI and runc compatible)
#[derive(Debug, Parser)]
#[command(name = "nucleus", version, about, disable_help_subcommand = true)]
pub struct Cli {
    /// Directory for container state
    #[arg(long, global = true, default_value = "/run/nucleus", env = "NUCLEUS_ROOT")]
    root: PathBuf,
    /// Write diagnostics to this file instead of stderr
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Format of diagnostics
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Verbose diagnostics
    #[arg(long, global = true)]
    debug: bool,
    /// Accepted for runc compatibility; cgroups are managed through cgroupfs
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    /// Accepted for runc compatibility
    #[arg(long = "rootless", id = "global_rootless", hide = true)]
    rootless: Option<String>,
    #[command(subcommand)]
    command: oci::Command,
}

fn main() {
    let cli = Cli::parse();
    let _guard = logging::init(cli.log.as_deref(), cli.log_format, cli.debug);
    let code = match oci::dispatch(&cli.root, cli.command) {
        Ok(code) => code,
        Err(err) => {
            logging::report(&err, cli.log.is_some());
            1
        }
    };
    std::process::exit(code);
}
