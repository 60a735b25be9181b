//! Layer copies with shifted owners, for rootless runs whose id maps are
//! not the store's default (container 0 = the user, 1.. its subordinate
//! ids; see [`crate::rootless`]): `--userns keep-id`, `nomap`, `--uidmap`.
//!
//! A layer's files carry the owners the default map gives them; under
//! another map the same on-disk owners would name other container ids
//! (root's files would show as the user's). So such a run gets copies of
//! its layers whose owners are where the run's map puts each file's
//! container id: `shifted/<diff hex>-<map key>/`, made once per (layer,
//! map) under a per-copy lock, built in `shifted/.tmp-*` and renamed into
//! place, reused by later runs with the same map, and removed with the
//! layer by `rmi` and `image prune`.
//!
//! The copy runs where the layer was unpacked (the helper, in a user
//! namespace holding the user's whole id range, or this process without a
//! range). Each entry keeps its type, mode (set-id bits included, set
//! after the chown that clears them), xattrs (`user.overlay.opaque`,
//! `security.capability`), mtime, symlink target, and hard links within
//! the layer; whiteouts stay 0/0 character devices. A file whose container
//! id the run's map does not cover is refused ([`ImageError::UnmappedId`]),
//! never given some other owner.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{
    lgetxattr, llistxattr, lsetxattr, mknodat, utimensat, AtFlags, FileType, Mode, Timestamps,
    XattrFlags, CWD,
};

use crate::error::ImageError;

/// One line of an id map: `size` ids from `container` on are `host`.. on
/// the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdLine {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

impl IdLine {
    fn forward(lines: &[IdLine], id: u32) -> Option<u32> {
        lines.iter().find_map(|l| {
            let off = id.checked_sub(l.container)?;
            (off < l.size).then(|| l.host.checked_add(off)).flatten()
        })
    }

    fn backward(lines: &[IdLine], id: u32) -> Option<u32> {
        lines.iter().find_map(|l| {
            let off = id.checked_sub(l.host)?;
            (off < l.size)
                .then(|| l.container.checked_add(off))
                .flatten()
        })
    }
}

/// A run's uid and gid maps (container → host ids, as in the OCI spec)
/// when they differ from the store's default map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdShift {
    pub uids: Vec<IdLine>,
    pub gids: Vec<IdLine>,
}

impl IdShift {
    /// Names the copies made for these maps: 16 hex digits of a sha256.
    pub fn key(&self) -> String {
        let text = format!("u{};g{}", encode(&self.uids), encode(&self.gids));
        crate::Digest::of(text.as_bytes()).hex()[..16].to_string()
    }
}

/// `C:H:S,C:H:S`: how maps travel to the helper.
pub(crate) fn encode(lines: &[IdLine]) -> String {
    lines
        .iter()
        .map(|l| format!("{}:{}:{}", l.container, l.host, l.size))
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn decode(text: &str) -> std::result::Result<Vec<IdLine>, String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let n: Vec<u32> = s
                .split(':')
                .map(|p| p.parse::<u32>().map_err(|e| format!("map line `{s}`: {e}")))
                .collect::<std::result::Result<_, _>>()?;
            match n.as_slice() {
                [c, h, z] => Ok(IdLine {
                    container: *c,
                    host: *h,
                    size: *z,
                }),
                _ => Err(format!("map line `{s}`: expected C:H:S")),
            }
        })
        .collect()
}

/// A `/proc/PID/uid_map`-format text (inside, outside, count).
pub(crate) fn parse_proc_map(text: &str) -> Vec<IdLine> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace().map(|p| p.parse::<u32>().ok());
            Some(IdLine {
                container: f.next()??,
                host: f.next()??,
                size: f.next()??,
            })
        })
        .collect()
}

/// How one kind of id (uid or gid) of an on-disk owner becomes the copy's.
#[derive(Debug, Clone)]
pub(crate) struct Translate {
    pub kind: &'static str,
    /// The copier's own namespace: its ids → host ids.
    pub copier: Vec<IdLine>,
    /// The store's default container map: container ids → host ids.
    pub default: Vec<IdLine>,
    /// The run's map: container ids → host ids.
    pub target: Vec<IdLine>,
}

