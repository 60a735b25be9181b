//! nucleus's resolver for one container, on the bridge's gateway addresses
//! (UDP and TCP). It answers the names of peers on a user-defined network,
//! refuses names outside `--egress-domain` with NXDOMAIN (and an event),
//! forwards the rest to the upstreams, drops answers that point back inside
//! (DNS rebinding), and admits each remaining A/AAAA address to the
//! container's nftables set (for twice the record's TTL) before the client sees it.
//! Messages are parsed and built with hickory-proto.

use crate::egress::EgressPolicy;
use crate::error::{NetError, Result};
use crate::events::EventSink;
use crate::firewall::Firewall;
use crate::ipam;
use crate::store::Store;
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);
const PEER_TTL: u32 = 5;
const MAX_UDP: usize = 4096;

/// What the resolver serves and enforces.
#[derive(Debug, Clone)]
pub struct ResolverConfig {
    pub container_id: String,
    pub policy: EgressPolicy,
    /// Tried in order; `--dns`, else the host's resolvers.
    pub upstreams: Vec<SocketAddr>,
    /// Resolve the names of containers on this network (user-defined networks).
    pub peers: Option<(Store, String)>,
    /// Answers inside these are dropped (the network itself, the host's side).
    pub blocked: Vec<IpNet>,
    pub events: EventSink,
    pub firewall: Arc<dyn Firewall>,
    /// Addresses already in the set, and until when: a repeated answer
    /// costs no `nft` run while its element has at least the TTL left.
    pub admitted: Arc<Mutex<HashMap<IpAddr, Instant>>>,
}

/// A bound, not yet running resolver. Bound early so the firewall can
/// redirect DNS to its port before the workload runs.
#[derive(Debug)]
pub struct Resolver {
    config: Arc<ResolverConfig>,
    udp: Vec<std::net::UdpSocket>,
    tcp: Vec<std::net::TcpListener>,
    port: u16,
}

impl Resolver {
    /// Bind UDP and TCP on the same port on every address in `addrs`.
    pub fn bind(addrs: &[IpAddr], config: ResolverConfig) -> Result<Resolver> {
        let first = *addrs
            .first()
            .ok_or_else(|| NetError::invalid("resolver address", "", "no gateway address"))?;
        let mut last = None;
        for _ in 0..32 {
            match bind_all(first, addrs) {
                Ok((udp, tcp, port)) => {
                    return Ok(Resolver {
                        config: Arc::new(config),
                        udp,
                        tcp,
                        port,
                    })
                }
                // The port picked on the first address was taken on another; pick again.
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last = Some(e),
                Err(e) => {
                    return Err(NetError::Resolver {
                        op: "bind",
                        addr: first.to_string(),
                        source: e,
                    })
                }
            }
        }
        Err(NetError::Resolver {
            op: "bind",
            addr: first.to_string(),
            source: last.unwrap_or_else(std::io::Error::last_os_error),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serve forever on the caller's tokio runtime.
    pub async fn serve(self) -> Result<()> {
        let mut tasks = tokio::task::JoinSet::new();
        for s in self.udp {
            let addr = s.local_addr().map(|a| a.to_string()).unwrap_or_default();
            let sock = UdpSocket::from_std(s).map_err(|e| NetError::Resolver {
                op: "register",
                addr,
                source: e,
            })?;
            tasks.spawn(serve_udp(Arc::new(sock), self.config.clone()));
        }
        for l in self.tcp {
            let addr = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
            let l = TcpListener::from_std(l).map_err(|e| NetError::Resolver {
                op: "register",
                addr,
                source: e,
            })?;
            tasks.spawn(serve_tcp(l, self.config.clone()));
        }
        while tasks.join_next().await.is_some() {}
        Ok(())
    }
}

type Bound = (Vec<std::net::UdpSocket>, Vec<std::net::TcpListener>, u16);

fn bind_all(first: IpAddr, addrs: &[IpAddr]) -> std::io::Result<Bound> {
    let u0 = std::net::UdpSocket::bind((first, 0))?;
    let port = u0.local_addr()?.port();
    let mut udp = vec![u0];
    let mut tcp = Vec::new();
    for (i, a) in addrs.iter().enumerate() {
        if i > 0 {
            udp.push(std::net::UdpSocket::bind((*a, port))?);
        }
        tcp.push(std::net::TcpListener::bind((*a, port))?);
    }
    for s in &udp {
        s.set_nonblocking(true)?;
    }
    for l in &tcp {
        l.set_nonblocking(true)?;
    }
    Ok((udp, tcp, port))
}

async fn serve_udp(sock: Arc<UdpSocket>, cfg: Arc<ResolverConfig>) {
    let mut buf = vec![0u8; MAX_UDP];
    loop {
        let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        let query = buf[..n].to_vec();
        let (sock, cfg) = (sock.clone(), cfg.clone());
        tokio::spawn(async move {
            if let Some(answer) = answer(&cfg, &query, false).await {
                let _ = sock.send_to(&answer, peer).await;
            }
        });
    }
}

async fn serve_tcp(listener: TcpListener, cfg: Arc<ResolverConfig>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let cfg = cfg.clone();
        tokio::spawn(async move {
            while let Ok(Some(query)) = read_framed(&mut stream).await {
                let Some(answer) = answer(&cfg, &query, true).await else {
                    break;
                };
                if write_framed(&mut stream, &answer).await.is_err() {
                    break;
                }
            }
        });
    }
}

async fn read_framed(s: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    if tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut len))
        .await
        .is_err()
    {
        return Ok(None);
    }
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut msg).await?;
    Ok(Some(msg))
}

