//! Real-kernel tests of nucleus-net (root only; others print `skipped:`).
//!
//! Every test builds its own world: a "remote" network namespace on
//! test-only addresses (198.18.0.0/15, fd00:b::/32) reachable through the
//! host, with dnsmasq authoritative for `*.test` and busybox httpd servers;
//! "containers" are `unshare -n -m` processes with the generated
//! resolv.conf and hosts bound in. Addresses, names and the nftables table
//! are unique per test, and a Drop guard removes everything.

use nucleus_net::{
    AttachRequest, Attached, DnsOptions, EgressPolicy, Firewall, NetworkCreate, Networking,
    NftFirewall, PortMapping, SideTaskHandle,
};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

macro_rules! require_root {
    () => {
        if !nix::unistd::geteuid().is_root() || which("nft").is_none() || which("dnsmasq").is_none()
        {
            eprintln!("skipped: needs root, nft and dnsmasq");
            return;
        }
    };
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join(bin))
        .find(|p| p.exists())
}

/// The host veth name nucleus-net derives from a container id (FNV-1a).
fn fnv32(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn sh(cmd: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .output()
        .expect("run sh")
}

fn ok(cmd: &str) -> String {
    let out = sh(cmd);
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A container stand-in: its own net and mount namespaces, sleeping.
struct Ctr {
    id: String,
    child: Child,
    dir: tempfile::TempDir,
    _side: SideTaskHandle,
}

impl Ctr {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Run a shell command inside the container's namespaces.
    fn run(&self, cmd: &str) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.pid().to_string(), "-n", "-m", "sh", "-c", cmd])
            .stdin(Stdio::null())
            .output()
            .expect("nsenter")
    }

    fn ok(&self, cmd: &str) -> String {
        let out = self.run(cmd);
        assert!(
            out.status.success(),
            "in {}: `{cmd}` failed: {}{}",
            self.id,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn fails(&self, cmd: &str) {
        let out = self.run(cmd);
        assert!(
            !out.status.success(),
            "in {}: `{cmd}` should have failed but printed {}",
            self.id,
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

impl Drop for Ctr {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process killed and reaped on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Ctr {
    /// busybox httpd on port 8080 inside the container, serving `body`.
    fn serve(&self, body: &str) -> Proc {
        std::fs::write(self.dir.path().join("index.html"), body).unwrap();
        let child = Command::new("nsenter")
            .args([
                "-t",
                &self.pid().to_string(),
                "-n",
                "busybox",
                "httpd",
                "-f",
                "-p",
                "8080",
                "-h",
            ])
            .arg(self.dir.path())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        Proc(child)
    }
}

/// One test's world.
struct World {
    x: u8,
    tag: String,
    ns: String,
    net_name: String,
    fw: Arc<NftFirewall>,
    net: Networking,
    _data: tempfile::TempDir,
    www: tempfile::TempDir,
    servers: Vec<Child>,
}

impl World {
    /// `subnet_extra` adds `--internal` etc. to the network's create request.
    fn new(mut create: NetworkCreate) -> World {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let x =
            u8::try_from((std::process::id().wrapping_mul(16).wrapping_add(n)) % 250 + 1).unwrap();
        let tag = format!("{:x}{n}", std::process::id() % 0xffff);
        let data = tempfile::tempdir().unwrap();
        let fw = Arc::new(NftFirewall::with_table(&format!("nuct{tag}")));
        let net = Networking::new(data.path(), fw.clone()).unwrap();
        let www = tempfile::tempdir().unwrap();
        let ns = format!("nucrem{tag}");
        let mut w = World {
            x,
            tag: tag.clone(),
            ns: ns.clone(),
            net_name: format!("t{tag}"),
            fw,
            net,
            _data: data,
            www,
            servers: Vec::new(),
        };

        // The remote side: host 198.18.X.1 <-> remote .2 (allowed) and .3 (denied).
        ok(&format!(
            "ip netns add {ns} && ip link add nrh{tag} type veth peer name nrr{tag} && ip link set nrr{tag} netns {ns} && \
             ip addr add 198.18.{x}.1/24 dev nrh{tag} && ip -6 addr add fd00:b:{x}::1/64 dev nrh{tag} nodad && ip link set nrh{tag} up && \
             ip -n {ns} link set lo up && ip -n {ns} addr add 198.18.{x}.2/24 dev nrr{tag} && ip -n {ns} addr add 198.18.{x}.3/24 dev nrr{tag} && \
             ip -n {ns} -6 addr add fd00:b:{x}::2/64 dev nrr{tag} nodad && ip -n {ns} -6 addr add fd00:b:{x}::3/64 dev nrr{tag} nodad && \
             ip -n {ns} link set nrr{tag} up"
        ));
        let www_path = w.www.path().to_path_buf();
        std::fs::create_dir_all(www_path.join("cgi-bin")).unwrap();
        std::fs::write(www_path.join("index.html"), "remote\n").unwrap();
        std::fs::write(
            www_path.join("cgi-bin/ip"),
            "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"$REMOTE_ADDR\"\n",
        )
        .unwrap();
        ok(&format!("chmod -R a+rx {}", www_path.display()));
        for addr in [
            format!("198.18.{x}.2:80"),
            format!("198.18.{x}.3:80"),
            format!("198.18.{x}.2:81"),
            format!("[fd00:b:{x}::2]:80"),
        ] {
            w.spawn_remote(&[
                "busybox",
                "httpd",
                "-f",
                "-p",
                &addr,
                "-h",
                &www_path.display().to_string(),
            ]);
        }
        let gw = format!("10.220.{x}.1");
        w.spawn_remote(&[
            "dnsmasq",
            "-k",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            &format!("--listen-address=198.18.{x}.2"),
            "--port=53",
            "--local=/test/",
            "--local-ttl=60",
            "--user=root",
            &format!("--pid-file={}/dnsmasq.pid", www_path.display()),
            &format!("--host-record=allowed.test,198.18.{x}.2,fd00:b:{x}::2"),
            &format!("--host-record=denied.test,198.18.{x}.3,fd00:b:{x}::3"),
            &format!("--host-record=a.wild.test,198.18.{x}.2"),
            &format!("--host-record=in.wild.test,{gw}"),
        ]);
        w.wait_tcp_remote(&format!("198.18.{x}.2"), 80);
        w.wait_dns();

        create.name = w.net_name.clone();
        if create.subnets.is_empty() {
            create.subnets = vec![format!("10.220.{x}.0/24"), format!("fd00:a:{x}::/64")];
        }
        create.bridge = Some(format!("nucb{tag}"));
        w.net.create_network(&create).unwrap();
        w
    }

    fn spawn_remote(&mut self, argv: &[&str]) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn a remote server");
        self.servers.push(child);
    }

    fn wait_tcp_remote(&self, ip: &str, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if sh(&format!(
                "ip netns exec {} curl -s -m 1 -o /dev/null http://{ip}:{port}/",
                self.ns
            ))
            .status
            .success()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("remote server {ip}:{port} did not come up");
    }

    fn wait_dns(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if sh(&format!(
                "ip netns exec {} busybox nslookup allowed.test 198.18.{}.2",
                self.ns, self.x
            ))
            .status
            .success()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("remote dnsmasq did not come up");
    }

    fn upstream(&self) -> DnsOptions {
        DnsOptions {
            servers: vec![format!("198.18.{}.2", self.x).parse().unwrap()],
            ..Default::default()
        }
    }

    /// Start a container process and attach it with `req` adjusted by `f`.
    fn container(&self, name: &str, f: impl FnOnce(&mut AttachRequest)) -> Ctr {
        let dir = tempfile::tempdir().unwrap();
        let (resolv, hosts) = (dir.path().join("resolv.conf"), dir.path().join("hosts"));
        std::fs::write(&resolv, "").unwrap();
        std::fs::write(&hosts, "").unwrap();
        let script = format!(
            "mount --make-rprivate / && mount --bind {} /etc/resolv.conf && mount --bind {} /etc/hosts && echo ready && exec sleep 600",
            resolv.display(),
            hosts.display()
        );
        let mut child = Command::new("unshare")
            .args(["--net", "--mount", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "ready");
        let id = format!("t{}{name}", self.tag);
        let mut req = AttachRequest::new(&id, &self.net_name, child.id());
        req.name = Some(name.to_string());
        req.hostname = name.to_string();
        req.dns = self.upstream();
        f(&mut req);
        let Attached {
            attachment,
            side_task,
        } = self.net.attach(req).unwrap();
        std::fs::write(&resolv, &attachment.resolv_conf).unwrap();
        std::fs::write(&hosts, &attachment.hosts).unwrap();
        Ctr {
            id,
            child,
            dir,
            _side: side_task.spawn().unwrap(),
        }
    }

    /// Nothing of `id` left: record, lease, veth, nft objects.
    fn assert_gone(&self, id: &str) {
        assert!(
            self.net.attachment(id).unwrap().is_none(),
            "record of {id} left"
        );
        let info = self.net.inspect(&self.net_name).unwrap();
        assert!(
            info.containers.iter().all(|(c, _)| c != id),
            "lease of {id} left"
        );
        self.assert_no_leftovers(id);
        // The host end is `nucXXXX` (the table's prefix) and the id's hash.
        let veth = format!("{}{:08x}", self.fw.port_prefix(), fnv32(id));
        let deadline = Instant::now() + Duration::from_secs(2);
        while ok("ip -o link show").contains(&veth) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !ok("ip -o link show").contains(&veth),
            "veth {veth} of {id} left"
        );
    }

    /// No nft object or element of `id`. A stopped container's elements
    /// lapse (1 ms timeout) rather than being deleted; listings stop
    /// showing them soon after.
    fn assert_no_leftovers(&self, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut left = self.fw.leftovers(id).unwrap();
        while !left.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            left = self.fw.leftovers(id).unwrap();
        }
        assert!(left.is_empty(), "nft objects of {id} left: {left:?}");
    }

    fn egress(allow: &[&str], deny: &[&str], deny_all: bool, domains: &[&str]) -> EgressPolicy {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        EgressPolicy::from_flags(&v(allow), &v(deny), deny_all, &v(domains)).unwrap()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = self.net.prune();
        let _ = self.net.remove_network(&self.net_name);
        let (ns, tag, t) = (&self.ns, &self.tag, self.fw.table());
        sh(&format!(
            "ip netns del {ns} 2>/dev/null; ip link del nrh{tag} 2>/dev/null; ip link del nucb{tag} 2>/dev/null; \
             nft delete table inet {t} 2>/dev/null; nft delete table bridge {t} 2>/dev/null; true"
        ));
    }
}

fn curl(url: &str) -> String {
    format!("curl -sS -m 4 {url}")
}

#[test]
fn outbound_nat_v4_and_v6_and_generated_files() {
    require_root!();
    let w = World::new(NetworkCreate {
        mtu: Some(1400),
        ..Default::default()
    });
    let c = w.container("web", |_| {});
    let x = w.x;
    // The remote host sees the host's address: masquerade, for both families.
    assert_eq!(
        c.ok(&curl(&format!("http://198.18.{x}.2/cgi-bin/ip")))
            .trim(),
        format!("198.18.{x}.1")
    );
    assert_eq!(
        c.ok(&curl(&format!("http://[fd00:b:{x}::2]/cgi-bin/ip")))
            .trim(),
        format!("[fd00:b:{x}::1]")
    );
    // Names resolve through nucleus's resolver, which forwards to the upstream.
    assert!(c
        .ok("cat /etc/resolv.conf")
        .contains(&format!("nameserver 10.220.{x}.1")));
    assert_eq!(
        c.ok("getent ahostsv4 allowed.test | head -1 | cut -d' ' -f1")
            .trim(),
        format!("198.18.{x}.2")
    );
    assert_eq!(c.ok(&curl("http://allowed.test/")).trim(), "remote");
    assert!(c
        .ok("cat /etc/hosts")
        .contains(&format!("10.220.{x}.2\tweb")));
    assert!(c
        .ok("ip -o addr show eth0")
        .contains(&format!("fd00:a:{x}::2/64")));
    assert!(c.ok("ip -o link show eth0").contains("mtu 1400"));
    assert!(c.ok("ip -o link show lo").contains("UP"));
    let id = c.id.clone();
    drop(c);
    w.net.detach(&id).unwrap();
    w.assert_gone(&id);
}

#[test]
fn published_ports_on_all_addresses_loopback_and_v6_loopback() {
    require_root!();
    let w = World::new(NetworkCreate::default());
    let x = w.x;
    let mut publish = Vec::new();
    for spec in ["0.0.0.0::8080", "127.0.0.1::8080", "[::1]::8080"] {
        let mut p = PortMapping::parse(spec).unwrap();
        p.resolve_host_port().unwrap();
        publish.push(p);
    }
    let ports: Vec<u16> = publish.iter().map(|p| p.host_port).collect();
    let c = w.container("srv", |r| r.publish = publish.clone());
    let httpd = c.serve("inside\n");
    // From another host (the remote namespace) to the host's address.
    let remote = ok(&format!(
        "ip netns exec {} {}",
        w.ns,
        curl(&format!("http://198.18.{x}.1:{}/", ports[0]))
    ));
    assert_eq!(remote.trim(), "inside");
    // From the host itself, on 127.0.0.1 and ::1.
    assert_eq!(
        ok(&curl(&format!("http://127.0.0.1:{}/", ports[1]))).trim(),
        "inside"
    );
    assert_eq!(
        ok(&curl(&format!("http://[::1]:{}/", ports[2]))).trim(),
        "inside"
    );
    // A port already published is refused with a clear error.
    let mut again = AttachRequest::new(&format!("t{}dup", w.tag), &w.net_name, c.pid());
    again.publish = vec![publish[1].clone()];
    let err = w.net.attach(again).unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "host port `127.0.0.1:{}/tcp` is already in use",
            ports[1]
        )),
        "{err}"
    );
    drop(httpd);
    let id = c.id.clone();
    w.net.detach(&id).unwrap();
    w.assert_gone(&id);
    assert!(
        sh(&curl(&format!("http://127.0.0.1:{}/", ports[1])))
            .status
            .code()
            != Some(0)
    );
}

