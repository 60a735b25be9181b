//! cgroup v1 writers, one file per controller. Each takes a `Ctl` for its
//! controller's directory and knows v1 file names and units only.

pub(crate) mod blkio;
pub(crate) mod cpu;
pub(crate) mod cpuset;
pub(crate) mod devices;
pub(crate) mod freezer;
pub(crate) mod hugetlb;
pub(crate) mod memory;
pub(crate) mod net;
pub(crate) mod pids;
pub(crate) mod stats;

#[cfg(test)]
pub(crate) mod testing {
    use std::path::Path;

    /// Creates `files` (name, content) in `dir`, like a fresh cgroup.
    pub(crate) fn files(dir: &Path, files: &[(&str, &str)]) {
        for (f, c) in files {
            std::fs::write(dir.join(f), c).unwrap();
        }
    }

    pub(crate) fn read(dir: &Path, f: &str) -> String {
        std::fs::read_to_string(dir.join(f)).unwrap()
    }
}
