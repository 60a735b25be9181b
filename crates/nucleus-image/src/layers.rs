//! Unpacked layers: one directory per uncompressed digest (`diff_id`)
//! under `layers/`, made once and shared by every image that has the
//! layer. A layer is unpacked into `layers/.tmp-*` under a per-digest lock
//! and renamed into place only when complete and its uncompressed digest
//! matched, so nobody sees a partial layer and concurrent pulls do the
//! work once.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::content::{check_digest, ContentStore};
use crate::digest::{Digest, HashingReader};
use crate::error::{ImageError, Result};
use crate::lock::FileLock;
use crate::records::LayerRecord;
use crate::unpack::unpack_layer;

#[derive(Debug, Clone)]
pub struct LayerStore {
    dir: PathBuf,
    locks: PathBuf,
    /// Copies with shifted owners (`crate::shift`), made when first needed.
    shifted: PathBuf,
}

impl LayerStore {
    pub fn open(root: &Path) -> Result<Self> {
        let dir = root.join("layers");
        let locks = root.join("locks");
        for d in [&dir, &locks] {
            fs::create_dir_all(d).map_err(ImageError::fs("create directory", d))?;
        }
        let shifted = root.join("shifted");
        Ok(Self {
            dir,
            locks,
            shifted,
        })
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
        let _lock = self.lock(&layer.diff_id)?;
        if dest.is_dir() {
            return Ok(dest);
        }
        if crate::rootless::is_active() {
            return self.unpack_rootless(content, layer, &dest);
        }
        let blob = content.open_blob(&layer.digest)?;
        self.stage(BufReader::with_capacity(BLOB_BUFFER, blob), layer)?
            .publish()
    }

    /// The copy of the layer with this diff_id for the id maps with this key.
    fn shifted_path(&self, diff_id: &Digest, key: &str) -> PathBuf {
        self.shifted.join(format!("{}-{key}", diff_id.hex()))
    }

    /// The layer's copy with owners shifted for `shift`, made from the
    /// unpacked layer unless already there (`crate::shift`).
    pub fn ensure_shifted(
        &self,
        content: &ContentStore,
        layer: &LayerRecord,
        shift: &crate::IdShift,
    ) -> Result<PathBuf> {
        let key = shift.key();
        let dest = self.shifted_path(&layer.diff_id, &key);
        if dest.is_dir() {
            return Ok(dest);
        }
        let base = self.ensure(content, layer)?;
        let _lock = FileLock::exclusive(
            &self
                .locks
                .join(format!("shift-{}-{key}", layer.diff_id.hex())),
        )?;
        if dest.is_dir() {
            return Ok(dest);
        }
        fs::create_dir_all(&self.shifted)
            .map_err(ImageError::fs("create directory", &self.shifted))?;
        let tmp = temp_dir_in(&self.shifted)?;
        let t0 = std::time::Instant::now();
        let copied = crate::rootless::shift_layer(&base, tmp.path(), shift);
        // Its files belong to subordinate ids: removed as they were made.
        let tmp = tmp.keep();
        let done = match copied {
            Ok(done) => done,
            Err(e) => {
                if let Err(rm) = Self::remove_dir(&tmp) {
                    tracing::warn!(error = %rm, "layer: could not remove a failed copy");
                }
                return Err(e.into_image_error(&layer.digest.to_string()));
            }
        };
        if let Err(e) = fs::rename(&tmp, &dest) {
            let _ = Self::remove_dir(&tmp);
            return Err(ImageError::fs("rename into place", &dest)(e));
        }
        tracing::debug!(
            layer = %layer.digest,
            path = %dest.display(),
            entries = done.entries,
            bytes = done.bytes,
            elapsed_ms = t0.elapsed().as_millis(),
            "layer copied with shifted owners"
        );
        Ok(dest)
    }

