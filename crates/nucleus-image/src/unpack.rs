//! Applies one layer tar to its own directory, as overlayfs expects a lower
//! layer: `.wh.NAME` becomes a 0/0 character device NAME, `.wh..wh..opq`
//! sets `trusted.overlay.opaque=y` on its directory (`user.overlay.opaque`
//! for an ordinary user's store, see [`crate::rootless`], which also skips
//! device nodes). Owners (when root, also root of a user namespace), modes,
//! xattrs, hard links, device nodes, fifos, symlinks and mtimes are kept.
//!
//! Safety: no path from the tar is ever handed to a path-walking syscall
//! from the host's root. Entries with `..` are refused; every parent is
//! opened with `openat2(RESOLVE_IN_ROOT)` from the layer directory's fd, so
//! an absolute or climbing symlink in the layer resolves inside it; the
//! final component is created with `*at` calls that never follow it
//! (`O_EXCL|O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`). Hard link targets are
//! resolved the same way.

use std::cell::RefCell;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use rustix::fs::Timespec;
use rustix::fs::{
    chmodat, chownat, fchmod, fchown, fsetxattr, futimens, lsetxattr, makedev, mkdirat, mknodat,
    openat, openat2, statat, symlinkat, unlinkat, utimensat, AtFlags, Dir, FileType, Mode, OFlags,
    ResolveFlags, Timestamps, XattrFlags, CWD,
};
use rustix::fs::{Gid, Uid};
use rustix::io::Errno;
use tar::EntryType;

use crate::error::{ImageError, Result};

/// The whiteout prefix and the opaque-directory marker of the OCI layer spec.
pub const WHITEOUT_PREFIX: &str = ".wh.";
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// The xattr overlayfs reads to make a directory opaque.
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Unpacks the tar stream `reader` into the existing, empty directory `dest`.
/// `layer` names the layer in errors. Returns the reader, drained to EOF
/// (so a hashing reader has seen the whole stream).
pub fn unpack_layer<R: Read>(reader: R, dest: &Path, layer: &str) -> Result<R> {
    let root = openat(
        CWD,
        dest,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ImageError::fs("open layer directory", dest)(e.into()))?;
    let as_root = rustix::process::geteuid().is_root();
    let mut u = Unpacker {
        root,
        layer,
        as_root,
        owner: (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        ),
        umask: umask(),
        dirs: Vec::new(),
        parent: RefCell::new(None),
        buf: vec![0; COPY_BUFFER],
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(|e| u.err("<archive>", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| u.err("<archive>", e))?;
        u.apply(&mut entry)?;
    }
    u.finish_dirs()?;
    let mut reader = archive.into_inner();
    io::copy(&mut reader, &mut io::sink()).map_err(|e| u.err("<archive>", e))?;
    Ok(reader)
}

/// Bytes copied at once from the tar into a file.
const COPY_BUFFER: usize = 1 << 20;

struct Unpacker<'a> {
    root: OwnedFd,
    layer: &'a str,
    as_root: bool,
    /// Who owns what this process creates (euid, egid).
    owner: (u32, u32),
    /// The process umask (what `openat` and `mkdirat` take off a mode).
    umask: u32,
    /// Directories and their mtimes, set last (creating entries changes them).
    dirs: Vec<(PathBuf, i64)>,
    /// The last parent directory opened: its components, its fd, and
    /// whether it is set-gid. Tar entries come grouped by directory, so
    /// most entries reuse it. Dropped whenever an entry removes anything,
    /// as that may change what a path resolves to.
    parent: RefCell<Option<CachedDir>>,
    /// The copy buffer for file contents.
    buf: Vec<u8>,
}

struct CachedDir {
    comps: Vec<PathBuf>,
    fd: Rc<OwnedFd>,
    setgid: bool,
}

/// The process umask, from `/proc/self/status` (reading it with `umask(2)`
/// would change it for every thread); all bits when unknown, so every mode
/// is then set explicitly.
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o7777)
}

/// What a tar entry carries besides its data.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

