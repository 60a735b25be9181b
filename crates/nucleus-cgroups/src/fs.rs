//! Reading and writing cgroup files. Every error carries the path and the
//! value; every write is traced. Nothing here knows about controllers.

use crate::CgroupError;
use std::collections::BTreeMap;
use std::io::{ErrorKind, Write};
use std::path::Path;

/// Writes `value` to `dir/file` (O_WRONLY|O_TRUNC, never O_CREAT).
pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    tracing::trace!(path = %path.display(), value, "cgroup write");
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|source| CgroupError::WriteFile {
            path,
            value: value.to_owned(),
            source,
        })
}

/// Reads `dir/file`, trimmed.
pub(crate) fn read(dir: &Path, file: &str) -> Result<String, CgroupError> {
    let path = dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(s.trim().to_owned()),
        Err(source) => Err(CgroupError::ReadFile { path, source }),
    }
}

/// Like [`read`], but a missing file is `None`.
pub(crate) fn read_opt(dir: &Path, file: &str) -> Result<Option<String>, CgroupError> {
    match read(dir, file) {
        Ok(s) => Ok(Some(s)),
        Err(CgroupError::ReadFile { source, .. }) if source.kind() == ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Parses a single number; `max` (v2) and v1's huge "unlimited" read as `u64::MAX`.
pub(crate) fn parse_u64(path: &Path, value: &str) -> Result<u64, CgroupError> {
    if value == "max" || value == "-1" {
        return Ok(u64::MAX);
    }
    value
        .parse()
        .map_err(|e: std::num::ParseIntError| CgroupError::ParseFile {
            path: path.to_owned(),
            value: value.to_owned(),
            reason: e.to_string(),
        })
}

/// Reads a single-number file; missing file is `None`.
pub(crate) fn read_u64_opt(dir: &Path, file: &str) -> Result<Option<u64>, CgroupError> {
    match read_opt(dir, file)? {
        Some(s) => parse_u64(&dir.join(file), &s).map(Some),
        None => Ok(None),
    }
}

/// Reads a flat-keyed file (`key value` lines, e.g. `memory.stat`);
/// missing file is empty. Unparsable lines are skipped.
pub(crate) fn read_keyed(dir: &Path, file: &str) -> Result<BTreeMap<String, u64>, CgroupError> {
    let text = read_opt(dir, file)?.unwrap_or_default();
    Ok(text
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(char::is_whitespace)?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect())
}

/// True if `dir/file` exists.
pub(crate) fn exists(dir: &Path, file: &str) -> bool {
    dir.join(file).exists()
}

/// Reads `cgroup.procs` as pids.
pub(crate) fn read_procs(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let path = dir.join("cgroup.procs");
    let text = read(dir, "cgroup.procs")?;
    text.split_whitespace()
        .map(|p| {
            p.parse()
                .map_err(|e: std::num::ParseIntError| CgroupError::ParseFile {
                    path: path.clone(),
                    value: p.to_owned(),
                    reason: e.to_string(),
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_requires_existing_file_and_names_value() {
        let d = tempfile::tempdir().unwrap();
        let err = write(d.path(), "pids.max", "10").unwrap_err().to_string();
        assert!(err.starts_with("failed to write `10` to `"), "{err}");
        assert!(err.contains("pids.max"), "{err}");
        std::fs::write(d.path().join("pids.max"), "max\n").unwrap();
        write(d.path(), "pids.max", "10").unwrap();
        assert_eq!(read(d.path(), "pids.max").unwrap(), "10");
    }

    #[test]
    fn reads_numbers_and_keyed_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), "max\n").unwrap();
        std::fs::write(d.path().join("s"), "cache 4\nrss 5\nbogus\n").unwrap();
        assert_eq!(read_u64_opt(d.path(), "a").unwrap(), Some(u64::MAX));
        assert_eq!(read_u64_opt(d.path(), "missing").unwrap(), None);
        let k = read_keyed(d.path(), "s").unwrap();
        assert_eq!(k["cache"], 4);
        assert_eq!(k.len(), 2);
    }
}
