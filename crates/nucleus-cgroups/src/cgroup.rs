//! The `Cgroup` handle: resolved directories for one workload, plus the
//! verbs that work on directories and processes (create, join, list,
//! freeze). Resource writes live in `apply.rs`, teardown in `teardown.rs`.

use crate::detect::Host;
use crate::path::{self, Anchor};
use crate::{fs, v1, v2, CgroupError};
use serde::{Deserialize, Serialize};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// One directory of a cgroup, in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupDir {
    /// Controllers served by this directory (v1: the hierarchy's; v2: the
    /// host's available ones).
    pub controllers: Vec<String>,
    /// The absolute directory.
    pub path: PathBuf,
    /// Where the hierarchy is mounted.
    pub mountpoint: PathBuf,
    /// How many ancestors above `path` did not exist at resolve time and
    /// so belong to us; `destroy` removes them when they are empty.
    pub new_ancestors: usize,
}

impl CgroupDir {
    fn new(controllers: Vec<String>, mountpoint: &Path, base: &Path, rel: &Path) -> CgroupDir {
        let path = base.join(rel);
        let new_ancestors = path
            .ancestors()
            .skip(1)
            .take_while(|a| a.starts_with(mountpoint) && *a != mountpoint && !a.exists())
            .count();
        CgroupDir {
            controllers,
            path,
            mountpoint: mountpoint.to_owned(),
            new_ancestors,
        }
    }

    pub(crate) fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// The resolved directories of one workload, one per hierarchy. Serializable
/// so that later verbs can reload it without detecting the host again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroup {
    /// One directory per mounted v1 hierarchy.
    pub v1: Vec<CgroupDir>,
    /// The unified directory, if cgroup2 is mounted.
    pub v2: Option<CgroupDir>,
}

