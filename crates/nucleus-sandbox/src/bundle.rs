//! Writes the bundle of a docker-like run at `<root>/.bundles/<id>/`:
//! `config.json`, the generated `rootfs/` (agent mode), the copied context,
//! and the in-memory secrets. The spec names this directory in
//! `org.nucleus.owned-bundle`, so the engine's `delete` removes it.
//!
//! Secrets never touch a disk: each is a file (mode 0400, owned by the
//! workload user) in a detached tmpfs that is mounted in no namespace, and
//! the container's init bind-mounts it from `/proc/self/fd/N/NAME`. The init
//! is a fork of the process holding the fd, so it still has it when it
//! mounts; close_range marks it close-on-exec before the workload runs.

use crate::agent_root::Symlink;
use crate::compile::Plan;
use crate::error::{Field, Result, SandboxError};
use crate::spec::{ContextMode, Secret};
use nix::sys::stat::{fchmod, Mode};
use nix::unistd::{fchown, Gid, Uid};
use serde_json::json;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Directory under the state root holding generated bundles.
pub const BUNDLES_DIR: &str = ".bundles";

/// Largest secret accepted: secrets are small, and they pin memory.
const MAX_SECRET_BYTES: u64 = 1 << 20;

/// A written bundle. The secret fds must stay open until the init has
/// mounted them (the engine's spawn/run has returned).
#[derive(Debug)]
pub struct Bundle {
    pub path: PathBuf,
    pub secret_fds: Vec<OwnedFd>,
}

/// `<root>/.bundles/<id>`.
pub fn bundle_path(root: &Path, id: &str) -> PathBuf {
    root.join(BUNDLES_DIR).join(id)
}

/// Creates the bundle directory (it must not exist yet).
pub fn create_dir(root: &Path, id: &str) -> Result<PathBuf> {
    let base = root.join(BUNDLES_DIR);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(&base)
        .map_err(|e| SandboxError::io("create", &base, e))?;
    let path = bundle_path(root, id);
    fs::DirBuilder::new()
        .mode(0o711)
        .create(&path)
        .map_err(|e| SandboxError::io("create", &path, e))?;
    Ok(path)
}

/// Where the shared agent-mode root skeletons live, under the state root.
pub const SKELETONS_DIR: &str = ".agent-rootfs";

