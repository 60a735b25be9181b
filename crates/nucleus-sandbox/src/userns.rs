//! The sandbox's user namespace: which container ids map to which host
//! ids. Unprivileged, the ids a user may map are its own and its
//! subordinate ranges (`/etc/subuid`, `/etc/subgid`); as podman does, they
//! are numbered as one "intermediate" space: 0 is the user's own id, 1..
//! the ranges in file order. `--uidmap CONTAINER:HOST:SIZE` counts HOST in
//! that space when rootless, in the host's when root.

use crate::error::{Field, Result, SandboxError};
use nucleus_engine::oci_spec::runtime::{LinuxIdMapping, LinuxIdMappingBuilder};
use serde::{Deserialize, Serialize};

/// How the container's ids relate to the caller's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsernsMode {
    /// No user namespace (root only).
    #[default]
    Host,
    /// Container root is the caller; 1.. are its subordinate ids (the
    /// rootless default; `auto` picks it too).
    Private,
    /// The caller's id is the same inside, and the workload runs as it.
    KeepId,
    /// Only subordinate ids: the caller is not mapped at all.
    NoMap,
}

/// One line of an id map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

impl std::fmt::Display for IdMap {
    /// `CONTAINER:HOST:SIZE`, the `--uidmap` spelling.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.container, self.host, self.size)
    }
}

/// `maps` as the OCI spec's id mappings.
pub fn oci_id_maps(maps: &[IdMap]) -> Vec<LinuxIdMapping> {
    maps.iter()
        .filter_map(|m| {
            LinuxIdMappingBuilder::default()
                .container_id(m.container)
                .host_id(m.host)
                .size(m.size)
                .build()
                .ok()
        })
        .collect()
}

/// What a front end asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserNamespace {
    pub mode: UsernsMode,
    /// Explicit maps (replace the mode's); HOST as the module doc says.
    pub uid_map: Vec<IdMap>,
    pub gid_map: Vec<IdMap>,
}

impl UsernsMode {
    /// As `--userns` spells it.
    pub fn as_flag(self) -> &'static str {
        match self {
            UsernsMode::Host => "host",
            UsernsMode::Private => "auto",
            UsernsMode::KeepId => "keep-id",
            UsernsMode::NoMap => "nomap",
        }
    }
}

impl UserNamespace {
    pub fn is_host(&self) -> bool {
        self.mode == UsernsMode::Host && self.uid_map.is_empty() && self.gid_map.is_empty()
    }
}

/// The caller's ids and subordinate ranges (start, count).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub name: String,
    pub sub_uids: Vec<(u32, u32)>,
    pub sub_gids: Vec<(u32, u32)>,
}

impl Caller {
    /// The running process's ids, name and ranges from `subuid`/`subgid` text.
    pub fn current(subuid: &str, subgid: &str) -> Caller {
        let uid = nix::unistd::geteuid();
        let name = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_default();
        Caller {
            uid: uid.as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            sub_uids: sub_ranges(subuid, &name, uid.as_raw()),
            sub_gids: sub_ranges(subgid, &name, uid.as_raw()),
            name,
        }
    }
}

/// The ranges `/etc/subuid`-format text gives the user `name` (or `uid`,
/// which may be written as a number), in file order.
pub fn sub_ranges(text: &str, name: &str, uid: u32) -> Vec<(u32, u32)> {
    let uid_text = uid.to_string();
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (who, start, count) = (f.next()?, f.next()?, f.next()?);
            if who.starts_with('#') || (who != name && who != uid_text) {
                return None;
            }
            Some((start.parse().ok()?, count.parse().ok().filter(|c| *c > 0)?))
        })
        .collect()
}

/// The maps of one kind (uids or gids): `own` and `ranges` from the caller.
#[derive(Debug, Clone)]
struct Side<'a> {
    own: u32,
    ranges: &'a [(u32, u32)],
    rootless: bool,
    field: Field,
    file: &'static str,
}

