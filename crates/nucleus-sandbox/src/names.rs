//! Container ids and names for the docker-like verbs. Ids are 64 random hex
//! digits; names are claimed through the engine (`StateRoot::claim_name`),
//! which is atomic and counts a fresh claim as live even before its
//! container's directory exists.

use crate::error::{Result, SandboxError};
use nucleus_engine::state::StateRoot;
use std::fs::File;
use std::io::Read;

/// A fresh id: 32 random bytes from /dev/urandom, in hex.
pub fn new_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| SandboxError::io("read", "/dev/urandom", e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Claims `name` for `id`.
pub fn claim(root: &StateRoot, name: &str, id: &str) -> Result<()> {
    root.claim_name(name, id)
        .map_err(|source| SandboxError::ClaimName {
            name: name.to_string(),
            source: Box::new(source),
        })
}

/// The container id that `query` (exact id, name, or unique id prefix) names.
pub fn resolve(root: &StateRoot, query: &str) -> Result<String> {
    root.resolve(query).map_err(|source| SandboxError::Resolve {
        query: query.to_string(),
        source: Box::new(source),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::bundle_path;
    use nucleus_engine::EngineError;
    use std::fs;

    #[test]
    fn ids_are_64_hex() {
        let a = new_id().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, new_id().unwrap());
    }

    #[test]
    fn a_name_being_created_is_taken() {
        let tmp = tempfile::tempdir().unwrap();
        let root = StateRoot::new(tmp.path());
        crate::bundle::create_dir(tmp.path(), "aaa").unwrap();
        claim(&root, "web", "aaa").unwrap();
        // No container directory yet for `aaa`, but its bundle is fresh.
        assert!(matches!(
            claim(&root, "web", "bbb"),
            Err(SandboxError::ClaimName { source, .. }) if matches!(*source, EngineError::NameInUse { .. })
        ));
        // Released (a failed create does this), the name is free again.
        fs::remove_dir_all(bundle_path(tmp.path(), "aaa")).unwrap();
        root.release_name("web", "aaa");
        claim(&root, "web", "bbb").unwrap();
    }
}
