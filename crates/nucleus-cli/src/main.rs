//! `nucleus`: parse the command line, set up logging, call the engine, turn
//! errors into runc-compatible exit codes. No container logic lives here.
#![forbid(unsafe_code)]

mod docker;
mod logging;
mod oci;
mod resources;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// nucleus: a fast, locked-down Linux container runtime (OCI and runc compatible)
#[derive(Debug, Parser)]
#[command(
    name = "nucleus",
    version,
    about = "nucleus: a fast, locked-down Linux container runtime (OCI and runc compatible)",
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Directory for container state
    #[arg(
        long,
        global = true,
        default_value = "/run/nucleus",
        env = "NUCLEUS_ROOT"
    )]
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
    command: Verb,
}

/// The runc verbs and the docker-like ones, side by side.
// Parsed once per process; the size difference does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Verb {
    #[command(flatten)]
    Oci(oci::Command),
    #[command(flatten)]
    Docker(docker::Command),
}

fn main() {
    // `run`, `ps` and `kill` have a runc form and a docker-like form.
    let (args, agent_run) =
        docker::argv::rewrite(std::env::args_os().collect(), docker::argv::cwd_has_config);
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        // Docker's convention: a bad `run` flag is a runtime error, 125, in one line.
        Err(e) if agent_run && e.use_stderr() => {
            let text = e.render().to_string();
            eprintln!(
                "nucleus: {}",
                text.lines()
                    .next()
                    .unwrap_or("invalid arguments")
                    .trim_start_matches("error: ")
            );
            std::process::exit(docker::spec_builder::RUNTIME_ERROR_CODE);
        }
        Err(e) => e.exit(),
    };
    let _guard = logging::init(cli.log.as_deref(), cli.log_format, cli.debug);
    let result = match cli.command {
        Verb::Oci(c) => oci::dispatch(&cli.root, c),
        Verb::Docker(c) => {
            let g = docker::Globals {
                root: &cli.root,
                log: cli.log.as_deref(),
                debug: cli.debug,
            };
            docker::dispatch(&g, c)
        }
    };
    let code = match result {
        Ok(code) => code,
        Err(err) => {
            logging::report(&err, cli.log.is_some());
            1
        }
    };
    std::process::exit(code);
}