#[test]
fn containers_resolve_each_other_by_name_and_internal_has_no_way_out() {
    require_root!();
    let w = World::new(NetworkCreate {
        internal: true,
        ..Default::default()
    });
    let x = w.x;
    let a = w.container("alpha", |_| {});
    let b = w.container("beta", |_| {});
    let _httpd = b.serve("beta\n");
    assert_eq!(
        a.ok("getent ahostsv4 beta | head -1 | cut -d' ' -f1")
            .trim(),
        format!("10.220.{x}.3")
    );
    assert_eq!(a.ok(&curl("http://beta:8080/")).trim(), "beta");
    // Internal: no route out, and the host does not forward for it.
    a.fails(&curl(&format!("http://198.18.{x}.2/")));
    assert!(!a.ok("ip route").contains("default"));
}

#[test]
fn egress_domains_allow_named_hosts_and_refuse_everything_else() {
    require_root!();
    let w = World::new(NetworkCreate::default());
    let x = w.x;
    let c = w.container("agent", |r| {
        r.egress = World::egress(&[], &[], false, &["allowed.test", "*.wild.test"])
    });
    assert_eq!(c.ok(&curl("http://allowed.test/")).trim(), "remote");
    assert_eq!(
        c.ok(&curl("http://a.wild.test/cgi-bin/ip")).trim(),
        format!("198.18.{x}.1")
    );
    // A refused name does not resolve...
    c.fails("getent ahostsv4 denied.test");
    // ...not even by asking the upstream directly (the query is redirected)...
    let direct = c.run(&format!("busybox nslookup denied.test 198.18.{x}.2"));
    assert!(!String::from_utf8_lossy(&direct.stdout).contains(&format!("198.18.{x}.3")));
    // ...and its address, as a literal, is unreachable, as is another port.
    c.fails(&curl(&format!("http://198.18.{x}.3/")));
    c.fails(&curl(&format!("http://[fd00:b:{x}::3]/")));
    // Rebinding: an allowed name pointing at the gateway is dropped.
    c.fails("getent ahostsv4 in.wild.test");
    // Changing the source address inside the container does not help.
    c.ok(&format!("ip addr add 10.220.{x}.250/24 dev eth0"));
    c.fails(&format!(
        "curl -sS -m 3 --interface 10.220.{x}.250 http://198.18.{x}.3/"
    ));
    let events = w.net.events(&c.id).unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "dns" && e.target == "denied.test" && e.rule == "egress-domain"),
        "{events:?}"
    );
    assert!(events.iter().any(|e| e.rule == "rebinding"), "{events:?}");
    let id = c.id.clone();
    drop(c);
    w.net.detach(&id).unwrap();
    w.assert_gone(&id);
}