impl Unpacker<'_> {
    fn err(&self, path: &str, source: io::Error) -> ImageError {
        ImageError::UnpackEntry {
            layer: self.layer.to_string(),
            path: path.to_string(),
            source,
        }
    }

    fn errno(&self, path: &Path, e: Errno) -> ImageError {
        self.err(&path.display().to_string(), e.into())
    }

    fn unsafe_path(&self, path: &Path, reason: &'static str) -> ImageError {
        ImageError::UnsafeLayerPath {
            layer: self.layer.to_string(),
            path: path.display().to_string(),
            reason,
        }
    }

    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw = entry
            .path()
            .map_err(|e| self.err("<archive>", e))?
            .into_owned();
        let comps = self.clean(&raw)?;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let meta = self.meta(entry, &raw)?;
        let Some((name, parents)) = comps.split_last() else {
            // `./` itself: the layer's root directory.
            self.set_dir_meta(self.root.as_fd(), &raw, &meta)?;
            self.dirs.push((PathBuf::new(), meta.mtime));
            return Ok(());
        };
        let (parent, parent_setgid) = self.open_dir(parents, &raw, true)?;
        let name = name.as_os_str();
        // What the kernel gives a new entry here already, or a chown is due.
        let chown = self.as_root && (parent_setgid || (meta.uid, meta.gid) != self.owner);
        if let Some(target) = name.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            return self.whiteout(parent.as_fd(), OsStr::from_bytes(target), &raw);
        }
        match kind {
            EntryType::Directory => {
                if !self.clear(parent.as_fd(), name, &raw, true)? {
                    mkdirat(&parent, name, Mode::from_raw_mode(0o700))
                        .map_err(|e| self.errno(&raw, e))?;
                }
                let dir = openat(
                    &parent,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| self.errno(&raw, e))?;
                self.set_dir_meta(dir.as_fd(), &raw, &meta)?;
                self.dirs.push((comps.iter().collect(), meta.mtime));
            }
            EntryType::Regular | EntryType::Continuous => {
                // Created with its final mode when nothing (a chown, the
                // umask) would change it after; else private until set.
                let create_mode = if chown { 0o600 } else { meta.mode & 0o777 };
                let flags = OFlags::WRONLY
                    | OFlags::CREATE
                    | OFlags::EXCL
                    | OFlags::NOFOLLOW
                    | OFlags::CLOEXEC;
                let mode = Mode::from_raw_mode(create_mode);
                let fd = match openat(&parent, name, flags, mode) {
                    Err(Errno::EXIST) => {
                        self.clear(parent.as_fd(), name, &raw, false)?;
                        openat(&parent, name, flags, mode)
                    }
                    r => r,
                }
                .map_err(|e| self.errno(&raw, e))?;
                let mut file = File::from(fd);
                self.copy(entry, &mut file, &raw)?;
                if chown {
                    self.set_fd_meta(file.as_fd(), &raw, &meta)?;
                } else {
                    if create_mode != meta.mode || meta.mode & self.umask != 0 {
                        fchmod(&file, Mode::from_raw_mode(meta.mode))
                            .map_err(|e| self.errno(&raw, e))?;
                    }
                    self.set_xattrs(file.as_fd(), &raw, &meta)?;
                }
                futimens(&file, &times(meta.mtime)).map_err(|e| self.errno(&raw, e))?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| self.err(&raw.display().to_string(), e))?;
                let target =
                    target.ok_or_else(|| self.unsafe_path(&raw, "symlink without a target"))?;
                match symlinkat(target.as_os_str(), &parent, name) {
                    Err(Errno::EXIST) => {
                        self.clear(parent.as_fd(), name, &raw, false)?;
                        symlinkat(target.as_os_str(), &parent, name)
                    }
                    r => r,
                }
                .map_err(|e| self.errno(&raw, e))?;
                self.set_at_meta(parent.as_fd(), name, &raw, &meta, false, chown)?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| self.err(&raw.display().to_string(), e))?;
                let target = target
                    .ok_or_else(|| self.unsafe_path(&raw, "hard link without a target"))?
                    .into_owned();
                let tcomps = self.clean(&target)?;
                let Some((tname, tparents)) = tcomps.split_last() else {
                    return Err(self.unsafe_path(&raw, "hard link to the layer root"));
                };
                let (tparent, _) = self.open_dir(tparents, &raw, false)?;
                if tcomps == comps {
                    return Ok(());
                }
                self.clear(parent.as_fd(), name, &raw, false)?;
                rustix::fs::linkat(&tparent, tname.as_os_str(), &parent, name, AtFlags::empty())
                    .map_err(|e| self.errno(&raw, e))?;
            }
            EntryType::Char | EntryType::Block if crate::rootless::is_active() => {
                crate::rootless::skipped(self.layer, &raw, "device node");
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (ftype, dev) = match kind {
                    EntryType::Char => (FileType::CharacterDevice, self.device(entry, &raw)?),
                    EntryType::Block => (FileType::BlockDevice, self.device(entry, &raw)?),
                    _ => (FileType::Fifo, 0),
                };
                self.clear(parent.as_fd(), name, &raw, false)?;
                mknodat(&parent, name, ftype, Mode::from_raw_mode(0o600), dev)
                    .map_err(|e| self.errno(&raw, e))?;
                self.set_at_meta(parent.as_fd(), name, &raw, &meta, true, true)?;
            }
            _ => return Err(self.unsafe_path(&raw, "unsupported tar entry type")),
        }
        Ok(())
    }

    /// The entry path as normal components; `..` is refused, `/` and `.` dropped.
    fn clean(&self, raw: &Path) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for c in raw.components() {
            match c {
                Component::Normal(n) => out.push(PathBuf::from(n)),
                Component::CurDir | Component::RootDir => {}
                Component::ParentDir => return Err(self.unsafe_path(raw, "`..` in a layer path")),
                Component::Prefix(_) => return Err(self.unsafe_path(raw, "path prefix")),
            }
        }
        Ok(out)
    }

    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>, raw: &Path) -> Result<Meta> {
        let h = entry.header();
        let bad = |e: io::Error| self.err(&raw.display().to_string(), e);
        let mut meta = Meta {
            mode: h.mode().map_err(bad)? & 0o7777,
            uid: u32::try_from(h.uid().map_err(bad)?)
                .map_err(|_| self.unsafe_path(raw, "uid out of range"))?,
            gid: u32::try_from(h.gid().map_err(bad)?)
                .map_err(|_| self.unsafe_path(raw, "gid out of range"))?,
            mtime: i64::try_from(h.mtime().map_err(bad)?).unwrap_or(0),
            xattrs: Vec::new(),
        };
        if let Some(exts) = entry.pax_extensions().map_err(bad)? {
            for ext in exts {
                let ext = ext.map_err(bad)?;
                let key = ext.key_bytes();
                let num = || {
                    std::str::from_utf8(ext.value_bytes())
                        .ok()
                        .and_then(|v| v.trim().parse::<u32>().ok())
                };
                if let Some(x) = key.strip_prefix(b"SCHILY.xattr.") {
                    if x.starts_with(b"trusted.") && crate::rootless::is_active() {
                        // Only the host's root may set these.
                        crate::rootless::skipped(self.layer, raw, "trusted xattr");
                        continue;
                    }
                    meta.xattrs.push((
                        OsStr::from_bytes(x).to_os_string(),
                        ext.value_bytes().to_vec(),
                    ));
                } else if key == b"uid" {
                    meta.uid = num().ok_or_else(|| self.unsafe_path(raw, "bad pax uid"))?;
                } else if key == b"gid" {
                    meta.gid = num().ok_or_else(|| self.unsafe_path(raw, "bad pax gid"))?;
                }
            }
        }
        if meta.uid == u32::MAX || meta.gid == u32::MAX {
            return Err(self.unsafe_path(raw, "uid or gid -1"));
        }
        Ok(meta)
    }

    fn device<R: Read>(&self, entry: &tar::Entry<'_, R>, raw: &Path) -> Result<rustix::fs::Dev> {
        let h = entry.header();
        let bad = |e: io::Error| self.err(&raw.display().to_string(), e);
        let major = h.device_major().map_err(bad)?.unwrap_or(0);
        let minor = h.device_minor().map_err(bad)?.unwrap_or(0);
        Ok(makedev(major, minor))
    }

    /// Opens the directory `comps` (relative to the layer root, symlinks
    /// resolved inside it), creating missing components when `create`.
    /// Also says whether the directory is set-gid.
    fn open_dir(&self, comps: &[PathBuf], raw: &Path, create: bool) -> Result<(Rc<OwnedFd>, bool)> {
        if let Some(c) = &*self.parent.borrow() {
            if c.comps == comps {
                return Ok((c.fd.clone(), c.setgid));
            }
        }
        let fd = Rc::new(self.resolve_dir(comps, raw, create)?);
        let st = rustix::fs::fstat(&*fd).map_err(|e| self.errno(raw, e))?;
        let setgid = st.st_mode & 0o2000 != 0;
        *self.parent.borrow_mut() = Some(CachedDir {
            comps: comps.to_vec(),
            fd: fd.clone(),
            setgid,
        });
        Ok((fd, setgid))
    }

    fn resolve_dir(&self, comps: &[PathBuf], raw: &Path, create: bool) -> Result<OwnedFd> {
        let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let path: PathBuf = if comps.is_empty() {
            PathBuf::from(".")
        } else {
            comps.iter().collect()
        };
        match openat2(&self.root, &path, flags, Mode::empty(), how) {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOENT) if create => {}
            Err(Errno::NOTDIR) => return Err(self.unsafe_path(raw, "a parent is not a directory")),
            Err(e) => return Err(self.errno(raw, e)),
        }
        let mut dir =
            openat(&self.root, ".", flags, Mode::empty()).map_err(|e| self.errno(raw, e))?;
        for i in 0..comps.len() {
            let prefix: PathBuf = comps[..=i].iter().collect();
            dir =
                match openat2(&self.root, &prefix, flags, Mode::empty(), how) {
                    Ok(fd) => fd,
                    Err(Errno::NOENT) => {
                        match mkdirat(&dir, comps[i].as_os_str(), Mode::from_raw_mode(0o755)) {
                            Ok(()) => {}
                            // The name exists but resolves to nothing: a dangling symlink.
                            Err(Errno::EXIST) => return Err(self.unsafe_path(
                                raw,
                                "a parent is a symlink that resolves to nothing inside the layer",
                            )),
                            Err(e) => return Err(self.errno(raw, e)),
                        }
                        openat2(&self.root, &prefix, flags, Mode::empty(), how)
                            .map_err(|e| self.errno(raw, e))?
                    }
                    Err(Errno::NOTDIR) => {
                        return Err(self.unsafe_path(raw, "a parent is not a directory"))
                    }
                    Err(e) => return Err(self.errno(raw, e)),
                };
        }
        Ok(dir)
    }

    /// Makes room for `name` in `parent`. Returns true when it is a
    /// directory that was kept (`keep_dir`: a directory entry over a directory).
    fn clear(
        &self,
        parent: BorrowedFd<'_>,
        name: &OsStr,
        raw: &Path,
        keep_dir: bool,
    ) -> Result<bool> {
        match statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(self.errno(raw, e)),
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                if keep_dir {
                    return Ok(true);
                }
                self.parent.borrow_mut().take();
                remove_tree(parent, name).map_err(|e| self.errno(raw, e))?;
                Ok(false)
            }
            Ok(_) => {
                self.parent.borrow_mut().take();
                unlinkat(parent, name, AtFlags::empty()).map_err(|e| self.errno(raw, e))?;
                Ok(false)
            }
        }
    }

    fn whiteout(&self, parent: BorrowedFd<'_>, target: &OsStr, raw: &Path) -> Result<()> {
        if target.as_bytes() == &OPAQUE_MARKER.as_bytes()[WHITEOUT_PREFIX.len()..] {
            let name = if crate::rootless::is_active() {
                crate::rootless::USER_OPAQUE_XATTR
            } else {
                OVERLAY_OPAQUE_XATTR
            };
            return fsetxattr(parent, name, b"y", XattrFlags::empty())
                .map_err(|e| self.errno(raw, e));
        }
        if target.is_empty() || target == "." || target == ".." {
            return Err(self.unsafe_path(raw, "whiteout without a valid name"));
        }
        self.clear(parent, target, raw, false)?;
        mknodat(
            parent,
            target,
            FileType::CharacterDevice,
            Mode::empty(),
            makedev(0, 0),
        )
        .map_err(|e| self.errno(raw, e))
    }

    fn owner(&self, meta: &Meta) -> (Option<Uid>, Option<Gid>) {
        if self.as_root {
            (Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)))
        } else {
            (None, None)
        }
    }

    /// Owner, then mode (chown clears set-id bits), then xattrs (chown
    /// clears `security.capability`).
    fn set_fd_meta(&self, fd: BorrowedFd<'_>, raw: &Path, meta: &Meta) -> Result<()> {
        let (u, g) = self.owner(meta);
        if u.is_some() {
            fchown(fd, u, g).map_err(|e| self.errno(raw, e))?;
        }
        fchmod(fd, Mode::from_raw_mode(meta.mode)).map_err(|e| self.errno(raw, e))?;
        self.set_xattrs(fd, raw, meta)
    }

    fn set_xattrs(&self, fd: BorrowedFd<'_>, raw: &Path, meta: &Meta) -> Result<()> {
        for (k, v) in &meta.xattrs {
            fsetxattr(fd, k.as_os_str(), v, XattrFlags::empty()).map_err(|e| self.errno(raw, e))?;
        }
        Ok(())
    }

    /// Copies an entry's data into `file` through the big buffer.
    fn copy<R: Read>(&mut self, entry: &mut R, file: &mut File, raw: &Path) -> Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        let r = (|| loop {
            match entry.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => io::Write::write_all(file, &buf[..n])?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        })();
        self.buf = buf;
        r.map_err(|e| self.err(&raw.display().to_string(), e))
    }

    fn set_dir_meta(&self, fd: BorrowedFd<'_>, raw: &Path, meta: &Meta) -> Result<()> {
        self.set_fd_meta(fd, raw, meta)
    }

    /// For entries that cannot be opened (symlinks, devices, fifos).
    fn set_at_meta(
        &self,
        parent: BorrowedFd<'_>,
        name: &OsStr,
        raw: &Path,
        meta: &Meta,
        chmod: bool,
        chown: bool,
    ) -> Result<()> {
        let (u, g) = self.owner(meta);
        if u.is_some() && chown {
            chownat(parent, name, u, g, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| self.errno(raw, e))?;
        }
        if chmod {
            chmodat(
                parent,
                name,
                Mode::from_raw_mode(meta.mode),
                AtFlags::empty(),
            )
            .map_err(|e| self.errno(raw, e))?;
        }
        if !meta.xattrs.is_empty() {
            // lsetxattr needs a path: the parent through its fd, then `name`, not followed.
            let mut p = PathBuf::from(format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(&parent)
            ));
            p.push(name);
            for (k, v) in &meta.xattrs {
                lsetxattr(&p, k.as_os_str(), v, XattrFlags::empty())
                    .map_err(|e| self.errno(raw, e))?;
            }
        }
        utimensat(parent, name, &times(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| self.errno(raw, e))
    }

    fn finish_dirs(&mut self) -> Result<()> {
        let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_SYMLINKS;
        for (path, mtime) in std::mem::take(&mut self.dirs).into_iter().rev() {
            let path = if path.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                path
            };
            match openat2(
                &self.root,
                &path,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                how,
            ) {
                Ok(fd) => futimens(&fd, &times(mtime)).map_err(|e| self.errno(&path, e))?,
                // Replaced by a later entry, or removed by a whiteout.
                Err(Errno::NOTDIR | Errno::NOENT | Errno::LOOP) => {}
                Err(e) => return Err(self.errno(&path, e)),
            }
        }
        Ok(())
    }
}

