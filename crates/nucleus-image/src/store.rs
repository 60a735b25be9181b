//! `ImageStore`: the data root and the verbs on it that need no network:
//! resolve a name, inspect, hand out an image's root (ordered layer
//! directories and parsed config), record which containers use an image,
//! remove and prune with garbage collection.
//!
//! Layout of the data root:
//! ```text
//! blobs/sha256/<hex>   verified content          ingest/     blobs being written
//! layers/<diff hex>/   unpacked layers            locks/      per-digest flocks
//! shifted/<diff hex>-<map key>/  a layer's copy with owners for another id map (rootless)
//! index.json           images and tags            users/<id>  container → image
//! store.lock           shared by writers, exclusive by rmi/prune (garbage collection)
//! ```

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::image::ImageConfiguration;

use crate::content::ContentStore;
use crate::digest::Digest;
use crate::error::{ImageError, Result};
use crate::layers::LayerStore;
use crate::lock::FileLock;
use crate::records::{ImageRecord, Index};
use crate::reference::ImageRef;
use crate::shift::IdShift;

/// The default data root.
pub const DEFAULT_DATA_ROOT: &str = "/var/lib/nucleus";

/// Images under one data root.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
    pub(crate) content: ContentStore,
    pub(crate) layers: LayerStore,
    pub(crate) index: Index,
    users: PathBuf,
}

/// What a container needs from an image.
#[derive(Debug, Clone)]
pub struct ImageRoot {
    pub record: ImageRecord,
    pub config: ImageConfiguration,
    /// Layer directories, bottom first (reverse them for `lowerdir=`).
    pub layers: Vec<PathBuf>,
}

/// The result of `remove`.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Removed {
    pub untagged: Vec<String>,
    pub deleted: Vec<String>,
}

