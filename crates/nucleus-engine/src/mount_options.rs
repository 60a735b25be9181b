//! OCI mount options to mount(2) flags. Options the kernel takes as flags
//! become flags; propagation options are applied in a second call, as the
//! kernel requires; recursive options (`rro`, `rnosuid`, ...) become
//! `mount_setattr(AT_RECURSIVE)` attributes; everything else is passed to
//! the filesystem as data.

use nix::mount::MsFlags;

/// A parsed `mounts[].options` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountOptions {
    /// Flags for the mount call itself.
    pub flags: MsFlags,
    /// Flags that must be cleared (e.g. `rw` after `ro`).
    pub cleared: MsFlags,
    /// Propagation changes, each applied by its own mount call.
    pub propagation: Vec<MsFlags>,
    /// `bind` or `rbind` was given.
    pub bind: bool,
    /// Filesystem-specific data, comma separated.
    pub data: String,
    /// Attributes applied recursively after mounting (`r`-prefixed options).
    pub recursive: nucleus_sys::mount::MountAttr,
    /// `idmap` (`Some(false)`) or `ridmap` (`Some(true)`): an id-mapped bind.
    pub idmap: Option<bool>,
}

/// Parses an options list; returns the first unsupported option on error.
pub(crate) fn parse(options: &[String]) -> Result<MountOptions, String> {
    let mut out = MountOptions {
        flags: MsFlags::empty(),
        cleared: MsFlags::empty(),
        propagation: Vec::new(),
        bind: false,
        data: String::new(),
        recursive: nucleus_sys::mount::MountAttr::default(),
        idmap: None,
    };
    let mut data = Vec::new();
    for opt in options {
        let (set, clear) = match opt.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "lazytime" => (MsFlags::MS_LAZYTIME, MsFlags::empty()),
            "nolazytime" => (MsFlags::empty(), MsFlags::MS_LAZYTIME),
            "silent" => (MsFlags::MS_SILENT, MsFlags::empty()),
            "loud" => (MsFlags::empty(), MsFlags::MS_SILENT),
            "bind" => {
                out.bind = true;
                (MsFlags::MS_BIND, MsFlags::empty())
            }
            "rbind" => {
                out.bind = true;
                (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty())
            }
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                out.propagation
                    .push(propagation(opt).unwrap_or(MsFlags::MS_PRIVATE));
                continue;
            }
            // Handled by the runtime, not the kernel: accepted for compatibility.
            "defaults" | "tmpcopyup" => continue,
            "idmap" | "ridmap" => {
                out.idmap = Some(opt == "ridmap");
                continue;
            }
            r if recursive(r, &mut out.recursive) => continue,
            _ => {
                data.push(opt.as_str());
                continue;
            }
        };
        out.flags = (out.flags | set) & !clear;
        out.cleared = (out.cleared | clear) & !set;
    }
    out.data = data.join(",");
    Ok(out)
}

/// Folds a recursive option into `attr`; false if `opt` is not one. A later
/// option wins over an earlier one, as with the plain flags.
fn recursive(opt: &str, attr: &mut nucleus_sys::mount::MountAttr) -> bool {
    use libc::{
        MOUNT_ATTR_NOATIME, MOUNT_ATTR_NODEV, MOUNT_ATTR_NODIRATIME, MOUNT_ATTR_NOEXEC,
        MOUNT_ATTR_NOSUID, MOUNT_ATTR_NOSYMFOLLOW, MOUNT_ATTR_RDONLY, MOUNT_ATTR_RELATIME,
        MOUNT_ATTR_STRICTATIME, MOUNT_ATTR__ATIME,
    };
    let (bit, set) = match opt {
        "rro" => (MOUNT_ATTR_RDONLY, true),
        "rrw" => (MOUNT_ATTR_RDONLY, false),
        "rnosuid" => (MOUNT_ATTR_NOSUID, true),
        "rsuid" => (MOUNT_ATTR_NOSUID, false),
        "rnodev" => (MOUNT_ATTR_NODEV, true),
        "rdev" => (MOUNT_ATTR_NODEV, false),
        "rnoexec" => (MOUNT_ATTR_NOEXEC, true),
        "rexec" => (MOUNT_ATTR_NOEXEC, false),
        "rnodiratime" => (MOUNT_ATTR_NODIRATIME, true),
        "rdiratime" => (MOUNT_ATTR_NODIRATIME, false),
        "rnosymfollow" => (MOUNT_ATTR_NOSYMFOLLOW, true),
        "rsymfollow" => (MOUNT_ATTR_NOSYMFOLLOW, false),
        // The atime mode is one field: the kernel wants all of it cleared
        // and one value set (relatime is 0).
        "rnoatime" | "ratime" | "rrelatime" | "rnorelatime" | "rstrictatime" | "rnostrictatime" => {
            let mode = match opt {
                "rnoatime" => MOUNT_ATTR_NOATIME,
                "rstrictatime" | "rnorelatime" => MOUNT_ATTR_STRICTATIME,
                _ => MOUNT_ATTR_RELATIME,
            };
            attr.clear |= MOUNT_ATTR__ATIME;
            attr.set = (attr.set & !MOUNT_ATTR__ATIME) | mode;
            return true;
        }
        _ => return false,
    };
    if set {
        attr.set |= bit;
        attr.clear &= !bit;
    } else {
        attr.clear |= bit;
        attr.set &= !bit;
    }
    true
}

/// Maps a propagation keyword (as in `rootfsPropagation`) to its flags.
pub(crate) fn propagation(name: &str) -> Option<MsFlags> {
    Some(match name {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(opts: &[&str]) -> MountOptions {
        parse(&opts.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn flags_data_and_propagation() {
        let o = p(&["nosuid", "noexec", "mode=755", "size=65536k", "rslave"]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC);
        assert_eq!(o.data, "mode=755,size=65536k");
        assert_eq!(o.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
        assert!(!o.bind);
    }

    #[test]
    fn later_options_win() {
        assert_eq!(p(&["ro", "rw"]).flags, MsFlags::empty());
        assert_eq!(p(&["rw", "ro"]).flags, MsFlags::MS_RDONLY);
        let o = p(&["rbind", "ro"]);
        assert!(o.bind && o.flags.contains(MsFlags::MS_REC | MsFlags::MS_RDONLY));
    }

    #[test]
    fn recursive_options_become_mount_attributes() {
        let o = p(&["rbind", "rro", "rnosuid", "rnoatime"]);
        assert_eq!(o.flags, MsFlags::MS_BIND | MsFlags::MS_REC);
        assert_eq!(
            o.recursive.set,
            libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NOATIME
        );
        assert_eq!(o.recursive.clear, libc::MOUNT_ATTR__ATIME);
        let o = p(&["rro", "rrw", "rstrictatime", "rrelatime"]);
        assert_eq!(o.recursive.set, libc::MOUNT_ATTR_RELATIME);
        assert_eq!(
            o.recursive.clear,
            libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR__ATIME
        );
        assert_eq!(
            p(&["nosuid"]).recursive,
            nucleus_sys::mount::MountAttr::default()
        );
    }

    #[test]
    fn idmap_options() {
        assert_eq!(p(&["bind", "idmap"]).idmap, Some(false));
        assert_eq!(p(&["rbind", "ridmap"]).idmap, Some(true));
        assert_eq!(p(&["rbind"]).idmap, None);
    }
}
