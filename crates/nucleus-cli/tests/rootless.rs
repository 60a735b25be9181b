//! nucleus run by an ordinary user: the test (as root) creates a unique user,
//! with or without a subordinate id range, and a runtime directory it owns,
//! runs nucleus as that user with only `XDG_RUNTIME_DIR` and `HOME` set, and
//! asserts on what the contained process sees. A `Drop` guard removes the
//! user, its home, runtime dir, subuid/subgid lines and processes.

#[macro_use]
mod common;

use common::Out;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A throwaway ordinary user; everything it owns goes on drop.
struct TestUser {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
    runtime_dir: PathBuf,
    /// Host-side scratch space the user owns (outside its home).
    scratch: tempfile::TempDir,
    range: Option<(u32, u32)>,
}

fn sh(cmd: &str, args: &[&str]) -> Out {
    let io = tempfile::tempdir().expect("io dir");
    let mut c = Command::new(cmd);
    c.args(args);
    common::exec(c, io.path(), Duration::from_secs(30))
}

impl TestUser {
    /// `with_range`: a subordinate uid/gid range of 65536 ids.
    fn create(with_range: bool) -> TestUser {
        Self::create_in(with_range, "/tmp")
    }

    /// With the runtime dir under `base` (e.g. a tmpfs, as /run/user is).
    fn create_in(with_range: bool, base: &str) -> TestUser {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let name = format!("nrl{}x{n}", pid % 100_000);
        // No automatic range: the test decides whether there is one.
        sh(
            "useradd",
            &[
                "-m",
                "-s",
                "/bin/sh",
                "-K",
                "SUB_UID_COUNT=0",
                "-K",
                "SUB_GID_COUNT=0",
                &name,
            ],
        )
        .assert_ok();
        let pw = nix::unistd::User::from_name(&name)
            .expect("getpwnam")
            .expect("user exists");
        let range = with_range.then(|| (2_000_000 + (pid % 1000) * 200_000 + n * 70_000, 65_536));
        let mut user = TestUser {
            name: name.clone(),
            uid: pw.uid.as_raw(),
            gid: pw.gid.as_raw(),
            home: pw.dir.clone(),
            runtime_dir: PathBuf::from(format!("{base}/nrl-run-{name}")),
            scratch: tempfile::Builder::new()
                .prefix("nrl-scratch-")
                .tempdir()
                .expect("scratch"),
            range,
        };
        if let Some((start, count)) = range {
            let r = format!("{start}-{}", start + count - 1);
            sh(
                "usermod",
                &["--add-subuids", &r, "--add-subgids", &r, &name],
            )
            .assert_ok();
        }
        fs::create_dir(&user.runtime_dir).expect("runtime dir");
        for d in [&user.runtime_dir, &user.scratch.path().to_path_buf()] {
            std::os::unix::fs::chown(d, Some(user.uid), Some(user.gid)).expect("chown");
            fs::set_permissions(d, fs::Permissions::from_mode(0o700)).expect("chmod");
        }
        user.home = pw.dir;
        user
    }

    fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    /// nucleus ARGS as this user, from its home, with a minimal environment.
    fn nucleus(&self, args: &[&str]) -> Out {
        self.nucleus_env(args, &[])
    }

    fn nucleus_env(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        self.nucleus_in(args, env, None)
    }

    /// With `procs`: started inside that cgroup (its `cgroup.procs`), as a
    /// systemd session is inside its delegated subtree.
    fn nucleus_in(&self, args: &[&str], env: &[(&str, &str)], procs: Option<&Path>) -> Out {
        let io = tempfile::tempdir().expect("io dir");
        let mut c = Command::new("sh");
        if let Some(p) = procs {
            c.args(["-c", "echo $$ > \"$0\" && exec \"$@\""]).arg(p);
        } else {
            c.args(["-c", "exec \"$@\"", "sh"]);
        }
        c.arg("setpriv");
        c.args([
            "--reuid",
            &self.uid.to_string(),
            "--regid",
            &self.gid.to_string(),
            "--init-groups",
            "--",
        ])
        .arg(common::runtime())
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .env("HOME", &self.home)
        .env("XDG_RUNTIME_DIR", &self.runtime_dir)
        .current_dir(&self.home);
        for (k, v) in env {
            c.env(k, v);
        }
        common::exec(c, io.path(), common::CMD_TIMEOUT)
    }

    /// `nucleus run ARGS`.
    fn run(&self, args: &[&str]) -> Out {
        let mut all = vec!["run"];
        all.extend_from_slice(args);
        self.nucleus(&all)
    }

    /// The state root nucleus picks for this user.
    fn state_root(&self) -> PathBuf {
        self.runtime_dir.join("nucleus")
    }

    /// Entries left in the state root other than the shared caches
    /// (`.agent-rootfs` skeleton, compiled seccomp programs) and the shared
    /// user namespace's holder (`.userns`, gone after `rm` or `system prune`).
    fn leftovers(&self) -> Vec<String> {
        let mut out = Vec::new();
        let Ok(rd) = fs::read_dir(self.state_root()) else {
            return out;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if matches!(
                name.as_str(),
                ".agent-rootfs" | ".seccomp-cache" | ".userns"
            ) {
                continue;
            }
            // Bookkeeping directories must be empty.
            if name.starts_with('.') && e.path().is_dir() {
                for inner in fs::read_dir(e.path()).into_iter().flatten().flatten() {
                    out.push(format!("{name}/{}", inner.file_name().to_string_lossy()));
                }
                continue;
            }
            out.push(name);
        }
        out
    }

    /// A busybox root filesystem owned by the user.
    fn rootfs(&self) -> PathBuf {
        let dir = self.scratch().join("rootfs");
        common::build_rootfs(&dir);
        sh(
            "chown",
            &[
                "-R",
                &format!("{}:{}", self.uid, self.gid),
                &dir.to_string_lossy(),
            ],
        )
        .assert_ok();
        dir
    }

    /// This user's processes that are not zombies (a helper left running).
    fn live_pids(&self) -> Vec<i32> {
        self.pids()
            .into_iter()
            .filter(|p| {
                let st = fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
                let state = st
                    .rsplit_once(')')
                    .map(|(_, r)| r.trim_start())
                    .unwrap_or("");
                !state.starts_with('Z') && !state.is_empty()
            })
            .collect()
    }

