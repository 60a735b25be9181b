//! Egress policy: `--egress-allow/--egress-deny CIDR[:PORT[/tcp|udp]]`,
//! `--egress-deny-all` and `--egress-domain NAME` (with `*.` wildcards),
//! parsed and matched here; the firewall and the resolver enforce it.

use crate::error::{NetError, Result};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One CIDR rule; a port without a protocol means both TCP and UDP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CidrRule {
    pub net: IpNet,
    pub port: Option<u16>,
    pub proto: Option<Proto>,
}

impl CidrRule {
    /// `10.0.0.0/8`, `10.1.2.3:443`, `10.0.0.0/8:53/udp`, `fd00::/8`, `[fd00::1]:443/tcp`.
    pub fn parse(field: &'static str, s: &str) -> Result<CidrRule> {
        let bad = |why: &str| NetError::invalid(field, s, why.to_string());
        let (addr, rest) = if let Some(inner) = s.strip_prefix('[') {
            let (a, r) = inner.split_once(']').ok_or_else(|| bad("missing `]`"))?;
            let r = if r.is_empty() {
                None
            } else {
                Some(
                    r.strip_prefix(':')
                        .ok_or_else(|| bad("expected `:PORT` after `]`"))?,
                )
            };
            (a, r)
        } else if s.matches(':').count() == 1 {
            let (a, r) = s.split_once(':').unwrap_or((s, ""));
            (a, Some(r))
        } else {
            (s, None)
        };
        let net = parse_net(addr).ok_or_else(|| bad("not an IP address or CIDR"))?;
        let (port, proto) = match rest {
            None => (None, None),
            Some(r) => {
                let (p, proto) = match r.split_once('/') {
                    Some((p, "tcp")) => (p, Some(Proto::Tcp)),
                    Some((p, "udp")) => (p, Some(Proto::Udp)),
                    Some(_) => return Err(bad("the protocol must be `tcp` or `udp`")),
                    None => (r, None),
                };
                let port: u16 = p
                    .parse()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| bad("the port must be 1-65535"))?;
                (Some(port), proto)
            }
        };
        Ok(CidrRule { net, port, proto })
    }

    pub fn matches(&self, addr: IpAddr) -> bool {
        self.net.contains(&addr)
    }
}

impl fmt::Display for CidrRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.net, self.port) {
            (IpNet::V6(n), Some(_)) => write!(f, "[{n}]")?,
            (n, _) => write!(f, "{n}")?,
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        if let Some(p) = self.proto {
            write!(f, "/{}", p.as_str())?;
        }
        Ok(())
    }
}

fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .map(|n| n.trunc())
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// A domain from `--egress-domain`: exact, or `*.suffix` for any name below it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainPattern {
    /// Lowercase, without a trailing dot.
    pub name: String,
    pub wildcard: bool,
}

impl DomainPattern {
    pub fn parse(s: &str) -> Result<DomainPattern> {
        let lower = s.trim_end_matches('.').to_ascii_lowercase();
        let (wildcard, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest.to_string()),
            None => (false, lower),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                && !l.starts_with('-')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(NetError::invalid(
                "--egress-domain",
                s,
                "not a domain name such as `pypi.org` or `*.example.com`",
            ));
        }
        Ok(DomainPattern { name, wildcard })
    }

    /// Does this pattern allow the query name (any case, trailing dot or not)?
    pub fn matches(&self, qname: &str) -> bool {
        let q = qname.trim_end_matches('.');
        if self.wildcard {
            q.len() > self.name.len() + 1
                && q[q.len() - self.name.len()..].eq_ignore_ascii_case(&self.name)
                && q.as_bytes()[q.len() - self.name.len() - 1] == b'.'
        } else {
            q.eq_ignore_ascii_case(&self.name)
        }
    }
}

impl fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wildcard {
            f.write_str("*.")?;
        }
        f.write_str(&self.name)
    }
}

/// A container's whole egress policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressPolicy {
    pub allow: Vec<CidrRule>,
    pub deny: Vec<CidrRule>,
    pub deny_all: bool,
    pub domains: Vec<DomainPattern>,
}

