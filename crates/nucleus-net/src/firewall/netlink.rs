//! nf_tables batches sent in-process over NETLINK_NETFILTER, messages built
//! by `netlink-packet-netfilter`: what the hot paths need without running
//! `nft` (a process exec that parses its input and reads the kernel's
//! ruleset): a plain container's set and map elements, removing a
//! container's chains and sets by name, and adding resolved addresses to
//! its egress sets. One batch is one transaction:
//! everything in it applies, or nothing does.

use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST};
use netlink_packet_netfilter::nftables::{
    ChainAttribute, ChainMessage, DataAttribute, ListAttribute, NfTablesMessage, RuleAttribute,
    RuleMessage, SetAttribute, SetElementAttribute, SetElementList, SetElementMessage, SetMessage,
};
use netlink_packet_netfilter::none::ControlMessage;
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
use netlink_sys::{constants::NETLINK_NETFILTER, Socket};
use std::io;
use std::net::IpAddr;

/// `NFNL_SUBSYS_NFTABLES` (linux/netfilter/nfnetlink.h): the batch's subsystem.
const SUBSYS_NFTABLES: u16 = 10;

/// The family of a table, as nf_tables names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    Inet,
    Bridge,
}

impl Family {
    pub(super) fn parse(name: &str) -> Family {
        if name == "bridge" {
            Family::Bridge
        } else {
            Family::Inet
        }
    }

    fn proto(self) -> NetfilterProtoFamily {
        match self {
            Family::Inet => NetfilterProtoFamily::Inet,
            Family::Bridge => NetfilterProtoFamily::Bridge,
        }
    }
}

/// The commands of one transaction.
#[derive(Debug, Default)]
pub(super) struct Batch {
    msgs: Vec<(Family, NfTablesMessage, u16)>,
}

impl Batch {
    /// Remove every rule of a chain.
    pub(super) fn flush_chain(&mut self, family: Family, table: &str, chain: &str) {
        let m = NfTablesMessage::DeleteRule(RuleMessage {
            attributes: vec![
                RuleAttribute::Table(table.into()),
                RuleAttribute::Chain(chain.into()),
            ],
        });
        self.msgs.push((family, m, 0));
    }

    /// Delete a chain (and its rules); nothing may jump to it any more.
    pub(super) fn delete_chain(&mut self, family: Family, table: &str, chain: &str) {
        let m = NfTablesMessage::DeleteChain(ChainMessage {
            attributes: vec![
                ChainAttribute::Table(table.into()),
                ChainAttribute::Name(chain.into()),
            ],
        });
        self.msgs.push((family, m, 0));
    }

    /// Delete a set; no rule may name it any more.
    pub(super) fn delete_set(&mut self, family: Family, table: &str, set: &str) {
        let m = NfTablesMessage::DeleteSet(SetMessage {
            attributes: vec![
                SetAttribute::Table(table.into()),
                SetAttribute::Name(set.into()),
            ],
        });
        self.msgs.push((family, m, 0));
    }

    /// Add addresses (with timeouts in seconds) to an inet set, or, with
    /// `delete`, remove them.
    pub(super) fn set_elements(
        &mut self,
        table: &str,
        set: &str,
        elems: &[(IpAddr, u32)],
        delete: bool,
    ) {
        let elems: Vec<Element> = elems
            .iter()
            .map(|(addr, timeout)| Element {
                key: match addr {
                    IpAddr::V4(a) => a.octets().to_vec(),
                    IpAddr::V6(a) => a.octets().to_vec(),
                },
                data: None,
                timeout_ms: Some(u64::from(*timeout) * 1000),
                comment: None,
            })
            .collect();
        self.elements(Family::Inet, table, set, &elems, delete);
    }

