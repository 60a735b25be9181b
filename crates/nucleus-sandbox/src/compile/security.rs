//! Capabilities, the Landlock ruleset and the annotations that carry
//! security choices to the engine. Seccomp is chosen in `compile` (the
//! given profile or the agent default).

use super::Inputs;
use crate::error::{Field, Result, SandboxError};
use crate::parse::cap_names;
use crate::spec::SandboxSpec;
use nucleus_engine::security::landlock::{self as ll, FsAccess, FsRule};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Annotation that turns unenforceable protections into warnings.
pub const DEGRADED_ANNOTATION: &str = "org.nucleus.allow-degraded-security";

/// The name, the degraded-security switch and the Landlock policy.
pub(super) fn annotations(
    s: &SandboxSpec,
    landlock: Option<String>,
) -> serde_json::Map<String, Value> {
    let mut a = serde_json::Map::new();
    if let Some(name) = &s.name {
        a.insert(nucleus_engine::state::NAME_ANNOTATION.into(), json!(name));
    }
    if s.security.allow_degraded_security {
        a.insert(DEGRADED_ANNOTATION.into(), json!("true"));
    }
    if let Some(text) = landlock {
        a.insert(ll::ANNOTATION.into(), json!(text));
    }
    a
}

/// All sets empty, unless a caps policy sets them; then `cap_add` adds to
/// bounding/effective/permitted and `cap_drop` removes from every set.
pub(super) fn capabilities(s: &SandboxSpec, inp: &Inputs<'_>) -> Result<Value> {
    const SETS: [&str; 5] = [
        "bounding",
        "effective",
        "permitted",
        "inheritable",
        "ambient",
    ];
    let mut sets: Vec<BTreeSet<String>> = SETS
        .iter()
        .map(|set| {
            inp.policies
                .caps
                .as_ref()
                .and_then(|c| c[*set].as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect();
    for c in &s.security.cap_add {
        for name in cap_names(Field::CapAdd, c)? {
            for set in sets.iter_mut().take(3) {
                set.insert(name.clone());
            }
        }
    }
    for c in &s.security.cap_drop {
        for name in cap_names(Field::CapDrop, c)? {
            for set in sets.iter_mut() {
                set.remove(&name);
            }
        }
    }
    let mut out = serde_json::Map::new();
    for (name, set) in SETS.iter().zip(sets) {
        out.insert(name.to_string(), json!(set.into_iter().collect::<Vec<_>>()));
    }
    Ok(Value::Object(out))
}

/// The Landlock policy TOML: the given policy as it is, or in agent mode
/// the default ruleset (writable volumes, tmpfs and the copied context
/// read-write; read-only volumes, a bound context and secrets outside /run
/// readable). A given root has no default.
pub(super) fn landlock_text(
    s: &SandboxSpec,
    inp: &Inputs<'_>,
    agent: bool,
    writable: &[PathBuf],
    readable: &[PathBuf],
) -> Result<Option<String>> {
    if let Some(text) = &inp.policies.landlock {
        return Ok(Some(text.clone()));
    }
    if !agent {
        return Ok(None);
    }
    let mut policy = ll::default_agent_policy(writable);
    let read_exec: BTreeSet<FsAccess> =
        [FsAccess::ReadFile, FsAccess::ReadDir, FsAccess::Execute].into();
    for p in readable {
        policy.rules.push(FsRule {
            path: p.clone(),
            access: read_exec.clone(),
        });
    }
    if let Some(w) = &s.workdir {
        let w = Path::new(w);
        if !policy
            .rules
            .iter()
            .any(|r| w.starts_with(&r.path) && r.path != Path::new("/"))
        {
            policy.rules.push(FsRule {
                path: w.to_path_buf(),
                access: read_exec,
            });
        }
    }
    toml::to_string(&policy)
        .map(Some)
        .map_err(|e| SandboxError::Encode {
            what: "the default Landlock policy",
            reason: e.to_string(),
        })
}
