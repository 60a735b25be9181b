//! `nucleus run --network pasta`: user-mode networking for rootless
//! sandboxes through `pasta` (Debian's `passt`). pasta joins the
//! container's user and network namespaces, gives it the host's addresses
//! and routes (outbound traffic leaves through pasta's sockets on the
//! host), maps the gateway address to the host's loopback, and forwards
//! each `-p HOST:CTR` from the host into the container. It is started once
//! the namespaces exist, before the workload runs, and stopped when dropped.
//! Without pasta, `slirp4netns` serves instead (outbound and the host's
//! loopback at 10.0.2.2; no `-p`); `--network slirp4netns` asks for it.

use super::RunFlags;
use anyhow::{bail, Context, Result};
use nucleus_sandbox::network::{AttachContext, NetworkAttach};
use nucleus_sandbox::{Field, SandboxError};
use std::path::PathBuf;

/// Network modes this step serves.
pub fn is_pasta(network: &str) -> bool {
    matches!(network, "pasta" | "slirp4netns")
}

/// Which user-mode network helper runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Helper {
    Pasta,
    Slirp4netns,
}

#[derive(Debug)]
pub struct Pasta {
    helper: Helper,
    /// slirp4netns stays in the foreground: killed on drop.
    slirp: Option<std::process::Child>,
    exe: PathBuf,
    /// pasta's own arguments for the published ports (`-t 8080:80`).
    ports: Vec<String>,
    /// Holds pasta's pid file (`-P`) until it is stopped.
    dir: tempfile::TempDir,
}

