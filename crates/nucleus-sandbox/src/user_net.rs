//! User-mode networking (`Network::Pasta`, `Network::Slirp4netns`), the
//! rootless way out: `pasta` (Debian's `passt`) joins the container's user
//! and network namespaces, gives it the host's addresses and routes
//! (outbound traffic leaves through pasta's sockets on the host), maps the
//! gateway address to the host's loopback, and forwards each published
//! `HOST:CTR` from the host into the container. `slirp4netns` serves when
//! pasta is missing (outbound and the host's loopback at 10.0.2.2; no
//! published ports).
//!
//! The run writes a [`UserNetPlan`] to `<bundle>/user-net.json`; whoever
//! starts the container (the CLI in the foreground, a detached run's
//! monitor) attaches with it. Once started, the helper's pid and start
//! time go to `<bundle>/user-net.pid`, so that `rm` can stop it even when
//! the monitor was killed ([`stop_recorded`]); the attach step stops it
//! when dropped.

use crate::error::{Field, Result, SandboxError};
use crate::network::{AttachContext, NetworkAttach};
use crate::spec::{Network, SandboxSpec};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// In the bundle: what the starter attaches with.
pub const PLAN_FILE: &str = "user-net.json";
/// In the bundle: `PID STARTTIME` of the running helper.
pub const PID_FILE: &str = "user-net.pid";

/// Which user-mode network helper runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Helper {
    Pasta,
    Slirp4netns,
}

/// The helper, its binary and pasta's forwarding arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNetPlan {
    pub helper: Helper,
    pub exe: PathBuf,
    /// `-t 8080:80`, `-u 127.0.0.1/53:53`.
    pub ports: Vec<String>,
}

fn fail(network: &Network, reason: String) -> SandboxError {
    SandboxError::invalid(Field::Network, network.as_flag(), reason)
}

/// `[IP:]HOST:CTR[/tcp|udp]` → pasta's `-t|-u [IP/]HOST:CTR`.
fn port_args(publish: &str) -> Result<[String; 2]> {
    let bad = |reason: String| SandboxError::invalid(Field::Publish, publish, reason);
    let (spec, proto) = publish.rsplit_once('/').unwrap_or((publish, "tcp"));
    let flag = match proto {
        "tcp" => "-t",
        "udp" => "-u",
        other => return Err(bad(format!("unknown protocol `{other}` (tcp or udp)"))),
    };
    let port = |s: &str| {
        s.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| bad(format!("`{s}` is not a port")))
    };
    let arg = match spec.split(':').collect::<Vec<_>>()[..] {
        [host, ctr] => format!("{}:{}", port(host)?, port(ctr)?),
        [ip, host, ctr] => {
            ip.parse::<std::net::IpAddr>()
                .map_err(|_| bad(format!("`{ip}` is not an IP address")))?;
            format!("{ip}/{}:{}", port(host)?, port(ctr)?)
        }
        _ => {
            return Err(bad(
                "expected [IP:]HOST:CTR[/tcp|udp] with network `pasta`".into()
            ))
        }
    };
    Ok([flag.to_string(), arg])
}

impl UserNetPlan {
    /// `None` unless the spec asks for pasta or slirp4netns; finds the
    /// helper (pasta asked but missing falls back to slirp4netns).
    pub fn for_spec(spec: &SandboxSpec) -> Result<Option<UserNetPlan>> {
        let find = nucleus_engine::userns::find_helper;
        let (helper, exe) =
            match (&spec.network, find("pasta"), find("slirp4netns")) {
                (Network::Pasta, Some(p), _) => (Helper::Pasta, p),
                (Network::Pasta | Network::Slirp4netns, _, Some(s)) => (Helper::Slirp4netns, s),
                (n @ (Network::Pasta | Network::Slirp4netns), _, _) => return Err(fail(
                    n,
                    "neither `pasta` nor `slirp4netns` is installed (Debian: apt install passt)"
                        .into(),
                )),
                _ => return Ok(None),
            };
        if helper == Helper::Slirp4netns {
            if let Some(p) = spec.net.publish.first() {
                return Err(SandboxError::invalid(
                    Field::Publish,
                    p,
                    "not supported with slirp4netns; install passt for network `pasta`",
                ));
            }
        }
        let mut ports = Vec::new();
        for p in &spec.net.publish {
            ports.extend(port_args(p)?);
        }
        Ok(Some(UserNetPlan { helper, exe, ports }))
    }