#[test]
fn egress_cidr_and_port_rules() {
    require_root!();
    let w = World::new(NetworkCreate::default());
    let x = w.x;
    let allow = format!("198.18.{x}.2:80/tcp");
    let a = w.container("allow", |r| {
        r.egress = World::egress(&[&allow], &[], false, &[])
    });
    assert_eq!(
        a.ok(&curl(&format!("http://198.18.{x}.2/"))).trim(),
        "remote"
    );
    a.fails(&curl(&format!("http://198.18.{x}.2:81/")));
    a.fails(&curl(&format!("http://198.18.{x}.3/")));
    let deny = format!("198.18.{x}.3");
    let d = w.container("deny", |r| {
        r.egress = World::egress(&[], &[&deny], false, &[])
    });
    assert_eq!(
        d.ok(&curl(&format!("http://198.18.{x}.2:81/"))).trim(),
        "remote"
    );
    d.fails(&curl(&format!("http://198.18.{x}.3/")));
    let all = w.container("none", |r| r.egress = World::egress(&[], &[], true, &[]));
    all.fails(&curl(&format!("http://198.18.{x}.2/")));
    all.fails(&format!("busybox nslookup allowed.test 198.18.{x}.2"));
}

#[test]
fn a_killed_container_is_repaired_by_prune() {
    require_root!();
    let w = World::new(NetworkCreate::default());
    let x = w.x;
    let mut c = w.container("victim", |r| {
        r.egress = World::egress(&[], &[], false, &["allowed.test"])
    });
    c.ok(&curl("http://allowed.test/"));
    let id = c.id.clone();
    c.child.kill().unwrap();
    c.child.wait().unwrap();
    // The record outlives the container until the next start or prune.
    assert!(w.net.attachment(&id).unwrap().is_some());
    assert!(!w.fw.leftovers(&id).unwrap().is_empty());
    let report = w.net.prune().unwrap();
    assert!(report.detached.contains(&id), "{report:?}");
    assert!(report.removed_networks.contains(&w.net_name), "{report:?}");
    assert!(
        !ok("ip -o link show").contains(&format!("nucb{}", w.tag)),
        "bridge left after prune"
    );
    w.assert_no_leftovers(&id);
    let tables = ok("nft list tables");
    assert!(!tables.contains(w.fw.table()), "table left: {tables}");
    let _ = x;
}

