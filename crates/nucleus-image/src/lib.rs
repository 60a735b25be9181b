//! OCI images for nucleus, knowing nothing of the engine or the command
//! line: a content store of verified blobs, layers unpacked once per digest
//! (whiteouts as overlayfs expects, every path kept inside its layer), an
//! index of images and tags, registry pulls, docker-archive / OCI archive
//! load and save, and removal with in-use refusal.
//!
//! A front end asks `ImageStore::acquire` for an image's root: the layer
//! directories (bottom first) for an overlay mount, and the parsed config.
#![forbid(unsafe_code)]

mod archive;
mod commit;
mod content;
mod digest;
mod error;
mod layers;
mod lock;
mod manifest;
mod platform;
mod progress;
mod pull;
mod records;
mod reference;
mod store;
pub mod unpack;

pub use digest::Digest;
pub use error::{ImageError, Result};
pub use oci_spec::image::ImageConfiguration;
pub use platform::host_platform;
pub use progress::ProgressMode;
pub use pull::PullOptions;
pub use records::{ImageRecord, LayerRecord};
pub use reference::ImageRef;
pub use store::{ImageRoot, ImageStore, Removed, DEFAULT_DATA_ROOT};