    /// Add (or update: same key and data, a new timeout) elements of a set
    /// or map; with `delete`, remove them by key.
    pub(super) fn elements(
        &mut self,
        family: Family,
        table: &str,
        set: &str,
        elems: &[Element],
        delete: bool,
    ) {
        if elems.is_empty() {
            return;
        }
        let list = elems
            .iter()
            .map(|e| {
                let mut attrs = vec![SetElementAttribute::Key(DataAttribute::Value(
                    e.key.clone(),
                ))];
                if !delete {
                    if let Some(data) = &e.data {
                        attrs.push(SetElementAttribute::Data(DataAttribute::Value(
                            data.clone(),
                        )));
                    }
                    if let Some(ms) = e.timeout_ms {
                        attrs.push(SetElementAttribute::Timeout(ms));
                    }
                    if let Some(c) = &e.comment {
                        attrs.push(SetElementAttribute::UserData(comment_udata(c)));
                    }
                }
                ListAttribute::Element(attrs)
            })
            .collect();
        let msg = SetElementMessage {
            attributes: vec![
                SetElementList::Table(table.into()),
                SetElementList::Set(set.into()),
                SetElementList::Elements(list),
            ],
        };
        let (m, flags) = if delete {
            (NfTablesMessage::DeleteSetElement(msg), 0)
        } else {
            (NfTablesMessage::NewSetElement(msg), NLM_F_CREATE)
        };
        self.msgs.push((family, m, flags));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// Commit on a socket of its own.
    pub(super) fn commit(self) -> io::Result<()> {
        if self.msgs.is_empty() {
            return Ok(());
        }
        self.commit_on(&mut Conn::open()?)
    }

    /// Send the batch and wait for the kernel's verdict on each command:
    /// the first error (as an errno) fails the whole transaction.
    pub(super) fn commit_on(self, conn: &mut Conn) -> io::Result<()> {
        if self.msgs.is_empty() {
            return Ok(());
        }
        let mut wire = Vec::new();
        let mut push = |msg: &mut NetlinkMessage<NetfilterMessage>, seq: u32| {
            msg.header.sequence_number = seq;
            msg.finalize();
            let start = wire.len();
            wire.resize(start + msg.buffer_len(), 0);
            msg.serialize(&mut wire[start..]);
        };
        let control = |c: ControlMessage| {
            let mut m = NetlinkMessage::from(NetfilterMessage::new(
                NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, SUBSYS_NFTABLES),
                c,
            ));
            m.header.flags = NLM_F_REQUEST;
            m
        };
        // Sequence numbers go on across batches, so answers left over from
        // an aborted batch on a kept socket are told apart and skipped.
        let first = conn.seq;
        let mut seq = first;
        push(&mut control(ControlMessage::BatchBegin), seq);
        let commands = self.msgs.len();
        for (family, m, flags) in self.msgs {
            seq += 1;
            let mut msg = NetlinkMessage::from(NetfilterMessage::new(
                NetfilterHeader::new(family.proto(), 0, 0),
                m,
            ));
            msg.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
            push(&mut msg, seq);
        }
        seq += 1;
        push(&mut control(ControlMessage::BatchEnd), seq);
        conn.seq = seq.wrapping_add(1).max(1);

        conn.sock.send(&wire, 0)?;
        // One answer (an ack or an error) per command.
        let mut answers = 0;
        let mut buf = vec![0u8; 65536];
        while answers < commands {
            let n = conn.sock.recv(&mut &mut buf[..], 0)?;
            let mut bytes = &buf[..n];
            while bytes.len() >= 4 {
                let len = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
                if len < 16 || len > bytes.len() {
                    break;
                }
                let msg = NetlinkMessage::<NetfilterMessage>::deserialize(&bytes[..len])
                    .map_err(|e| io::Error::other(format!("unreadable nf_tables answer: {e}")))?;
                bytes = &bytes[((len + 3) & !3).min(bytes.len())..];
                if !(first..=seq).contains(&msg.header.sequence_number) {
                    continue;
                }
                if let NetlinkPayload::Error(e) = msg.payload {
                    answers += 1;
                    // The transaction is aborted: the other answers do not matter.
                    if let Some(code) = e.code {
                        return Err(io::Error::from_raw_os_error(-code.get()));
                    }
                }
            }
        }
        Ok(())
    }
}

/// One element of a set or map, its key and data already in the kernel's
/// layout (see `key_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Element {
    pub key: Vec<u8>,
    pub data: Option<Vec<u8>>,
    /// None: never expires.
    pub timeout_ms: Option<u64>,
    /// Shown by `nft list` as the element's `comment`.
    pub comment: Option<String>,
}