#[test]
fn a_stopped_plain_container_stops_answering_and_a_new_one_reuses_its_lease_and_port() {
    require_root!();
    let w = World::new(NetworkCreate::default());
    let x = w.x;
    let mut p = PortMapping::parse("0.0.0.0::8080").unwrap();
    p.resolve_host_port().unwrap();
    let port = p.host_port;
    let url = format!("http://198.18.{x}.1:{port}/");
    let remote = |what: &str| format!("ip netns exec {} {}{what}", w.ns, curl(&url));
    let one = w.container("one", |r| r.publish = vec![p.clone()]);
    let lease = w.net.attachment(&one.id).unwrap().unwrap().lease;
    let httpd = one.serve("one\n");
    assert_eq!(ok(&remote("")).trim(), "one");
    // Detached while its process (and network namespace) lives on: the
    // port is closed at once, and its address is not reachable.
    w.net.detach(&one.id).unwrap();
    assert!(!sh(&remote("")).status.success(), "the port still answers");
    let direct = format!("curl -sS -m 2 http://{}:8080/", lease.ipv4.unwrap());
    assert!(
        !sh(&direct).status.success(),
        "the old address still answers"
    );
    w.assert_gone(&one.id);
    // The next container gets the same lease and the same host port.
    let two = w.container("two", |r| r.publish = vec![p.clone()]);
    assert_eq!(
        w.net.attachment(&two.id).unwrap().unwrap().lease.ipv4,
        lease.ipv4
    );
    let _httpd2 = two.serve("two\n");
    assert_eq!(ok(&remote("")).trim(), "two");
    drop(httpd);
    w.net.detach(&two.id).unwrap();
    w.assert_gone(&two.id);
}

