//! A firewall driver that installs nothing: no NAT, no published ports, no
//! egress enforcement. For tests of links, IPAM and DNS, and for hosts where
//! the caller manages the firewall itself.

use super::{ContainerRules, Firewall};
use crate::error::Result;
use crate::network::Network;
use std::net::IpAddr;

#[derive(Debug, Default, Clone, Copy)]
pub struct NoFirewall;

impl Firewall for NoFirewall {
    fn teardown_network(&self, _: &Network) -> Result<()> {
        Ok(())
    }
    fn setup_container(&self, _: &ContainerRules<'_>) -> Result<()> {
        Ok(())
    }
    fn teardown_container(&self, _: &ContainerRules<'_>) -> Result<()> {
        Ok(())
    }
    fn allow_addresses(&self, _: &str, _: &[(IpAddr, u32)]) -> Result<()> {
        Ok(())
    }
    fn leftovers(&self, _: &str) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}