/// The skeleton (empty directories and symlinks) of the host-derived root,
/// shared by every agent container with the same layout. The engine mounts a
/// tmpfs over it in the container's own mount namespace and copies the
/// skeleton in, so it is never written after creation, and per-container
/// mount points never touch the disk. Created once, atomically (built
/// aside, then renamed); kept like a cache.
fn ensure_skeleton(root: &Path, dirs: &[String], symlinks: &[Symlink]) -> Result<PathBuf> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for d in dirs {
        h.update(b"d\0");
        h.update(d.as_bytes());
        h.update(b"\0");
    }
    for (link, target) in symlinks {
        h.update(b"l\0");
        h.update(link.as_bytes());
        h.update(b"\0");
        h.update(target.as_bytes());
        h.update(b"\0");
    }
    let key: String = h
        .finalize()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect();
    let base = root.join(SKELETONS_DIR);
    let path = base.join(&key);
    if path.is_dir() {
        return Ok(path);
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(&base)
        .map_err(|e| SandboxError::io("create", &base, e))?;
    let tmp = base.join(format!(".tmp-{}-{key}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::DirBuilder::new()
        .mode(0o755)
        .create(&tmp)
        .map_err(|e| SandboxError::io("create", &tmp, e))?;
    for d in dirs {
        let p = tmp.join(d);
        fs::DirBuilder::new()
            .mode(if d == "root" { 0o700 } else { 0o755 })
            .create(&p)
            .map_err(|e| SandboxError::io("create", &p, e))?;
    }
    for (link, target) in symlinks {
        let p = tmp.join(link);
        std::os::unix::fs::symlink(target, &p).map_err(|e| SandboxError::io("symlink", &p, e))?;
    }
    match fs::rename(&tmp, &path) {
        Ok(()) => Ok(path),
        // Another run made it first: use theirs.
        Err(_) if path.is_dir() => {
            let _ = fs::remove_dir_all(&tmp);
            Ok(path)
        }
        Err(e) => Err(SandboxError::io("create", &path, e)),
    }
}

/// Writes everything `plan` asks for into `dir` and returns the bundle.
pub fn write(dir: &Path, plan: &mut Plan) -> Result<Bundle> {
    if plan.generated_root {
        let root = dir.parent().and_then(Path::parent).ok_or_else(|| {
            SandboxError::io(
                "find the state root of",
                dir,
                std::io::ErrorKind::NotFound.into(),
            )
        })?;
        let skeleton = ensure_skeleton(root, &plan.dirs, &plan.symlinks)?;
        plan.spec["root"]["path"] = json!(skeleton);
        plan.spec["annotations"][nucleus_engine::spec::ROOTFS_TMPFS_ANNOTATION] = json!("true");
    }
    let etc = dir.join("etc");
    fs::DirBuilder::new()
        .mode(0o755)
        .create(&etc)
        .map_err(|e| SandboxError::io("create", &etc, e))?;
    for (rel, text) in &plan.files {
        let p = dir.join(rel);
        fs::write(&p, text).map_err(|e| SandboxError::io("write", &p, e))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644))
            .map_err(|e| SandboxError::io("chmod", &p, e))?;
    }
    let mut extra = Vec::new();
    if let Some((src, mode)) = &plan.context {
        match mode {
            ContextMode::Copy => {
                let dest = dir.join("context");
                copy_tree(src, &dest).map_err(|e| {
                    SandboxError::invalid(
                        Field::Context,
                        src.display().to_string(),
                        format!("cannot copy: {e}"),
                    )
                })?;
                if plan.uid != 0 || plan.gid != 0 {
                    chown_tree(&dest, plan.uid, plan.gid).map_err(|e| {
                        SandboxError::invalid(
                            Field::Context,
                            src.display().to_string(),
                            format!("cannot give the copy to the workload user: {e}"),
                        )
                    })?;
                }
                extra.push(json!({"destination": "/context", "type": "bind", "source": dest, "options": ["rbind", "nosuid", "nodev"]}));
            }
            ContextMode::Bind => {
                extra.push(json!({"destination": "/context", "type": "bind", "source": src, "options": ["rbind", "ro", "nosuid", "nodev"]}));
            }
        }
    }
    let mut secret_fds = Vec::new();
    if !plan.secrets.is_empty() {
        let (mnt, base) = match secrets_tmpfs(&plan.secrets, plan.uid, plan.gid) {
            Ok((mnt, names)) => {
                let base = format!("/proc/self/fd/{}", mnt.as_raw_fd());
                secret_fds.push(mnt);
                (names, base)
            }
            Err(SandboxError::Sys {
                source: nix::errno::Errno::EPERM,
                ..
            }) if !nix::unistd::geteuid().is_root() => {
                let names = secrets_in_bundle(dir, &plan.secrets, plan.uid, plan.gid)?;
                (names, dir.join("secrets").display().to_string())
            }
            Err(e) => return Err(e),
        };
        for (secret, name) in plan.secrets.iter().zip(mnt) {
            extra.push(json!({
                "destination": secret.destination, "type": "bind", "source": format!("{base}/{name}"),
                "options": ["bind", "ro", "nosuid", "nodev", "noexec"]
            }));
        }
    }
    if let Some(m) = plan.spec["mounts"].as_array_mut() {
        m.extend(extra);
    }
    plan.spec["annotations"][nucleus_engine::state::OWNED_BUNDLE_ANNOTATION] = json!(dir);
    let config = dir.join("config.json");
    // Compact: the engine is its only reader, and this is on the start path.
    let text = serde_json::to_vec(&plan.spec).map_err(|e| SandboxError::Encode {
        what: "config.json",
        reason: e.to_string(),
    })?;
    fs::write(&config, text).map_err(|e| SandboxError::io("write", &config, e))?;
    Ok(Bundle {
        path: dir.to_path_buf(),
        secret_fds,
    })
}

