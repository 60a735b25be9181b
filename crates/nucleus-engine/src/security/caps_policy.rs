//! Capabilities policy files (TOML) → the OCI `process.capabilities` sets.
//! Parsing only: dropping and raising capabilities belongs to the child.
//!
//! ```toml
//! [bounding]
//! keep = ["CAP_NET_BIND_SERVICE", "chown"]
//! [effective]
//! keep = ["net_bind_service"]
//! ```
//!
//! Names may carry the `CAP_` prefix or not, in any case. A missing table is
//! the empty set, so a policy keeps only what it names.

use super::policy_error::PolicyError;
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};
use serde::Deserialize;
use std::str::FromStr;

const KIND: &str = "capabilities";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CapsFile {
    bounding: Option<CapTable>,
    effective: Option<CapTable>,
    permitted: Option<CapTable>,
    inheritable: Option<CapTable>,
    ambient: Option<CapTable>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CapTable {
    #[serde(default)]
    keep: Vec<String>,
}

/// Parses a capabilities policy. Every set is `Some`: absent tables are
/// empty, never "unchanged".
pub fn parse_caps_policy(text: &str) -> Result<LinuxCapabilities, PolicyError> {
    let file: CapsFile =
        toml::from_str(text).map_err(|err| PolicyError::from_toml(KIND, text, &err))?;
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(to_set("bounding", file.bounding)?));
    caps.set_effective(Some(to_set("effective", file.effective)?));
    caps.set_permitted(Some(to_set("permitted", file.permitted)?));
    caps.set_inheritable(Some(to_set("inheritable", file.inheritable)?));
    caps.set_ambient(Some(to_set("ambient", file.ambient)?));
    Ok(caps)
}

fn to_set(table: &'static str, value: Option<CapTable>) -> Result<Capabilities, PolicyError> {
    value
        .map(|t| t.keep)
        .unwrap_or_default()
        .iter()
        .map(|name| {
            parse_capability(name).ok_or_else(|| PolicyError::ParseCapability {
                table,
                value: name.clone(),
            })
        })
        .collect()
}

/// `CAP_SYS_ADMIN`, `sys_admin` and `Cap_Sys_Admin` are the same capability.
fn parse_capability(name: &str) -> Option<Capability> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    // oci-spec's FromStr takes the bare SCREAMING_SNAKE_CASE name.
    Capability::from_str(bare).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_tables_with_and_without_prefix() {
        let caps = parse_caps_policy(
            r#"
            [bounding]
            keep = ["CAP_NET_BIND_SERVICE", "chown", "Cap_Kill"]
            [effective]
            keep = ["net_bind_service"]
            [permitted]
            keep = ["NET_BIND_SERVICE"]
            [ambient]
            keep = []
            "#,
        )
        .expect("valid policy");
        let bounding = caps.bounding().as_ref().expect("bounding");
        assert_eq!(bounding.len(), 3);
        assert!(bounding.contains(&Capability::NetBindService));
        assert!(bounding.contains(&Capability::Chown));
        assert!(bounding.contains(&Capability::Kill));
        let one = Capabilities::from([Capability::NetBindService]);
        assert_eq!(caps.effective().as_ref(), Some(&one));
        assert_eq!(caps.permitted().as_ref(), Some(&one));
        // Missing and empty tables are both the empty set.
        assert_eq!(caps.inheritable().as_ref(), Some(&Capabilities::new()));
        assert_eq!(caps.ambient().as_ref(), Some(&Capabilities::new()));
    }

    #[test]
    fn empty_policy_drops_everything() {
        let caps = parse_caps_policy("").expect("empty policy");
        for set in [caps.bounding(), caps.effective(), caps.permitted()] {
            assert_eq!(set.as_ref(), Some(&Capabilities::new()));
        }
    }

    #[test]
    fn unknown_capability_names_table_and_value() {
        let err = parse_caps_policy("[effective]\nkeep = [\"chown\", \"CAP_FLY\"]\n")
            .expect_err("unknown cap");
        assert_eq!(
            err.to_string(),
            "capabilities policy: unknown capability `CAP_FLY` in `[effective] keep`"
        );
    }

    #[test]
    fn malformed_toml_names_the_line() {
        let err = parse_caps_policy("[bounding]\nkeep = [\"chown\"\n[effective]\n")
            .expect_err("malformed");
        let msg = err.to_string();
        assert!(
            msg.starts_with("invalid capabilities policy at line "),
            "{msg}"
        );
        assert!(
            matches!(&err, PolicyError::ParseToml { location, .. } if location == "line 2" || location == "line 3"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_table_or_key_is_an_error() {
        let err = parse_caps_policy("[bounding]\nkeep = []\n\n[efective]\nkeep = []\n")
            .expect_err("typo table");
        let msg = err.to_string();
        assert!(msg.contains("line 4") && msg.contains("efective"), "{msg}");
        let err = parse_caps_policy("[bounding]\ndrop = [\"chown\"]\n").expect_err("typo key");
        let msg = err.to_string();
        assert!(msg.contains("line 2") && msg.contains("drop"), "{msg}");
    }
}
