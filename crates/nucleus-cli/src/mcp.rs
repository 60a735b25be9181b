//! `nucleus mcp`: the sandbox tools (crate `nucleus-mcp`) over MCP on stdio.

use anyhow::{Context, Result};
use std::path::Path;

pub fn mcp(root: &Path, data_root: &Path, debug: bool) -> Result<i32> {
    let exe = std::env::current_exe().context("cannot find the nucleus binary")?;
    nucleus_mcp::serve(nucleus_mcp::McpConfig {
        root: root.to_path_buf(),
        data_root: data_root.to_path_buf(),
        exe,
        debug,
    })?;
    Ok(0)
}
