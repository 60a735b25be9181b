//! What changes when the runtime is not root: a cgroup only where this
//! user may write one, and resource limits refused where there is none.

use crate::error::{EngineError, Result};
use nucleus_cgroups::Cgroup;
use oci_spec::runtime::Spec;
use serde_json::Value;
use std::path::Path;

/// Whether every directory of `cg` can be created by this user: its
/// nearest existing ancestor (or itself) is writable.
pub fn cgroup_writable(cg: &Cgroup) -> bool {
    cg.dirs().all(|d| {
        d.path
            .ancestors()
            .find(|a| a.exists())
            .is_some_and(writable)
    })
}

/// Whether a container named `id` with `cgroups_path` would get a cgroup
/// when started by this (unprivileged) user.
pub fn cgroup_available(cgroups_path: Option<&str>, id: &str) -> bool {
    cgroup_unwritable(cgroups_path, id).is_ok_and(|d| d.is_none())
}

/// For the first directory of that cgroup this user could not create, its
/// nearest existing ancestor, which is not writable (`None`: it would get
/// the cgroup); an error when the path cannot be resolved.
pub fn cgroup_unwritable(
    cgroups_path: Option<&str>,
    id: &str,
) -> Result<Option<std::path::PathBuf>, nucleus_cgroups::CgroupError> {
    let cg = nucleus_cgroups::Host::detect().and_then(|h| Cgroup::resolve(&h, cgroups_path, id))?;
    let first = cg.dirs().find_map(|d| {
        let existing = d.path.ancestors().find(|a| a.exists())?;
        (!writable(existing)).then(|| existing.to_path_buf())
    });
    Ok(first)
}

fn writable(p: &Path) -> bool {
    nix::unistd::access(p, nix::unistd::AccessFlags::W_OK).is_ok()
}

/// The first limit `linux.resources` asks for (device rules aside), as a
/// JSON path: `linux.resources.memory.limit`.
pub fn requested_limit(spec: &Spec) -> Option<String> {
    let res = spec.linux().as_ref()?.resources().as_ref()?;
    let v = serde_json::to_value(res).ok()?;
    let obj = v.as_object()?;
    let mut keys: Vec<&String> = obj.keys().filter(|k| *k != "devices").collect();
    keys.sort();
    keys.into_iter()
        .find_map(|k| first_set(&obj[k], &format!("linux.resources.{k}")))
}

/// The path of the first leaf that sets something (`-1`, and 0 pids, mean
/// unlimited).
fn first_set(v: &Value, path: &str) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            keys.into_iter()
                .find_map(|k| first_set(&o[k], &format!("{path}.{k}")))
        }
        Value::Array(a) if a.is_empty() => None,
        Value::Number(n) if n.as_i64() == Some(-1) => None,
        Value::Number(n) if n.as_i64() == Some(0) && path.ends_with("pids.limit") => None,
        Value::String(s) if s.is_empty() => None,
        _ => Some(path.to_string()),
    }
}

/// Without a cgroup, a requested limit cannot be enforced: an error that
/// names it, or a warning with degraded security allowed.
pub(crate) fn refuse_limits_without_cgroup(spec: &Spec) -> Result<()> {
    let Some(limit) = requested_limit(spec) else {
        return Ok(());
    };
    if crate::spec::allows_degraded(spec) {
        tracing::warn!(
            limit,
            "rootless: no writable cgroup, so this limit is not enforced"
        );
        return Ok(());
    }
    Err(EngineError::Rootless {
        reason: format!(
            "`{limit}` needs a cgroup, and this user can write none (no delegated cgroup v2 subtree); remove the limit, or allow degraded security"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(resources: Value) -> Spec {
        serde_json::from_value(serde_json::json!({
            "ociVersion": "1.2.0",
            "linux": {"resources": resources}
        }))
        .unwrap()
    }

    #[test]
    fn names_the_first_limit() {
        assert_eq!(requested_limit(&spec(serde_json::json!({}))), None);
        assert_eq!(
            requested_limit(&spec(serde_json::json!({
                "devices": [{"allow": false, "access": "rwm"}],
                "pids": {"limit": -1}
            }))),
            None
        );
        assert_eq!(
            requested_limit(&spec(serde_json::json!({"memory": {"limit": 1048576}}))).as_deref(),
            Some("linux.resources.memory.limit")
        );
        assert_eq!(
            requested_limit(&spec(serde_json::json!({"pids": {"limit": 64}}))).as_deref(),
            Some("linux.resources.pids.limit")
        );
    }
}
