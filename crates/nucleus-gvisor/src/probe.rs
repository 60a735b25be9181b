//! What this host's runsc can do, found out once and cached: its version,
//! the platforms it lists and its flags (`runsc help platforms`, `runsc
//! flags`), and for each platform whether a trial sandbox really runs here.
//! A trial is bounded in time: gVisor's kvm platform hangs on some hosts
//! that have `/dev/kvm`, and a hang means "not available".
//!
//! The cache is one JSON file keyed by the binary's path, inode, size and
//! mtime; a replaced runsc is probed again. Trials run lazily, only for the
//! platform being chosen, except when listing the ones that work.

use crate::error::{GvisorError, Result};
use crate::runsc::{wait_bounded, Network, Runsc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where runsc is looked for when no path is given.
pub const RUNSC_PATHS: &[&str] = &["/usr/local/bin/runsc", "/usr/bin/runsc", "/usr/sbin/runsc"];

/// Platforms in the order a default choice prefers them.
pub const PREFERENCE: &[&str] = &["systrap", "ptrace", "kvm"];

/// How long a trial sandbox may take before its platform counts as hanging.
pub const TRIAL_TIMEOUT: Duration = Duration::from_secs(4);

/// Identity of the runsc binary a probe describes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinaryKey {
    pub path: PathBuf,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
}

impl BinaryKey {
    fn of(path: &Path) -> Result<BinaryKey> {
        let md = std::fs::metadata(path).map_err(|e| GvisorError::io("stat", path, e))?;
        Ok(BinaryKey {
            path: path.to_path_buf(),
            ino: md.ino(),
            size: md.size(),
            mtime_ns: i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec()),
        })
    }
}

/// The outcome of one platform's trial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trial {
    pub works: bool,
    pub detail: String,
    pub elapsed_ms: u64,
}

/// What runsc on this host offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    pub key: BinaryKey,
    /// `runsc --version`'s first line, e.g. `runsc version 0.0~20221219.0`.
    pub version: String,
    /// Platforms the binary lists (`runsc help platforms`).
    pub platforms: Vec<String>,
    /// Global flags the binary knows, without dashes (`runsc flags`).
    pub flags: Vec<String>,
    /// Trials run so far, by platform.
    pub trials: BTreeMap<String, Trial>,
}

/// Finds runsc: `explicit` if given, else the first of [`RUNSC_PATHS`].
pub fn find_runsc(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        if path.is_file() {
            return Ok(path.to_path_buf());
        }
        return Err(GvisorError::RunscNotFound {
            looked: format!("`{}`", path.display()),
        });
    }
    RUNSC_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| GvisorError::RunscNotFound {
            looked: RUNSC_PATHS.join(", "),
        })
}

impl Probe {
    /// The cached probe of `runsc` from `cache`, or a fresh one (saved there).
    pub fn load_or_run(runsc: &Path, cache: &Path) -> Result<Probe> {
        let key = BinaryKey::of(runsc)?;
        if let Ok(text) = std::fs::read(cache) {
            match serde_json::from_slice::<Probe>(&text) {
                Ok(p) if p.key == key => return Ok(p),
                Ok(_) => tracing::debug!(path = %cache.display(), "runsc changed; probing again"),
                Err(e) => {
                    tracing::warn!(path = %cache.display(), error = %e, "unreadable gVisor probe cache; probing again")
                }
            }
        }
        let version = first_line(&capture(runsc, &["--version"])?);
        let platforms = capture(runsc, &["help", "platforms"])?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.contains(' '))
            .map(str::to_string)
            .collect();
        let flags = parse_flags(&capture(runsc, &["flags"])?);
        let probe = Probe {
            key,
            version,
            platforms,
            flags,
            trials: BTreeMap::new(),
        };
        probe.save(cache)?;
        tracing::debug!(version = %probe.version, platforms = ?probe.platforms, "probed runsc");
        Ok(probe)
    }

    /// Writes the probe atomically (temp file + rename).
    pub fn save(&self, cache: &Path) -> Result<()> {
        let tmp = cache.with_extension(format!("tmp{}", std::process::id()));
        let data =
            serde_json::to_vec_pretty(self).map_err(|source| GvisorError::CorruptRecord {
                path: cache.to_path_buf(),
                source,
            })?;
        std::fs::write(&tmp, data).map_err(|e| GvisorError::io("write", &tmp, e))?;
        std::fs::rename(&tmp, cache).map_err(|e| GvisorError::io("rename into place", cache, e))
    }

    /// Whether runsc knows the global flag `--name`.
    pub fn has_flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }

    /// The platform to use: `requested` if it works, else the first of
    /// [`PREFERENCE`] that does. Runs the trials needed (in `work`), and
    /// returns whether the probe gained trials (so the caller saves it).
    pub fn choose(&mut self, requested: Option<&str>, work: &Path) -> Result<(String, bool)> {
        let before = self.trials.len();
        if let Some(name) = requested {
            let trial = self.trial(name, work)?;
            if trial.works {
                return Ok((name.to_string(), self.trials.len() != before));
            }
            let working = self.working(work)?;
            return Err(GvisorError::PlatformUnavailable {
                requested: name.to_string(),
                why: trial.detail,
                working: if working.is_empty() {
                    "none".into()
                } else {
                    working.join(", ")
                },
            });
        }
        let mut tried = Vec::new();
        for name in PREFERENCE {
            if !self.platforms.iter().any(|p| p == name) {
                continue;
            }
            let trial = self.trial(name, work)?;
            if trial.works {
                return Ok((name.to_string(), self.trials.len() != before));
            }
            tried.push(format!("{name}: {}", trial.detail));
        }
        Err(GvisorError::NoPlatform {
            detail: if tried.is_empty() {
                format!("runsc lists {:?}", self.platforms)
            } else {
                tried.join("; ")
            },
        })
    }

    /// Every listed platform that works (running the trials still missing).
    pub fn working(&mut self, work: &Path) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for name in self.platforms.clone() {
            if self.trial(&name, work)?.works {
                out.push(name);
            }
        }
        Ok(out)
    }

    /// The cached trial of `platform`, or a new one.
    fn trial(&mut self, platform: &str, work: &Path) -> Result<Trial> {
        if let Some(t) = self.trials.get(platform) {
            return Ok(t.clone());
        }
        let t = if !self.platforms.iter().any(|p| p == platform) {
            Trial {
                works: false,
                detail: format!("`{}` does not have it", self.version),
                elapsed_ms: 0,
            }
        } else if platform == "kvm" && !Path::new("/dev/kvm").exists() {
            Trial {
                works: false,
                detail: "there is no /dev/kvm".into(),
                elapsed_ms: 0,
            }
        } else {
            run_trial(&self.key.path, platform, Network::None, false, work)?
        };
        tracing::debug!(platform, works = t.works, detail = %t.detail, "gVisor platform trial");
        self.trials.insert(platform.to_string(), t.clone());
        Ok(t)
    }
}