/// An id the run's map does not cover, or one outside the store's map.
#[derive(Debug)]
pub(crate) enum Unmapped {
    /// Container id `id` (of `path`) is not in the run's map.
    Target { kind: &'static str, id: u32 },
    /// The on-disk owner is not one the store gives (should not happen).
    Store { kind: &'static str, id: u32 },
}

impl Translate {
    /// The copier-visible owner for an entry owned by `on_disk`.
    fn owner(&self, on_disk: u32) -> std::result::Result<u32, Unmapped> {
        let store = || Unmapped::Store {
            kind: self.kind,
            id: on_disk,
        };
        let host = IdLine::forward(&self.copier, on_disk).ok_or_else(store)?;
        let container = IdLine::backward(&self.default, host).ok_or_else(store)?;
        let target = IdLine::forward(&self.target, container).ok_or(Unmapped::Target {
            kind: self.kind,
            id: container,
        })?;
        // The run's host ids are the user's, all of which the copier holds.
        IdLine::backward(&self.copier, target).ok_or(Unmapped::Target {
            kind: self.kind,
            id: container,
        })
    }
}

impl Translate {
    /// The copier-visible id the run's map gives container 0.
    pub(crate) fn root_owner(&self) -> Option<u32> {
        let host = IdLine::forward(&self.target, 0)?;
        IdLine::backward(&self.copier, host)
    }
}

/// What a copy did.
#[derive(Debug, Default)]
pub(crate) struct Copied {
    pub entries: u64,
    pub bytes: u64,
}

/// A failed copy: an id outside the run's map, or another error.
#[derive(Debug)]
pub(crate) enum CopyError {
    Unmapped {
        kind: &'static str,
        id: u32,
        path: PathBuf,
    },
    Failed(ImageError),
}

impl From<ImageError> for CopyError {
    fn from(e: ImageError) -> Self {
        CopyError::Failed(e)
    }
}

impl CopyError {
    /// As the store reports it for `layer`.
    pub(crate) fn into_image_error(self, layer: &str) -> ImageError {
        match self {
            CopyError::Unmapped { kind, id, path } => ImageError::UnmappedId {
                layer: layer.to_string(),
                kind,
                id,
                path: path.display().to_string(),
            },
            CopyError::Failed(e) => e,
        }
    }
}

/// Copies the layer tree `src` onto `dest` (an existing empty directory,
/// which takes the root's owner, mode and times) with owners translated.
pub(crate) fn copy_tree(
    src: &Path,
    dest: &Path,
    uids: &Translate,
    gids: &Translate,
) -> std::result::Result<Copied, CopyError> {
    let mut c = Copier {
        src,
        dest,
        uids,
        gids,
        links: HashMap::new(),
        done: Copied::default(),
        buf: vec![0u8; XATTR_MAX],
        list: vec![0u8; XATTR_MAX],
    };
    c.dir(Path::new(""))?;
    Ok(c.done)
}

/// The largest xattr value (and name list) Linux allows.
const XATTR_MAX: usize = 1 << 16;

struct Copier<'a> {
    src: &'a Path,
    dest: &'a Path,
    uids: &'a Translate,
    gids: &'a Translate,
    /// (dev, ino) of a multiply linked file → its copy.
    links: HashMap<(u64, u64), PathBuf>,
    done: Copied,
    buf: Vec<u8>,
    list: Vec<u8>,
}

fn fs_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CopyError {
    let path = path.to_path_buf();
    move |e| CopyError::Failed(ImageError::fs(action, path)(e))
}

impl Copier<'_> {
    /// `rel`'s owners in the copy, or the id that has no place.
    fn owner(&self, rel: &Path, meta: &fs::Metadata) -> std::result::Result<(u32, u32), CopyError> {
        let place = |t: &Translate, id: u32| {
            t.owner(id).map_err(|u| match u {
                Unmapped::Target { kind, id } => CopyError::Unmapped {
                    kind,
                    id,
                    path: Path::new("/").join(rel),
                },
                Unmapped::Store { kind, id } => CopyError::Failed(ImageError::Rootless {
                    action: "shift owners of",
                    path: self.src.join(rel),
                    reason: format!("its {kind} {id} is outside the store's id map"),
                }),
            })
        };
        Ok((place(self.uids, meta.uid())?, place(self.gids, meta.gid())?))
    }

