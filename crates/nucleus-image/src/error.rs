//! The crate's one error type. Each variant names the operation that failed
//! and carries the reference, digest or path involved.

use std::io;
use std::path::PathBuf;

/// Errors from the image store, the registry client and the archives.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A reference that does not parse.
    #[error("invalid image reference `{reference}`: {reason}")]
    InvalidReference { reference: String, reason: String },

    /// A digest that is not `sha256:<64 hex digits>`.
    #[error("invalid digest `{digest}`: expected `sha256:` and 64 lowercase hex digits")]
    InvalidDigest { digest: String },

    /// Content whose sha256 differs from its descriptor; it was not stored.
    #[error("{what}: content digest is `{actual}`, but `{expected}` was expected; refused")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },

    /// Content whose length differs from its descriptor; it was not stored.
    #[error(
        "{what} `{digest}`: {actual} bytes received, but the descriptor says {expected}; refused"
    )]
    SizeMismatch {
        what: String,
        digest: String,
        expected: u64,
        actual: u64,
    },

    /// A filesystem operation on the store failed.
    #[error("failed to {action} `{path}`: {source}")]
    Fs {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },

    /// A layer entry that would escape the layer directory or is malformed.
    #[error("layer `{layer}`: refused entry `{path}`: {reason}")]
    UnsafeLayerPath {
        layer: String,
        path: String,
        reason: &'static str,
    },

    /// Applying one layer entry failed.
    #[error("layer `{layer}`: failed to unpack `{path}`: {source}")]
    UnpackEntry {
        layer: String,
        path: String,
        source: io::Error,
    },

    /// A layer, config or manifest of a kind this store cannot use.
    #[error("`{digest}` has unsupported media type `{media_type}`")]
    UnsupportedMediaType { digest: String, media_type: String },

    /// JSON (a manifest, a config, an index, a record) that does not parse.
    #[error("failed to parse {what}: {source}")]
    ParseJson {
        what: String,
        source: serde_json::Error,
    },

    /// The registry refused or failed a request.
    #[error("registry request for `{reference}` failed: {source}")]
    Registry {
        reference: String,
        source: oci_client::errors::OciDistributionError,
    },

    /// A blob download failed midway.
    #[error("download of `{digest}` for `{reference}` failed: {source}")]
    Download {
        reference: String,
        digest: String,
        source: io::Error,
    },

    /// The registry did not answer in time.
    #[error("registry for `{reference}` did not answer within {seconds} s")]
    RegistryTimeout { reference: String, seconds: u64 },

    /// The credentials in the docker config could not be used.
    #[error("credentials for registry `{registry}`: {reason}")]
    Credentials { registry: String, reason: String },

    /// A multi-platform index without an entry for this host.
    #[error("`{reference}` has no image for platform `{platform}`")]
    NoMatchingPlatform { reference: String, platform: String },

    /// No image by that name, id or digest.
    #[error("no such image: `{name}`")]
    ImageNotFound { name: String },

    /// An id prefix that matches more than one image.
    #[error("image id prefix `{name}` matches {count} images")]
    AmbiguousImage { name: String, count: usize },

    /// Removing an image that containers still use.
    #[error("image `{name}` is in use by container(s) {containers}; remove them first")]
    ImageInUse { name: String, containers: String },

    /// Removing by id an image that still has several tags.
    #[error("image `{name}` is referenced by {tags}; remove them by name or use --force")]
    ImageHasTags { name: String, tags: String },

    /// An archive that is neither a docker-archive nor an OCI archive or layout.
    #[error("`{path}` is not a docker-archive, oci-archive or OCI layout: {reason}")]
    InvalidArchive { path: PathBuf, reason: String },

    /// A container id that cannot name a use record.
    #[error("invalid container id `{id}` for an image use record")]
    InvalidContainerId { id: String },

    /// Work on the store as an ordinary user (the user-namespace helper) failed.
    #[error("as an ordinary user: failed to {action} `{path}`: {reason}")]
    Rootless {
        action: &'static str,
        path: PathBuf,
        reason: String,
    },

    /// A layer file whose container id the run's id map does not cover
    /// (rootless, a map other than the store's default).
    #[error(
        "layer `{layer}`: `{path}` belongs to container {kind} {id}, which the user namespace's map does not cover"
    )]
    UnmappedId {
        layer: String,
        kind: &'static str,
        id: u32,
        path: String,
    },

    /// The async runtime for registry transfers could not start.
    #[error("failed to start the registry transfer runtime: {source}")]
    Runtime { source: io::Error },
}

impl ImageError {
    pub(crate) fn fs(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Fs {
            action,
            path,
            source,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;
