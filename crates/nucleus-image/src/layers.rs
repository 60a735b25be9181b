//! Unpacked layers: one directory per uncompressed digest (`diff_id`)
//! under `layers/`, made once and shared by every image that has the
//! layer. A layer is unpacked into `layers/.tmp-*` under a per-digest lock
//! and renamed into place only when complete and its uncompressed digest
//! matched, so nobody sees a partial layer and concurrent pulls do the
//! work once.

use std::fs;
use std::io::{BufRead, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::content::{check_digest, ContentStore};
use crate::digest::Digest;
use crate::error::{ImageError, Result};
use crate::lock::FileLock;
use crate::records::LayerRecord;

#[derive(Debug, Clone)]
pub struct LayerStore {
    dir: PathBuf,
    locks: PathBuf,
}

impl LayerStore {
    pub fn open(root: &Path) -> Result<Self> {
        let dir = root.join("layers");
        let locks = root.join("locks");
        for d in [&dir, &locks] {
            fs::create_dir_all(d).map_err(ImageError::fs("create directory", d))?;
        }
        Ok(Self { dir, locks })
    }

    /// The directory of the layer with this uncompressed digest.
    pub fn path(&self, diff_id: &Digest) -> PathBuf {
        self.dir.join(diff_id.hex())
    }

    pub fn locks(&self) -> &Path {
        &self.locks
    }

    /// Unpacks `layer` from `content` unless already done; returns its directory.
    pub fn ensure(&self, content: &ContentStore, layer: &LayerRecord) -> Result<PathBuf> {
        let dest = self.path(&layer.diff_id);
        if dest.is_dir() {
            return Ok(dest);
        }
        let _lock =
            FileLock::exclusive(&self.locks.join(format!("layer-{}", layer.diff_id.hex())))?;
        if dest.is_dir() {
            return Ok(dest);
        }
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempdir_in(&self.dir)
            .map_err(ImageError::fs("create directory in", &self.dir))?;
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755))
            .map_err(ImageError::fs("chmod", tmp.path()))?;
        let diff = match crate::rootless::unpack_in_helper(
            &content.path(&layer.digest),
            tmp.path(),
            &layer.digest.to_string(),
        ) {
            Some(d) => d,
            None => crate::rootless::unpack_blob(
                &content.path(&layer.digest),
                tmp.path(),
                &layer.digest,
            ),
        };
        // Its files may belong to subordinate ids: removed as they were made.
        let tmp = tmp.keep();
        let checked = diff.and_then(|d| {
            check_digest(
                &format!("uncompressed layer `{}`", layer.digest),
                &layer.diff_id,
                &d,
            )
        });
        if let Err(e) = checked {
            if let Err(rm) = Self::remove_dir(&tmp) {
                tracing::warn!(error = %rm, "layer: could not remove a failed unpack");
            }
            return Err(e);
        }
        let kept = tmp;
        fs::rename(&kept, &dest).map_err(ImageError::fs("rename into place", &dest))?;
        tracing::debug!(layer = %layer.digest, path = %dest.display(), "layer unpacked");
        Ok(dest)
    }

    /// Every unpacked layer's diff_id, and left-over temporary directories.
    pub fn list(&self) -> Result<(Vec<Digest>, Vec<PathBuf>)> {
        let rd = fs::read_dir(&self.dir).map_err(ImageError::fs("list", &self.dir))?;
        let (mut done, mut tmp) = (Vec::new(), Vec::new());
        for e in rd.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            match Digest::from_hex(&name) {
                Ok(d) => done.push(d),
                Err(_) if name.starts_with(".tmp-") => tmp.push(e.path()),
                Err(_) => {}
            }
        }
        Ok((done, tmp))
    }

    /// Removes a layer directory (called with the store locked exclusively).
    pub fn remove_dir(path: &Path) -> Result<()> {
        crate::rootless::remove_trees(&[path])
    }
}

/// The tar stream of a layer blob: gzip is detected by its magic number
/// (docker-archives mislabel it), as is zstd.
pub fn decompress<R: BufRead + Send + 'static>(
    mut r: R,
    digest: &Digest,
) -> Result<Box<dyn Read + Send>> {
    let head = r.fill_buf().map_err(|e| ImageError::Fs {
        action: "read layer blob",
        path: PathBuf::from(digest.to_string()),
        source: e,
    })?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(r)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let z = zstd::stream::read::Decoder::with_buffer(r).map_err(|e| ImageError::Fs {
            action: "start zstd decoder for layer blob",
            path: PathBuf::from(digest.to_string()),
            source: e,
        })?;
        Ok(Box::new(z))
    } else {
        Ok(Box::new(r))
    }
}