    fn pids(&self) -> Vec<i32> {
        let mut out = Vec::new();
        for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if fs::metadata(e.path()).is_ok_and(|m| m.uid() == self.uid) {
                out.push(pid);
            }
        }
        out
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        // This user's processes only (a detached container, its monitor), by pid.
        for _ in 0..50 {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for p in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some((start, count)) = self.range {
            let r = format!("{start}-{}", start + count - 1);
            let _ = sh(
                "usermod",
                &["--del-subuids", &r, "--del-subgids", &r, &self.name],
            );
        }
        let _ = sh("userdel", &["-r", "-f", &self.name]);
        let _ = fs::remove_dir_all(&self.runtime_dir);
        // Whatever the container made under subordinate ids in scratch.
        let _ = sh("rm", &["-rf", &self.scratch.path().to_string_lossy()]);
    }
}

/// Skips unless root (to create users), user namespaces and newuidmap exist.
macro_rules! needs_rootless_host {
    () => {
        require!(root, userns, busybox);
        if !Path::new("/usr/bin/newuidmap").exists() {
            eprintln!("skipped: needs newuidmap (apt-get install uidmap)");
            return;
        }
    };
}

/// `key=value` lines.
fn field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {out:?}"))
        .trim()
}

const PROBE: &str = "echo uid=$(id -u); echo gid=$(id -g); \
    echo map=$(cat /proc/self/uid_map | tr -s ' ' | tr '\\n' ';'); \
    echo gmap=$(cat /proc/self/gid_map | tr -s ' ' | tr '\\n' ';'); \
    echo usr_owner=$(stat -c %u /usr)";

#[test]
fn agent_run_maps_container_root_to_the_user_and_the_range_behind_it() {
    needs_rootless_host!();
    let u = TestUser::create(true);
    let (start, count) = u.range.unwrap();
    let out = u.run(&["--", "/bin/sh", "-c", PROBE]);
    out.assert_ok();
    assert_eq!(field(&out.stdout, "uid"), "0", "{out}");
    assert_eq!(
        field(&out.stdout, "map"),
        format!("0 {} 1; 1 {start} {count};", u.uid),
        "{out}"
    );
    assert_eq!(
        field(&out.stdout, "gmap"),
        format!("0 {} 1; 1 {start} {count};", u.gid),
        "{out}"
    );
    // The host's root-owned files belong to nobody in here.
    assert_eq!(field(&out.stdout, "usr_owner"), "65534", "{out}");
    // State under $XDG_RUNTIME_DIR/nucleus, private to the user.
    let meta = fs::metadata(u.state_root()).expect("state root made");
    assert_eq!((meta.uid(), meta.mode() & 0o777), (u.uid, 0o700));
    assert!(u.leftovers().is_empty(), "left: {:?}", u.leftovers());
    // A uid outside the mapped range is refused by name.
    let out = u.run(&["-u", "70000", "--", "/bin/true"]);
    assert_eq!(out.code, Some(125), "{out}");
    assert!(
        out.stderr.contains("-u/--user") && out.stderr.contains("70000"),
        "{out}"
    );
    // Inside the range, the workload runs as it.
    let out = u.run(&["-u", "1000", "--", "/bin/sh", "-c", "id -u"]);
    out.assert_ok();
    assert_eq!(out.out(), "1000");
}

#[test]
fn without_a_range_the_user_gets_a_single_id_map_and_debug_says_so() {
    needs_rootless_host!();
    let u = TestUser::create(false);
    let out = u.nucleus(&["--debug", "run", "--", "/bin/sh", "-c", PROBE]);
    out.assert_ok();
    assert_eq!(field(&out.stdout, "uid"), "0", "{out}");
    assert_eq!(
        field(&out.stdout, "map"),
        format!("0 {} 1;", u.uid),
        "{out}"
    );
    assert!(out.stderr.contains("no subordinate id range"), "{out}");
    // Modes that need a range say which file lacks it.
    let out = u.run(&["--userns", "nomap", "--", "/bin/true"]);
    assert_eq!(out.code, Some(125), "{out}");
    assert!(
        out.stderr.contains("--userns") && out.stderr.contains("/etc/subuid"),
        "{out}"
    );
    assert!(u.leftovers().is_empty(), "left: {:?}", u.leftovers());
}

#[test]
fn a_limit_without_a_cgroup_is_refused_by_name_and_pids_fall_back_to_rlimit_nproc() {
    needs_rootless_host!();
    let u = TestUser::create(true);
    for (flag, value) in [("--memory", "64m"), ("--pids", "50"), ("--cpus", "1")] {
        let out = u.run(&[flag, value, "--", "/bin/true"]);
        assert_eq!(out.code, Some(125), "{out}");
        assert!(
            out.stderr.contains(flag) && out.stderr.contains("cgroup"),
            "{out}"
        );
    }
    // Degraded security allowed: it runs, unenforced.
    let out = u.run(&[
        "--memory",
        "64m",
        "--allow-degraded-security",
        "--",
        "/bin/true",
    ]);
    out.assert_ok();
    // The agent's default pids limit becomes RLIMIT_NPROC, said once with --debug.
    let out = u.nucleus(&[
        "--debug",
        "run",
        "--",
        "/bin/sh",
        "-c",
        "grep 'Max processes' /proc/self/limits",
    ]);
    out.assert_ok();
    assert!(out.stdout.contains("1024"), "{out}");
    assert_eq!(out.stderr.matches("RLIMIT_NPROC").count(), 1, "{out}");
    assert!(u.leftovers().is_empty(), "left: {:?}", u.leftovers());
}

