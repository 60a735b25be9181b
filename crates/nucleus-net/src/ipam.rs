//! IP address management: one lease per container per network, kept in
//! `leases/<network>.json`. Callers hold the store lock; allocation itself is
//! pure and picks the lowest free address after the gateway.

use crate::error::{NetError, Result};
use crate::network::Network;
use crate::store::{self, Store};
use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A container's addresses on one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    /// The container's name, for name resolution on the network.
    pub name: Option<String>,
}

impl Lease {
    pub fn addrs(&self) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = self.ipv4.map(IpAddr::V4).into_iter().collect();
        v.extend(self.ipv6.map(IpAddr::V6));
        v
    }
}

pub type Leases = BTreeMap<String, Lease>;

pub fn load(store: &Store, network: &str) -> Result<Leases> {
    Ok(store::read_json(&store.leases_path(network))?.unwrap_or_default())
}

fn save(store: &Store, network: &str, leases: &Leases) -> Result<()> {
    store::write_state(&store.leases_path(network), leases)
}

/// Lease addresses for `id` (the caller holds the store lock).
pub fn allocate(store: &Store, net: &Network, id: &str, name: Option<&str>) -> Result<Lease> {
    let mut leases = load(store, &net.name)?;
    if leases.contains_key(id) {
        return Err(NetError::AlreadyAttached {
            id: id.into(),
            network: net.name.clone(),
        });
    }
    if let Some(n) = name {
        if let Some((other, _)) = leases.iter().find(|(_, l)| l.name.as_deref() == Some(n)) {
            return Err(NetError::invalid(
                "--name",
                n,
                format!("already used on network `{}` by `{other}`", net.name),
            ));
        }
    }
    let lease = next_free(net, &leases)?;
    let lease = Lease {
        name: name.map(str::to_string),
        ..lease
    };
    leases.insert(id.into(), lease.clone());
    save(store, &net.name, &leases)?;
    Ok(lease)
}

/// Drop `id`'s lease; releasing what is not leased is not an error.
pub fn release(store: &Store, network: &str, id: &str) -> Result<()> {
    let mut leases = load(store, network)?;
    if leases.remove(id).is_some() {
        save(store, network, &leases)?;
    }
    Ok(())
}

fn next_free(net: &Network, leases: &Leases) -> Result<Lease> {
    let ipv4 = net
        .subnet4
        .map(|s| {
            free4(s, net.gateway4(), leases).ok_or_else(|| NetError::AddressesExhausted {
                network: net.name.clone(),
                family: "IPv4",
                subnet: s.to_string(),
            })
        })
        .transpose()?;
    let ipv6 = net
        .subnet6
        .map(|s| {
            free6(s, leases).ok_or_else(|| NetError::AddressesExhausted {
                network: net.name.clone(),
                family: "IPv6",
                subnet: s.to_string(),
            })
        })
        .transpose()?;
    Ok(Lease {
        ipv4,
        ipv6,
        name: None,
    })
}

fn free4(subnet: Ipv4Net, gateway: Option<Ipv4Addr>, leases: &Leases) -> Option<Ipv4Addr> {
    subnet
        .hosts()
        .find(|a| Some(*a) != gateway && !leases.values().any(|l| l.ipv4 == Some(*a)))
}

/// Scans from `::2`; the bound keeps a pathological lease file from spinning.
fn free6(subnet: Ipv6Net, leases: &Leases) -> Option<Ipv6Addr> {
    let base = u128::from(subnet.network());
    let size = u128::MAX >> subnet.prefix_len();
    (2..=size.min(1 << 20))
        .map(|i| Ipv6Addr::from(base + i))
        .find(|a| !leases.values().any(|l| l.ipv6 == Some(*a)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::NetworkCreate;

    fn net(subnets: &[&str]) -> Network {
        let req = NetworkCreate {
            name: "t".into(),
            subnets: subnets.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        Network::from_request(&req, &[]).unwrap()
    }

    #[test]
    fn leases_are_unique_released_and_exhausted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let n = net(&["10.9.0.0/30", "fd00:9::/126"]);
        let a = allocate(&store, &n, "a", Some("web")).unwrap();
        assert_eq!(a.ipv4, Some(Ipv4Addr::new(10, 9, 0, 2)));
        assert_eq!(a.ipv6, Some("fd00:9::2".parse().unwrap()));
        let err = allocate(&store, &n, "b", None).unwrap_err();
        assert!(
            err.to_string()
                .contains("no free IPv4 address left in `10.9.0.0/30`"),
            "{err}"
        );
        assert!(matches!(
            allocate(&store, &n, "a", None),
            Err(NetError::AlreadyAttached { .. })
        ));
        release(&store, "t", "a").unwrap();
        let b = allocate(&store, &n, "b", Some("web")).unwrap();
        assert_eq!(b.ipv4, a.ipv4);
        let n2 = net(&["10.9.1.0/24"]);
        assert!(allocate(&store, &n2, "c", Some("web"))
            .unwrap_err()
            .to_string()
            .contains("already used"));
    }
}
