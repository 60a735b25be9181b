//! `--network container:NAME`: the new container joins the network
//! namespace of a running one (the OCI namespace `path`), so both see the
//! same interfaces, addresses and loopback.

use crate::error::{Field, Result, SandboxError};
use crate::manage::View;
use nucleus_engine::state::{StateRoot, Status};
use serde_json::{json, Value};

/// Point `spec`'s network namespace at the one of the running container `other`.
pub fn join_container(root: &StateRoot, other: &str, spec: &mut Value) -> Result<()> {
    let flag = format!("container:{other}");
    let view = View::load(root, other)
        .map_err(|e| SandboxError::invalid(Field::Network, &flag, e.to_string()))?;
    if !matches!(view.status, Status::Running | Status::Paused) || view.state.pid <= 0 {
        return Err(SandboxError::invalid(
            Field::Network,
            &flag,
            format!("container `{other}` is not running"),
        ));
    }
    let path = format!("/proc/{}/ns/net", view.state.pid);
    let Some(namespaces) = spec["linux"]["namespaces"].as_array_mut() else {
        return Err(SandboxError::invalid(
            Field::Network,
            &flag,
            "the compiled spec has no namespaces",
        ));
    };
    namespaces.retain(|n| n["type"] != "network");
    namespaces.push(json!({"type": "network", "path": path}));
    Ok(())
}
