//! Link setup through rtnetlink (never by running `ip`): the bridge and its
//! gateway addresses on the host, the veth pair, and inside the container's
//! namespace `lo`, `eth0`, addresses, MTU and the default routes.

use crate::error::{NetError, Result};
use crate::ipam::Lease;
use crate::netns;
use crate::network::Network;
use futures::TryStreamExt;
use nix::errno::Errno;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth};
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

fn nl_err<'a>(op: &'static str, target: &'a str) -> impl Fn(rtnetlink::Error) -> NetError + 'a {
    move |e| NetError::Netlink {
        op,
        target: target.to_string(),
        detail: e.to_string(),
    }
}

fn is_errno(e: &rtnetlink::Error, errno: Errno) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -(errno as i32))
}

/// Open a netlink connection in the calling thread's namespace and run `f`.
fn with_handle<T, Fut>(purpose: &'static str, f: impl FnOnce(Handle) -> Fut) -> Result<T>
where
    Fut: std::future::Future<Output = Result<T>>,
{
    netns::block_on(purpose, async move {
        let (conn, handle, _) = rtnetlink::new_connection()
            .map_err(|e| NetError::io("open a netlink socket for", purpose, e))?;
        let task = tokio::spawn(conn);
        let out = f(handle).await;
        task.abort();
        out
    })?
}

/// One netlink connection in the caller's namespace on one runtime, for
/// a sequence of requests (an attach) without a runtime and socket each.
pub struct Netlink {
    rt: tokio::runtime::Runtime,
    handle: Handle,
    conn: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Netlink")
    }
}

impl Netlink {
    pub fn open() -> Result<Netlink> {
        let purpose = "host link setup";
        let rt = netns::runtime(purpose)?;
        let (conn, handle, _) = rt
            .block_on(async { rtnetlink::new_connection() })
            .map_err(|e| NetError::io("open a netlink socket for", purpose, e))?;
        let conn = rt.spawn(conn);
        Ok(Netlink { rt, handle, conn })
    }

    /// Create the network's bridge if absent, give it the gateway addresses,
    /// bring it up; its index.
    pub fn ensure_bridge(&self, net: &Network) -> Result<u32> {
        self.rt.block_on(ensure_bridge_on(&self.handle, net))
    }

    /// Create `host` <-> `peer` with `peer` (its final name) in the
    /// namespace at `netns_path`, and `host` up on the bridge `bridge`
    /// (an index), in one request.
    pub fn create_veth(
        &self,
        host: &str,
        peer: &str,
        bridge: u32,
        mtu: u32,
        netns_path: &Path,
    ) -> Result<()> {
        let ns = File::open(netns_path)
            .map_err(|e| NetError::io("open network namespace", netns_path, e))?;
        self.rt
            .block_on(create_veth_on(&self.handle, host, peer, bridge, mtu, &ns))
    }
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

async fn index_of(handle: &Handle, name: &str) -> Result<Option<u32>> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(Some(link.header.index)),
        Ok(None) => Ok(None),
        Err(e) if is_errno(&e, Errno::ENODEV) => Ok(None),
        Err(e) => Err(nl_err("look up link", name)(e)),
    }
}

