//! From a stored manifest to an `ImageRecord`: the config it names, the
//! layers and their uncompressed digests. Shared by pull, load and commit.

use oci_spec::image::{ImageConfiguration, ImageManifest};

use crate::content::ContentStore;
use crate::digest::Digest;
use crate::error::{ImageError, Result};
use crate::records::{ImageRecord, LayerRecord};

/// Manifest media types this store accepts (OCI and Docker schema 2).
pub const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];
/// Index media types (OCI index and Docker manifest list).
pub const INDEX_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// Layer media types that are tar streams, compressed or not.
fn is_layer_type(t: &str) -> bool {
    matches!(
        t,
        "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.diff.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    )
}

/// Whether manifest JSON is an index (by `mediaType`, or by `manifests`).
pub fn is_index(bytes: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    serde_json::from_slice::<Probe>(bytes).is_ok_and(|p| {
        p.media_type
            .as_deref()
            .is_some_and(|t| INDEX_TYPES.contains(&t))
            || (p.media_type.is_none() && p.manifests.is_some())
    })
}

pub fn parse_manifest(bytes: &[u8], digest: &Digest) -> Result<ImageManifest> {
    serde_json::from_slice(bytes).map_err(|source| ImageError::ParseJson {
        what: format!("manifest `{digest}`"),
        source,
    })
}

pub fn parse_config(bytes: &[u8], digest: &Digest) -> Result<ImageConfiguration> {
    serde_json::from_slice(bytes).map_err(|source| ImageError::ParseJson {
        what: format!("image config `{digest}`"),
        source,
    })
}

/// The record for the manifest `digest`, whose config must be stored.
pub fn record_for(
    content: &ContentStore,
    digest: &Digest,
    tags: Vec<String>,
    repo_digests: Vec<String>,
) -> Result<ImageRecord> {
    let manifest = parse_manifest(&content.read(digest)?, digest)?;
    let config_digest = Digest::parse(manifest.config().digest().as_ref())?;
    let config = parse_config(&content.read(&config_digest)?, &config_digest)?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        return Err(ImageError::InvalidArchive {
            path: digest.to_string().into(),
            reason: format!(
                "{} layers in the manifest but {} diff_ids in config `{config_digest}`",
                manifest.layers().len(),
                diff_ids.len()
            ),
        });
    }
    let mut layers = Vec::new();
    for (l, diff) in manifest.layers().iter().zip(diff_ids) {
        let media_type = l.media_type().to_string();
        if !is_layer_type(&media_type) {
            return Err(ImageError::UnsupportedMediaType {
                digest: l.digest().to_string(),
                media_type,
            });
        }
        layers.push(LayerRecord {
            digest: Digest::parse(l.digest().as_ref())?,
            media_type,
            size: l.size(),
            diff_id: Digest::parse(diff)?,
        });
    }
    let size = layers.iter().map(|l| l.size).sum::<u64>() + manifest.config().size();
    Ok(ImageRecord {
        manifest: digest.clone(),
        config: config_digest,
        layers,
        tags,
        repo_digests,
        created: config.created().clone(),
        size,
    })
}
