//! `Ctl`: one controller's directory as the resource writers see it. When
//! the host lacks the controller the directory is `None`, and the first
//! write becomes an error naming the controller, file and value.

use crate::{fs, CgroupError};
use std::path::Path;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctl<'a> {
    pub name: &'static str,
    pub dir: Option<&'a Path>,
}

impl<'a> Ctl<'a> {
    #[cfg(test)]
    pub(crate) fn at(name: &'static str, dir: &'a Path) -> Ctl<'a> {
        Ctl {
            name,
            dir: Some(dir),
        }
    }

    /// The directory, or `ControllerUnavailable` for `file` and `value`.
    pub fn dir_for(&self, file: &str, value: &str) -> Result<&'a Path, CgroupError> {
        self.dir.ok_or_else(|| CgroupError::ControllerUnavailable {
            controller: self.name.to_owned(),
            file: file.to_owned(),
            value: value.to_owned(),
        })
    }

    pub fn write(&self, file: &str, value: &str) -> Result<(), CgroupError> {
        fs::write(self.dir_for(file, value)?, file, value)
    }

    /// True if the controller is present and offers `file`.
    pub fn has_file(&self, file: &str) -> bool {
        self.dir.is_some_and(|d| fs::exists(d, file))
    }

    /// The first of `files` that exists, else the first one (so that the
    /// write fails naming it).
    pub fn pick<'f>(&self, files: &[&'f str]) -> &'f str {
        files
            .iter()
            .copied()
            .find(|f| self.has_file(f))
            .unwrap_or(files[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_controller_names_controller_file_and_value() {
        let ctl = Ctl {
            name: "hugetlb",
            dir: None,
        };
        let err = ctl
            .write("hugetlb.2MB.max", "4194304")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "controller `hugetlb` is not available on this host: cannot write `4194304` to `hugetlb.2MB.max`"
        );
    }
}