#[test]
fn a_plain_container_cannot_spoof_its_source_and_its_lease_is_reusable() {
    require_root!();
    let w = World::new(NetworkCreate::default());
    let x = w.x;
    let c = w.container("sp", |_| {});
    let url = format!("http://198.18.{x}.2/");
    assert_eq!(c.ok(&curl(&url)).trim(), "remote");
    // Another address of the network's subnet, and one from outside it.
    for fake in [format!("10.220.{x}.250"), "198.18.0.77".to_string()] {
        c.ok(&format!("ip addr add {fake}/32 dev eth0"));
        c.fails(&format!("curl -sS -m 2 --interface {fake} {url}"));
    }
    c.ok(&format!("ip -6 addr add fd00:a:{x}::fa/128 dev eth0 nodad"));
    c.fails(&format!(
        "curl -sS -m 2 --interface fd00:a:{x}::fa http://[fd00:b:{x}::2]/"
    ));
    let lease = w.net.attachment(&c.id).unwrap().unwrap().lease;
    w.net.detach(&c.id).unwrap();
    w.assert_gone(&c.id);
    let again = w.container("sp2", |_| {});
    assert_eq!(
        w.net.attachment(&again.id).unwrap().unwrap().lease.ipv4,
        lease.ipv4
    );
    assert_eq!(again.ok(&curl(&url)).trim(), "remote");
    w.net.detach(&again.id).unwrap();
    w.assert_gone(&again.id);
}