/// Makes a detached tmpfs (`fsopen`/`fsmount`: in memory, and mounted in
/// no mount namespace) holding each secret as a file, mode 0400 and owned
/// by uid:gid, and zeroes the copies on our heap. Returns the mount fd and
/// the file names. The fd is inherited across exec (no CLOEXEC) so a
/// detached run's monitor, started with exec, still holds it.
///
/// Not a memfd: the kernel refuses to bind-mount a memfd (EINVAL, its
/// internal mount is in no namespace), while binding from a detached mount
/// is allowed since Linux 6.15.
fn secrets_tmpfs(secrets: &[Secret], uid: u32, gid: u32) -> Result<(OwnedFd, Vec<String>)> {
    use rustix::mount::{
        fsconfig_create, fsconfig_set_string, fsmount, fsopen, FsMountFlags, FsOpenFlags,
        MountAttrFlags,
    };
    let sys = |op: &'static str| {
        move |e: rustix::io::Errno| SandboxError::Sys {
            op,
            source: nix::errno::Errno::from_raw(e.raw_os_error()),
        }
    };
    let fs =
        fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC).map_err(sys("fsopen the secrets tmpfs"))?;
    let total: u64 = secrets
        .iter()
        .filter_map(|s| fs::metadata(&s.source).ok())
        .map(|m| m.len())
        .sum();
    fsconfig_set_string(&fs, "size", (total + 64 * 1024).to_string())
        .map_err(sys("size the secrets tmpfs"))?;
    fsconfig_set_string(&fs, "mode", "0700").map_err(sys("set the mode of the secrets tmpfs"))?;
    fsconfig_create(&fs).map_err(sys("create the secrets tmpfs"))?;
    let mnt = fsmount(
        &fs,
        FsMountFlags::empty(),
        MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    )
    .map_err(sys("fsmount the secrets tmpfs"))?;
    let mut names = Vec::new();
    for (i, s) in secrets.iter().enumerate() {
        let name = format!("secret{i}");
        write_secret(&mnt, &name, &s.source, uid, gid)
            .map_err(|e| SandboxError::invalid(Field::Secret, s.source.display().to_string(), e))?;
        names.push(name);
    }
    Ok((mnt, names))
}

/// Rootless, no tmpfs can be mounted here: the secrets go to `secrets/`
/// in the bundle instead, provided the state root is itself in memory
/// (`$XDG_RUNTIME_DIR` is a tmpfs on systemd hosts).
fn secrets_in_bundle(dir: &Path, secrets: &[Secret], uid: u32, gid: u32) -> Result<Vec<String>> {
    let first = secrets
        .first()
        .map(|s| s.source.display().to_string())
        .unwrap_or_default();
    let on_tmpfs = nix::sys::statfs::statfs(dir)
        .is_ok_and(|f| f.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC);
    if !on_tmpfs {
        return Err(SandboxError::invalid(
            Field::Secret,
            first,
            format!(
                "rootless: secrets stay in memory, which needs the state root on a tmpfs (as $XDG_RUNTIME_DIR usually is); `{}` is not one",
                dir.display()
            ),
        ));
    }
    let sdir = dir.join("secrets");
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&sdir)
        .map_err(|e| SandboxError::io("create", &sdir, e))?;
    let fd: OwnedFd = fs::File::open(&sdir)
        .map_err(|e| SandboxError::io("open", &sdir, e))?
        .into();
    let mut names = Vec::new();
    for (i, s) in secrets.iter().enumerate() {
        let name = format!("secret{i}");
        write_secret(&fd, &name, &s.source, uid, gid)
            .map_err(|e| SandboxError::invalid(Field::Secret, s.source.display().to_string(), e))?;
        names.push(name);
    }
    Ok(names)
}

/// Copies one secret into the tmpfs; the error says which step failed.
fn write_secret(
    dir: &OwnedFd,
    name: &str,
    src: &Path,
    uid: u32,
    gid: u32,
) -> std::result::Result<(), String> {
    use rustix::fs::{openat, Mode as RMode, OFlags};
    let file = fs::File::open(src).map_err(|e| format!("open: {e}"))?;
    let len = file.metadata().map_err(|e| format!("stat: {e}"))?.len();
    if len > MAX_SECRET_BYTES {
        return Err(format!("larger than {MAX_SECRET_BYTES} bytes"));
    }
    // Sized up front so the buffer never reallocates and leaves stray copies.
    let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0) + 1);
    let result = (|| -> std::result::Result<(), String> {
        file.take(MAX_SECRET_BYTES)
            .read_to_end(&mut buf)
            .map_err(|e| format!("read: {e}"))?;
        let fd = openat(
            dir,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
            RMode::from_raw_mode(0o400),
        )
        .map_err(|e| format!("create in tmpfs: {e}"))?;
        let mut f = fs::File::from(fd);
        f.write_all(&buf).map_err(|e| format!("write: {e}"))?;
        fchmod(&f, Mode::from_bits_truncate(0o400)).map_err(|e| format!("fchmod: {e}"))?;
        fchown(&f, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
            .map_err(|e| format!("fchown: {e}"))?;
        Ok(())
    })();
    buf.fill(0);
    // Keep the zeroing from being optimised away as a dead store.
    std::hint::black_box(&buf);
    result
}

