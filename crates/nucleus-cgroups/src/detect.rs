//! Host layout detection: which hierarchies are mounted where (from
//! mountinfo) and which cgroup the caller is in (from /proc/self/cgroup).
//! Never guesses a path; never creates or writes anything.

use crate::CgroupError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How cgroups are mounted on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// Only v1 hierarchies.
    V1,
    /// Only the unified (cgroup2) hierarchy.
    V2,
    /// v1 controller hierarchies plus a cgroup2 mount.
    Hybrid,
}

/// One mounted v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Hierarchy {
    /// Controllers bound to it, e.g. `["cpu", "cpuacct"]` or `["name=systemd"]`.
    pub controllers: Vec<String>,
    /// Where it is mounted.
    pub mountpoint: PathBuf,
    /// The caller's cgroup, as an absolute directory below `mountpoint`.
    pub own_dir: PathBuf,
}

/// The mounted unified hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Hierarchy {
    /// Where it is mounted.
    pub mountpoint: PathBuf,
    /// The caller's cgroup, as an absolute directory below `mountpoint`.
    pub own_dir: PathBuf,
    /// Controllers listed in the root's `cgroup.controllers`.
    pub controllers: Vec<String>,
}

/// The detected cgroup layout of the host.
#[derive(Debug, Clone)]
pub struct Host {
    mode: Mode,
    v1: Vec<V1Hierarchy>,
    v2: Option<V2Hierarchy>,
}

/// One cgroup or cgroup2 line of mountinfo.
#[derive(Debug)]
struct CgroupMount {
    root: PathBuf,
    mountpoint: PathBuf,
    v2: bool,
    super_opts: Vec<String>,
}

impl Host {
    /// Detects the layout from `/proc/self/mountinfo` and `/proc/self/cgroup`,
    /// and checks each chosen mount point's statfs magic.
    pub fn detect() -> Result<Host, CgroupError> {
        let host = Self::detect_from(
            Path::new("/proc/self/mountinfo"),
            Path::new("/proc/self/cgroup"),
        )?;
        host.check_magic()?;
        Ok(host)
    }

