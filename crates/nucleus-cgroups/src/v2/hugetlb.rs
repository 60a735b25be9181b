//! v2 hugetlb controller: `hugetlb.<size>.max`.

use crate::controller::Ctl;
use crate::convert::v2_limit;
use crate::v1::hugetlb::checked_page_size;
use crate::CgroupError;
use oci_spec::runtime::LinuxHugepageLimit;

pub(crate) fn apply(ctl: Ctl, limits: &[LinuxHugepageLimit]) -> Result<(), CgroupError> {
    for l in limits {
        let file = format!("hugetlb.{}.max", checked_page_size(ctl, l, "max")?);
        ctl.write(&file, &v2_limit(l.limit()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::testing::{files, read};

    #[test]
    fn writes_max() {
        let d = tempfile::tempdir().unwrap();
        files(d.path(), &[("hugetlb.2MB.max", "max")]);
        let l: Vec<LinuxHugepageLimit> =
            serde_json::from_str(r#"[{"pageSize":"2MB","limit":-1}]"#).unwrap();
        apply(Ctl::at("hugetlb", d.path()), &l).unwrap();
        assert_eq!(read(d.path(), "hugetlb.2MB.max"), "max");
        let absent = Ctl {
            name: "hugetlb",
            dir: None,
        };
        let err = apply(absent, &l).unwrap_err().to_string();
        assert_eq!(err, "controller `hugetlb` is not available on this host: cannot write `max` to `hugetlb.2MB.max`");
    }
}
