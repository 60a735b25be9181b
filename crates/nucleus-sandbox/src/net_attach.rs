//! Attached networks (`bridge` or a network's name), through nucleus-net:
//! the network attachment step that joins the container before its
//! workload runs, writes the generated `/etc/hosts` and `/etc/resolv.conf`
//! into the bundle (bound read-only into the container), runs the resolver
//! beside the container, and detaches when dropped, after the run.
//!
//! A detached run's monitor attaches in its own process: the run writes a
//! [`NetPlan`] to `<bundle>/network.json` and the monitor reads it back.

use crate::error::{Field, Result, SandboxError};
use crate::network::{AttachContext, NetworkAttach};
use crate::spec::{NetOptions, Network, SandboxSpec};
use nucleus_net::{
    AttachRequest, Attached, DnsOptions, EgressPolicy, Firewall, NetError, Networking, NftFirewall,
    PortMapping, Prepared, SideTaskHandle,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// In a detached run's bundle: the plan its monitor attaches with.
pub const NET_PLAN_FILE: &str = "network.json";
/// In the bundle: the container's egress denials, one JSON object a line;
/// removed with the container, read by `events --denials` and `inspect`.
pub const EVENTS_FILE: &str = "egress-events.jsonl";

/// Where networks live: the data root, and the nftables table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkStore {
    pub data_root: PathBuf,
    /// `None` for nucleus-net's default table.
    pub nft_table: Option<String>,
}

impl NetworkStore {
    /// `NUCLEUS_NFT_TABLE` names another table (tests run side by side).
    pub fn from_env(data_root: &Path) -> NetworkStore {
        NetworkStore {
            data_root: data_root.to_path_buf(),
            nft_table: std::env::var("NUCLEUS_NFT_TABLE").ok(),
        }
    }

    pub fn networking(&self) -> std::result::Result<Networking, NetError> {
        let fw: Arc<dyn Firewall> = match &self.nft_table {
            Some(t) => Arc::new(NftFirewall::with_table(t)),
            None => Arc::new(NftFirewall::default()),
        };
        Networking::new(&self.data_root, fw)
    }
}

/// Everything an attachment needs besides the container itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetPlan {
    pub store: NetworkStore,
    pub network: String,
    pub name: Option<String>,
    pub hostname: Option<String>,
    pub options: NetOptions,
}

impl NetPlan {
    /// `None` unless the spec asks for an attached network.
    pub fn for_spec(spec: &SandboxSpec, store: Option<&NetworkStore>) -> Result<Option<NetPlan>> {
        let Network::Attached(network) = &spec.network else {
            return Ok(None);
        };
        let Some(store) = store else {
            return Err(SandboxError::invalid(
                Field::Network,
                network,
                "this front end has no network store",
            ));
        };
        Ok(Some(NetPlan {
            store: store.clone(),
            network: network.clone(),
            name: spec.name.clone(),
            hostname: spec.hostname.clone(),
            options: spec.net.clone(),
        }))
    }

    /// `-P`: publish each of the image's `ExposedPorts` (`80/tcp`, `53/udp`,
    /// `8080`) that `-p` does not already publish, on a free host port.
    /// Returns whether any was added.
    pub fn publish_exposed(&mut self, exposed: &[String]) -> Result<bool> {
        let mut added = false;
        for e in exposed {
            let m = PortMapping::parse(e).map_err(|_| {
                SandboxError::invalid(
                    Field::PublishAll,
                    e,
                    "the image's ExposedPorts entry is not PORT[/tcp|udp]",
                )
            })?;
            if m.host_ip.is_some() || m.host_port != 0 {
                return Err(SandboxError::invalid(
                    Field::PublishAll,
                    e,
                    "the image's ExposedPorts entry is not PORT[/tcp|udp]",
                ));
            }
            let already = self.options.publish.iter().any(|p| {
                PortMapping::parse(p)
                    .is_ok_and(|p| p.container_port == m.container_port && p.proto == m.proto)
            });
            if !already {
                self.options
                    .publish
                    .push(format!("{}/{}", m.container_port, m.proto.as_str()));
                added = true;
            }
        }
        Ok(added)
    }

    pub fn write(&self, bundle: &Path) -> Result<()> {
        crate::bundle::write_json(bundle, NET_PLAN_FILE, self)
    }