    /// Detects the layout from the given files (fixtures in tests).
    pub fn detect_from(mountinfo: &Path, proc_self_cgroup: &Path) -> Result<Host, CgroupError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| CgroupError::ReadFile {
                path: p.to_owned(),
                source,
            })
        };
        let mounts = parse_mountinfo(&read(mountinfo)?);
        let own = parse_proc_cgroup(&read(proc_self_cgroup)?);
        let own_path = |key: &str| -> Result<&str, CgroupError> {
            own.iter()
                .find(|(k, _)| k == key)
                .map(|(_, p)| p.as_str())
                .ok_or_else(|| CgroupError::DetectOwnCgroup {
                    proc_cgroup: proc_self_cgroup.to_owned(),
                    hierarchy: key.to_owned(),
                })
        };

        let mut v1: Vec<V1Hierarchy> = Vec::new();
        for m in mounts.iter().filter(|m| !m.v2) {
            // A hierarchy is keyed by its controller list in /proc/self/cgroup;
            // the mount is the one whose super options contain every name.
            let Some((key, _)) = own.iter().find(|(k, _)| {
                !k.is_empty() && k.split(',').all(|c| m.super_opts.iter().any(|o| o == c))
            }) else {
                continue;
            };
            let controllers: Vec<String> = key.split(',').map(str::to_owned).collect();
            // Bind mounts repeat a hierarchy; keep the first.
            if v1.iter().any(|h| h.controllers == controllers) {
                continue;
            }
            let own_dir = join_below(&m.mountpoint, &m.root, own_path(key)?);
            v1.push(V1Hierarchy {
                controllers,
                mountpoint: m.mountpoint.clone(),
                own_dir,
            });
        }

        let v2_mount = mounts
            .iter()
            .filter(|m| m.v2)
            .min_by_key(|m| match m.mountpoint.to_str() {
                Some("/sys/fs/cgroup") => 0,
                Some("/sys/fs/cgroup/unified") => 1,
                _ => 2,
            });
        let v2 = match v2_mount {
            Some(m) => {
                let own_dir = join_below(&m.mountpoint, &m.root, own_path("")?);
                let file = m.mountpoint.join("cgroup.controllers");
                let controllers = read(&file)?.split_whitespace().map(str::to_owned).collect();
                Some(V2Hierarchy {
                    mountpoint: m.mountpoint.clone(),
                    own_dir,
                    controllers,
                })
            }
            None => None,
        };

        let mode = match (v1.is_empty(), v2.is_some()) {
            (false, false) => Mode::V1,
            (true, true) => Mode::V2,
            (false, true) => Mode::Hybrid,
            (true, false) => {
                return Err(CgroupError::DetectNoCgroupFs {
                    mountinfo: mountinfo.to_owned(),
                })
            }
        };
        tracing::debug!(?mode, v1 = v1.len(), v2 = ?v2.as_ref().map(|h| &h.mountpoint), "detected cgroup layout");
        Ok(Host { mode, v1, v2 })
    }

    /// The detected mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The mounted v1 hierarchies.
    pub fn v1_hierarchies(&self) -> &[V1Hierarchy] {
        &self.v1
    }

    /// The unified hierarchy, if mounted.
    pub fn v2_hierarchy(&self) -> Option<&V2Hierarchy> {
        self.v2.as_ref()
    }

    /// True if `controller` (a v1 or v2 name) is usable on either hierarchy.
    pub fn has_controller(&self, controller: &str) -> bool {
        self.v1
            .iter()
            .any(|h| h.controllers.iter().any(|c| c == controller))
            || self
                .v2
                .as_ref()
                .is_some_and(|h| h.controllers.iter().any(|c| c == controller))
    }

    fn check_magic(&self) -> Result<(), CgroupError> {
        use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC};
        let check = |path: &Path, magic, fstype| match statfs(path) {
            Ok(s) if s.filesystem_type() == magic => Ok(()),
            Ok(_) => Err(CgroupError::DetectFsMagic {
                path: path.to_owned(),
                fstype,
            }),
            Err(e) => Err(CgroupError::ReadFile {
                path: path.to_owned(),
                source: e.into(),
            }),
        };
        for h in &self.v1 {
            check(&h.mountpoint, CGROUP_SUPER_MAGIC, "cgroup")?;
        }
        if let Some(h) = &self.v2 {
            check(&h.mountpoint, CGROUP2_SUPER_MAGIC, "cgroup2")?;
        }
        Ok(())
    }
}

/// `mountpoint` + (`path` relative to the mount's `root`). Outside the root
/// (e.g. a cgroup namespace boundary) the path is taken as is.
fn join_below(mountpoint: &Path, root: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    let rel = path.strip_prefix(root).unwrap_or(path);
    let rel = rel.strip_prefix("/").unwrap_or(rel);
    mountpoint.join(rel)
}