#[test]
fn rootfs_and_keep_id_volume_writes_files_owned_by_the_user() {
    needs_rootless_host!();
    let u = TestUser::create(true);
    let rootfs = u.rootfs();
    let out = u.run(&[
        "--rootfs",
        &rootfs.to_string_lossy(),
        "--",
        "/bin/sh",
        "-c",
        "id -u; cat /proc/self/uid_map | wc -l",
    ]);
    out.assert_ok();
    assert_eq!(out.out().split_whitespace().collect::<Vec<_>>(), ["0", "2"]);
    let vol = u.scratch().join("vol");
    fs::create_dir(&vol).unwrap();
    std::os::unix::fs::chown(&vol, Some(u.uid), Some(u.gid)).unwrap();
    let out = u.run(&[
        "--userns",
        "keep-id",
        "-v",
        &format!("{}:/data", vol.display()),
        "--",
        "/bin/sh",
        "-c",
        "id -u; echo hi > /data/made-inside",
    ]);
    out.assert_ok();
    assert_eq!(out.out(), u.uid.to_string(), "{out}");
    let meta = fs::metadata(vol.join("made-inside")).expect("file written");
    assert_eq!((meta.uid(), meta.gid()), (u.uid, u.gid));
    // Container root writes as the user too; a subordinate uid as its host id.
    let out = u.run(&[
        "-v",
        &format!("{}:/data", vol.display()),
        "--",
        "/bin/sh",
        "-c",
        "touch /data/by-root",
    ]);
    out.assert_ok();
    assert_eq!(fs::metadata(vol.join("by-root")).unwrap().uid(), u.uid);
    assert!(u.leftovers().is_empty(), "left: {:?}", u.leftovers());
}

#[test]
fn detached_lifecycle_as_an_ordinary_user() {
    needs_rootless_host!();
    let u = TestUser::create(true);
    let name = format!("d{}", std::process::id());
    let out = u.run(&[
        "-d",
        "--name",
        &name,
        "--",
        "/bin/sh",
        "-c",
        "echo started; exec sleep 60",
    ]);
    out.assert_ok();
    assert!(common::wait_until(Duration::from_secs(10), || {
        u.nucleus(&["logs", &name]).stdout.contains("started")
    }));
    let ps = u.nucleus(&["ps"]);
    ps.assert_ok();
    assert!(ps.stdout.contains(&name), "{ps}");
    let at = u.nucleus(&[
        "attach",
        &name,
        "--",
        "/bin/sh",
        "-c",
        "id -u; cat /proc/1/cmdline",
    ]);
    at.assert_ok();
    assert!(
        at.stdout.starts_with("0\n") && at.stdout.contains("sleep"),
        "{at}"
    );
    let st = u.nucleus(&["stats", "--no-stream", &name]);
    assert!(
        st.stdout.contains("no cgroup") || st.stderr.contains("no cgroup"),
        "{st}"
    );
    u.nucleus(&["stop", "-t", "1", &name]).assert_ok();
    u.nucleus(&["rm", &name]).assert_ok();
    let ps = u.nucleus(&["ps", "-a"]);
    assert!(!ps.stdout.contains(&name), "{ps}");
    assert!(u.leftovers().is_empty(), "left: {:?}", u.leftovers());
}

#[test]
fn oci_verbs_with_a_rootless_spec_and_no_range() {
    needs_rootless_host!();
    let u = TestUser::create(false);
    let bundle = u.scratch().join("bundle");
    fs::create_dir(&bundle).unwrap();
    common::build_rootfs(&bundle.join("rootfs"));
    sh(
        "chown",
        &[
            "-R",
            &format!("{}:{}", u.uid, u.gid),
            &bundle.to_string_lossy(),
        ],
    )
    .assert_ok();
    let b = bundle.to_string_lossy().into_owned();
    u.nucleus(&["spec", "--rootless", "--bundle", &b])
        .assert_ok();
    let cfg = bundle.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&cfg).unwrap()).unwrap();
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(["/bin/sh", "-c", "cat /proc/self/uid_map; id -u"]);
    fs::write(&cfg, spec.to_string()).unwrap();
    let id = common::unique_id();
    let out = u.nucleus(&["run", "--bundle", &b, &id]);
    out.assert_ok();
    let words: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(words, ["0", &u.uid.to_string(), "1", "0"], "{out}");
    // create / start / state / delete.
    spec["process"]["args"] = serde_json::json!(["/bin/sleep", "30"]);
    fs::write(&cfg, spec.to_string()).unwrap();
    u.nucleus(&["create", "--bundle", &b, &id]).assert_ok();
    u.nucleus(&["start", &id]).assert_ok();
    let st = u.nucleus(&["state", &id]);
    st.assert_ok();
    assert_eq!(st.json()["status"], "running", "{st}");
    u.nucleus(&["delete", "--force", &id]).assert_ok();
    assert!(u.leftovers().is_empty(), "left: {:?}", u.leftovers());
}

/// Makes /dev/net/tun usable by ordinary users (its usual mode, 0666) for
/// the test, and puts the mode back.
struct TunMode(Option<u32>);

impl TunMode {
    fn open_to_users() -> TunMode {
        let mode = fs::metadata("/dev/net/tun").map(|m| m.mode() & 0o7777).ok();
        if mode.is_some_and(|m| m & 0o006 != 0o006) {
            fs::set_permissions("/dev/net/tun", fs::Permissions::from_mode(0o666))
                .expect("chmod /dev/net/tun");
            return TunMode(mode);
        }
        TunMode(None)
    }
}

impl Drop for TunMode {
    fn drop(&mut self) {
        if let Some(m) = self.0 {
            let _ = fs::set_permissions("/dev/net/tun", fs::Permissions::from_mode(m));
        }
    }
}

