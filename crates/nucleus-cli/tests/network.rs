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
        std::fs::write(w.www.path().join("big"), vec![b'x'; 1_000_000]).unwrap();
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
        // A stopped container's veth may be left to the kernel, which
        // removes it with the namespace shortly after.
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut ports = sh(&format!("ip -o link show master {bridge} 2>/dev/null"));
        while !String::from_utf8_lossy(&ports.stdout).trim().is_empty() && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
            ports = sh(&format!("ip -o link show master {bridge} 2>/dev/null"));
        }
        assert!(
            String::from_utf8_lossy(&ports.stdout).trim().is_empty(),
            "veth left: {}",
            text(&ports)
        );
        // A stopped container's set elements lapse (1 ms timeout) rather
        // than being deleted: wait up to 2 s for listings to drop them.
        let t = self.table();
        let list =
            format!("nft list table inet {t} 2>/dev/null; nft list table bridge {t} 2>/dev/null");
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut rules = sh(&list);
        while String::from_utf8_lossy(&rules.stdout).contains("ctr=") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            rules = sh(&list);
        }
        assert!(
            !String::from_utf8_lossy(&rules.stdout).contains("ctr="),
            "rules left: {}",
            text(&rules)
        );
        assert_eq!(self.records(), 0, "attachment records left");
    }

    /// How many attachment records the data root holds.
    fn records(&self) -> usize {
        std::fs::read_dir(self.data.path().join("networks/attachments"))
            .unwrap()
            .count()
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
        &format!(
            "curl -sS -m 3 http://198.19.{x}.3/ && ip -o addr show eth0 && ip -o link show eth0 \
             && curl -sS -m 5 -o /tmp/big http://198.19.{x}.3/big && wc -c < /tmp/big"
        ),
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("remote") && t.contains(&format!("10.222.{x}.2/24")),
        "{t}"
    );
    // The bridge's default MTU is loopback-sized; a download from the
    // remote over its 1500-byte link still arrives whole.
    assert!(t.contains("mtu 65520"), "{t}");
    assert!(t.lines().any(|l| l.trim() == "1000000"), "{t}");
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

