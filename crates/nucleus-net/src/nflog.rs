//! Refused connections as events. The reject rules of a container's egress
//! chain log the packet to an NFLOG group of the container's own
//! (`log group N prefix "ID:RULE"`); this listener binds that group on a
//! NETLINK_NETFILTER socket and turns each logged packet into a `connect`
//! event naming the destination and the rule. The netlink messages are built
//! and parsed by netlink-packet-netfilter (rust-netlink, as rtnetlink); the
//! IP and TCP/UDP headers of the packet are read here.
//!
//! A group is bound by one socket at a time (the kernel answers EBUSY), so
//! two live containers never share one; the id in the prefix guards
//! against rules of a crashed run that were not removed yet.

use crate::error::{NetError, Result};
use crate::events::EventSink;
use crate::network::fnv32;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_netfilter::nflog::{
    config_request, ConfigCmd, ConfigMode, PacketNla, ULogMessage,
};
use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily};
use netlink_sys::{constants::NETLINK_NETFILTER, Socket};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;

/// Groups nucleus uses: `GROUP_BASE..GROUP_BASE + GROUP_SPAN`.
const GROUP_BASE: u16 = 0x4e00;
const GROUP_SPAN: u16 = 0x1000;
/// Bytes of each packet copied to us: the IP and transport headers.
const COPY_RANGE: u32 = 96;
/// The same refusal again within this time is one event (UDP floods, retries).
const REPEAT_WINDOW: Duration = Duration::from_secs(1);

/// The prefix a rule logs with: the container's short id and the rule.
pub fn log_prefix(id: &str, rule: &str) -> String {
    format!("{}:{rule}", short(id))
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// A bound NFLOG group for one container, not yet reading.
#[derive(Debug)]
pub struct NflogListener {
    sock: Socket,
    group: u16,
    id: String,
    sink: EventSink,
}

impl NflogListener {
    /// Bind a free group, starting from one derived from the id.
    pub fn bind(id: &str, sink: EventSink) -> Result<NflogListener> {
        let start = u16::try_from(fnv32(id) % u32::from(GROUP_SPAN)).unwrap_or(0);
        let mut last = None;
        for i in 0..64u16 {
            let group = GROUP_BASE + (start + i) % GROUP_SPAN;
            match bind_group(group) {
                Ok(sock) => {
                    return Ok(NflogListener {
                        sock,
                        group,
                        id: id.into(),
                        sink,
                    })
                }
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => last = Some(e),
                Err(e) => return Err(NetError::io("bind NFLOG group", group.to_string(), e)),
            }
        }
        Err(NetError::io(
            "bind NFLOG group",
            format!("{GROUP_BASE}-{}", GROUP_BASE + GROUP_SPAN - 1),
            last.unwrap_or_else(|| std::io::Error::from_raw_os_error(libc::EBUSY)),
        ))
    }

    pub fn group(&self) -> u16 {
        self.group
    }

    /// Read logged packets until the task is dropped.
    pub async fn serve(self) {
        let NflogListener { sock, id, sink, .. } = self;
        if let Err(e) = sock.set_non_blocking(true) {
            tracing::warn!(error = %e, "NFLOG socket: no refused-connection events");
            return;
        }
        // `new` is deprecated for types that may close their fd behind the
        // reactor's back; `Socket` is owned here and closes only on drop,
        // and the sound replacement (`register`) is `unsafe`, refused in this crate.
        #[allow(deprecated)]
        let fd = match AsyncFd::new(sock) {
            Ok(fd) => fd,
            Err(e) => {
                tracing::warn!(error = %e, "NFLOG socket: no refused-connection events");
                return;
            }
        };
        let mut buf = vec![0u8; 65536];
        let mut recent: HashMap<(String, String), Instant> = HashMap::new();
        loop {
            let Ok(mut guard) = fd.readable().await else {
                return;
            };
            let n = match guard.try_io(|s| s.get_ref().recv(&mut &mut buf[..], 0)) {
                Ok(Ok(n)) => n,
                Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    tracing::warn!(
                        "NFLOG: the kernel dropped refused-connection records (too many at once)"
                    );
                    continue;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "NFLOG socket: stopped reading");
                    return;
                }
                Err(_would_block) => continue,
            };
            for (target, rule) in parse_batch(&buf[..n], &id) {
                let now = Instant::now();
                if recent.len() > 1024 {
                    recent.retain(|_, t| now.duration_since(*t) < REPEAT_WINDOW);
                }
                let key = (target, rule);
                if recent
                    .get(&key)
                    .is_some_and(|t| now.duration_since(*t) < REPEAT_WINDOW)
                {
                    continue;
                }
                if let Err(e) = sink.emit("connect", &key.0, &key.1) {
                    tracing::warn!(error = %e, "could not record a refused connection");
                }
                recent.insert(key, now);
            }
        }
    }
}

/// Open a NETLINK_NETFILTER socket and bind it to `group`, copying packets.
fn bind_group(group: u16) -> std::io::Result<Socket> {
    let mut sock = Socket::new(NETLINK_NETFILTER)?;
    sock.bind_auto()?;
    let req = config_request(
        NetfilterProtoFamily::Unspec,
        group,
        vec![
            ConfigCmd::Bind.into(),
            ConfigMode::new_packet(COPY_RANGE).into(),
        ],
    );
    let mut out = vec![0u8; req.header.length as usize];
    req.serialize(&mut out[..]);
    sock.send(&out, 0)?;
    let mut buf = vec![0u8; 4096];
    let n = sock.recv(&mut &mut buf[..], 0)?;
    let ack = NetlinkMessage::<NetfilterMessage>::deserialize(&buf[..n])
        .map_err(|e| std::io::Error::other(format!("unreadable NFLOG answer: {e}")))?;
    match ack.payload {
        NetlinkPayload::Error(e) => match e.code {
            None => Ok(sock),
            Some(code) => Err(std::io::Error::from_raw_os_error(-code.get())),
        },
        _ => Ok(sock),
    }
}

