//! cpuset `cpus`/`mems` (same file names on v1 and v2), and v1's rule that
//! a new cpuset must inherit non-empty `cpus`/`mems` before it can hold tasks.

use crate::controller::Ctl;
use crate::{fs, CgroupError};
use std::path::Path;

pub(crate) fn apply(ctl: Ctl, cpus: Option<&str>, mems: Option<&str>) -> Result<(), CgroupError> {
    if let Some(c) = cpus {
        ctl.write("cpuset.cpus", c)?;
    }
    if let Some(m) = mems {
        ctl.write("cpuset.mems", m)?;
    }
    Ok(())
}

/// Top-down from below `mountpoint` to `leaf`: copies the parent's
/// `cpuset.cpus`/`cpuset.mems` into any directory where they are empty.
pub(crate) fn fill_from_parents(mountpoint: &Path, leaf: &Path) -> Result<(), CgroupError> {
    let mut chain: Vec<&Path> = leaf
        .ancestors()
        .take_while(|a| a.starts_with(mountpoint) && *a != mountpoint)
        .collect();
    chain.reverse();
    for dir in chain {
        let Some(parent) = dir.parent() else { continue };
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if fs::read_opt(dir, file)?.is_some_and(|v| v.is_empty()) {
                let value = fs::read(parent, file)?;
                fs::write(dir, file, &value)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::testing::{files, read};

    #[test]
    fn copies_parent_values_top_down() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("a/b"));
        std::fs::create_dir_all(&b).unwrap();
        files(
            d.path(),
            &[("cpuset.cpus", "0-1\n"), ("cpuset.mems", "0\n")],
        );
        files(&a, &[("cpuset.cpus", "\n"), ("cpuset.mems", "0\n")]);
        files(&b, &[("cpuset.cpus", ""), ("cpuset.mems", "")]);
        fill_from_parents(d.path(), &b).unwrap();
        assert_eq!(read(&b, "cpuset.cpus"), "0-1");
        assert_eq!(read(&b, "cpuset.mems"), "0");
        apply(Ctl::at("cpuset", &b), Some("1"), None).unwrap();
        assert_eq!(read(&b, "cpuset.cpus"), "1");
    }
}
