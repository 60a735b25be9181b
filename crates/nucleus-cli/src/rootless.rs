//! Running as an ordinary user: rootless is the default for a non-root
//! caller, and the default state and data roots move to places that user
//! owns (`$XDG_RUNTIME_DIR/nucleus`, `$XDG_DATA_HOME/nucleus`).

use anyhow::{bail, Context, Result};
use nucleus_sandbox::userns::{oci_id_maps, Caller, UserNamespace, UsernsMode};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Root's state root.
pub const ROOT_STATE_ROOT: &str = "/run/nucleus";

/// The global `--rootless` value: `true`, `false`, or `auto` (the
/// default: rootless when the effective uid is not 0), as runc takes it.
pub fn is_rootless(flag: Option<&str>) -> bool {
    match flag {
        Some("true") => true,
        Some("false") => false,
        _ => !is_root(),
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn non_empty_env(key: &str) -> Option<PathBuf> {
    std::env::var_os(key)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The state root when `--root`/`NUCLEUS_ROOT` is not given: root's
/// `/run/nucleus`; for another user `$XDG_RUNTIME_DIR/nucleus`, or
/// `/tmp/nucleus-UID` without one, made 0700 and refused when someone
/// else owns it.
pub fn default_state_root() -> Result<PathBuf> {
    if is_root() {
        return Ok(PathBuf::from(ROOT_STATE_ROOT));
    }
    let uid = nix::unistd::geteuid().as_raw();
    let dir = match non_empty_env("XDG_RUNTIME_DIR") {
        Some(run) => run.join("nucleus"),
        None => PathBuf::from(format!("/tmp/nucleus-{uid}")),
    };
    ensure_private_dir(&dir, uid)?;
    Ok(dir)
}

/// Makes `dir` (mode 0700) unless it exists; refuses one that is not a
/// directory owned by `uid` or that others can write.
fn ensure_private_dir(dir: &Path, uid: u32) -> Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(e).with_context(|| format!("create the state root `{}`", dir.display()))
        }
    }
    let meta = std::fs::symlink_metadata(dir)
        .with_context(|| format!("inspect the state root `{}`", dir.display()))?;
    if !meta.is_dir() {
        bail!(
            "the state root `{}` is not a directory; remove it or pass --root",
            dir.display()
        );
    }
    if meta.uid() != uid {
        bail!(
            "the state root `{}` is owned by uid {}, not by you (uid {uid}); remove it or pass --root",
            dir.display(),
            meta.uid()
        );
    }
    if meta.permissions().mode() & 0o022 != 0 {
        bail!(
            "the state root `{}` is writable by others (mode {:o}); chmod 700 it or pass --root",
            dir.display(),
            meta.permissions().mode() & 0o7777
        );
    }
    Ok(())
}

/// The data root when `--data-root`/`NUCLEUS_DATA_ROOT` is not given:
/// `/var/lib/nucleus` for root, else `$XDG_DATA_HOME/nucleus` or
/// `~/.local/share/nucleus`.
pub fn default_data_root() -> PathBuf {
    if is_root() {
        return PathBuf::from(nucleus_image::DEFAULT_DATA_ROOT);
    }
    if let Some(d) = non_empty_env("XDG_DATA_HOME") {
        return d.join("nucleus");
    }
    let home = non_empty_env("HOME").or_else(|| {
        nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .map(|u| u.dir)
    });
    match home {
        Some(h) => h.join(".local/share/nucleus"),
        None => PathBuf::from(format!(
            "/tmp/nucleus-{}-data",
            nix::unistd::geteuid().as_raw()
        )),
    }
}

/// For an ordinary user, makes the image store rootless: layers unpacked
/// (and trees removed) in a user namespace with the map containers get by
/// default, container root = the user, 1.. = its subordinate ids; in
/// process, every file the user's, when it has no range.
pub fn configure_image_store() {
    if is_root() {
        return;
    }
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let caller = Caller::current(&read("/etc/subuid"), &read("/etc/subgid"));
    let ns = UserNamespace {
        mode: UsernsMode::Private,
        ..Default::default()
    };
    let writer: Option<nucleus_image::rootless::MapWriter> =
        match nucleus_sandbox::userns::id_maps(&ns, &caller, true) {
            Ok((uid, gid)) if uid.len() > 1 || gid.len() > 1 => {
                let (uid, gid) = (oci_id_maps(&uid), oci_id_maps(&gid));
                Some(Box::new(move |pid: u32| {
                    let pid = i32::try_from(pid).map_err(|_| format!("pid {pid} out of range"))?;
                    nucleus_engine::userns::write_id_maps(pid, &uid, &gid)
                        .map_err(|e| e.to_string())
                }))
            }
            _ => None,
        };
    nucleus_image::rootless::configure(writer);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_dir_is_made_and_a_shared_one_refused() {
        let t = tempfile::tempdir().unwrap();
        let uid = nix::unistd::geteuid().as_raw();
        let d = t.path().join("state");
        ensure_private_dir(&d, uid).unwrap();
        assert_eq!(
            std::fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o700
        );
        ensure_private_dir(&d, uid).unwrap();
        let e = ensure_private_dir(&d, uid + 1).unwrap_err().to_string();
        assert!(e.contains("not by you"), "{e}");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = ensure_private_dir(&d, uid).unwrap_err().to_string();
        assert!(e.contains("writable by others"), "{e}");
    }

    #[test]
    fn the_flag_overrides_the_euid() {
        assert!(is_rootless(Some("true")));
        assert!(!is_rootless(Some("false")));
        assert_eq!(is_rootless(Some("auto")), !is_root());
    }
}
