//! Writing a child's uid and gid maps from the parent: directly when the
//! caller may (root, or an unprivileged caller mapping only its own ids),
//! else through the setuid helpers `newuidmap`/`newgidmap` (shadow's
//! `uidmap` package), which check the ranges against /etc/subuid and
//! /etc/subgid.

use crate::error::{EngineError, Result};
use oci_spec::runtime::LinuxIdMapping;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn format_map(maps: &[LinuxIdMapping]) -> String {
    let mut s = String::new();
    for m in maps {
        let _ = writeln!(s, "{} {} {}", m.container_id(), m.host_id(), m.size());
    }
    s
}

/// Whether an unprivileged caller can write `maps` itself: one line that
/// maps a single id to its own (user_namespaces(7)).
fn is_own_id_only(maps: &[LinuxIdMapping], own: u32) -> bool {
    matches!(maps, [m] if m.size() == 1 && m.host_id() == own)
}

/// How one of the two maps gets written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    Direct,
    Helper(&'static str),
}

fn writer_for(maps: &[LinuxIdMapping], euid: u32, own: u32, helper: &'static str) -> Writer {
    if euid == 0 || is_own_id_only(maps, own) {
        Writer::Direct
    } else {
        Writer::Helper(helper)
    }
}

/// Writes `/proc/<pid>/{uid_map,gid_map}`. Runs in the parent, which owns
/// the child's new user namespace.
pub fn write_id_maps(pid: i32, uid: &[LinuxIdMapping], gid: &[LinuxIdMapping]) -> Result<()> {
    let euid = nix::unistd::geteuid().as_raw();
    let egid = nix::unistd::getegid().as_raw();
    let uid_writer = writer_for(uid, euid, euid, "newuidmap");
    let gid_writer = writer_for(gid, euid, egid, "newgidmap");
    if euid != 0 && gid_writer == Writer::Direct && !gid.is_empty() {
        // An unprivileged gid_map needs setgroups denied first, so nobody
        // in the namespace can drop a group that denies them access.
        let path = PathBuf::from(format!("/proc/{pid}/setgroups"));
        std::fs::write(&path, "deny").map_err(|e| EngineError::io("write", &path, e))?;
    }
    // Both helpers run at once: each is a setuid exec on the start path.
    let mut running = Vec::new();
    for (file, maps, writer) in [("uid_map", uid, uid_writer), ("gid_map", gid, gid_writer)] {
        if maps.is_empty() {
            continue;
        }
        match writer {
            Writer::Direct => {
                let path = PathBuf::from(format!("/proc/{pid}/{file}"));
                std::fs::write(&path, format_map(maps))
                    .map_err(|e| EngineError::io("write id map", &path, e))?;
            }
            Writer::Helper(name) => running.push((spawn_helper(name, pid, maps)?, maps)),
        }
    }
    for (helper, maps) in running {
        helper.wait(pid, maps)?;
    }
    Ok(())
}

/// Checks that the user namespace `pid` joined maps what the spec says:
/// a namespace given by `path` (a holder's `/proc/PID/ns/user`) could be
/// another one than the caller meant if that process died and its pid was
/// reused. `/proc/PID/{uid,gid}_map` are readable without ptrace access.
pub fn verify_joined_maps(pid: i32, uid: &[LinuxIdMapping], gid: &[LinuxIdMapping]) -> Result<()> {
    for (file, field, maps) in [
        ("uid_map", "linux.uidMappings", uid),
        ("gid_map", "linux.gidMappings", gid),
    ] {
        if maps.is_empty() {
            continue;
        }
        let path = PathBuf::from(format!("/proc/{pid}/{file}"));
        let text = std::fs::read_to_string(&path).map_err(|e| EngineError::io("read", &path, e))?;
        let mut have = parse_map(&text);
        let mut want: Vec<(u32, u32, u32)> = maps
            .iter()
            .map(|m| (m.container_id(), m.host_id(), m.size()))
            .collect();
        have.sort_unstable();
        want.sort_unstable();
        if have != want {
            return Err(EngineError::invalid(
                field,
                format_map(maps).trim().replace('\n', "; "),
                format!(
                    "the joined user namespace maps `{}`",
                    text.split_whitespace()
                        .collect::<Vec<_>>()
                        .chunks(3)
                        .map(|c| c.join(" "))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            ));
        }
    }
    Ok(())
}

/// `/proc/PID/uid_map` lines (`         0       1001          1`) as triples.
fn parse_map(text: &str) -> Vec<(u32, u32, u32)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace().map(str::parse::<u32>);
            Some((f.next()?.ok()?, f.next()?.ok()?, f.next()?.ok()?))
        })
        .collect()
}

