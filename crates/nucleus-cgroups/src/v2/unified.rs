//! OCI `linux.resources.unified`: raw v2 `file = value` pairs, written
//! last so they override the typed fields. Needs a cgroup2 mount.

use crate::cgroup::CgroupDir;
use crate::{fs, CgroupError};
use std::collections::HashMap;

pub(crate) fn apply(
    v2: Option<&CgroupDir>,
    unified: &HashMap<String, String>,
) -> Result<(), CgroupError> {
    let mut keys: Vec<&String> = unified.keys().collect();
    keys.sort();
    for key in keys {
        let value = &unified[key];
        let bad = |reason: &str| CgroupError::InvalidValue {
            field: "linux.resources.unified",
            value: key.clone(),
            reason: reason.to_owned(),
        };
        let Some((controller, _)) = key.split_once('.') else {
            return Err(bad("key must be a cgroup file name such as `memory.high`"));
        };
        if key.contains('/') || key.starts_with('.') {
            return Err(bad("key must be a file name in the cgroup directory"));
        }
        let Some(dir) = v2 else {
            return Err(CgroupError::Unsupported {
                field: "linux.resources.unified",
                value: format!("{key}={value}"),
                version: "v1",
                reason: "unified keys need a cgroup2 hierarchy",
            });
        };
        if controller != "cgroup" && !dir.has(controller) {
            return Err(CgroupError::ControllerUnavailable {
                controller: controller.to_owned(),
                file: key.clone(),
                value: value.clone(),
            });
        }
        fs::write(&dir.path, key, value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::testing::{files, read};

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn writes_keys_and_checks_controller() {
        let d = tempfile::tempdir().unwrap();
        files(
            d.path(),
            &[("memory.high", "max"), ("cgroup.max.depth", "max")],
        );
        let dir = CgroupDir {
            controllers: vec!["memory".into()],
            path: d.path().to_owned(),
            mountpoint: d.path().to_owned(),
            new_ancestors: 0,
        };
        apply(
            Some(&dir),
            &map(&[("memory.high", "1000"), ("cgroup.max.depth", "3")]),
        )
        .unwrap();
        assert_eq!(read(d.path(), "memory.high"), "1000");
        assert_eq!(read(d.path(), "cgroup.max.depth"), "3");
        let err = apply(Some(&dir), &map(&[("io.max", "8:0 rbps=1")]))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("controller `io` is not available"), "{err}");
        assert!(apply(Some(&dir), &map(&[("../x.y", "1")])).is_err());
        let err = apply(None, &map(&[("memory.high", "1")]))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "`linux.resources.unified` = `memory.high=1` is not supported on cgroup v1: unified keys need a cgroup2 hierarchy");
    }
}
