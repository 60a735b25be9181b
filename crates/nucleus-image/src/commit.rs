//! `commit`: a container's overlay upper directory becomes a new layer on
//! top of its image, and a new image. Overlay's whiteouts (0/0 character
//! devices) become `.wh.NAME` entries and opaque directories
//! (`trusted.overlay.opaque=y`) get `.wh..wh..opq`, so the layer means on
//! any runtime what it meant in the container. The layer is an
//! uncompressed tar, so its digest is its diff_id.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use serde_json::{json, Value};

use crate::digest::{Digest, HashingWriter};
use crate::error::{ImageError, Result};
use crate::manifest::record_for;
use crate::records::ImageRecord;
use crate::reference::ImageRef;
use crate::store::ImageStore;
use crate::unpack::{OPAQUE_MARKER, OVERLAY_OPAQUE_XATTR, WHITEOUT_PREFIX};

impl ImageStore {
    /// Makes an image from `base` plus the changes in `upper`, tagged `tag`.
    pub fn commit(&self, base: &str, upper: &Path, tag: Option<&str>) -> Result<ImageRecord> {
        let tag = tag
            .map(|t| ImageRef::parse(t).map(|r| r.to_string()))
            .transpose()?;
        let _lock = self.lock_shared()?;
        let base = self.resolve(base)?;
        let mut ingest = HashingWriter::new(self.content.writer()?);
        let werr = |e: std::io::Error| ImageError::Fs {
            action: "write a layer from",
            path: upper.to_path_buf(),
            source: e,
        };
        {
            let mut tar = tar::Builder::new(&mut ingest);
            tar.follow_symlinks(false);
            let mut links = HashMap::new();
            append_tree(&mut tar, upper, Path::new(""), &mut links).map_err(werr)?;
            tar.finish().map_err(werr)?;
        }
        let (diff_id, size, w) = ingest.finish();
        let layer = w.commit(Some(&diff_id), Some(size), "committed layer")?;

        let mut config: Value =
            serde_json::from_slice(&self.content.read(&base.config)?).map_err(|source| {
                ImageError::ParseJson {
                    what: format!("image config `{}`", base.config),
                    source,
                }
            })?;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        config["created"] = json!(now);
        match config["rootfs"]["diff_ids"].as_array_mut() {
            Some(ids) => ids.push(json!(layer.to_string())),
            None => config["rootfs"] = json!({"type": "layers", "diff_ids": [layer.to_string()]}),
        }
        if !config["history"].is_array() {
            config["history"] = json!([]);
        }
        if let Some(h) = config["history"].as_array_mut() {
            h.push(json!({"created": now, "created_by": "nucleus commit"}));
        }
        let config_bytes = serde_json::to_vec(&config).map_err(|source| ImageError::ParseJson {
            what: "the committed config".into(),
            source,
        })?;
        let config_digest = self.content.put(&config_bytes, None, "committed config")?;
        let mut layers: Vec<Value> = base.layers.iter().map(|l| json!({"mediaType": l.media_type, "digest": l.digest.to_string(), "size": l.size})).collect();
        layers.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.to_string(), "size": size}));
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config_bytes.len()},
            "layers": layers,
        });
        let bytes = serde_json::to_vec(&manifest).map_err(|source| ImageError::ParseJson {
            what: "the committed manifest".into(),
            source,
        })?;
        let digest = self.content.put(&bytes, None, "committed manifest")?;
        let record = record_for(
            &self.content,
            &digest,
            tag.into_iter().collect(),
            Vec::new(),
        )?;
        for l in &record.layers {
            self.layers.ensure(&self.content, l)?;
        }
        self.index.register(record.clone())?;
        Ok(record)
    }

    /// The manifest digest of the image `container` uses, if it has a use record.
    pub fn image_of(&self, container: &str) -> Result<Option<Digest>> {
        let path = self.root().join("users").join(container);
        match fs::read_to_string(&path) {
            Ok(s) => Ok(Some(Digest::parse(s.trim())?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ImageError::fs("read", path)(e)),
        }
    }
}