#[test]
fn pasta_reaches_a_loopback_server_on_the_host_and_publishes_a_port() {
    needs_rootless_host!();
    if !Path::new("/usr/bin/pasta").exists() || !Path::new("/usr/bin/slirp4netns").exists() {
        eprintln!("skipped: needs pasta and slirp4netns (apt-get install passt slirp4netns)");
        return;
    }
    let gateway = fs::read_to_string("/proc/net/route")
        .ok()
        .and_then(|t| {
            t.lines().skip(1).find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(1) == Some(&"00000000"))
                    .then(|| u32::from_str_radix(f.get(2)?, 16).ok())
                    .flatten()
            })
        })
        .map(|g| std::net::Ipv4Addr::from(g.swap_bytes()));
    let Some(gateway) = gateway else {
        eprintln!("skipped: pasta needs a host default route to copy");
        return;
    };
    let _tun = TunMode::open_to_users();
    let u = TestUser::create(true);
    // A server only the host's loopback can reach.
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let serve = std::thread::spawn(move || {
        use std::io::Write;
        let (mut c, _) = server.accept().unwrap();
        c.write_all(b"hello-from-host\n").unwrap();
    });
    let out = u.run(&[
        "--network",
        "pasta",
        "--",
        "python3",
        "-c",
        &format!(
            "import socket; s=socket.create_connection(('{gateway}', {port}), timeout=5); print(s.recv(64).decode().strip())"
        ),
    ]);
    out.assert_ok();
    assert_eq!(out.out(), "hello-from-host", "{out}");
    serve.join().unwrap();
    // A published port, reached from the host.
    let host_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let name = format!("p{}", std::process::id());
    let bg = {
        let publish = format!("{host_port}:8080");
        let args = vec![
            "run".to_string(),
            "--name".into(),
            name,
            "--network".into(),
            "pasta".into(),
            "-p".into(),
            publish,
            "--".into(),
            "python3".into(),
            "-c".into(),
            "import socket; s=socket.socket(); s.bind(('0.0.0.0', 8080)); s.listen(1); c,_=s.accept(); c.sendall(b'hello-from-container')".into(),
        ];
        let u = &u;
        std::thread::scope(|sc| {
            let h = sc.spawn(move || {
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                u.nucleus(&refs)
            });
            let mut got = String::new();
            common::wait_until(Duration::from_secs(20), || {
                use std::io::Read;
                match std::net::TcpStream::connect(("127.0.0.1", host_port)) {
                    Ok(mut s) => {
                        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                        got.clear();
                        let _ = s.read_to_string(&mut got);
                        !got.is_empty()
                    }
                    Err(_) => false,
                }
            });
            (got, h.join().unwrap())
        })
    };
    assert_eq!(bg.0, "hello-from-container", "{}", bg.1);
    bg.1.assert_ok();
    // pasta went with its containers.
    assert!(
        common::wait_until(Duration::from_secs(3), || stray_pids(&u).is_empty()),
        "left running: {:?}",
        stray_pids(&u)
    );
    // slirp4netns: the host's loopback at 10.0.2.2.
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let serve = std::thread::spawn(move || {
        use std::io::Write;
        let (mut c, _) = server.accept().unwrap();
        c.write_all(b"hello-via-slirp\n").unwrap();
    });
    let out = u.run(&[
        "--network",
        "slirp4netns",
        "--",
        "python3",
        "-c",
        &format!(
            "import socket; s=socket.create_connection(('10.0.2.2', {port}), timeout=5); print(s.recv(64).decode().strip())"
        ),
    ]);
    out.assert_ok();
    assert_eq!(out.out(), "hello-via-slirp", "{out}");
    serve.join().unwrap();
    assert!(
        common::wait_until(Duration::from_secs(3), || stray_pids(&u).is_empty()),
        "left running: {:?}",
        stray_pids(&u)
    );
    assert!(u.leftovers().is_empty(), "left: {:?}", u.leftovers());
}

/// The user's processes whose command starts with one of `comms`.
fn procs_named(u: &TestUser, comms: &[&str]) -> Vec<i32> {
    u.live_pids()
        .into_iter()
        .filter(|p| {
            fs::read_to_string(format!("/proc/{p}/comm"))
                .is_ok_and(|c| comms.iter().any(|n| c.starts_with(n)))
        })
        .collect()
}

#[test]
fn pasta_publishes_a_port_of_a_detached_container_and_rm_stops_it_after_its_monitor_died() {
    needs_rootless_host!();
    if !Path::new("/usr/bin/pasta").exists() {
        eprintln!("skipped: needs pasta (apt-get install passt)");
        return;
    }
    let _tun = TunMode::open_to_users();
    let u = TestUser::create(true);
    let rootfs = u.scratch().join("rootfs");
    common::build_rootfs(&rootfs);
    fs::create_dir(rootfs.join("www")).unwrap();
    fs::write(rootfs.join("www/index.html"), "hello-detached\n").unwrap();
    sh(
        "chown",
        &[
            "-R",
            &format!("{}:{}", u.uid, u.gid),
            &rootfs.to_string_lossy(),
        ],
    )
    .assert_ok();
    let host_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let name = format!("pd{}", std::process::id());
    let get = || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", host_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").ok()?;
        let mut got = String::new();
        let _ = s.read_to_string(&mut got);
        Some(got)
    };
    let out = u.run(&[
        "-d",
        "--name",
        &name,
        "--network",
        "pasta",
        "-p",
        &format!("{host_port}:8080"),
        "--rootfs",
        &rootfs.to_string_lossy(),
        "--",
        "/bin/busybox",
        "httpd",
        "-f",
        "-p",
        "8080",
        "-h",
        "/www",
    ]);
    out.assert_ok();
    assert!(
        common::wait_until(Duration::from_secs(10), || get()
            .is_some_and(|g| g.contains("hello-detached"))),
        "no answer on 127.0.0.1:{host_port}: {:?}; log: {}",
        get(),
        u.nucleus(&["logs", &name])
    );
    // Debian's pasta re-executes itself as `passt.avx2`.
    assert_eq!(
        procs_named(&u, &["pasta", "passt"]).len(),
        1,
        "{:?}",
        u.live_pids()
    );
    // The monitor dies without cleaning up; `rm -f` still stops pasta.
    let monitors = procs_named(&u, &["nucleus:[mon]"]);
    assert_eq!(monitors.len(), 1, "monitors: {monitors:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitors[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(get().is_some_and(|g| g.contains("hello-detached")));
    u.nucleus(&["rm", "-f", &name]).assert_ok();
    assert!(
        common::wait_until(Duration::from_secs(3), || u.live_pids().is_empty()),
        "left running: {:?}",
        u.live_pids()
    );
    assert!(get().is_none(), "port {host_port} still answers");
    assert!(u.leftovers().is_empty(), "left: {:?}", u.leftovers());
}

