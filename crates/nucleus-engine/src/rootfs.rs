//! The container's mount namespace: propagation, the rootfs bind, every
//! `mounts[]` entry resolved safely inside the rootfs, devices, pivot_root,
//! and the after-pivot steps (maskedPaths, readonlyPaths, read-only root).
//! Runs in the child, in its new mount namespace, before the workload.

use crate::devices;
use crate::launch::{StepContext, StepError};
use crate::mount_options::{self, MountOptions};
use crate::safe_path::{create_in_root, fd_path, open_in_root, relative, Leaf};
use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{fstat, fstatat, makedev, Mode, SFlag};
use nix::sys::statvfs::{fstatvfs, FsFlags};
use nix::unistd::{chdir, chroot, fchdir, pivot_root};
use oci_spec::runtime::{Mount, Spec};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

const NONE: Option<&str> = None;

/// A cgroup hierarchy of the host, to mount inside the container for a
/// `cgroup` mount: directory name under the mount point, fstype, options,
/// and the container's own directory in it.
#[derive(Debug, Clone)]
pub(crate) struct CgroupHierarchy {
    pub name: Option<String>,
    pub fstype: &'static str,
    pub options: String,
    pub own: Option<PathBuf>,
}

/// The host's cgroup hierarchies under `/sys/fs/cgroup`, from the layout
/// the cgroup manager already detected (no second read of the mount table),
/// each with `cgroup`'s directory in it.
pub(crate) fn cgroup_hierarchies(
    host: &nucleus_cgroups::Host,
    cgroup: Option<&nucleus_cgroups::Cgroup>,
) -> Vec<CgroupHierarchy> {
    let base = Path::new("/sys/fs/cgroup");
    let own = |mountpoint: &Path| {
        cgroup
            .and_then(|c| c.dirs().find(|d| d.mountpoint == mountpoint))
            .map(|d| d.path.clone())
    };
    let v2 = host.v2_hierarchy();
    if let Some(h) = v2.filter(|h| h.mountpoint == base) {
        return vec![CgroupHierarchy {
            name: None,
            fstype: "cgroup2",
            options: String::new(),
            own: own(&h.mountpoint),
        }];
    }
    let name = |p: &Path| {
        p.strip_prefix(base)
            .ok()
            .map(|n| n.display().to_string())
            .filter(|n| !n.is_empty())
    };
    let mut out: Vec<CgroupHierarchy> = host
        .v1_hierarchies()
        .iter()
        .filter_map(|h| {
            Some(CgroupHierarchy {
                name: Some(name(&h.mountpoint)?),
                fstype: "cgroup",
                options: h.controllers.join(","),
                own: own(&h.mountpoint),
            })
        })
        .collect();
    if let Some(h) = v2 {
        if let Some(n) = name(&h.mountpoint) {
            out.push(CgroupHierarchy {
                name: Some(n),
                fstype: "cgroup2",
                options: String::new(),
                own: own(&h.mountpoint),
            });
        }
    }
    out
}

/// Everything the mount steps need, prepared by the parent.
#[derive(Debug)]
pub(crate) struct RootfsPlan<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    pub in_userns: bool,
    /// The container has a cgroup namespace (made or joined).
    pub cgroupns: bool,
    pub cgroups: &'a [CgroupHierarchy],
    /// Per `mounts[]` entry, the user namespace of an id-mapped mount.
    pub idmap_userns: &'a [Option<OwnedFd>],
    /// Bind sources the parent cloned (`open_tree`) by `mounts[]` index,
    /// for a child that may not be able to reach them itself.
    pub bind_sources: &'a [Option<OwnedFd>],
    /// Overlay mount data to mount on the rootfs instead of binding it.
    pub overlay: Option<&'a std::ffi::CStr>,
}

/// Whether `mounts[i]` is a bind mount, and its source on the host.
fn bind_source(bundle: &Path, m: &Mount, opts: &MountOptions) -> Option<std::path::PathBuf> {
    let typ = m
        .typ()
        .as_deref()
        .unwrap_or(if opts.bind { "bind" } else { "none" });
    if !(opts.bind || typ == "bind") {
        return None;
    }
    let source = m.source().as_ref()?;
    Some(if source.is_absolute() {
        source.clone()
    } else {
        bundle.join(source)
    })
}

