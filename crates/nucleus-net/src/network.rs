//! Network definitions: what `nucleus network create` records. A network is a
//! bridge with an IPv4 and/or IPv6 subnet; the bridge itself is made on first
//! use. Pure: no kernel access here.

use crate::error::{NetError, Result};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, Ipv6Addr};

/// The network `--network bridge` attaches to.
pub const DEFAULT_NETWORK: &str = "bridge";
/// Its bridge device.
pub const DEFAULT_BRIDGE: &str = "nucleus0";
const DEFAULT_SUBNET4: &str = "10.213.0.0/16";
const DEFAULT_SUBNET6: &str = "fd6e:7563:6c00::/64";
/// A network's MTU when `--mtu` is not given: 65520, as pasta's tap uses.
/// Traffic between the host and its containers then moves in segments as
/// large as on loopback (at 1500 it ran at ~78% of loopback here, at 65520
/// at ~98%); a connection out through NAT still sends what the far end's
/// MSS and path MTU discovery allow.
pub const DEFAULT_MTU: u32 = 65520;
/// Pool for networks created without `--subnet`: 10.214.0.0/24, 10.214.1.0/24, ...
const AUTO_POOL4: [u8; 2] = [10, 214];
const MAX_NAME: usize = 64;
/// Linux `IFNAMSIZ` less the NUL.
pub const MAX_IFNAME: usize = 15;

/// A network as stored under `<data root>/networks/<name>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    pub bridge: String,
    pub subnet4: Option<Ipv4Net>,
    pub subnet6: Option<Ipv6Net>,
    /// No route to the outside, no NAT, no published ports.
    pub internal: bool,
    pub mtu: u32,
    /// Containers on it resolve each other by name (user-defined networks).
    pub dns_names: bool,
}

/// What `network create` asks for.
#[derive(Debug, Clone, Default)]
pub struct NetworkCreate {
    pub name: String,
    /// `--subnet`, any mix of one IPv4 and one IPv6 CIDR.
    pub subnets: Vec<String>,
    /// Give an IPv6 subnet even without an explicit one.
    pub ipv6: bool,
    pub internal: bool,
    pub mtu: Option<u32>,
    /// Bridge name; derived from the name when absent.
    pub bridge: Option<String>,
}

impl Network {
    /// The built-in default network, created on first use.
    pub fn default_bridge() -> Network {
        Network {
            name: DEFAULT_NETWORK.into(),
            bridge: DEFAULT_BRIDGE.into(),
            subnet4: DEFAULT_SUBNET4.parse().ok(),
            subnet6: DEFAULT_SUBNET6.parse().ok(),
            internal: false,
            mtu: DEFAULT_MTU,
            dns_names: false,
        }
    }

    /// The gateway (the bridge's address): the first host of each subnet.
    pub fn gateway4(&self) -> Option<Ipv4Addr> {
        self.subnet4.and_then(|n| n.hosts().next())
    }

    pub fn gateway6(&self) -> Option<Ipv6Addr> {
        self.subnet6
            .map(|n| Ipv6Addr::from(u128::from(n.network()) + 1))
    }

    pub fn subnets(&self) -> Vec<IpNet> {
        let mut v: Vec<IpNet> = self.subnet4.into_iter().map(IpNet::V4).collect();
        v.extend(self.subnet6.map(IpNet::V6));
        v
    }

    /// Build and validate a network from a create request. `existing` are the
    /// networks already defined, for overlap checks and subnet allocation.
    pub fn from_request(req: &NetworkCreate, existing: &[Network]) -> Result<Network> {
        validate_name(&req.name)?;
        if existing.iter().any(|n| n.name == req.name) {
            return Err(NetError::NetworkExists {
                name: req.name.clone(),
            });
        }
        let (mut subnet4, mut subnet6) = (None, None);
        for s in &req.subnets {
            match parse_subnet(s)? {
                IpNet::V4(n) if subnet4.is_none() => subnet4 = Some(n),
                IpNet::V6(n) if subnet6.is_none() => subnet6 = Some(n),
                _ => {
                    return Err(NetError::invalid(
                        "--subnet",
                        s,
                        "at most one IPv4 and one IPv6 subnet",
                    ))
                }
            }
        }
        if subnet4.is_none() && subnet6.is_none() {
            subnet4 = Some(auto_subnet4(existing).ok_or_else(|| {
                NetError::invalid(
                    "--subnet",
                    "",
                    "no free /24 left in 10.214.0.0/16; give one",
                )
            })?);
        }
        if req.ipv6 && subnet6.is_none() {
            subnet6 = Some(auto_subnet6(&req.name));
        }
        let bridge = match &req.bridge {
            Some(b) => {
                validate_ifname("--bridge", b)?;
                b.clone()
            }
            None => format!("nucbr{:08x}", fnv32(&req.name)),
        };
        let mtu = req.mtu.unwrap_or(DEFAULT_MTU);
        if !(576..=65535).contains(&mtu) {
            return Err(NetError::invalid(
                "--mtu",
                mtu.to_string(),
                "must be between 576 and 65535",
            ));
        }
        let net = Network {
            name: req.name.clone(),
            bridge,
            subnet4,
            subnet6,
            internal: req.internal,
            mtu,
            dns_names: true,
        };
        net.check_overlap(existing)?;
        Ok(net)
    }

