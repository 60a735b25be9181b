//! `nucleus run` in its docker-like form: flags → `SandboxSpec`
//! (`flags_to_spec`), then `nucleus_sandbox::run`; and the hidden
//! `__monitor` verb, which serves as the monitor of detached runs.
//!
//! Exit codes as Docker's: 125 when nucleus fails, 126 when the command
//! cannot be executed, 127 when it is not found, else the workload's own
//! (128+N when killed by signal N).

use super::{flags_to_spec, Globals, RunFlags};
use anyhow::Result;
use nucleus_engine::state::StateRoot;
use nucleus_sandbox::monitor::{self, MonitorArgs, MonitorCommand};
use nucleus_sandbox::network::NoNetwork;
use nucleus_sandbox::run::{Extensions, RunOutcome};
use nucleus_sandbox::side_task::NoSideTasks;
use nucleus_sandbox::{LaunchFailure, SandboxError};

/// Docker's exit code for a failure of the runtime itself (bad flags included).
pub const RUNTIME_ERROR: i32 = 125;

/// Docker's exit code for each way a workload fails to run.
pub fn exit_code_for(e: &SandboxError) -> i32 {
    match e.launch_failure() {
        LaunchFailure::NotFound => 127,
        LaunchFailure::NotExecutable => 126,
        LaunchFailure::Runtime => RUNTIME_ERROR,
    }
}

/// Prints a library error: bad values name the flag, others their causes.
pub fn report(e: &SandboxError, has_log_file: bool) {
    match flags_to_spec::as_flag_error(e) {
        Some(f) => crate::logging::report(&anyhow::Error::new(f), has_log_file),
        None => crate::logging::report_sandbox(e, has_log_file),
    }
}

/// Runs the agent sandbox (or `--rootfs`); returns the process exit code.
pub fn run(g: &Globals<'_>, f: &RunFlags) -> i32 {
    let (spec, opts) =
        match flags_to_spec::to_spec(f, &|k| std::env::var(k).ok(), g.rootless || f.rootless) {
            Ok(v) => v,
            Err(e) => {
                crate::logging::report(&anyhow::Error::new(e), g.log.is_some());
                return RUNTIME_ERROR;
            }
        };
    let mut ext = Extensions::with_stores(g.root, g.data_root);
    let result = MonitorCommand::current_exe(g.debug)
        .and_then(|m| nucleus_sandbox::run::run(g.root, &spec, &opts, &mut ext, &m));
    match result {
        Ok(RunOutcome::Detached { id }) => {
            println!("{id}");
            0
        }
        Ok(RunOutcome::Exited {
            code, timed_out, ..
        }) => {
            if timed_out {
                eprintln!(
                    "nucleus: --timeout: container killed after {}s",
                    spec.timeout.unwrap_or_default()
                );
            }
            code
        }
        Err(e) => {
            report(&e, g.log.is_some());
            exit_code_for(&e)
        }
    }
}

/// `__monitor ARGS`: this binary as the monitor of a detached run.
pub fn monitor(root: &StateRoot, args: &[String]) -> Result<i32> {
    let (a, parser) = if args == [monitor::standby::STANDBY_ARG] {
        // Started ahead of need (the API's): what the exec server will
        // parse requests with is built while the arguments are awaited.
        let parser = crate::exec_server::CliExecs::build_parser();
        match monitor::standby::wait_for_work()? {
            Some(a) => {
                crate::logging::redirect(&a.bundle.join(monitor::MONITOR_LOG));
                (a, Some(parser))
            }
            None => return Ok(0),
        }
    } else {
        (MonitorArgs::parse(args)?, None)
    };
    // Asked for by the API: the container's exec server is a fork of this
    // monitor, running the same `exec` as `nucleus exec-server`.
    let execs = match parser {
        Some(p) => crate::exec_server::CliExecs::with_parser(root.path(), &a.id, p),
        None => crate::exec_server::CliExecs::new(root.path(), &a.id),
    };
    let execs = a
        .exec_socket
        .as_ref()
        .map(|_| &execs as &dyn nucleus_engine::lifecycle::ExecHandler);
    Ok(monitor::serve(
        root,
        &a,
        &mut NoNetwork,
        &NoSideTasks,
        execs,
    )?)
}
