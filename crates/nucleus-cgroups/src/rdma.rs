//! rdma controller (`rdma.max`), identical on v1 and v2.

use crate::controller::Ctl;
use crate::CgroupError;
use oci_spec::runtime::LinuxRdma;
use std::collections::HashMap;

/// One `<device> hca_handle=N hca_object=M` line per device; an absent
/// count is `max`.
pub(crate) fn apply(ctl: Ctl, rdma: &HashMap<String, LinuxRdma>) -> Result<(), CgroupError> {
    let mut devices: Vec<&String> = rdma.keys().collect();
    devices.sort();
    for dev in devices {
        let r = &rdma[dev];
        let n = |v: Option<u32>| v.map_or("max".to_owned(), |v| v.to_string());
        ctl.write(
            "rdma.max",
            &format!(
                "{dev} hca_handle={} hca_object={}",
                n(r.hca_handles()),
                n(r.hca_objects())
            ),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::testing::{files, read};

    #[test]
    fn writes_rdma_max() {
        let d = tempfile::tempdir().unwrap();
        files(d.path(), &[("rdma.max", "")]);
        let r: HashMap<String, LinuxRdma> =
            serde_json::from_str(r#"{"mlx5_1":{"hcaHandles":3}}"#).unwrap();
        apply(Ctl::at("rdma", d.path()), &r).unwrap();
        assert_eq!(
            read(d.path(), "rdma.max"),
            "mlx5_1 hca_handle=3 hca_object=max"
        );
    }
}