#[test]
fn secrets_stay_in_memory_when_the_runtime_dir_is_a_tmpfs_and_are_refused_otherwise() {
    needs_rootless_host!();
    let u = TestUser::create_in(true, "/dev/shm");
    let secret = u.scratch().join("token");
    fs::write(&secret, "s3cret").unwrap();
    std::os::unix::fs::chown(&secret, Some(u.uid), Some(u.gid)).unwrap();
    let arg = format!("{}:/run/secrets/token", secret.display());
    let out = u.run(&[
        "--secret",
        &arg,
        "--",
        "/bin/sh",
        "-c",
        "cat /run/secrets/token; stat -c %a /run/secrets/token",
    ]);
    out.assert_ok();
    assert_eq!(out.out(), "s3cret400", "{out}");
    assert!(u.leftovers().is_empty(), "left: {:?}", u.leftovers());
    // On a disk-backed state root the secret is refused, by flag.
    let disk = TestUser::create(true);
    let secret = disk.scratch().join("token");
    fs::write(&secret, "s3cret").unwrap();
    std::os::unix::fs::chown(&secret, Some(disk.uid), Some(disk.gid)).unwrap();
    let out = disk.run(&[
        "--secret",
        &format!("{}:/run/secrets/t", secret.display()),
        "--",
        "/bin/true",
    ]);
    assert_eq!(out.code, Some(125), "{out}");
    assert!(
        out.stderr.contains("--secret") && out.stderr.contains("tmpfs"),
        "{out}"
    );
    assert!(disk.leftovers().is_empty(), "left: {:?}", disk.leftovers());
}

/// An OCI archive `nucleus.test/rootless:1` built from busybox (as root, with
/// umoci): a first layer with `/etc/gone` and `/opq/old`, a second that
/// adds `/owned` owned by 100:100 and whiteouts `/etc/gone`, and a third,
/// made by hand, that marks `/opq` opaque and adds `/opq/new`. Readable by all.
fn layered_image(dir: &Path) -> Option<PathBuf> {
    for tool in ["umoci", "skopeo"] {
        if common::managers::tool(tool).is_none() {
            eprintln!("skipped: needs {tool}");
            return None;
        }
    }
    let io = tempfile::tempdir().expect("io dir");
    let run = |script: &str| {
        let mut c = Command::new("sh");
        c.args(["-euc", script]).current_dir(dir);
        common::exec(c, io.path(), Duration::from_secs(120)).assert_ok();
    };
    run(
        "umoci init --layout oci; umoci new --image oci:t; umoci unpack --image oci:t b >/dev/null",
    );
    let rootfs = dir.join("b/rootfs");
    common::managers::populate_rootfs(&rootfs);
    fs::write(rootfs.join("etc/gone"), "whited out\n").unwrap();
    fs::create_dir(rootfs.join("opq")).unwrap();
    fs::write(rootfs.join("opq/old"), "hidden by the opaque dir\n").unwrap();
    run("umoci repack --image oci:t b >/dev/null");
    fs::write(rootfs.join("owned"), "mine\n").unwrap();
    std::os::unix::fs::chown(rootfs.join("owned"), Some(100), Some(100)).unwrap();
    fs::remove_file(rootfs.join("etc/gone")).unwrap();
    run("umoci repack --image oci:t b >/dev/null; umoci config --image oci:t --config.cmd sh");
    // The opaque layer, appended by hand (umoci writes whiteouts per file).
    let layer = dir.join("opq");
    fs::create_dir_all(layer.join("opq")).unwrap();
    fs::write(layer.join("opq/.wh..wh..opq"), "").unwrap();
    fs::write(layer.join("opq/new"), "new\n").unwrap();
    run("tar -C opq --owner=0 --group=0 -cf opq.tar opq; \
         umoci raw add-layer --image oci:t opq.tar");
    let archive = dir.join("image.tar");
    run(&format!(
        "skopeo copy -q oci:oci:t oci-archive:{}:nucleus.test/rootless:1; chmod -R a+rX {}",
        archive.display(),
        dir.display()
    ));
    Some(archive)
}

/// Every entry under the user's data root's image directories.
fn data_leftovers(u: &TestUser) -> Vec<String> {
    let data = u.home.join(".local/share/nucleus");
    let mut out = Vec::new();
    for sub in ["layers", "shifted", "blobs/sha256", "users", "ingest"] {
        for e in fs::read_dir(data.join(sub)).into_iter().flatten().flatten() {
            out.push(format!("{sub}/{}", e.file_name().to_string_lossy()));
        }
    }
    out
}

/// The shifted layer copies of the user's store: name → (inode, ctime ns).
fn shifted_copies(u: &TestUser) -> BTreeMap<String, (u64, i64)> {
    let dir = u.home.join(".local/share/nucleus/shifted");
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let m = e.metadata().unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                (m.ino(), m.ctime() * 1_000_000_000 + m.ctime_nsec()),
            )
        })
        .collect()
}