impl EgressPolicy {
    /// From the `run` flags, each checked and named in errors.
    pub fn from_flags(
        allow: &[String],
        deny: &[String],
        deny_all: bool,
        domains: &[String],
    ) -> Result<EgressPolicy> {
        Ok(EgressPolicy {
            allow: allow
                .iter()
                .map(|s| CidrRule::parse("--egress-allow", s))
                .collect::<Result<_>>()?,
            deny: deny
                .iter()
                .map(|s| CidrRule::parse("--egress-deny", s))
                .collect::<Result<_>>()?,
            deny_all,
            domains: domains
                .iter()
                .map(|s| DomainPattern::parse(s))
                .collect::<Result<_>>()?,
        })
    }

    /// Any rule at all: the firewall installs a per-container chain.
    pub fn is_active(&self) -> bool {
        self.deny_all || !self.allow.is_empty() || !self.deny.is_empty() || !self.domains.is_empty()
    }

    /// Whatever is not allowed is refused. Deny rules alone only subtract
    /// from open egress; any allow rule, domain or `--egress-deny-all` closes it.
    pub fn is_default_deny(&self) -> bool {
        self.deny_all || !self.allow.is_empty() || !self.domains.is_empty()
    }

    /// With domain rules (or default deny), DNS must go through nucleus's resolver.
    pub fn filters_names(&self) -> bool {
        self.is_default_deny()
    }

    /// Is a name allowed by the domain rules? Without domain rules every
    /// name resolves (addresses are still checked by the firewall).
    pub fn allows_name(&self, qname: &str) -> Option<&DomainPattern> {
        self.domains.iter().find(|d| d.matches(qname))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_rules_parse_v4_v6_ports_and_protocols() {
        let r = CidrRule::parse("--egress-allow", "10.0.0.0/8:53/udp").unwrap();
        assert_eq!(
            (r.net.to_string().as_str(), r.port, r.proto),
            ("10.0.0.0/8", Some(53), Some(Proto::Udp))
        );
        let r = CidrRule::parse("--egress-allow", "10.1.2.3:443").unwrap();
        assert_eq!(
            (r.net.to_string().as_str(), r.port, r.proto),
            ("10.1.2.3/32", Some(443), None)
        );
        let r = CidrRule::parse("--egress-allow", "fd00::/8").unwrap();
        assert_eq!((r.net.to_string().as_str(), r.port), ("fd00::/8", None));
        let r = CidrRule::parse("--egress-allow", "[fd00::1]:443/tcp").unwrap();
        assert_eq!(r.to_string(), "[fd00::1/128]:443/tcp");
        assert_eq!(
            CidrRule::parse("--egress-allow", "10.1.2.3/16")
                .unwrap()
                .net
                .to_string(),
            "10.1.0.0/16"
        );
        for bad in [
            "example.com",
            "10.0.0.0/8:0",
            "10.0.0.0/8:99999",
            "10.0.0.0/8:53/icmp",
            "[fd00::1",
            "[fd00::]x",
        ] {
            let err = CidrRule::parse("--egress-deny", bad)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("--egress-deny:") && err.contains(bad),
                "{err}"
            );
        }
    }

    #[test]
    fn domains_match_exactly_or_below_a_wildcard() {
        let exact = DomainPattern::parse("PyPI.org.").unwrap();
        assert!(
            exact.matches("pypi.org")
                && exact.matches("PYPI.ORG.")
                && !exact.matches("evil-pypi.org")
        );
        assert!(!exact.matches("files.pypi.org"));
        let wild = DomainPattern::parse("*.example.com").unwrap();
        assert!(
            wild.matches("a.example.com.")
                && wild.matches("a.b.example.com")
                && !wild.matches("example.com")
        );
        assert!(!wild.matches("aexample.com") && !wild.matches("example.com.evil"));
        assert!(DomainPattern::parse("bad name").is_err() && DomainPattern::parse("*.").is_err());
    }

    #[test]
    fn default_deny_only_with_allow_rules() {
        let deny_only = EgressPolicy::from_flags(&[], &["10.0.0.0/8".into()], false, &[]).unwrap();
        assert!(deny_only.is_active() && !deny_only.is_default_deny());
        let domains = EgressPolicy::from_flags(&[], &[], false, &["pypi.org".into()]).unwrap();
        assert!(domains.is_default_deny() && domains.allows_name("pypi.org.").is_some());
        assert!(!EgressPolicy::default().is_active());
    }
}