/// Trial keys of [`Probe::sandbox_network`]: as runsc is, and with
/// `/proc/sys/net` hidden from it.
const SANDBOX_NETWORK: &str = "network=sandbox";
const SANDBOX_NETWORK_HIDDEN: &str = "network=sandbox,hidden-net-sysctl";

/// [`Probe::sandbox_network`]'s answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxNetwork {
    /// The trial that decides (the hidden one when the plain one failed).
    pub trial: Trial,
    /// runsc must not see `/proc/sys/net` ([`Runsc::hide_net_sysctl`]).
    pub hide_net_sysctl: bool,
    /// Whether a trial ran now (the cache should be saved).
    pub learned: bool,
}

impl Probe {
    /// Whether runsc can take a network namespace's interfaces into gVisor's
    /// netstack here (`--network=sandbox`), tried once in a new network
    /// namespace (`unshare --net`). Runsc releases from before 2023 refuse on
    /// Linux 5.x and later, mistaking every namespace for the host's because
    /// `/proc/sys/net/core/rmem_default` exists in all of them; then it is
    /// tried again with `/proc/sys/net` hidden from runsc.
    pub fn sandbox_network(&mut self, platform: &str, work: &Path) -> Result<SandboxNetwork> {
        let mut learned = false;
        for (key, hide) in [(SANDBOX_NETWORK, false), (SANDBOX_NETWORK_HIDDEN, true)] {
            let t = match self.trials.get(key) {
                Some(t) => t.clone(),
                None => {
                    let t = run_trial(&self.key.path, platform, Network::Sandbox, hide, work)?;
                    tracing::debug!(works = t.works, hide, detail = %t.detail, "gVisor sandbox network trial");
                    self.trials.insert(key.to_string(), t.clone());
                    learned = true;
                    t
                }
            };
            if t.works || hide {
                return Ok(SandboxNetwork {
                    hide_net_sysctl: hide && t.works,
                    trial: t,
                    learned,
                });
            }
        }
        Err(GvisorError::NoPlatform {
            detail: "no sandbox network trial ran".into(),
        })
    }
}

