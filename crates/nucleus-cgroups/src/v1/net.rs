//! v1 net_cls and net_prio controllers (OCI `linux.resources.network`).
//! cgroup v2 has neither: there, a network value is an error.

use crate::controller::Ctl;
use crate::CgroupError;
use oci_spec::runtime::LinuxNetwork;

pub(crate) fn apply(cls: Ctl, prio: Ctl, net: &LinuxNetwork) -> Result<(), CgroupError> {
    if let Some(id) = net.class_id() {
        cls.write("net_cls.classid", &id.to_string())?;
    }
    for p in net.priorities().iter().flatten() {
        prio.write(
            "net_prio.ifpriomap",
            &format!("{} {}", p.name(), p.priority()),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::testing::{files, read};

    #[test]
    fn writes_classid_and_priorities() {
        let d = tempfile::tempdir().unwrap();
        files(
            d.path(),
            &[("net_cls.classid", "0"), ("net_prio.ifpriomap", "")],
        );
        let net: LinuxNetwork = serde_json::from_str(
            r#"{"classID":1048577,"priorities":[{"name":"eth0","priority":5}]}"#,
        )
        .unwrap();
        apply(
            Ctl::at("net_cls", d.path()),
            Ctl::at("net_prio", d.path()),
            &net,
        )
        .unwrap();
        assert_eq!(read(d.path(), "net_cls.classid"), "1048577");
        assert_eq!(read(d.path(), "net_prio.ifpriomap"), "eth0 5");
        let err = apply(
            Ctl {
                name: "net_cls",
                dir: None,
            },
            Ctl::at("net_prio", d.path()),
            &net,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("controller `net_cls` is not available"),
            "{err}"
        );
    }
}
