//! The protocol's streams. MCP over stdio owns stdout, so the server keeps
//! a private duplicate of it and points fd 1 at `/dev/null`: sandboxes,
//! `nucleus exec` children and any stray print then cannot write into
//! the JSON-RPC stream.

use crate::error::McpError;
use std::os::fd::AsFd;

/// Stdin, and the writer that is what stdout was.
pub fn protocol_streams() -> Result<(tokio::io::Stdin, tokio::fs::File), McpError> {
    let stdout = std::io::stdout();
    let protocol = rustix::io::fcntl_dupfd_cloexec(stdout.as_fd(), 3)
        .map_err(|e| McpError::Stdio(e.into()))?;
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .map_err(McpError::Stdio)?;
    rustix::stdio::dup2_stdout(&null).map_err(|e| McpError::Stdio(e.into()))?;
    let out = tokio::fs::File::from_std(std::fs::File::from(protocol));
    Ok((tokio::io::stdin(), out))
}
