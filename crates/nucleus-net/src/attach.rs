//! The two entry points, `attach` and `detach`, symmetric, plus the network
//! verbs. What `attach` will install is recorded before it is installed, so
//! `detach` (or `reconcile` after a `kill -9`) can remove it from the record.

use crate::dns::{Resolver, ResolverConfig};
use crate::egress::EgressPolicy;
use crate::error::{NetError, Result};
use crate::etc_files::{self, DnsOptions};
use crate::events::{self, EgressEvent, EventSink};
use crate::firewall::{ContainerRules, Firewall};
use crate::ipam::{self, Lease};
use crate::link;
use crate::netns;
use crate::network::{fnv32, Network, NetworkCreate, DEFAULT_NETWORK};
use crate::nflog::NflogListener;
use crate::proxy;
use crate::publish::PortMapping;
use crate::side_task::SideTask;
use crate::store::{self, Store};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One container joining one network.
#[derive(Debug, Clone)]
pub struct AttachRequest {
    pub id: String,
    /// Its name on the network (peers resolve it).
    pub name: Option<String>,
    pub hostname: String,
    pub network: String,
    /// The container's init: its network namespace is configured, its
    /// start time makes the record's liveness check exact.
    pub pid: u32,
    /// The network namespace to configure when it is not `pid`'s (one made
    /// ahead of a gVisor sandbox, whose `pid` is then the process that
    /// lives as long as the container).
    pub netns: Option<PathBuf>,
    pub publish: Vec<PortMapping>,
    pub egress: EgressPolicy,
    pub dns: DnsOptions,
    /// The host's resolver list, read when `--dns` is not given.
    pub host_resolv_conf: PathBuf,
    /// Where denials are appended; `None`: `networks/events/<id>.jsonl`.
    /// A front end that removes the container's directory with the
    /// container puts it there, so its denials outlive the network but not the container.
    pub events_path: Option<PathBuf>,
}

impl AttachRequest {
    pub fn new(id: &str, network: &str, pid: u32) -> AttachRequest {
        AttachRequest {
            id: id.into(),
            name: None,
            hostname: id.chars().take(12).collect(),
            network: network.into(),
            pid,
            netns: None,
            publish: Vec::new(),
            egress: EgressPolicy::default(),
            dns: DnsOptions::default(),
            host_resolv_conf: PathBuf::from("/etc/resolv.conf"),
            events_path: None,
        }
    }
}

/// What was installed for a container: `attachments/<id>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub id: String,
    pub network: String,
    pub bridge: String,
    pub host_veth: String,
    pub lease: Lease,
    pub publish: Vec<PortMapping>,
    pub egress: EgressPolicy,
    pub pid: u32,
    /// `/proc/<pid>/stat` field 22, so a reused pid is not mistaken for the container.
    pub pid_start: u64,
    pub resolver_port: Option<u16>,
    /// The NFLOG group its refused connections are logged to.
    #[serde(default)]
    pub log_group: Option<u16>,
    /// Where its denials are recorded.
    #[serde(default)]
    pub events_path: Option<PathBuf>,
    /// Its namespace was made ahead (not its pid's own), so it can outlive the pid.
    #[serde(default)]
    pub netns_made: bool,
    /// The generated `/etc/hosts` and `/etc/resolv.conf`.
    pub hosts: String,
    pub resolv_conf: String,
}

/// `attach`'s result: the record, and the side task (resolver, proxies)
/// to run for the container's lifetime (in the monitor, or the foreground runtime).
#[derive(Debug)]
pub struct Attached {
    pub attachment: Attachment,
    pub side_task: SideTask,
}

/// An attach done as far as it can go without the container's process
/// (see [`Networking::prepare`]); finished by [`Networking::complete`],
/// undone by [`Networking::abandon`].
#[derive(Debug)]
pub struct Prepared {
    net: Network,
    record: Attachment,
    /// The bridge's link index.
    bridge: u32,
    side_task: SideTask,
}

/// `network inspect`: the definition and who is on it.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkInfo {
    #[serde(flatten)]
    pub network: Network,
    pub containers: Vec<(String, Lease)>,
}

/// `network prune`: what was repaired and removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    pub detached: Vec<String>,
    pub removed_networks: Vec<String>,
}

/// Networking on one data root with one firewall driver.
#[derive(Debug, Clone)]
pub struct Networking {
    store: Store,
    fw: Arc<dyn Firewall>,
}

/// The host end of the veth: the firewall's port prefix and 8 hex digits
/// of the id (15 characters, IFNAMSIZ - 1). The peer is made as `eth0`
/// inside the container's namespace.
fn host_veth_name(prefix: &str, id: &str) -> String {
    format!("{prefix}{:08x}", fnv32(id))
}