/// Role: parent, on the host, before clone. In a user namespace the init
/// is an unprivileged host user that may not be able to read a bind
/// source (or a directory above it): clone each source's mount tree now,
/// as root, so the child only has to attach it (`move_mount`).
pub(crate) fn open_bind_sources(
    spec: &Spec,
    bundle: &Path,
    in_userns: bool,
) -> crate::error::Result<Vec<Option<OwnedFd>>> {
    use rustix::mount::{open_tree, OpenTreeFlags};
    let mut out = Vec::new();
    // Unprivileged, open_tree(OPEN_TREE_CLONE) is refused here; the init
    // binds by path, with the caller's own access to the sources.
    if !in_userns || !nix::unistd::geteuid().is_root() {
        return Ok(out);
    }
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let opts =
            mount_options::parse(m.options().as_deref().unwrap_or_default()).map_err(|o| {
                crate::error::EngineError::invalid(
                    format!("mounts[{i}].options"),
                    o,
                    "unsupported mount option",
                )
            })?;
        let fd = match bind_source(bundle, m, &opts) {
            Some(source) => {
                let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
                if opts.flags.contains(MsFlags::MS_REC) {
                    flags |= OpenTreeFlags::AT_RECURSIVE;
                }
                let fd = open_tree(rustix::fs::CWD, &source, flags).map_err(|e| {
                    crate::error::EngineError::io("open bind source", &source, e.into())
                })?;
                Some(fd)
            }
            None => None,
        };
        out.push(fd);
    }
    Ok(out)
}

