//! Published ports: `-p [IP:]HOST:CTR[/tcp|udp]`, `-p CTR` and `-P`. A host
//! port is checked by binding it before any DNAT rule is installed, so a port
//! taken by another program is a clear error instead of a silent shadow.

use crate::egress::Proto;
use crate::error::{NetError, Result};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// `None`: every host address, IPv4 and IPv6.
    pub host_ip: Option<IpAddr>,
    /// 0 until [`PortMapping::resolve_host_port`] picks a free one.
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

impl PortMapping {
    /// Parse `-p`: `80`, `8080:80`, `127.0.0.1:8080:80/tcp`, `[::1]:8080:80/udp`, `127.0.0.1::80`.
    pub fn parse(s: &str) -> Result<PortMapping> {
        let bad = |why: &str| NetError::invalid("--publish", s, why.to_string());
        let (spec, proto) = match s.rsplit_once('/') {
            Some((spec, "tcp")) => (spec, Proto::Tcp),
            Some((spec, "udp")) => (spec, Proto::Udp),
            Some(_) => return Err(bad("the protocol must be `tcp` or `udp`")),
            None => (s, Proto::Tcp),
        };
        let (host_ip, ports) = if let Some(rest) = spec.strip_prefix('[') {
            let (ip, ports) = rest
                .split_once("]:")
                .ok_or_else(|| bad("expected `[IPV6]:HOST:CTR`"))?;
            (
                Some(
                    ip.parse::<Ipv6Addr>()
                        .map_err(|_| bad("not an IPv6 address"))?
                        .into(),
                ),
                ports,
            )
        } else {
            match spec.split(':').collect::<Vec<_>>().as_slice() {
                [_] | [_, _] => (None, spec),
                [ip, _, _] => {
                    let ip: IpAddr = ip.parse().map_err(|_| bad("not an IP address"))?;
                    (Some(ip), &spec[spec.find(':').map_or(0, |i| i + 1)..])
                }
                _ => return Err(bad("expected `[IP:]HOST:CTR[/tcp|udp]`")),
            }
        };
        let port = |p: &str, allow_zero: bool| -> Result<u16> {
            match p.parse::<u16>() {
                Ok(0) if !allow_zero => Err(bad("ports must be 1-65535")),
                Ok(v) => Ok(v),
                Err(_) if allow_zero && p.is_empty() => Ok(0),
                Err(_) => Err(bad("ports must be 1-65535")),
            }
        };
        let (host_port, container_port) = match ports.split_once(':') {
            Some((h, c)) => (port(h, true)?, port(c, false)?),
            None => (0, port(ports, false)?),
        };
        Ok(PortMapping {
            host_ip,
            host_port,
            container_port,
            proto,
        })
    }

    /// The addresses the host side listens on.
    fn bind_addrs(&self) -> Vec<IpAddr> {
        match self.host_ip {
            Some(ip) => vec![ip],
            None => vec![Ipv4Addr::UNSPECIFIED.into(), Ipv6Addr::UNSPECIFIED.into()],
        }
    }

    /// Pick a free host port when none was given, and refuse a taken one.
    pub fn resolve_host_port(&mut self) -> Result<()> {
        let first = self.bind_addrs()[0];
        if self.host_port == 0 {
            let port = match self.proto {
                Proto::Tcp => TcpListener::bind((first, 0)).and_then(|l| l.local_addr()),
                Proto::Udp => UdpSocket::bind((first, 0)).and_then(|l| l.local_addr()),
            };
            self.host_port = port
                .map_err(|e| NetError::io("find a free port on", first.to_string(), e))?
                .port();
        }
        for ip in self.bind_addrs() {
            let addr = SocketAddr::new(ip, self.host_port);
            let taken = match self.proto {
                Proto::Tcp => TcpListener::bind(addr).err(),
                Proto::Udp => UdpSocket::bind(addr).err(),
            };
            match taken {
                Some(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    return Err(NetError::PortTaken {
                        addr: format!("{addr}/{}", self.proto.as_str()),
                    })
                }
                // No IPv6 on the host is not a conflict.
                Some(_) if ip.is_ipv6() && self.host_ip.is_none() => {}
                Some(e) => return Err(NetError::io("bind", addr.to_string(), e)),
                None => {}
            }
        }
        Ok(())
    }

    /// Does this mapping claim the same host port as `other`?
    pub fn conflicts_with(&self, other: &PortMapping) -> bool {
        self.proto == other.proto
            && self.host_port == other.host_port
            && match (self.host_ip, other.host_ip) {
                (None, _) | (_, None) => true,
                (Some(a), Some(b)) => a == b,
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_forms_parse() {
        let p = PortMapping::parse("8080:80").unwrap();
        assert_eq!(
            (p.host_ip, p.host_port, p.container_port, p.proto),
            (None, 8080, 80, Proto::Tcp)
        );
        let p = PortMapping::parse("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(
            (p.host_ip, p.host_port, p.proto),
            (Some("127.0.0.1".parse().unwrap()), 8080, Proto::Udp)
        );
        let p = PortMapping::parse("[::1]:8080:80").unwrap();
        assert_eq!(p.host_ip, Some("::1".parse().unwrap()));
        assert_eq!(PortMapping::parse("80").unwrap().host_port, 0);
        assert_eq!(PortMapping::parse("127.0.0.1::80").unwrap().host_port, 0);
        for bad in ["", "x:80", "80:0", "1.2.3:80:80", "80/sctp", "1:2:3:4"] {
            let err = PortMapping::parse(bad).unwrap_err().to_string();
            assert!(err.starts_with("--publish:"), "{err}");
        }
    }

    #[test]
    fn a_taken_port_is_a_clear_error() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let mut p = PortMapping::parse(&format!("127.0.0.1:{port}:80")).unwrap();
        let err = p.resolve_host_port().unwrap_err().to_string();
        assert_eq!(
            err,
            format!("host port `127.0.0.1:{port}/tcp` is already in use")
        );
        let mut free = PortMapping::parse("127.0.0.1::80").unwrap();
        free.resolve_host_port().unwrap();
        assert_ne!(free.host_port, 0);
    }
}