/// Appends `dir` (at `rel` in the layer) and everything under it, sorted.
fn append_tree<W: Write>(
    tar: &mut tar::Builder<W>,
    dir: &Path,
    rel: &Path,
    links: &mut HashMap<(u64, u64), std::path::PathBuf>,
) -> std::io::Result<()> {
    let mut names: Vec<_> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()?;
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let rel = rel.join(&name);
        let m = fs::symlink_metadata(&path)?;
        let ft = m.file_type();
        if ft.is_char_device() && m.rdev() == 0 {
            let wh = rel.with_file_name(format!("{WHITEOUT_PREFIX}{}", name.to_string_lossy()));
            let mut h = header_from(&m, tar::EntryType::Regular);
            h.set_size(0);
            tar.append_data(&mut h, wh, std::io::empty())?;
            continue;
        }
        if ft.is_dir() {
            let mut h = header_from(&m, tar::EntryType::Directory);
            append_xattrs(tar, &path)?;
            tar.append_data(&mut h, &rel, std::io::empty())?;
            let mut v = [0u8; 4];
            if rustix::fs::lgetxattr(&path, OVERLAY_OPAQUE_XATTR, &mut v[..])
                .is_ok_and(|n| &v[..n] == b"y")
            {
                let mut h = header_from(&m, tar::EntryType::Regular);
                h.set_size(0);
                tar.append_data(&mut h, rel.join(OPAQUE_MARKER), std::io::empty())?;
            }
            append_tree(tar, &path, &rel, links)?;
        } else if ft.is_symlink() {
            let mut h = header_from(&m, tar::EntryType::Symlink);
            append_xattrs(tar, &path)?;
            tar.append_link(&mut h, &rel, fs::read_link(&path)?)?;
        } else if ft.is_file() {
            if m.nlink() > 1 {
                if let Some(first) = links.get(&(m.dev(), m.ino())) {
                    let mut h = header_from(&m, tar::EntryType::Link);
                    h.set_size(0);
                    tar.append_link(&mut h, &rel, first)?;
                    continue;
                }
                links.insert((m.dev(), m.ino()), rel.clone());
            }
            let mut h = header_from(&m, tar::EntryType::Regular);
            append_xattrs(tar, &path)?;
            tar.append_data(&mut h, &rel, File::open(&path)?)?;
        } else {
            let kind = if ft.is_char_device() {
                tar::EntryType::Char
            } else if ft.is_block_device() {
                tar::EntryType::Block
            } else if ft.is_fifo() {
                tar::EntryType::Fifo
            } else {
                continue; // sockets are not layer content
            };
            let mut h = header_from(&m, kind);
            h.set_size(0);
            h.set_device_major(rustix::fs::major(m.rdev()))?;
            h.set_device_minor(rustix::fs::minor(m.rdev()))?;
            append_xattrs(tar, &path)?;
            tar.append_data(&mut h, &rel, std::io::empty())?;
        }
    }
    Ok(())
}

/// Overlayfs's own bookkeeping (opaque, redirect, origin, ...): not content.
const OVERLAY_XATTR_PREFIX: &[u8] = b"trusted.overlay.";

/// The extended attributes of `path` (not followed), as PAX records that
/// `unpack` reads back (`SCHILY.xattr.NAME`); overlayfs's own are left out.
fn xattr_records(path: &Path) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let size = match rustix::fs::llistxattr_query(path) {
        Ok(0) => return Ok(Vec::new()),
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut names = vec![0u8; size];
    let n = rustix::fs::llistxattr(path, &mut names[..])?;
    let mut out = Vec::new();
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if name.starts_with(OVERLAY_XATTR_PREFIX) {
            continue;
        }
        let name = std::ffi::OsStr::from_bytes(name);
        let len = match rustix::fs::lgetxattr_query(path, name) {
            Ok(len) => len,
            // Removed meanwhile.
            Err(rustix::io::Errno::NODATA) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut value = vec![0u8; len];
        let len = rustix::fs::lgetxattr(path, name, &mut value[..])?;
        value.truncate(len);
        out.push((format!("SCHILY.xattr.{}", name.to_string_lossy()), value));
    }
    Ok(out)
}

/// Writes `path`'s extended attributes as a PAX header for the next entry.
fn append_xattrs<W: Write>(tar: &mut tar::Builder<W>, path: &Path) -> std::io::Result<()> {
    let records = xattr_records(path)?;
    if records.is_empty() {
        return Ok(());
    }
    tar.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
}

fn header_from(m: &fs::Metadata, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_metadata_in_mode(m, tar::HeaderMode::Complete);
    h.set_entry_type(kind);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    type Records = Vec<(String, Vec<u8>)>;

    /// Each entry's path and its `SCHILY.xattr.*` records.
    fn entries_with_xattrs(tar_bytes: &[u8]) -> Vec<(String, Records)> {
        let mut a = tar::Archive::new(tar_bytes);
        let mut out = Vec::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let mut x = Vec::new();
            if let Some(exts) = e.pax_extensions().unwrap() {
                for ext in exts {
                    let ext = ext.unwrap();
                    x.push((ext.key().unwrap().to_string(), ext.value_bytes().to_vec()));
                }
            }
            out.push((e.path().unwrap().display().to_string(), x));
        }
        out
    }

    #[test]
    fn xattrs_are_kept_and_overlay_bookkeeping_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let upper = dir.path().join("upper");
        fs::create_dir_all(upper.join("d")).unwrap();
        fs::write(upper.join("d/f"), b"x").unwrap();
        match rustix::fs::lsetxattr(
            upper.join("d/f"),
            "user.nucleus",
            b"kept",
            rustix::fs::XattrFlags::empty(),
        ) {
            Ok(()) => {}
            Err(e) => {
                eprintln!("skipped: user xattrs not supported here ({e})");
                return;
            }
        }
        // Only root may set trusted.*; without it that half is not checked.
        let as_root = rustix::fs::lsetxattr(
            upper.join("d"),
            "trusted.overlay.origin",
            b"z",
            rustix::fs::XattrFlags::empty(),
        )
        .is_ok();
        let mut tar = tar::Builder::new(Vec::new());
        append_tree(&mut tar, &upper, Path::new(""), &mut HashMap::new()).unwrap();
        let bytes = tar.into_inner().unwrap();
        let entries = entries_with_xattrs(&bytes);
        let f = entries.iter().find(|(p, _)| p == "d/f").expect("d/f");
        assert_eq!(
            f.1,
            vec![("SCHILY.xattr.user.nucleus".to_string(), b"kept".to_vec())]
        );
        if as_root {
            let d = entries.iter().find(|(p, _)| p == "d").expect("d");
            assert!(d.1.is_empty(), "overlay xattrs leaked: {:?}", d.1);
        }
    }
}
