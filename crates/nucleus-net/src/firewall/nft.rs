//! The nftables driver: one `inet` table (NAT, published ports, egress) and
//! one `bridge` table of the same name (anti-spoofing on the veth ports),
//! applied as JSON batches through the `nftables` crate (`nft -j -f -`).
//!
//! Every network and every container owns its own base chains, so each is
//! installed by one batch (add, flush, fill) and removed by one batch (add,
//! flush, delete) by name, without reading the ruleset first: one `nft`
//! run per attach and one per detach.
//!
//! ```text
//! table inet nucleus
//!   n-post-NET  nat/postrouting 100  masquerade per network; 127.0.0.0/8 -> bridge (route_localnet)
//!   n-fwd-NET   filter/forward 0     internal networks
//!   c-pre-ID    nat/prerouting -100  published ports, DNS redirect to the resolver
//!   c-out-ID    nat/output -100      published ports for the host's own connections (127.0.0.1)
//!   c-fwd-ID    filter/forward 0     `ip saddr LEASE jump eg-ID`
//!   c-in-ID     filter/input 0       `ip saddr LEASE jump eg-ID` (the host is outside too)
//!   eg-ID       the container's egress rules; sets a4-ID/a6-ID (timeout) of resolved addresses
//! table bridge nucleus
//!   c-sp-ID     filter/prerouting -200  frames from a veth must carry its leased source address
//! ```
//! Egress is enforced on the host, keyed by a source address the bridge
//! table makes unforgeable, so nothing inside the container can lift it.
//! A drop or reject in any base chain is final, so splitting the chains
//! changes no verdict.

use super::netlink::{Batch, Conn, Family};
use super::{ContainerRules, Firewall};
use crate::egress::{CidrRule, EgressPolicy, Proto};
use crate::error::{NetError, Result};
use crate::network::Network;
use ipnet::IpNet;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

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

/// The base chains of a container, in the order `ContainerChains` names them.
fn container_chains(id: &str) -> ContainerChains {
    ContainerChains {
        spoof: Hooked::new("bridge", format!("c-sp-{id}"), "filter", "prerouting", -200),
        pre: Hooked::new("inet", format!("c-pre-{id}"), "nat", "prerouting", -100),
        out: Hooked::new("inet", format!("c-out-{id}"), "nat", "output", -100),
        fwd: Hooked::new("inet", format!("c-fwd-{id}"), "filter", "forward", 0),
        input: Hooked::new("inet", format!("c-in-{id}"), "filter", "input", 0),
    }
}

struct ContainerChains {
    spoof: Hooked,
    pre: Hooked,
    out: Hooked,
    fwd: Hooked,
    input: Hooked,
}