/// Parses mountinfo lines such as
/// `32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu`
/// `41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw`
fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let mut post = post.split(' ');
            let fstype = post.next()?;
            let _source = post.next()?;
            let super_opts = post.next().unwrap_or("");
            let v2 = match fstype {
                "cgroup2" => true,
                "cgroup" => false,
                _ => return None,
            };
            Some(CgroupMount {
                root: PathBuf::from(unescape(pre.get(3)?)),
                mountpoint: PathBuf::from(unescape(pre.get(4)?)),
                v2,
                super_opts: super_opts.split(',').map(str::to_owned).collect(),
            })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if let (b'\\', Some(d)) = (b[i], oct) {
            out.push(
                d.iter()
                    .fold(0u8, |acc, c| acc.wrapping_mul(8).wrapping_add(c - b'0')),
            );
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/self/cgroup` lines `ID:CONTROLLERS:PATH` into
/// (controllers, path); the v2 line has empty controllers.
fn parse_proc_cgroup(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::fs;

    /// Writes a mountinfo + /proc/self/cgroup fixture rooted in `root`.
    pub(crate) fn fixture(root: &Path, mode: Mode) -> (PathBuf, PathBuf) {
        let cg = root.join("cgroup");
        let mut mi = String::from("23 1 0:21 / /proc rw - proc proc rw\n");
        let mut pc = String::new();
        if mode != Mode::V2 {
            for (i, c) in [
                "cpu,cpuacct",
                "memory",
                "pids",
                "name=systemd",
                "cpuset",
                "freezer",
                "devices",
                "blkio",
            ]
            .iter()
            .enumerate()
            {
                let dir = cg.join(c.trim_start_matches("name="));
                fs::create_dir_all(&dir).unwrap();
                mi += &format!(
                    "{} 31 0:{} / {} rw,relatime - cgroup cgroup rw,{}\n",
                    32 + i,
                    29 + i,
                    dir.display(),
                    c
                );
                pc += &format!("{}:{}:/user.slice/me\n", 9 - i, c);
            }
        }
        if mode != Mode::V1 {
            let dir = if mode == Mode::V2 {
                cg.clone()
            } else {
                cg.join("unified")
            };
            fs::create_dir_all(&dir).unwrap();
            let ctrls = if mode == Mode::V2 {
                "cpuset cpu io memory hugetlb pids"
            } else {
                "hugetlb"
            };
            fs::write(dir.join("cgroup.controllers"), ctrls).unwrap();
            mi += &format!(
                "41 31 0:38 / {} rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n",
                dir.display()
            );
            pc += "0::/user.slice/me\n";
        }
        let (mip, pcp) = (root.join("mountinfo"), root.join("proc_cgroup"));
        fs::write(&mip, mi).unwrap();
        fs::write(&pcp, pc).unwrap();
        (mip, pcp)
    }

    #[test]
    fn detects_each_mode() {
        for mode in [Mode::V1, Mode::V2, Mode::Hybrid] {
            let d = tempfile::tempdir().unwrap();
            let (mi, pc) = fixture(d.path(), mode);
            let host = Host::detect_from(&mi, &pc).unwrap();
            assert_eq!(host.mode(), mode);
            assert!(host.has_controller("memory"));
            assert!(host.has_controller("hugetlb") == (mode != Mode::V1));
        }
    }

    #[test]
    fn v1_hierarchies_match_proc_cgroup_and_own_dirs() {
        let d = tempfile::tempdir().unwrap();
        let (mi, pc) = fixture(d.path(), Mode::Hybrid);
        let host = Host::detect_from(&mi, &pc).unwrap();
        let cpu = host
            .v1_hierarchies()
            .iter()
            .find(|h| h.controllers.contains(&"cpu".into()))
            .unwrap();
        assert_eq!(cpu.controllers, ["cpu", "cpuacct"]);
        assert_eq!(
            cpu.own_dir,
            d.path().join("cgroup/cpu,cpuacct/user.slice/me")
        );
        let v2 = host.v2_hierarchy().unwrap();
        assert_eq!(v2.own_dir, d.path().join("cgroup/unified/user.slice/me"));
        assert_eq!(v2.controllers, ["hugetlb"]);
    }

    #[test]
    fn mount_root_is_stripped_from_own_path() {
        let d = tempfile::tempdir().unwrap();
        let mi = d.path().join("mi");
        let pc = d.path().join("pc");
        fs::write(
            &mi,
            "1 0 0:1 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
        )
        .unwrap();
        fs::write(&pc, "4:memory:/docker/abc/inner\n").unwrap();
        let host = Host::detect_from(&mi, &pc).unwrap();
        assert_eq!(host.mode(), Mode::V1);
        assert_eq!(
            host.v1_hierarchies()[0].own_dir,
            Path::new("/sys/fs/cgroup/memory/inner")
        );
    }

    #[test]
    fn no_cgroup_mount_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let mi = d.path().join("mi");
        fs::write(&mi, "23 1 0:21 / /proc rw - proc proc rw\n").unwrap();
        fs::write(d.path().join("pc"), "0::/\n").unwrap();
        let err = Host::detect_from(&mi, &d.path().join("pc"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("no cgroup filesystem found in `"), "{err}");
    }

    #[test]
    fn unescapes_mountpoints() {
        assert_eq!(unescape(r"/a\040b"), "/a b");
        assert_eq!(unescape(r"/plain\"), r"/plain\");
    }
}
