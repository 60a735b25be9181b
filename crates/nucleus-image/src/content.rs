//! The content store: immutable blobs under `blobs/sha256/<hex>`, verified
//! as they arrive. Bytes go to a temporary file in `ingest/` (same
//! filesystem), are hashed on the way, and are renamed into place only when
//! the digest (and the size, when known) match, so a half-written or
//! corrupted blob is never visible under a digest.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::digest::{Digest, HashingWriter};
use crate::error::{ImageError, Result};

/// Blobs addressed by digest.
#[derive(Debug, Clone)]
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

impl ContentStore {
    /// Opens (creating) the store under `root`.
    pub fn open(root: &Path) -> Result<Self> {
        let blobs = root.join("blobs").join("sha256");
        let ingest = root.join("ingest");
        for dir in [&blobs, &ingest] {
            fs::create_dir_all(dir).map_err(ImageError::fs("create directory", dir))?;
        }
        Ok(Self { blobs, ingest })
    }

    /// Where the blob `digest` lives (whether or not it is present).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    pub fn has(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// The blob's size, if present.
    pub fn size(&self, digest: &Digest) -> Option<u64> {
        fs::metadata(self.path(digest)).ok().map(|m| m.len())
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.path(digest);
        File::open(&path).map_err(ImageError::fs("open blob", path))
    }

    /// Reads a (small) blob whole.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.path(digest);
        fs::read(&path).map_err(ImageError::fs("read blob", path))
    }

    /// Starts writing a blob.
    pub fn writer(&self) -> Result<Ingest> {
        let tmp = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&self.ingest)
            .map_err(ImageError::fs("create ingest file in", &self.ingest))?;
        Ok(Ingest {
            w: HashingWriter::new(tmp),
            blobs: self.blobs.clone(),
        })
    }

    /// Stores `bytes`, checking them against `expected` when given.
    pub fn put(&self, bytes: &[u8], expected: Option<&Digest>, what: &str) -> Result<Digest> {
        let digest = Digest::of(bytes);
        if let Some(e) = expected {
            check_digest(what, e, &digest)?;
        }
        if !self.has(&digest) {
            let mut w = self.writer()?;
            w.write_all(bytes)
                .map_err(ImageError::fs("write ingest file in", &self.ingest))?;
            w.commit(Some(&digest), None, what)?;
        }
        Ok(digest)
    }

    /// Copies a whole reader into the store.
    pub fn put_reader(
        &self,
        r: &mut dyn Read,
        expected: Option<&Digest>,
        size: Option<u64>,
        what: &str,
    ) -> Result<Digest> {
        let mut w = self.writer()?;
        io::copy(r, &mut w).map_err(ImageError::fs("write ingest file in", &self.ingest))?;
        w.commit(expected, size, what)
    }

    /// Removes a blob; a missing one is not an error.
    pub fn remove(&self, digest: &Digest) -> Result<()> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(ImageError::fs("remove blob", path)(e))
            }
            _ => Ok(()),
        }
    }

    /// Every stored digest.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let rd = fs::read_dir(&self.blobs).map_err(ImageError::fs("list", &self.blobs))?;
        Ok(rd
            .filter_map(|e| e.ok())
            .filter_map(|e| Digest::from_hex(&e.file_name().to_string_lossy()).ok())
            .collect())
    }

    /// Removes left-over ingest files (called with the store locked exclusively).
    pub fn clear_ingest(&self) -> Result<()> {
        let rd = fs::read_dir(&self.ingest).map_err(ImageError::fs("list", &self.ingest))?;
        for e in rd.filter_map(|e| e.ok()) {
            let _ = fs::remove_file(e.path());
        }
        Ok(())
    }
}

/// `expected` and `actual` must be equal.
pub fn check_digest(what: &str, expected: &Digest, actual: &Digest) -> Result<()> {
    if expected == actual {
        Ok(())
    } else {
        Err(ImageError::DigestMismatch {
            what: what.to_string(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        })
    }
}

/// A blob being written; nothing is visible until `commit` succeeds, and a
/// dropped `Ingest` removes its temporary file.
#[derive(Debug)]
pub struct Ingest {
    w: HashingWriter<NamedTempFile>,
    blobs: PathBuf,
}

impl Write for Ingest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.w.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

impl Ingest {
    /// Checks what was written so far against `expected` (digest) and
    /// `size`, without making it visible. Returns the digest.
    pub fn verify(
        &self,
        expected: Option<&Digest>,
        size: Option<u64>,
        what: &str,
    ) -> Result<Digest> {
        let digest = self.w.digest();
        if let Some(e) = expected {
            check_digest(what, e, &digest)?;
        }
        if let Some(want) = size {
            if want != self.w.len() {
                return Err(ImageError::SizeMismatch {
                    what: what.to_string(),
                    digest: digest.to_string(),
                    expected: want,
                    actual: self.w.len(),
                });
            }
        }
        Ok(digest)
    }

    /// Verifies what was written against `expected` (digest) and `size`,
    /// then renames it into place. Returns the digest.
    pub fn commit(
        self,
        expected: Option<&Digest>,
        size: Option<u64>,
        what: &str,
    ) -> Result<Digest> {
        let digest = self.verify(expected, size, what)?;
        let (_, _, tmp) = self.w.finish();
        let dest = self.blobs.join(digest.hex());
        if dest.is_file() {
            return Ok(digest);
        }
        tmp.persist(&dest).map_err(|e| ImageError::Fs {
            action: "store blob",
            path: dest,
            source: e.error,
        })?;
        Ok(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_that_does_not_match_is_refused_and_invisible() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let good = Digest::of(b"hello");
        let err = store
            .put(b"hellO", Some(&good), "layer")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&good.to_string()) && err.contains(&Digest::of(b"hellO").to_string()),
            "{err}"
        );
        assert!(!store.has(&good));
        assert!(store.list().unwrap().is_empty());
        assert_eq!(
            fs::read_dir(dir.path().join("ingest")).unwrap().count(),
            0,
            "ingest file left behind"
        );
        assert_eq!(store.put(b"hello", Some(&good), "layer").unwrap(), good);
        assert_eq!(store.read(&good).unwrap(), b"hello");
    }

    #[test]
    fn a_short_blob_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let mut w = store.writer().unwrap();
        w.write_all(b"abc").unwrap();
        let err = w.commit(None, Some(4), "config").unwrap_err().to_string();
        assert!(
            err.contains("3 bytes received") && err.contains("says 4"),
            "{err}"
        );
        assert!(store.list().unwrap().is_empty());
    }
}