    /// Shifted copies as (diff hex, path), and left-over temporaries.
    pub fn list_shifted(&self) -> Result<ShiftedList> {
        let rd = match fs::read_dir(&self.shifted) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
            Err(e) => return Err(ImageError::fs("list", &self.shifted)(e)),
        };
        let (mut done, mut tmp) = (Vec::new(), Vec::new());
        for e in rd.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some((hex, _)) = crate::shift::parse_name(&name) {
                done.push((hex.to_string(), e.path()));
            } else if name.starts_with(".tmp-") {
                tmp.push(e.path());
            }
        }
        Ok((done, tmp))
    }

    /// Removes `shifted/` once empty (nothing is left of a pruned store).
    pub fn remove_shifted_dir_if_empty(&self) {
        let _ = fs::remove_dir(&self.shifted);
    }

    /// As an ordinary user: unpacked from the stored blob by the helper in
    /// the user namespace (or in this process without a subordinate range).
    fn unpack_rootless(
        &self,
        content: &ContentStore,
        layer: &LayerRecord,
        dest: &Path,
    ) -> Result<PathBuf> {
        let tmp = self.temp_dir()?;
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
        fs::rename(&tmp, dest).map_err(ImageError::fs("rename into place", dest))?;
        tracing::debug!(layer = %layer.digest, path = %dest.display(), "layer unpacked");
        Ok(dest.to_path_buf())
    }

    /// A `.tmp-*` directory (mode 0755) next to the layers, for one unpack.
    fn temp_dir(&self) -> Result<tempfile::TempDir> {
        temp_dir_in(&self.dir)
    }

    /// The lock that serialises the unpacking of one layer.
    pub(crate) fn lock(&self, diff_id: &Digest) -> Result<FileLock> {
        FileLock::exclusive(&self.locks.join(format!("layer-{}", diff_id.hex())))
    }

    /// Unpacks the layer blob stream `blob` (compressed or not) into a
    /// temporary directory next to the layer's, hashing the tar stream on
    /// the way. The caller holds the layer's lock; nothing is visible until
    /// [`Staged::publish`].
    pub(crate) fn stage<R: BufRead>(&self, blob: R, layer: &LayerRecord) -> Result<Staged<R>> {
        let tmp = self.temp_dir()?;
        let reader = HashingReader::new(Decoder::new(blob, &layer.digest)?);
        let reader = unpack_layer(reader, tmp.path(), &layer.digest.to_string())?;
        let (actual, decoder) = reader.into_parts();
        Ok(Staged {
            tmp,
            dest: self.path(&layer.diff_id),
            layer: layer.digest.clone(),
            expected: layer.diff_id.clone(),
            actual,
            blob: decoder.into_inner(),
        })
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

/// Shifted copies as (diff hex, path), and left-over temporaries.
pub type ShiftedList = (Vec<(String, PathBuf)>, Vec<PathBuf>);

/// A `.tmp-*` directory (mode 0755) in `dir`.
fn temp_dir_in(dir: &Path) -> Result<tempfile::TempDir> {
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempdir_in(dir)
        .map_err(ImageError::fs("create directory in", dir))?;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755))
        .map_err(ImageError::fs("chmod", tmp.path()))?;
    Ok(tmp)
}

/// A layer unpacked into its temporary directory, not yet in place.
pub(crate) struct Staged<R> {
    tmp: tempfile::TempDir,
    dest: PathBuf,
    layer: Digest,
    expected: Digest,
    actual: Digest,
    /// The rest of the blob stream, after the end of the tar.
    pub(crate) blob: R,
}

impl<R> Staged<R> {
    /// Separates the rest of the blob stream from the staged directory.
    pub(crate) fn take_blob(self) -> (Staged<()>, R) {
        let Staged {
            tmp,
            dest,
            layer,
            expected,
            actual,
            blob,
        } = self;
        let staged = Staged {
            tmp,
            dest,
            layer,
            expected,
            actual,
            blob: (),
        };
        (staged, blob)
    }

    /// The tar stream must have had the digest the image config names.
    pub(crate) fn check(&self) -> Result<()> {
        check_digest(
            &format!("uncompressed layer `{}`", self.layer),
            &self.expected,
            &self.actual,
        )
    }

    /// Checks the digest and renames the directory into place.
    pub(crate) fn publish(self) -> Result<PathBuf> {
        self.check()?;
        let kept = self.tmp.keep();
        if let Err(e) = fs::rename(&kept, &self.dest) {
            let _ = fs::remove_dir_all(&kept);
            return Err(ImageError::fs("rename into place", &self.dest)(e));
        }
        tracing::debug!(layer = %self.layer, path = %self.dest.display(), "layer unpacked");
        Ok(self.dest)
    }
}

/// Read buffer for layer blobs.
pub(crate) const BLOB_BUFFER: usize = 1 << 20;

/// The tar stream of a layer blob: gzip is detected by its magic number
/// (docker-archives mislabel it), as is zstd. The blob reader comes back
/// with [`Decoder::into_inner`].
pub enum Decoder<R: BufRead> {
    Gzip(Box<flate2::bufread::MultiGzDecoder<R>>),
    Zstd(zstd::stream::read::Decoder<'static, R>),
    Plain(R),
}

impl<R: BufRead> Decoder<R> {
    pub fn new(mut r: R, digest: &Digest) -> Result<Self> {
        let head = r.fill_buf().map_err(|e| ImageError::Fs {
            action: "read layer blob",
            path: PathBuf::from(digest.to_string()),
            source: e,
        })?;
        if head.starts_with(&[0x1f, 0x8b]) {
            Ok(Self::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(
                r,
            ))))
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            let z = zstd::stream::read::Decoder::with_buffer(r).map_err(|e| ImageError::Fs {
                action: "start zstd decoder for layer blob",
                path: PathBuf::from(digest.to_string()),
                source: e,
            })?;
            Ok(Self::Zstd(z))
        } else {
            Ok(Self::Plain(r))
        }
    }

    pub fn into_inner(self) -> R {
        match self {
            Self::Gzip(d) => d.into_inner(),
            Self::Zstd(d) => d.finish(),
            Self::Plain(r) => r,
        }
    }
}

impl<R: BufRead> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Gzip(d) => d.read(buf),
            Self::Zstd(d) => d.read(buf),
            Self::Plain(r) => r.read(buf),
        }
    }
}
