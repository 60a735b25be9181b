//! The image index: one record per image (keyed by manifest digest) with
//! its config, layers and tags, kept in `index.json`. Every change is a
//! read-modify-write under `index.lock`, written to a temporary file and
//! renamed, so readers never see a torn index.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{ImageError, Result};
use crate::lock::FileLock;

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Digest of the blob as stored (compressed or not).
    pub digest: Digest,
    pub media_type: String,
    /// Size of the blob.
    pub size: u64,
    /// Digest of the uncompressed tar (the config's `rootfs.diff_ids`);
    /// names the unpacked directory.
    pub diff_id: Digest,
}

/// One image: a platform manifest and what it points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub manifest: Digest,
    /// The config blob's digest, which is the image id (as Docker shows it).
    pub config: Digest,
    pub layers: Vec<LayerRecord>,
    /// Full references (`docker.io/library/busybox:latest`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// `name@sha256:…` of the manifest as the registry named it.
    #[serde(default)]
    pub repo_digests: Vec<String>,
    /// The config's `created`, if any.
    #[serde(default)]
    pub created: Option<String>,
    /// Total size of the blobs.
    pub size: u64,
}

impl ImageRecord {
    pub fn id(&self) -> &Digest {
        &self.config
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct IndexFile {
    images: BTreeMap<String, ImageRecord>,
}

/// `index.json` and its lock.
#[derive(Debug, Clone)]
pub struct Index {
    path: PathBuf,
    lock: PathBuf,
}

impl Index {
    pub fn new(root: &Path) -> Self {
        Self {
            path: root.join("index.json"),
            lock: root.join("index.lock"),
        }
    }

    pub fn list(&self) -> Result<Vec<ImageRecord>> {
        Ok(self.read()?.images.into_values().collect())
    }

    fn read(&self) -> Result<IndexFile> {
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| ImageError::ParseJson {
                what: format!("`{}`", self.path.display()),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(IndexFile::default()),
            Err(e) => Err(ImageError::fs("read", &self.path)(e)),
        }
    }

    /// Applies `f` to the index under its lock and writes the result.
    pub fn update<T>(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, ImageRecord>) -> Result<T>,
    ) -> Result<T> {
        let _lock = FileLock::exclusive(&self.lock)?;
        let mut file = self.read()?;
        let out = f(&mut file.images)?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::Builder::new()
            .prefix(".index-")
            .tempfile_in(dir)
            .map_err(ImageError::fs("create temporary file in", dir))?;
        let bytes = serde_json::to_vec_pretty(&file).map_err(|source| ImageError::ParseJson {
            what: "the image index".into(),
            source,
        })?;
        tmp.write_all(&bytes)
            .map_err(ImageError::fs("write", tmp.path().to_path_buf()))?;
        tmp.persist(&self.path).map_err(|e| ImageError::Fs {
            action: "replace",
            path: self.path.clone(),
            source: e.error,
        })?;
        Ok(out)
    }

    /// Adds `record` (merging tags into an existing one) and moves each of
    /// its tags away from any other image.
    pub fn register(&self, record: ImageRecord) -> Result<()> {
        self.update(|images| {
            for other in images.values_mut() {
                if other.manifest != record.manifest {
                    other.tags.retain(|t| !record.tags.contains(t));
                }
            }
            match images.get_mut(&record.manifest.to_string()) {
                Some(existing) => {
                    for t in &record.tags {
                        if !existing.tags.contains(t) {
                            existing.tags.push(t.clone());
                        }
                    }
                    for d in &record.repo_digests {
                        if !existing.repo_digests.contains(d) {
                            existing.repo_digests.push(d.clone());
                        }
                    }
                }
                None => {
                    images.insert(record.manifest.to_string(), record);
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: u8, tags: &[&str]) -> ImageRecord {
        ImageRecord {
            manifest: Digest::of(&[n]),
            config: Digest::of(&[n, n]),
            layers: vec![],
            tags: tags.iter().map(|s| s.to_string()).collect(),
            repo_digests: vec![],
            created: None,
            size: 0,
        }
    }

    #[test]
    fn a_tag_moves_to_the_newest_image() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::new(dir.path());
        index.register(rec(1, &["a:latest", "a:1"])).unwrap();
        index.register(rec(2, &["a:latest"])).unwrap();
        let list = index.list().unwrap();
        let one = list
            .iter()
            .find(|r| r.manifest == Digest::of(&[1]))
            .unwrap();
        let two = list
            .iter()
            .find(|r| r.manifest == Digest::of(&[2]))
            .unwrap();
        assert_eq!(one.tags, vec!["a:1"]);
        assert_eq!(two.tags, vec!["a:latest"]);
    }
}
