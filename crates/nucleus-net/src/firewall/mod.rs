//! The firewall driver behind a trait: NAT, published ports, anti-spoofing
//! and per-container egress. `nft` is the real driver; `none` does nothing,
//! for tests of the rest. Everything a driver installs is tagged with the
//! network or container it belongs to, so teardown can find it from the
//! ruleset itself after a crash.

mod netlink;
mod nft;
mod none;

pub use nft::{set_timeout, NftFirewall};
pub use none::NoFirewall;

use crate::egress::EgressPolicy;
use crate::error::Result;
use crate::ipam::Lease;
use crate::network::Network;
use crate::publish::PortMapping;
use std::fmt::Debug;
use std::net::IpAddr;

/// What one container needs from the firewall.
#[derive(Debug, Clone)]
pub struct ContainerRules<'a> {
    pub id: &'a str,
    pub net: &'a Network,
    /// The host end of the container's veth.
    pub host_veth: &'a str,
    pub lease: &'a Lease,
    pub publish: &'a [PortMapping],
    pub egress: &'a EgressPolicy,
    /// Where the container's DNS is redirected when names are filtered.
    pub resolver_port: Option<u16>,
    /// The NFLOG group refused connections are logged to.
    pub log_group: Option<u16>,
}

pub trait Firewall: Debug + Send + Sync {
    /// The first 7 characters of every host veth name this driver filters
    /// (`nuc` and 4 hex digits): ports with it and without an element are
    /// dropped, so each driver's default drop leaves the others' ports alone.
    fn port_prefix(&self) -> String {
        "nuc0000".into()
    }
    /// Remove the network's rules; nothing installed is fine.
    fn teardown_network(&self, net: &Network) -> Result<()>;
    /// Install the container's rules, and its network's (masquerade,
    /// isolation) when they are not there yet.
    fn setup_container(&self, rules: &ContainerRules<'_>) -> Result<()>;
    /// Remove (or retire) everything `setup_container` installed for the
    /// same `rules`. Nothing installed is fine.
    fn teardown_container(&self, rules: &ContainerRules<'_>) -> Result<()>;
    /// Make `addrs` reachable for `id` for `ttl` seconds each.
    fn allow_addresses(&self, id: &str, addrs: &[(IpAddr, u32)]) -> Result<()>;
    /// Descriptions of anything still installed for `id` (leak checks).
    fn leftovers(&self, id: &str) -> Result<Vec<String>>;
}