/// Makes the mount tree private to us and bind-mounts the rootfs onto itself
/// (pivot_root needs a mount point). Returns an O_PATH fd on the new root.
pub(crate) fn prepare_root(plan: &RootfsPlan<'_>) -> Result<OwnedFd, StepError> {
    // rslave first: nothing we mount may propagate back to the host's shared `/`.
    mount(NONE, "/", NONE, MsFlags::MS_SLAVE | MsFlags::MS_REC, NONE)
        .step("rootfs", || "make / rslave".into())?;
    let prop = root_propagation(plan.spec)?;
    if let Some(p) = prop {
        if !p.contains(MsFlags::MS_SHARED) {
            mount(NONE, "/", NONE, p, NONE).step("rootfs", || "apply rootfsPropagation".into())?;
        }
    }
    if let Some(data) = plan.overlay {
        // The overlay is a mount point itself, as pivot_root needs.
        mount(
            Some("overlay"),
            plan.rootfs,
            Some("overlay"),
            MsFlags::MS_NODEV,
            Some(data),
        )
        .step("rootfs", || {
            format!("mount the image's overlay on `{}`", plan.rootfs.display())
        })?;
        return open(
            plan.rootfs,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .step("rootfs", || format!("open `{}`", plan.rootfs.display()));
    }
    if crate::spec::wants_rootfs_tmpfs(plan.spec) {
        return rootfs_on_tmpfs(plan.rootfs);
    }
    mount(
        Some(plan.rootfs),
        plan.rootfs,
        NONE,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        NONE,
    )
    .step("rootfs", || {
        format!("bind-mount `{}` onto itself", plan.rootfs.display())
    })?;
    open(
        plan.rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .step("rootfs", || format!("open `{}`", plan.rootfs.display()))
}

/// A private in-memory root: a tmpfs over the rootfs directory, seeded with
/// the directory's skeleton (its directories and symlinks; files are not
/// copied). Mount points made later land in memory, so a shared skeleton
/// is never written and nothing per container touches the disk.
fn rootfs_on_tmpfs(rootfs: &Path) -> Result<OwnedFd, StepError> {
    let skeleton = open(
        rootfs,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .step("rootfs", || format!("open `{}`", rootfs.display()))?;
    mount(
        Some("tmpfs"),
        rootfs,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=755,size=1m"),
    )
    .step("rootfs", || {
        format!("mount tmpfs on `{}`", rootfs.display())
    })?;
    let root = open(
        rootfs,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .step("rootfs", || format!("open tmpfs `{}`", rootfs.display()))?;
    copy_skeleton(skeleton.as_fd(), root.as_fd(), 0)
        .map_err(|(what, e)| StepError::new("rootfs", format!("copy skeleton: {what}"), e))?;
    open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .step("rootfs", || format!("open `{}`", rootfs.display()))
}

/// Recreates directories and symlinks of `from` in `to`, a few levels deep.
fn copy_skeleton(
    from: BorrowedFd<'_>,
    to: BorrowedFd<'_>,
    depth: u32,
) -> Result<(), (String, Errno)> {
    use nix::dir::{Dir, Type};
    if depth > 4 {
        return Ok(());
    }
    let dup = nix::unistd::dup(from).map_err(|e| ("dup".to_string(), e))?;
    let mut dir = Dir::from_fd(dup).map_err(|e| ("opendir".to_string(), e))?;
    for entry in dir.iter() {
        let entry = entry.map_err(|e| ("readdir".to_string(), e))?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        let what = || name.to_string_lossy().into_owned();
        match entry.file_type() {
            Some(Type::Symlink) => {
                let target = nix::fcntl::readlinkat(from, name).map_err(|e| (what(), e))?;
                nix::unistd::symlinkat(target.as_os_str(), to, name).map_err(|e| (what(), e))?;
            }
            Some(Type::Directory) => {
                let st =
                    nix::sys::stat::fstatat(from, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
                        .map_err(|e| (what(), e))?;
                nix::sys::stat::mkdirat(to, name, Mode::from_bits_truncate(st.st_mode & 0o7777))
                    .map_err(|e| (what(), e))?;
                let sub_from = nix::fcntl::openat(
                    from,
                    name,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| (what(), e))?;
                let sub_to = nix::fcntl::openat(
                    to,
                    name,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| (what(), e))?;
                copy_skeleton(sub_from.as_fd(), sub_to.as_fd(), depth + 1)?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn root_propagation(spec: &Spec) -> Result<Option<MsFlags>, StepError> {
    let Some(name) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().clone())
    else {
        return Ok(None);
    };
    mount_options::propagation(&name).map(Some).ok_or_else(|| {
        StepError::new(
            "rootfs",
            format!("linux.rootfsPropagation: unknown value `{name}`"),
            Errno::EINVAL,
        )
    })
}

/// Performs every `mounts[]` entry in order, then creates devices.
pub(crate) fn mount_all(plan: &RootfsPlan<'_>, root: BorrowedFd<'_>) -> Result<(), StepError> {
    let mounts = plan.spec.mounts().as_deref().unwrap_or_default();
    let spec_devices = plan
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().as_deref())
        .unwrap_or_default();
    let mut dev_is_ours = false;
    let mut read_only_later = Vec::new();
    for (i, m) in mounts.iter().enumerate() {
        let mut opts =
            mount_options::parse(m.options().as_deref().unwrap_or_default()).map_err(|o| {
                StepError::new(
                    "mounts",
                    format!("mounts[{i}].options: unsupported option `{o}`"),
                    Errno::EINVAL,
                )
            })?;
        let dest = relative(m.destination());
        let is_bind = opts.bind || m.typ().as_deref() == Some("bind");
        if dest == Path::new("dev") && !is_bind {
            dev_is_ours = true;
        }
        // A read-only filesystem that later mounts or device nodes go into
        // is mounted writable and made read-only once they exist. (proc,
        // sysfs and cgroupfs have their mount points already, and keep
        // their own read-only handling.)
        let has_children = mounts[i + 1..]
            .iter()
            .any(|n| relative(n.destination()).starts_with(&dest))
            || (dest == Path::new("dev") && (dev_is_ours || !spec_devices.is_empty()));
        let fstype = m.typ().as_deref().unwrap_or_default();
        if opts.flags.contains(MsFlags::MS_RDONLY)
            && !is_bind
            && has_children
            && !matches!(fstype, "cgroup" | "cgroup2" | "proc" | "sysfs")
        {
            opts.flags.remove(MsFlags::MS_RDONLY);
            read_only_later.push((i, m.destination().clone()));
        }
        mount_one(plan, root, i, m, &opts)?;
    }
    if dev_is_ours {
        for dev in devices::default_devices() {
            devices::create_node(root, &dev, plan.in_userns)
                .map_err(|(d, e)| StepError::new("devices", d, e))?;
        }
        devices::create_symlinks(root).map_err(|(d, e)| StepError::new("devices", d, e))?;
    }
    for (i, d) in spec_devices.iter().enumerate() {
        let node =
            devices::from_spec(d, i).map_err(|d| StepError::new("devices", d, Errno::EINVAL))?;
        devices::create_node(root, &node, plan.in_userns)
            .map_err(|(d, e)| StepError::new("devices", d, e))?;
    }
    for (i, dest) in read_only_later.iter().rev() {
        let ctx = || format!("mounts[{i}] (remount `{}` read-only)", dest.display());
        let target = open_in_root(root, dest).step("mounts", ctx)?;
        let flags = MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | locked_flags(&target, MsFlags::empty());
        mount(NONE, fd_path(&target).as_str(), NONE, flags, NONE).step("mounts", ctx)?;
    }
    Ok(())
}

fn mount_one(
    plan: &RootfsPlan<'_>,
    root: BorrowedFd<'_>,
    i: usize,
    m: &Mount,
    opts: &MountOptions,
) -> Result<(), StepError> {
    let dest = m.destination();
    let ctx = |what: &str| format!("mounts[{i}] ({what} on `{}`)", dest.display());
    let typ = m
        .typ()
        .as_deref()
        .unwrap_or(if opts.bind { "bind" } else { "none" });
    let is_bind = opts.bind || typ == "bind";
    if is_bind {
        let source = bind_source(plan.bundle, m, opts)
            .ok_or_else(|| StepError::new("mounts", ctx("bind without source"), Errno::EINVAL))?;
        let cloned = plan.bind_sources.get(i).and_then(Option::as_ref);
        let is_dir = match cloned {
            Some(fd) => fstat(fd.as_fd())
                .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR),
            None => std::fs::metadata(&source)
                .map(|m| m.is_dir())
                .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))),
        }
        .step("mounts", || ctx(&format!("source `{}`", source.display())))?;
        let leaf = if is_dir { Leaf::Directory } else { Leaf::File };
        let target =
            create_in_root(root, dest, leaf).step("mounts", || ctx("resolve destination"))?;
        check_target_kind(&target, leaf).map_err(|e| {
            StepError::new("mounts", ctx("destination type differs from source"), e)
        })?;
        let target_path = fd_path(&target);
        let rec = opts.flags & MsFlags::MS_REC;
        match (
            opts.idmap,
            plan.idmap_userns.get(i).and_then(Option::as_ref),
        ) {
            (Some(recursive), Some(userns)) => bind_idmapped(
                &source,
                target.as_fd(),
                userns.as_fd(),
                !rec.is_empty(),
                recursive,
            )
            .map_err(|e| {
                StepError::new(
                    "mounts",
                    ctx(&format!("id-mapped bind `{}`", source.display())),
                    e,
                )
            })?,
            (Some(_), None) => {
                return Err(StepError::new(
                    "mounts",
                    ctx("id-mapped bind without a user namespace"),
                    Errno::EINVAL,
                ))
            }
            (None, _) => {
                match cloned {
                    Some(fd) => {
                        use rustix::mount::{move_mount, MoveMountFlags};
                        move_mount(
                            fd,
                            "",
                            &target,
                            "",
                            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH
                                | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
                        )
                        .map_err(|e| Errno::from_raw(e.raw_os_error()))
                        .step("mounts", || ctx(&format!("attach `{}`", source.display())))?;
                        // A clone of a shared mount may join the host's peer group; make it
                        // a slave, as a bind made after `prepare_root`'s rslave would be.
                        let attached = open_in_root(root, dest).step("mounts", || ctx("reopen"))?;
                        mount(
                            NONE,
                            fd_path(&attached).as_str(),
                            NONE,
                            MsFlags::MS_SLAVE | MsFlags::MS_REC,
                            NONE,
                        )
                        .step("mounts", || ctx("make the attached bind a slave"))?;
                    }
                    None => {
                        mount(
                            Some(&source),
                            target_path.as_str(),
                            NONE,
                            MsFlags::MS_BIND | rec,
                            NONE,
                        )
                        .step("mounts", || ctx(&format!("bind `{}`", source.display())))?;
                    }
                }
            }
        }
        let extra = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        if !extra.is_empty() {
            // Re-open: the fd from before the mount still names the covered directory.
            let mounted = open_in_root(root, dest).step("mounts", || ctx("reopen"))?;
            let flags = extra | locked_flags(&mounted, opts.cleared);
            mount(
                NONE,
                fd_path(&mounted).as_str(),
                NONE,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags,
                NONE,
            )
            .step("mounts", || ctx("remount bind with flags"))?;
        }
    } else {
        if matches!(typ, "proc" | "sysfs")
            && !is_plain_dir_or_missing(root, dest).step("mounts", || ctx("inspect destination"))?
        {
            return Err(StepError::new(
                "mounts",
                ctx(&format!(
                    "`{}` is not an ordinary directory; {typ} is never mounted through a symlink",
                    dest.display()
                )),
                Errno::ENOTDIR,
            ));
        }
        let target = create_in_root(root, dest, Leaf::Directory)
            .step("mounts", || ctx("resolve destination"))?;
        check_target_kind(&target, Leaf::Directory)
            .map_err(|e| StepError::new("mounts", ctx("destination is not a directory"), e))?;
        let target_path = fd_path(&target);
        let data = if opts.data.is_empty() {
            None
        } else {
            Some(opts.data.as_str())
        };
        match typ {
            "cgroup" | "cgroup2" => mount_cgroups(plan, root, dest, opts)
                .map_err(|e| StepError::new("mounts", ctx("cgroup"), e))?,
            _ => {
                let source = m
                    .source()
                    .as_ref()
                    .map(|s| s.display().to_string())
                    .unwrap_or_else(|| typ.to_string());
                let flags = opts.flags & !MsFlags::MS_REMOUNT;
                match mount(
                    Some(source.as_str()),
                    target_path.as_str(),
                    Some(typ),
                    flags,
                    data,
                ) {
                    Ok(()) => {}
                    // sysfs needs a network namespace owned by our user namespace; fall back to a bind.
                    Err(Errno::EPERM) if typ == "sysfs" && plan.in_userns => {
                        mount(
                            Some("/sys"),
                            target_path.as_str(),
                            NONE,
                            MsFlags::MS_BIND | MsFlags::MS_REC,
                            NONE,
                        )
                        .step("mounts", || ctx("bind /sys"))?;
                    }
                    Err(e) => {
                        return Err(StepError::new("mounts", ctx(&format!("mount {typ}")), e))
                    }
                }
            }
        }
    }
    for p in &opts.propagation {
        let target = open_in_root(root, dest).step("mounts", || ctx("reopen"))?;
        mount(NONE, fd_path(&target).as_str(), NONE, *p, NONE)
            .step("mounts", || ctx("set propagation"))?;
    }
    if opts.recursive != nucleus_sys::mount::MountAttr::default() {
        // `rro` etc.: this mount and every mount below it (Linux 5.12+).
        let target = open_in_root(root, dest).step("mounts", || ctx("reopen"))?;
        nucleus_sys::mount::mount_setattr_recursive(target.as_fd(), opts.recursive)
            .step("mounts", || {
                ctx("apply recursive mount options with mount_setattr (needs Linux 5.12)")
            })?;
    }
    Ok(())
}

/// True if the last component of `dest` is missing or a directory (not a
/// symlink to one): the kernel's procfs and sysfs must not land elsewhere.
fn is_plain_dir_or_missing(root: BorrowedFd<'_>, dest: &Path) -> Result<bool, Errno> {
    let rel = relative(dest);
    let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
        return Ok(true);
    };
    let parent = match open_in_root(root, parent) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(true),
        Err(e) => return Err(e),
    };
    match fstatat(parent.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR),
        Err(Errno::ENOENT) => Ok(true),
        Err(e) => Err(e),
    }
}