/// Where `name` is on PATH (or the usual system directories).
pub fn find_helper(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A running `newuidmap`/`newgidmap`.
struct RunningHelper {
    exe: PathBuf,
    child: std::process::Child,
}

impl RunningHelper {
    fn wait(self, pid: i32, maps: &[LinuxIdMapping]) -> Result<()> {
        let out = self
            .child
            .wait_with_output()
            .map_err(|e| EngineError::io("wait for", &self.exe, e))?;
        if !out.status.success() {
            return Err(EngineError::Rootless {
                reason: format!(
                    "`{} {pid} {}` failed: {}",
                    self.exe.display(),
                    format_map(maps).trim().replace('\n', " "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(())
    }
}

/// Starts `newuidmap PID C H S [C H S ...]`.
fn spawn_helper(name: &'static str, pid: i32, maps: &[LinuxIdMapping]) -> Result<RunningHelper> {
    let exe = find_helper(name).ok_or_else(|| EngineError::Rootless {
        reason: format!(
            "`{name}` is not installed (Debian: apt install uidmap); it is needed to map more than your own id into the user namespace"
        ),
    })?;
    let mut cmd = std::process::Command::new(&exe);
    cmd.arg(pid.to_string());
    for m in maps {
        cmd.args([
            m.container_id().to_string(),
            m.host_id().to_string(),
            m.size().to_string(),
        ]);
    }
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| EngineError::io("run", &exe, e))?;
    Ok(RunningHelper { exe, child })
}

/// Why this host refuses unprivileged user namespaces, if it does.
pub fn userns_disabled_reason() -> Option<String> {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Some(
            "user namespaces are disabled (`user.max_user_namespaces` is 0; sysctl -w user.max_user_namespaces=15000)".into(),
        );
    }
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Some(
            "unprivileged user namespaces are disabled (`kernel.unprivileged_userns_clone` is 0)"
                .into(),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxIdMappingBuilder;

    fn map(c: u32, h: u32, s: u32) -> LinuxIdMapping {
        LinuxIdMappingBuilder::default()
            .container_id(c)
            .host_id(h)
            .size(s)
            .build()
            .unwrap()
    }

    #[test]
    fn proc_map_lines_parse() {
        let text = "         0       1001          1\n         1    2000000      65536\n";
        assert_eq!(parse_map(text), [(0, 1001, 1), (1, 2_000_000, 65_536)]);
    }

    #[test]
    fn joined_maps_are_compared_with_our_own() {
        let pid = i32::try_from(std::process::id()).unwrap();
        let text = std::fs::read_to_string("/proc/self/uid_map").unwrap();
        let own: Vec<LinuxIdMapping> = parse_map(&text)
            .into_iter()
            .map(|(c, h, s)| map(c, h, s))
            .collect();
        verify_joined_maps(pid, &own, &[]).unwrap();
        let e = verify_joined_maps(pid, &[map(0, 1001, 1)], &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("linux.uidMappings") && e.contains("0 1001 1"),
            "{e}"
        );
    }

    #[test]
    fn map_lines() {
        assert_eq!(format_map(&[map(0, 100000, 65536)]), "0 100000 65536\n");
    }

    #[test]
    fn only_root_or_an_own_single_id_is_written_directly() {
        assert_eq!(writer_for(&[map(0, 5, 9)], 0, 0, "h"), Writer::Direct);
        assert_eq!(
            writer_for(&[map(0, 1001, 1)], 1001, 1001, "h"),
            Writer::Direct
        );
        assert_eq!(
            writer_for(&[map(0, 1001, 1), map(1, 100000, 65536)], 1001, 1001, "h"),
            Writer::Helper("h")
        );
        assert_eq!(
            writer_for(&[map(0, 1002, 1)], 1001, 1001, "h"),
            Writer::Helper("h")
        );
    }
}
