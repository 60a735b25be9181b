//! Container ids and names for the docker-like verbs. Ids are 64 random hex
//! digits; names are claimed through the engine (`StateRoot::claim_name`).
//!
//! The engine treats a name whose container directory does not exist as
//! stale and takes it over, but between our claim and the engine creating
//! that directory the claim is only ours. So claims are made under a lock
//! on `<root>/.bundles/.names.lock`, and a name whose owner's bundle
//! directory exists (and is young) counts as taken.

use super::bundle::{bundle_path, BUNDLES_DIR};
use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};
use nucleus_engine::state::StateRoot;
use nucleus_engine::EngineError;
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::time::Duration;

/// How long a bundle without a container directory may be "being created".
const CLAIM_GRACE: Duration = Duration::from_secs(60);

/// A fresh id: 32 random bytes from /dev/urandom, in hex.
pub fn new_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).context("read /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Claims `name` for `id`, whose bundle directory already exists.
pub fn claim(root: &StateRoot, name: &str, id: &str) -> Result<(), EngineError> {
    let _lock = lock(root)?;
    let path = root.path().join(".names").join(name);
    if let Ok(owner) = fs::read_to_string(&path) {
        if root.name_owner(name).is_none() && in_flight(root, &owner) {
            return Err(EngineError::NameInUse { name: name.to_string() });
        }
    }
    root.claim_name(name, id)
}

/// Whether `owner`'s bundle exists without a container (yet) and is recent.
fn in_flight(root: &StateRoot, owner: &str) -> bool {
    let Ok(meta) = fs::metadata(bundle_path(root.path(), owner)) else { return false };
    meta.modified().ok().and_then(|m| m.elapsed().ok()).is_some_and(|age| age < CLAIM_GRACE)
}

fn lock(root: &StateRoot) -> Result<Flock<File>, EngineError> {
    let dir = root.path().join(BUNDLES_DIR);
    let io = |op, p: &std::path::Path, e| EngineError::Io { op, path: p.to_path_buf(), source: e };
    fs::DirBuilder::new().recursive(true).mode(0o711).create(&dir).map_err(|e| io("create", &dir, e))?;
    let path = dir.join(".names.lock");
    let file = OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).custom_flags(libc::O_CLOEXEC).open(&path).map_err(|e| io("open", &path, e))?;
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| io("lock", &path, errno.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        super::super::bundle::create_dir(tmp.path(), "aaa").unwrap();
        claim(&root, "web", "aaa").unwrap();
        // No container directory yet for `aaa`, but its bundle is fresh.
        assert!(matches!(claim(&root, "web", "bbb"), Err(EngineError::NameInUse { .. })));
        // Released (a failed create does this), the name is free again.
        fs::remove_dir_all(bundle_path(tmp.path(), "aaa")).unwrap();
        root.release_name("web", "aaa");
        claim(&root, "web", "bbb").unwrap();
    }
}