/// An id-mapped bind (`idmap`/`ridmap`): clone the source tree detached,
/// map it through `userns` (every mount below too for `ridmap`), attach it.
fn bind_idmapped(
    source: &Path,
    target: BorrowedFd<'_>,
    userns: BorrowedFd<'_>,
    rbind: bool,
    recursive: bool,
) -> Result<(), Errno> {
    use rustix::mount::{move_mount, open_tree, MoveMountFlags, OpenTreeFlags};
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if rbind || recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    let errno = |e: rustix::io::Errno| Errno::from_raw(e.raw_os_error());
    let tree = open_tree(rustix::fs::CWD, source, flags).map_err(errno)?;
    nucleus_sys::mount::mount_setattr_idmap(tree.as_fd(), userns, recursive)?;
    // Onto the resolved destination fd itself: a /proc/self/fd path would be
    // taken as the symlink (move_mount does not follow the last component).
    move_mount(
        tree.as_fd(),
        "",
        target,
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
    .map_err(errno)
}

fn check_target_kind(fd: &OwnedFd, want: Leaf) -> Result<(), Errno> {
    let st = fstat(fd.as_fd())?;
    let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
    match (want, is_dir) {
        (Leaf::Directory, true) | (Leaf::File, false) => Ok(()),
        (Leaf::Directory, false) => Err(Errno::ENOTDIR),
        (Leaf::File, true) => Err(Errno::EISDIR),
    }
}

/// Flags already set on the mount that a bind remount must keep (the kernel
/// refuses to clear locked flags), minus the ones the options clear.
fn locked_flags(fd: &OwnedFd, cleared: MsFlags) -> MsFlags {
    let Ok(st) = fstatvfs(fd.as_fd()) else {
        return MsFlags::empty();
    };
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (st_flag, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(st_flag) {
            out |= ms;
        }
    }
    out & !cleared
}

/// A `cgroup` mount: cgroup2 directly on a v2 host; otherwise a tmpfs with
/// one directory per hierarchy. Inside a cgroup namespace each shows the
/// container's own cgroup as its root. Without one, a cgroupfs mount would
/// show the host's whole tree, so the container's own directories are
/// bound instead (as runc does); that also works in a user namespace.
fn mount_cgroups(
    plan: &RootfsPlan<'_>,
    root: BorrowedFd<'_>,
    dest: &Path,
    opts: &MountOptions,
) -> Result<(), Errno> {
    let flags = opts.flags & !(MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY);
    let ro = opts.flags & MsFlags::MS_RDONLY;
    let target_fd = open_in_root(root, dest)?;
    let target = fd_path(&target_fd);
    if let [h @ CgroupHierarchy { name: None, .. }] = plan.cgroups {
        if plan.cgroupns {
            return mount(
                Some("cgroup2"),
                target.as_str(),
                Some("cgroup2"),
                flags | ro,
                NONE,
            );
        }
        return bind_own_cgroup(root, dest, h, flags | ro);
    }
    mount(
        Some("tmpfs"),
        target.as_str(),
        Some("tmpfs"),
        flags,
        Some("mode=755"),
    )?;
    for h in plan.cgroups {
        let Some(name) = &h.name else { continue };
        if !plan.cgroupns && h.own.is_none() {
            continue;
        }
        let sub = dest.join(name);
        let dir = create_in_root(root, &sub, Leaf::Directory)?;
        if plan.cgroupns {
            let data = if h.options.is_empty() {
                None
            } else {
                Some(h.options.as_str())
            };
            mount(
                Some("cgroup"),
                fd_path(&dir).as_str(),
                Some(h.fstype),
                flags | ro,
                data,
            )?;
        } else {
            bind_own_cgroup(root, &sub, h, flags | ro)?;
        }
    }
    if !ro.is_empty() {
        let top = open_in_root(root, dest)?;
        mount(
            NONE,
            fd_path(&top).as_str(),
            NONE,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | flags | ro,
            NONE,
        )?;
    }
    Ok(())
}

/// Binds the container's own directory of hierarchy `h` at `dest`, with
/// `flags` (nosuid, ro, ...) applied by a bind remount.
fn bind_own_cgroup(
    root: BorrowedFd<'_>,
    dest: &Path,
    h: &CgroupHierarchy,
    flags: MsFlags,
) -> Result<(), Errno> {
    let Some(own) = &h.own else { return Ok(()) };
    let dir = open_in_root(root, dest)?;
    mount(
        Some(own.as_path()),
        fd_path(&dir).as_str(),
        NONE,
        MsFlags::MS_BIND,
        NONE,
    )?;
    let mounted = open_in_root(root, dest)?;
    let flags =
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags | locked_flags(&mounted, MsFlags::empty());
    mount(NONE, fd_path(&mounted).as_str(), NONE, flags, NONE)
}

/// Creates `process.cwd` inside the rootfs if it is missing.
pub(crate) fn ensure_cwd(root: BorrowedFd<'_>, cwd: &Path) -> Result<(), StepError> {
    create_in_root(root, cwd, Leaf::Directory)
        .map(drop)
        .step("rootfs", || {
            format!("create process.cwd `{}`", cwd.display())
        })
}

/// Switches the root: pivot_root into the rootfs and detach the old root,
/// or with `no_pivot`, move the rootfs over `/`, detach the old root's
/// mounts, and chroot. Either way no mount of the host's tree is left in
/// the container's mount namespace.
pub(crate) fn switch_root(root: BorrowedFd<'_>, no_pivot: bool) -> Result<(), StepError> {
    fchdir(root).step("pivot_root", || "chdir into rootfs".into())?;
    if no_pivot {
        mount(Some("."), "/", NONE, MsFlags::MS_MOVE, NONE)
            .step("pivot_root", || "move rootfs to /".into())?;
        // Until chroot, `/` still names the old root: detach what hangs off it.
        crate::old_root::detach(root)?;
        chroot(".").step("pivot_root", || "chroot".into())?;
    } else {
        // pivot_root(".", ".") stacks the old root on top of the new one;
        // detaching "." then leaves only the new root.
        pivot_root(".", ".").step("pivot_root", || "pivot_root".into())?;
        mount(NONE, ".", NONE, MsFlags::MS_SLAVE | MsFlags::MS_REC, NONE)
            .step("pivot_root", || "make old root rslave".into())?;
        umount2(".", MntFlags::MNT_DETACH).step("pivot_root", || "detach old root".into())?;
    }
    chdir("/").step("pivot_root", || "chdir /".into())
}

/// After pivot_root: readonlyPaths, maskedPaths, a read-only root, and the
/// final root propagation.
pub(crate) fn finish(spec: &Spec) -> Result<(), StepError> {
    let linux = spec.linux().as_ref();
    let root = open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .step("rootfs", || "open /".into())?;
    for path in linux
        .and_then(|l| l.readonly_paths().as_ref())
        .into_iter()
        .flatten()
    {
        let target = match open_in_root(root.as_fd(), Path::new(path)) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(StepError::new("readonlyPaths", format!("open `{path}`"), e)),
        };
        let p = fd_path(&target);
        mount(
            Some(p.as_str()),
            p.as_str(),
            NONE,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            NONE,
        )
        .step("readonlyPaths", || format!("bind `{path}`"))?;
        let mounted = open_in_root(root.as_fd(), Path::new(path))
            .step("readonlyPaths", || format!("reopen `{path}`"))?;
        let flags = MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | locked_flags(&mounted, MsFlags::empty());
        mount(NONE, fd_path(&mounted).as_str(), NONE, flags, NONE)
            .step("readonlyPaths", || format!("remount `{path}` read-only"))?;
    }
    let masked = linux.and_then(|l| l.masked_paths().as_ref());
    if masked.is_some_and(|m| !m.is_empty()) {
        let null = verified_dev_null(root.as_fd())?;
        for path in masked.into_iter().flatten() {
            mask(root.as_fd(), &null, path)?;
        }
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        let flags = MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | locked_flags(&root, MsFlags::empty());
        mount(NONE, "/", NONE, flags, NONE).step("rootfs", || "remount / read-only".into())?;
    }
    if let Some(p) = root_propagation(spec)? {
        mount(NONE, "/", NONE, p, NONE).step("rootfs", || "apply rootfsPropagation".into())?;
    }
    Ok(())
}

