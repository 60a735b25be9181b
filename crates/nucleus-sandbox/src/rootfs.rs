//! Where a sandbox's root filesystem comes from. Today: the host-derived
//! read-only root of agent mode, or a directory. Images plug in through
//! [`ImageProvider`]: it turns a reference into a root directory (an
//! overlay of the image's layers) plus the image's config, and
//! [`crate::compile`] takes the config's defaults (env, command, user,
//! working directory, labels) from [`ImageConfig`].

use crate::error::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The root filesystem a sandbox asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RootfsSource {
    /// Agent mode: the host's system directories bound read-only, a
    /// generated `/etc`, tmpfs `/tmp` and `/run` (see `agent_root`).
    #[default]
    HostDerived,
    /// A directory used as the root as it is (`--rootfs DIR`).
    Directory(PathBuf),
    /// An image reference, resolved by an [`ImageProvider`].
    Image(String),
}

impl RootfsSource {
    pub fn is_host_derived(&self) -> bool {
        matches!(self, RootfsSource::HostDerived)
    }
}

/// What an image contributes to a sandbox (the OCI image config's fields
/// that a run uses).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageConfig {
    /// `KEY=VALUE`, under the sandbox's own env.
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    /// The command when the sandbox gives none.
    pub cmd: Vec<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub stop_signal: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// `ExposedPorts`: `80/tcp`, `53/udp` (published with `-P`).
    pub exposed_ports: Vec<String>,
}

/// An image made ready to run.
#[derive(Debug, Default)]
pub struct PreparedImage {
    /// The directory to use as the root, e.g. an overlay of the image's
    /// layers with a writable layer of the container's own on top.
    pub rootfs: PathBuf,
    pub config: ImageConfig,
    /// Held until the container exists (a lock that keeps sweeps off a
    /// root being set up); `None` when nothing needs holding.
    pub hold: Option<Box<dyn std::fmt::Debug>>,
    /// For a root the container mounts itself (an ordinary user's overlay,
    /// in its own user namespace): the mount data, and the directories
    /// its files come from, top first (the host reads `/etc/passwd` there).
    pub overlay: Option<(String, Vec<PathBuf>)>,
}

impl PreparedImage {
    /// Where the host reads the image's files before the container runs.
    pub fn files_root(&self) -> &std::path::Path {
        match &self.overlay {
            Some((_, lowers)) => lowers
                .iter()
                .find(|l| l.join("etc/passwd").is_file())
                .unwrap_or(&self.rootfs),
            None => &self.rootfs,
        }
    }
}

/// Resolves image references (the image store implements it).
pub trait ImageProvider: std::fmt::Debug {
    /// Finds `reference` and makes a root from it for container `id`;
    /// `on_host` when the root must be mounted where the host sees it (a
    /// runtime that serves files from outside, as gVisor's gofer does).
    /// `maps`: a rootless run's id maps when they are not the default, for
    /// which the image's files need other on-disk owners.
    fn prepare(
        &self,
        reference: &str,
        id: &str,
        on_host: bool,
        maps: Option<&crate::compile::ImageMaps>,
    ) -> Result<PreparedImage>;
}
