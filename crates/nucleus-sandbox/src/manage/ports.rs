//! `port`: the host addresses a container's ports are published on, from
//! its bridge attachment or from the pasta/slirp4netns plan in its bundle.

use super::{bundle_dir, View};
use crate::error::{Field, Result, SandboxError};
use crate::net_attach::NetPlan;
use crate::user_net::UserNetPlan;
use nucleus_engine::state::StateRoot;
use serde::Serialize;
use std::net::IpAddr;

/// One published port: container `80/tcp` on host `0.0.0.0:8080`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishedPort {
    pub container_port: u16,
    pub proto: String,
    pub host_ip: String,
    pub host_port: u16,
}

impl PublishedPort {
    /// Docker's key: `80/tcp`.
    pub fn private(&self) -> String {
        format!("{}/{}", self.container_port, self.proto)
    }

    /// `0.0.0.0:8080`, `[::]:8080`.
    pub fn public(&self) -> String {
        match self.host_ip.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("[{ip}]:{}", self.host_port),
            _ => format!("{}:{}", self.host_ip, self.host_port),
        }
    }
}

/// Every port the container `query` publishes, in the order given at run;
/// `filter` (`80` or `80/udp`; tcp when no protocol) keeps one port, and
/// naming a port that is not published is an error.
pub fn ports(root: &StateRoot, query: &str, filter: Option<&str>) -> Result<Vec<PublishedPort>> {
    let v = View::load(root, query)?;
    let mut all = bridge_ports(&v).unwrap_or_default();
    if let Some(dir) = bundle_dir(&v.state) {
        if let Ok(Some(plan)) = UserNetPlan::read(&dir) {
            all.extend(plan.ports.chunks(2).filter_map(user_net_port).flatten());
        }
    }
    let Some(f) = filter else {
        return Ok(all);
    };
    let (port, proto) = parse_private(f)?;
    let matching: Vec<_> = all
        .into_iter()
        .filter(|p| p.container_port == port && p.proto == proto)
        .collect();
    if matching.is_empty() {
        return Err(SandboxError::invalid(
            Field::PrivatePort,
            f,
            format!("no public port `{port}/{proto}` is published for `{query}`"),
        ));
    }
    Ok(matching)
}

fn parse_private(s: &str) -> Result<(u16, String)> {
    let (port, proto) = s.split_once('/').unwrap_or((s, "tcp"));
    let bad = |why: String| SandboxError::invalid(Field::PrivatePort, s, why);
    if proto != "tcp" && proto != "udp" {
        return Err(bad(format!("unknown protocol `{proto}` (tcp or udp)")));
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| bad(format!("`{port}` is not a port (1-65535)")))?;
    Ok((port, proto.to_string()))
}

fn bridge_ports(v: &View) -> Option<Vec<PublishedPort>> {
    let dir = bundle_dir(&v.state)?;
    let plan = NetPlan::read(&dir).ok().flatten()?;
    let a = plan
        .store
        .networking()
        .ok()?
        .attachment(&v.state.id)
        .ok()??;
    let mut out = Vec::new();
    for p in &a.publish {
        out.extend(
            host_ips(p.host_ip.map(|ip| ip.to_string())).map(|host_ip| PublishedPort {
                container_port: p.container_port,
                proto: p.proto.as_str().to_string(),
                host_ip,
                host_port: p.host_port,
            }),
        );
    }
    Some(out)
}

/// The one address a port is bound to, or both wildcards when none.
fn host_ips(ip: Option<String>) -> std::vec::IntoIter<String> {
    match ip {
        Some(ip) => vec![ip],
        None => vec!["0.0.0.0".to_string(), "::".to_string()],
    }
    .into_iter()
}

/// pasta's `-t|-u [IP/]HOST:CTR` pair back into ports; no IP means every
/// host address.
fn user_net_port(pair: &[String]) -> Option<Vec<PublishedPort>> {
    let [flag, arg] = pair else { return None };
    let proto = match flag.as_str() {
        "-t" => "tcp",
        "-u" => "udp",
        _ => return None,
    };
    let (ip, ports) = match arg.split_once('/') {
        Some((ip, rest)) => (Some(ip), rest),
        None => (None, arg.as_str()),
    };
    let (host, ctr) = ports.split_once(':')?;
    let (host_port, container_port) = (host.parse().ok()?, ctr.parse().ok()?);
    Some(
        host_ips(ip.map(str::to_string))
            .map(|host_ip| PublishedPort {
                container_port,
                proto: proto.to_string(),
                host_ip,
                host_port,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pasta_arguments_read_back_as_ports() {
        let pair = ["-u".to_string(), "127.0.0.1/5353:53".to_string()];
        let got = user_net_port(&pair).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].private(), "53/udp");
        assert_eq!(got[0].public(), "127.0.0.1:5353");
        let all = user_net_port(&["-t".into(), "8080:80".into()]).unwrap();
        let public: Vec<_> = all.iter().map(PublishedPort::public).collect();
        assert_eq!(public, ["0.0.0.0:8080", "[::]:8080"]);
    }

    #[test]
    fn a_private_port_is_checked_by_value() {
        assert_eq!(parse_private("80").unwrap(), (80, "tcp".to_string()));
        assert_eq!(parse_private("53/udp").unwrap(), (53, "udp".to_string()));
        let e = parse_private("80/sctp").unwrap_err().to_string();
        assert!(e.contains("80/sctp") && e.contains("sctp"), "{e}");
        let e = parse_private("0").unwrap_err().to_string();
        assert!(e.contains("`0`"), "{e}");
    }
}
