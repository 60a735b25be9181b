//! The image store as the sandbox's [`ImageProvider`]: `nucleus-image`
//! pulls what is missing and mounts an overlay root per container; this
//! module turns the image config into an [`ImageConfig`] and sweeps the
//! roots of containers that are gone (after a run, a monitor, an `rm`).

use crate::compile::ImageMaps;
use crate::error::{Field, Result, SandboxError};
use crate::rootfs::{ImageConfig, ImageProvider, PreparedImage};
use crate::userns::IdMap;
use nucleus_engine::state::StateRoot;
use nucleus_image::overlay_root::{self, MountAt, OverlayRoot};
use nucleus_image::{IdLine, IdShift, ImageError, ImageStore, ProgressMode, PullOptions};
use std::path::{Path, PathBuf};

/// Images from the store under `data_root`, roots under `state_root`.
#[derive(Debug, Clone)]
pub struct StoreProvider {
    state_root: PathBuf,
    data_root: PathBuf,
}

impl StoreProvider {
    pub fn new(state_root: &Path, data_root: &Path) -> Self {
        Self {
            state_root: state_root.to_path_buf(),
            data_root: data_root.to_path_buf(),
        }
    }
}

fn image_err(reference: &str, e: ImageError) -> SandboxError {
    SandboxError::InvalidValue {
        field: Field::Image,
        value: reference.to_string(),
        reason: e.to_string(),
    }
}

impl ImageProvider for StoreProvider {
    fn prepare(
        &self,
        reference: &str,
        id: &str,
        on_host: bool,
        maps: Option<&ImageMaps>,
    ) -> Result<PreparedImage> {
        let store = ImageStore::open(&self.data_root).map_err(|e| image_err(reference, e))?;
        if let Err(ImageError::ImageNotFound { .. }) = store.resolve(reference) {
            // As docker does: pull what is not here (quietly: stdout is the workload's).
            let opts = PullOptions {
                progress: ProgressMode::Quiet,
                ..Default::default()
            };
            store
                .pull(reference, &opts)
                .map_err(|e| image_err(reference, e))?;
        }
        let at = if on_host {
            MountAt::Host
        } else {
            MountAt::Container
        };
        let shift = maps.map(|m| IdShift {
            uids: id_lines(&m.uids),
            gids: id_lines(&m.gids),
        });
        let root = OverlayRoot::prepare(
            &store,
            &self.data_root,
            &self.state_root,
            reference,
            id,
            at,
            shift.as_ref(),
        )
        .map_err(|e| match (e, maps) {
            // The map asked for is what cannot hold the image's files.
            (e @ ImageError::UnmappedId { .. }, Some(m)) => SandboxError::invalid(
                m.field.clone(),
                &m.value,
                format!(
                    "image `{reference}`: {e}; give a map that covers it (e.g. the default --userns)"
                ),
            ),
            (e, _) => image_err(reference, e),
        })?;
        Ok(PreparedImage {
            rootfs: root.merged.clone(),
            config: image_config(&root.config),
            overlay: root.mount_data.clone().map(|d| (d, root.lowers.clone())),
            hold: Some(Box::new(root)),
        })
    }
}

fn id_lines(maps: &[IdMap]) -> Vec<IdLine> {
    maps.iter()
        .map(|m| IdLine {
            container: m.container,
            host: m.host,
            size: m.size,
        })
        .collect()
}

/// The fields of an OCI image config that a run uses.
fn image_config(c: &nucleus_image::ImageConfiguration) -> ImageConfig {
    let Some(cfg) = c.config() else {
        return ImageConfig::default();
    };
    ImageConfig {
        env: cfg.env().clone().unwrap_or_default(),
        entrypoint: cfg.entrypoint().clone().unwrap_or_default(),
        cmd: cfg.cmd().clone().unwrap_or_default(),
        user: cfg.user().clone().filter(|u| !u.is_empty()),
        working_dir: cfg.working_dir().clone().filter(|w| !w.is_empty()),
        stop_signal: cfg.stop_signal().clone(),
        labels: cfg
            .labels()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        exposed_ports: cfg.exposed_ports().clone().unwrap_or_default(),
    }
}

/// Unmounts and removes the image roots of containers that are gone.
pub fn sweep(state_root: &Path) -> Result<()> {
    let state = StateRoot::new(state_root);
    overlay_root::sweep(state_root, |id| !state.container_dir(id).exists()).map_err(|e| {
        SandboxError::ImageRoot {
            reason: e.to_string(),
        }
    })
}

/// Sweeps, and logs what could not be removed (for paths with no error to return).
pub(crate) fn sweep_logged(state_root: &Path) {
    if let Err(e) = sweep(state_root) {
        tracing::warn!(error = %e, "image roots: sweep failed; `nucleus rm` or `prune` retries");
    }
}
