//! Resolving paths inside the container's root filesystem without ever
//! leaving it. Every lookup goes through `openat2(RESOLVE_IN_ROOT)` from the
//! rootfs directory fd, so a symlink planted in the image (absolute or
//! `../..`) resolves inside the rootfs, never on the host
//! (the CVE-2021-30465 / CVE-2025-31133 class). Missing components are
//! created one at a time with `mkdirat` relative to an already-resolved fd.

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{mkdirat, Mode};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// What to create at the end of a path when it is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leaf {
    Directory,
    File,
}

fn how(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

/// The path relative to the root, with `.`/`..` and the leading `/` removed
/// lexically. (`..` is also clamped by RESOLVE_IN_ROOT; removing it here
/// keeps the mkdir walk simple.)
pub(crate) fn relative(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Opens `path` (O_PATH) inside `root`.
pub(crate) fn open_in_root(root: BorrowedFd<'_>, path: &Path) -> Result<OwnedFd, Errno> {
    let rel = relative(path);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel.as_path()
    };
    openat2(root, rel, how(OFlag::O_PATH))
}

/// Opens `path` inside `root`, creating missing directories (mode 0755) and,
/// if `leaf` is `File`, an empty file at the end. Returns an O_PATH fd.
pub(crate) fn create_in_root(
    root: BorrowedFd<'_>,
    path: &Path,
    leaf: Leaf,
) -> Result<OwnedFd, Errno> {
    create_in_root_depth(root, path, leaf, 0)
}

/// Symlinks followed while creating, as the kernel's own limit.
const MAX_SYMLINKS: u32 = 40;

fn create_in_root_depth(
    root: BorrowedFd<'_>,
    path: &Path,
    leaf: Leaf,
    depth: u32,
) -> Result<OwnedFd, Errno> {
    if depth > MAX_SYMLINKS {
        return Err(Errno::ELOOP);
    }
    match open_in_root(root, path) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(e),
    }
    let rel = relative(path);
    if let Some(fd) = create_leaf_in_existing_parent(root, &rel, leaf)? {
        return Ok(fd);
    }
    let comps: Vec<_> = rel.components().collect();
    let mut prefix = PathBuf::new();
    for (i, comp) in comps.iter().enumerate() {
        let next = prefix.join(comp);
        match open_in_root(root, &next) {
            Ok(_) => {}
            Err(Errno::ENOENT) => {
                let parent = if prefix.as_os_str().is_empty() {
                    openat2(root, ".", how(OFlag::O_PATH | OFlag::O_DIRECTORY))?
                } else {
                    openat2(root, &prefix, how(OFlag::O_PATH | OFlag::O_DIRECTORY))?
                };
                // A dangling symlink: create its target instead, re-rooted.
                if let Ok(target) = nix::fcntl::readlinkat(parent.as_fd(), comp.as_os_str()) {
                    let base = if Path::new(&target).is_absolute() {
                        PathBuf::from("/")
                    } else {
                        Path::new("/").join(&prefix)
                    };
                    let mut redirected = base.join(&target);
                    for rest in &comps[i + 1..] {
                        redirected.push(rest);
                    }
                    return create_in_root_depth(root, &redirected, leaf, depth + 1);
                }
                let is_last = i + 1 == comps.len();
                let made = if is_last && leaf == Leaf::File {
                    create_file_at(parent.as_fd(), comp.as_os_str())
                } else {
                    mkdirat(
                        parent.as_fd(),
                        comp.as_os_str(),
                        Mode::from_bits_truncate(0o755),
                    )
                };
                match made {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
        prefix = next;
    }
    open_in_root(root, path)
}

/// The common case for a mount point: only the last component is missing.
/// Creates it in its parent (resolved inside the root) and opens it without
/// following anything. `None` sends the caller down the component walk: the
/// parent is missing too, or something (a dangling symlink) holds the name.
fn create_leaf_in_existing_parent(
    root: BorrowedFd<'_>,
    rel: &Path,
    leaf: Leaf,
) -> Result<Option<OwnedFd>, Errno> {
    let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
        return Ok(None);
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let dir = match openat2(root, parent, how(OFlag::O_PATH | OFlag::O_DIRECTORY)) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(e),
    };
    let made = match leaf {
        Leaf::File => create_file_at(dir.as_fd(), name),
        Leaf::Directory => mkdirat(dir.as_fd(), name, Mode::from_bits_truncate(0o755)),
    };
    match made {
        Ok(()) => {}
        Err(Errno::EEXIST) => return Ok(None),
        Err(e) => return Err(e),
    }
    let exact = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        );
    openat2(dir.as_fd(), name, exact).map(Some)
}

fn create_file_at(dir: BorrowedFd<'_>, name: &std::ffi::OsStr) -> Result<(), Errno> {
    // The parent was resolved inside the root; O_NOFOLLOW|O_EXCL refuse to
    // follow or reuse a symlink that appeared since.
    nix::fcntl::openat(
        dir,
        name,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )
    .map(drop)
}

/// `/proc/self/fd/N`, for handing a resolved fd to mount(2).
pub(crate) fn fd_path(fd: &impl std::os::fd::AsRawFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::fcntl::open;
    use nix::sys::stat::fstat;
    use std::os::unix::fs::symlink;

    fn root_fd(dir: &Path) -> OwnedFd {
        open(
            dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    #[test]
    fn symlinks_stay_inside_root() {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&rootfs).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        symlink(&outside, rootfs.join("abs")).unwrap();
        symlink("../../../../outside", rootfs.join("rel")).unwrap();
        let root = root_fd(&rootfs);
        create_in_root(root.as_fd(), Path::new("/abs/x/y"), Leaf::Directory).unwrap();
        create_in_root(root.as_fd(), Path::new("/rel/file"), Leaf::File).unwrap();
        assert_eq!(
            std::fs::read_dir(&outside).unwrap().count(),
            0,
            "nothing may be created outside the root"
        );
        // The absolute symlink target was re-rooted: <rootfs>/<outside path>/x/y.
        assert!(rootfs.join(relative(&outside)).join("x/y").is_dir());
        assert!(rootfs.join("outside/file").is_file());
    }

    #[test]
    fn missing_leaf_is_created_in_place_and_dangling_leaf_is_rerooted() {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        symlink("/elsewhere/target", rootfs.join("etc/dangling")).unwrap();
        let root = root_fd(&rootfs);
        let dir = create_in_root(root.as_fd(), Path::new("/etc/newdir"), Leaf::Directory).unwrap();
        assert!(fstat(dir.as_fd()).unwrap().st_mode & libc::S_IFMT == libc::S_IFDIR);
        let file = create_in_root(root.as_fd(), Path::new("/etc/newfile"), Leaf::File).unwrap();
        assert!(fstat(file.as_fd()).unwrap().st_mode & libc::S_IFMT == libc::S_IFREG);
        create_in_root(root.as_fd(), Path::new("/etc/dangling"), Leaf::Directory).unwrap();
        assert!(
            rootfs.join("elsewhere/target").is_dir(),
            "a dangling symlink's target is made inside the root"
        );
        assert!(!Path::new("/elsewhere").exists());
    }

    #[test]
    fn lexical_relative() {
        assert_eq!(relative(Path::new("/a/../../b/./c")), PathBuf::from("b/c"));
        assert_eq!(relative(Path::new("/")), PathBuf::new());
    }
}