impl ContainerChains {
    fn all(&self) -> [&Hooked; 5] {
        [&self.spoof, &self.pre, &self.out, &self.fwd, &self.input]
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

    /// Remove both tables once nothing of ours is left in them.
    fn drop_tables_if_empty(&self) -> Result<()> {
        let mut cmds = Vec::new();
        for family in ["inet", "bridge"] {
            let objs = self.list(family)?;
            if objs.is_empty() {
                continue;
            }
            let in_use = objs.iter().any(|o| {
                o.get("rule").is_some() || o.get("set").is_some() || o.get("chain").is_some()
            });
            if !in_use {
                cmds.push(json!({"delete": {"table": {"family": family, "name": self.table}}}));
            }
        }
        self.apply("remove the table", cmds)
    }

    /// The network's chains, emptied and filled again (idempotent).
    fn network_rules(&self, net: &Network) -> Vec<Value> {
        let tag = net_tag(&net.name);
        let br = json!(net.bridge);
        let [post, fwd] = network_chains(&net.name);
        let mut cmds = Vec::new();
        if net.internal {
            cmds.extend(self.fresh(&fwd));
            for (a, b) in [("iifname", "oifname"), ("oifname", "iifname")] {
                let expr = vec![
                    m(meta(a), "==", br.clone()),
                    m(meta(b), "!=", br.clone()),
                    json!({"drop": null}),
                ];
                cmds.push(self.rule("inet", &fwd.name, expr, &tag));
            }
            return cmds;
        }
        cmds.extend(self.fresh(&post));
        for s in net.subnets() {
            let f = fam(s.addr());
            let expr = vec![
                m(payload(f, "saddr"), "==", addr(s)),
                m(meta("oifname"), "!=", br.clone()),
                json!({"masquerade": null}),
            ];
            cmds.push(self.rule("inet", &post.name, expr, &tag));
        }
        // Published on 127.0.0.1: the host's own connection leaves with a
        // loopback source (allowed by route_localnet); rewrite it so the
        // container can answer.
        let lo = vec![
            m(meta("oifname"), "==", br.clone()),
            m(
                payload("ip", "saddr"),
                "==",
                json!({"prefix": {"addr": "127.0.0.0", "len": 8}}),
            ),
            json!({"masquerade": null}),
        ];
        cmds.push(self.rule("inet", &post.name, lo, &tag));
        let lo6 = vec![
            m(meta("oifname"), "==", br),
            m(payload("ip6", "saddr"), "==", json!("::1")),
            json!({"masquerade": null}),
        ];
        cmds.push(self.rule("inet", &post.name, lo6, &tag));
        cmds
    }

    fn container_rules(&self, r: &ContainerRules<'_>) -> Vec<Value> {
        let tag = ctr_tag(r.id);
        let br = json!(r.net.bridge);
        let veth = json!(r.host_veth);
        let chains = container_chains(r.id);
        let mut cmds = Vec::new();
        for h in chains.all() {
            cmds.extend(self.fresh(h));
        }
        // Anti-spoofing: the source address is what egress is keyed on.
        let v4 = match r.lease.ipv4 {
            Some(a) => m(payload("ip", "saddr"), "!=", json!(a.to_string())),
            None => json!({"match": {"op": "==", "left": meta("nfproto"), "right": "ipv4"}}),
        };
        let ether = |t: &str| m(payload("ether", "type"), "==", json!(t));
        cmds.push(self.rule(
            "bridge",
            &chains.spoof.name,
            vec![
                m(meta("iifname"), "==", veth.clone()),
                ether("ip"),
                v4,
                json!({"drop": null}),
            ],
            &tag,
        ));
        let mut own6 = vec![
            json!({"prefix": {"addr": "fe80::", "len": 10}}),
            json!("::"),
        ];
        own6.extend(r.lease.ipv6.map(|a| json!(a.to_string())));
        let v6 = m(payload("ip6", "saddr"), "!=", json!({ "set": own6 }));
        cmds.push(self.rule(
            "bridge",
            &chains.spoof.name,
            vec![
                m(meta("iifname"), "==", veth),
                ether("ip6"),
                v6,
                json!({"drop": null}),
            ],
            &tag,
        ));

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
        let mut cmds = self.tables();
        // The network's chain is filled from its (unchangeable) definition:
        // when it is there, refilling it would only delete and re-add the
        // same rules, and a transaction that deletes makes `nft` wait for
        // an RCU grace period on exit. A failed check just refills.
        let [post, fwd] = network_chains(&rules.net.name);
        let own = if rules.net.internal { fwd } else { post };
        let present = Conn::open()
            .and_then(|mut c| c.chain_exists(Family::Inet, &self.table, &own.name))
            .unwrap_or(false);
        if !present {
            cmds.extend(self.network_rules(rules.net));
        }
        cmds.extend(self.container_rules(rules));
        self.apply("install the container's rules", cmds)
    }

    fn teardown_container(&self, id: &str, egress: bool) -> Result<()> {
        let chains = container_chains(id);
        // What setup installed, removed by name in-process in one
        // transaction; it fails as a whole when something is missing (a
        // crash during setup, a second detach), and then the slower batch
        // below, which creates each object before deleting it, does it.
        let mut batch = Batch::default();
        for h in chains.all() {
            batch.flush_chain(Family::parse(h.family), &self.table, &h.name);
        }
        if egress {
            batch.flush_chain(Family::Inet, &self.table, &chain_of(id));
        }
        for h in chains.all() {
            batch.delete_chain(Family::parse(h.family), &self.table, &h.name);
        }
        if egress {
            batch.delete_chain(Family::Inet, &self.table, &chain_of(id));
            for v6 in [false, true] {
                batch.delete_set(Family::Inet, &self.table, &set_of(id, v6));
            }
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
        cmds.extend(fw.network_rules(&net));
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
}
