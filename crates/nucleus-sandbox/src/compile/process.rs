//! The workload's process: its command, its identity (resolved against the
//! root's passwd and group, with the passwd and group files agent mode
//! generates) and its environment.

use super::Inputs;
use crate::error::{Field, Result, SandboxError};
use crate::rootfs::ImageConfig;
use crate::spec::SandboxSpec;
use std::collections::BTreeSet;

/// `PATH` inside the container.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The command; an image's entrypoint goes first, its cmd is the default.
/// `/bin/sh` when nothing is given.
pub(super) fn command(s: &SandboxSpec, image: Option<&ImageConfig>) -> Vec<String> {
    let mut args: Vec<String> = image.map(|c| c.entrypoint.clone()).unwrap_or_default();
    if !s.command.is_empty() {
        args.extend(s.command.iter().cloned());
    } else if let Some(c) = image {
        args.extend(c.cmd.iter().cloned());
    }
    if args.is_empty() {
        return vec!["/bin/sh".into()];
    }
    args
}

/// The workload's identity and the passwd/group files that name it.
#[derive(Debug)]
pub(super) struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional: Vec<u32>,
    pub home: String,
    pub passwd: String,
    pub group: String,
}

/// `name:x:uid:gid:gecos:home:shell` lines → (name, uid, gid, home).
fn passwd_entries(text: &str) -> impl Iterator<Item = (&str, u32, u32, &str)> {
    text.lines().filter_map(|l| {
        let p: Vec<&str> = l.split(':').collect();
        (p.len() >= 7).then_some(())?;
        Some((p[0], p[2].parse().ok()?, p[3].parse().ok()?, p[5]))
    })
}

/// `name:x:gid:members` lines → (name, gid).
fn group_entries(text: &str) -> impl Iterator<Item = (&str, u32)> {
    text.lines().filter_map(|l| {
        let p: Vec<&str> = l.split(':').collect();
        (p.len() >= 3).then_some(())?;
        Some((p[0], p[2].parse().ok()?))
    })
}

fn resolve_group(field: Field, g: &str, group: &str) -> Result<u32> {
    if let Ok(n) = g.parse::<u32>() {
        return Ok(n);
    }
    group_entries(group)
        .find(|(n, _)| *n == g)
        .map(|(_, id)| id)
        .ok_or_else(|| SandboxError::invalid(field, g, "no such group"))
}

pub(super) fn resolve_user(
    s: &SandboxSpec,
    image: Option<&ImageConfig>,
    inp: &Inputs<'_>,
) -> Result<User> {
    let agent = s.rootfs.is_host_derived();
    let spec_user = s
        .user
        .as_deref()
        .or_else(|| image.and_then(|c| c.user.as_deref()));
    let (uid, gid, name, home) = match spec_user {
        None | Some("") => (0, 0, "root".to_string(), "/root".to_string()),
        Some(spec) => {
            let (u, g) = match spec.split_once(':') {
                Some((u, g)) => (u, Some(g)),
                None => (spec, None),
            };
            let (uid, pw_gid, name, home) = if let Ok(uid) = u.parse::<u32>() {
                match passwd_entries(inp.passwd).find(|e| e.1 == uid) {
                    Some((n, _, gid, home)) => (uid, gid, n.to_string(), home.to_string()),
                    None => (
                        uid,
                        uid,
                        if uid == 0 {
                            "root".into()
                        } else {
                            format!("user{uid}")
                        },
                        "/tmp".to_string(),
                    ),
                }
            } else {
                let (_, uid, gid, home) = passwd_entries(inp.passwd)
                    .find(|e| e.0 == u)
                    .ok_or_else(|| {
                        SandboxError::invalid(
                            Field::User,
                            spec,
                            format!("no user `{u}` in /etc/passwd"),
                        )
                    })?;
                (uid, gid, u.to_string(), home.to_string())
            };
            let gid = match g {
                Some(g) => resolve_group(Field::User, g, inp.group)?,
                None => pw_gid,
            };
            (uid, gid, name, home)
        }
    };
    let additional = s
        .group_add
        .iter()
        .map(|g| resolve_group(Field::GroupAdd, g, inp.group))
        .collect::<Result<Vec<_>>>()?;
    // Agent mode: a read-only root, so a non-root user's home is /tmp.
    let home = if agent && uid != 0 {
        "/tmp".to_string()
    } else if uid == 0 {
        "/root".to_string()
    } else {
        home
    };
    let mut passwd = String::from("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
    if uid != 0 && uid != 65534 {
        passwd.push_str(&format!("{name}:x:{uid}:{gid}::{home}:/bin/sh\n"));
    }
    let mut group = String::from("root:x:0:\ntty:x:5:\nnogroup:x:65534:\n");
    let mut listed: BTreeSet<u32> = [0, 5, 65534].into();
    for g in std::iter::once(gid).chain(additional.iter().copied()) {
        if listed.insert(g) {
            let gname = group_entries(inp.group)
                .find(|e| e.1 == g)
                .map(|e| e.0.to_string())
                .unwrap_or_else(|| format!("group{g}"));
            group.push_str(&format!("{gname}:x:{g}:\n"));
        }
    }
    Ok(User {
        uid,
        gid,
        additional,
        home,
        passwd,
        group,
    })
}

/// PATH, HOSTNAME and HOME (and TERM with a terminal), then the image's
/// env, then the spec's, each `KEY=VALUE` replacing an earlier one.
pub(super) fn environment(
    s: &SandboxSpec,
    image: Option<&ImageConfig>,
    hostname: &str,
    user: &User,
) -> Vec<String> {
    let mut env: Vec<String> = vec![
        DEFAULT_PATH.into(),
        format!("HOSTNAME={hostname}"),
        format!("HOME={}", user.home),
    ];
    if s.tty {
        env.push("TERM=xterm".into());
    }
    let image_env = image.map(|c| c.env.as_slice()).unwrap_or_default();
    for kv in image_env.iter().chain(&s.env) {
        let key = kv.split_once('=').map(|(k, _)| k).unwrap_or(kv);
        env.retain(|e| e.split_once('=').map(|(k, _)| k) != Some(key));
        env.push(kv.clone());
    }
    env.retain(|e| !e.is_empty());
    env
}
