//! nucleus-mcp: `nucleus mcp`, an MCP server on stdio whose tools create
//! sandboxes, run commands in them, move files in and out, and destroy
//! them. It is a third front end of the same [`nucleus_api::Service`] the
//! HTTP API serves (no second implementation of any verb), built on the
//! official Rust MCP SDK (`rmcp`).
//!
//! Stdout is the protocol: before serving, the protocol's stream is moved
//! to a private descriptor and fd 1 points at `/dev/null`, so nothing a
//! child or a library prints can corrupt it (`stdio`).
#![forbid(unsafe_code)]

mod error;
mod stdio;
mod tools;

pub use error::McpError;

use rmcp::ServiceExt as _;
use std::path::PathBuf;

/// What `nucleus mcp` was asked for.
#[derive(Debug, Clone)]
pub struct McpConfig {
    /// The engine's state root (`--root`).
    pub root: PathBuf,
    /// Images and networks (`--data-root`).
    pub data_root: PathBuf,
    /// The `nucleus` binary: monitors and `exec` run it.
    pub exe: PathBuf,
    /// Pass `--debug` to the processes it starts.
    pub debug: bool,
}

/// Serves MCP on stdin/stdout until the client closes stdin.
pub fn serve(cfg: McpConfig) -> Result<(), McpError> {
    let (input, output) = stdio::protocol_streams()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(McpError::Runtime)?;
    runtime.spawn(nucleus_api::reap_monitors());
    runtime.block_on(async move {
        let service = nucleus_api::Service::new(cfg.root, cfg.data_root, cfg.exe, cfg.debug);
        let server = tools::Tools::new(service)
            .serve((input, output))
            .await
            .map_err(|e| McpError::Protocol(e.to_string()))?;
        server
            .waiting()
            .await
            .map_err(|e| McpError::Protocol(e.to_string()))?;
        Ok(())
    })
}
