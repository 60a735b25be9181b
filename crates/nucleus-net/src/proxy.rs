//! User-space forwarding for ports published on `::1`. IPv6 has no
//! `route_localnet`, so a DNAT from `::1` cannot leave loopback; the host's
//! own connections to `[::1]:HOST` are accepted here and copied to the
//! container instead. TCP only.

use crate::egress::Proto;
use crate::error::{NetError, Result};
use crate::ipam::Lease;
use crate::publish::PortMapping;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

#[derive(Debug)]
pub struct Proxy {
    listener: std::net::TcpListener,
    target: SocketAddr,
}

/// Listeners for every TCP mapping reachable on `::1`: those published on
/// `::1` itself, and those on all addresses.
pub fn bind_loopback6(publish: &[PortMapping], lease: &Lease) -> Result<Vec<Proxy>> {
    let Some(ctr) = lease.ipv6.map(IpAddr::V6).or(lease.ipv4.map(IpAddr::V4)) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for p in publish.iter().filter(|p| p.proto == Proto::Tcp) {
        let explicit = p.host_ip == Some(IpAddr::V6(Ipv6Addr::LOCALHOST));
        if !explicit && p.host_ip.is_some() {
            continue;
        }
        let addr = SocketAddr::new(Ipv6Addr::LOCALHOST.into(), p.host_port);
        match std::net::TcpListener::bind(addr).and_then(|l| l.set_nonblocking(true).map(|()| l)) {
            Ok(listener) => out.push(Proxy {
                listener,
                target: SocketAddr::new(ctr, p.container_port),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                return Err(NetError::PortTaken {
                    addr: format!("{addr}/tcp"),
                })
            }
            // A host without IPv6 loopback: nothing to proxy unless asked for.
            Err(_) if !explicit => {}
            Err(e) => return Err(NetError::io("bind", addr.to_string(), e)),
        }
    }
    Ok(out)
}

impl Proxy {
    pub(crate) async fn serve(self) {
        let Ok(listener) = tokio::net::TcpListener::from_std(self.listener) else {
            return;
        };
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                continue;
            };
            let target = self.target;
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    }
}