/// `events --denials NAME` as JSON objects.
fn denials(w: &World, name: &str) -> Vec<serde_json::Value> {
    let out = w.nucleus(&["events", "--denials", name]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The denials once `done` holds: they are recorded by the container's
/// monitor as the kernel reports them, a moment after the refusal itself.
fn eventually_denials(
    w: &World,
    name: &str,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let evs = denials(w, name);
        if done(&evs) {
            return evs;
        }
        assert!(
            Instant::now() < deadline,
            "denials never recorded: {evs:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Removes a detached container even when an assertion fails first.
struct Ctr<'a>(&'a World, String);

impl Drop for Ctr<'_> {
    fn drop(&mut self) {
        let _ = self.0.nucleus(&["rm", "-f", &self.1]);
    }
}

#[test]
fn a_refused_connection_is_an_event_naming_destination_and_rule() {
    require!(root);
    if !tools() {
        return;
    }
    let w = World::new();
    w.create_network();
    let x = w.x;
    let name = format!("ev{}", w.tag);
    let (allow, deny) = (format!("198.19.{x}.2:80/tcp"), format!("198.19.{x}.3/32"));
    let out = w.nucleus(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        &w.net,
        "--egress-allow",
        &allow,
        "--egress-deny",
        &deny,
        "--",
        "sleep",
        "60",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let ctr = Ctr(&w, name.clone());
    let script = format!(
        "curl -sS -m 3 http://198.19.{x}.2/ && echo ALLOWED-OK; \
         curl -sS -m 2 http://198.19.{x}.3/ || echo DENIED-REFUSED; \
         curl -sS -m 2 http://198.19.{x}.2:81/ || echo OTHER-PORT-REFUSED"
    );
    let probe = w.nucleus(&["attach", &name, "--", "sh", "-c", &script]);
    let t = text(&probe);
    for marker in [
        "remote",
        "ALLOWED-OK",
        "DENIED-REFUSED",
        "OTHER-PORT-REFUSED",
    ] {
        assert!(t.contains(marker), "missing {marker}: {t}");
    }
    let has = |evs: &[serde_json::Value], target: &str, rule: &str| {
        evs.iter().any(|e| {
            e["kind"] == "connect"
                && e["target"] == target
                && e["rule"] == rule
                && e["container"].as_str().is_some_and(|c| !c.is_empty())
                && e["time"].as_str().is_some_and(|t| t.ends_with('Z'))
        })
    };
    let (denied, other) = (
        (
            format!("198.19.{x}.3:80/tcp"),
            format!("egress-deny 198.19.{x}.3/32"),
        ),
        (format!("198.19.{x}.2:81/tcp"), "default-deny".to_string()),
    );
    let evs = eventually_denials(&w, &name, |evs| {
        has(evs, &denied.0, &denied.1) && has(evs, &other.0, &other.1)
    });
    assert!(
        !evs.iter()
            .any(|e| e["target"] == format!("198.19.{x}.2:80/tcp")),
        "an allowed connection is no denial: {evs:#?}"
    );
    let table = w.nucleus(&["events", "--denials", "--format", "table", &name]);
    assert!(
        text(&table).contains("default-deny") && text(&table).contains("TARGET"),
        "{}",
        text(&table)
    );
    let inspect = w.nucleus(&["inspect", &name]);
    let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let settings = &v[0]["NetworkSettings"];
    assert_eq!(settings["Network"], w.net.as_str(), "{settings:#}");
    assert_eq!(
        settings["Denials"]["Count"].as_u64(),
        Some(evs.len() as u64),
        "{settings:#}"
    );
    assert!(settings["IPAddress"]
        .as_str()
        .is_some_and(|a| a.starts_with(&format!("10.222.{x}."))));
    drop(ctr);
    // The listener went with the monitor, the rules with the container.
    assert!(
        !sh(&format!("ss -A netlink -p | grep -q {name}"))
            .status
            .success(),
        "NFLOG socket left"
    );
    w.assert_clean();
}

#[test]
fn a_refused_domain_is_an_event_naming_the_name() {
    require!(root);
    if !tools() {
        return;
    }
    let w = World::new();
    w.create_network();
    let x = w.x;
    let name = format!("evd{}", w.tag);
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
    let ctr = Ctr(&w, name.clone());
    let probe = w.nucleus(&[
        "attach",
        &name,
        "--",
        "sh",
        "-c",
        "getent hosts allowed.test && echo ALLOWED-OK; getent hosts denied.test || echo NAME-REFUSED",
    ]);
    let t = text(&probe);
    assert!(
        t.contains("ALLOWED-OK") && t.contains("NAME-REFUSED"),
        "{t}"
    );
    let evs = eventually_denials(&w, &name, |evs| {
        evs.iter().any(|e| {
            e["kind"] == "dns" && e["target"] == "denied.test" && e["rule"] == "egress-domain"
        })
    });
    assert!(
        !evs.iter().any(|e| e["target"] == "allowed.test"),
        "{evs:#?}"
    );
    // A container without an attached network has no denials to show.
    let none = w.nucleus(&[
        "run",
        "-d",
        "--name",
        &format!("{name}n"),
        "--",
        "sleep",
        "60",
    ]);
    assert!(none.status.success(), "{}", text(&none));
    let _none = Ctr(&w, format!("{name}n"));
    let refused = w.nucleus(&["events", "--denials", &format!("{name}n")]);
    assert!(
        !refused.status.success() && text(&refused).contains("no egress denials"),
        "{}",
        text(&refused)
    );
    drop(ctr);
    w.assert_clean();
}

#[test]
fn publish_all_publishes_the_images_exposed_ports_on_free_host_ports() {
    require!(root);
    if !tools() {
        return;
    }
    if let Some(why) = common::registry::missing_tools() {
        eprintln!("skipped: {why}");
        return;
    }
    let w = World::new();
    w.create_network();
    let reg = common::registry::Registry::start();
    let work = tempfile::tempdir().unwrap();
    let script = r#"
        umoci init --layout oci
        umoci new --image oci:web
        umoci unpack --image oci:web b >/dev/null
        mkdir -p b/rootfs/bin b/rootfs/www
        cp /bin/busybox b/rootfs/bin/
        ln -s busybox b/rootfs/bin/sh
        echo exposed > b/rootfs/www/index.html
        umoci repack --image oci:web b >/dev/null
        umoci config --image oci:web --config.exposedports 8080/tcp --config.exposedports 9/udp \
            --config.cmd /bin/busybox --config.cmd httpd --config.cmd -f --config.cmd -p --config.cmd 8080 \
            --config.cmd -h --config.cmd /www --config.env PATH=/bin
        rm -rf b
    "#;
    common::registry::sh(script, work.path()).assert_ok();
    let repo = reg.push(
        &work.path().join("oci"),
        "web",
        &format!("test/web{}:1", w.tag),
    );
    let name = format!("pa{}", w.tag);
    let out = w.nucleus(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        &w.net,
        "-P",
        &repo,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let ctr = Ctr(&w, name.clone());
    let inspect = w.nucleus(&["inspect", &name]);
    let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let ports = &v[0]["NetworkSettings"]["Ports"];
    let host_port = |key: &str| -> u16 {
        ports[key][0]["HostPort"]
            .as_str()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{key} not published: {ports:#}"))
    };
    let (web, udp) = (host_port("8080/tcp"), host_port("9/udp"));
    assert!(web != 0 && udp != 0, "{ports:#}");
    // `port` lists the same mappings, Docker's way, and refuses one not published.
    let all = w.nucleus(&["port", &name]);
    let listed = String::from_utf8_lossy(&all.stdout).to_string();
    assert!(all.status.success(), "{}", text(&all));
    for line in [
        format!("8080/tcp -> 0.0.0.0:{web}"),
        format!("8080/tcp -> [::]:{web}"),
        format!("9/udp -> 0.0.0.0:{udp}"),
    ] {
        assert!(
            listed.lines().any(|l| l == line),
            "{line} not in:\n{listed}"
        );
    }
    let one = w.nucleus(&["port", &name, "9/udp"]);
    assert_eq!(
        String::from_utf8_lossy(&one.stdout),
        format!("0.0.0.0:{udp}\n[::]:{udp}\n"),
        "{}",
        text(&one)
    );
    let json = w.nucleus(&["port", &name, "8080", "--format", "json"]);
    let first: serde_json::Value =
        serde_json::from_slice(json.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(first["host_port"], web, "{}", text(&json));
    assert_eq!(first["proto"], "tcp");
    let missing = w.nucleus(&["port", &name, "81"]);
    assert!(!missing.status.success(), "{}", text(&missing));
    assert!(text(&missing).contains("81/tcp"), "{}", text(&missing));
    let fetch = sh(&format!(
        "for i in $(seq 50); do curl -sS -m 1 http://127.0.0.1:{web}/ && exit 0; sleep 0.1; done; exit 1"
    ));
    let logs = w.nucleus(&["logs", &name]);
    assert!(
        fetch.status.success() && text(&fetch).contains("exposed"),
        "{}\nports: {ports:#}\nlogs: {}",
        text(&fetch),
        text(&logs)
    );
    drop(ctr);
    let _ = w.nucleus(&["rmi", &repo]);
    w.assert_clean();
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

/// The host side of the attach is made before the clone, owned by the
/// runtime: a runtime killed right after the clone leaves a record whose
/// owner is gone, which the next start repairs; `rm -f` removes the rest.
#[test]
fn a_runtime_killed_after_preparing_the_network_is_repaired_by_the_next_start() {
    require!(root);
    if !tools() {
        return;
    }
    if !common::is_nucleus() || !cfg!(debug_assertions) {
        eprintln!("skipped: needs a debug build of nucleus (NUCLEUS_FAULT)");
        return;
    }
    let w = World::new();
    w.create_network();
    let x = w.x;
    let name = format!("killed{}", w.tag);
    let out = Command::new(common::runtime())
        .arg("--root")
        .arg(w.root.path())
        .args(["run", "--name", &name, "--network", &w.net, "--", "true"])
        .env("NUCLEUS_DATA_ROOT", w.data.path())
        .env("NUCLEUS_NFT_TABLE", w.table())
        .env("NUCLEUS_FAULT", "launch-cloned")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(libc::SIGKILL),
        "{}",
        text(&out)
    );
    assert_eq!(w.records(), 1, "the killed run's record should be there");
    let out = w.nucleus(&[
        "run",
        "--network",
        &w.net,
        "--",
        "curl",
        "-sS",
        "-m",
        "3",
        &format!("http://198.19.{x}.3/"),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("remote"), "{}", text(&out));
    let id = std::fs::read_to_string(w.root.path().join(".names").join(&name)).unwrap();
    let out = w.nucleus(&["rm", "-f", &name]);
    assert!(out.status.success(), "{}", text(&out));
    w.assert_clean();
    let left: Vec<_> = std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .map(|c| c.path().join(format!("nucleus-{id}")))
        .filter(|p| p.exists())
        .collect();
    assert!(left.is_empty(), "cgroups left: {left:?}");
    assert!(!w.root.path().join(&id).exists(), "state left");
    assert!(
        !w.root.path().join(".bundles").join(&id).exists(),
        "bundle left"
    );
}
