//! `load` and `save`: docker-archive (as `docker save` writes it, legacy
//! `<id>/layer.tar` or Docker 25's `blobs/sha256/…`), oci-archive and OCI
//! layout directories in; one tar that is both an OCI layout and a
//! docker-archive out (as Docker 25 writes it), so docker, podman, skopeo
//! and nucleus all load it.
//!
//! Loading streams the tar once: every file goes through the content store
//! (hashed; `blobs/sha256/<hex>` must match its name), small JSON is kept
//! in memory, then manifests are assembled from what arrived.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

use oci_spec::image::ImageIndex;
use serde::Deserialize;
use serde_json::json;

use crate::content::check_digest;
use crate::digest::Digest;
use crate::error::{ImageError, Result};
use crate::layers::Decoder;
use crate::manifest::{is_index, record_for};
use crate::platform::{host_platform, select_manifest};
use crate::records::ImageRecord;
use crate::reference::ImageRef;
use crate::store::{find, ImageStore};

/// JSON files kept in memory while loading.
const SMALL: u64 = 4 << 20;

/// What a loaded archive held.
#[derive(Default)]
struct Files {
    /// Small files by path.
    small: BTreeMap<String, Vec<u8>>,
    /// Every file's digest by path.
    blobs: BTreeMap<String, Digest>,
    /// Symlinks (docker-archive dedups layers with them), by path.
    links: BTreeMap<String, String>,
}

impl Files {
    fn digest(&self, path: &str, archive: &Path) -> Result<Digest> {
        let mut p = normalize(path);
        for _ in 0..16 {
            if let Some(d) = self.blobs.get(&p) {
                return Ok(d.clone());
            }
            match self.links.get(&p) {
                Some(t) => p = t.clone(),
                None => break,
            }
        }
        Err(ImageError::InvalidArchive {
            path: archive.to_path_buf(),
            reason: format!("`{path}` is named by the manifest but missing"),
        })
    }
}

