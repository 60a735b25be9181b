//! Policy files pinned by SHA-256 (production mode): read a policy file once
//! and refuse it when its digest is not the one the operator gave. Owns only
//! reading and hashing; parsing belongs to the policy modules.

use super::policy_error::PolicyError;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// Policy files are small; a larger one is a mistake (or `/dev/zero`).
const MAX_POLICY_BYTES: u64 = 4 << 20;

/// Reads a policy file; when `expected_sha256` is given (64 hex chars,
/// case-insensitive), refuses a file whose SHA-256 differs.
///
/// The digest covers the exact bytes read, and the same bytes are returned,
/// so the policy checked is the policy used.
pub fn read_pinned(path: &Path, expected_sha256: Option<&str>) -> Result<String, PolicyError> {
    // Check the pin before touching the file: a typo is the likelier error.
    let expected = expected_sha256.map(parse_pin).transpose()?;

    let file = File::open(path).map_err(|source| PolicyError::ReadPolicy {
        path: path.to_owned(),
        source,
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_POLICY_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| PolicyError::ReadPolicy {
            path: path.to_owned(),
            source,
        })?;
    if bytes.len() as u64 > MAX_POLICY_BYTES {
        return Err(PolicyError::CheckPolicySize {
            path: path.to_owned(),
            max: MAX_POLICY_BYTES,
        });
    }

    if let Some(expected) = expected {
        let actual = sha256_hex(&bytes);
        if actual != expected {
            return Err(PolicyError::CheckPin {
                path: path.to_owned(),
                actual,
                expected,
            });
        }
    }
    String::from_utf8(bytes).map_err(|source| PolicyError::DecodePolicy {
        path: path.to_owned(),
        source,
    })
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    let mut hex = String::with_capacity(digest.len() * 2);
    for byte in digest {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// Validates a pin and lowercases it for comparison.
fn parse_pin(value: &str) -> Result<String, PolicyError> {
    if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(PolicyError::ParsePin {
            value: value.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sha256("abc"), FIPS 180-2 appendix B.1.
    const ABC_SHA256: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    fn policy_file(content: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, content).expect("write policy");
        (dir, path)
    }

    #[test]
    fn sha256_hex_matches_known_vector() {
        assert_eq!(sha256_hex(b"abc"), ABC_SHA256);
    }

    #[test]
    fn pinned_match_returns_text() {
        let (_dir, path) = policy_file("abc");
        assert_eq!(read_pinned(&path, Some(ABC_SHA256)).expect("match"), "abc");
        let upper = ABC_SHA256.to_ascii_uppercase();
        assert_eq!(
            read_pinned(&path, Some(&upper)).expect("case-insensitive"),
            "abc"
        );
        assert_eq!(read_pinned(&path, None).expect("unpinned"), "abc");
    }

    #[test]
    fn pinned_mismatch_prints_both_hashes() {
        let (_dir, path) = policy_file("abd");
        let err = read_pinned(&path, Some(ABC_SHA256)).expect_err("mismatch");
        let actual = sha256_hex(b"abd");
        assert_eq!(
            err.to_string(),
            format!(
                "policy `{}` has sha256 `{actual}`, expected `{ABC_SHA256}`",
                path.display()
            )
        );
    }

    #[test]
    fn bad_hex_pin_is_refused() {
        let (_dir, path) = policy_file("abc");
        for bad in [
            "abc",
            &ABC_SHA256.replace('a', "g"),
            &format!("{ABC_SHA256}00"),
        ] {
            let err = read_pinned(&path, Some(bad)).expect_err("bad pin");
            assert_eq!(
                err.to_string(),
                format!("expected sha256 `{bad}` is not 64 hex digits")
            );
        }
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = read_pinned(Path::new("/nonexistent/policy.toml"), None).expect_err("missing");
        assert_eq!(
            err.to_string(),
            "failed to read policy `/nonexistent/policy.toml`"
        );
    }
}