/// Where a controller lives for this cgroup.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Place<'a> {
    V1(&'a Path),
    V2(&'a Path),
}

impl Cgroup {
    /// Resolves the directories for `cgroups_path` (OCI `linux.cgroupsPath`)
    /// and container `id` on `host`. Absolute paths start at each hierarchy's
    /// root; relative paths and `None` (`nucleus-<id>`) start at the caller's
    /// own cgroup; `slice:prefix:name` maps to `<slices>/<prefix>-<name>.scope`.
    pub fn resolve(
        host: &Host,
        cgroups_path: Option<&str>,
        id: &str,
    ) -> Result<Cgroup, CgroupError> {
        let (anchor, rel) = path::parse(cgroups_path, id)?;
        let base = |mountpoint: &Path, own: &Path| match anchor {
            Anchor::Root => mountpoint.to_owned(),
            Anchor::Own => own.to_owned(),
        };
        let v1 = host
            .v1_hierarchies()
            .iter()
            .map(|h| {
                CgroupDir::new(
                    h.controllers.clone(),
                    &h.mountpoint,
                    &base(&h.mountpoint, &h.own_dir),
                    &rel,
                )
            })
            .collect();
        let v2 = host.v2_hierarchy().map(|h| {
            CgroupDir::new(
                h.controllers.clone(),
                &h.mountpoint,
                &base(&h.mountpoint, &h.own_dir),
                &rel,
            )
        });
        Ok(Cgroup { v1, v2 })
    }

    /// All directories, v1 first.
    pub fn dirs(&self) -> impl Iterator<Item = &CgroupDir> {
        self.v1.iter().chain(self.v2.as_ref())
    }

    /// The unified directory (for `clone3` `CLONE_INTO_CGROUP`).
    pub fn v2_dir(&self) -> Option<&Path> {
        self.v2.as_ref().map(|d| d.path.as_path())
    }

    /// The v1 directory serving `controller`, if any.
    pub fn v1_dir(&self, controller: &str) -> Option<&Path> {
        self.v1
            .iter()
            .find(|d| d.has(controller))
            .map(|d| d.path.as_path())
    }

    /// Picks the hierarchy serving a controller: v1 if mounted there, else
    /// v2 if the host offers it.
    pub(crate) fn place(&self, v1_name: &str, v2_name: &str) -> Option<Place<'_>> {
        if let Some(p) = self.v1_dir(v1_name) {
            return Some(Place::V1(p));
        }
        self.v2
            .as_ref()
            .filter(|d| d.has(v2_name))
            .map(|d| Place::V2(d.path.as_path()))
    }

    /// Creates every directory (mkdir -p); idempotent. On v1 cpuset, empty
    /// `cpus`/`mems` are copied from the parent; on v2, the available
    /// controllers are enabled in each ancestor's `cgroup.subtree_control`.
    pub fn create(&self) -> Result<(), CgroupError> {
        for d in self.dirs() {
            mkdir_all(&d.path)?;
        }
        if let Some(d) = self.v1.iter().find(|d| d.has("cpuset")) {
            v1::cpuset::fill_from_parents(&d.mountpoint, &d.path)?;
        }
        if let Some(d) = &self.v2 {
            v2::enable_controllers(&d.mountpoint, &d.path, &d.controllers);
        }
        tracing::debug!(dirs = ?self.dirs().map(|d| &d.path).collect::<Vec<_>>(), "created cgroup");
        Ok(())
    }

    /// This cgroup with some directories moved down to existing
    /// sub-cgroups (runc's `exec --cgroup [CONTROLLER:]PATH`): a named
    /// controller moves the hierarchy serving it (`""` or `unified` names
    /// cgroup2), no controller moves every hierarchy. Paths stay below
    /// this cgroup and must exist.
    pub fn with_sub_cgroups(
        &self,
        subs: &[(Option<String>, String)],
    ) -> Result<Cgroup, CgroupError> {
        let mut out = self.clone();
        for (controller, rel) in subs {
            let rel_path = path::sub_path(rel)?;
            let mut matched = false;
            let v1 = out.v1.iter_mut();
            let v2 = out.v2.iter_mut();
            for (d, is_v2) in v1.map(|d| (d, false)).chain(v2.map(|d| (d, true))) {
                let wanted = match controller.as_deref() {
                    None => true,
                    Some("" | "unified") => is_v2,
                    Some(c) => !is_v2 && d.has(c),
                };
                if !wanted {
                    continue;
                }
                matched = true;
                let sub = d.path.join(&rel_path);
                if !sub.is_dir() {
                    return Err(CgroupError::ResolvePath {
                        path: sub.display().to_string(),
                        reason: "no such sub-cgroup",
                    });
                }
                d.path = sub;
                d.new_ancestors = 0;
            }
            if !matched {
                let name = controller.clone().unwrap_or_default();
                return Err(CgroupError::ResolvePath {
                    path: format!("{name}:{rel}"),
                    reason: "no hierarchy serves this controller",
                });
            }
        }
        Ok(out)
    }

    /// Moves `pid` into the cgroup in every hierarchy.
    pub fn add_pid(&self, pid: i32) -> Result<(), CgroupError> {
        for d in self.dirs() {
            fs::write(&d.path, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    /// True when `pid` is a direct member of the cgroup in every
    /// hierarchy (listed in each directory's `cgroup.procs`), so that
    /// [`Cgroup::add_pid`] would move it nowhere. Reading costs little;
    /// a v1 `cgroup.procs` write waits for an RCU grace period (~10 ms)
    /// even when the process is already there. Any read error is `false`.
    pub fn holds(&self, pid: i32) -> bool {
        self.dirs()
            .all(|d| fs::read_procs(&d.path).is_ok_and(|procs| procs.contains(&pid)))
    }

    /// Every pid in the cgroup and its descendants, over all hierarchies,
    /// sorted and deduplicated. A directory that is gone counts as empty.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let mut pids = Vec::new();
        for d in self.dirs() {
            collect_pids(&d.path, &mut pids)?;
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// Freezes every process and waits until the kernel reports frozen.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        match self.freezer()? {
            Place::V1(p) => v1::freezer::freeze(p),
            Place::V2(p) => v2::freezer::freeze(p),
        }
    }

    /// Thaws the cgroup and waits until the kernel reports thawed.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        match self.freezer()? {
            Place::V1(p) => v1::freezer::thaw(p),
            Place::V2(p) => v2::freezer::thaw(p),
        }
    }

    /// True if the cgroup is frozen.
    pub fn is_frozen(&self) -> Result<bool, CgroupError> {
        match self.freezer()? {
            Place::V1(p) => v1::freezer::is_frozen(p),
            Place::V2(p) => v2::freezer::is_frozen(p),
        }
    }

    /// Fails with `Frozen` if a process placed in the cgroup would be
    /// stopped before it runs: the v1 freezer reads FROZEN or FREEZING, or
    /// cgroup2 reports `frozen 1` (either may be inherited from an
    /// ancestor). A hierarchy without a freezer cannot freeze anything.
    pub fn ensure_thawed(&self) -> Result<(), CgroupError> {
        if let Some(p) = self.v1_dir("freezer") {
            if fs::exists(p, "freezer.state") {
                let state = fs::read(p, "freezer.state")?;
                if state != "THAWED" {
                    return Err(CgroupError::Frozen {
                        path: p.to_owned(),
                        state,
                    });
                }
            }
        }
        if let Some(d) = &self.v2 {
            if fs::exists(&d.path, "cgroup.events") && v2::freezer::is_frozen(&d.path)? {
                return Err(CgroupError::Frozen {
                    path: d.path.clone(),
                    state: "frozen 1".into(),
                });
            }
        }
        Ok(())
    }

    /// The v1 freezer controller if mounted (it is what v1 tools such as
    /// runc use on hybrid hosts), else v2's core `cgroup.freeze`.
    pub(crate) fn freezer(&self) -> Result<Place<'_>, CgroupError> {
        if let Some(p) = self.v1_dir("freezer") {
            return Ok(Place::V1(p));
        }
        match &self.v2 {
            Some(d) => Ok(Place::V2(&d.path)),
            None => Err(CgroupError::ControllerUnavailable {
                controller: "freezer".into(),
                file: "freezer.state".into(),
                value: "FROZEN".into(),
            }),
        }
    }
}