/// Runs a one-shot sandbox on `platform` (the host root read-only, running
/// `runsc --version` inside), killed after [`TRIAL_TIMEOUT`]. With
/// `Network::Sandbox` it runs in a new network namespace of its own, and
/// with `hide` runsc does not see `/proc/sys/net`.
fn run_trial(
    binary: &Path,
    platform: &str,
    network: Network,
    hide: bool,
    work: &Path,
) -> Result<Trial> {
    let id = format!(
        "nucleus-probe-{platform}-{}-{}",
        network.as_flag(),
        std::process::id()
    );
    let dir = work.join(&id);
    std::fs::create_dir_all(&dir).map_err(|e| GvisorError::io("create", &dir, e))?;
    let result = trial_in(binary, platform, network, hide, &dir, &id);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn trial_in(
    binary: &Path,
    platform: &str,
    network: Network,
    hide: bool,
    dir: &Path,
    id: &str,
) -> Result<Trial> {
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {"args": [binary, "--version"], "cwd": "/", "env": ["PATH=/usr/bin:/bin"],
                    "user": {"uid": 0, "gid": 0}},
        "root": {"path": "/", "readonly": true},
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"},
                                 {"type": "uts"}, {"type": "network"}]}
    });
    let path = dir.join("config.json");
    std::fs::write(&path, config.to_string()).map_err(|e| GvisorError::io("write", &path, e))?;
    let runsc = Runsc {
        binary: binary.to_path_buf(),
        root: dir.join("state"),
        platform: platform.to_string(),
        network,
        oci_seccomp: false,
        log: dir.join("runsc.log"),
        netns: None,
        hide_net_sysctl: false,
    };
    // The trial needs no cgroup.
    let mut cmd = runsc.command_with(&["--ignore-cgroups"], "run");
    if network == Network::Sandbox {
        let args: Vec<_> = cmd.get_args().map(|a| a.to_os_string()).collect();
        cmd = Command::new("unshare");
        cmd.arg("--net").arg("--").arg(binary).args(args);
        if hide {
            nucleus_sys::command::hide_proc_sys_net(&mut cmd);
        }
    }
    cmd.arg("--bundle")
        .arg(dir)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| GvisorError::io("run", binary, e))?;
    let status = wait_bounded(&mut child, TRIAL_TIMEOUT)?;
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    // Whatever happened, leave no sandbox or state behind.
    let _ = runsc
        .command("delete")
        .args(["--force", id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    Ok(match status {
        Some(s) if s.success() => Trial {
            works: true,
            detail: "a trial sandbox ran".into(),
            elapsed_ms,
        },
        Some(s) => Trial {
            works: false,
            detail: format!("a trial sandbox failed ({s})"),
            elapsed_ms,
        },
        None => Trial {
            works: false,
            detail: format!(
                "a trial sandbox hung for {}s and was killed",
                TRIAL_TIMEOUT.as_secs()
            ),
            elapsed_ms,
        },
    })
}

fn capture(binary: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| GvisorError::io("run", binary, e))?;
    if !out.status.success() {
        return Err(GvisorError::Runsc {
            runsc: binary.to_path_buf(),
            verb: args.join(" "),
            status: out.status.to_string(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    // `runsc flags` and `help` print to stderr on some releases.
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok(text)
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").trim().to_string()
}

/// Flag names from `runsc flags`, whose lines look like:
/// ```text
///   -oci-seccomp
///         Enables loading OCI seccomp filters inside the sandbox.
///   -platform string
/// ```
fn parse_flags(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("  -"))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_parsed_from_runsc_flags_output() {
        let text = "  -oci-seccomp\n    \tEnables loading OCI seccomp filters.\n  -platform string\n    \tspecifies which platform (default \"ptrace\")\n";
        assert_eq!(parse_flags(text), ["oci-seccomp", "platform"]);
    }

    fn probe(platforms: &[&str], trials: &[(&str, bool)]) -> Probe {
        Probe {
            key: BinaryKey {
                path: "/nonexistent/runsc".into(),
                ino: 0,
                size: 0,
                mtime_ns: 0,
            },
            version: "runsc version test".into(),
            platforms: platforms.iter().map(|s| s.to_string()).collect(),
            flags: vec![],
            trials: trials
                .iter()
                .map(|(n, w)| {
                    (
                        n.to_string(),
                        Trial {
                            works: *w,
                            detail: if *w { "ran".into() } else { "hung".into() },
                            elapsed_ms: 1,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn default_prefers_systrap_then_ptrace() {
        let work = tempfile::tempdir().unwrap();
        let mut p = probe(&["kvm", "ptrace", "systrap"], &[("systrap", true)]);
        assert_eq!(p.choose(None, work.path()).unwrap().0, "systrap");
        let mut p = probe(&["kvm", "ptrace"], &[("ptrace", true), ("kvm", true)]);
        assert_eq!(p.choose(None, work.path()).unwrap().0, "ptrace");
    }

    #[test]
    fn an_unavailable_request_lists_the_working_ones() {
        let work = tempfile::tempdir().unwrap();
        let mut p = probe(&["kvm", "ptrace"], &[("ptrace", true), ("kvm", false)]);
        let err = p.choose(Some("kvm"), work.path()).unwrap_err().to_string();
        assert!(err.contains("`kvm` is not available here (hung)"), "{err}");
        assert!(err.contains("platforms that work: ptrace"), "{err}");
        let err = p
            .choose(Some("systrap"), work.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not have it"), "{err}");
    }

    #[test]
    fn the_cache_is_keyed_by_the_binary() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("runsc");
        std::fs::write(&bin, "x").unwrap();
        let key = BinaryKey::of(&bin).unwrap();
        std::fs::write(&bin, "xy").unwrap();
        assert_ne!(key, BinaryKey::of(&bin).unwrap());
    }
}
