//! v1 blkio controller: weights (CFQ `blkio.*` or BFQ `blkio.bfq.*`) and
//! `blkio.throttle.*` device limits.

use crate::controller::Ctl;
use crate::unset::device_weight;
use crate::CgroupError;
use oci_spec::runtime::{LinuxBlockIo, LinuxThrottleDevice};

pub(crate) fn apply(ctl: Ctl, bio: &LinuxBlockIo) -> Result<(), CgroupError> {
    if let Some(w) = bio.weight() {
        ctl.write(
            ctl.pick(&["blkio.weight", "blkio.bfq.weight"]),
            &w.to_string(),
        )?;
    }
    if let Some(w) = bio.leaf_weight() {
        ctl.write("blkio.leaf_weight", &w.to_string())?;
    }
    for d in bio.weight_device().iter().flatten() {
        if let Some(w) = device_weight(d.weight()) {
            let file = ctl.pick(&["blkio.weight_device", "blkio.bfq.weight_device"]);
            ctl.write(file, &format!("{}:{} {w}", d.major(), d.minor()))?;
        }
        if let Some(w) = device_weight(d.leaf_weight()) {
            ctl.write(
                "blkio.leaf_weight_device",
                &format!("{}:{} {w}", d.major(), d.minor()),
            )?;
        }
    }
    let throttles: [(&str, &Option<Vec<LinuxThrottleDevice>>); 4] = [
        (
            "blkio.throttle.read_bps_device",
            bio.throttle_read_bps_device(),
        ),
        (
            "blkio.throttle.write_bps_device",
            bio.throttle_write_bps_device(),
        ),
        (
            "blkio.throttle.read_iops_device",
            bio.throttle_read_iops_device(),
        ),
        (
            "blkio.throttle.write_iops_device",
            bio.throttle_write_iops_device(),
        ),
    ];
    for (file, devs) in throttles {
        for d in devs.iter().flatten() {
            // Rate 0 removes the limit.
            ctl.write(file, &format!("{}:{} {}", d.major(), d.minor(), d.rate()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::testing::{files, read};

    #[test]
    fn writes_weights_and_throttles() {
        let d = tempfile::tempdir().unwrap();
        let names = [
            "blkio.bfq.weight",
            "blkio.bfq.weight_device",
            "blkio.leaf_weight_device",
            "blkio.throttle.read_bps_device",
            "blkio.throttle.write_iops_device",
        ];
        files(d.path(), &names.map(|n| (n, "")));
        let bio: LinuxBlockIo = serde_json::from_str(
            r#"{"weight":300,"weightDevice":[{"major":8,"minor":0,"weight":200,"leafWeight":100}],
                "throttleReadBpsDevice":[{"major":8,"minor":0,"rate":1048576}],
                "throttleWriteIOPSDevice":[{"major":8,"minor":16,"rate":100}]}"#,
        )
        .unwrap();
        apply(Ctl::at("blkio", d.path()), &bio).unwrap();
        let got: Vec<String> = names.iter().map(|n| read(d.path(), n)).collect();
        assert_eq!(
            got,
            ["300", "8:0 200", "8:0 100", "8:0 1048576", "8:16 100"]
        );
    }

    #[test]
    fn missing_weight_file_names_it() {
        let d = tempfile::tempdir().unwrap();
        let bio: LinuxBlockIo = serde_json::from_str(r#"{"weight":300}"#).unwrap();
        let err = apply(Ctl::at("blkio", d.path()), &bio)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("failed to write `300` to `") && err.contains("blkio.weight`"),
            "{err}"
        );
    }
}