#[test]
fn a_killed_plain_container_leaves_no_element_after_prune() {
    require_root!();
    let w = World::new(NetworkCreate::default());
    let mut p = PortMapping::parse("127.0.0.1::8080").unwrap();
    p.resolve_host_port().unwrap();
    let mut c = w.container("pk", |r| r.publish = vec![p.clone()]);
    let id = c.id.clone();
    c.child.kill().unwrap();
    c.child.wait().unwrap();
    // Nobody detached it: its elements are still there, tagged with its id.
    let left = w.fw.leftovers(&id).unwrap();
    assert!(left.iter().any(|l| l.contains("pp")), "{left:?}");
    assert!(left.iter().any(|l| l.contains("pa4")), "{left:?}");
    let report = w.net.prune().unwrap();
    assert!(report.detached.contains(&id), "{report:?}");
    w.assert_no_leftovers(&id);
    let tables = ok("nft list tables");
    assert!(!tables.contains(w.fw.table()), "table left: {tables}");
}

#[test]
fn a_container_port_without_an_element_passes_no_traffic() {
    require_root!();
    let w = World::new(NetworkCreate::default());
    let x = w.x;
    // A container makes the network's rules; then a veth with the
    // driver's prefix joins the bridge behind nucleus's back.
    let c = w.container("pe", |_| {});
    assert_eq!(
        c.ok(&curl(&format!("http://198.18.{x}.2/"))).trim(),
        "remote"
    );
    let tag = &w.tag;
    let host = format!(
        "{}{:08x}",
        w.fw.port_prefix(),
        fnv32(&format!("rogue{tag}"))
    );
    let ns = format!("nucrog{tag}");
    struct Gone(String, String);
    impl Drop for Gone {
        fn drop(&mut self) {
            sh(&format!(
                "ip link del {} 2>/dev/null; ip netns del {} 2>/dev/null; true",
                self.0, self.1
            ));
        }
    }
    let _gone = Gone(host.clone(), ns.clone());
    ok(&format!(
        "ip netns add {ns} && ip link add {host} type veth peer name rog{tag} && ip link set rog{tag} netns {ns} && \
         ip link set {host} master nucb{tag} up && ip -n {ns} link set rog{tag} up && \
         ip -n {ns} addr add 10.220.{x}.251/24 dev rog{tag} && ip -n {ns} route add default via 10.220.{x}.1"
    ));
    let gw = format!("10.220.{x}.1");
    assert!(
        !sh(&format!("ip netns exec {ns} ping -c 1 -W 1 {gw}"))
            .status
            .success(),
        "a port without an element reached the gateway"
    );
    assert!(
        !sh(&format!(
            "ip netns exec {ns} curl -sS -m 2 http://198.18.{x}.2/"
        ))
        .status
        .success(),
        "a port without an element reached the outside"
    );
    // The container beside it is unaffected.
    assert_eq!(
        c.ok(&curl(&format!("http://198.18.{x}.2/"))).trim(),
        "remote"
    );
    w.net.detach(&c.id).unwrap();
    w.assert_gone(&c.id);
}

