//! Overlay roots of containers made from images. Each container gets
//! `<state root>/.image-roots/<id>/` with an overlayfs at `merged` (the
//! image's layers as lowers, `upper` and `work` of its own) and a use
//! record in the store, so `rmi` refuses the image while it runs.
//!
//! Nothing tears a root down when its container goes, so roots are swept:
//! [`sweep`] unmounts and removes every root whose container is gone and
//! drops its use record. The process that made a root holds its lock (in
//! [`OverlayRoot`]) until the container exists, so a sweep never takes a
//! root that is being set up.

use crate::error::{ImageError, Result};
use crate::shift::IdShift;
use crate::store::ImageStore;
use oci_spec::image::ImageConfiguration;
use rustix::fs::{flock, FlockOperation};
use rustix::mount::{mount, unmount, MountFlags, UnmountFlags};
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a sweep waits for a root another process holds.
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// Under the state root: one directory per container made from an image.
pub const IMAGE_ROOTS: &str = ".image-roots";
/// In a root's directory: the data root whose store holds its use record.
const DATA_ROOT_FILE: &str = "data-root";

/// Where a root's overlay is mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountAt {
    /// Here, on `merged`, visible on the host (gVisor's gofer serves it).
    Host,
    /// By the container's init, in its own mount namespace: nothing to
    /// unmount on the host afterwards (each host unmount waits for an RCU
    /// grace period) and nothing left mounted if a runtime is killed.
    Container,
}

/// A prepared root; its lock is held until this is dropped.
#[derive(Debug)]
pub struct OverlayRoot {
    /// The overlay mount point: the container's root.
    pub merged: PathBuf,
    pub config: ImageConfiguration,
    /// With [`MountAt::Container`] (always for an ordinary user): not
    /// mounted here, the overlay's mount data for the container's own mount
    /// namespace to mount on `merged` (with `userxattr` in a user namespace).
    pub mount_data: Option<String>,
    /// The layer directories, top first.
    pub lowers: Vec<PathBuf>,
    _lock: File,
}

fn fs_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ImageError {
    ImageError::fs(action, path.to_path_buf())
}

impl OverlayRoot {
    /// Prepares the overlay of `reference`'s layers for container `id`,
    /// mounted `at` the host or left for the container to mount. `shift`:
    /// the container's id maps when they are not the store's default (an
    /// ordinary user's `keep-id`, `--uidmap`...), whose layers are copies
    /// with owners for them.
    pub fn prepare(
        store: &ImageStore,
        data_root: &Path,
        state_root: &Path,
        reference: &str,
        id: &str,
        at: MountAt,
        shift: Option<&IdShift>,
    ) -> Result<OverlayRoot> {
        let dir = state_root.join(IMAGE_ROOTS).join(id);
        for sub in ["upper", "work", "merged"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(fs_err("create", &p))?;
        }
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(fs_err("open", &lock_path))?;
        flock(&lock, FlockOperation::LockExclusive)
            .map_err(|e| fs_err("lock", &lock_path)(e.into()))?;
        let data_file = dir.join(DATA_ROOT_FILE);
        fs::write(&data_file, data_root.as_os_str().as_encoded_bytes())
            .map_err(fs_err("write", &data_file))?;
        let image = store.acquire_mapped(reference, id, shift)?;
        if let Some(shift) = shift {
            // The root the container sees is the upper layer's: root's, as
            // the layers' roots are under this map.
            crate::rootless::own_as_root(&dir.join("upper"), shift)?;
        }
        let lower: Vec<String> = image
            .layers
            .iter()
            .rev()
            .map(|p| p.display().to_string())
            .collect();
        // `volatile`: no sync of the host's filesystem when the overlay goes
        // (its superblock's shutdown would otherwise sync the whole upper
        // filesystem, milliseconds per container, far more under write
        // load). A root is mounted once and thrown away with its container,
        // so what a host crash could lose was never to be kept.
        let mut data = format!(
            "lowerdir={},upperdir={},workdir={},volatile",
            lower.join(":"),
            dir.join("upper").display(),
            dir.join("work").display()
        );
        let merged = dir.join("merged");
        let lowers = image.layers.iter().rev().cloned().collect();
        let rootless = crate::rootless::is_active();
        if rootless || at == MountAt::Container {
            if rootless {
                data.push_str(",userxattr");
            }
            return Ok(OverlayRoot {
                merged,
                config: image.config,
                mount_data: Some(data),
                lowers,
                _lock: lock,
            });
        }
        let data = CString::new(data)
            .map_err(|e| fs_err("mount overlay on", &merged)(std::io::Error::other(e)))?;
        mount(
            "overlay",
            &merged,
            "overlay",
            MountFlags::NODEV,
            Some(data.as_c_str()),
        )
        .map_err(|e| fs_err("mount overlay on", &merged)(e.into()))?;
        Ok(OverlayRoot {
            merged,
            config: image.config,
            mount_data: None,
            lowers,
            _lock: lock,
        })
    }
}

/// The writable layer of container `id`'s root, if it has one.
pub fn upper_dir(state_root: &Path, id: &str) -> PathBuf {
    state_root.join(IMAGE_ROOTS).join(id).join("upper")
}

/// Tears down every root for which `is_gone(id)` holds and whose maker is
/// not still setting it up; returns the first error after trying them all.
pub fn sweep(state_root: &Path, is_gone: impl Fn(&str) -> bool) -> Result<()> {
    let roots = state_root.join(IMAGE_ROOTS);
    let Ok(rd) = fs::read_dir(&roots) else {
        return Ok(());
    };
    let mut first = None;
    for e in rd.filter_map(|e| e.ok()) {
        let id = e.file_name().to_string_lossy().into_owned();
        if !is_gone(&id) {
            continue;
        }
        if let Err(err) = remove_root(&e.path(), &id, &is_gone) {
            first.get_or_insert(err);
        }
    }
    first.map_or(Ok(()), Err)
}

fn remove_root(dir: &Path, id: &str, is_gone: &impl Fn(&str) -> bool) -> Result<()> {
    // Held until the root is gone. A root being set up (its container
    // appears) or removed by another sweep (it vanishes) is left alone; the
    // wait is bounded so a stuck maker never hangs a sweep.
    let lock_path = dir.join("lock");
    let deadline = Instant::now() + LOCK_WAIT;
    let _lock = loop {
        let lock = match File::open(&lock_path) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !dir.exists() => return Ok(()),
            Err(_) => break None,
        };
        if flock(&lock, FlockOperation::NonBlockingLockExclusive).is_ok() {
            if !dir.exists() || !is_gone(id) {
                return Ok(());
            }
            break Some(lock);
        }
        if !is_gone(id) || Instant::now() >= deadline {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let merged = dir.join("merged");
    // Only a `MountAt::Host` root is mounted here.
    match unmount(&merged, UnmountFlags::DETACH) {
        Ok(()) | Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOENT) => {}
        Err(_) if crate::rootless::is_active() => {}
        Err(e) => return Err(fs_err("unmount", &merged)(e.into())),
    }
    if let Ok(data_root) = fs::read(dir.join(DATA_ROOT_FILE)) {
        let data_root = PathBuf::from(String::from_utf8_lossy(&data_root).into_owned());
        if let Ok(store) = ImageStore::open(&data_root) {
            store.release(id)?;
        }
    }
    // Its upper layer may hold files of the user's subordinate ids; a
    // missing one was removed by another sweep first.
    crate::rootless::remove_trees(&[dir])
}