/// `IFNAMSIZ`: an `ifname` key is the name NUL-padded to 16 bytes.
const IFNAMSIZ: usize = 16;

/// Builds a concatenated key or data value: every field padded to a
/// multiple of 4 bytes (`NFT_REG32_SIZE`), as nf_tables stores concatenations.
#[derive(Debug, Default, Clone)]
pub(super) struct Concat(Vec<u8>);

impl Concat {
    fn field(mut self, bytes: &[u8]) -> Concat {
        self.0.extend_from_slice(bytes);
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
        self
    }
    pub(super) fn ifname(self, name: &str) -> Concat {
        let mut b = [0u8; IFNAMSIZ];
        let n = name.len().min(IFNAMSIZ - 1);
        b[..n].copy_from_slice(&name.as_bytes()[..n]);
        self.field(&b)
    }
    pub(super) fn addr(self, ip: IpAddr) -> Concat {
        match ip {
            IpAddr::V4(a) => self.field(&a.octets()),
            IpAddr::V6(a) => self.field(&a.octets()),
        }
    }
    /// An `inet_proto` (one byte).
    pub(super) fn proto(self, p: u8) -> Concat {
        self.field(&[p])
    }
    /// An `inet_service`, in network byte order.
    pub(super) fn port(self, p: u16) -> Concat {
        self.field(&p.to_be_bytes())
    }
    pub(super) fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// An element's user data as libnftnl writes a comment: one TLV,
/// `NFTNL_UDATA_SET_ELEM_COMMENT` (0), its length, the text and a NUL.
fn comment_udata(text: &str) -> Vec<u8> {
    let bytes = &text.as_bytes()[..text.len().min(253)];
    let mut v = vec![0u8, u8::try_from(bytes.len() + 1).unwrap_or(u8::MAX)];
    v.extend_from_slice(bytes);
    v.push(0);
    v
}

/// A NETLINK_NETFILTER socket. Closing one after a transaction that freed
/// something (a delete, a refreshed set element) waits for an RCU grace
/// period in the kernel (several ms), so a caller that commits often (the
/// resolver) keeps one open.
#[derive(Debug)]
pub(super) struct Conn {
    sock: Socket,
    seq: u32,
}

impl Conn {
    pub(super) fn open() -> io::Result<Conn> {
        let mut sock = Socket::new(NETLINK_NETFILTER)?;
        sock.bind_auto()?;
        Ok(Conn { sock, seq: 1 })
    }

    /// Does this chain exist? One object read by name, not a listing.
    pub(super) fn chain_exists(
        &mut self,
        family: Family,
        table: &str,
        chain: &str,
    ) -> io::Result<bool> {
        let seq = self.seq;
        self.seq = seq.wrapping_add(1).max(1);
        let mut msg = NetlinkMessage::from(NetfilterMessage::new(
            NetfilterHeader::new(family.proto(), 0, 0),
            NfTablesMessage::GetChain(ChainMessage {
                attributes: vec![
                    ChainAttribute::Table(table.into()),
                    ChainAttribute::Name(chain.into()),
                ],
            }),
        ));
        msg.header.flags = NLM_F_REQUEST | NLM_F_ACK;
        msg.header.sequence_number = seq;
        msg.finalize();
        let mut wire = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut wire[..]);
        self.sock.send(&wire, 0)?;
        let mut found = false;
        let mut buf = vec![0u8; 65536];
        loop {
            let n = self.sock.recv(&mut &mut buf[..], 0)?;
            let mut bytes = &buf[..n];
            while bytes.len() >= 4 {
                let len = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
                if len < 16 || len > bytes.len() {
                    break;
                }
                let msg = NetlinkMessage::<NetfilterMessage>::deserialize(&bytes[..len])
                    .map_err(|e| io::Error::other(format!("unreadable nf_tables answer: {e}")))?;
                bytes = &bytes[((len + 3) & !3).min(bytes.len())..];
                if msg.header.sequence_number != seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code.map(|c| -c.get()) {
                            None => Ok(found),
                            Some(libc::ENOENT) => Ok(false),
                            Some(code) => Err(io::Error::from_raw_os_error(code)),
                        };
                    }
                    NetlinkPayload::InnerMessage(_) => found = true,
                    _ => {}
                }
            }
        }
    }
}