/// The host side of an attach is made ahead of the container, owned by
/// the runtime: abandoned, it leaves nothing; its owner killed before the
/// container existed, the next start repairs it; completed, the container works.
#[test]
fn a_prepared_attach_is_abandoned_repaired_or_completed() {
    require_root!();
    let w = World::new(NetworkCreate::default());
    let x = w.x;
    let mut p = PortMapping::parse("127.0.0.1::8080").unwrap();
    p.resolve_host_port().unwrap();
    let request = |name: &str, owner: u32| {
        let mut r = AttachRequest::new(&format!("t{}{name}", w.tag), &w.net_name, owner);
        r.publish = vec![p.clone()];
        r.egress = World::egress(&[], &[], false, &["allowed.test"]);
        r.dns = w.upstream();
        r
    };

    let req = request("ab", std::process::id());
    let prepared = w.net.prepare(&req).unwrap();
    assert!(w.net.attachment(&req.id).unwrap().is_some());
    assert!(!w.fw.leftovers(&req.id).unwrap().is_empty());
    w.net.abandon(prepared);
    w.assert_gone(&req.id);

    // A crash: the prepared attach is dropped undone, its owner dies.
    let mut owner = Command::new("sleep").arg("600").spawn().unwrap();
    let req = request("ow", owner.id());
    drop(w.net.prepare(&req).unwrap());
    owner.kill().unwrap();
    owner.wait().unwrap();
    assert!(w.net.attachment(&req.id).unwrap().is_some());
    // What the next start does first (`prune` would remove the network too).
    let repaired = w.net.reconcile().unwrap();
    assert!(repaired.contains(&req.id), "{repaired:?}");
    w.assert_gone(&req.id);

    // The same host port and lease are free again for a completed attach.
    let c = w.container("done", |r| {
        r.publish = vec![p.clone()];
        r.egress = World::egress(&[], &[], false, &["allowed.test"]);
    });
    c.ok(&curl("http://allowed.test/"));
    c.fails(&curl(&format!("http://198.18.{x}.3/")));
    let rec = w.net.attachment(&c.id).unwrap().unwrap();
    assert_eq!(
        rec.pid,
        c.pid(),
        "the record names the container, not its owner"
    );
    w.net.detach(&c.id).unwrap();
    w.assert_gone(&c.id);
}
