//! Roots for `nucleus run IMAGE`: the sandbox's `ImageProvider`, backed by
//! the image store. Each container gets `<root>/.image-roots/<id>/` with an
//! overlayfs at `merged` (the image's layers as lowers, `upper` and `work`
//! of its own), and a use record in the store so `rmi` refuses the image.
//!
//! The sandbox has no teardown hook, so roots are swept: any root whose
//! container no longer exists in the state root is unmounted and removed,
//! and its use record dropped. The run that made a root holds its lock
//! until the container exists, so a sweep never takes a root being set up.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use nucleus_engine::state::StateRoot;
use nucleus_image::{ImageError, ImageStore, ProgressMode, PullOptions};
use nucleus_sandbox::rootfs::{ImageConfig, ImageProvider, PreparedImage};
use nucleus_sandbox::SandboxError;
use rustix::fs::{flock, FlockOperation};
use rustix::mount::{mount, unmount, MountFlags, UnmountFlags};

/// Under the state root: one directory per container made from an image.
pub const IMAGE_ROOTS: &str = ".image-roots";

/// The store as the sandbox's image provider.
#[derive(Debug)]
pub struct StoreProvider {
    state_root: PathBuf,
    data_root: PathBuf,
    /// Locks of roots made by this process, held until it exits.
    held: std::cell::RefCell<Vec<File>>,
}

impl StoreProvider {
    pub fn new(state_root: &Path, data_root: &Path) -> Self {
        Self {
            state_root: state_root.to_path_buf(),
            data_root: data_root.to_path_buf(),
            held: Default::default(),
        }
    }
}

fn io_err(op: &'static str, path: &Path, e: impl Into<std::io::Error>) -> SandboxError {
    SandboxError::Io {
        op,
        path: path.to_path_buf(),
        source: e.into(),
    }
}

fn image_err(reference: &str, e: ImageError) -> SandboxError {
    SandboxError::InvalidValue {
        field: nucleus_sandbox::Field::Image,
        value: reference.to_string(),
        reason: e.to_string(),
    }
}

impl ImageProvider for StoreProvider {
    fn prepare(&self, reference: &str, id: &str) -> nucleus_sandbox::error::Result<PreparedImage> {
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
        let dir = self.state_root.join(IMAGE_ROOTS).join(id);
        for sub in ["upper", "work", "merged"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(|e| io_err("create", &p, e))?;
        }
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_err("open", &lock_path, e))?;
        flock(&lock, FlockOperation::LockExclusive).map_err(|e| io_err("lock", &lock_path, e))?;
        self.held.borrow_mut().push(lock);
        let data_file = dir.join("data-root");
        fs::write(&data_file, self.data_root.as_os_str().as_encoded_bytes())
            .map_err(|e| io_err("write", &data_file, e))?;
        let image = store
            .acquire(reference, id)
            .map_err(|e| image_err(reference, e))?;
        let lower: Vec<String> = image
            .layers
            .iter()
            .rev()
            .map(|p| p.display().to_string())
            .collect();
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            dir.join("upper").display(),
            dir.join("work").display()
        );
        let merged = dir.join("merged");
        let data_c = CString::new(data)
            .map_err(|e| io_err("mount overlay on", &merged, std::io::Error::other(e)))?;
        mount(
            "overlay",
            &merged,
            "overlay",
            MountFlags::NODEV,
            Some(data_c.as_c_str()),
        )
        .map_err(|e| io_err("mount overlay on", &merged, e))?;
        Ok(PreparedImage {
            rootfs: merged,
            config: image_config(&image.config),
        })
    }
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
    }
}

/// Tears down every image root whose container is gone (and whose maker
/// is not still running); returns the first error after trying them all.
pub fn sweep(state_root: &Path) -> anyhow::Result<()> {
    let roots = state_root.join(IMAGE_ROOTS);
    let Ok(rd) = fs::read_dir(&roots) else {
        return Ok(());
    };
    let state = StateRoot::new(state_root);
    let mut first = None;
    for e in rd.filter_map(|e| e.ok()) {
        let id = e.file_name().to_string_lossy().into_owned();
        if state.container_dir(&id).exists() {
            continue;
        }
        if let Err(err) = remove_root(&e.path(), &id) {
            first.get_or_insert(err);
        }
    }
    first.map_or(Ok(()), Err)
}

fn remove_root(dir: &Path, id: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    let lock_path = dir.join("lock");
    if let Ok(lock) = File::open(&lock_path) {
        if flock(&lock, FlockOperation::NonBlockingLockExclusive).is_err() {
            return Ok(()); // still being set up by a live run
        }
    }
    let merged = dir.join("merged");
    match unmount(&merged, UnmountFlags::DETACH) {
        Ok(()) | Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(e).with_context(|| format!("unmount `{}`", merged.display())),
    }
    if let Ok(data_root) = fs::read(dir.join("data-root")) {
        let data_root = PathBuf::from(String::from_utf8_lossy(&data_root).into_owned());
        if let Ok(store) = ImageStore::open(&data_root) {
            store
                .release(id)
                .with_context(|| format!("release the image of `{id}`"))?;
        }
    }
    fs::remove_dir_all(dir).with_context(|| format!("remove `{}`", dir.display()))
}