/// Layers are unpacked for the default map (container 0 = the user); a
/// run with another map (`keep-id`, `--uidmap`) gets copies of them with
/// owners for its map, made once and reused, and removed with the image.
/// A map that cannot hold the image's owners is refused by flag.
#[test]
fn an_image_runs_with_keep_id_or_another_uidmap_on_shifted_layers() {
    needs_rootless_host!();
    let u = TestUser::create(true);
    let (start, _) = u.range.unwrap();
    let build = tempfile::tempdir().expect("build dir");
    fs::set_permissions(build.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let Some(archive) = layered_image(build.path()) else {
        return;
    };
    let image = "nucleus.test/rootless:1";
    u.nucleus(&["load", "-i", &archive.to_string_lossy()])
        .assert_ok();
    let vol = u.scratch().join("vol");
    fs::create_dir(&vol).unwrap();
    std::os::unix::fs::chown(&vol, Some(u.uid), Some(u.gid)).unwrap();
    let v = format!("{}:/data", vol.display());
    let probe = "echo passwd=$(stat -c %u:%g /etc/passwd); echo owned=$(stat -c %u:%g /owned); \
                 echo root=$(stat -c %u:%g /); echo uid=$(id -u); cat /opq/new; ls /opq; test ! -e /etc/gone && echo gone";
    let keep_id = format!("{probe}; touch /data/f");
    let args = [
        "--userns", "keep-id", "--rm", "-v", &v, image, "sh", "-c", &keep_id,
    ];
    let out = u.run(&args);
    out.assert_ok();
    assert_eq!(field(out.out(), "passwd"), "0:0", "{out}");
    assert_eq!(field(out.out(), "owned"), "100:100", "{out}");
    assert_eq!(field(out.out(), "root"), "0:0", "{out}");
    assert_eq!(field(out.out(), "uid"), u.uid.to_string(), "{out}");
    assert!(
        out.out().contains("gone") && !out.out().contains("old"),
        "{out}"
    );
    assert_eq!(fs::metadata(vol.join("f")).unwrap().uid(), u.uid);
    // One copy per layer; root's files belong to the first subordinate id.
    let layers = fs::read_dir(u.home.join(".local/share/nucleus/layers"))
        .unwrap()
        .count();
    let copies = shifted_copies(&u);
    assert_eq!(copies.len(), layers, "{copies:?}");
    let shifted = u.home.join(".local/share/nucleus/shifted");
    let passwd = copies
        .keys()
        .map(|k| shifted.join(k).join("etc/passwd"))
        .find(|p| p.exists())
        .expect("a copy with /etc/passwd");
    assert_eq!(fs::metadata(&passwd).unwrap().uid(), start);
    // A second run with the same map reuses the copies.
    let out = u.run(&args);
    out.assert_ok();
    assert_eq!(field(out.out(), "owned"), "100:100", "{out}");
    assert_eq!(shifted_copies(&u), copies, "the copies were rebuilt");

    // A custom map (--uidmap alone maps gids too): container c is HOST 1+c,
    // the range's c-th id, and the user is the last container id.
    let out = u.run(&[
        "--uidmap",
        "0:1:65535",
        "--uidmap",
        "65535:0:1",
        "--rm",
        image,
        "sh",
        "-c",
        probe,
    ]);
    out.assert_ok();
    assert_eq!(field(out.out(), "passwd"), "0:0", "{out}");
    assert_eq!(field(out.out(), "owned"), "100:100", "{out}");
    assert_eq!(field(out.out(), "root"), "0:0", "{out}");
    assert_eq!(field(out.out(), "uid"), "0", "{out}");
    let copies2 = shifted_copies(&u);
    assert_eq!(copies2.len(), 2 * layers, "{copies2:?}");
    let owned = copies2
        .keys()
        .filter(|k| !copies.contains_key(*k))
        .map(|k| shifted.join(k).join("owned"))
        .find(|p| p.exists())
        .expect("a copy with /owned");
    let meta = fs::metadata(&owned).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (start + 100, start + 100));

    // A map without the user: the container could not reach the layers.
    let out = u.run(&["--uidmap", "0:1:65536", "--rm", image, "true"]);
    assert_eq!(out.code, Some(125), "{out}");
    for want in ["--uidmap", "0:1:65536", "HOST 0"] {
        assert!(out.stderr.contains(want), "no {want:?} in: {out}");
    }

    // A map without uid 100 cannot hold `/owned`: refused by that flag,
    // and no partial copy is left.
    let out = u.run(&[
        "--uidmap", "0:1:50", "--uidmap", "50:0:1", "--rm", "-v", &v, image, "touch", "/data/g",
    ]);
    assert_eq!(out.code, Some(125), "{out}");
    let err = out.stderr.trim();
    for want in ["--uidmap", "0:1:50", "uid 100", "/owned"] {
        assert!(err.contains(want), "no {want:?} in: {err}");
    }
    assert!(!vol.join("g").exists(), "ran: {out}");
    assert!(
        shifted_copies(&u).keys().all(|k| !k.starts_with(".tmp-")),
        "{:?}",
        shifted_copies(&u)
    );

    u.nucleus(&["rmi", image]).assert_ok();
    u.nucleus(&["image", "prune", "-a"]).assert_ok();
    assert!(u.leftovers().is_empty(), "left: {:?}", u.leftovers());
    assert!(
        data_leftovers(&u).is_empty(),
        "left: {:?}",
        data_leftovers(&u)
    );
}

#[test]
fn an_image_runs_as_an_ordinary_user_with_its_owners_and_whiteouts() {
    needs_rootless_host!();
    let u = TestUser::create(true);
    let build = tempfile::tempdir().expect("build dir");
    fs::set_permissions(build.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let Some(archive) = layered_image(build.path()) else {
        return;
    };
    let image = "nucleus.test/rootless:1";
    let out = u.nucleus(&["load", "-i", &archive.to_string_lossy()]);
    out.assert_ok();
    assert!(out.stdout.contains(image), "{out}");
    let (start, count) = u.range.unwrap();
    let out = u.run(&[
        "--rm",
        image,
        "sh",
        "-c",
        "echo owned=$(stat -c %u:%g /owned); echo bin=$(stat -c %u:%g /bin/busybox); \
         echo gone=$(test -e /etc/gone && echo present || echo absent); \
         echo opq=$(ls /opq | tr '\\n' ' '); \
         echo map=$(cat /proc/self/uid_map | tr -s ' ' | tr '\\n' ';'); \
         echo hi > /written && echo written=$(cat /written)",
    ]);
    out.assert_ok();
    let o = out.out();
    assert_eq!(field(o, "owned"), "100:100", "{out}");
    assert_eq!(field(o, "bin"), "0:0", "{out}");
    assert_eq!(field(o, "gone"), "absent", "{out}");
    assert_eq!(field(o, "opq"), "new", "{out}");
    assert_eq!(
        field(o, "map"),
        format!("0 {} 1; 1 {start} {count};", u.uid).trim_start(),
        "{out}"
    );
    assert_eq!(field(o, "written"), "hi", "{out}");
    // On the host the layer file carries the shifted owner.
    let layers = u.home.join(".local/share/nucleus/layers");
    let owned: Vec<_> = fs::read_dir(&layers)
        .expect("layers")
        .flatten()
        .filter_map(|e| fs::symlink_metadata(e.path().join("owned")).ok())
        .map(|m| (m.uid(), m.gid()))
        .collect();
    assert_eq!(owned, [(start + 99, start + 99)], "in {}", layers.display());
    let name = format!("ri{}", std::process::id());
    u.run(&[
        "-d",
        "--name",
        &name,
        image,
        "sh",
        "-c",
        "echo up > /up; exec sleep 60",
    ])
    .assert_ok();
    assert!(common::wait_until(Duration::from_secs(10), || {
        u.nucleus(&["attach", &name, "--", "cat", "/up"])
            .stdout
            .contains("up")
    }));
    u.nucleus(&["rm", "-f", &name]).assert_ok();
    assert!(u.leftovers().is_empty(), "left: {:?}", u.leftovers());
    u.nucleus(&["rmi", image]).assert_ok();
    u.nucleus(&["image", "prune", "-a"]).assert_ok();
    assert!(
        data_leftovers(&u).is_empty(),
        "left: {:?}",
        data_leftovers(&u)
    );
    assert!(
        stray_pids(&u).is_empty(),
        "left running: {:?}",
        stray_pids(&u)
    );
}

/// A cgroup made in every hierarchy (as root), owned by `owner` when given;
/// on drop, what is left below it and the cgroup itself are removed.
struct TestCgroup {
    name: String,
    dirs: Vec<PathBuf>,
}

impl TestCgroup {
    fn create(owner: Option<(u32, u32)>) -> TestCgroup {
        let name = format!(
            "nrl-cgp-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let roots: Vec<PathBuf> = if Path::new("/sys/fs/cgroup/cgroup.procs").exists() {
            vec![PathBuf::from("/sys/fs/cgroup")]
        } else {
            fs::read_dir("/sys/fs/cgroup")
                .expect("/sys/fs/cgroup")
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.join("cgroup.procs").exists())
                .collect()
        };
        let cg = TestCgroup {
            dirs: roots.iter().map(|r| r.join(&name)).collect(),
            name,
        };
        for d in &cg.dirs {
            fs::create_dir(d).expect("create cgroup");
            if let Some((uid, gid)) = owner {
                sh(
                    "chown",
                    &["-R", &format!("{uid}:{gid}"), &d.to_string_lossy()],
                )
                .assert_ok();
            }
        }
        cg
    }

    /// The container cgroups made below it, in the pids hierarchy (or v2's).
    fn children(&self) -> Vec<PathBuf> {
        let d = self
            .dirs
            .iter()
            .find(|d| d.parent().is_some_and(|p| p.ends_with("pids")))
            .unwrap_or(&self.dirs[0]);
        fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for d in &self.dirs {
            for e in fs::read_dir(d).into_iter().flatten().flatten() {
                if e.path().is_dir() {
                    let _ = fs::remove_dir(e.path());
                }
            }
            let _ = fs::remove_dir(d);
        }
    }
}

