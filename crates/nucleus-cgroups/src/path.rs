//! Turning OCI `linux.cgroupsPath` (plain or systemd `slice:prefix:name`
//! form) plus a container id into a path below a hierarchy. Pure string
//! work: no filesystem access.

use crate::CgroupError;
use std::path::{Component, Path, PathBuf};

/// Where a resolved path starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Anchor {
    /// The hierarchy's root (absolute and systemd paths).
    Root,
    /// The caller's own cgroup in that hierarchy (relative paths, no path).
    Own,
}

/// Resolves `cgroups_path` for container `id` to an anchor and a
/// normalized relative path with at least one component.
pub(crate) fn parse(
    cgroups_path: Option<&str>,
    id: &str,
) -> Result<(Anchor, PathBuf), CgroupError> {
    validate_id(id)?;
    let Some(raw) = cgroups_path.filter(|p| !p.is_empty()) else {
        // As runc: the container id, below the caller's cgroup; scripts look for it.
        return Ok((Anchor::Own, PathBuf::from(id)));
    };
    if let Some(path) = systemd_path(raw)? {
        tracing::info!(cgroups_path = raw, path = %path.display(), "systemd cgroup path mapped to cgroupfs; no systemd manager is used");
        return Ok((Anchor::Root, path));
    }
    let anchor = if raw.starts_with('/') {
        Anchor::Root
    } else {
        Anchor::Own
    };
    Ok((anchor, normalize(raw)?))
}

fn validate_id(id: &str) -> Result<(), CgroupError> {
    let bad = |reason| {
        Err(CgroupError::ResolvePath {
            path: id.to_owned(),
            reason,
        })
    };
    if id.is_empty() || id.len() > 1024 {
        return bad("container id must be 1 to 1024 bytes");
    }
    if id.contains('/') || id == "." || id == ".." || id.contains('\0') {
        return bad("container id must not contain `/` or be `.`/`..`");
    }
    Ok(())
}

/// A relative sub-cgroup path (exec `--cgroup`): normalized, no `..`.
pub(crate) fn sub_path(raw: &str) -> Result<PathBuf, CgroupError> {
    normalize(raw.trim_start_matches('/'))
}

/// Drops `.` and empty components; refuses `..` so a path cannot escape
/// its anchor, and refuses a path naming the anchor itself.
fn normalize(raw: &str) -> Result<PathBuf, CgroupError> {
    let bad = |reason| {
        Err(CgroupError::ResolvePath {
            path: raw.to_owned(),
            reason,
        })
    };
    if raw.contains('\0') {
        return bad("contains a NUL byte");
    }
    let mut out = PathBuf::new();
    for c in Path::new(raw).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => return bad("`..` is not allowed"),
            _ => {}
        }
    }
    if out.as_os_str().is_empty() {
        return bad("names no cgroup below the root");
    }
    Ok(out)
}

/// Maps `slice:prefix:name` to `<slice dirs>/<prefix>-<name>.scope`;
/// `None` if `raw` is not in that form.
fn systemd_path(raw: &str) -> Result<Option<PathBuf>, CgroupError> {
    if raw.starts_with('/') || raw.matches(':').count() != 2 {
        return Ok(None);
    }
    let bad = |reason| {
        Err(CgroupError::ResolvePath {
            path: raw.to_owned(),
            reason,
        })
    };
    let mut parts = raw.splitn(3, ':');
    let (slice, prefix, name) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    if name.is_empty() || [slice, prefix, name].iter().any(|p| p.contains('/')) {
        return bad("systemd form must be `slice:prefix:name` without `/`");
    }
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    let mut path = match expand_slice(slice) {
        Some(p) => p,
        None => return bad("slice must end in `.slice` and have no empty `-` parts"),
    };
    if name.ends_with(".slice") {
        // A slice as the leaf names its own directory chain.
        match expand_slice(name) {
            Some(p) => return Ok(Some(p)),
            None => return bad("slice must end in `.slice` and have no empty `-` parts"),
        }
    }
    path.push(if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    });
    Ok(Some(path))
}

/// `a-b.slice` -> `a.slice/a-b.slice`; `-.slice` -> empty (the root).
fn expand_slice(slice: &str) -> Option<PathBuf> {
    let stem = slice.strip_suffix(".slice")?;
    let mut path = PathBuf::new();
    if stem == "-" {
        return Some(path);
    }
    if stem.is_empty() || stem.starts_with('-') || stem.ends_with('-') || stem.contains("--") {
        return None;
    }
    let mut acc = String::new();
    for part in stem.split('-') {
        if !acc.is_empty() {
            acc.push('-');
        }
        acc.push_str(part);
        path.push(format!("{acc}.slice"));
    }
    Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(p: Option<&str>) -> (Anchor, String) {
        let (a, p) = parse(p, "abc").unwrap();
        (a, p.display().to_string())
    }

    #[test]
    fn none_and_relative_are_below_own_cgroup() {
        assert_eq!(ok(None), (Anchor::Own, "abc".into()));
        assert_eq!(ok(Some("")), (Anchor::Own, "abc".into()));
        assert_eq!(ok(Some("foo/./bar")), (Anchor::Own, "foo/bar".into()));
    }

    #[test]
    fn absolute_is_below_root() {
        assert_eq!(
            ok(Some("/kubepods//pod1/abc")),
            (Anchor::Root, "kubepods/pod1/abc".into())
        );
    }

    #[test]
    fn systemd_form_maps_to_scope() {
        assert_eq!(
            ok(Some("system.slice:nucleus:abc")),
            (Anchor::Root, "system.slice/nucleus-abc.scope".into())
        );
        assert_eq!(
            ok(Some("machine-test-x.slice:nucleus:abc")),
            (
                Anchor::Root,
                "machine.slice/machine-test.slice/machine-test-x.slice/nucleus-abc.scope".into()
            )
        );
        assert_eq!(
            ok(Some(":nucleus:abc")),
            (Anchor::Root, "system.slice/nucleus-abc.scope".into())
        );
        assert_eq!(ok(Some("-.slice::abc")), (Anchor::Root, "abc.scope".into()));
        assert_eq!(
            ok(Some("user.slice:x:my-app.slice")),
            (Anchor::Root, "my.slice/my-app.slice".into())
        );
    }

    #[test]
    fn rejects_escapes_and_bad_ids() {
        for (p, id) in [
            (Some("/a/../b"), "abc"),
            (Some("/"), "abc"),
            (None, "a/b"),
            (None, ".."),
            (None, ""),
        ] {
            let err = parse(p, id).unwrap_err().to_string();
            assert!(err.starts_with("invalid cgroups path `"), "{err}");
        }
        let err = parse(Some("bad:nucleus:abc"), "abc")
            .unwrap_err()
            .to_string();
        assert!(err.contains("must end in `.slice`"), "{err}");
    }
}
