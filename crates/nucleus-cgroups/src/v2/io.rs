//! v2 io controller: `io.weight` (or `io.bfq.weight`) and `io.max`.
//! Leaf weights do not exist on v2.

use crate::controller::Ctl;
use crate::convert::blkio_weight_to_io;
use crate::unset::device_weight;
use crate::v2::memory::unsupported;
use crate::CgroupError;
use oci_spec::runtime::{LinuxBlockIo, LinuxThrottleDevice};

pub(crate) fn apply(ctl: Ctl, bio: &LinuxBlockIo) -> Result<(), CgroupError> {
    if let Some(w) = bio.leaf_weight() {
        return Err(unsupported(
            "linux.resources.blockIO.leafWeight",
            w.to_string(),
            "no leaf weights",
        ));
    }
    // BFQ takes the v1 range (1..=1000) as is; io.weight is 1..=10000.
    let (file, bfq) = match ctl.pick(&["io.weight", "io.bfq.weight"]) {
        "io.bfq.weight" => ("io.bfq.weight", true),
        f => (f, false),
    };
    let scale = |w: u16| {
        if bfq {
            u64::from(w)
        } else {
            blkio_weight_to_io(w)
        }
    };
    if let Some(w) = bio.weight() {
        let v = scale(w);
        ctl.write(
            file,
            &if bfq {
                v.to_string()
            } else {
                format!("default {v}")
            },
        )?;
    }
    for d in bio.weight_device().iter().flatten() {
        if let Some(w) = device_weight(d.leaf_weight()) {
            return Err(unsupported(
                "linux.resources.blockIO.weightDevice.leafWeight",
                w.to_string(),
                "no leaf weights",
            ));
        }
        if let Some(w) = device_weight(d.weight()) {
            ctl.write(file, &format!("{}:{} {}", d.major(), d.minor(), scale(w)))?;
        }
    }
    let throttles: [(&str, &Option<Vec<LinuxThrottleDevice>>); 4] = [
        ("rbps", bio.throttle_read_bps_device()),
        ("wbps", bio.throttle_write_bps_device()),
        ("riops", bio.throttle_read_iops_device()),
        ("wiops", bio.throttle_write_iops_device()),
    ];
    for (key, devs) in throttles {
        for d in devs.iter().flatten() {
            let rate = if d.rate() == 0 {
                "max".to_owned()
            } else {
                d.rate().to_string()
            };
            ctl.write(
                "io.max",
                &format!("{}:{} {key}={rate}", d.major(), d.minor()),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::testing::{files, read};

    #[test]
    fn writes_weight_and_max() {
        let d = tempfile::tempdir().unwrap();
        files(d.path(), &[("io.weight", "default 100"), ("io.max", "")]);
        let bio: LinuxBlockIo = serde_json::from_str(
            r#"{"weight":500,"throttleWriteBpsDevice":[{"major":8,"minor":0,"rate":0}]}"#,
        )
        .unwrap();
        apply(Ctl::at("io", d.path()), &bio).unwrap();
        assert_eq!(read(d.path(), "io.weight"), "default 4950");
        assert_eq!(read(d.path(), "io.max"), "8:0 wbps=max");
    }

    #[test]
    fn bfq_weight_and_leaf_weight() {
        let d = tempfile::tempdir().unwrap();
        files(d.path(), &[("io.bfq.weight", "")]);
        let bio: LinuxBlockIo =
            serde_json::from_str(r#"{"weightDevice":[{"major":8,"minor":0,"weight":300}]}"#)
                .unwrap();
        apply(Ctl::at("io", d.path()), &bio).unwrap();
        assert_eq!(read(d.path(), "io.bfq.weight"), "8:0 300");
        let bio: LinuxBlockIo = serde_json::from_str(r#"{"leafWeight":300}"#).unwrap();
        assert!(apply(Ctl::at("io", d.path()), &bio).is_err());
    }
}
