//! `linux.timeOffsets`: a time namespace's clock offsets can only be written
//! before any process is in it, so the init cannot be cloned straight into a
//! new one. The runtime unshares the time namespace *for its children*,
//! writes `/proc/self/timens_offsets`, clones the init (which lands in it),
//! and then returns its children to its own time namespace.

use crate::error::{EngineError, Result};
use nix::sched::CloneFlags;
use oci_spec::runtime::Spec;
use std::os::fd::OwnedFd;

fn newtime() -> CloneFlags {
    CloneFlags::from_bits_retain(libc::CLONE_NEWTIME)
}

/// The `timens_offsets` text for `spec`, or `None` without offsets.
/// Only `monotonic` and `boottime` can be offset (time_namespaces(7)).
pub(crate) fn offsets_text(spec: &Spec) -> Result<Option<String>> {
    let Some(offsets) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().as_ref())
        .filter(|o| !o.is_empty())
    else {
        return Ok(None);
    };
    let mut clocks: Vec<(&String, _)> = offsets.iter().collect();
    clocks.sort_by_key(|(name, _)| name.as_str());
    let mut text = String::new();
    for (clock, off) in clocks {
        if clock != "monotonic" && clock != "boottime" {
            return Err(EngineError::invalid(
                format!("linux.timeOffsets.{clock}"),
                clock,
                "only `monotonic` and `boottime` can be offset",
            ));
        }
        let nanos = off.nanosecs().unwrap_or(0);
        if nanos >= 1_000_000_000 {
            return Err(EngineError::invalid(
                format!("linux.timeOffsets.{clock}.nanosecs"),
                nanos.to_string(),
                "must be below 1000000000",
            ));
        }
        text.push_str(&format!("{clock} {} {nanos}\n", off.secs().unwrap_or(0)));
    }
    Ok(Some(text))
}

/// While alive, the runtime's future children start in a new time namespace
/// with the offsets applied; dropping it sends later children (hooks) back
/// to the runtime's own time namespace.
#[derive(Debug)]
pub(crate) struct ChildrenTimeNamespace {
    original: OwnedFd,
}

impl ChildrenTimeNamespace {
    pub(crate) fn enter(offsets: &str) -> Result<ChildrenTimeNamespace> {
        let original: OwnedFd = std::fs::File::open("/proc/self/ns/time_for_children")
            .map_err(|e| EngineError::io("open", "/proc/self/ns/time_for_children", e))?
            .into();
        nix::sched::unshare(newtime())
            .map_err(|e| EngineError::sys("unshare a time namespace for linux.timeOffsets", e))?;
        let guard = ChildrenTimeNamespace { original };
        std::fs::write("/proc/self/timens_offsets", offsets).map_err(|e| {
            EngineError::io("write linux.timeOffsets to", "/proc/self/timens_offsets", e)
        })?;
        Ok(guard)
    }
}

impl Drop for ChildrenTimeNamespace {
    fn drop(&mut self) {
        if let Err(e) = nix::sched::setns(&self.original, newtime()) {
            tracing::warn!(error = %e, "could not return to the runtime's time namespace");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(offsets: serde_json::Value) -> Spec {
        let mut v = serde_json::to_value(Spec::default()).unwrap();
        v["linux"]["timeOffsets"] = offsets;
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn offsets_are_written_as_the_kernel_reads_them() {
        let text = offsets_text(&spec(
            serde_json::json!({"monotonic": {"secs": 10}, "boottime": {"secs": -5, "nanosecs": 7}}),
        ))
        .unwrap();
        assert_eq!(text.as_deref(), Some("boottime -5 7\nmonotonic 10 0\n"));
        assert_eq!(offsets_text(&Spec::default()).unwrap(), None);
        let err = offsets_text(&spec(serde_json::json!({"realtime": {"secs": 1}})))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("linux.timeOffsets.realtime"), "{err}");
    }
}