    /// The plan in `bundle`, if its run asked for a network.
    pub fn read(bundle: &Path) -> Result<Option<NetPlan>> {
        crate::bundle::read_json(bundle, NET_PLAN_FILE)
    }
}

/// A nucleus-net error about an option, as the spec's field.
fn option_err(e: NetError) -> SandboxError {
    let NetError::InvalidInput {
        field,
        value,
        reason,
    } = &e
    else {
        return SandboxError::Network {
            network: String::new(),
            reason: e.to_string(),
        };
    };
    let f = match *field {
        "--publish" => Field::Publish,
        "--egress-allow" => Field::EgressAllow,
        "--egress-deny" => Field::EgressDeny,
        "--egress-domain" => Field::EgressDomain,
        "--dns" => Field::Dns,
        "--dns-search" => Field::DnsSearch,
        "--add-host" => Field::AddHost,
        _ => Field::Network,
    };
    SandboxError::invalid(f, value, reason)
}

type PrepareResult = std::result::Result<Prepared, NetError>;

/// The host side of an attach started ahead: on its thread, or joined.
#[derive(Debug)]
enum Ahead {
    Running(std::thread::JoinHandle<PrepareResult>),
    Joined(Box<PrepareResult>),
}

impl Ahead {
    fn join(self, network: &str) -> PrepareResult {
        match self {
            Ahead::Running(h) => h.join().unwrap_or_else(|_| {
                Err(NetError::InvalidInput {
                    field: "network",
                    value: network.to_string(),
                    reason: "the thread preparing it panicked".into(),
                })
            }),
            Ahead::Joined(r) => *r,
        }
    }
}

fn report_detach(id: &str, r: std::result::Result<(), NetError>) {
    if let Err(e) = r {
        tracing::warn!(id, error = %e, "network teardown failed; `nucleus network prune` repairs it");
    }
}

/// The attachment step of one run; tears down when dropped.
#[derive(Debug)]
pub struct NetAttach {
    net: Networking,
    network: String,
    name: Option<String>,
    hostname: Option<String>,
    publish: Vec<PortMapping>,
    egress: EgressPolicy,
    dns: DnsOptions,
    attached: Option<String>,
    side: Option<SideTaskHandle>,
    /// The host side of the attach, started by [`NetAttach::prepare_ahead`].
    ahead: Option<Ahead>,
    /// The teardown started when the container exited.
    detaching: Option<std::thread::JoinHandle<std::result::Result<(), NetError>>>,
}

impl NetAttach {
    /// Parses the options and checks the network exists, before anything starts.
    pub fn new(plan: &NetPlan) -> Result<NetAttach> {
        let o = &plan.options;
        let publish = o
            .publish
            .iter()
            .map(|p| PortMapping::parse(p))
            .collect::<std::result::Result<_, NetError>>()
            .map_err(option_err)?;
        let egress = EgressPolicy::from_flags(
            &o.egress_allow,
            &o.egress_deny,
            o.egress_deny_all,
            &o.egress_domain,
        )
        .map_err(option_err)?;
        let dns = DnsOptions::from_flags(&o.dns, &o.dns_search, &o.add_host).map_err(option_err)?;
        let net_err = |e: NetError| SandboxError::Network {
            network: plan.network.clone(),
            reason: e.to_string(),
        };
        let net = plan.store.networking().map_err(net_err)?;
        match net.network(&plan.network) {
            Ok(_) => {}
            Err(NetError::NetworkNotFound { name }) => {
                return Err(SandboxError::invalid(
                    Field::Network,
                    name,
                    "no such network (see `nucleus network ls`)",
                ))
            }
            Err(e) => return Err(net_err(e)),
        }
        Ok(NetAttach {
            net,
            network: plan.network.clone(),
            name: plan.name.clone(),
            hostname: plan.hostname.clone(),
            publish,
            egress,
            dns,
            attached: None,
            side: None,
            ahead: None,
            detaching: None,
        })
    }

    /// Starts the host side of the attach (lease, records, bridge, rules,
    /// resolver) on a thread of its own, owned by this process until the
    /// container's init exists: it then overlaps the rest of the start
    /// path instead of following the clone. A failure surfaces at attach.
    pub fn prepare_ahead(&mut self, id: &str, bundle: &Path) {
        if self.ahead.is_some() || self.attached.is_some() {
            return;
        }
        let req = self.request(id, std::process::id(), bundle);
        let net = self.net.clone();
        let spawned = std::thread::Builder::new()
            .name("nucleus-net-prep".into())
            .spawn(move || net.prepare(&req));
        match spawned {
            Ok(h) => self.ahead = Some(Ahead::Running(h)),
            Err(e) => tracing::debug!(error = %e, "no thread to prepare the network ahead"),
        }
    }