impl ImageStore {
    /// Opens (creating) the store at `root`.
    pub fn open(root: &Path) -> Result<Self> {
        fs::create_dir_all(root).map_err(ImageError::fs("create data root", root))?;
        let users = root.join("users");
        fs::create_dir_all(&users).map_err(ImageError::fs("create directory", &users))?;
        Ok(Self {
            root: root.to_path_buf(),
            content: ContentStore::open(root)?,
            layers: LayerStore::open(root)?,
            index: Index::new(root),
            users,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Held by every writer (pull, load, commit, a run taking an image).
    pub(crate) fn lock_shared(&self) -> Result<FileLock> {
        FileLock::shared(&self.root.join("store.lock"))
    }

    fn lock_exclusive(&self) -> Result<FileLock> {
        FileLock::exclusive(&self.root.join("store.lock"))
    }

    pub fn list(&self) -> Result<Vec<ImageRecord>> {
        self.index.list()
    }

    /// Finds an image by reference (`busybox`, `x:1`, `name@sha256:…`), by
    /// image id or manifest digest, or by a unique id prefix.
    pub fn resolve(&self, name: &str) -> Result<ImageRecord> {
        find(&self.list()?, name)
    }

    /// The parsed config of an image.
    pub fn config(&self, record: &ImageRecord) -> Result<ImageConfiguration> {
        let bytes = self.content.read(&record.config)?;
        serde_json::from_slice(&bytes).map_err(|source| ImageError::ParseJson {
            what: format!("image config `{}`", record.config),
            source,
        })
    }

    /// The raw manifest bytes.
    pub fn manifest_bytes(&self, record: &ImageRecord) -> Result<Vec<u8>> {
        self.content.read(&record.manifest)
    }

    /// The image's layer directories (unpacking any that are missing) and config.
    pub fn image_root(&self, name: &str) -> Result<ImageRoot> {
        let _lock = self.lock_shared()?;
        let record = self.resolve(name)?;
        self.root_of(record)
    }

    pub(crate) fn root_of(&self, record: ImageRecord) -> Result<ImageRoot> {
        self.root_for(record, None)
    }

    /// With `shift`: the layers' copies with owners for those id maps.
    fn root_for(&self, record: ImageRecord, shift: Option<&IdShift>) -> Result<ImageRoot> {
        let config = self.config(&record)?;
        let layers = record
            .layers
            .iter()
            .map(|l| match shift {
                Some(s) => self.layers.ensure_shifted(&self.content, l, s),
                None => self.layers.ensure(&self.content, l),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ImageRoot {
            record,
            config,
            layers,
        })
    }

    /// Records that `container` uses the image `name` and returns its root;
    /// `rmi` refuses the image until `release(container)`.
    pub fn acquire(&self, name: &str, container: &str) -> Result<ImageRoot> {
        self.acquire_mapped(name, container, None)
    }

    /// As [`ImageStore::acquire`]; with `shift` (rootless, a run whose id
    /// maps are not the default), the layers are copies with owners for
    /// those maps, made once per (layer, maps) and kept until the layer goes.
    pub fn acquire_mapped(
        &self,
        name: &str,
        container: &str,
        shift: Option<&IdShift>,
    ) -> Result<ImageRoot> {
        check_container_id(container)?;
        let _lock = self.lock_shared()?;
        let record = self.resolve(name)?;
        let path = self.users.join(container);
        fs::write(&path, record.manifest.to_string()).map_err(ImageError::fs("write", &path))?;
        self.root_for(record, shift)
    }

    /// Drops `container`'s use record; a missing one is not an error.
    pub fn release(&self, container: &str) -> Result<()> {
        check_container_id(container)?;
        let path = self.users.join(container);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(ImageError::fs("remove", path)(e))
            }
            _ => Ok(()),
        }
    }

    /// Containers using the image with this manifest digest.
    pub fn users_of(&self, manifest: &Digest) -> Result<Vec<String>> {
        let rd = fs::read_dir(&self.users).map_err(ImageError::fs("list", &self.users))?;
        let want = manifest.to_string();
        Ok(rd
            .filter_map(|e| e.ok())
            .filter(|e| fs::read_to_string(e.path()).is_ok_and(|s| s.trim() == want))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect())
    }

    /// `rmi`: a reference removes that tag, and the image once no tag is
    /// left; an id removes the image (with `force`, even when it has several
    /// tags). An image in use by a container is never removed.
    pub fn remove(&self, name: &str, force: bool) -> Result<Removed> {
        let _lock = self.lock_exclusive()?;
        let record = self.resolve(name)?;
        let users = self.users_of(&record.manifest)?;
        let by_tag = ImageRef::parse(name)
            .ok()
            .map(|r| r.to_string())
            .filter(|t| record.tags.contains(t));
        let mut removed = Removed::default();
        let gone = self.index.update(|images| {
            let key = record.manifest.to_string();
            let Some(rec) = images.get_mut(&key) else {
                return Ok(false);
            };
            match &by_tag {
                Some(tag) if rec.tags.len() > 1 => {
                    rec.tags.retain(|t| t != tag);
                    removed.untagged.push(tag.clone());
                    return Ok(false);
                }
                None if rec.tags.len() > 1 && !force => {
                    return Err(ImageError::ImageHasTags {
                        name: name.to_string(),
                        tags: rec.tags.join(", "),
                    });
                }
                _ => {}
            }
            if !users.is_empty() {
                return Err(ImageError::ImageInUse {
                    name: name.to_string(),
                    containers: users.join(", "),
                });
            }
            removed.untagged.extend(rec.tags.iter().cloned());
            images.remove(&key);
            removed.deleted.push(record.config.to_string());
            Ok(true)
        })?;
        if gone {
            self.collect_garbage()?;
        }
        Ok(removed)
    }

    /// `image prune`: removes images without tags (with `all`, every image
    /// no container uses), then unreferenced blobs and layers.
    pub fn prune(&self, all: bool) -> Result<Removed> {
        let _lock = self.lock_exclusive()?;
        let mut in_use = BTreeSet::new();
        for r in self.list()? {
            if !self.users_of(&r.manifest)?.is_empty() {
                in_use.insert(r.manifest.to_string());
            }
        }
        let mut removed = Removed::default();
        self.index.update(|images| {
            images.retain(|key, r| {
                let keep = in_use.contains(key) || (!all && !r.tags.is_empty());
                if !keep {
                    removed.untagged.extend(r.tags.iter().cloned());
                    removed.deleted.push(r.config.to_string());
                }
                keep
            });
            Ok(())
        })?;
        self.collect_garbage()?;
        Ok(removed)
    }

    /// Deletes blobs, layers, locks and temporaries no image references.
    /// Only with the store lock held exclusively: no writer is running.
    fn collect_garbage(&self) -> Result<()> {
        let images = self.list()?;
        let mut blobs = BTreeSet::new();
        let mut diffs = BTreeSet::new();
        for r in &images {
            blobs.insert(r.manifest.clone());
            blobs.insert(r.config.clone());
            for l in &r.layers {
                blobs.insert(l.digest.clone());
                diffs.insert(l.diff_id.clone());
            }
        }
        for d in self.content.list()? {
            if !blobs.contains(&d) {
                self.content.remove(&d)?;
            }
        }
        let (done, tmp) = self.layers.list()?;
        for d in done.iter().filter(|d| !diffs.contains(d)) {
            LayerStore::remove_dir(&self.layers.path(d))?;
        }
        for t in tmp {
            LayerStore::remove_dir(&t)?;
        }
        let (shifted, tmp) = self.layers.list_shifted()?;
        let live: BTreeSet<&str> = diffs.iter().map(Digest::hex).collect();
        for (hex, path) in &shifted {
            if !live.contains(hex.as_str()) {
                LayerStore::remove_dir(path)?;
            }
        }
        for t in tmp {
            LayerStore::remove_dir(&t)?;
        }
        self.layers.remove_shifted_dir_if_empty();
        self.content.clear_ingest()?;
        if let Ok(rd) = fs::read_dir(self.layers.locks()) {
            for e in rd.filter_map(|e| e.ok()) {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(())
    }
}

fn check_container_id(id: &str) -> Result<()> {
    let ok = !id.is_empty() && id.len() <= 1024 && !id.contains('/') && id != "." && id != "..";
    if ok {
        Ok(())
    } else {
        Err(ImageError::InvalidContainerId { id: id.to_string() })
    }
}

/// Name lookup over `images`; see `ImageStore::resolve`.
pub(crate) fn find(images: &[ImageRecord], name: &str) -> Result<ImageRecord> {
    let not_found = || ImageError::ImageNotFound {
        name: name.to_string(),
    };
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let hits: Vec<&ImageRecord> = images
            .iter()
            .filter(|r| r.config.hex().starts_with(hex) || r.manifest.hex() == hex)
            .collect();
        match hits.len() {
            1 => return Ok(hits[0].clone()),
            0 => {}
            n => {
                return Err(ImageError::AmbiguousImage {
                    name: name.to_string(),
                    count: n,
                })
            }
        }
    }
    if let Some(full) = crate::reference::quick_normalize(name) {
        if let Some(hit) = images.iter().find(|i| i.tags.contains(&full)) {
            return Ok(hit.clone());
        }
    }
    let r = ImageRef::parse(name).map_err(|_| not_found())?;
    if let Some(d) = r.digest() {
        return images
            .iter()
            .find(|i| i.manifest.to_string() == d)
            .cloned()
            .ok_or_else(not_found);
    }
    let full = r.to_string();
    images
        .iter()
        .find(|i| i.tags.contains(&full))
        .cloned()
        .ok_or_else(not_found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: u8, tags: &[&str]) -> ImageRecord {
        ImageRecord {
            manifest: Digest::of(&[n]),
            config: Digest::of(&[n, n]),
            layers: vec![],
            tags: tags
                .iter()
                .map(|t| ImageRef::parse(t).unwrap().to_string())
                .collect(),
            repo_digests: vec![],
            created: None,
            size: 0,
        }
    }

    #[test]
    fn finds_by_tag_id_prefix_and_digest() {
        let images = vec![rec(1, &["busybox"]), rec(2, &["localhost:5000/x:1"])];
        assert_eq!(
            find(&images, "busybox:latest").unwrap().manifest,
            Digest::of(&[1])
        );
        assert_eq!(
            find(&images, "docker.io/library/busybox").unwrap().manifest,
            Digest::of(&[1])
        );
        assert_eq!(
            find(&images, "localhost:5000/x:1").unwrap().manifest,
            Digest::of(&[2])
        );
        let id = Digest::of(&[2, 2]);
        assert_eq!(
            find(&images, &id.hex()[..12]).unwrap().manifest,
            Digest::of(&[2])
        );
        assert_eq!(
            find(&images, &id.to_string()).unwrap().manifest,
            Digest::of(&[2])
        );
        let at = format!("x@{}", Digest::of(&[1]));
        assert_eq!(find(&images, &at).unwrap().manifest, Digest::of(&[1]));
        let err = find(&images, "nope:1").unwrap_err().to_string();
        assert_eq!(err, "no such image: `nope:1`");
    }

    #[test]
    fn rmi_of_an_image_in_use_is_refused_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let bytes = store.content.put(br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#, None, "config").unwrap();
        let mut r = rec(1, &["busybox"]);
        r.config = bytes;
        store.content.put(b"manifest", None, "manifest").unwrap();
        r.manifest = Digest::of(b"manifest");
        store.index.register(r.clone()).unwrap();
        store.acquire("busybox", "c1").unwrap();
        let err = store.remove("busybox", true).unwrap_err().to_string();
        assert!(err.contains("in use by container(s) c1"), "{err}");
        assert!(store.acquire("busybox", "../x").is_err());
        store.release("c1").unwrap();
        let removed = store.remove("busybox", false).unwrap();
        assert_eq!(removed.untagged, vec!["docker.io/library/busybox:latest"]);
        assert!(store.list().unwrap().is_empty());
        assert!(
            store.content.list().unwrap().is_empty(),
            "blobs left after rmi"
        );
    }
}