/// `-p [IP:]HOST:CTR[/tcp|udp]` → pasta's `-t|-u [IP/]HOST:CTR`.
fn port_args(publish: &str) -> Result<[String; 2]> {
    let (spec, proto) = match publish.rsplit_once('/') {
        Some((s, p)) => (s, p),
        None => (publish, "tcp"),
    };
    let flag = match proto {
        "tcp" => "-t",
        "udp" => "-u",
        other => bail!(
            "-p/--publish: invalid value `{publish}`: unknown protocol `{other}` (tcp or udp)"
        ),
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let port = |s: &str| {
        s.parse::<u16>().ok().filter(|p| *p > 0).with_context(|| {
            format!("-p/--publish: invalid value `{publish}`: `{s}` is not a port")
        })
    };
    let arg = match parts[..] {
        [host, ctr] => format!("{}:{}", port(host)?, port(ctr)?),
        [ip, host, ctr] => {
            ip.parse::<std::net::IpAddr>().with_context(|| {
                format!("-p/--publish: invalid value `{publish}`: `{ip}` is not an IP address")
            })?;
            format!("{ip}/{}:{}", port(host)?, port(ctr)?)
        }
        _ => bail!("-p/--publish: invalid value `{publish}`: expected [IP:]HOST:CTR[/tcp|udp] with --network pasta"),
    };
    Ok([flag.to_string(), arg])
}

impl Pasta {
    /// `None` unless `--network pasta`.
    pub fn from_flags(f: &RunFlags) -> Result<Option<Pasta>> {
        if !f.network.as_deref().is_some_and(is_pasta) {
            return Ok(None);
        }
        if f.runtime.as_deref() == Some("gvisor") {
            bail!(
                "--network {}: not available with --runtime gvisor; use --network bridge as root",
                f.network.as_deref().unwrap_or_default()
            );
        }
        if f.detach {
            bail!(
                "--network {}: detached runs are not supported yet; run in the foreground",
                f.network.as_deref().unwrap_or_default()
            );
        }
        for (set, flag) in [
            (!f.egress_allow.is_empty(), "--egress-allow"),
            (!f.egress_deny.is_empty(), "--egress-deny"),
            (f.egress_deny_all, "--egress-deny-all"),
            (!f.egress_domain.is_empty(), "--egress-domain"),
        ] {
            if set {
                bail!(
                    "{flag}: not enforced with --network pasta yet; use --network bridge as root"
                );
            }
        }
        let find = nucleus_engine::userns::find_helper;
        let asked = f.network.as_deref().unwrap_or_default();
        let (helper, exe) = match (asked, find("pasta"), find("slirp4netns")) {
            ("pasta", Some(p), _) => (Helper::Pasta, p),
            (_, _, Some(s)) => (Helper::Slirp4netns, s),
            _ => bail!("--network {asked}: neither `pasta` nor `slirp4netns` is installed (Debian: apt install passt)"),
        };
        if helper == Helper::Slirp4netns && !f.publish.is_empty() {
            bail!(
                "-p/--publish: not supported with slirp4netns; install passt for --network pasta"
            );
        }
        let mut ports = Vec::new();
        for p in &f.publish {
            ports.extend(port_args(p)?);
        }
        let dir = tempfile::Builder::new()
            .prefix("nucleus-pasta-")
            .tempdir()
            .context("--network pasta: create a directory for pasta's pid file")?;
        Ok(Some(Pasta {
            helper,
            slirp: None,
            exe,
            ports,
            dir,
        }))
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("pasta.pid")
    }
}

fn fail(reason: String) -> SandboxError {
    SandboxError::InvalidValue {
        field: Field::Network,
        value: "pasta".into(),
        reason,
    }
}

impl Pasta {
    /// `slirp4netns --configure PID tap0`, in the background; ready once
    /// the container has its default route through tap0.
    fn attach_slirp(&mut self, pid: i32) -> Result<(), SandboxError> {
        let mut child = std::process::Command::new(&self.exe)
            .args(["--configure", "--mtu=65520"])
            .arg(pid.to_string())
            .arg("tap0")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("cannot run `{}`: {e}", self.exe.display())))?;
        let routes = format!("/proc/{pid}/net/route");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            if std::fs::read_to_string(&routes).is_ok_and(|t| t.contains("tap0\t00000000")) {
                self.slirp = Some(child);
                return Ok(());
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
                return Err(fail(format!(
                    "`{}` exited ({status}): {}{hint}",
                    self.exe.display(),
                    err.trim()
                )));
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!(
                    "`{}` did not configure tap0 within 5s",
                    self.exe.display()
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
}

impl NetworkAttach for Pasta {
    fn attach(&mut self, ctx: &AttachContext<'_>) -> Result<(), SandboxError> {
        if self.helper == Helper::Slirp4netns {
            return self.attach_slirp(ctx.pid);
        }
        // `pasta PID` joins the init's user and network namespaces; it
        // returns once the interface is configured and goes to background.
        let out = std::process::Command::new(&self.exe)
            .args(["--config-net", "--quiet", "-P"])
            .arg(self.pid_file())
            // Only what is published; pasta's default forwards every bound port.
            .args(if self.ports.iter().any(|p| p == "-t") {
                &[][..]
            } else {
                &["-t", "none"][..]
            })
            .args(if self.ports.iter().any(|p| p == "-u") {
                &[][..]
            } else {
                &["-u", "none"][..]
            })
            .args(["-T", "none", "-U", "none"])
            .args(&self.ports)
            .arg(ctx.pid.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .output()
            .map_err(|e| fail(format!("cannot run `{}`: {e}", self.exe.display())))?;
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
            return Err(fail(format!(
                "`{}` failed: {}{hint}",
                self.exe.display(),
                said.join("; ")
            )));
        }
        tracing::debug!(pid = ctx.pid, ports = ?self.ports, "pasta attached");
        Ok(())
    }
}

fn tun_usable() -> bool {
    nix::unistd::access(
        "/dev/net/tun",
        nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::W_OK,
    )
    .is_ok()
}

impl Drop for Pasta {
    fn drop(&mut self) {
        if let Some(mut c) = self.slirp.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // pasta outlives the container (and ignores SIGTERM here): kill it.
        let pid = std::fs::read_to_string(self.pid_file())
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        if let Some(pid) = pid.filter(|p| *p > 1) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::port_args;

    #[test]
    fn publish_becomes_pasta_forwards() {
        assert_eq!(port_args("8080:80").unwrap(), ["-t", "8080:80"]);
        assert_eq!(
            port_args("127.0.0.1:8080:80/udp").unwrap(),
            ["-u", "127.0.0.1/8080:80"]
        );
        for bad in ["80", "x:80", "1.2.3:80:80", "8080:80/sctp"] {
            let e = port_args(bad).unwrap_err().to_string();
            assert!(e.contains("-p/--publish") && e.contains(bad), "{e}");
        }
    }
}
