//! cgroup v2 writers, one file per controller, plus enabling controllers
//! down the tree. Knows v2 file names and units only.

pub(crate) mod cpu;
pub(crate) mod devices;
pub(crate) mod freezer;
pub(crate) mod hugetlb;
pub(crate) mod io;
pub(crate) mod memory;
pub(crate) mod stats;
pub(crate) mod unified;

use crate::fs;
use std::path::Path;

/// Enables `controllers` in `cgroup.subtree_control` of every ancestor of
/// `leaf` below and including `mountpoint`. Best effort: a parent holding
/// processes refuses (EBUSY, "no internal processes"); the controller then
/// stays missing from the leaf and `apply` reports it if a value needs it.
pub(crate) fn enable_controllers(mountpoint: &Path, leaf: &Path, controllers: &[String]) {
    let mut chain: Vec<&Path> = leaf
        .ancestors()
        .skip(1)
        .take_while(|a| a.starts_with(mountpoint))
        .collect();
    chain.reverse();
    for dir in chain {
        let Ok(Some(available)) = fs::read_opt(dir, "cgroup.controllers") else {
            return;
        };
        let enabled = fs::read_opt(dir, "cgroup.subtree_control")
            .ok()
            .flatten()
            .unwrap_or_default();
        for c in controllers {
            let listed = |list: &str| list.split_whitespace().any(|x| x == c);
            if !listed(&available) || listed(&enabled) {
                continue;
            }
            if let Err(e) = fs::write(dir, "cgroup.subtree_control", &format!("+{c}")) {
                tracing::debug!(error = %e, controller = %c, "controller not enabled");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::testing::{files, read};

    #[test]
    fn enables_missing_controllers_top_down() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        std::fs::create_dir_all(a.join("leaf")).unwrap();
        files(
            d.path(),
            &[
                ("cgroup.controllers", "cpu memory"),
                ("cgroup.subtree_control", "cpu"),
            ],
        );
        files(
            &a,
            &[
                ("cgroup.controllers", "cpu"),
                ("cgroup.subtree_control", ""),
            ],
        );
        let ctrls = ["cpu".to_owned(), "memory".to_owned()];
        enable_controllers(d.path(), &a.join("leaf"), &ctrls);
        // Fake files keep only the last write.
        assert_eq!(read(d.path(), "cgroup.subtree_control"), "+memory");
        assert_eq!(read(&a, "cgroup.subtree_control"), "+cpu");
    }
}