/// mkdir -p that tolerates a concurrent `destroy` removing a shared
/// ancestor between our mkdirs (ENOENT on the leaf: retry).
fn mkdir_all(path: &Path) -> Result<(), CgroupError> {
    let mut last = None;
    for _ in 0..5 {
        match std::fs::create_dir_all(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => last = Some(e),
            Err(source) => {
                return Err(CgroupError::CreateDir {
                    path: path.to_owned(),
                    source,
                })
            }
        }
    }
    Err(CgroupError::CreateDir {
        path: path.to_owned(),
        source: last.unwrap_or_else(|| ErrorKind::NotFound.into()),
    })
}

/// Subdirectories of a cgroup directory; missing directory is empty.
pub(crate) fn child_dirs(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CgroupError::ListDir {
                path: dir.to_owned(),
                source,
            })
        }
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(|source| CgroupError::ListDir {
            path: dir.to_owned(),
            source,
        })?;
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.push(e.path());
        }
    }
    Ok(out)
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>) -> Result<(), CgroupError> {
    match fs::read_procs(dir) {
        Ok(p) => out.extend(p),
        Err(CgroupError::ReadFile { source, .. }) if source.kind() == ErrorKind::NotFound => {
            return Ok(())
        }
        Err(e) => return Err(e),
    }
    for child in child_dirs(dir)? {
        collect_pids(&child, out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::tests::fixture;
    use crate::Mode;

    fn host(mode: Mode) -> (tempfile::TempDir, Host) {
        let d = tempfile::tempdir().unwrap();
        let (mi, pc) = fixture(d.path(), mode);
        let h = Host::detect_from(&mi, &pc).unwrap();
        (d, h)
    }

    #[test]
    fn sub_cgroups_move_the_named_hierarchies_only() {
        let (_d, h) = host(Mode::Hybrid);
        let cg = Cgroup::resolve(&h, None, "abc").unwrap();
        for d in cg.dirs() {
            std::fs::create_dir_all(d.path.join("sub")).unwrap();
        }
        let pids = cg
            .with_sub_cgroups(&[(Some("pids".into()), "sub".into())])
            .unwrap();
        assert!(pids.v1_dir("pids").unwrap().ends_with("abc/sub"));
        assert!(pids.v1_dir("memory").unwrap().ends_with("abc"));
        let all = cg.with_sub_cgroups(&[(None, "/sub".into())]).unwrap();
        assert!(all.dirs().all(|d| d.path.ends_with("abc/sub")));
        let err = cg
            .with_sub_cgroups(&[(None, "../x".into())])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`..`"), "{err}");
        let err = cg
            .with_sub_cgroups(&[(Some("pids".into()), "nosub".into())])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nosub") && err.contains("no such sub-cgroup"),
            "{err}"
        );
        let err = cg
            .with_sub_cgroups(&[(Some("nosuch".into()), "sub".into())])
            .unwrap_err()
            .to_string();
        assert!(err.contains("no hierarchy serves"), "{err}");
    }

    #[test]
    fn resolves_relative_per_hierarchy_and_absolute_from_root() {
        let (d, h) = host(Mode::Hybrid);
        let cg = Cgroup::resolve(&h, None, "abc").unwrap();
        assert_eq!(
            cg.v1_dir("memory").unwrap(),
            d.path().join("cgroup/memory/user.slice/me/abc")
        );
        assert_eq!(
            cg.v2_dir().unwrap(),
            d.path().join("cgroup/unified/user.slice/me/abc")
        );
        // user.slice/me does not exist in the fixture: both are ours.
        assert_eq!(cg.v2.as_ref().unwrap().new_ancestors, 2);

        let cg = Cgroup::resolve(&h, Some("/pods/abc"), "abc").unwrap();
        assert_eq!(
            cg.v1_dir("cpuacct").unwrap(),
            d.path().join("cgroup/cpu,cpuacct/pods/abc")
        );
        let cg = Cgroup::resolve(&h, Some("system.slice:nucleus:abc"), "abc").unwrap();
        assert_eq!(
            cg.v1_dir("pids").unwrap(),
            d.path().join("cgroup/pids/system.slice/nucleus-abc.scope")
        );
    }

    #[test]
    fn place_prefers_v1_then_v2() {
        let (_d, h) = host(Mode::Hybrid);
        let cg = Cgroup::resolve(&h, None, "abc").unwrap();
        assert!(matches!(cg.place("memory", "memory"), Some(Place::V1(_))));
        assert!(matches!(cg.place("hugetlb", "hugetlb"), Some(Place::V2(_))));
        assert!(cg.place("rdma", "rdma").is_none());
        assert!(matches!(cg.freezer().unwrap(), Place::V1(_)));
        let (_d, h) = host(Mode::V2);
        let cg = Cgroup::resolve(&h, None, "abc").unwrap();
        assert!(matches!(cg.place("blkio", "io"), Some(Place::V2(_))));
        assert!(matches!(cg.freezer().unwrap(), Place::V2(_)));
    }

    #[test]
    fn create_is_idempotent_and_state_round_trips() {
        let (_d, h) = host(Mode::Hybrid);
        let cg = Cgroup::resolve(&h, Some("a/b"), "abc").unwrap();
        cg.create().unwrap();
        cg.create().unwrap();
        assert!(cg.dirs().all(|d| d.path.is_dir()));
        let json = serde_json::to_string(&cg).unwrap();
        assert_eq!(serde_json::from_str::<Cgroup>(&json).unwrap(), cg);
    }

    #[test]
    fn pids_are_recursive_and_deduplicated() {
        let (_d, h) = host(Mode::Hybrid);
        let cg = Cgroup::resolve(&h, None, "abc").unwrap();
        cg.create().unwrap();
        let m = cg.v1_dir("memory").unwrap();
        std::fs::create_dir(m.join("sub")).unwrap();
        std::fs::write(m.join("cgroup.procs"), "5\n7\n").unwrap();
        std::fs::write(m.join("sub/cgroup.procs"), "9\n").unwrap();
        std::fs::write(cg.v2_dir().unwrap().join("cgroup.procs"), "7\n").unwrap();
        assert_eq!(cg.pids().unwrap(), [5, 7, 9]);
    }

    #[test]
    fn ensure_thawed_refuses_frozen_and_freezing() {
        let (d, h) = host(Mode::Hybrid);
        let cg = Cgroup::resolve(&h, Some("/pods/abc"), "abc").unwrap();
        let freezer = cg.v1_dir("freezer").unwrap().to_owned();
        std::fs::create_dir_all(&freezer).unwrap();
        std::fs::write(freezer.join("freezer.state"), "THAWED\n").unwrap();
        cg.ensure_thawed().unwrap();
        for state in ["FROZEN", "FREEZING"] {
            std::fs::write(freezer.join("freezer.state"), format!("{state}\n")).unwrap();
            let err = cg.ensure_thawed().unwrap_err().to_string();
            assert!(
                err.contains("cgroup is frozen") && err.contains(&freezer.display().to_string()),
                "{err}"
            );
        }
        drop(d);
    }
}