async fn write_framed(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(msg.len()).map_err(|_| std::io::Error::other("message too long"))?;
    s.write_all(&len.to_be_bytes()).await?;
    s.write_all(msg).await
}

fn reply(req: &Message, code: ResponseCode) -> Option<Vec<u8>> {
    let mut m = Message::error_msg(req.metadata.id, req.metadata.op_code, code);
    m.metadata.recursion_desired = req.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.queries = req.queries.clone();
    m.to_vec().ok()
}

/// The whole decision for one query; `None` drops it (unparsable input).
pub(crate) async fn answer(cfg: &ResolverConfig, query: &[u8], tcp: bool) -> Option<Vec<u8>> {
    let req = Message::from_vec(query).ok()?;
    if req.metadata.message_type != MessageType::Query {
        return None;
    }
    let Some(q) = req.queries.first() else {
        return reply(&req, ResponseCode::FormErr);
    };
    let name = q.name.to_ascii().trim_end_matches('.').to_ascii_lowercase();
    let qtype = q.query_type;

    if let Some(addrs) = peer_addrs(cfg, &name) {
        let mut m = Message::response(req.metadata.id, req.metadata.op_code);
        m.metadata.recursion_desired = req.metadata.recursion_desired;
        m.metadata.recursion_available = true;
        m.metadata.authoritative = true;
        m.queries = req.queries.clone();
        for a in addrs {
            let rdata = match (a, qtype) {
                (IpAddr::V4(v4), RecordType::A) => RData::from(v4),
                (IpAddr::V6(v6), RecordType::AAAA) => RData::from(v6),
                _ => continue,
            };
            m.answers
                .push(Record::from_rdata(q.name.clone(), PEER_TTL, rdata));
        }
        return m.to_vec().ok();
    }

    if cfg.policy.filters_names() && cfg.policy.allows_name(&name).is_none() {
        let _ = cfg.events.emit("dns", &name, "egress-domain");
        return reply(&req, ResponseCode::NXDomain);
    }

    let Some(raw) = forward(&cfg.upstreams, query, tcp).await else {
        return reply(&req, ResponseCode::ServFail);
    };
    if !cfg.policy.is_active() {
        return Some(raw);
    }
    let Ok(mut resp) = Message::from_vec(&raw) else {
        return reply(&req, ResponseCode::ServFail);
    };
    let mut admitted = Vec::new();
    let before = resp.answers.len();
    resp.answers.retain(|r| {
        let ip = match &r.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(a) => IpAddr::V6(a.0),
            _ => return true,
        };
        if is_inside(ip, &cfg.blocked) {
            let _ = cfg
                .events
                .emit("dns", &format!("{name} -> {ip}"), "rebinding");
            return false;
        }
        admitted.push((ip, r.ttl));
        true
    });
    let now = Instant::now();
    if let Ok(cache) = cfg.admitted.lock() {
        admitted.retain(|(ip, ttl)| {
            cache
                .get(ip)
                .is_none_or(|until| *until < now + Duration::from_secs(u64::from(*ttl)))
        });
    }
    if !admitted.is_empty() {
        if let Ok(mut cache) = cfg.admitted.lock() {
            for (ip, ttl) in &admitted {
                cache.insert(
                    *ip,
                    now + Duration::from_secs(u64::from(crate::firewall::set_timeout(*ttl))),
                );
            }
        }
        let (fw, id, addrs) = (cfg.firewall.clone(), cfg.container_id.clone(), admitted);
        let ok = tokio::task::spawn_blocking(move || fw.allow_addresses(&id, &addrs)).await;
        if !matches!(ok, Ok(Ok(()))) {
            if let Ok(mut cache) = cfg.admitted.lock() {
                cache.clear();
            }
            tracing::warn!(
                name,
                "could not admit resolved addresses; answering SERVFAIL"
            );
            return reply(&req, ResponseCode::ServFail);
        }
    }
    if resp.answers.len() == before {
        Some(raw)
    } else {
        resp.to_vec().ok()
    }
}

