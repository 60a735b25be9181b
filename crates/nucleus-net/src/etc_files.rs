//! The generated `/etc/hosts` and `/etc/resolv.conf` of a container, and the
//! host's own resolvers. Pure text in, text out.

use crate::error::{NetError, Result};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

/// `--dns`, `--dns-search` and `--add-host`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsOptions {
    pub servers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub add_hosts: Vec<(String, IpAddr)>,
}

impl DnsOptions {
    pub fn from_flags(
        dns: &[String],
        search: &[String],
        add_host: &[String],
    ) -> Result<DnsOptions> {
        let servers = dns
            .iter()
            .map(|s| {
                s.parse()
                    .map_err(|_| NetError::invalid("--dns", s, "not an IP address"))
            })
            .collect::<Result<_>>()?;
        for s in search {
            if s.is_empty() || s.contains(char::is_whitespace) {
                return Err(NetError::invalid("--dns-search", s, "not a domain name"));
            }
        }
        let add_hosts = add_host
            .iter()
            .map(|s| {
                // `name:ip`; the address may itself contain colons (IPv6).
                let (name, ip) = s
                    .split_once(':')
                    .ok_or_else(|| NetError::invalid("--add-host", s, "expected `NAME:IP`"))?;
                let ip = ip.trim_start_matches('[').trim_end_matches(']');
                let ip = ip.parse().map_err(|_| {
                    NetError::invalid("--add-host", s, "not an IP address after `:`")
                })?;
                if name.is_empty() || name.contains(char::is_whitespace) {
                    return Err(NetError::invalid(
                        "--add-host",
                        s,
                        "not a host name before `:`",
                    ));
                }
                Ok((name.to_string(), ip))
            })
            .collect::<Result<_>>()?;
        Ok(DnsOptions {
            servers,
            search: search.to_vec(),
            add_hosts,
        })
    }
}

/// `/etc/hosts`: loopback, the container's own addresses, `--add-host`.
pub fn hosts(hostname: &str, own: &[IpAddr], opts: &DnsOptions) -> String {
    let mut out = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for ip in own {
        out.push_str(&format!("{ip}\t{hostname}\n"));
    }
    if own.is_empty() {
        out.push_str(&format!("127.0.1.1\t{hostname}\n"));
    }
    for (name, ip) in &opts.add_hosts {
        out.push_str(&format!("{ip}\t{name}\n"));
    }
    out
}

/// `/etc/resolv.conf` naming `servers` (nucleus's resolver, or the upstreams).
pub fn resolv_conf(servers: &[IpAddr], opts: &DnsOptions) -> String {
    let mut out = String::new();
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !opts.search.is_empty() {
        out.push_str(&format!("search {}\n", opts.search.join(" ")));
    }
    out.push_str("options ndots:0\n");
    out
}

/// The resolvers the host itself uses (`/etc/resolv.conf`), port 53.
pub fn host_resolvers(path: &Path) -> Result<Vec<SocketAddr>> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(NetError::io("read", path, e)),
    };
    let conf = resolv_conf::Config::parse(&text)
        .map_err(|e| NetError::invalid("resolv.conf", path.display().to_string(), e.to_string()))?;
    Ok(conf
        .nameservers
        .iter()
        .map(|n| SocketAddr::new(IpAddr::from(n), 53))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_carry_names_servers_and_search() {
        let opts = DnsOptions::from_flags(
            &["10.0.0.53".into()],
            &["corp.test".into()],
            &["db:10.1.1.1".into(), "v6:fd00::1".into()],
        )
        .unwrap();
        let h = hosts("box", &["10.9.0.2".parse().unwrap()], &opts);
        assert!(
            h.contains("10.9.0.2\tbox\n")
                && h.contains("10.1.1.1\tdb\n")
                && h.contains("fd00::1\tv6\n")
        );
        let r = resolv_conf(&opts.servers, &opts);
        assert_eq!(
            r,
            "nameserver 10.0.0.53\nsearch corp.test\noptions ndots:0\n"
        );
        assert!(DnsOptions::from_flags(&["x".into()], &[], &[])
            .unwrap_err()
            .to_string()
            .starts_with("--dns:"));
        assert!(DnsOptions::from_flags(&[], &[], &["nocolon".into()]).is_err());
    }

    #[test]
    fn host_resolvers_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("resolv.conf");
        std::fs::write(
            &p,
            "# x\nnameserver 127.0.0.53\nnameserver fd00::53\nsearch a\n",
        )
        .unwrap();
        let r = host_resolvers(&p).unwrap();
        assert_eq!(
            r,
            vec![
                "127.0.0.53:53".parse().unwrap(),
                "[fd00::53]:53".parse().unwrap()
            ]
        );
    }
}
