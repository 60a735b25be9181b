//! The host sysctls a bridge network needs: forwarding (IPv4 and IPv6), and
//! `route_localnet` on the bridge so a port published on 127.0.0.1 can be
//! DNATed out of loopback. Written in the host namespace only.

use crate::error::{NetError, Result};
use crate::network::Network;
use std::path::Path;

fn write(path: &str, value: &str) -> Result<()> {
    let p = Path::new(path);
    if std::fs::read_to_string(p).is_ok_and(|v| v.trim() == value) {
        return Ok(());
    }
    tracing::trace!(path, value, "sysctl");
    std::fs::write(p, value).map_err(|e| NetError::io("write sysctl", p, e))
}

pub fn enable_forwarding(net: &Network) -> Result<()> {
    if net.internal {
        return Ok(());
    }
    if net.subnet4.is_some() {
        write("/proc/sys/net/ipv4/ip_forward", "1")?;
        write(
            &format!("/proc/sys/net/ipv4/conf/{}/route_localnet", net.bridge),
            "1",
        )?;
    }
    if net.subnet6.is_some() {
        write("/proc/sys/net/ipv6/conf/all/forwarding", "1")?;
    }
    Ok(())
}
