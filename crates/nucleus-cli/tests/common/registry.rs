//! A real image registry for tests: Debian's `docker-registry` on a random
//! loopback port with its own storage, and a busybox-static image built
//! with umoci, pushed with skopeo.

use super::{exec, wait_until, Out};
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

pub const REGISTRY: &str = "/usr/bin/docker-registry";
pub const TIMEOUT: Duration = Duration::from_secs(300);

pub fn missing_tools() -> Option<String> {
    for tool in [REGISTRY, "/usr/bin/skopeo", "/usr/bin/umoci"] {
        if !Path::new(tool).exists() {
            return Some(format!(
                "needs {tool} (apt-get install docker-registry skopeo umoci)"
            ));
        }
    }
    None
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free port")
}

/// A `docker-registry` on 127.0.0.1, killed and its storage removed on drop.
pub struct Registry {
    child: Child,
    pub dir: TempDir,
    pub port: u16,
    addr: String,
    certs: Option<TempDir>,
}

impl Registry {
    pub fn start() -> Self {
        Self::start_on("127.0.0.1", "")
    }

    /// A registry serving HTTPS on 127.0.0.2 (not a "local" address, so
    /// clients insist on TLS) with a certificate from a test CA; the CA's
    /// PEM is `<dir>/ca.pem`.
    pub fn start_tls() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let made = sh(
            &format!(
            "cd {d} && openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=nucleus-test-ca \
               -keyout ca.key -out ca.pem 2>/dev/null && \
             openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.2 -keyout srv.key -out srv.csr 2>/dev/null && \
             printf 'subjectAltName=IP:127.0.0.2\\n' > ext && \
             openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
               -extfile ext -out srv.pem 2>/dev/null"
            ),
            dir.path(),
        );
        made.assert_ok();
        let tls = format!("  tls:\n    certificate: {d}/srv.pem\n    key: {d}/srv.key\n");
        let mut reg = Self::start_on("127.0.0.2", &tls);
        reg.certs = Some(dir);
        reg
    }

    fn start_on(addr: &str, http_extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let storage = dir.path().join("storage");
        let config = dir.path().join("config.yml");
        fs::write(
            &config,
            format!("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}:{port}\n{http_extra}", storage.display()),
        )
        .unwrap();
        let log = fs::File::create(dir.path().join("log")).unwrap();
        let child = Command::new(REGISTRY)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let reg = Self {
            child,
            dir,
            port,
            addr: addr.to_string(),
            certs: None,
        };
        assert!(
            wait_until(Duration::from_secs(20), || TcpStream::connect((addr, port))
                .is_ok()),
            "registry did not listen on {addr}:{port}"
        );
        reg
    }

    /// The test CA of a `start_tls` registry.
    pub fn ca(&self) -> Option<PathBuf> {
        self.certs.as_ref().map(|c| c.path().join("ca.pem"))
    }

    pub fn host(&self) -> String {
        format!("{}:{}", self.addr, self.port)
    }

    /// Where the registry keeps a blob's bytes.
    pub fn blob(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    pub fn push(&self, layout: &Path, tag: &str, name: &str) -> String {
        self.push_with(layout, tag, name, &[])
    }

    /// `push` with more `skopeo copy` flags (e.g. `--dest-compress-format zstd`).
    pub fn push_with(&self, layout: &Path, tag: &str, name: &str, flags: &[&str]) -> String {
        let dest = format!("docker://{}/{name}", self.host());
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "-q", "--dest-tls-verify=false"])
            .args(flags)
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(&dest);
        exec(cmd, self.dir.path(), TIMEOUT).assert_ok();
        format!("{}/{name}", self.host())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn sh(script: &str, dir: &Path) -> Out {
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-ec", script]).current_dir(dir);
    exec(cmd, dir, TIMEOUT)
}

/// An OCI layout `DIR:bb` from busybox-static in two layers: the second
/// deletes `/gone` (a whiteout) and adds `/added`.
pub fn busybox_layout(dir: &Path) -> PathBuf {
    let script = r#"
        umoci init --layout oci
        umoci new --image oci:bb
        umoci unpack --image oci:bb b >/dev/null
        mkdir -p b/rootfs/bin b/rootfs/etc b/rootfs/keep
        cp /bin/busybox b/rootfs/bin/
        for a in sh ls cat echo true rm id; do ln -s busybox b/rootfs/bin/$a; done
        echo hi > b/rootfs/gone; echo k > b/rootfs/keep/k; chmod 4711 b/rootfs/keep/k; chown 12:34 b/rootfs/keep/k
        ln b/rootfs/keep/k b/rootfs/keep/hard
        umoci repack --image oci:bb b >/dev/null
        umoci config --image oci:bb --config.cmd /bin/sh --config.env PATH=/bin
        rm -rf b; umoci unpack --image oci:bb b >/dev/null
        rm b/rootfs/gone; echo new > b/rootfs/added
        umoci repack --image oci:bb b >/dev/null
        rm -rf b
    "#;
    sh(script, dir).assert_ok();
    dir.join("oci")
}
