//! `McpError`: how `nucleus mcp` itself fails (a tool's failure is a tool
//! error inside the protocol, never this).

#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("cannot set up stdio for the protocol: {0}")]
    Stdio(std::io::Error),
    #[error("cannot start the server runtime: {0}")]
    Runtime(std::io::Error),
    #[error("MCP session: {0}")]
    Protocol(String),
}
