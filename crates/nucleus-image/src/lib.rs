//! OCI images for nucleus, knowing nothing of the engine or the command
//! line: a content store of verified blobs, layers unpacked once per digest
//! (whiteouts as overlayfs expects, every path kept inside its layer), an
//! index of images and tags, registry pulls, docker-archive / OCI archive
//! load and save, and removal with in-use refusal.
//!
//! A front end asks `overlay_root::OverlayRoot::prepare` for a container's
//! root: an overlay of the image's layers with a writable layer of its own,
//! and the parsed config; `overlay_root::sweep` removes roots whose
//! container is gone.
#![forbid(unsafe_code)]

mod archive;
mod commit;
mod content;
mod digest;
mod error;
mod layers;
mod lock;
mod manifest;
pub mod overlay_root;
mod platform;
mod progress;
mod pull;
mod records;
mod reference;
pub mod rootless;
mod shift;
mod store;
mod stream;
pub mod unpack;

pub use digest::Digest;
pub use error::{ImageError, Result};
pub use oci_spec::image::ImageConfiguration;
pub use platform::host_platform;
pub use progress::ProgressMode;
pub use pull::PullOptions;
pub use records::{ImageRecord, LayerRecord};
pub use reference::ImageRef;
pub use shift::{IdLine, IdShift};
pub use store::{ImageRoot, ImageStore, Removed, DEFAULT_DATA_ROOT};
