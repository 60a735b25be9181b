//! pids controller: `pids.max`, identical on v1 and v2.

use crate::controller::Ctl;
use crate::CgroupError;
use oci_spec::runtime::LinuxPids;

/// 0 is unset (as runc); negative is unlimited.
pub(crate) fn apply(ctl: Ctl, pids: &LinuxPids) -> Result<(), CgroupError> {
    match pids.limit() {
        0 => Ok(()),
        l if l < 0 => ctl.write("pids.max", "max"),
        l => ctl.write("pids.max", &l.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::testing::{files, read};

    #[test]
    fn writes_limit_and_max() {
        let d = tempfile::tempdir().unwrap();
        files(d.path(), &[("pids.max", "max")]);
        let ctl = Ctl::at("pids", d.path());
        apply(ctl, &serde_json::from_str(r#"{"limit":42}"#).unwrap()).unwrap();
        assert_eq!(read(d.path(), "pids.max"), "42");
        apply(ctl, &serde_json::from_str(r#"{"limit":-1}"#).unwrap()).unwrap();
        assert_eq!(read(d.path(), "pids.max"), "max");
    }
}