/// Opens the container's /dev/null and checks it really is the 1:3 char
/// device, so a planted symlink or file can't redirect a masking bind mount.
fn verified_dev_null(root: BorrowedFd<'_>) -> Result<OwnedFd, StepError> {
    let fd = open_in_root(root, Path::new("/dev/null"))
        .step("maskedPaths", || "open /dev/null".into())?;
    let st = fstat(fd.as_fd()).step("maskedPaths", || "stat /dev/null".into())?;
    let is_chr = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR;
    if !is_chr || st.st_rdev != makedev(1, 3) {
        return Err(StepError::new(
            "maskedPaths",
            "/dev/null in the container is not the null device",
            Errno::EPERM,
        ));
    }
    Ok(fd)
}

fn mask(root: BorrowedFd<'_>, null: &OwnedFd, path: &str) -> Result<(), StepError> {
    let target = match open_in_root(root, Path::new(path)) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(StepError::new("maskedPaths", format!("open `{path}`"), e)),
    };
    let st = fstat(target.as_fd()).step("maskedPaths", || format!("stat `{path}`"))?;
    let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
    let t = fd_path(&target);
    if is_dir {
        mount(
            Some("tmpfs"),
            t.as_str(),
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            NONE,
        )
    } else {
        mount(
            Some(fd_path(null).as_str()),
            t.as_str(),
            NONE,
            MsFlags::MS_BIND,
            NONE,
        )
    }
    .step("maskedPaths", || format!("mask `{path}`"))
}