async fn add_address(
    handle: &Handle,
    index: u32,
    ifname: &str,
    addr: IpAddr,
    prefix: u8,
) -> Result<()> {
    let mut req = handle.address().add(index, addr, prefix);
    if addr.is_ipv6() {
        // No duplicate address detection: the address is ours by lease and
        // must be usable the moment the workload starts.
        req.message_mut()
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    match req.execute().await {
        Err(e) if is_errno(&e, Errno::EEXIST) => Ok(()),
        r => r.map_err(nl_err("add an address to", ifname)),
    }
}

async fn ensure_bridge_on(h: &Handle, net: &Network) -> Result<u32> {
    let br = net.bridge.as_str();
    let index = match index_of(h, br).await? {
        Some(i) => i,
        None => {
            match h
                .link()
                .add(LinkBridge::new(br).mtu(net.mtu).build())
                .execute()
                .await
            {
                Err(e) if is_errno(&e, Errno::EEXIST) => {}
                r => r.map_err(nl_err("create bridge", br))?,
            }
            index_of(h, br).await?.ok_or_else(|| NetError::Netlink {
                op: "find the new bridge",
                target: br.into(),
                detail: "gone right after creation".into(),
            })?
        }
    };
    // Sent together (the kernel takes them in order); one wait for all.
    let mut steps: Vec<Step<'_>> = Vec::new();
    if let (Some(gw), Some(s)) = (net.gateway4(), net.subnet4) {
        steps.push(Box::pin(add_address(
            h,
            index,
            br,
            gw.into(),
            s.prefix_len(),
        )));
    }
    if let (Some(gw), Some(s)) = (net.gateway6(), net.subnet6) {
        steps.push(Box::pin(add_address(
            h,
            index,
            br,
            gw.into(),
            s.prefix_len(),
        )));
    }
    steps.push(Box::pin(async move {
        h.link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(nl_err("bring up", br))
    }));
    in_order(steps).await?;
    Ok(index)
}

/// One netlink request and the check of its answer.
type Step<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send + 'a>>;

/// Runs `steps` concurrently on one connection: each is sent when first
/// polled, so they reach the kernel in order and are answered in order,
/// with one round trip for all. The first failure in that order is the
/// error (a later step often fails only because of it).
async fn in_order(steps: Vec<Step<'_>>) -> Result<()> {
    futures::future::join_all(steps)
        .await
        .into_iter()
        .collect::<Result<Vec<()>>>()
        .map(drop)
}

/// Delete a link in the caller's namespace; a missing one is fine.
pub fn delete(name: &str) -> Result<()> {
    let name = name.to_string();
    with_handle("link removal", |h| async move {
        let Some(index) = index_of(&h, &name).await? else {
            return Ok(());
        };
        match h.link().del(index).execute().await {
            Err(e) if is_errno(&e, Errno::ENODEV) => Ok(()),
            r => r.map_err(nl_err("delete link", &name)),
        }
    })
}

async fn create_veth_on(
    h: &Handle,
    host: &str,
    peer: &str,
    bridge: u32,
    mtu: u32,
    ns: &File,
) -> Result<()> {
    // The peer is made inside the container's namespace, under its final
    // name: moving it there afterwards would make the kernel wait for a
    // grace period (synchronize_net), and renaming it is one more request.
    // The host end is enslaved and up in the same request.
    let peer_msg = LinkUnspec::new_with_name(peer)
        .mtu(mtu)
        .setns_by_fd(ns.as_raw_fd())
        .build();
    let veth = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(host.to_string())
        .mtu(mtu)
        .controller(bridge)
        .up()
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
        .build();
    match h.link().add(veth).execute().await {
        Err(e) if is_errno(&e, Errno::EEXIST) => Err(NetError::Netlink {
            op: "create veth",
            target: host.into(),
            detail: "a link of this name already exists".into(),
        }),
        r => r.map_err(nl_err("create veth", host)),
    }
}

/// Inside the container's namespace: `lo` up, `ifname` (made there by
/// `create_veth`) with its addresses, up, and default routes via the
/// gateways (none on an internal network). Three round trips: `lo`'s
/// lookup and then its up, beside the lookup of `ifname`; then everything
/// else sent together.
pub fn configure_container(
    netns_path: &Path,
    ifname: &str,
    net: &Network,
    lease: &Lease,
) -> Result<()> {
    let (ifname, net, lease) = (ifname.to_string(), net.clone(), lease.clone());
    netns::run_in(netns_path, move || {
        with_handle("container link setup", |h| async move {
            let lo = async {
                match index_of(&h, "lo").await? {
                    Some(lo) => h
                        .link()
                        .set(LinkUnspec::new_with_index(lo).up().build())
                        .execute()
                        .await
                        .map_err(nl_err("bring up", "lo")),
                    None => Ok(()),
                }
            };
            let (lo, i) = futures::join!(lo, index_of(&h, &ifname));
            lo?;
            let i = i?.ok_or_else(|| NetError::Netlink {
                op: "find",
                target: ifname.clone(),
                detail: "not in the container's namespace".into(),
            })?;
            let h = &h;
            let ifname = ifname.as_str();
            let mut steps: Vec<Step<'_>> = Vec::new();
            if let (Some(a), Some(s)) = (lease.ipv4, net.subnet4) {
                steps.push(Box::pin(add_address(
                    h,
                    i,
                    ifname,
                    a.into(),
                    s.prefix_len(),
                )));
            }
            if let (Some(a), Some(s)) = (lease.ipv6, net.subnet6) {
                steps.push(Box::pin(add_address(
                    h,
                    i,
                    ifname,
                    a.into(),
                    s.prefix_len(),
                )));
            }
            steps.push(Box::pin(async move {
                h.link()
                    .set(LinkUnspec::new_with_index(i).up().build())
                    .execute()
                    .await
                    .map_err(nl_err("bring up", ifname))
            }));
            if !net.internal {
                if let (Some(gw), Some(_)) = (net.gateway4(), lease.ipv4) {
                    let r = RouteMessageBuilder::<Ipv4Addr>::new()
                        .output_interface(i)
                        .gateway(gw)
                        .build();
                    steps.push(Box::pin(async move {
                        h.route().add(r).execute().await.map_err(|e| {
                            nl_err("add the IPv4 default route via", &gw.to_string())(e)
                        })
                    }));
                }
                if let (Some(gw), Some(_)) = (net.gateway6(), lease.ipv6) {
                    let r = RouteMessageBuilder::<Ipv6Addr>::new()
                        .output_interface(i)
                        .gateway(gw)
                        .build();
                    steps.push(Box::pin(async move {
                        h.route().add(r).execute().await.map_err(|e| {
                            nl_err("add the IPv6 default route via", &gw.to_string())(e)
                        })
                    }));
                }
            }
            in_order(steps).await
        })
    })
}

/// Bring up `lo` in a namespace (`--network none`).
pub fn loopback_up(netns_path: &Path) -> Result<()> {
    netns::run_in(netns_path, || {
        with_handle("loopback setup", |h| async move {
            let Some(lo) = index_of(&h, "lo").await? else {
                return Ok(());
            };
            h.link()
                .set(LinkUnspec::new_with_index(lo).up().build())
                .execute()
                .await
                .map_err(nl_err("bring up", "lo"))
        })
    })
}