    /// Copies the directory `rel` (its entries first, then its own mode
    /// and mtime, which adding entries would change).
    fn dir(&mut self, rel: &Path) -> std::result::Result<(), CopyError> {
        let (src, dest) = (self.src.join(rel), self.dest.join(rel));
        let meta = fs::symlink_metadata(&src).map_err(fs_err("stat", &src))?;
        let (uid, gid) = self.owner(rel, &meta)?;
        if !rel.as_os_str().is_empty() {
            fs::create_dir(&dest).map_err(fs_err("create directory", &dest))?;
        }
        std::os::unix::fs::lchown(&dest, Some(uid), Some(gid)).map_err(fs_err("chown", &dest))?;
        self.xattrs(&src, &dest)?;
        self.done.entries += 1;
        let mut names: Vec<OsString> = fs::read_dir(&src)
            .map_err(fs_err("list", &src))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .map_err(fs_err("list", &src))?;
        names.sort();
        for name in names {
            self.entry(&rel.join(name))?;
        }
        fs::set_permissions(&dest, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(fs_err("chmod", &dest))?;
        times(&dest, &meta)
    }

    fn entry(&mut self, rel: &Path) -> std::result::Result<(), CopyError> {
        let (src, dest) = (self.src.join(rel), self.dest.join(rel));
        let meta = fs::symlink_metadata(&src).map_err(fs_err("stat", &src))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            return self.dir(rel);
        }
        let (uid, gid) = self.owner(rel, &meta)?;
        use std::os::unix::fs::FileTypeExt;
        if ft.is_file() && meta.nlink() > 1 {
            if let Some(first) = self.links.get(&(meta.dev(), meta.ino())) {
                fs::hard_link(first, &dest).map_err(fs_err("hard link", &dest))?;
                self.done.entries += 1;
                return Ok(());
            }
            self.links.insert((meta.dev(), meta.ino()), dest.clone());
        }
        if ft.is_file() {
            // copy_file_range underneath; the chown below clears set-id bits,
            // so the mode is set again after it.
            self.done.bytes += fs::copy(&src, &dest).map_err(fs_err("copy", &dest))?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&src).map_err(fs_err("read link", &src))?;
            std::os::unix::fs::symlink(&target, &dest).map_err(fs_err("symlink", &dest))?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            let kind = if ft.is_fifo() {
                FileType::Fifo
            } else if ft.is_char_device() {
                FileType::CharacterDevice
            } else {
                FileType::BlockDevice
            };
            let dev: rustix::fs::Dev = meta.rdev();
            mknodat(CWD, &dest, kind, Mode::from_raw_mode(0o600), dev)
                .map_err(|e| fs_err("make node", &dest)(e.into()))?;
        } else {
            // A socket: nothing an image can carry.
            tracing::debug!(path = %src.display(), "shift: skipped a socket");
            return Ok(());
        }
        std::os::unix::fs::lchown(&dest, Some(uid), Some(gid)).map_err(fs_err("chown", &dest))?;
        if !ft.is_symlink() {
            fs::set_permissions(&dest, fs::Permissions::from_mode(meta.mode() & 0o7777))
                .map_err(fs_err("chmod", &dest))?;
        }
        self.xattrs(&src, &dest)?;
        self.done.entries += 1;
        times(&dest, &meta)
    }

    /// Copies every xattr (after the chown, which drops `security.capability`).
    fn xattrs(&mut self, src: &Path, dest: &Path) -> std::result::Result<(), CopyError> {
        let n = match llistxattr(src, &mut self.list[..]) {
            Ok(n) => n,
            Err(rustix::io::Errno::NOTSUP) => return Ok(()),
            Err(e) => return Err(fs_err("list xattrs of", src)(e.into())),
        };
        let names: Vec<Vec<u8>> = self.list[..n]
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        for name in names {
            let shown = String::from_utf8_lossy(&name).into_owned();
            let len = match lgetxattr(src, name.as_slice(), &mut self.buf[..]) {
                Ok(len) => len,
                Err(rustix::io::Errno::NODATA) => continue,
                Err(e) => return Err(fs_err("read xattr of", src)(e.into())),
            };
            if let Err(e) = lsetxattr(dest, name.as_slice(), &self.buf[..len], XattrFlags::empty())
            {
                // A security label this kernel manages itself is not the image's.
                if name.starts_with(b"security.") && name.as_slice() != b"security.capability" {
                    tracing::debug!(path = %dest.display(), xattr = shown, error = %e, "shift: skipped xattr");
                    continue;
                }
                return Err(fs_err("set xattr on", dest)(io::Error::other(format!(
                    "{shown}: {e}"
                ))));
            }
        }
        Ok(())
    }
}

