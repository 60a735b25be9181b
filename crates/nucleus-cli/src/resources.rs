//! The runc resource verbs: ps, pause, resume, update, events.

use anyhow::Result;
use clap::Subcommand;
use nucleus_engine::state::StateRoot;

#[derive(Debug, Subcommand)]
pub enum ResourceCommand {
    /// List the processes in a container
    Ps {
        id: String,
    },
}

/// Runs one resource verb; returns the exit code.
pub fn dispatch(_root: &StateRoot, command: ResourceCommand) -> Result<i32> {
    match command {
        ResourceCommand::Ps { id } => anyhow::bail!("ps `{id}`: not implemented yet"),
    }
}
