//! `nucleus serve`: the sandbox API (crate `nucleus-api`) as a verb.

use anyhow::{Context, Result};
use clap::Args;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Unix socket to listen on (mode 0600) [default: <root>/api.sock]
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Also listen on this TCP address (needs --token-file)
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// File holding the bearer token TCP clients must send
    #[arg(long)]
    token_file: Option<PathBuf>,
}

pub fn serve(root: &Path, data_root: &Path, debug: bool, a: &ServeArgs) -> Result<i32> {
    let exe = std::env::current_exe().context("cannot find the nucleus binary")?;
    let cfg = nucleus_api::ServeConfig {
        root: root.to_path_buf(),
        data_root: data_root.to_path_buf(),
        socket: a.socket.clone().unwrap_or_else(|| root.join("api.sock")),
        listen: a.listen,
        token_file: a.token_file.clone(),
        exe,
        debug,
    };
    nucleus_api::serve(cfg)?;
    Ok(0)
}