/// The container's end of the veth, inside its namespace.
const CONTAINER_IFNAME: &str = "eth0";

/// `/proc/<pid>/stat` field 22 (start time in clock ticks).
pub fn pid_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

impl Attachment {
    /// Is the container this record was made for still running?
    pub fn is_alive(&self) -> bool {
        pid_start_time(self.pid) == Some(self.pid_start)
    }
}

impl Networking {
    pub fn new(data_root: &Path, fw: Arc<dyn Firewall>) -> Result<Networking> {
        Ok(Networking {
            store: Store::open(data_root)?,
            fw,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn firewall(&self) -> &Arc<dyn Firewall> {
        &self.fw
    }

    fn load_networks(&self) -> Result<Vec<Network>> {
        let mut out = Vec::new();
        for name in store::list_json(&self.store.defs_dir())? {
            if let Some(n) = store::read_json::<Network>(&self.store.def_path(&name))? {
                out.push(n);
            }
        }
        Ok(out)
    }

    pub fn create_network(&self, req: &NetworkCreate) -> Result<Network> {
        let _lock = self.store.lock()?;
        let mut existing = self.load_networks()?;
        if !existing.iter().any(|n| n.name == DEFAULT_NETWORK) {
            existing.push(Network::default_bridge());
        }
        let net = Network::from_request(req, &existing)?;
        store::write_json(&self.store.def_path(&net.name), &net)?;
        Ok(net)
    }

    /// Every network, the default one included.
    pub fn networks(&self) -> Result<Vec<Network>> {
        let mut all = self.load_networks()?;
        if !all.iter().any(|n| n.name == DEFAULT_NETWORK) {
            all.insert(0, Network::default_bridge());
        }
        Ok(all)
    }

    pub fn network(&self, name: &str) -> Result<Network> {
        match store::read_json::<Network>(&self.store.def_path(name))? {
            Some(n) => Ok(n),
            None if name == DEFAULT_NETWORK => Ok(Network::default_bridge()),
            None => Err(NetError::NetworkNotFound { name: name.into() }),
        }
    }

    pub fn inspect(&self, name: &str) -> Result<NetworkInfo> {
        let network = self.network(name)?;
        let containers = ipam::load(&self.store, name)?.into_iter().collect();
        Ok(NetworkInfo {
            network,
            containers,
        })
    }

    pub fn attachment(&self, id: &str) -> Result<Option<Attachment>> {
        store::read_json(&self.store.attachment_path(id))
    }

    /// The denials recorded for `id` (where its record says, else the store's file).
    pub fn events(&self, id: &str) -> Result<Vec<EgressEvent>> {
        let path = self
            .attachment(id)?
            .and_then(|a| a.events_path)
            .unwrap_or_else(|| self.store.events_path(id));
        events::read(&path)
    }

    /// Remove a network nobody is attached to: its rules, bridge and records.
    pub fn remove_network(&self, name: &str) -> Result<()> {
        let _lock = self.store.lock()?;
        self.reconcile_locked(&|a: &Attachment| a.is_alive())?;
        let net = self.network(name)?;
        if net.name == DEFAULT_NETWORK {
            return Err(NetError::invalid(
                "network",
                name,
                "the default network cannot be removed",
            ));
        }
        self.remove_network_locked(&net)
    }

    fn remove_network_locked(&self, net: &Network) -> Result<()> {
        let leases = ipam::load(&self.store, &net.name)?;
        if !leases.is_empty() {
            let containers = leases.keys().cloned().collect::<Vec<_>>().join(", ");
            return Err(NetError::NetworkInUse {
                name: net.name.clone(),
                containers,
            });
        }
        self.fw.teardown_network(net)?;
        link::delete(&net.bridge)?;
        store::remove_file(&self.store.leases_path(&net.name))?;
        store::remove_file(&self.store.def_path(&net.name))
    }

    /// Detach every container whose record says it is gone.
    pub fn reconcile(&self) -> Result<Vec<String>> {
        let _lock = self.store.lock()?;
        self.reconcile_locked(&|a: &Attachment| a.is_alive())
    }

    fn reconcile_locked(&self, alive: &dyn Fn(&Attachment) -> bool) -> Result<Vec<String>> {
        let mut gone = Vec::new();
        for id in store::list_json(&self.store.attachments_dir())? {
            let Some(a) = self.attachment(&id)? else {
                continue;
            };
            if !alive(&a) {
                tracing::debug!(id = %a.id, "repairing the network state of a container that is gone");
                self.detach_record(&a)?;
                gone.push(a.id);
            }
        }
        // Leases without a record: a crash between lease and record.
        for net in self
            .load_networks()?
            .into_iter()
            .chain([Network::default_bridge()])
        {
            for id in ipam::load(&self.store, &net.name)?.keys() {
                if self.attachment(id)?.is_none() {
                    ipam::release(&self.store, &net.name, id)?;
                    gone.push(id.clone());
                }
            }
        }
        Ok(gone)
    }

    /// Repair after crashes, then remove user-defined networks nobody uses.
    pub fn prune(&self) -> Result<PruneReport> {
        let _lock = self.store.lock()?;
        let detached = self.reconcile_locked(&|a: &Attachment| a.is_alive())?;
        let mut removed_networks = Vec::new();
        for net in self.load_networks()? {
            if net.name != DEFAULT_NETWORK && ipam::load(&self.store, &net.name)?.is_empty() {
                self.remove_network_locked(&net)?;
                removed_networks.push(net.name);
            }
        }
        Ok(PruneReport {
            detached,
            removed_networks,
        })
    }

    /// Join the container whose init is `req.pid` to `req.network`. Runs
    /// before the workload: link, addresses, routes, rules, resolver socket.
    pub fn attach(&self, req: AttachRequest) -> Result<Attached> {
        let owner = AttachRequest {
            pid: std::process::id(),
            ..req.clone()
        };
        let prepared = self.prepare(&owner)?;
        self.complete(prepared, req.pid, req.netns)
    }

    /// The part of an attach that needs no container process: the lease,
    /// the record, the bridge, the rules (they name the veth, which need
    /// not exist yet) and the resolver's sockets. `req.pid` is the process
    /// that owns the attachment until [`Networking::complete`] hands it to
    /// the container: a crash before then leaves a record whose owner is
    /// gone, which `reconcile` repairs. Run ahead, while the runtime still
    /// builds the container, this work costs the start path nothing.
    pub fn prepare(&self, req: &AttachRequest) -> Result<Prepared> {
        let t0 = std::time::Instant::now();
        let _lock = self.store.lock()?;
        self.reconcile_locked(&|a: &Attachment| a.is_alive())?;
        if self.attachment(&req.id)?.is_some() {
            return Err(NetError::AlreadyAttached {
                id: req.id.clone(),
                network: req.network.clone(),
            });
        }
        let net = self.network(&req.network)?;
        if net.internal && !req.publish.is_empty() {
            return Err(NetError::invalid(
                "--publish",
                req.network.clone(),
                "an internal network has no published ports",
            ));
        }
        let mut publish = req.publish.clone();
        let others: Vec<Attachment> = store::list_json(&self.store.attachments_dir())?
            .iter()
            .filter_map(|id| self.attachment(id).ok().flatten())
            .collect();
        for p in &mut publish {
            p.resolve_host_port()?;
            if others
                .iter()
                .flat_map(|a| a.publish.iter())
                .any(|o| o.conflicts_with(p))
            {
                let ip = p.host_ip.map_or("0.0.0.0".to_string(), |i| i.to_string());
                return Err(NetError::PortTaken {
                    addr: format!("{ip}:{}/{}", p.host_port, p.proto.as_str()),
                });
            }
        }
        let pid_start = pid_start_time(req.pid).ok_or_else(|| {
            NetError::invalid(
                "attachment owner pid",
                req.pid.to_string(),
                "no such process",
            )
        })?;
        if net.name == DEFAULT_NETWORK && !self.store.def_path(DEFAULT_NETWORK).exists() {
            store::write_json(&self.store.def_path(DEFAULT_NETWORK), &net)?;
        }
        let lease = ipam::allocate(&self.store, &net, &req.id, req.name.as_deref())?;
        let host_veth = host_veth_name(&self.fw.port_prefix(), &req.id);
        let mut record = Attachment {
            id: req.id.clone(),
            network: net.name.clone(),
            bridge: net.bridge.clone(),
            host_veth,
            lease,
            publish,
            egress: req.egress.clone(),
            pid: req.pid,
            pid_start,
            resolver_port: None,
            log_group: None,
            events_path: req.events_path.clone(),
            netns_made: false,
            hosts: String::new(),
            resolv_conf: String::new(),
        };
        // Recorded before anything is made, so a crash from here on is repairable.
        store::write_state(&self.store.attachment_path(&req.id), &record)?;
        let t_records = t0.elapsed();
        match self.install_host_side(&net, req, &mut record) {
            Ok((bridge, side_task)) => {
                tracing::debug!(
                    id = %req.id,
                    records_us = t_records.as_micros(),
                    host_side_us = (t0.elapsed() - t_records).as_micros(),
                    "network attach prepared"
                );
                Ok(Prepared {
                    net,
                    record,
                    bridge,
                    side_task,
                })
            }
            Err(e) => {
                self.undo_locked(&record);
                Err(e)
            }
        }
    }

    /// Finish a prepared attach for the container whose init is `pid`
    /// (whose namespace is `netns` when it was made ahead): its link,
    /// addresses and routes. The record then names the container.
    pub fn complete(
        &self,
        prepared: Prepared,
        pid: u32,
        netns: Option<PathBuf>,
    ) -> Result<Attached> {
        let Prepared {
            net,
            mut record,
            bridge,
            side_task,
        } = prepared;
        match self.install_link(&net, &mut record, bridge, pid, netns) {
            Ok(()) => Ok(Attached {
                attachment: record,
                side_task,
            }),
            Err(e) => {
                drop(side_task);
                self.abandon_record(&record);
                Err(e)
            }
        }
    }

    /// Undo a prepared attach whose container never started.
    pub fn abandon(&self, prepared: Prepared) {
        let Prepared {
            record, side_task, ..
        } = prepared;
        drop(side_task);
        self.abandon_record(&record);
    }

    fn abandon_record(&self, record: &Attachment) {
        match self.store.lock() {
            Ok(_lock) => self.undo_locked(record),
            Err(e) => {
                tracing::warn!(id = %record.id, error = %e, "cleanup after a failed attach also failed")
            }
        }
    }

    fn undo_locked(&self, record: &Attachment) {
        if let Err(cleanup) = self.detach_record(record) {
            tracing::warn!(id = %record.id, error = %cleanup, "cleanup after a failed attach also failed");
        }
    }

    /// The bridge, forwarding, the resolver, the NFLOG listener, the
    /// rules and the `::1` proxies: everything on the host's side.
    fn install_host_side(
        &self,
        net: &Network,
        req: &AttachRequest,
        rec: &mut Attachment,
    ) -> Result<(u32, SideTask)> {
        let bridge = link::Netlink::open()?.ensure_bridge(net)?;
        crate::sysctl::enable_forwarding(net)?;
        let gateways: Vec<IpAddr> = net
            .gateway4()
            .map(IpAddr::V4)
            .into_iter()
            .chain(net.gateway6().map(IpAddr::V6))
            .collect();
        let upstreams = if req.dns.servers.is_empty() {
            etc_files::host_resolvers(&req.host_resolv_conf)?
        } else {
            req.dns.servers.iter().map(|s| (*s, 53).into()).collect()
        };
        let mut blocked: Vec<IpNet> = Vec::new();
        for n in self.networks()? {
            blocked.extend(n.subnets());
        }
        let sink = EventSink::new(
            req.events_path
                .clone()
                .unwrap_or_else(|| self.store.events_path(&req.id)),
            &req.id,
        );
        let config = ResolverConfig {
            container_id: req.id.clone(),
            policy: req.egress.clone(),
            upstreams,
            peers: net
                .dns_names
                .then(|| (self.store.clone(), net.name.clone())),
            blocked,
            events: sink.clone(),
            firewall: self.fw.clone(),
            admitted: Default::default(),
        };
        // The resolver binds the gateway addresses, on the bridge by now.
        let resolver = Resolver::bind(&gateways, config)?;
        rec.resolver_port = Some(resolver.port());
        // Refused connections are logged to a group of the container's own.
        // Without one (no NFLOG in this kernel) the policy still holds; only
        // the connect events are missing, and the record says so.
        let nflog = if req.egress.is_active() {
            match NflogListener::bind(&req.id, sink) {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::warn!(id = %req.id, error = %e, "no events for refused connections");
                    None
                }
            }
        } else {
            None
        };
        rec.log_group = nflog.as_ref().map(NflogListener::group);
        // Rewritten first: the rules' teardown needs the resolver port and group.
        store::write_state(&self.store.attachment_path(&rec.id), rec)?;
        // The rules name the veth and the lease, not the link itself, so
        // they go in before the link exists; the bridge drops whatever a
        // port of ours sends before its elements are in.
        let rules = ContainerRules {
            id: &rec.id,
            net,
            host_veth: &rec.host_veth,
            lease: &rec.lease,
            publish: &rec.publish,
            egress: &req.egress,
            resolver_port: rec.resolver_port,
            log_group: rec.log_group,
        };
        self.fw.setup_container(&rules)?;
        rec.hosts = etc_files::hosts(&req.hostname, &rec.lease.addrs(), &req.dns);
        rec.resolv_conf = etc_files::resolv_conf(&gateways, &req.dns);
        let proxies = proxy::bind_loopback6(&rec.publish, &rec.lease)?;
        Ok((
            bridge,
            SideTask {
                resolver: Some(resolver),
                proxies,
                nflog,
            },
        ))
    }

    /// The veth, made with its peer inside the container's namespace, and
    /// the container's addresses and routes; then the record names it.
    fn install_link(
        &self,
        net: &Network,
        rec: &mut Attachment,
        bridge: u32,
        pid: u32,
        netns: Option<PathBuf>,
    ) -> Result<()> {
        let pid_start = pid_start_time(pid).ok_or_else(|| {
            NetError::invalid("container pid", pid.to_string(), "no such process")
        })?;
        rec.pid = pid;
        rec.pid_start = pid_start;
        rec.netns_made = netns.is_some();
        let path = self.store.attachment_path(&rec.id);
        // A namespace made ahead outlives its pid, so its veth is not left
        // to the kernel: record it before the link exists. Otherwise the
        // record is rewritten while the link is made (a crash meanwhile
        // leaves a record of a dead owner or of the init: both repairable).
        if rec.netns_made {
            store::write_state(&path, rec)?;
        }
        let t0 = std::time::Instant::now();
        let ns = netns.unwrap_or_else(|| netns::of_pid(pid));
        let snapshot = (!rec.netns_made).then(|| rec.clone());
        let (links, recorded) = std::thread::scope(|s| {
            let recorded = snapshot
                .as_ref()
                .map(|r| s.spawn(|| store::write_state(&path, r)));
            let links = link::Netlink::open().and_then(|nl| {
                nl.create_veth(&rec.host_veth, CONTAINER_IFNAME, bridge, net.mtu, &ns)?;
                let t_veth = t0.elapsed();
                link::configure_container(&ns, CONTAINER_IFNAME, net, &rec.lease)?;
                Ok((t_veth, t0.elapsed()))
            });
            let recorded = recorded.map_or(Ok(()), |h| {
                h.join().unwrap_or_else(|_| {
                    Err(NetError::invalid(
                        "attachment record",
                        rec.id.clone(),
                        "the thread writing it panicked",
                    ))
                })
            });
            (links, recorded)
        });
        let (t_veth, t_conf) = links?;
        recorded?;
        tracing::debug!(
            id = %rec.id,
            veth_us = t_veth.as_micros(),
            netns_us = (t_conf - t_veth).as_micros(),
            total_us = t0.elapsed().as_micros(),
            "network attach after clone"
        );
        Ok(())
    }

    /// Undo `attach`. The caller stops the resolver (dropping its handle).
    pub fn detach(&self, id: &str) -> Result<()> {
        let _lock = self.store.lock()?;
        match self.attachment(id)? {
            Some(a) => self.detach_record(&a),
            None => Ok(()),
        }
    }

    fn detach_record(&self, a: &Attachment) -> Result<()> {
        let t0 = std::time::Instant::now();
        // The link goes before its filter: once the veth is gone nothing
        // can reach the container, so retiring its elements (or chains)
        // never leaves an unfiltered way in or out. Deleting the host end
        // deletes its peer in the container too. A plain container whose
        // init is gone needs no delete (10-30 ms of grace periods): the
        // kernel removes the pair with the namespace, and until then the
        // bridge drops whatever comes from a port without an element.
        // Not for a namespace made ahead (gVisor), which outlives its pid.
        let left_to_kernel = !a.egress.is_active() && !a.netns_made && !a.is_alive();
        if !left_to_kernel {
            link::delete(&a.host_veth)?;
        }
        let t_link = t0.elapsed();
        let net = self.network(&a.network)?;
        let rules = ContainerRules {
            id: &a.id,
            net: &net,
            host_veth: &a.host_veth,
            lease: &a.lease,
            publish: &a.publish,
            egress: &a.egress,
            resolver_port: a.resolver_port,
            log_group: a.log_group,
        };
        self.fw.teardown_container(&rules)?;
        let t_fw = t0.elapsed();
        ipam::release(&self.store, &a.network, &a.id)?;
        store::remove_file(&self.store.events_path(&a.id))?;
        store::remove_file(&self.store.attachment_path(&a.id))?;
        tracing::debug!(
            id = %a.id,
            veth_us = t_link.as_micros(),
            firewall_us = (t_fw - t_link).as_micros(),
            records_us = (t0.elapsed() - t_fw).as_micros(),
            "network detach"
        );
        Ok(())
    }
}