/// The source's atime and mtime on `dest`, not following a symlink.
fn times(dest: &Path, meta: &fs::Metadata) -> std::result::Result<(), CopyError> {
    let ts = |s: i64, ns: i64| rustix::fs::Timespec {
        tv_sec: s,
        tv_nsec: ns as _,
    };
    let t = Timestamps {
        last_access: ts(meta.atime(), meta.atime_nsec()),
        last_modification: ts(meta.mtime(), meta.mtime_nsec()),
    };
    utimensat(CWD, dest, &t, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| fs_err("set times of", dest)(e.into()))
}

/// The copier's translations: in the helper its own namespace's maps are
/// the default map; in this process (no subordinate range) the copier is
/// on the host and the default map is container 0 = this user.
pub(crate) fn translations(
    shift: &IdShift,
    in_helper: bool,
) -> std::result::Result<(Translate, Translate), String> {
    let side = |kind: &'static str, file: &str, own: u32, target: &[IdLine]| {
        let (copier, default) = if in_helper {
            let text = fs::read_to_string(file).map_err(|e| format!("read {file}: {e}"))?;
            let lines = parse_proc_map(&text);
            (lines.clone(), lines)
        } else {
            (
                vec![IdLine {
                    container: 0,
                    host: 0,
                    size: u32::MAX,
                }],
                vec![IdLine {
                    container: 0,
                    host: own,
                    size: 1,
                }],
            )
        };
        Ok::<_, String>(Translate {
            kind,
            copier,
            default,
            target: target.to_vec(),
        })
    };
    Ok((
        side(
            "uid",
            "/proc/self/uid_map",
            rustix::process::geteuid().as_raw(),
            &shift.uids,
        )?,
        side(
            "gid",
            "/proc/self/gid_map",
            rustix::process::getegid().as_raw(),
            &shift.gids,
        )?,
    ))
}