#[test]
fn cgroup_parent_places_the_container_below_it_or_is_refused_by_name() {
    needs_rootless_host!();
    // Root: any path; the container's cgroup is made below it.
    let cg = TestCgroup::create(None);
    let io = tempfile::tempdir().unwrap();
    let mut c = Command::new(common::runtime());
    c.args([
        "run",
        "--cgroup-parent",
        &format!("/{}", cg.name),
        "--",
        "/bin/sh",
        "-c",
        "cat /proc/self/cgroup >/dev/null; sleep 2",
    ]);
    let child = std::thread::spawn(move || common::exec(c, io.path(), Duration::from_secs(30)));
    assert!(
        common::wait_until(Duration::from_secs(10), || cg.children().iter().any(|d| d
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("nucleus-"))
            && fs::read_to_string(d.join("cgroup.procs"))
                .is_ok_and(|p| !p.trim().is_empty()))),
        "no container cgroup with processes below {:?}",
        cg.dirs
    );
    child.join().unwrap().assert_ok();
    assert!(cg.children().is_empty(), "left: {:?}", cg.children());
    drop(cg);

    // Rootless: a cgroup the user cannot write is refused by flag and path,
    // not silently dropped.
    let u = TestUser::create(true);
    let not_yours = TestCgroup::create(None);
    let parent = format!("/{}", not_yours.name);
    let out = u.run(&["--cgroup-parent", &parent, "--", "/bin/true"]);
    assert_eq!(out.code, Some(125), "{out}");
    let err = out.stderr.trim();
    assert!(
        err.contains("--cgroup-parent") && err.contains(&parent) && err.contains("/sys/fs/cgroup"),
        "{err}"
    );
    let out = u.run(&["--cgroup-parent", "../up", "--", "/bin/true"]);
    assert_eq!(out.code, Some(125), "{out}");
    assert!(
        out.stderr.contains("--cgroup-parent") && out.stderr.contains("../up"),
        "{out}"
    );
    // One it owns, delegated as systemd does (the user's session runs in a
    // leaf of it): the container's cgroup is made there, so a limit is kept.
    let owned = TestCgroup::create(Some((u.uid, u.gid)));
    let v2 = owned
        .dirs
        .iter()
        .find(|d| d.join("cgroup.subtree_control").exists())
        .expect("a cgroup v2 hierarchy");
    let session = v2.join("session");
    fs::create_dir(&session).unwrap();
    sh(
        "chown",
        &[
            "-R",
            &format!("{}:{}", u.uid, u.gid),
            &session.to_string_lossy(),
        ],
    )
    .assert_ok();
    let procs = session.join("cgroup.procs");
    let container_cgroup = || {
        owned.children().into_iter().find(|d| {
            d.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("nucleus-"))
                && fs::read_to_string(d.join("cgroup.procs")).is_ok_and(|p| !p.trim().is_empty())
        })
    };
    std::thread::scope(|sc| {
        let run = sc.spawn(|| {
            u.nucleus_in(
                &[
                    "run",
                    "--cgroup-parent",
                    &format!("/{}", owned.name),
                    "--pids",
                    "64",
                    "--",
                    "/bin/sleep",
                    "2",
                ],
                &[],
                Some(&procs),
            )
        });
        assert!(
            common::wait_until(Duration::from_secs(10), || container_cgroup().is_some()),
            "no container cgroup with processes below {:?}",
            owned.dirs
        );
        let dir = container_cgroup().unwrap();
        assert_eq!(
            fs::read_to_string(dir.join("pids.max")).unwrap().trim(),
            "64"
        );
        run.join().unwrap().assert_ok();
    });
    let made: Vec<_> = owned
        .children()
        .into_iter()
        .filter(|d| !d.ends_with("session"))
        .collect();
    assert!(made.is_empty(), "left: {made:?}");
    assert!(u.leftovers().is_empty(), "left: {:?}", u.leftovers());
}