/// Copies a directory tree: regular files with `std::fs::copy` (which uses
/// copy_file_range, so reflinks where the filesystem has them), symlinks as
/// symlinks, modes kept. Devices, sockets and fifos are skipped.
fn copy_tree(src: &Path, dest: &Path) -> Result<()> {
    let meta = fs::metadata(src).map_err(|e| SandboxError::io("stat", src, e))?;
    if !meta.is_dir() {
        return Err(SandboxError::io(
            "copy",
            src,
            std::io::Error::from_raw_os_error(libc::ENOTDIR),
        ));
    }
    fs::create_dir(dest).map_err(|e| SandboxError::io("create", dest, e))?;
    fs::set_permissions(dest, meta.permissions())
        .map_err(|e| SandboxError::io("chmod", dest, e))?;
    for entry in fs::read_dir(src).map_err(|e| SandboxError::io("read", src, e))? {
        let entry = entry.map_err(|e| SandboxError::io("read", src, e))?;
        let (from, to) = (entry.path(), dest.join(entry.file_name()));
        let ft = entry
            .file_type()
            .map_err(|e| SandboxError::io("stat", &from, e))?;
        if ft.is_dir() {
            copy_tree(&from, &to)?;
        } else if ft.is_symlink() {
            let target =
                fs::read_link(&from).map_err(|e| SandboxError::io("read link", &from, e))?;
            std::os::unix::fs::symlink(target, &to)
                .map_err(|e| SandboxError::io("symlink", &to, e))?;
        } else if ft.is_file() {
            fs::copy(&from, &to).map_err(|e| SandboxError::io("copy", &from, e))?;
        }
    }
    Ok(())
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .map_err(|e| SandboxError::io("chown", path, e))?;
    if fs::symlink_metadata(path)
        .map_err(|e| SandboxError::io("stat", path, e))?
        .is_dir()
    {
        for entry in fs::read_dir(path).map_err(|e| SandboxError::io("read", path, e))? {
            chown_tree(
                &entry.map_err(|e| SandboxError::io("read", path, e))?.path(),
                uid,
                gid,
            )?;
        }
    }
    Ok(())
}

/// Writes `value` as the JSON file `name` in `bundle` (a plan the monitor
/// or a later verb reads back with [`read_json`]).
pub(crate) fn write_json(bundle: &Path, name: &str, value: &impl serde::Serialize) -> Result<()> {
    let path = bundle.join(name);
    let text = serde_json::to_vec(value)
        .map_err(|e| SandboxError::io("write", &path, std::io::Error::other(e)))?;
    fs::write(&path, text).map_err(|e| SandboxError::io("write", &path, e))
}

/// The JSON file `name` in `bundle`; `None` when the run wrote none.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    bundle: &Path,
    name: &str,
) -> Result<Option<T>> {
    let path = bundle.join(name);
    match fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| SandboxError::io("parse", &path, std::io::Error::other(e))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SandboxError::io("read", &path, e)),
    }
}

/// Removes a bundle we created, after a failed start.
pub fn remove(path: &Path) {
    if let Err(e) = fs::remove_dir_all(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove generated bundle");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_land_in_a_detached_tmpfs_0400() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: fsopen(tmpfs) needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("s");
        fs::write(&src, b"hunter2").unwrap();
        let (mnt, names) = secrets_tmpfs(
            &[Secret {
                source: src,
                destination: "/run/secrets/s".into(),
            }],
            1000,
            1000,
        )
        .unwrap();
        let path = format!("/proc/self/fd/{}/{}", mnt.as_raw_fd(), names[0]);
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o400);
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 1000);
        assert_eq!(fs::read(&path).unwrap(), b"hunter2");
        let st = nix::sys::statfs::statfs(path.as_str()).unwrap();
        assert_eq!(st.filesystem_type(), nix::sys::statfs::TMPFS_MAGIC);
    }

    #[test]
    fn copy_tree_keeps_links_and_modes() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("sub/a"), b"x").unwrap();
        fs::set_permissions(src.join("sub/a"), fs::Permissions::from_mode(0o751)).unwrap();
        std::os::unix::fs::symlink("sub/a", src.join("l")).unwrap();
        copy_tree(&src, &dir.path().join("dst")).unwrap();
        assert_eq!(fs::read(dir.path().join("dst/sub/a")).unwrap(), b"x");
        assert_eq!(
            fs::metadata(dir.path().join("dst/sub/a"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o751
        );
        assert_eq!(
            fs::read_link(dir.path().join("dst/l")).unwrap(),
            Path::new("sub/a")
        );
    }
}
