//! v1 devices controller: each OCI rule, in order, becomes one line in
//! `devices.allow` or `devices.deny`.

use crate::controller::Ctl;
use crate::CgroupError;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

pub(crate) fn apply(ctl: Ctl, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
    for r in rules {
        let Some(line) = rule_line(r)? else {
            tracing::debug!(?r, "fifo rule needs no device cgroup entry");
            continue;
        };
        ctl.write(
            if r.allow() {
                "devices.allow"
            } else {
                "devices.deny"
            },
            &line,
        )?;
    }
    Ok(())
}

/// `type major:minor access`, with `*` wildcards; `None` for an allow rule
/// on fifos, which the kernel does not control.
pub(crate) fn rule_line(r: &LinuxDeviceCgroup) -> Result<Option<String>, CgroupError> {
    let access = r.access().as_deref().unwrap_or("rwm");
    let text = || format!("{r:?}");
    if access.is_empty() || !access.chars().all(|c| "rwm".contains(c)) {
        return Err(CgroupError::InvalidValue {
            field: "linux.resources.devices.access",
            value: access.to_owned(),
            reason: "must be a non-empty combination of `r`, `w` and `m`".into(),
        });
    }
    let typ = match r.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => "a",
        LinuxDeviceType::B => "b",
        LinuxDeviceType::C | LinuxDeviceType::U => "c",
        LinuxDeviceType::P if r.allow() => return Ok(None),
        LinuxDeviceType::P => {
            return Err(CgroupError::InvalidValue {
                field: "linux.resources.devices.type",
                value: text(),
                reason: "the kernel cannot deny access to fifos".into(),
            })
        }
    };
    let num = |n: Option<i64>| {
        n.filter(|n| *n >= 0)
            .map_or("*".to_owned(), |n| n.to_string())
    };
    Ok(Some(format!(
        "{typ} {}:{} {access}",
        num(r.major()),
        num(r.minor())
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::testing::{files, read};

    fn rule(json: &str) -> LinuxDeviceCgroup {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn formats_rules() {
        let line = |j| rule_line(&rule(j)).unwrap();
        assert_eq!(
            line(r#"{"allow":false,"access":"rwm"}"#).unwrap(),
            "a *:* rwm"
        );
        assert_eq!(
            line(r#"{"allow":true,"type":"c","major":1,"minor":3,"access":"rw"}"#).unwrap(),
            "c 1:3 rw"
        );
        assert_eq!(
            line(r#"{"allow":true,"type":"b","major":8}"#).unwrap(),
            "b 8:* rwm"
        );
        assert_eq!(line(r#"{"allow":true,"type":"p"}"#), None);
        assert!(rule_line(&rule(r#"{"allow":true,"access":"rx"}"#)).is_err());
    }

    #[test]
    fn writes_to_allow_and_deny() {
        let d = tempfile::tempdir().unwrap();
        files(d.path(), &[("devices.allow", ""), ("devices.deny", "")]);
        let rules: Vec<LinuxDeviceCgroup> = serde_json::from_str(
            r#"[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":5,"access":"rwm"}]"#,
        )
        .unwrap();
        apply(Ctl::at("devices", d.path()), &rules).unwrap();
        assert_eq!(read(d.path(), "devices.deny"), "a *:* rwm");
        assert_eq!(read(d.path(), "devices.allow"), "c 1:5 rwm");
    }
}
