//! v2 device rules. v2 has no devices controller; rules need a BPF
//! program, which is not implemented yet. Policy, so that the usual OCI
//! configs still run:
//! - only allow rules, or none: nothing to enforce, accepted;
//! - one leading deny-all (`{"allow":false}` with any type `a`, no numbers,
//!   access `rwm`) followed by allow rules, which is what runc, containerd
//!   and podman generate: accepted with a warning, since containment then
//!   rests on the container's own `/dev` and dropped `CAP_MKNOD`;
//! - any other deny rule: `DevicesUnenforceable`.

use crate::v1::devices::rule_line;
use crate::CgroupError;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

pub(crate) fn check(rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
    let deny_all = |r: &LinuxDeviceCgroup| {
        !r.allow()
            && matches!(r.typ(), None | Some(LinuxDeviceType::A))
            && r.major().unwrap_or(-1) < 0
            && r.minor().unwrap_or(-1) < 0
            && {
                let a = r.access().as_deref().unwrap_or("rwm");
                a.len() == 3 && "rwm".chars().all(|c| a.contains(c))
            }
    };
    for (i, r) in rules.iter().enumerate() {
        if r.allow() || (i == 0 && deny_all(r)) {
            continue;
        }
        let rule = rule_line(r)?.unwrap_or_else(|| format!("{r:?}"));
        return Err(CgroupError::DevicesUnenforceable {
            rule: format!("deny {rule}"),
        });
    }
    if rules.first().is_some_and(deny_all) {
        tracing::warn!("device cgroup rules are not enforced on cgroup v2 (no BPF program yet)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(json: &str) -> Vec<LinuxDeviceCgroup> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn default_deny_then_allows_is_accepted() {
        check(&rules(r#"[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"}]"#))
            .unwrap();
        check(&rules(r#"[{"allow":true,"type":"a"}]"#)).unwrap();
        check(&[]).unwrap();
    }

    #[test]
    fn specific_deny_is_an_error() {
        let err = check(&rules(
            r#"[{"allow":true},{"allow":false,"type":"b","major":8,"minor":0,"access":"w"}]"#,
        ))
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "device rule `deny b 8:0 w` cannot be enforced on cgroup v2: BPF device programs are not supported yet"
        );
        assert!(check(&rules(r#"[{"allow":false,"access":"r"}]"#)).is_err());
    }
}