impl Side<'_> {
    /// Intermediate space: the own id, then the ranges.
    fn segments(&self) -> Vec<(u32, u32)> {
        std::iter::once((self.own, 1))
            .chain(self.ranges.iter().copied())
            .collect()
    }

    fn total(&self) -> u64 {
        self.segments().iter().map(|s| u64::from(s.1)).sum()
    }

    /// `container..+size` → intermediate `inter..+size`, as host lines.
    fn translate(&self, container: u32, inter: u32, size: u32, shown: &str) -> Result<Vec<IdMap>> {
        let mut out = Vec::new();
        let (mut c, mut i, mut left) = (u64::from(container), u64::from(inter), u64::from(size));
        let mut base = 0u64;
        for (start, count) in self.segments() {
            let (lo, hi) = (base, base + u64::from(count));
            if left > 0 && i >= lo && i < hi {
                let n = left.min(hi - i);
                out.push(IdMap {
                    container: to_u32(c),
                    host: to_u32(u64::from(start) + (i - lo)),
                    size: to_u32(n),
                });
                c += n;
                i += n;
                left -= n;
            }
            base = hi;
        }
        if left > 0 {
            return Err(SandboxError::invalid(
                self.field.clone(),
                shown,
                format!(
                    "HOST ids go up to {} here (your id, then your ranges in {})",
                    self.total().saturating_sub(1),
                    self.file
                ),
            ));
        }
        Ok(out)
    }

    fn no_range(&self, mode: &str) -> SandboxError {
        SandboxError::invalid(
            Field::Userns,
            mode,
            format!(
                "needs a subordinate id range for you in {} (e.g. usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER)",
                self.file
            ),
        )
    }

    fn maps(&self, ns: &UserNamespace, custom: &[IdMap]) -> Result<Vec<IdMap>> {
        if !custom.is_empty() {
            if !self.rootless {
                return Ok(custom.to_vec());
            }
            let mut out = Vec::new();
            for m in custom {
                out.extend(self.translate(m.container, m.host, m.size, &m.to_string())?);
            }
            return Ok(out);
        }
        let total = to_u32(self.total());
        match ns.mode {
            UsernsMode::Host => Ok(Vec::new()),
            UsernsMode::Private => self.translate(0, 0, total, "private"),
            UsernsMode::NoMap => {
                if self.ranges.is_empty() {
                    return Err(self.no_range("nomap"));
                }
                self.translate(0, 1, total - 1, "nomap")
            }
            UsernsMode::KeepId => {
                let own = self.own;
                let below = (total - 1).min(own);
                let mut out = self.translate(0, 1, below, "keep-id")?;
                out.push(IdMap {
                    container: own,
                    host: own,
                    size: 1,
                });
                let above = total - 1 - below;
                if above > 0 {
                    out.extend(self.translate(own + 1, 1 + below, above, "keep-id")?);
                }
                Ok(out)
            }
        }
    }
}

fn to_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// The uid and gid maps for `ns`; empty when there is no user namespace.
/// `rootless`: HOST ids of explicit maps count in the intermediate space.
pub fn id_maps(
    ns: &UserNamespace,
    caller: &Caller,
    rootless: bool,
) -> Result<(Vec<IdMap>, Vec<IdMap>)> {
    let uid = Side {
        own: caller.uid,
        ranges: &caller.sub_uids,
        rootless,
        field: Field::UidMap,
        file: "/etc/subuid",
    };
    let gid = Side {
        own: caller.gid,
        ranges: &caller.sub_gids,
        rootless,
        field: Field::GidMap,
        file: "/etc/subgid",
    };
    // One explicit kind given alone applies to both, as podman's --uidmap.
    let (cu, cg) = match (ns.uid_map.is_empty(), ns.gid_map.is_empty()) {
        (false, true) => (&ns.uid_map, &ns.uid_map),
        (true, false) => (&ns.gid_map, &ns.gid_map),
        _ => (&ns.uid_map, &ns.gid_map),
    };
    Ok((uid.maps(ns, cu)?, gid.maps(ns, cg)?))
}