/// `./a/../b` → `b`, so names in manifests match tar paths.
fn normalize(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(n) => out.push(n.to_str().unwrap_or("")),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out.join("/")
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

impl ImageStore {
    /// Loads every image in `path`: a docker-archive or oci-archive (plain
    /// or gzip tar), or an OCI layout directory.
    pub fn load(&self, path: &Path) -> Result<Vec<ImageRecord>> {
        let _lock = self.lock_shared()?;
        let before: BTreeSet<Digest> = self.content.list()?.into_iter().collect();
        let files = if path.is_dir() {
            self.read_layout_dir(path)?
        } else {
            self.read_tar(path)?
        };
        let result = self.assemble(&files, path);
        // Files of the archive that no image uses (manifest.json, …) go again.
        let used: BTreeSet<Digest> = self
            .list()?
            .iter()
            .flat_map(|r| {
                [r.manifest.clone(), r.config.clone()]
                    .into_iter()
                    .chain(r.layers.iter().map(|l| l.digest.clone()))
            })
            .collect();
        for d in files.blobs.values() {
            if !before.contains(d) && !used.contains(d) {
                self.content.remove(d)?;
            }
        }
        result
    }

    fn read_tar(&self, path: &Path) -> Result<Files> {
        let file = File::open(path).map_err(ImageError::fs("open archive", path))?;
        let digest_of_path = Digest::of(path.as_os_str().as_encoded_bytes());
        let reader = Decoder::new(BufReader::with_capacity(1 << 20, file), &digest_of_path)?;
        let bad = |e: std::io::Error| ImageError::InvalidArchive {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let mut archive = tar::Archive::new(reader);
        let mut files = Files::default();
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let name = normalize(&entry.path().map_err(bad)?.to_string_lossy());
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {}
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    if let Some(t) = entry.link_name().map_err(bad)? {
                        let t = t.to_string_lossy().into_owned();
                        let base = if entry.header().entry_type() == tar::EntryType::Symlink {
                            Path::new(&name)
                                .parent()
                                .map(|p| p.join(&t))
                                .unwrap_or_else(|| PathBuf::from(&t))
                        } else {
                            PathBuf::from(&t)
                        };
                        files.links.insert(name, normalize(&base.to_string_lossy()));
                    }
                    continue;
                }
                _ => continue,
            }
            let size = entry.header().size().map_err(bad)?;
            let expected = blob_name(&name);
            let what = format!("`{name}` in `{}`", path.display());
            let digest = if size <= SMALL {
                let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
                entry.read_to_end(&mut bytes).map_err(bad)?;
                let d = self.content.put(&bytes, expected.as_ref(), &what)?;
                files.small.insert(name.clone(), bytes);
                d
            } else {
                self.content
                    .put_reader(&mut entry, expected.as_ref(), Some(size), &what)?
            };
            files.blobs.insert(name, digest);
        }
        Ok(files)
    }

    fn read_layout_dir(&self, dir: &Path) -> Result<Files> {
        let mut files = Files::default();
        for name in ["oci-layout", "index.json"] {
            let p = dir.join(name);
            let bytes = fs::read(&p).map_err(|e| ImageError::InvalidArchive {
                path: dir.to_path_buf(),
                reason: format!("`{name}`: {e}"),
            })?;
            files.small.insert(name.to_string(), bytes);
        }
        let blobs = dir.join("blobs").join("sha256");
        let rd = fs::read_dir(&blobs).map_err(ImageError::fs("list", &blobs))?;
        for e in rd.filter_map(|e| e.ok()) {
            let name = format!("blobs/sha256/{}", e.file_name().to_string_lossy());
            let Some(expected) = blob_name(&name) else {
                continue;
            };
            let mut f = File::open(e.path()).map_err(ImageError::fs("open", e.path()))?;
            let d = self.content.put_reader(
                &mut f,
                Some(&expected),
                None,
                &format!("`{}`", e.path().display()),
            )?;
            files.blobs.insert(name, d);
        }
        Ok(files)
    }

    fn assemble(&self, files: &Files, archive: &Path) -> Result<Vec<ImageRecord>> {
        let invalid = |reason: String| ImageError::InvalidArchive {
            path: archive.to_path_buf(),
            reason,
        };
        let mut out = Vec::new();
        // An OCI index keeps the original manifests (and digests); Docker 25
        // writes both, older docker-archives only manifest.json.
        let oci = files
            .small
            .get("index.json")
            .filter(|_| files.small.contains_key("oci-layout"));
        if let (None, Some(bytes)) = (oci, files.small.get("manifest.json")) {
            let list: Vec<DockerManifest> =
                serde_json::from_slice(bytes).map_err(|source| ImageError::ParseJson {
                    what: format!("`manifest.json` in `{}`", archive.display()),
                    source,
                })?;
            for m in list {
                let config = files.digest(&m.config, archive)?;
                let mut layers = Vec::new();
                for l in &m.layers {
                    let d = files.digest(l, archive)?;
                    let mut head = BufReader::new(self.content.open_blob(&d)?);
                    let gz = head
                        .fill_buf()
                        .map_err(ImageError::fs("read", self.content.path(&d)))?
                        .starts_with(&[0x1f, 0x8b]);
                    let media_type = if gz {
                        "application/vnd.oci.image.layer.v1.tar+gzip"
                    } else {
                        "application/vnd.oci.image.layer.v1.tar"
                    };
                    layers.push(json!({"mediaType": media_type, "digest": d.to_string(), "size": self.content.size(&d).unwrap_or(0)}));
                }
                let manifest = json!({
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": self.content.size(&config).unwrap_or(0)},
                    "layers": layers,
                });
                let bytes =
                    serde_json::to_vec(&manifest).map_err(|source| ImageError::ParseJson {
                        what: "a generated manifest".into(),
                        source,
                    })?;
                let digest = self.content.put(&bytes, None, "manifest")?;
                let tags = m
                    .repo_tags
                    .unwrap_or_default()
                    .iter()
                    .map(|t| ImageRef::parse(t).map(|r| r.to_string()))
                    .collect::<Result<Vec<_>>>()?;
                out.push(self.finish_load(&digest, tags)?);
            }
        } else if let Some(bytes) = oci {
            let index: ImageIndex =
                serde_json::from_slice(bytes).map_err(|source| ImageError::ParseJson {
                    what: format!("`index.json` in `{}`", archive.display()),
                    source,
                })?;
            for desc in index.manifests() {
                let mut digest = Digest::parse(desc.digest().as_ref())?;
                let mut bytes = self.content.read(&digest).map_err(|_| {
                    invalid(format!(
                        "manifest `{digest}` is listed in index.json but missing"
                    ))
                })?;
                if is_index(&bytes) {
                    let nested: ImageIndex =
                        serde_json::from_slice(&bytes).map_err(|source| ImageError::ParseJson {
                            what: format!("index `{digest}`"),
                            source,
                        })?;
                    let chosen =
                        select_manifest(&nested).ok_or_else(|| ImageError::NoMatchingPlatform {
                            reference: digest.to_string(),
                            platform: host_platform(),
                        })?;
                    digest = Digest::parse(&chosen)?;
                    bytes = self
                        .content
                        .read(&digest)
                        .map_err(|_| invalid(format!("manifest `{digest}` is missing")))?;
                }
                check_digest("manifest", &digest, &Digest::of(&bytes))?;
                let notes = desc.annotations().clone().unwrap_or_default();
                let name = notes
                    .get("io.containerd.image.name")
                    .or_else(|| notes.get("org.opencontainers.image.ref.name"));
                // A bare tag (`latest`) names no repository; such an image loads untagged.
                let tags = name
                    .filter(|n| n.contains('/') || n.contains(':'))
                    .map(|n| ImageRef::parse(n).map(|r| r.to_string()))
                    .transpose()?
                    .into_iter()
                    .collect();
                out.push(self.finish_load(&digest, tags)?);
            }
        } else {
            return Err(invalid("no manifest.json or index.json".into()));
        }
        Ok(out)
    }

    fn finish_load(&self, manifest: &Digest, tags: Vec<String>) -> Result<ImageRecord> {
        let record = record_for(&self.content, manifest, tags, Vec::new())?;
        for l in &record.layers {
            let have = self
                .content
                .size(&l.digest)
                .ok_or_else(|| ImageError::ImageNotFound {
                    name: l.digest.to_string(),
                })?;
            if have != l.size {
                return Err(ImageError::SizeMismatch {
                    what: "layer".into(),
                    digest: l.digest.to_string(),
                    expected: l.size,
                    actual: have,
                });
            }
            self.layers.ensure(&self.content, l)?;
        }
        self.index.register(record.clone())?;
        Ok(record)
    }

    /// Writes the named images to `out` as one tar that is an OCI layout
    /// and a docker-archive.
    pub fn save(&self, names: &[String], out: impl Write) -> Result<()> {
        let _lock = self.lock_shared()?;
        let images = self.list()?;
        let records = names
            .iter()
            .map(|n| find(&images, n))
            .collect::<Result<Vec<_>>>()?;
        let mut tar = tar::Builder::new(out);
        let werr = |e: std::io::Error| ImageError::Fs {
            action: "write archive",
            path: PathBuf::from("-"),
            source: e,
        };
        let mut written = BTreeSet::new();
        let (mut index, mut docker) = (Vec::new(), Vec::new());
        for r in &records {
            for d in std::iter::once(&r.manifest)
                .chain(std::iter::once(&r.config))
                .chain(r.layers.iter().map(|l| &l.digest))
            {
                if written.insert(d.clone()) {
                    let size = self
                        .content
                        .size(d)
                        .ok_or_else(|| ImageError::ImageNotFound {
                            name: d.to_string(),
                        })?;
                    let mut h = header(size);
                    tar.append_data(
                        &mut h,
                        format!("blobs/sha256/{}", d.hex()),
                        self.content.open_blob(d)?,
                    )
                    .map_err(werr)?;
                }
            }
            let size = self.content.size(&r.manifest).unwrap_or(0);
            let tags: Vec<&String> = r.tags.iter().collect();
            if tags.is_empty() {
                index.push(json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": r.manifest.to_string(), "size": size}));
            }
            for t in &tags {
                let tag = ImageRef::parse(t)
                    .ok()
                    .and_then(|x| x.tag().map(str::to_string))
                    .unwrap_or_default();
                index.push(json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": r.manifest.to_string(), "size": size,
                    "annotations": {"io.containerd.image.name": t, "org.opencontainers.image.ref.name": tag}}));
            }
            docker.push(json!({
                "Config": format!("blobs/sha256/{}", r.config.hex()),
                "RepoTags": r.tags.iter().filter_map(|t| ImageRef::parse(t).ok()).map(|x| format!("{}:{}", x.familiar_name(), x.tag().unwrap_or("latest"))).collect::<Vec<_>>(),
                "Layers": r.layers.iter().map(|l| format!("blobs/sha256/{}", l.digest.hex())).collect::<Vec<_>>(),
            }));
        }
        let files = [
            ("oci-layout", json!({"imageLayoutVersion": "1.0.0"})),
            (
                "index.json",
                json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": index}),
            ),
            ("manifest.json", json!(docker)),
        ];
        for (name, value) in files {
            let bytes = serde_json::to_vec(&value).map_err(|source| ImageError::ParseJson {
                what: format!("`{name}`"),
                source,
            })?;
            let mut h = header(bytes.len() as u64);
            tar.append_data(&mut h, name, bytes.as_slice())
                .map_err(werr)?;
        }
        tar.into_inner().map_err(werr)?.flush().map_err(werr)?;
        Ok(())
    }
}

/// `blobs/sha256/<hex>` → the digest its name promises.
fn blob_name(path: &str) -> Option<Digest> {
    path.strip_prefix("blobs/sha256/")
        .and_then(|h| Digest::from_hex(h).ok())
}

fn header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files")
            .field("blobs", &self.blobs.len())
            .finish()
    }
}