/// The user's live processes other than the shared user namespace's
/// holder, which foreground runs leave for the next one.
fn stray_pids(u: &TestUser) -> Vec<i32> {
    let h = holders(u);
    u.live_pids()
        .into_iter()
        .filter(|p| !h.contains(p))
        .collect()
}

/// The user's shared user namespace holders (`nucleus:[usrns]`).
fn holders(u: &TestUser) -> Vec<i32> {
    procs_named(u, &["nucleus:[usrns]"])
}

/// `readlink /proc/PID/ns/user` on the host (`user:[INODE]`).
fn userns_of(pid: i32) -> String {
    fs::read_link(format!("/proc/{pid}/ns/user"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|e| panic!("readlink /proc/{pid}/ns/user: {e}"))
}

/// The pid `<state root>/.userns/holder.json` records.
fn recorded_holder(u: &TestUser) -> i32 {
    let path = u.state_root().join(".userns/holder.json");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).expect("holder.json");
    i32::try_from(v["pid"].as_i64().expect("pid")).expect("pid fits")
}

const NS_PROBE: &str =
    "readlink /proc/self/ns/user; cat /proc/self/uid_map | tr -s ' ' | tr '\\n' ';'";

#[test]
fn default_rootless_runs_share_the_user_namespace_of_one_holder() {
    needs_rootless_host!();
    let u = TestUser::create(true);
    let (start, count) = u.range.unwrap();
    let first = u.run(&["--", "/bin/sh", "-c", NS_PROBE]);
    first.assert_ok();
    let second = u.run(&["--", "/bin/sh", "-c", NS_PROBE]);
    second.assert_ok();
    assert_eq!(first.stdout, second.stdout, "{first}\n{second}");
    let lines: Vec<&str> = first.stdout.lines().collect();
    assert_eq!(
        lines[1].trim(),
        format!("0 {} 1; 1 {start} {count};", u.uid),
        "{first}"
    );
    // One holder, the recorded one, owning exactly that namespace.
    let pids = holders(&u);
    assert_eq!(pids, [recorded_holder(&u)], "{pids:?}");
    assert_eq!(userns_of(pids[0]), lines[0].trim());
    // A detached container joins it too.
    let name = format!("s{}", std::process::id());
    u.run(&["-d", "--name", &name, "--", "/bin/sleep", "60"])
        .assert_ok();
    let at = u.nucleus(&["attach", &name, "--", "readlink", "/proc/self/ns/user"]);
    at.assert_ok();
    assert_eq!(at.out(), lines[0].trim(), "{at}");
    // Other maps get a namespace of their own, mapped per start.
    for args in [
        &["--userns", "keep-id", "--"][..],
        &["--uidmap", "0:0:1000", "--"][..],
    ] {
        let mut all = args.to_vec();
        all.extend(["/bin/sh", "-c", NS_PROBE]);
        let other = u.run(&all);
        other.assert_ok();
        assert_ne!(other.stdout.lines().next(), Some(lines[0]), "{other}");
    }
    assert_eq!(holders(&u), pids);
    // `rm` of the last container stops the holder and removes its files.
    u.nucleus(&["rm", "-f", &name]).assert_ok();
    assert!(holders(&u).is_empty(), "{:?}", holders(&u));
    assert!(!u.state_root().join(".userns").exists());
    assert!(u.leftovers().is_empty(), "left: {:?}", u.leftovers());
}

#[test]
fn a_killed_holder_is_replaced_by_the_next_run() {
    needs_rootless_host!();
    let u = TestUser::create(true);
    let first = u.run(&["--", "readlink", "/proc/self/ns/user"]);
    first.assert_ok();
    let old = recorded_holder(&u);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the holder");
    assert!(common::wait_until(Duration::from_secs(5), || !holders(&u).contains(&old)));
    let next = u.run(&["--", "readlink", "/proc/self/ns/user"]);
    next.assert_ok();
    let new = recorded_holder(&u);
    assert_ne!(new, old);
    assert_eq!(holders(&u), [new]);
    assert_eq!(next.out(), userns_of(new));
    assert_ne!(
        next.out(),
        first.out(),
        "a new namespace, not the dead one's"
    );
}

#[test]
fn system_prune_leaves_no_holder_and_no_files() {
    needs_rootless_host!();
    let u = TestUser::create(true);
    let name = format!("p{}", std::process::id());
    u.run(&["-d", "--name", &name, "--", "/bin/sleep", "60"])
        .assert_ok();
    u.run(&["--", "/bin/true"]).assert_ok();
    let holder = recorded_holder(&u);
    // A running container still uses it.
    let out = u.nucleus(&["system", "prune"]);
    out.assert_ok();
    assert_eq!(holders(&u), [holder], "{out}");
    u.nucleus(&["stop", "-t", "1", &name]).assert_ok();
    let out = u.nucleus(&["system", "prune"]);
    out.assert_ok();
    assert!(out.stdout.contains(&format!("(pid {holder})")), "{out}");
    assert!(holders(&u).is_empty(), "{:?}", holders(&u));
    assert!(!u.state_root().join(".userns").exists());
    assert!(u.leftovers().is_empty(), "left: {:?}", u.leftovers());
    let ps = u.nucleus(&["ps", "-a"]);
    assert!(!ps.stdout.contains(&name), "{ps}");
    // Nothing of the user's runs any more (monitor, holder, helpers).
    assert!(
        common::wait_until(Duration::from_secs(5), || u.live_pids().is_empty()),
        "{:?}",
        u.live_pids()
    );
}

#[test]
fn concurrent_first_runs_make_exactly_one_holder() {
    needs_rootless_host!();
    let u = TestUser::create(true);
    let outs: Vec<Out> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..4)
            .map(|_| s.spawn(|| u.run(&["--", "readlink", "/proc/self/ns/user"])))
            .collect();
        runs.into_iter().map(|h| h.join().expect("run")).collect()
    });
    for o in &outs {
        o.assert_ok();
        assert_eq!(o.out(), outs[0].out(), "{o}");
    }
    let pids = holders(&u);
    assert_eq!(pids.len(), 1, "{pids:?}");
    assert_eq!(outs[0].out(), userns_of(pids[0]));
}
