//! The nftables driver: one `inet` table (NAT, published ports, egress) and
//! one `bridge` table of the same name (anti-spoofing on the veth ports).
//!
//! The rules are per table and per network, installed once (`nft -f -`
//! text, at a network's first attach); a plain container only adds
//! elements to their sets and maps, in-process over netlink, and retires
//! them at stop by shortening their timeout to 1 ms (an update: nothing is
//! freed in the transaction, so no RCU grace period is waited for).
//! Every element carries the comment `ctr=ID`, so leak checks find them.
//! A container with an egress policy also gets chains of its own, as JSON
//! batches through the `nftables` crate.
//!
//! ```text
//! table inet nucleus
//!   maps dns4/dns6  saddr . daddr(gateway)   : gateway . resolver port
//!        ph4/ph6    l4proto . host port      : container address . port   (-p HOST:CTR)
//!        pa4/pa6    host addr . l4proto . port : container address . port (-p IP:HOST:CTR)
//!   pre         nat/prerouting -100  DNS redirect and published ports, by map
//!   out         nat/output -100      published ports for the host's own connections (127.0.0.1)
//!   n-post-NET  nat/postrouting 100  masquerade per network; 127.0.0.0/8 -> bridge (route_localnet)
//!   n-fwd-NET   filter/forward 0     internal networks
//!   c-pre-ID, c-out-ID   an egress container's published ports and DNS redirect
//!   c-fwd-ID, c-in-ID    `ip saddr LEASE jump eg-ID` (the host is outside too)
//!   eg-ID       the container's egress rules; sets a4-ID/a6-ID (timeout) of resolved addresses
//! table bridge nucleus
//!   sets pp (port), sp4/sp6 (port . leased address)
//!   spoof       filter/prerouting -200  frames from a container port must carry its lease;
//!               a port of ours (`nucXXXX*`, XXXX from the table's name) without a `pp` element passes nothing
//! ```
//! Egress is enforced on the host, keyed by a source address the bridge
//! table makes unforgeable, so nothing inside the container can lift it.
//! A drop or reject in any base chain is final, so splitting the chains
//! changes no verdict.

use super::netlink::{Batch, Concat, Conn, Element, Family};
use super::{ContainerRules, Firewall};
use crate::egress::{CidrRule, EgressPolicy, Proto};
use crate::error::{NetError, Result};
use crate::network::Network;
use ipnet::IpNet;
use serde_json::{json, Value};
use std::io::Write as _;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

const DEFAULT_TABLE: &str = "nucleus";
/// Floor on set timeouts: an answer with TTL 0 must outlive the connect that follows it.
const MIN_TIMEOUT: u32 = 10;
const MAX_TIMEOUT: u32 = 86_400;

#[derive(Debug, Clone)]
pub struct NftFirewall {
    table: String,
    /// The socket resolved addresses are added on, kept open between answers.
    sets: Arc<Mutex<Option<Conn>>>,
}

impl Default for NftFirewall {
    fn default() -> Self {
        NftFirewall::with_table(DEFAULT_TABLE)
    }
}

fn net_tag(name: &str) -> String {
    format!("net={name}")
}

fn ctr_tag(id: &str) -> String {
    format!("ctr={id}")
}

fn chain_of(id: &str) -> String {
    format!("eg-{id}")
}

fn set_of(id: &str, v6: bool) -> String {
    format!("{}-{id}", if v6 { "a6" } else { "a4" })
}

/// A base chain of our own: family, name, type, hook, priority.
#[derive(Debug, Clone)]
struct Hooked {
    family: &'static str,
    name: String,
    ty: &'static str,
    hook: &'static str,
    prio: i32,
}

impl Hooked {
    fn new(
        family: &'static str,
        name: String,
        ty: &'static str,
        hook: &'static str,
        prio: i32,
    ) -> Hooked {
        Hooked {
            family,
            name,
            ty,
            hook,
            prio,
        }
    }
}

/// The base chains of a network: masquerade, and isolation when internal.
fn network_chains(name: &str) -> [Hooked; 2] {
    [
        Hooked::new("inet", format!("n-post-{name}"), "nat", "postrouting", 100),
        Hooked::new("inet", format!("n-fwd-{name}"), "filter", "forward", 0),
    ]
}

/// The base chains of a container with an egress policy.
fn container_chains(id: &str) -> ContainerChains {
    ContainerChains {
        pre: Hooked::new("inet", format!("c-pre-{id}"), "nat", "prerouting", -100),
        out: Hooked::new("inet", format!("c-out-{id}"), "nat", "output", -100),
        fwd: Hooked::new("inet", format!("c-fwd-{id}"), "filter", "forward", 0),
        input: Hooked::new("inet", format!("c-in-{id}"), "filter", "input", 0),
    }
}

struct ContainerChains {
    pre: Hooked,
    out: Hooked,
    fwd: Hooked,
    input: Hooked,
}

impl ContainerChains {
    fn all(&self) -> [&Hooked; 4] {
        [&self.pre, &self.out, &self.fwd, &self.input]
    }
}

fn payload(protocol: &str, field: &str) -> Value {
    json!({"payload": {"protocol": protocol, "field": field}})
}

fn meta(key: &str) -> Value {
    json!({"meta": {"key": key}})
}

fn m(left: Value, op: &str, right: Value) -> Value {
    json!({"match": {"op": op, "left": left, "right": right}})
}