    pub fn write(&self, bundle: &Path) -> Result<()> {
        crate::bundle::write_json(bundle, PLAN_FILE, self)
    }

    /// The plan in `bundle`, if its run asked for user-mode networking.
    pub fn read(bundle: &Path) -> Result<Option<UserNetPlan>> {
        crate::bundle::read_json(bundle, PLAN_FILE)
    }
}

/// A running helper: its pid and the start time that identifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Running {
    pid: i32,
    start: u64,
}

impl Running {
    fn of(pid: i32) -> Option<Running> {
        let (start, alive) = nucleus_engine::state::proc_start_time(pid)?;
        (pid > 1 && alive).then_some(Running { pid, start })
    }

    fn parse(text: &str) -> Option<Running> {
        let (pid, start) = text.trim().split_once(' ')?;
        Some(Running {
            pid: pid.parse().ok()?,
            start: start.parse().ok()?,
        })
    }

    /// SIGKILL, unless the pid now belongs to another process.
    fn kill(self) {
        if nucleus_engine::state::proc_start_time(self.pid).is_some_and(|(s, _)| s == self.start) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Stops the helper recorded in `bundle`, if it still runs (`rm`, after
/// the container is dead: its monitor may have been killed).
pub fn stop_recorded(bundle: &Path) {
    if let Some(r) = std::fs::read_to_string(bundle.join(PID_FILE))
        .ok()
        .as_deref()
        .and_then(Running::parse)
    {
        r.kill();
    }
}

/// The attachment step of one run; stops the helper when dropped.
#[derive(Debug)]
pub struct UserNet {
    plan: UserNetPlan,
    network: Network,
    /// slirp4netns stays in the foreground, our child: killed and reaped.
    slirp: Option<std::process::Child>,
    running: Option<Running>,
}

impl UserNet {
    pub fn new(plan: UserNetPlan) -> UserNet {
        let network = match plan.helper {
            Helper::Pasta => Network::Pasta,
            Helper::Slirp4netns => Network::Slirp4netns,
        };
        UserNet {
            plan,
            network,
            slirp: None,
            running: None,
        }
    }

    fn fail(&self, reason: String) -> SandboxError {
        fail(&self.network, reason)
    }

    /// Records the helper for `rm`; its pid file lives with the bundle.
    fn record(&mut self, pid: i32, bundle: &Path) -> Result<()> {
        let Some(r) = Running::of(pid) else {
            return Err(self.fail(format!("`{}` exited after starting", self.exe())));
        };
        self.running = Some(r);
        let path = bundle.join(PID_FILE);
        std::fs::write(&path, format!("{} {}\n", r.pid, r.start))
            .map_err(|e| SandboxError::io("write", &path, e))
    }

    fn exe(&self) -> String {
        self.plan.exe.display().to_string()
    }

    /// `slirp4netns --configure PID tap0`, in the background; ready once
    /// the container has its default route through tap0.
    fn attach_slirp(&mut self, ctx: &AttachContext<'_>) -> Result<()> {
        let mut child = std::process::Command::new(&self.plan.exe)
            .args(["--configure", "--mtu=65520"])
            .arg(ctx.pid.to_string())
            .arg("tap0")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| self.fail(format!("cannot run `{}`: {e}", self.exe())))?;
        let routes = format!("/proc/{}/net/route", ctx.pid);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if std::fs::read_to_string(&routes).is_ok_and(|t| t.contains("tap0\t00000000")) {
                let pid = i32::try_from(child.id()).unwrap_or(0);
                self.slirp = Some(child);
                return self.record(pid, ctx.bundle);
            }
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                let hint = if tun_usable() {
                    ""
                } else {
                    " (/dev/net/tun is not usable by this user; its usual mode is 0666)"
                };
                return Err(self.fail(format!(
                    "`{}` exited ({status}): {}{hint}",
                    self.exe(),
                    err.trim()
                )));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(self.fail(format!("`{}` did not configure tap0 within 5s", self.exe())));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// `pasta PID` joins the init's user and network namespaces; it returns
    /// once the interface is configured and goes to the background.
    fn attach_pasta(&mut self, ctx: &AttachContext<'_>) -> Result<()> {
        let pid_file = ctx.bundle.join(".pasta.pid");
        let ports = &self.plan.ports;
        let out = std::process::Command::new(&self.plan.exe)
            .args(["--config-net", "--quiet", "-P"])
            .arg(&pid_file)
            // Only what is published; pasta's default forwards every bound port.
            .args(if ports.iter().any(|p| p == "-t") {
                &[][..]
            } else {
                &["-t", "none"][..]
            })
            .args(if ports.iter().any(|p| p == "-u") {
                &[][..]
            } else {
                &["-u", "none"][..]
            })
            .args(["-T", "none", "-U", "none"])
            .args(ports)
            .arg(ctx.pid.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .output()
            .map_err(|e| self.fail(format!("cannot run `{}`: {e}", self.exe())))?;
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        let _ = std::fs::remove_file(&pid_file);
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            // pasta's own lines, without its complaints about syslog.
            let said: Vec<&str> = stderr
                .lines()
                .filter(|l| !l.contains("to syslog"))
                .collect();
            let hint = if stderr.contains("tun") && !tun_usable() {
                " (/dev/net/tun is not usable by this user; its usual mode is 0666: chmod 0666 /dev/net/tun)"
            } else {
                ""
            };
            return Err(self.fail(format!(
                "`{}` failed: {}{hint}",
                self.exe(),
                said.join("; ")
            )));
        }
        let Some(pid) = pid else {
            return Err(self.fail(format!("`{}` wrote no pid file", self.exe())));
        };
        self.record(pid, ctx.bundle)?;
        tracing::debug!(pid = ctx.pid, pasta = pid, ports = ?self.plan.ports, "pasta attached");
        Ok(())
    }
}

impl NetworkAttach for UserNet {
    fn attach(&mut self, ctx: &AttachContext<'_>) -> Result<()> {
        match self.plan.helper {
            Helper::Pasta => self.attach_pasta(ctx),
            Helper::Slirp4netns => self.attach_slirp(ctx),
        }
    }
}

fn tun_usable() -> bool {
    nix::unistd::access(
        "/dev/net/tun",
        nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::W_OK,
    )
    .is_ok()
}

impl Drop for UserNet {
    fn drop(&mut self) {
        // pasta outlives the container (and ignores SIGTERM): kill it.
        if let Some(r) = self.running.take() {
            r.kill();
        }
        if let Some(mut c) = self.slirp.take() {
            let _ = c.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_becomes_pasta_forwards() {
        assert_eq!(port_args("8080:80").unwrap(), ["-t", "8080:80"]);
        assert_eq!(
            port_args("127.0.0.1:8080:80/udp").unwrap(),
            ["-u", "127.0.0.1/8080:80"]
        );
        for bad in ["80", "x:80", "1.2.3:80:80", "8080:80/sctp"] {
            let e = port_args(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn a_recorded_pid_parses_and_a_stale_one_is_not_killed() {
        assert_eq!(
            Running::parse("12 345\n"),
            Some(Running {
                pid: 12,
                start: 345
            })
        );
        assert_eq!(Running::parse("12"), None);
        // Our own pid with a start time that is not ours: left alone.
        let me = i32::try_from(std::process::id()).unwrap();
        let r = Running::of(me).unwrap();
        Running {
            start: r.start + 1,
            ..r
        }
        .kill();
    }
}
