//! `nucleus`: parse the command line, set up logging, call the engine, turn
//! errors into runc-compatible exit codes. No container logic lives here.
#![forbid(unsafe_code)]

mod denials;
mod docker;
mod exec_server;
mod images;
mod logging;
mod mcp;
mod network;
mod oci;
mod resources;
mod rootless;
mod serve;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// The runtime-spec version, spelled out for `concat!` (checked against
/// the engine's constant in a test).
macro_rules! nucleus_engine_spec_version {
    () => {
        "1.2.0"
    };
}

/// `-v`/`--version`: three lines, as runc prints them (version, commit, spec).
const VERSION: &str = concat!(
    "version ",
    env!("CARGO_PKG_VERSION"),
    "\ncommit: ",
    env!("NUCLEUS_COMMIT"),
    "\nspec: ",
    nucleus_engine_spec_version!()
);

/// Exit code of an `exec` that failed in the runtime (not in the
/// workload): runc's, so a shim can tell it from the process exiting 1.
const EXEC_RUNTIME_ERROR: i32 = 255;
/// Exit code of `help` with an unknown topic and of an unknown verb (runc's).
const NO_HELP_TOPIC: i32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// nucleus: a fast, locked-down Linux container runtime (OCI and runc compatible)
#[derive(Debug, Parser)]
#[command(
    name = "nucleus",
    version = VERSION,
    long_version = VERSION,
    disable_version_flag = true,
    about = "nucleus: a fast, locked-down Linux container runtime (OCI and runc compatible)",
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Print the version
    #[arg(short = 'v', long = "version", action = clap::ArgAction::Version)]
    version: Option<bool>,
    /// Directory for container state [default: /run/nucleus; rootless: $XDG_RUNTIME_DIR/nucleus]
    #[arg(long, global = true, env = "NUCLEUS_ROOT")]
    root: Option<PathBuf>,
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
    /// Directory for images (blobs, layers, tags) [default: /var/lib/nucleus; rootless: $XDG_DATA_HOME/nucleus]
    #[arg(long, global = true, env = "NUCLEUS_DATA_ROOT")]
    data_root: Option<PathBuf>,
    /// Run without root: a user namespace, no cgroup unless one is writable
    /// (true, false, or auto: when not run as root)
    #[arg(
        long = "rootless",
        id = "global_rootless",
        value_parser = ["true", "false", "auto"]
    )]
    rootless: Option<String>,
    #[command(subcommand)]
    command: Verb,
}

/// The runc verbs and the docker-like ones, side by side.
// Parsed once per process; the size difference does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Verb {
    /// Show the help of a verb (`help exec`), or of nucleus
    Help { topic: Vec<String> },
    #[command(flatten)]
    Oci(oci::Command),
    #[command(flatten)]
    Docker(docker::Command),
    #[command(flatten)]
    Images(images::Command),
    /// Serve the sandbox API (HTTP/JSON) on a unix socket
    Serve(serve::ServeArgs),
    /// Serve the sandbox tools over MCP on stdin/stdout
    Mcp,
    /// Manage networks (bridges, subnets, leases)
    #[command(subcommand)]
    Network(network::Command),
    /// Serve `exec` requests for one container on a unix socket (used by `serve`)
    #[command(hide = true)]
    ExecServer(exec_server::ExecServerArgs),
}

impl Cli {
    /// The container queried by an `exec` command line, if it is one.
    fn exec_target(&self) -> Option<&str> {
        match &self.command {
            Verb::Oci(c) => c.exec_target(),
            _ => None,
        }
    }
}