/// The refusals in one `recv`: (destination, rule) per logged packet of `id`.
fn parse_batch(mut bytes: &[u8], id: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while bytes.len() >= 16 {
        let len = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        if len < 16 || len > bytes.len() {
            break;
        }
        if let Ok(msg) = NetlinkMessage::<NetfilterMessage>::deserialize(&bytes[..len]) {
            if let NetlinkPayload::InnerMessage(NetfilterMessage {
                inner: NetfilterMessageInner::ULog(ULogMessage::Packet(nlas)),
                ..
            }) = &msg.payload
            {
                out.extend(refusal(nlas, id));
            }
        }
        // Messages are padded to 4 bytes.
        let step = (len + 3) & !3;
        bytes = bytes.get(step..).unwrap_or(&[]);
    }
    out
}

fn refusal(nlas: &[PacketNla], id: &str) -> Option<(String, String)> {
    let mut prefix = None;
    let mut payload = None;
    for nla in nlas {
        match nla {
            PacketNla::Prefix(p) => prefix = Some(p.to_string_lossy().into_owned()),
            PacketNla::Payload(p) => payload = Some(p.as_slice()),
            _ => {}
        }
    }
    let prefix = prefix?;
    let (who, rule) = prefix.split_once(':')?;
    if who != short(id) {
        return None;
    }
    Some((destination(payload?)?, rule.to_string()))
}

/// `ADDR:PORT/PROTO` (`[ADDR]:PORT/PROTO` for IPv6) from an IP packet;
/// `ADDR/PROTO` for a protocol without ports.
pub(crate) fn destination(pkt: &[u8]) -> Option<String> {
    let version = pkt.first()? >> 4;
    let (addr, proto, l4): (IpAddr, u8, &[u8]) = match version {
        4 => {
            let ihl = usize::from(pkt.first()? & 0x0f) * 4;
            let dst: [u8; 4] = pkt.get(16..20)?.try_into().ok()?;
            (
                Ipv4Addr::from(dst).into(),
                *pkt.get(9)?,
                pkt.get(ihl..).unwrap_or(&[]),
            )
        }
        6 => {
            let dst: [u8; 16] = pkt.get(24..40)?.try_into().ok()?;
            (
                Ipv6Addr::from(dst).into(),
                *pkt.get(6)?,
                pkt.get(40..).unwrap_or(&[]),
            )
        }
        _ => return None,
    };
    let name = match proto {
        6 => "tcp",
        17 => "udp",
        132 => "sctp",
        1 => "icmp",
        58 => "icmpv6",
        _ => return Some(format!("{addr}/proto-{proto}")),
    };
    let port = match (name, l4.get(2..4)) {
        ("tcp" | "udp" | "sctp", Some(p)) => u16::from_be_bytes([p[0], p[1]]),
        _ => return Some(format!("{addr}/{name}")),
    };
    Some(match addr {
        IpAddr::V4(a) => format!("{a}:{port}/{name}"),
        IpAddr::V6(a) => format!("[{a}]:{port}/{name}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_are_read_from_ipv4_and_ipv6_headers() {
        let mut v4 = vec![0u8; 24];
        v4[0] = 0x45;
        v4[9] = 6;
        v4[16..20].copy_from_slice(&[198, 19, 7, 3]);
        v4[22..24].copy_from_slice(&80u16.to_be_bytes());
        assert_eq!(destination(&v4).as_deref(), Some("198.19.7.3:80/tcp"));
        let mut v6 = vec![0u8; 44];
        v6[0] = 0x60;
        v6[6] = 17;
        v6[24..40].copy_from_slice(&"fd00::9".parse::<Ipv6Addr>().unwrap().octets());
        v6[42..44].copy_from_slice(&53u16.to_be_bytes());
        assert_eq!(destination(&v6).as_deref(), Some("[fd00::9]:53/udp"));
        v4[9] = 1;
        assert_eq!(destination(&v4).as_deref(), Some("198.19.7.3/icmp"));
        assert_eq!(destination(&[0x20, 0, 0]), None);
        assert_eq!(destination(&v4[..10]), None);
    }

    #[test]
    fn the_prefix_names_the_container_and_the_rule() {
        let id = "0123456789abcdef";
        let p = log_prefix(id, "egress-deny 10.0.0.0/8");
        assert_eq!(p, "0123456789ab:egress-deny 10.0.0.0/8");
        let mut pkt = vec![0u8; 24];
        pkt[0] = 0x45;
        pkt[9] = 17;
        pkt[16..20].copy_from_slice(&[10, 1, 2, 3]);
        pkt[22..24].copy_from_slice(&53u16.to_be_bytes());
        let nlas = vec![
            PacketNla::Prefix(std::ffi::CString::new(p).unwrap()),
            PacketNla::Payload(pkt),
        ];
        assert_eq!(
            refusal(&nlas, id),
            Some(("10.1.2.3:53/udp".into(), "egress-deny 10.0.0.0/8".into()))
        );
        assert_eq!(refusal(&nlas, "another-container"), None);
    }
}