    /// Subnets of distinct networks must not overlap, nor may bridges repeat.
    pub fn check_overlap(&self, existing: &[Network]) -> Result<()> {
        for other in existing.iter().filter(|o| o.name != self.name) {
            if other.bridge == self.bridge {
                return Err(NetError::invalid(
                    "--bridge",
                    &self.bridge,
                    format!("already used by network `{}`", other.name),
                ));
            }
            for a in self.subnets() {
                for b in other.subnets() {
                    if a.contains(&b.network()) || b.contains(&a.network()) {
                        return Err(NetError::SubnetOverlap {
                            subnet: a.to_string(),
                            other: b.to_string(),
                            network: other.name.clone(),
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

/// Network names: what docker accepts, bounded.
pub fn validate_name(name: &str) -> Result<()> {
    let ok_first = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_rest = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok_first || !ok_rest || name.len() > MAX_NAME {
        return Err(NetError::invalid(
            "network name",
            name,
            "use 1-64 of [A-Za-z0-9_.-], starting with a letter or digit",
        ));
    }
    Ok(())
}

pub fn validate_ifname(field: &'static str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_IFNAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !ok {
        return Err(NetError::invalid(
            field,
            name,
            "an interface name is 1-15 of [A-Za-z0-9_.-]",
        ));
    }
    Ok(())
}

fn parse_subnet(s: &str) -> Result<IpNet> {
    let net: IpNet = s.parse().map_err(|_| {
        NetError::invalid(
            "--subnet",
            s,
            "not a CIDR such as 10.1.2.0/24 or fd00:1::/64",
        )
    })?;
    if net.trunc() != net {
        return Err(NetError::invalid(
            "--subnet",
            s,
            format!("host bits are set; did you mean `{}`?", net.trunc()),
        ));
    }
    let too_small = match net {
        IpNet::V4(n) => n.prefix_len() > 30,
        IpNet::V6(n) => n.prefix_len() > 126,
    };
    if too_small {
        return Err(NetError::invalid(
            "--subnet",
            s,
            "too small for a gateway and a container",
        ));
    }
    Ok(net)
}

fn auto_subnet4(existing: &[Network]) -> Option<Ipv4Net> {
    (0..=255u8)
        .map(|i| Ipv4Net::new(Ipv4Addr::new(AUTO_POOL4[0], AUTO_POOL4[1], i, 0), 24))
        .find_map(|n| {
            let n = n.ok()?;
            let used = existing
                .iter()
                .filter_map(|e| e.subnet4)
                .any(|e| e.contains(&n.network()) || n.contains(&e.network()));
            (!used).then_some(n)
        })
}

/// A ULA /64 derived from the name (RFC 4193 asks for a random global id; a
/// hash of the name is stable across re-creation, which is what users expect).
fn auto_subnet6(name: &str) -> Ipv6Net {
    let h = u128::from(fnv32(name)) << 64 | u128::from(fnv32(&format!("{name}/6")) & 0xffff) << 96;
    let addr = (0xfd6e_u128 << 112) | (h & 0x0000_ffff_ffff_ffff_0000_0000_0000_0000);
    Ipv6Net::new(Ipv6Addr::from(addr), 64).unwrap_or_else(|_| Ipv6Net::default())
}

/// FNV-1a, for short stable device and chain names.
pub(crate) fn fnv32(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(name: &str, subnets: &[&str]) -> NetworkCreate {
        NetworkCreate {
            name: name.into(),
            subnets: subnets.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn gateways_are_first_hosts() {
        let n = Network::from_request(&req("a", &["10.1.2.0/24", "fd00:1::/64"]), &[]).unwrap();
        assert_eq!(n.gateway4(), Some(Ipv4Addr::new(10, 1, 2, 1)));
        assert_eq!(n.gateway6(), Some("fd00:1::1".parse().unwrap()));
        assert!(n.bridge.len() <= MAX_IFNAME);
    }

    #[test]
    fn overlap_and_bad_input_are_refused() {
        let a = Network::from_request(&req("a", &["10.1.0.0/16"]), &[]).unwrap();
        let err = Network::from_request(&req("b", &["10.1.2.0/24"]), std::slice::from_ref(&a))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("overlaps `10.1.0.0/16` of network `a`"),
            "{err}"
        );
        let err = Network::from_request(&req("a", &[]), &[a]).unwrap_err();
        assert!(matches!(err, NetError::NetworkExists { .. }));
        let err = Network::from_request(&req("c", &["10.1.2.3/24"]), &[]).unwrap_err();
        assert!(
            err.to_string().contains("did you mean `10.1.2.0/24`"),
            "{err}"
        );
        assert!(Network::from_request(&req("c", &["nope"]), &[]).is_err());
        assert!(Network::from_request(&req("../x", &[]), &[]).is_err());
        assert!(Network::from_request(&req("c", &["10.0.0.0/31"]), &[]).is_err());
    }

    #[test]
    fn auto_subnets_skip_used_ones() {
        let a = Network::from_request(&req("a", &[]), &[]).unwrap();
        assert_eq!(a.subnet4.unwrap().to_string(), "10.214.0.0/24");
        let b = Network::from_request(
            &NetworkCreate {
                ipv6: true,
                ..req("b", &[])
            },
            &[a],
        )
        .unwrap();
        assert_eq!(b.subnet4.unwrap().to_string(), "10.214.1.0/24");
        let v6 = b.subnet6.unwrap();
        assert_eq!(v6.prefix_len(), 64);
        assert_eq!(v6.network().segments()[0], 0xfd6e);
    }
}