fn main() {
    // The store's user-namespace helper (see `nucleus_image::rootless`):
    // first, while this process has one thread.
    if let Some(code) = nucleus_image::rootless::helper_main() {
        std::process::exit(code);
    }
    // The holder of rootless containers' shared user namespace (see
    // `nucleus_sandbox::userns_holder`): never returns once it holds.
    if let Some(code) = nucleus_sandbox::userns_holder::holder_main() {
        std::process::exit(code);
    }
    // `run`, `ps` and `kill` have a runc form and a docker-like form.
    let (args, agent_run) = docker::argv::rewrite(
        std::env::args_os().collect(),
        &docker::argv::Valued::of(&Cli::command()),
        docker::argv::cwd_has_config,
    );
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        // Docker's convention: a bad `run` flag is a runtime error, 125, in one line.
        Err(e) if agent_run && e.use_stderr() => {
            eprintln!("nucleus: {}", first_error_line(&e));
            std::process::exit(docker::RUNTIME_ERROR);
        }
        Err(e) if e.kind() == clap::error::ErrorKind::InvalidSubcommand => {
            let _ = e.print();
            std::process::exit(NO_HELP_TOPIC);
        }
        Err(e) => e.exit(),
    };
    std::process::exit(execute(cli));
}

/// Runs a parsed command line: logging, the verb, and its exit code.
fn execute(cli: Cli) -> i32 {
    let _guard = logging::init(cli.log.as_deref(), cli.log_format, cli.debug);
    rootless::configure_image_store();
    let error_code = match &cli.command {
        Verb::Oci(oci::Command::Exec(_)) => EXEC_RUNTIME_ERROR,
        // Only a bad state root gets here (`run` reports its own errors).
        Verb::Docker(docker::Command::AgentRun(_)) => docker::RUNTIME_ERROR,
        _ => 1,
    };
    let result = roots(&cli).and_then(|(root, data_root)| match cli.command {
        Verb::Help { topic } => help(&topic),
        Verb::Oci(c) => oci::dispatch(&root, c),
        Verb::Docker(c) => {
            let g = docker::Globals {
                root: &root,
                data_root: &data_root,
                log: cli.log.as_deref(),
                debug: cli.debug,
                rootless: rootless::is_rootless(cli.rootless.as_deref()),
            };
            docker::dispatch(&g, c)
        }
        Verb::Images(c) => images::dispatch(&root, &data_root, c),
        Verb::Serve(a) => serve::serve(&root, &data_root, cli.debug, &a),
        Verb::Mcp => mcp::mcp(&root, &data_root, cli.debug),
        Verb::Network(c) => network::dispatch(&data_root, c),
        Verb::ExecServer(a) => exec_server::serve(&root, &a),
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            logging::report(&err, cli.log.is_some());
            error_code
        }
    }
}

/// The state and data roots: as given, else the defaults for this user.
fn roots(cli: &Cli) -> anyhow::Result<(PathBuf, PathBuf)> {
    let root = match &cli.root {
        Some(r) => r.clone(),
        None => rootless::default_state_root()?,
    };
    let data_root = cli
        .data_root
        .clone()
        .unwrap_or_else(rootless::default_data_root);
    Ok((root, data_root))
}

/// `help [VERB [SUBVERB...]]`: the verb's help on stdout, exit 0; an
/// unknown topic is an error (exit 3, runc's wording).
fn help(topic: &[String]) -> anyhow::Result<i32> {
    let mut cmd = Cli::command();
    cmd.build();
    let mut current = &mut cmd;
    for name in topic {
        match current
            .find_subcommand_mut(name)
            .filter(|c| !c.is_hide_set())
        {
            Some(sub) => current = sub,
            None => {
                eprintln!("nucleus: No help topic for '{name}'");
                return Ok(NO_HELP_TOPIC);
            }
        }
    }
    // A closed stdout (`help exec | head -1`) is not an error of `help`.
    let _ = current.print_help();
    Ok(0)
}

/// A clap error as one line, without clap's `error: ` prefix.
pub(crate) fn first_error_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    text.lines()
        .next()
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ")
        .to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn spec_version_matches_the_engine() {
        assert_eq!(
            nucleus_engine_spec_version!(),
            nucleus_engine::spec::OCI_VERSION
        );
    }

    #[test]
    fn version_text_has_three_lines() {
        let lines: Vec<&str> = super::VERSION.lines().collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines[1].starts_with("commit: ") && lines[2].starts_with("spec: "),
            "{lines:?}"
        );
    }
}
