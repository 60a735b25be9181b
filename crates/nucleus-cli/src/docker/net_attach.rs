//! `nucleus run --network bridge|NAME`: the sandbox's network attachment
//! step, through nucleus-net. It attaches the container before its workload
//! runs, writes the generated `/etc/hosts` and `/etc/resolv.conf` into the
//! bundle (bound read-only into the container), runs the resolver beside the
//! container, and detaches when dropped, after the run.

use super::RunFlags;
use nucleus_net::{
    AttachRequest, Attached, DnsOptions, EgressPolicy, NetError, Networking, PortMapping,
    SideTaskHandle,
};
use nucleus_sandbox::network::{AttachContext, NetworkAttach};
use nucleus_sandbox::SandboxError;

/// Modes the sandbox sets up by itself; everything else is a nucleus-net network.
pub fn is_attached(network: &str) -> bool {
    !matches!(network, "none" | "host")
}

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
}

/// The egress flags need a network of nucleus-net's to be enforced on.
fn has_network_flags(f: &RunFlags) -> Option<&'static str> {
    [
        (!f.publish.is_empty(), "-p/--publish"),
        (!f.egress_allow.is_empty(), "--egress-allow"),
        (!f.egress_deny.is_empty(), "--egress-deny"),
        (f.egress_deny_all, "--egress-deny-all"),
        (!f.egress_domain.is_empty(), "--egress-domain"),
    ]
    .into_iter()
    .find_map(|(set, flag)| set.then_some(flag))
}

impl NetAttach {
    /// `None` for `--network none|host`; flags that need a bridge are refused there.
    pub fn from_flags(f: &RunFlags) -> anyhow::Result<Option<NetAttach>> {
        let network = f.network.as_deref().unwrap_or("none");
        if !is_attached(network) {
            if let Some(flag) = has_network_flags(f) {
                anyhow::bail!("{flag}: needs --network bridge or a network's name (got `--network {network}`)");
            }
            return Ok(None);
        }
        if let Some(target) = network.strip_prefix("container:") {
            anyhow::bail!("--network: `container:{target}` is not supported yet");
        }
        if f.detach {
            anyhow::bail!("--network {network}: detached runs on a bridge are not supported yet; run in the foreground");
        }
        let publish = f
            .publish
            .iter()
            .map(|p| PortMapping::parse(p))
            .collect::<Result<_, NetError>>()?;
        let egress = EgressPolicy::from_flags(
            &f.egress_allow,
            &f.egress_deny,
            f.egress_deny_all,
            &f.egress_domain,
        )?;
        let dns = DnsOptions::from_flags(&f.dns, &f.dns_search, &f.add_host)?;
        let net = crate::network::networking()?;
        // Fail before anything starts when the network does not exist.
        net.network(network)?;
        Ok(Some(NetAttach {
            net,
            network: network.to_string(),
            name: f.name.clone(),
            hostname: f.hostname.clone(),
            publish,
            egress,
            dns,
            attached: None,
            side: None,
        }))
    }

    fn attach_inner(&mut self, ctx: &AttachContext<'_>) -> Result<(), NetError> {
        let pid = u32::try_from(ctx.pid).map_err(|_| NetError::InvalidInput {
            field: "container pid",
            value: ctx.pid.to_string(),
            reason: "not a pid".into(),
        })?;
        let mut req = AttachRequest::new(ctx.id, &self.network, pid);
        req.name = self.name.clone();
        if let Some(h) = &self.hostname {
            req.hostname = h.clone();
        }
        req.publish = self.publish.clone();
        req.egress = self.egress.clone();
        req.dns = self.dns.clone();
        let Attached {
            attachment,
            side_task,
        } = self.net.attach(req)?;
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
        Ok(())
    }
}

impl NetworkAttach for NetAttach {
    fn attach(&mut self, ctx: &AttachContext<'_>) -> Result<(), SandboxError> {
        self.attach_inner(ctx).map_err(|e| SandboxError::Network {
            network: self.network.clone(),
            reason: e.to_string(),
        })
    }
}

impl Drop for NetAttach {
    fn drop(&mut self) {
        // The resolver stops first, then the rules, veth and lease go.
        self.side = None;
        if let Some(id) = self.attached.take() {
            if let Err(e) = self.net.detach(&id) {
                tracing::warn!(id, error = %e, "network teardown failed; `nucleus network prune` repairs it");
            }
        }
    }
}
