//! v1 hugetlb controller: `hugetlb.<size>.limit_in_bytes`.

use crate::controller::Ctl;
use crate::CgroupError;
use oci_spec::runtime::LinuxHugepageLimit;

pub(crate) fn apply(ctl: Ctl, limits: &[LinuxHugepageLimit]) -> Result<(), CgroupError> {
    for l in limits {
        let file = format!(
            "hugetlb.{}.limit_in_bytes",
            checked_page_size(ctl, l, "limit_in_bytes")?
        );
        ctl.write(&file, &l.limit().max(-1).to_string())?;
    }
    Ok(())
}

/// Validates `pageSize` (`<n>KB|MB|GB`) and that the host offers it.
pub(crate) fn checked_page_size<'l>(
    ctl: Ctl,
    l: &'l LinuxHugepageLimit,
    suffix: &str,
) -> Result<&'l str, CgroupError> {
    let size = l.page_size().as_str();
    let bad = |reason: String| CgroupError::InvalidValue {
        field: "linux.resources.hugepageLimits.pageSize",
        value: size.to_owned(),
        reason,
    };
    let digits = size.trim_end_matches(['K', 'M', 'G', 'B']);
    let unit = &size[digits.len()..];
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || !["KB", "MB", "GB"].contains(&unit)
    {
        return Err(bad("expected a size such as `2MB` or `1GB`".into()));
    }
    let file = format!("hugetlb.{size}.{suffix}");
    if ctl.dir.is_some() && !ctl.has_file(&file) {
        return Err(bad(format!(
            "the host has no `{file}`: page size not supported"
        )));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::testing::{files, read};

    #[test]
    fn writes_limits_and_checks_sizes() {
        let d = tempfile::tempdir().unwrap();
        files(d.path(), &[("hugetlb.2MB.limit_in_bytes", "")]);
        let ctl = Ctl::at("hugetlb", d.path());
        let l: Vec<LinuxHugepageLimit> =
            serde_json::from_str(r#"[{"pageSize":"2MB","limit":4194304}]"#).unwrap();
        apply(ctl, &l).unwrap();
        assert_eq!(read(d.path(), "hugetlb.2MB.limit_in_bytes"), "4194304");
        let l: Vec<LinuxHugepageLimit> =
            serde_json::from_str(r#"[{"pageSize":"1GB","limit":1}]"#).unwrap();
        let err = apply(ctl, &l).unwrap_err().to_string();
        assert!(err.contains("page size not supported"), "{err}");
        let l: Vec<LinuxHugepageLimit> =
            serde_json::from_str(r#"[{"pageSize":"2M","limit":1}]"#).unwrap();
        assert!(apply(ctl, &l)
            .unwrap_err()
            .to_string()
            .contains("expected a size"));
    }
}