    fn request(&self, id: &str, pid: u32, bundle: &Path) -> AttachRequest {
        let mut req = AttachRequest::new(id, &self.network, pid);
        req.name = self.name.clone();
        if let Some(h) = &self.hostname {
            req.hostname = h.clone();
        }
        req.publish = self.publish.clone();
        req.egress = self.egress.clone();
        req.dns = self.dns.clone();
        req.events_path = Some(bundle.join(EVENTS_FILE));
        req
    }

    /// The prepared host side: the one started ahead, else made now.
    fn take_prepared(
        &mut self,
        id: &str,
        bundle: &Path,
    ) -> std::result::Result<Prepared, NetError> {
        match self.ahead.take() {
            Some(a) => a.join(&self.network),
            None => self
                .net
                .prepare(&self.request(id, std::process::id(), bundle)),
        }
    }

    fn attach_inner(&mut self, ctx: &AttachContext<'_>) -> std::result::Result<(), NetError> {
        let pid = u32::try_from(ctx.pid).map_err(|_| NetError::InvalidInput {
            field: "container pid",
            value: ctx.pid.to_string(),
            reason: "not a pid".into(),
        })?;
        let t0 = std::time::Instant::now();
        let prepared = self.take_prepared(ctx.id, ctx.bundle)?;
        let waited = t0.elapsed();
        let Attached {
            attachment,
            side_task,
        } = self
            .net
            .complete(prepared, pid, ctx.netns.map(Path::to_path_buf))?;
        self.attached = Some(ctx.id.to_string());
        // The bundle's generated files are bound into the container: rewrite
        // them in place (same inode) so the container sees the new text.
        for (file, text) in [
            ("etc/hosts", &attachment.hosts),
            ("etc/resolv.conf", &attachment.resolv_conf),
        ] {
            let path = ctx.bundle.join(file);
            std::fs::write(&path, text).map_err(|e| NetError::Io {
                op: "write",
                path,
                source: e,
            })?;
        }
        self.side = Some(side_task.spawn()?);
        tracing::debug!(
            id = ctx.id,
            prepared_us = waited.as_micros(),
            total_us = t0.elapsed().as_micros(),
            "network attach step"
        );
        Ok(())
    }
}

impl NetworkAttach for NetAttach {
    fn attach(&mut self, ctx: &AttachContext<'_>) -> Result<()> {
        self.attach_inner(ctx).map_err(|e| SandboxError::Network {
            network: self.network.clone(),
            reason: e.to_string(),
        })
    }

    fn before_clone(&mut self) {
        if let Some(a) = self.ahead.take() {
            self.ahead = Some(Ahead::Joined(Box::new(a.join(&self.network))));
        }
    }

    /// The teardown starts on a thread of its own, overlapping the
    /// container's delete; `Drop` joins it.
    fn exited(&mut self) {
        let Some(id) = self.attached.clone() else {
            return;
        };
        self.side = None;
        let net = self.net.clone();
        match std::thread::Builder::new()
            .name("nucleus-net-down".into())
            .spawn(move || net.detach(&id))
        {
            Ok(t) => self.detaching = Some(t),
            Err(e) => tracing::debug!(error = %e, "no thread for the network teardown"),
        }
    }

    fn configures_netns(&self) -> bool {
        true
    }
}

impl Drop for NetAttach {
    fn drop(&mut self) {
        if let Some(t) = self.detaching.take() {
            let id = self.attached.take().unwrap_or_default();
            match t.join() {
                Ok(r) => report_detach(&id, r),
                Err(_) => tracing::warn!(id, "the network teardown thread panicked"),
            }
        }
        // The resolver stops first, then the rules, veth and lease go.
        self.side = None;
        if let Some(a) = self.ahead.take() {
            if let Ok(prepared) = a.join(&self.network) {
                self.net.abandon(prepared);
            }
        }
        if let Some(id) = self.attached.take() {
            report_detach(&id, self.net.detach(&id));
        }
    }
}