/// Addresses a name must never resolve to from outside: loopback, link-local,
/// unspecified, multicast, and the ranges in `blocked`.
fn is_inside(ip: IpAddr, blocked: &[IpNet]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let special = match ip {
        IpAddr::V4(a) => {
            a.is_loopback()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_multicast()
                || a.is_broadcast()
        }
        IpAddr::V6(a) => {
            a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (a.segments()[0] & 0xffc0) == 0xfe80
        }
    };
    special || blocked.iter().any(|n| n.contains(&ip))
}

fn peer_addrs(cfg: &ResolverConfig, name: &str) -> Option<Vec<IpAddr>> {
    let (store, network) = cfg.peers.as_ref()?;
    let leases = ipam::load(store, network).ok()?;
    let short = name.strip_suffix(&format!(".{network}")).unwrap_or(name);
    leases
        .values()
        .find(|l| {
            l.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(short))
        })
        .map(|l| l.addrs())
}

async fn forward(upstreams: &[SocketAddr], query: &[u8], tcp: bool) -> Option<Vec<u8>> {
    for up in upstreams {
        let r = if tcp {
            forward_tcp(*up, query).await
        } else {
            forward_udp(*up, query).await
        };
        match r {
            Ok(answer) => return Some(answer),
            Err(e) => tracing::debug!(upstream = %up, error = %e, "upstream failed"),
        }
    }
    None
}

async fn forward_udp(up: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = if up.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(local).await?;
    sock.connect(up).await?;
    sock.send(query).await?;
    let mut buf = vec![0u8; MAX_UDP];
    loop {
        let n = tokio::time::timeout(UPSTREAM_TIMEOUT, sock.recv(&mut buf))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        // A connected socket only hears from `up`; still, the id must match.
        if n >= 2 && query.len() >= 2 && buf[..2] == query[..2] {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn forward_tcp(up: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let work = async {
        let mut s = TcpStream::connect(up).await?;
        write_framed(&mut s, query).await?;
        read_framed(&mut s)
            .await?
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))
    };
    tokio::time::timeout(UPSTREAM_TIMEOUT, work)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebinding_targets_are_inside() {
        let blocked = vec!["10.5.0.0/24".parse().unwrap()];
        for ip in [
            "127.0.0.1",
            "::1",
            "169.254.1.1",
            "fe80::1",
            "0.0.0.0",
            "::ffff:127.0.0.1",
            "10.5.0.1",
            "224.0.0.1",
        ] {
            assert!(is_inside(ip.parse().unwrap(), &blocked), "{ip}");
        }
        for ip in ["198.18.0.1", "fd00::1", "10.6.0.1"] {
            assert!(!is_inside(ip.parse().unwrap(), &blocked), "{ip}");
        }
    }
}