fn addr(net: IpNet) -> Value {
    if net.prefix_len() == net.max_prefix_len() {
        json!(net.addr().to_string())
    } else {
        json!({"prefix": {"addr": net.network().to_string(), "len": net.prefix_len()}})
    }
}

fn fam(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "ip"
    } else {
        "ip6"
    }
}

/// `meta l4proto tcp th dport N` (both protocols when `proto` is none).
fn port_match(proto: Option<Proto>, port: u16) -> Vec<Value> {
    let l4 = match proto {
        Some(p) => json!(p.as_str()),
        None => json!({"set": ["tcp", "udp"]}),
    };
    vec![
        m(meta("l4proto"), "==", l4),
        m(payload("th", "dport"), "==", json!(port)),
    ]
}

impl NftFirewall {
    /// A driver on a table other than `nucleus` (tests run side by side).
    pub fn with_table(table: &str) -> NftFirewall {
        NftFirewall {
            table: table.into(),
            sets: Arc::default(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn rule(&self, family: &str, chain: &str, expr: Vec<Value>, comment: &str) -> Value {
        json!({"add": {"rule": {"family": family, "table": self.table, "chain": chain, "expr": expr, "comment": comment}}})
    }

    fn apply(&self, op: &'static str, cmds: Vec<Value>) -> Result<()> {
        if cmds.is_empty() {
            return Ok(());
        }
        let doc = json!({ "nftables": cmds }).to_string();
        nftables::helper::apply_ruleset_raw(&doc, None::<&str>, std::iter::empty::<&str>())
            .map(drop)
            .map_err(|e| nft_err(op, e))
    }

    /// The objects of one of our tables, or nothing when it does not exist.
    fn list(&self, family: &str) -> Result<Vec<Value>> {
        let args = ["list", "table", family, self.table.as_str()];
        match nftables::helper::get_current_ruleset_raw(None::<&str>, args.iter().copied()) {
            Ok(out) => {
                let v: Value = serde_json::from_str(&out).map_err(|e| NetError::Nftables {
                    op: "read the ruleset",
                    detail: e.to_string(),
                })?;
                Ok(v["nftables"].as_array().cloned().unwrap_or_default())
            }
            // `nft list table` fails when the table is absent.
            Err(nftables::helper::NftablesError::NftFailed { stderr, .. })
                if stderr.contains("No such file") || stderr.is_empty() =>
            {
                Ok(Vec::new())
            }
            Err(e) => Err(nft_err("read the ruleset", e)),
        }
    }

    /// Both tables; `add` of an existing one is a no-op.
    fn tables(&self) -> Vec<Value> {
        vec![
            json!({"add": {"table": {"family": "inet", "name": self.table}}}),
            json!({"add": {"table": {"family": "bridge", "name": self.table}}}),
        ]
    }

    fn chain_ref(&self, family: &str, name: &str) -> Value {
        json!({"family": family, "table": self.table, "name": name})
    }

    /// Create (or keep) a base chain and empty it, ready to be filled.
    fn fresh(&self, h: &Hooked) -> [Value; 2] {
        [
            json!({"add": {"chain": {"family": h.family, "table": self.table, "name": h.name, "type": h.ty, "hook": h.hook, "prio": h.prio, "policy": "accept"}}}),
            json!({"flush": {"chain": self.chain_ref(h.family, &h.name)}}),
        ]
    }

    fn egress_set(&self, id: &str, v6: bool) -> Value {
        let ty = if v6 { "ipv6_addr" } else { "ipv4_addr" };
        json!({"family": "inet", "table": self.table, "name": set_of(id, v6), "type": ty, "flags": ["timeout"]})
    }

    /// Remove chains and sets by name whether or not they exist: each is
    /// added first (a no-op when present), so the deletes cannot fail.
    fn remove_named(
        &self,
        op: &'static str,
        hooked: &[&Hooked],
        plain: &[String],
        sets: &[Value],
    ) -> Result<()> {
        let batch = |family: Option<&str>| {
            let keep = |f: &str| family.is_none_or(|x| x == f);
            let (mut adds, mut flushes, mut dels) = (Vec::new(), Vec::new(), Vec::new());
            for h in hooked.iter().filter(|h| keep(h.family)) {
                let [add, flush] = self.fresh(h);
                adds.push(add);
                flushes.push(flush);
                dels.push(json!({"delete": {"chain": self.chain_ref(h.family, &h.name)}}));
            }
            for name in plain.iter().filter(|_| keep("inet")) {
                let c = self.chain_ref("inet", name);
                adds.push(json!({"add": {"chain": c.clone()}}));
                flushes.push(json!({"flush": {"chain": c.clone()}}));
                dels.push(json!({"delete": {"chain": c}}));
            }
            // Rules go (flush) before the chains they jump to and the sets they name.
            for set in sets.iter().filter(|_| keep("inet")) {
                adds.push(json!({"add": {"set": set}}));
                let mut name = set.clone();
                if let Some(o) = name.as_object_mut() {
                    o.retain(|k, _| matches!(k.as_str(), "family" | "table" | "name"));
                }
                dels.push(json!({"delete": {"set": name}}));
            }
            adds.extend(flushes);
            adds.extend(dels);
            adds
        };
        if self.apply(op, batch(None)).is_ok() {
            return Ok(());
        }
        // Most likely a table is missing (nft's message goes to its stderr,
        // not to us): retry each family whose table exists.
        for family in ["inet", "bridge"] {
            if !self.list(family)?.is_empty() {
                self.apply(op, batch(Some(family)))?;
            }
        }
        Ok(())
    }

    /// Remove both tables once nothing of ours is left in them: no chain
    /// but the table-wide ones, no set but theirs, no element that is not
    /// already lapsing (ours carry no timeout while they are in use).
    fn drop_tables_if_empty(&self) -> Result<()> {
        let mut cmds = Vec::new();
        for family in ["inet", "bridge"] {
            let objs = self.list(family)?;
            if objs.is_empty() {
                continue;
            }
            let in_use = objs.iter().any(|o| {
                let chain = o.get("chain").and_then(|c| c["name"].as_str());
                let set = o.get("set").or_else(|| o.get("map"));
                chain.is_some_and(|n| !SHARED_CHAINS.contains(&n))
                    || set.is_some_and(|s| {
                        let name = s["name"].as_str().unwrap_or_default();
                        !SHARED_SETS.contains(&name)
                            || s["elem"].as_array().is_some_and(|e| e.iter().any(is_live))
                    })
            });
            if !in_use {
                cmds.push(json!({"delete": {"table": {"family": family, "name": self.table}}}));
            }
        }
        self.apply("remove the table", cmds)
    }

    /// `nft -f -` text for the table-wide sets, maps and chains, and the
    /// network's chains, each emptied and filled again (idempotent; sets
    /// and maps keep their elements). Text, not JSON: nft 1.0.6's JSON
    /// parser rejects the concatenated data of the DNAT maps.
    fn install_text(&self, net: &Network) -> String {
        let t = &self.table;
        let br = &net.bridge;
        let tag = net_tag(&net.name);
        let mut o = String::new();
        let mut line = |l: String| {
            o.push_str(&l);
            o.push('\n');
        };
        line(format!("add table inet {t}"));
        line(format!("add table bridge {t}"));
        for (set, ty) in [
            ("pp", "ifname"),
            ("sp4", "ifname . ipv4_addr"),
            ("sp6", "ifname . ipv6_addr"),
        ] {
            line(format!(
                "add set bridge {t} {set} {{ type {ty}; flags timeout; }}"
            ));
        }
        line(format!("add chain bridge {t} spoof {{ type filter hook prerouting priority -200; policy accept; }}"));
        line(format!("flush chain bridge {t} spoof"));
        // A container port without an element passes nothing: a veth left
        // to the kernel (removed with its namespace) is never unfiltered.
        line(format!(
            "add rule bridge {t} spoof iifname \"{}*\" iifname != @pp drop",
            self.port_prefix()
        ));
        // The source address is what egress is keyed on; a port without
        // an address of a family drops that family.
        line(format!(
            "add rule bridge {t} spoof iifname @pp ether type ip iifname . ip saddr != @sp4 drop"
        ));
        line(format!("add rule bridge {t} spoof iifname @pp ether type ip6 ip6 saddr != {{ fe80::/10, :: }} iifname . ip6 saddr != @sp6 drop"));
        for (map, ty) in [
            ("dns4", "ipv4_addr . ipv4_addr : ipv4_addr . inet_service"),
            ("dns6", "ipv6_addr . ipv6_addr : ipv6_addr . inet_service"),
            (
                "ph4",
                "inet_proto . inet_service : ipv4_addr . inet_service",
            ),
            (
                "ph6",
                "inet_proto . inet_service : ipv6_addr . inet_service",
            ),
            (
                "pa4",
                "ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service",
            ),
            (
                "pa6",
                "ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service",
            ),
        ] {
            line(format!(
                "add map inet {t} {map} {{ type {ty}; flags timeout; }}"
            ));
        }
        for (chain, hook) in [("pre", "prerouting"), ("out", "output")] {
            line(format!("add chain inet {t} {chain} {{ type nat hook {hook} priority -100; policy accept; }}"));
            line(format!("flush chain inet {t} {chain}"));
            if chain == "pre" {
                // Queries to the gateway, from a leased address, to the resolver.
                for f in ["ip", "ip6"] {
                    let map = if f == "ip" { "dns4" } else { "dns6" };
                    line(format!("add rule inet {t} pre meta l4proto {{ tcp, udp }} th dport 53 dnat {f} to {f} saddr . {f} daddr map @{map}"));
                }
            }
            line(format!("add rule inet {t} {chain} fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @pa4"));
            line(format!("add rule inet {t} {chain} fib daddr type local dnat ip to meta l4proto . th dport map @ph4"));
            line(format!("add rule inet {t} {chain} fib daddr type local dnat ip6 to ip6 daddr . meta l4proto . th dport map @pa6"));
            // IPv6 has no route_localnet: ::1 is proxied in user space (see `proxy`).
            line(format!("add rule inet {t} {chain} fib daddr type local ip6 daddr != ::1 dnat ip6 to meta l4proto . th dport map @ph6"));
        }
        let [post, fwd] = network_chains(&net.name);
        if net.internal {
            let c = &fwd.name;
            line(format!(
                "add chain inet {t} {c} {{ type filter hook forward priority 0; policy accept; }}"
            ));
            line(format!("flush chain inet {t} {c}"));
            line(format!(
                "add rule inet {t} {c} iifname \"{br}\" oifname != \"{br}\" drop comment \"{tag}\""
            ));
            line(format!(
                "add rule inet {t} {c} oifname \"{br}\" iifname != \"{br}\" drop comment \"{tag}\""
            ));
            return o;
        }
        let c = &post.name;
        line(format!(
            "add chain inet {t} {c} {{ type nat hook postrouting priority 100; policy accept; }}"
        ));
        line(format!("flush chain inet {t} {c}"));
        for sub in net.subnets() {
            let f = fam(sub.addr());
            line(format!("add rule inet {t} {c} {f} saddr {} oifname != \"{br}\" masquerade comment \"{tag}\"", sub.trunc()));
        }
        // Published on 127.0.0.1: the host's own connection leaves with a
        // loopback source (allowed by route_localnet); rewrite it so the
        // container can answer.
        line(format!("add rule inet {t} {c} oifname \"{br}\" ip saddr 127.0.0.0/8 masquerade comment \"{tag}\""));
        line(format!(
            "add rule inet {t} {c} oifname \"{br}\" ip6 saddr ::1 masquerade comment \"{tag}\""
        ));
        o
    }

    /// Run `nft -f -` on `text`: one transaction.
    fn apply_text(&self, op: &'static str, text: &str) -> Result<()> {
        let err = |detail: String| NetError::Nftables { op, detail };
        let mut child = Command::new("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| err(format!("run `nft`: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(text.as_bytes())
                .map_err(|e| err(format!("write to `nft`: {e}")))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| err(format!("wait for `nft`: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(err(String::from_utf8_lossy(&out.stderr).trim().to_string()))
        }
    }

    /// The container's elements: its port and leased addresses for the
    /// anti-spoofing, and for a container without egress policy its DNS
    /// redirect and published ports. `(family, set, element)`.
    fn container_elements(
        &self,
        r: &ContainerRules<'_>,
        timeout_ms: Option<u64>,
    ) -> Vec<(Family, &'static str, Element)> {
        let comment = Some(ctr_tag(r.id));
        let el = |key: Concat, data: Option<Concat>| Element {
            key: key.into_bytes(),
            data: data.map(Concat::into_bytes),
            timeout_ms,
            comment: comment.clone(),
        };
        let port = || Concat::default().ifname(r.host_veth);
        let mut out = vec![(Family::Bridge, "pp", el(port(), None))];
        for ip in r.lease.addrs() {
            let set = if ip.is_ipv4() { "sp4" } else { "sp6" };
            out.push((Family::Bridge, set, el(port().addr(ip), None)));
        }
        if r.egress.is_active() {
            return out;
        }
        if let Some(resolver) = r.resolver_port {
            for ip in r.lease.addrs() {
                let (gw, map) = if ip.is_ipv4() {
                    (r.net.gateway4().map(IpAddr::V4), "dns4")
                } else {
                    (r.net.gateway6().map(IpAddr::V6), "dns6")
                };
                let Some(gw) = gw else { continue };
                let key = Concat::default().addr(ip).addr(gw);
                let data = Concat::default().addr(gw).port(resolver);
                out.push((Family::Inet, map, el(key, Some(data))));
            }
        }
        for p in r.publish {
            let proto = match p.proto {
                Proto::Tcp => libc::IPPROTO_TCP,
                Proto::Udp => libc::IPPROTO_UDP,
            };
            let proto = u8::try_from(proto).unwrap_or(0);
            for ctr in r.lease.addrs() {
                let host_ok = p.host_ip.is_none_or(|h| h.is_ipv4() == ctr.is_ipv4());
                // IPv6 has no route_localnet: ::1 is proxied in user space (see `proxy`).
                if !host_ok || p.host_ip.is_some_and(|h| h.is_loopback() && h.is_ipv6()) {
                    continue;
                }
                let data = Concat::default().addr(ctr).port(p.container_port);
                let v6 = ctr.is_ipv6();
                let (map, key) = match p.host_ip {
                    Some(h) if !h.is_unspecified() => (
                        if v6 { "pa6" } else { "pa4" },
                        Concat::default().addr(h).proto(proto).port(p.host_port),
                    ),
                    _ => (
                        if v6 { "ph6" } else { "ph4" },
                        Concat::default().proto(proto).port(p.host_port),
                    ),
                };
                out.push((Family::Inet, map, el(key, Some(data))));
            }
        }
        out
    }

    /// Retire what `setup_container` added: the same elements again with a
    /// 1 ms timeout (an update, which frees nothing in the transaction), or
    /// on kernels that cannot update a timeout, deleted one by one (a
    /// missing one must not keep the others).
    fn retire_elements(&self, rules: &ContainerRules<'_>) -> Result<()> {
        let err = |e: std::io::Error| NetError::Nftables {
            op: "retire the container's elements",
            detail: format!("container `{}`, table {}: {e}", rules.id, self.table),
        };
        let mut conn = Conn::open().map_err(err)?;
        if can_update_timeout() {
            let elems = self.container_elements(rules, Some(RETIRE_MS));
            return match self.element_batch(&elems, false).commit_on(&mut conn) {
                // No table or set: nothing was installed.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
                other => other.map_err(err),
            };
        }
        for one in self.container_elements(rules, None) {
            match self
                .element_batch(std::slice::from_ref(&one), true)
                .commit_on(&mut conn)
            {
                Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(err(e)),
                _ => {}
            }
        }
        Ok(())
    }

    /// Remove an egress container's chains and sets by name.
    fn remove_container_chains(&self, id: &str) -> Result<()> {
        let chains = container_chains(id);
        // What setup installed, removed by name in-process in one
        // transaction; it fails as a whole when something is missing (a
        // crash during setup, a second detach), and then the slower batch
        // below, which creates each object before deleting it, does it.
        let mut batch = Batch::default();
        for h in chains.all() {
            batch.flush_chain(Family::parse(h.family), &self.table, &h.name);
        }
        batch.flush_chain(Family::Inet, &self.table, &chain_of(id));
        for h in chains.all() {
            batch.delete_chain(Family::parse(h.family), &self.table, &h.name);
        }
        batch.delete_chain(Family::Inet, &self.table, &chain_of(id));
        for v6 in [false, true] {
            batch.delete_set(Family::Inet, &self.table, &set_of(id, v6));
        }
        match batch.commit() {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::debug!(id, error = %e, "removing the container's rules by name failed; retrying with nft")
            }
        }
        let sets = [self.egress_set(id, false), self.egress_set(id, true)];
        self.remove_named(
            "remove the container's rules",
            &chains.all(),
            &[chain_of(id)],
            &sets,
        )
    }

    /// One batch adding (or, with `delete`, removing) `elems`.
    fn element_batch(&self, elems: &[(Family, &'static str, Element)], delete: bool) -> Batch {
        let mut batch = Batch::default();
        for (family, set, e) in elems {
            batch.elements(*family, &self.table, set, std::slice::from_ref(e), delete);
        }
        batch
    }

    /// The chains of a container with an egress policy (its anti-spoofing
    /// is by element, as for every container).
    fn container_rules(&self, r: &ContainerRules<'_>) -> Vec<Value> {
        let tag = ctr_tag(r.id);
        let br = json!(r.net.bridge);
        let chains = container_chains(r.id);
        let mut cmds = Vec::new();
        for h in chains.all() {
            cmds.extend(self.fresh(h));
        }
        for p in r.publish {
            for ctr in r.lease.addrs() {
                let host_ok = p.host_ip.is_none_or(|h| h.is_ipv4() == ctr.is_ipv4());
                // IPv6 has no route_localnet: ::1 is proxied in user space (see `proxy`).
                if !host_ok || p.host_ip.is_some_and(|h| h.is_loopback() && h.is_ipv6()) {
                    continue;
                }
                let f = fam(ctr);
                let mut expr = vec![m(
                    json!({"fib": {"result": "type", "flags": ["daddr"]}}),
                    "==",
                    json!("local"),
                )];
                match p.host_ip {
                    Some(h) if !h.is_unspecified() => {
                        expr.push(m(payload(f, "daddr"), "==", json!(h.to_string())))
                    }
                    _ if ctr.is_ipv4() => expr.push(m(meta("nfproto"), "==", json!("ipv4"))),
                    // ::1 is left to the user-space proxy.
                    _ => expr.push(m(payload("ip6", "daddr"), "!=", json!("::1"))),
                }
                expr.push(m(meta("l4proto"), "==", json!(p.proto.as_str())));
                expr.push(m(payload("th", "dport"), "==", json!(p.host_port)));
                expr.push(json!({"dnat": {"family": f, "addr": ctr.to_string(), "port": p.container_port}}));
                cmds.push(self.rule("inet", &chains.pre.name, expr.clone(), &tag));
                cmds.push(self.rule("inet", &chains.out.name, expr, &tag));
            }
        }

        cmds.extend(self.dns_redirect(r, &chains.pre.name));
        if !r.egress.is_active() {
            return cmds;
        }
        let chain = chain_of(r.id);
        cmds.push(json!({"add": {"chain": self.chain_ref("inet", &chain)}}));
        cmds.push(json!({"flush": {"chain": self.chain_ref("inet", &chain)}}));
        for v6 in [false, true] {
            cmds.push(json!({"add": {"set": self.egress_set(r.id, v6)}}));
        }
        for ip in r.lease.addrs() {
            let f = fam(ip);
            let from = vec![
                m(meta("iifname"), "==", br.clone()),
                m(payload(f, "saddr"), "==", json!(ip.to_string())),
            ];
            for base in [&chains.fwd.name, &chains.input.name] {
                let mut expr = from.clone();
                expr.push(json!({"jump": {"target": chain}}));
                cmds.push(self.rule("inet", base, expr, &tag));
            }
        }
        cmds.extend(self.egress_chain(r.id, &chain, r.net, r.egress, r.log_group));
        cmds
    }

    /// Send the container's DNS to nucleus's resolver: queries to the
    /// gateway always, and with name filtering every query to any server.
    fn dns_redirect(&self, r: &ContainerRules<'_>, pre: &str) -> Vec<Value> {
        let Some(port) = r.resolver_port else {
            return Vec::new();
        };
        let mut cmds = Vec::new();
        for ip in r.lease.addrs() {
            let f = fam(ip);
            let gw = if ip.is_ipv4() {
                r.net.gateway4().map(IpAddr::V4)
            } else {
                r.net.gateway6().map(IpAddr::V6)
            };
            let Some(gw) = gw else { continue };
            let mut expr = vec![
                m(meta("iifname"), "==", json!(r.net.bridge)),
                m(payload(f, "saddr"), "==", json!(ip.to_string())),
            ];
            if !r.egress.filters_names() {
                expr.push(m(payload(f, "daddr"), "==", json!(gw.to_string())));
            }
            expr.extend(port_match(None, 53));
            expr.push(json!({"dnat": {"family": f, "addr": gw.to_string(), "port": port}}));
            cmds.push(self.rule("inet", pre, expr, &ctr_tag(r.id)));
        }
        cmds
    }

    fn egress_chain(
        &self,
        id: &str,
        chain: &str,
        net: &Network,
        egress: &EgressPolicy,
        group: Option<u16>,
    ) -> Vec<Value> {
        let tag = ctr_tag(id);
        let add = |expr: Vec<Value>| self.rule("inet", chain, expr, &tag);
        let refuse = |rule: &str| {
            let mut v = Vec::new();
            if let Some(g) = group {
                v.push(json!({"log": {"group": g, "prefix": crate::nflog::log_prefix(id, rule)}}));
            }
            v.push(json!({"reject": {"type": "icmpx", "expr": "admin-prohibited"}}));
            v
        };
        let mut cmds = vec![
            add(vec![
                m(
                    json!({"ct": {"key": "state"}}),
                    "in",
                    json!({"set": ["established", "related"]}),
                ),
                json!({"accept": null}),
            ]),
            // The redirect to the resolver (and hairpin to published ports).
            add(vec![
                m(json!({"ct": {"key": "status"}}), "in", json!("dnat")),
                json!({"accept": null}),
            ]),
            // Neighbour discovery with the gateway.
            add(vec![
                m(meta("l4proto"), "==", json!("ipv6-icmp")),
                m(
                    payload("icmpv6", "type"),
                    "==",
                    json!({"set": ["nd-neighbor-solicit", "nd-neighbor-advert", "nd-router-solicit"]}),
                ),
                json!({"accept": null}),
            ]),
            // Peers on the same bridge (seen here only with br_netfilter).
            add(vec![
                m(meta("oifname"), "==", json!(net.bridge)),
                json!({"accept": null}),
            ]),
        ];
        let cidr = |r: &CidrRule, verdict: Vec<Value>| {
            let mut expr = vec![m(payload(fam(r.net.addr()), "daddr"), "==", addr(r.net))];
            if let Some(p) = r.port {
                expr.extend(port_match(r.proto, p));
            }
            expr.extend(verdict);
            add(expr)
        };
        for r in &egress.deny {
            cmds.push(cidr(r, refuse(&format!("egress-deny {r}"))));
        }
        for r in &egress.allow {
            cmds.push(cidr(r, vec![json!({"accept": null})]));
        }
        for (f, v6) in [("ip", false), ("ip6", true)] {
            let set = format!("@{}", set_of(id, v6));
            cmds.push(add(vec![
                m(payload(f, "daddr"), "==", json!(set)),
                json!({"accept": null}),
            ]));
        }
        if egress.is_default_deny() {
            cmds.push(add(refuse("default-deny")));
        }
        cmds
    }
}

/// The timeout a set element gets for a record's TTL, in seconds: twice the
/// TTL, so the resolver can skip refreshing an element that still has a
/// full TTL left and a client caching the answer for its TTL still connects.
pub fn set_timeout(ttl: u32) -> u32 {
    ttl.saturating_mul(2).clamp(MIN_TIMEOUT, MAX_TIMEOUT)
}

/// The chains and sets every network shares, installed with the first.
const SHARED_CHAINS: [&str; 3] = ["spoof", "pre", "out"];
const SHARED_SETS: [&str; 9] = [
    "pp", "sp4", "sp6", "dns4", "dns6", "ph4", "ph6", "pa4", "pa6",
];

/// A listed element (`nft -j`) that no timeout retires: a bare value, or an
/// `elem` object without `timeout` (a map's entry is `[key, data]`).
fn is_live(e: &Value) -> bool {
    let key = e.as_array().and_then(|a| a.first()).unwrap_or(e);
    key.get("elem").is_none_or(|x| x.get("timeout").is_none())
}

/// Does a listed element carry `comment`?
fn has_comment(e: &Value, comment: &str) -> bool {
    let key = e.as_array().and_then(|a| a.first()).unwrap_or(e);
    key.get("elem")
        .is_some_and(|x| x["comment"].as_str() == Some(comment))
}

/// Can this kernel update an element's timeout (Linux 6.10)? Before that a
/// `NEWSETELEM` of an existing key leaves its timeout as it was, so stop
/// has to delete (and wait for the grace period) instead.
fn can_update_timeout() -> bool {
    static CAN: OnceLock<bool> = OnceLock::new();
    *CAN.get_or_init(|| {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut parts = release
            .trim()
            .split(|c: char| !c.is_ascii_digit())
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        (major, minor) >= (6, 10)
    })
}

/// Lapsing elements are gone from listings within a few ms of this.
const RETIRE_MS: u64 = 1;

fn nft_err(op: &'static str, e: nftables::helper::NftablesError) -> NetError {
    let detail = match e {
        nftables::helper::NftablesError::NftFailed {
            stderr,
            stdout,
            hint,
            ..
        } => {
            format!(
                "{hint}: {}",
                if stderr.trim().is_empty() {
                    stdout.trim().to_string()
                } else {
                    stderr.trim().to_string()
                }
            )
        }
        other => other.to_string(),
    };
    NetError::Nftables { op, detail }
}

impl Firewall for NftFirewall {
    fn port_prefix(&self) -> String {
        format!("nuc{:04x}", crate::network::fnv32(&self.table) & 0xffff)
    }

    fn teardown_network(&self, net: &Network) -> Result<()> {
        // A verb, not the start path: read first, so a network never used
        // (no table yet) tears down without a failed batch.
        if !self.list("inet")?.is_empty() {
            let chains = network_chains(&net.name);
            self.remove_named(
                "remove the network rules",
                &[&chains[0], &chains[1]],
                &[],
                &[],
            )?;
        }
        self.drop_tables_if_empty()
    }

    fn setup_container(&self, rules: &ContainerRules<'_>) -> Result<()> {
        let err = |op: &'static str, e: std::io::Error| NetError::Nftables {
            op,
            detail: format!("table {}: {e}", self.table),
        };
        let mut conn = Conn::open().map_err(|e| err("open a netlink socket", e))?;
        // The network's rules are fixed by its definition: installed by its
        // first attach, left alone after (refilling them would delete, and
        // make `nft` wait for an RCU grace period).
        let [post, fwd] = network_chains(&rules.net.name);
        let own = if rules.net.internal { fwd } else { post };
        let present = conn
            .chain_exists(Family::Inet, &self.table, &own.name)
            .unwrap_or(false);
        if !present {
            self.apply_text("install the network's rules", &self.install_text(rules.net))?;
        }
        let elems = self.container_elements(rules, None);
        let added = self.element_batch(&elems, false).commit_on(&mut conn);
        match added {
            Ok(()) => {}
            // A set is missing (tables removed under us, or made by an
            // older nucleus): install everything, then try once more.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && present => {
                self.apply_text("install the network's rules", &self.install_text(rules.net))?;
                self.element_batch(&elems, false)
                    .commit_on(&mut conn)
                    .map_err(|e| err("add the container's elements", e))?;
            }
            // A key held with other data: left by a crash between the add
            // and the record. Replace it (delete, then add).
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                tracing::debug!(id = rules.id, "replacing stale set elements");
                for one in &elems {
                    let one = std::slice::from_ref(one);
                    let _ = self.element_batch(one, true).commit_on(&mut conn);
                }
                self.element_batch(&elems, false)
                    .commit_on(&mut conn)
                    .map_err(|e| err("add the container's elements", e))?;
            }
            Err(e) => return Err(err("add the container's elements", e)),
        }
        if !rules.egress.is_active() {
            return Ok(());
        }
        let mut cmds = self.tables();
        cmds.extend(self.container_rules(rules));
        self.apply("install the container's rules", cmds)
    }

    fn teardown_container(&self, rules: &ContainerRules<'_>) -> Result<()> {
        self.retire_elements(rules)?;
        if rules.egress.is_active() {
            self.remove_container_chains(rules.id)?;
        }
        Ok(())
    }

    fn allow_addresses(&self, id: &str, addrs: &[(IpAddr, u32)]) -> Result<()> {
        let mut batch = Batch::default();
        for v6 in [false, true] {
            let elems: Vec<(IpAddr, u32)> = addrs
                .iter()
                .filter(|(a, _)| a.is_ipv6() == v6)
                .map(|(a, ttl)| (*a, set_timeout(*ttl)))
                .collect();
            if elems.is_empty() {
                continue;
            }
            let set = set_of(id, v6);
            // Delete first so a repeated answer refreshes the timeout; the
            // add before it (a no-op when present) makes the delete harmless.
            batch.set_elements(&self.table, &set, &elems, false);
            batch.set_elements(&self.table, &set, &elems, true);
            batch.set_elements(&self.table, &set, &elems, false);
        }
        if batch.is_empty() {
            return Ok(());
        }
        let mut kept = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        let conn = match kept.as_mut() {
            Some(c) => c,
            None => kept.insert(Conn::open().map_err(|e| NetError::Nftables {
                op: "open a netlink socket for the egress sets",
                detail: e.to_string(),
            })?),
        };
        let result = batch.commit_on(conn);
        if result.is_err() {
            // A fresh socket next time, whatever state this one is in.
            *kept = None;
        }
        result.map_err(|e| NetError::Nftables {
            op: "add resolved addresses",
            detail: format!(
                "sets {} and {} of table inet {}: {e}",
                set_of(id, false),
                set_of(id, true),
                self.table
            ),
        })
    }

    fn leftovers(&self, id: &str) -> Result<Vec<String>> {
        let tag = ctr_tag(id);
        let (a4, a6) = (set_of(id, false), set_of(id, true));
        let mut chains: Vec<String> = container_chains(id)
            .all()
            .iter()
            .map(|h| h.name.clone())
            .collect();
        chains.push(chain_of(id));
        let mut out = Vec::new();
        for family in ["inet", "bridge"] {
            for o in self.list(family)? {
                let hit = o
                    .get("rule")
                    .is_some_and(|r| r["comment"].as_str() == Some(&tag))
                    || o.get("chain")
                        .is_some_and(|c| chains.iter().any(|n| c["name"].as_str() == Some(n)))
                    || o.get("set").is_some_and(
                        |s| matches!(s["name"].as_str(), Some(n) if n == a4 || n == a6),
                    );
                let set = o.get("set").or_else(|| o.get("map"));
                if let Some(elems) = set.and_then(|s| s["elem"].as_array()) {
                    for e in elems.iter().filter(|e| has_comment(e, &tag)) {
                        out.push(format!(
                            "element of {}: {e}",
                            set.map_or(&Value::Null, |s| &s["name"])
                        ));
                    }
                }
                if hit {
                    out.push(o.to_string());
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::Lease;
    use crate::network::{Network, NetworkCreate};
    use crate::publish::PortMapping;

    /// Every document we build must parse as the nftables crate's JSON schema.
    #[test]
    fn generated_rules_follow_the_nft_json_schema() {
        let fw = NftFirewall::with_table("t");
        let req = NetworkCreate {
            name: "n".into(),
            subnets: vec!["10.5.0.0/24".into(), "fd00:5::/64".into()],
            ..Default::default()
        };
        let net = Network::from_request(&req, &[]).unwrap();
        let lease = Lease {
            ipv4: Some("10.5.0.2".parse().unwrap()),
            ipv6: Some("fd00:5::2".parse().unwrap()),
            name: None,
        };
        let egress = EgressPolicy::from_flags(
            &["198.18.0.0/15:80/tcp".into()],
            &["198.19.0.0/16".into()],
            false,
            &["allowed.test".into()],
        )
        .unwrap();
        let publish = [
            PortMapping::parse("127.0.0.1:8080:80").unwrap(),
            PortMapping::parse("9090:90/udp").unwrap(),
        ];
        let rules = ContainerRules {
            id: "c1",
            net: &net,
            host_veth: "nuc1",
            lease: &lease,
            publish: &publish,
            egress: &egress,
            resolver_port: Some(5353),
            log_group: Some(7),
        };
        let mut cmds = fw.tables();
        cmds.extend(fw.container_rules(&rules));
        let doc = json!({ "nftables": cmds });
        let parsed: std::result::Result<nftables::schema::Nftables, _> =
            serde_json::from_value(doc.clone());
        assert!(parsed.is_ok(), "{parsed:?}\n{doc:#}");
        let text = doc.to_string();
        assert!(
            text.contains("\"comment\":\"ctr=c1\"")
                && text.contains("eg-c1")
                && text.contains("@a4-c1")
        );
        assert!(text.contains("\"port\":5353") && text.contains("default-deny"));
        assert!(text.contains("\"group\":7") && text.contains("\"prefix\":\"c1:default-deny\""));
    }

    fn plain_rules<'a>(
        net: &'a Network,
        lease: &'a Lease,
        publish: &'a [PortMapping],
        egress: &'a EgressPolicy,
    ) -> ContainerRules<'a> {
        ContainerRules {
            id: "c2",
            net,
            host_veth: "nuc0000abcd",
            lease,
            publish,
            egress,
            resolver_port: Some(0x1234),
            log_group: None,
        }
    }

    /// A plain container is elements only, in the kernel's layout: fields
    /// padded to 4 bytes, ports big-endian, names NUL-padded to 16.
    #[test]
    fn a_plain_container_is_set_and_map_elements() {
        let fw = NftFirewall::with_table("t");
        let req = NetworkCreate {
            name: "n".into(),
            subnets: vec!["10.5.0.0/24".into()],
            ..Default::default()
        };
        let net = Network::from_request(&req, &[]).unwrap();
        let lease = Lease {
            ipv4: Some("10.5.0.2".parse().unwrap()),
            ipv6: None,
            name: None,
        };
        let publish = [
            PortMapping::parse("127.0.0.1:8080:80").unwrap(),
            PortMapping::parse("9090:90/udp").unwrap(),
        ];
        let egress = EgressPolicy::default();
        let rules = plain_rules(&net, &lease, &publish, &egress);
        let elems = fw.container_elements(&rules, None);
        let sets: Vec<&str> = elems.iter().map(|(_, s, _)| *s).collect();
        assert_eq!(sets, ["pp", "sp4", "dns4", "pa4", "ph4"]);
        let mut port = b"nuc0000abcd".to_vec();
        port.resize(16, 0);
        assert_eq!(elems[0].2.key, port);
        port.extend([10, 5, 0, 2]);
        assert_eq!(elems[1].2.key, port);
        assert_eq!(elems[2].2.key, [10, 5, 0, 2, 10, 5, 0, 1]);
        assert_eq!(
            elems[2].2.data.as_deref(),
            Some(&[10, 5, 0, 1, 0x12, 0x34, 0, 0][..])
        );
        assert_eq!(elems[3].2.key, [127, 0, 0, 1, 6, 0, 0, 0, 0x1f, 0x90, 0, 0]);
        assert_eq!(elems[4].2.key, [17, 0, 0, 0, 0x23, 0x82, 0, 0]);
        assert_eq!(
            elems[4].2.data.as_deref(),
            Some(&[10, 5, 0, 2, 0, 90, 0, 0][..])
        );
        assert!(elems
            .iter()
            .all(|(_, _, e)| e.comment.as_deref() == Some("ctr=c2") && e.timeout_ms.is_none()));
        // Retiring sends the same elements with a 1 ms timeout.
        let retired = fw.container_elements(&rules, Some(RETIRE_MS));
        assert!(retired
            .iter()
            .zip(&elems)
            .all(|(r, e)| r.2.key == e.2.key && r.2.data == e.2.data && r.2.timeout_ms == Some(1)));
        // An egress container keeps only its anti-spoofing elements.
        let egress = EgressPolicy::from_flags(&["198.18.0.0/15".into()], &[], false, &[]).unwrap();
        let rules = plain_rules(&net, &lease, &publish, &egress);
        let sets: Vec<&str> = fw
            .container_elements(&rules, None)
            .iter()
            .map(|(_, s, _)| *s)
            .collect();
        assert_eq!(sets, ["pp", "sp4"]);
    }

    #[test]
    fn listed_elements_are_told_live_or_lapsing_and_by_owner() {
        let live: Value =
            serde_json::from_str(r#"{"elem": {"val": "nuc1", "comment": "ctr=a"}}"#).unwrap();
        let lapsing: Value = serde_json::from_str(
            r#"[{"elem": {"val": 1, "timeout": 0, "expires": 0, "comment": "ctr=a"}}, 2]"#,
        )
        .unwrap();
        assert!(is_live(&live) && !is_live(&lapsing) && is_live(&json!("nuc2")));
        assert!(has_comment(&live, "ctr=a") && has_comment(&lapsing, "ctr=a"));
        assert!(!has_comment(&live, "ctr=b"));
    }
}