/// `shifted/` entries: `<diff hex>-<key>` copies and `.tmp-*` leftovers.
pub(crate) fn parse_name(name: &str) -> Option<(&str, &str)> {
    let (hex, key) = name.split_once('-')?;
    (hex.len() == 64 && key.len() == 16).then_some((hex, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(container: u32, host: u32, size: u32) -> IdLine {
        IdLine {
            container,
            host,
            size,
        }
    }

    #[test]
    fn owners_go_where_the_target_map_puts_their_container_id() {
        // Helper namespace = default map: 0 = user 1000, 1.. = 100000..
        let default = vec![l(0, 1000, 1), l(1, 100_000, 65_536)];
        // keep-id for uid 1000: 0..999 → 100000.., 1000 → 1000, 1001.. → 101000..
        let target = vec![
            l(0, 100_000, 1000),
            l(1000, 1000, 1),
            l(1001, 101_000, 64_536),
        ];
        let t = Translate {
            kind: "uid",
            copier: default.clone(),
            default,
            target,
        };
        // Root's file (the user on disk) → the first subordinate id (helper 1).
        assert_eq!(t.owner(0).unwrap(), 1);
        // Container 100 (helper 100) → 100100 on the host → helper 101.
        assert_eq!(t.owner(100).unwrap(), 101);
        // Container 1000 → the user → helper 0.
        assert_eq!(t.owner(1000).unwrap(), 0);
        let narrow = Translate {
            target: vec![l(0, 100_000, 50)],
            ..t
        };
        assert!(matches!(
            narrow.owner(100),
            Err(Unmapped::Target { id: 100, .. })
        ));
    }

    #[test]
    fn maps_round_trip_and_keys_differ() {
        let a = IdShift {
            uids: vec![l(0, 1, 65_536)],
            gids: vec![l(0, 1, 65_536)],
        };
        assert_eq!(decode(&encode(&a.uids)).unwrap(), a.uids);
        assert!(decode("1:2").is_err());
        let b = IdShift {
            gids: vec![l(0, 2, 65_536)],
            ..a.clone()
        };
        assert_ne!(a.key(), b.key());
        assert_eq!(a.key().len(), 16);
        assert_eq!(
            parse_proc_map("         0       1000          1\n         1     100000      65536\n"),
            vec![l(0, 1000, 1), l(1, 100_000, 65_536)]
        );
    }

    /// As root (the helper's view): owners move by the map, and type, mode
    /// with set-id bits, hard links, symlinks, xattrs, whiteouts and mtimes stay.
    #[test]
    fn a_copy_keeps_everything_but_the_owners() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        use std::os::unix::fs::{chown, symlink};
        let dir = tempfile::tempdir().unwrap();
        let (src, dest) = (dir.path().join("src"), dir.path().join("dest"));
        fs::create_dir_all(src.join("d")).unwrap();
        fs::create_dir(&dest).unwrap();
        fs::write(src.join("suid"), b"x").unwrap();
        chown(src.join("suid"), Some(0), Some(0)).unwrap();
        fs::set_permissions(src.join("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::hard_link(src.join("suid"), src.join("d/link")).unwrap();
        fs::write(src.join("d/owned"), b"mine").unwrap();
        chown(src.join("d/owned"), Some(100), Some(101)).unwrap();
        symlink("../suid", src.join("d/sym")).unwrap();
        mknodat(
            CWD,
            src.join("wh"),
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o600),
            rustix::fs::makedev(0, 0),
        )
        .unwrap();
        lsetxattr(
            src.join("d"),
            "user.overlay.opaque",
            b"y",
            XattrFlags::empty(),
        )
        .unwrap();
        fs::set_permissions(src.join("d"), fs::Permissions::from_mode(0o555)).unwrap();
        let old = Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 1_000_000,
                tv_nsec: 0,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: 1_000_000,
                tv_nsec: 5,
            },
        };
        for p in ["suid", "d/owned", "d/sym", "d"] {
            utimensat(CWD, src.join(p), &old, AtFlags::SYMLINK_NOFOLLOW).unwrap();
        }
        let identity = vec![l(0, 0, 1 << 20)];
        let t = |kind| Translate {
            kind,
            copier: identity.clone(),
            default: identity.clone(),
            target: vec![l(0, 5000, 200)],
        };
        let done = copy_tree(&src, &dest, &t("uid"), &t("gid")).unwrap();
        assert_eq!(done.entries, 7);
        let m = |p: &str| fs::symlink_metadata(dest.join(p)).unwrap();
        assert_eq!((m("suid").uid(), m("suid").gid()), (5000, 5000));
        assert_eq!(m("suid").mode() & 0o7777, 0o4755);
        assert_eq!(m("suid").ino(), m("d/link").ino());
        assert_eq!((m("d/owned").uid(), m("d/owned").gid()), (5100, 5101));
        assert_eq!(fs::read(dest.join("d/owned")).unwrap(), b"mine");
        assert_eq!(
            fs::read_link(dest.join("d/sym")).unwrap(),
            Path::new("../suid")
        );
        assert_eq!(m("d/sym").uid(), 5000);
        assert_eq!(m("d").mode() & 0o7777, 0o555);
        assert_eq!((m("d").mtime(), m("d").mtime_nsec()), (1_000_000, 5));
        assert_eq!(
            (m("d/sym").mtime(), m("suid").mtime()),
            (1_000_000, 1_000_000)
        );
        assert_eq!(m("wh").rdev(), 0);
        assert!(std::os::unix::fs::FileTypeExt::is_char_device(
            &m("wh").file_type()
        ));
        let mut v = [0u8; 4];
        let n = lgetxattr(dest.join("d"), "user.overlay.opaque", &mut v[..]).unwrap();
        assert_eq!(&v[..n], b"y");
        assert_eq!(m("").uid(), 5000);
        // An owner outside the map is named, not guessed.
        let narrow = |kind| Translate {
            target: vec![l(0, 5000, 50)],
            ..t(kind)
        };
        let dest2 = dir.path().join("dest2");
        fs::create_dir(&dest2).unwrap();
        match copy_tree(&src, &dest2, &narrow("uid"), &narrow("gid")) {
            Err(CopyError::Unmapped {
                kind: "uid",
                id: 100,
                path,
            }) => {
                assert_eq!(path, Path::new("/d/owned"))
            }
            other => panic!("{other:?}"),
        }
    }
}