/// Whether container id `id` is mapped.
pub fn is_mapped(maps: &[IdMap], id: u32) -> bool {
    maps.iter()
        .any(|m| id >= m.container && u64::from(id) < u64::from(m.container) + u64::from(m.size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(ranges: bool) -> Caller {
        let r = if ranges {
            vec![(100_000, 65_536)]
        } else {
            vec![]
        };
        Caller {
            uid: 1001,
            gid: 1002,
            name: "dev".into(),
            sub_uids: r.clone(),
            sub_gids: r,
        }
    }

    fn m(container: u32, host: u32, size: u32) -> IdMap {
        IdMap {
            container,
            host,
            size,
        }
    }

    fn ns(mode: UsernsMode) -> UserNamespace {
        UserNamespace {
            mode,
            ..UserNamespace::default()
        }
    }

    #[test]
    fn subid_lines_by_name_or_uid() {
        let text = "# comment\nother:1:5\ndev:100000:65536\n1001:200000:10\nbad:x:1\n";
        assert_eq!(
            sub_ranges(text, "dev", 1001),
            vec![(100_000, 65_536), (200_000, 10)]
        );
        assert!(sub_ranges(text, "nobody", 7).is_empty());
    }

    #[test]
    fn private_maps_root_to_the_caller_then_the_range() {
        let (u, g) = id_maps(&ns(UsernsMode::Private), &caller(true), true).unwrap();
        assert_eq!(u, vec![m(0, 1001, 1), m(1, 100_000, 65_536)]);
        assert_eq!(g, vec![m(0, 1002, 1), m(1, 100_000, 65_536)]);
        let (u, _) = id_maps(&ns(UsernsMode::Private), &caller(false), true).unwrap();
        assert_eq!(u, vec![m(0, 1001, 1)]);
    }

    #[test]
    fn keep_id_puts_the_caller_at_its_own_id() {
        let (u, _) = id_maps(&ns(UsernsMode::KeepId), &caller(true), true).unwrap();
        assert_eq!(
            u,
            vec![
                m(0, 100_000, 1001),
                m(1001, 1001, 1),
                m(1002, 101_001, 65_536 - 1001)
            ]
        );
        let (u, _) = id_maps(&ns(UsernsMode::KeepId), &caller(false), true).unwrap();
        assert_eq!(u, vec![m(1001, 1001, 1)]);
    }

    #[test]
    fn nomap_leaves_the_caller_out_and_needs_a_range() {
        let (u, _) = id_maps(&ns(UsernsMode::NoMap), &caller(true), true).unwrap();
        assert_eq!(u, vec![m(0, 100_000, 65_536)]);
        let e = id_maps(&ns(UsernsMode::NoMap), &caller(false), true).unwrap_err();
        assert!(e.to_string().contains("/etc/subuid"), "{e}");
    }

    #[test]
    fn explicit_maps_count_host_ids_from_the_caller_when_rootless() {
        let ns = UserNamespace {
            uid_map: vec![m(0, 0, 11)],
            ..UserNamespace::default()
        };
        let (u, g) = id_maps(&ns, &caller(true), true).unwrap();
        assert_eq!(u, vec![m(0, 1001, 1), m(1, 100_000, 10)]);
        assert_eq!(g, vec![m(0, 1002, 1), m(1, 100_000, 10)]);
        let (u, _) = id_maps(&ns, &caller(true), false).unwrap();
        assert_eq!(u, vec![m(0, 0, 11)]);
        let big = UserNamespace {
            uid_map: vec![m(0, 1, 70_000)],
            gid_map: vec![m(0, 0, 1)],
            ..UserNamespace::default()
        };
        let e = id_maps(&big, &caller(true), true).unwrap_err().to_string();
        assert!(e.contains("0:1:70000") && e.contains("up to 65536"), "{e}");
        assert!(is_mapped(&[m(0, 1001, 1), m(1, 100_000, 10)], 10));
        assert!(!is_mapped(&[m(0, 1001, 1), m(1, 100_000, 10)], 11));
    }
}
