//! `nucleus run --network NAME` and `nucleus network ...` end to end: a real
//! agent sandbox on a bridge reaching a "remote" namespace (198.18.0.0/15,
//! test-only) with dnsmasq authoritative for `*.test` and busybox httpd.
//! Each test has its own network, subnet, data root and nftables table;
//! Drop guards remove them, and each test checks nothing was left.

#[macro_use]
mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn which(bin: &str) -> bool {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .any(|d| PathBuf::from(d).join(bin).exists())
}

fn sh(cmd: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .output()
        .expect("sh")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The remote namespace, its servers, a network, a data root and a table.
struct World {
    x: u32,
    tag: String,
    net: String,
    root: tempfile::TempDir,
    data: tempfile::TempDir,
    www: tempfile::TempDir,
    servers: Vec<Child>,
}

impl World {
    fn new() -> World {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let x = (std::process::id().wrapping_mul(8).wrapping_add(n)) % 250 + 1;
        let tag = format!("{:x}{n}", std::process::id() % 0xffff);
        let mut w = World {
            x,
            tag: tag.clone(),
            net: format!("cn{tag}"),
            root: tempfile::tempdir().unwrap(),
            data: tempfile::tempdir().unwrap(),
            www: tempfile::tempdir().unwrap(),
            servers: Vec::new(),
        };
        let ns = w.ns();
        let setup = sh(&format!(
            "ip netns add {ns} && ip link add nch{tag} type veth peer name ncr{tag} && ip link set ncr{tag} netns {ns} && \
             ip addr add 198.19.{x}.1/24 dev nch{tag} && ip link set nch{tag} up && ip -n {ns} link set lo up && \
             ip -n {ns} addr add 198.19.{x}.2/24 dev ncr{tag} && ip -n {ns} addr add 198.19.{x}.3/24 dev ncr{tag} && \
             ip -n {ns} link set ncr{tag} up"
        ));
        assert!(setup.status.success(), "{}", text(&setup));
        std::fs::write(w.www.path().join("index.html"), "remote\n").unwrap();
        let www = w.www.path().display().to_string();
        for addr in [format!("198.19.{x}.2:80"), format!("198.19.{x}.3:80")] {
            w.spawn_remote(&["busybox", "httpd", "-f", "-p", &addr, "-h", &www]);
        }
        w.spawn_remote(&[
            "dnsmasq",
            "-k",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            &format!("--listen-address=198.19.{x}.2"),
            "--port=53",
            "--local=/test/",
            "--user=root",
            &format!("--pid-file={www}/dnsmasq.pid"),
            &format!("--host-record=allowed.test,198.19.{x}.2"),
            &format!("--host-record=denied.test,198.19.{x}.3"),
        ]);
        let deadline = Instant::now() + Duration::from_secs(5);
        let probe = format!("ip netns exec {ns} busybox nslookup allowed.test 198.19.{x}.2 && curl -s -m1 -o /dev/null http://198.19.{x}.2/");
        while !sh(&probe).status.success() {
            assert!(Instant::now() < deadline, "remote servers did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        w
    }

    fn ns(&self) -> String {
        format!("ncrem{}", self.tag)
    }

    fn table(&self) -> String {
        format!("ncli{}", self.tag)
    }

    fn spawn_remote(&mut self, argv: &[&str]) {
        let c = Command::new("ip")
            .args(["netns", "exec", &self.ns()])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.servers.push(c);
    }

    fn nucleus(&self, args: &[&str]) -> Output {
        Command::new(common::runtime())
            .arg("--root")
            .arg(self.root.path())
            .args(args)
            .env("NUCLEUS_DATA_ROOT", self.data.path())
            .env("NUCLEUS_NFT_TABLE", self.table())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn create_network(&self) {
        let out = self.nucleus(&[
            "network",
            "create",
            &self.net,
            "--subnet",
            &format!("10.222.{}.0/24", self.x),
        ]);
        assert!(out.status.success(), "{}", text(&out));
    }

    /// Nothing of any container left on the network: lease, veth, rules.
    fn assert_clean(&self) {
        let info = self.nucleus(&["network", "inspect", &self.net]);
        let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        assert_eq!(v["containers"], serde_json::json!([]), "leases left");
        let bridge = v["bridge"].as_str().unwrap().to_string();
        let ports = sh(&format!("ip -o link show master {bridge} 2>/dev/null"));
        assert!(
            String::from_utf8_lossy(&ports.stdout).trim().is_empty(),
            "veth left: {}",
            text(&ports)
        );
        let rules = sh(&format!("nft list table inet {} 2>/dev/null", self.table()));
        assert!(
            !String::from_utf8_lossy(&rules.stdout).contains("ctr="),
            "rules left: {}",
            text(&rules)
        );
        let records = std::fs::read_dir(self.data.path().join("networks/attachments"))
            .unwrap()
            .count();
        assert_eq!(records, 0, "attachment records left");
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = self.nucleus(&["network", "prune"]);
        let (ns, tag, t) = (self.ns(), &self.tag, self.table());
        sh(&format!(
            "ip netns del {ns} 2>/dev/null; ip link del nch{tag} 2>/dev/null; \
             nft delete table inet {t} 2>/dev/null; nft delete table bridge {t} 2>/dev/null; true"
        ));
    }
}

fn tools() -> bool {
    let ok = which("nft") && which("dnsmasq") && which("curl");
    if !ok {
        eprintln!("skipped: needs nft, dnsmasq and curl (apt-get install nftables dnsmasq curl)");
    }
    ok
}

#[test]
fn an_agent_sandbox_reaches_allowed_domains_and_nothing_else() {
    require!(root);
    if !tools() {
        return;
    }
    let w = World::new();
    w.create_network();
    let x = w.x;
    let script = format!(
        "curl -sS -m 3 http://allowed.test/ && echo ALLOWED-OK; \
         curl -sS -m 3 http://198.19.{x}.3/ || echo LITERAL-REFUSED; \
         getent hosts denied.test || echo NAME-REFUSED; \
         busybox nslookup denied.test 198.19.{x}.2 2>&1 | grep -q 198.19.{x}.3 || echo DIRECT-REFUSED; \
         grep -q 'nameserver 10.222.{x}.1' /etc/resolv.conf && echo RESOLV-OK"
    );
    let dns = format!("198.19.{x}.2");
    let out = w.nucleus(&[
        "run",
        "--network",
        &w.net,
        "--dns",
        &dns,
        "--egress-domain",
        "allowed.test",
        "--add-host",
        "db.local:10.0.0.9",
        "--",
        "sh",
        "-c",
        &format!("{script}; grep -q 'db.local' /etc/hosts && echo HOSTS-OK"),
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    for marker in [
        "remote",
        "ALLOWED-OK",
        "LITERAL-REFUSED",
        "NAME-REFUSED",
        "DIRECT-REFUSED",
        "RESOLV-OK",
        "HOSTS-OK",
    ] {
        assert!(t.contains(marker), "missing {marker}: {t}");
    }
    w.assert_clean();
}

#[test]
fn without_a_policy_a_bridge_reaches_everything_through_nat() {
    require!(root);
    if !tools() {
        return;
    }
    let w = World::new();
    w.create_network();
    let x = w.x;
    let out = w.nucleus(&[
        "run",
        "--network",
        &w.net,
        "--",
        "sh",
        "-c",
        &format!("curl -sS -m 3 http://198.19.{x}.3/ && ip -o addr show eth0"),
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("remote") && t.contains(&format!("10.222.{x}.2/24")),
        "{t}"
    );
    w.assert_clean();
}

#[test]
fn network_verbs_and_bad_flags() {
    require!(root);
    if !tools() {
        return;
    }
    let w = World::new();
    let x = w.x;
    let v4 = format!("10.223.{x}.0/24");
    let out = w.nucleus(&[
        "network",
        "create",
        &w.net,
        "--subnet",
        &v4,
        "--subnet",
        "fd00:c::/64",
        "--internal",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let ls = w.nucleus(&["network", "ls", "--format", "json"]);
    let all: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    let mine = all
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == w.net.as_str())
        .expect("listed");
    assert_eq!(
        (mine["subnet4"].as_str(), mine["internal"].as_bool()),
        (Some(v4.as_str()), Some(true))
    );
    let other = format!("{}b", w.net);
    let overlap = w.nucleus(&[
        "network",
        "create",
        &other,
        "--subnet",
        &format!("10.223.{x}.128/25"),
    ]);
    assert!(!overlap.status.success());
    assert!(
        text(&overlap).contains(&format!("overlaps `{v4}` of network `{}`", w.net)),
        "{}",
        text(&overlap)
    );
    let bad = w.nucleus(&[
        "run",
        "--network",
        "none",
        "--egress-domain",
        "pypi.org",
        "--",
        "true",
    ]);
    assert_eq!(bad.status.code(), Some(125));
    assert!(
        text(&bad).contains("--egress-domain: invalid value `pypi.org`: needs network `bridge`"),
        "{}",
        text(&bad)
    );
    let bad = w.nucleus(&[
        "run",
        "--network",
        &w.net,
        "--egress-allow",
        "nope",
        "--",
        "true",
    ]);
    assert_eq!(bad.status.code(), Some(125));
    assert!(
        text(&bad).contains("--egress-allow: invalid value `nope`: not an IP address or CIDR"),
        "{}",
        text(&bad)
    );
    let missing = w.nucleus(&["run", "--network", "nosuchnet", "--", "true"]);
    assert!(
        text(&missing).contains("--network: invalid value `nosuchnet`: no such network"),
        "{}",
        text(&missing)
    );
    let rm = w.nucleus(&["network", "rm", &w.net]);
    assert!(rm.status.success(), "{}", text(&rm));
    let again = w.nucleus(&["network", "inspect", &w.net]);
    assert!(!again.status.success() && text(&again).contains("does not exist"));
}

#[test]
fn a_detached_sandbox_keeps_its_network_and_policy_until_rm() {
    require!(root);
    if !tools() {
        return;
    }
    let w = World::new();
    w.create_network();
    let x = w.x;
    let name = format!("dn{}", w.tag);
    let dns = format!("198.19.{x}.2");
    let out = w.nucleus(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        &w.net,
        "--dns",
        &dns,
        "--egress-domain",
        "allowed.test",
        "--",
        "sleep",
        "60",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    // The monitor attached it and runs its resolver: a command run later
    // sees the address, the allowed name, and the refusal.
    let script = format!(
        "ip -o addr show eth0; curl -sS -m 3 http://allowed.test/ && echo ALLOWED-OK; \
         curl -sS -m 2 http://198.19.{x}.3/ || echo LITERAL-REFUSED"
    );
    let probe = w.nucleus(&["attach", &name, "--", "sh", "-c", &script]);
    let t = text(&probe);
    let rm = w.nucleus(&["rm", "-f", &name]);
    assert!(rm.status.success(), "{}", text(&rm));
    for marker in [
        format!("10.222.{x}."),
        "remote".into(),
        "ALLOWED-OK".into(),
        "LITERAL-REFUSED".into(),
    ] {
        assert!(t.contains(&marker), "missing {marker}: {t}");
    }
    // `rm` returns once the network is free.
    w.assert_clean();
}

#[test]
fn a_container_joins_another_containers_network_and_reaches_its_loopback() {
    require!(root);
    if !tools() || !which("busybox") {
        return;
    }
    let w = World::new();
    let name = format!("srv{}", w.tag);
    let out = w.nucleus(&[
        "run",
        "-d",
        "--name",
        &name,
        "--",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "127.0.0.1:8080",
        "-h",
        "/etc",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let share = format!("container:{name}");
    let probe = w.nucleus(&[
        "run",
        "--network",
        &share,
        "--",
        "sh",
        "-c",
        "for i in $(seq 50); do curl -sS -m 1 http://127.0.0.1:8080/passwd && exit 0; sleep 0.1; done; exit 1",
    ]);
    let missing = w.nucleus(&["run", "--network", "container:nosuch-ctr", "--", "true"]);
    let rm = w.nucleus(&["rm", "-f", &name]);
    assert!(rm.status.success(), "{}", text(&rm));
    assert!(
        probe.status.success() && text(&probe).contains("root:"),
        "{}",
        text(&probe)
    );
    let err = text(&missing);
    assert!(
        !missing.status.success() && err.contains("--network") && err.contains("nosuch-ctr"),
        "{err}"
    );
}

/// gVisor's netstack on a network: the namespace is made and attached before
/// runsc starts, and the egress policy holds on the host side of the veth.
#[test]
fn a_gvisor_sandbox_on_a_network_reaches_allowed_domains_only() {
    require!(root);
    if !tools() || !std::path::Path::new("/usr/bin/runsc").is_file() {
        eprintln!("skipped: needs /usr/bin/runsc (apt-get install runsc)");
        return;
    }
    let w = World::new();
    w.create_network();
    let x = w.x;
    let dns = format!("198.19.{x}.2");
    let script = format!(
        "cat /proc/version; ip -o addr show eth0; \
         curl -sS -m 5 http://allowed.test/ && echo ALLOWED-OK; \
         curl -sS -m 2 http://198.19.{x}.3/ || echo LITERAL-REFUSED"
    );
    let out = w.nucleus(&[
        "run",
        "--runtime",
        "gvisor",
        "--gvisor-platform",
        "ptrace",
        "--network",
        &w.net,
        "--dns",
        &dns,
        "--egress-domain",
        "allowed.test",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let host_kernel = std::fs::read_to_string("/proc/version").unwrap();
    assert!(
        !t.contains(host_kernel.trim()),
        "ran on the host kernel: {t}"
    );
    for marker in [
        format!("10.222.{x}.2/24"),
        "remote".into(),
        "ALLOWED-OK".into(),
        "LITERAL-REFUSED".into(),
    ] {
        assert!(t.contains(&marker), "missing {marker}: {t}");
    }
    w.assert_clean();
    let left = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = w.root.path().display().to_string();
    assert!(
        !left.lines().any(|l| l.contains(&root)),
        "mounts left under {root}"
    );
}