fn times(mtime: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Removes the directory `name` in `parent` and everything under it,
/// never following a symlink.
pub fn remove_tree(parent: BorrowedFd<'_>, name: &OsStr) -> rustix::io::Result<()> {
    let dir = openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for e in Dir::read_from(&dir)? {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push((
                OsStr::from_bytes(n).to_os_string(),
                e.file_type() == FileType::Directory,
            ));
        }
    }
    for (n, is_dir) in names {
        if is_dir {
            remove_tree(dir.as_fd(), &n)?;
        } else {
            unlinkat(&dir, &n, AtFlags::empty())?;
        }
    }
    unlinkat(parent, name, AtFlags::REMOVEDIR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use tar::{Builder, Header};

    /// A tar built by hand; names are written raw so hostile ones survive.
    struct Tar(Builder<Vec<u8>>);

    impl Tar {
        fn new() -> Self {
            Self(Builder::new(Vec::new()))
        }
        fn entry(
            &mut self,
            kind: EntryType,
            name: &str,
            mode: u32,
            link: Option<&str>,
            data: &[u8],
        ) -> &mut Self {
            let mut h = Header::new_gnu();
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_uid(1234);
            h.set_gid(4321);
            h.set_mtime(1_000_000);
            h.set_size(data.len() as u64);
            if let Some(l) = link {
                h.set_link_name_literal(l).unwrap();
            }
            h.set_cksum();
            self.0.append(&h, data).unwrap();
            self
        }
        fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> &mut Self {
            self.entry(EntryType::Regular, name, mode, None, data)
        }
        fn dir(&mut self, name: &str) -> &mut Self {
            self.entry(EntryType::Directory, name, 0o755, None, b"")
        }
        fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
            self.entry(EntryType::Symlink, name, 0o777, Some(target), b"")
        }
        fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
            self.entry(EntryType::Link, name, 0o644, Some(target), b"")
        }
        fn bytes(&mut self) -> Vec<u8> {
            std::mem::replace(&mut self.0, Builder::new(Vec::new()))
                .into_inner()
                .unwrap()
        }
    }

    /// A layer directory inside a scratch directory that also holds a
    /// `victim/` an escaping entry would reach.
    fn scratch() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let layer = t.path().join("layer");
        fs::create_dir(&layer).unwrap();
        fs::create_dir(t.path().join("victim")).unwrap();
        fs::write(t.path().join("victim/file"), b"original").unwrap();
        (t, layer)
    }

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    #[test]
    fn files_dirs_links_modes_owners_and_xattrs() {
        let (_t, layer) = scratch();
        let mut tar = Tar::new();
        tar.dir("./")
            .dir("bin/")
            .file("bin/tool", 0o4755, b"#!x")
            .symlink("bin/sh", "/bin/tool")
            .hardlink("bin/tool2", "bin/tool");
        tar.entry(EntryType::Fifo, "pipe", 0o600, None, b"");
        tar.0
            .append_pax_extensions([("SCHILY.xattr.user.nucleus", &b"yes"[..])])
            .unwrap();
        tar.file("etc/conf", 0o640, b"k=v");
        let bytes = tar.bytes();
        unpack_layer(&bytes[..], &layer, "test").unwrap();
        let tool = fs::symlink_metadata(layer.join("bin/tool")).unwrap();
        assert_eq!(tool.mode() & 0o7777, 0o4755);
        assert_eq!(fs::read(layer.join("bin/tool")).unwrap(), b"#!x");
        assert_eq!(
            fs::read_link(layer.join("bin/sh")).unwrap(),
            Path::new("/bin/tool")
        );
        assert_eq!(
            fs::symlink_metadata(layer.join("bin/tool2")).unwrap().ino(),
            tool.ino()
        );
        assert!(fs::symlink_metadata(layer.join("pipe"))
            .unwrap()
            .file_type()
            .is_fifo());
        assert_eq!(fs::read(layer.join("etc/conf")).unwrap(), b"k=v");
        assert_eq!(tool.mtime(), 1_000_000);
        assert_eq!(fs::metadata(layer.join("bin")).unwrap().mtime(), 1_000_000);
        let mut v = [0u8; 8];
        let n = rustix::fs::getxattr(layer.join("etc/conf"), "user.nucleus", &mut v[..]);
        // tmpfs takes user xattrs only on recent kernels; where set, it must be exact.
        if let Ok(n) = n {
            assert_eq!(&v[..n], b"yes");
        }
        if is_root() {
            assert_eq!((tool.uid(), tool.gid()), (1234, 4321));
            assert_eq!(
                fs::symlink_metadata(layer.join("bin/sh")).unwrap().uid(),
                1234
            );
        }
    }

    #[test]
    fn whiteouts_become_what_overlayfs_reads() {
        if !is_root() {
            eprintln!("skipped: whiteouts need CAP_MKNOD and trusted xattrs (root)");
            return;
        }
        let (_t, layer) = scratch();
        let bytes = Tar::new()
            .file("gone", 0o644, b"x")
            .file(".wh.gone", 0o644, b"")
            .dir("opq/")
            .file("opq/.wh..wh..opq", 0o644, b"")
            .file("opq/kept", 0o644, b"k")
            .bytes();
        unpack_layer(&bytes[..], &layer, "test").unwrap();
        let wh = fs::symlink_metadata(layer.join("gone")).unwrap();
        assert!(wh.file_type().is_char_device());
        assert_eq!(wh.rdev(), 0);
        assert!(!layer.join(".wh.gone").exists());
        let mut v = [0u8; 4];
        let n = rustix::fs::getxattr(layer.join("opq"), OVERLAY_OPAQUE_XATTR, &mut v[..]).unwrap();
        assert_eq!(&v[..n], b"y");
        assert!(!layer.join("opq/.wh..wh..opq").exists());
        assert_eq!(fs::read(layer.join("opq/kept")).unwrap(), b"k");
    }

    #[test]
    fn climbing_paths_are_refused() {
        let (t, layer) = scratch();
        for name in ["../victim/new", "a/../../victim/new", "/../victim/new"] {
            let err = unpack_layer(
                &Tar::new().file(name, 0o644, b"owned").bytes()[..],
                &layer,
                "evil",
            )
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("`..` in a layer path") && err.contains(name),
                "{err}"
            );
        }
        let err = unpack_layer(
            &Tar::new().hardlink("h", "../../victim/file").bytes()[..],
            &layer,
            "evil",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("`..`"), "{err}");
        assert!(!t.path().join("victim/new").exists());
        assert_eq!(fs::read(t.path().join("victim/file")).unwrap(), b"original");
    }

    #[test]
    fn symlinks_never_lead_outside() {
        let (t, layer) = scratch();
        let victim = t.path().join("victim");
        let abs = victim.to_str().unwrap();
        // An absolute symlink to the victim, then a file through it: it
        // resolves inside the layer (where the target is missing), so it fails.
        let bytes = Tar::new()
            .symlink("a", abs)
            .file("a/new", 0o644, b"owned")
            .bytes();
        assert!(unpack_layer(&bytes[..], &layer, "evil").is_err());
        // A climbing relative symlink, then a file through it.
        let bytes = Tar::new()
            .symlink("b", "../../../../../../victim")
            .file("b/new", 0o644, b"owned")
            .bytes();
        assert!(unpack_layer(&bytes[..], &layer, "evil").is_err());
        // The same with the target present inside the layer: written there.
        let (_t2, layer2) = scratch();
        let inner = format!("{abs}/");
        let bytes = Tar::new()
            .dir(&inner[1..])
            .symlink("c", abs)
            .file("c/new", 0o644, b"inside")
            .bytes();
        unpack_layer(&bytes[..], &layer2, "evil").unwrap();
        assert_eq!(
            fs::read(layer2.join(&abs[1..]).join("new")).unwrap(),
            b"inside"
        );
        // A symlink to a file outside, then a file of the same name: the link is replaced.
        let target = victim.join("file");
        let bytes = Tar::new()
            .symlink("x", target.to_str().unwrap())
            .file("x", 0o644, b"owned")
            .bytes();
        unpack_layer(&bytes[..], &layer, "evil").unwrap();
        assert_eq!(fs::read(layer.join("x")).unwrap(), b"owned");
        // A hard link through a symlinked parent to a file outside.
        let bytes = Tar::new().symlink("s", abs).hardlink("h", "s/file").bytes();
        assert!(unpack_layer(&bytes[..], &layer, "evil").is_err());
        assert!(!layer.join("h").exists());
        assert!(!victim.join("new").exists());
        assert_eq!(fs::read(&target).unwrap(), b"original");
        assert_eq!(fs::metadata(&target).unwrap().nlink(), 1);
    }

    #[test]
    fn a_later_entry_replaces_an_earlier_one() {
        let (_t, layer) = scratch();
        let bytes = Tar::new()
            .dir("d/")
            .file("d/f", 0o644, b"1")
            .file("d", 0o644, b"now a file")
            .dir("e/")
            .dir("e/")
            .file("e/g", 0o600, b"2")
            .bytes();
        unpack_layer(&bytes[..], &layer, "t").unwrap();
        assert_eq!(fs::read(layer.join("d")).unwrap(), b"now a file");
        assert_eq!(fs::read(layer.join("e/g")).unwrap(), b"2");
    }
}
