//! Image verbs against real components: Debian's `docker-registry` on a
//! random loopback port with its own storage, images built at test time
//! with umoci (busybox-static; a debootstrap minbase plus a python3 layer)
//! and pushed with skopeo. Unpacked trees are compared with `umoci unpack`.
#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::registry::{busybox_layout, free_port, missing_tools, sh, Registry, TIMEOUT};
use common::{exec, Out};
use serde_json::Value;
use tempfile::TempDir;

/// debootstrap plus apt on a busy machine.
const FIXTURE_TIMEOUT: Duration = Duration::from_secs(900);

/// Skips unless root and the tools the images are built with are here.
macro_rules! require_tools {
    () => {
        require!(root, busybox);
        if let Some(reason) = missing_tools() {
            eprintln!("skipped: {reason}");
            return;
        }
    };
}

/// A data root of its own, removed on drop.
struct Store {
    dir: TempDir,
}

impl Store {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("io")).unwrap();
        Self { dir }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(common::runtime());
        cmd.arg("--data-root").arg(self.data()).args(args);
        cmd
    }

    fn nucleus(&self, args: &[&str]) -> Out {
        exec(self.cmd(args), &self.dir.path().join("io"), TIMEOUT)
    }

    fn inspect(&self, name: &str) -> Value {
        self.nucleus(&["image", "inspect", name]).assert_ok().json()[0].clone()
    }

    /// The image's layer directories, top first (overlayfs `lowerdir` order).
    fn layer_dirs(&self, name: &str) -> Vec<PathBuf> {
        let v = self.inspect(name);
        let mut dirs: Vec<PathBuf> = v["RootFS"]["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                self.data()
                    .join("layers")
                    .join(l["DiffID"].as_str().unwrap().trim_start_matches("sha256:"))
            })
            .collect();
        dirs.reverse();
        dirs
    }

    /// Everything under the data root except the fixed skeleton.
    fn leftovers(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["blobs/sha256", "layers", "ingest", "users"] {
            if let Ok(rd) = fs::read_dir(self.data().join(sub)) {
                out.extend(
                    rd.filter_map(|e| e.ok())
                        .map(|e| format!("{sub}/{}", e.file_name().to_string_lossy())),
                );
            }
        }
        let index = fs::read_to_string(self.data().join("index.json")).unwrap_or_default();
        if index.contains("manifest") {
            out.push(format!("index.json: {index}"));
        }
        out
    }
}

/// A debootstrap minbase with a python3 layer on top, built once and kept
/// under the target directory (a flock serialises concurrent test runs).
fn python_layout() -> Option<PathBuf> {
    if !Path::new("/usr/sbin/debootstrap").exists() {
        eprintln!("skipped python image: needs /usr/sbin/debootstrap");
        return None;
    }
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("image-fixtures");
    fs::create_dir_all(&base).unwrap();
    let lock = fs::File::create(base.join("lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let layout = base.join("python-v1");
    if layout.join("done").exists() {
        return Some(layout.join("oci"));
    }
    let _ = fs::remove_dir_all(&layout);
    fs::create_dir_all(&layout).unwrap();
    let script = r#"
        umoci init --layout oci
        umoci new --image oci:py
        umoci unpack --image oci:py b >/dev/null
        debootstrap --variant=minbase bookworm b/rootfs http://deb.debian.org/debian >debootstrap.log 2>&1
        rm -rf b/rootfs/var/cache/apt/archives/*.deb b/rootfs/var/lib/apt/lists/*
        umoci repack --refresh-bundle --image oci:py b >/dev/null
        cp /etc/resolv.conf b/rootfs/etc/resolv.conf
        chroot b/rootfs apt-get update >apt.log 2>&1
        chroot b/rootfs apt-get install -y --no-install-recommends python3 >>apt.log 2>&1
        chroot b/rootfs apt-get clean
        rm -rf b/rootfs/var/lib/apt/lists/* b/rootfs/etc/resolv.conf
        umoci repack --image oci:py b >/dev/null
        umoci config --image oci:py --config.cmd python3 --config.env PATH=/usr/local/bin:/usr/bin:/bin
        rm -rf b
        touch done
    "#;
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-ec", script]).current_dir(&layout);
    let out = exec(cmd, &layout, FIXTURE_TIMEOUT);
    if !out.success() {
        let log = fs::read_to_string(layout.join("debootstrap.log")).unwrap_or_default();
        panic!("building the python image failed\n{out}\n{log}");
    }
    Some(layout.join("oci"))
}

/// An overlayfs of `lowers` (top first), read-only, unmounted on drop.
struct Overlay {
    dir: TempDir,
    _io: TempDir,
}

impl Overlay {
    fn mount(lowers: &[PathBuf]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let io = tempfile::tempdir().unwrap();
        let lower = lowers
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        let mut cmd = Command::new("mount");
        cmd.args(["-t", "overlay", "overlay", "-o"])
            .arg(format!("ro,lowerdir={lower}"))
            .arg(dir.path());
        exec(cmd, io.path(), TIMEOUT).assert_ok();
        Self { dir, _io: io }
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Path → (type, mode, owner, link target or size or device), for comparison.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let what = if ft.is_symlink() {
                format!("l -> {}", fs::read_link(&p).unwrap().display())
            } else if ft.is_dir() {
                stack.push(p.clone());
                "d".to_string()
            } else if ft.is_char_device() || ft.is_block_device() {
                format!("dev {}", m.rdev())
            } else if ft.is_fifo() {
                "p".to_string()
            } else {
                format!("f {} links {}", m.len(), m.nlink())
            };
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            out.insert(
                rel,
                format!(
                    "{what} mode {:o} owner {}:{}",
                    m.mode() & 0o7777,
                    m.uid(),
                    m.gid()
                ),
            );
        }
    }
    out
}

/// The pulled image, merged by overlayfs, against `umoci unpack` of the same layout.
fn assert_same_tree_as_umoci(store: &Store, name: &str, layout: &Path, tag: &str) {
    let scratch = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("umoci");
    cmd.args(["unpack", "--image"])
        .arg(format!("{}:{tag}", layout.display()))
        .arg(scratch.path().join("b"));
    exec(cmd, scratch.path(), TIMEOUT).assert_ok();
    let want = tree(&scratch.path().join("b/rootfs"));
    let overlay = Overlay::mount(&store.layer_dirs(name));
    let got = tree(overlay.dir.path());
    drop(overlay);
    let diff: Vec<String> = want
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(v))
        .map(|(k, v)| {
            format!(
                "{k}: umoci `{v}`, nucleus `{}`",
                got.get(k).map_or("missing", |s| s.as_str())
            )
        })
        .chain(
            got.keys()
                .filter(|k| !want.contains_key(*k))
                .map(|k| format!("{k}: only in nucleus")),
        )
        .take(20)
        .collect();
    assert!(
        diff.is_empty(),
        "{} entries; differences:\n{}",
        want.len(),
        diff.join("\n")
    );
}

#[test]
fn pull_inspect_save_load_and_rmi_leave_nothing() {
    require_tools!();
    let reg = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let layout = busybox_layout(work.path());
    let repo = reg.push(&layout, "bb", "test/busybox:1");
    let store = Store::new();
    let out = store.nucleus(&["pull", &repo]).assert_ok().stdout.clone();
    // Not a terminal: plain lines, the reference last.
    assert!(
        out.contains("Pull complete") && out.trim_end().ends_with(&repo),
        "{out}"
    );
    let list = store
        .nucleus(&["images", "--format", "json"])
        .assert_ok()
        .json();
    assert_eq!(list["Repository"], format!("{}/test/busybox", reg.host()));
    assert_eq!(list["Tag"], "1");
    let v = store.inspect(&repo);
    assert_eq!(v["Config"]["Cmd"][0], "/bin/sh");
    assert_eq!(v["RootFS"]["Layers"].as_array().unwrap().len(), 2);
    let id = v["Id"].as_str().unwrap().to_string();
    // The whiteout is a 0/0 character device in the top layer, hidden in the merge.
    let top = &store.layer_dirs(&repo)[0];
    let wh = fs::symlink_metadata(top.join("gone")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert_same_tree_as_umoci(&store, &repo, &layout, "bb");

    // A second pull finds everything present.
    let again = store.nucleus(&["pull", &repo]).assert_ok().stdout.clone();
    assert!(again.contains("Already exists"), "{again}");

    // save, rmi, load: the same image id comes back.
    let archive = work.path().join("saved.tar");
    store
        .nucleus(&["save", "-o", archive.to_str().unwrap(), &repo])
        .assert_ok();
    let rmi = store.nucleus(&["rmi", &repo]).assert_ok().stdout.clone();
    assert!(
        rmi.contains(&format!("Untagged: {repo}")) && rmi.contains(&id),
        "{rmi}"
    );
    assert_eq!(store.leftovers(), Vec::<String>::new());
    let load = store
        .nucleus(&["load", "-i", archive.to_str().unwrap()])
        .assert_ok()
        .stdout
        .clone();
    assert!(load.contains(&format!("Loaded image: {repo}")), "{load}");
    assert_eq!(store.inspect(&repo)["Id"], id);
    let err = store
        .nucleus(&["rmi", "nope:1"])
        .assert_fail()
        .stderr
        .clone();
    assert!(err.contains("no such image: `nope:1`"), "{err}");
    store.nucleus(&["image", "prune", "-a"]).assert_ok();
    assert_eq!(store.leftovers(), Vec::<String>::new());
}

#[test]
fn load_docker_archive_oci_archive_and_layout() {
    require_tools!();
    let work = tempfile::tempdir().unwrap();
    let layout = busybox_layout(work.path());
    let docker = work.path().join("docker.tar");
    let oci = work.path().join("oci.tar");
    let script = format!(
        "skopeo copy -q oci:{l}:bb docker-archive:{d}:nucleus.test/bb:docker\nskopeo copy -q oci:{l}:bb oci-archive:{o}:nucleus.test/bb:oci",
        l = layout.display(),
        d = docker.display(),
        o = oci.display()
    );
    sh(&script, work.path()).assert_ok();
    let store = Store::new();
    let out = store
        .nucleus(&["load", "-i", docker.to_str().unwrap()])
        .assert_ok()
        .stdout
        .clone();
    assert!(
        out.contains("Loaded image: nucleus.test/bb:docker"),
        "{out}"
    );
    let out = store
        .nucleus(&["load", "-i", oci.to_str().unwrap()])
        .assert_ok()
        .stdout
        .clone();
    assert!(out.contains("Loaded image: nucleus.test/bb:oci"), "{out}");
    // An OCI layout directory whose only name is a bare tag loads untagged.
    let out = store
        .nucleus(&["load", "-i", layout.to_str().unwrap()])
        .assert_ok()
        .stdout
        .clone();
    assert!(out.contains("Loaded image ID: sha256:"), "{out}");
    let a = store.inspect("nucleus.test/bb:docker");
    let b = store.inspect("nucleus.test/bb:oci");
    assert_eq!(a["Id"], b["Id"], "one config, whatever the archive");
    assert_same_tree_as_umoci(&store, "nucleus.test/bb:oci", &layout, "bb");
    assert_same_tree_as_umoci(&store, "nucleus.test/bb:docker", &layout, "bb");
    store
        .nucleus(&["rmi", "nucleus.test/bb:docker"])
        .assert_ok();
    store
        .nucleus(&["rmi", "-f", "nucleus.test/bb:oci"])
        .assert_ok();
    store.nucleus(&["image", "prune"]).assert_ok();
    assert_eq!(store.leftovers(), Vec::<String>::new());
}

#[test]
fn a_corrupted_blob_is_refused_naming_both_digests() {
    require_tools!();
    let reg = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let repo = reg.push(&busybox_layout(work.path()), "bb", "test/corrupt:1");
    let store = Store::new();
    // Find the big layer from a first pull, then empty the store.
    store.nucleus(&["pull", "-q", &repo]).assert_ok();
    let layer = store.inspect(&repo)["RootFS"]["Layers"][0]["Digest"]
        .as_str()
        .unwrap()
        .to_string();
    store.nucleus(&["rmi", &repo]).assert_ok();
    let blob = reg.blob(&layer);
    let mut bytes = fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&blob, &bytes).unwrap();
    let err = store.nucleus(&["pull", &repo]).assert_fail().stderr.clone();
    assert!(
        err.contains(&format!("but `{layer}` was expected"))
            && err.contains("content digest is `sha256:"),
        "{err}"
    );
    assert!(!store
        .data()
        .join("blobs/sha256")
        .join(layer.trim_start_matches("sha256:"))
        .exists());
    assert_eq!(store.nucleus(&["images", "-q"]).assert_ok().stdout, "");
    store.nucleus(&["image", "prune"]).assert_ok();
    assert_eq!(store.leftovers(), Vec::<String>::new());
}

#[test]
fn a_registry_that_is_down_fails_fast_and_clearly() {
    require_tools!();
    let store = Store::new();
    let port = free_port();
    let repo = format!("127.0.0.1:{port}/test/none:1");
    let start = Instant::now();
    let err = store.nucleus(&["pull", &repo]).assert_fail().stderr.clone();
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "took {:?}",
        start.elapsed()
    );
    assert!(err.contains(&format!("`{repo}`")), "{err}");
    let err = store
        .nucleus(&["pull", "Not A Ref"])
        .assert_fail()
        .stderr
        .clone();
    assert!(err.contains("invalid image reference `Not A Ref`"), "{err}");
}

#[test]
fn concurrent_pulls_share_one_download_and_unpack() {
    require_tools!();
    let reg = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let repo = reg.push(&busybox_layout(work.path()), "bb", "test/together:1");
    let store = Store::new();
    let io = store.dir.path().join("io");
    let children: Vec<Child> = (0..4)
        .map(|i| {
            let mut c = store.cmd(&["pull", "-q", &repo]);
            c.stdout(fs::File::create(io.join(format!("c{i}.out"))).unwrap())
                .stderr(fs::File::create(io.join(format!("c{i}.err"))).unwrap());
            c.spawn().unwrap()
        })
        .collect();
    for (i, mut c) in children.into_iter().enumerate() {
        let status = c.wait().unwrap();
        assert!(
            status.success(),
            "pull {i} failed: {}",
            fs::read_to_string(io.join(format!("c{i}.err"))).unwrap_or_default()
        );
    }
    let layers: Vec<String> = fs::read_dir(store.data().join("layers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        layers.len(),
        2,
        "one directory per layer, no temporaries: {layers:?}"
    );
    assert_eq!(
        fs::read_dir(store.data().join("ingest")).unwrap().count(),
        0
    );
    assert_same_tree_as_umoci(&store, &repo, &work.path().join("oci"), "bb");
}

#[test]
fn a_hostile_layer_is_refused_and_writes_nothing_outside() {
    require_tools!();
    let work = tempfile::tempdir().unwrap();
    let victim = work.path().join("victim");
    fs::create_dir(&victim).unwrap();
    // An OCI layout written by hand: one layer holding `../../victim/owned`
    // after an absolute symlink to the victim directory and a file through it.
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |kind: tar::EntryType, name: &str, link: Option<&str>, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        if let Some(l) = link {
            h.set_link_name_literal(l).unwrap();
        }
        h.set_cksum();
        tar.append(&h, data).unwrap();
    };
    add(
        tar::EntryType::Symlink,
        "link",
        Some(victim.to_str().unwrap()),
        b"",
    );
    add(tar::EntryType::Regular, "link/through", None, b"owned");
    add(
        tar::EntryType::Regular,
        "../../../../../../../../victim/owned",
        None,
        b"owned",
    );
    let layer = tar.into_inner().unwrap();
    let layout = work.path().join("evil");
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> (String, usize) {
        let d = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(bytes));
        fs::write(blobs.join(&d), bytes).unwrap();
        (format!("sha256:{d}"), bytes.len())
    };
    let (ld, ls) = put(&layer);
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [ld]}});
    let (cd, cs) = put(config.to_string().as_bytes());
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": ls}]});
    let (md, ms) = put(manifest.to_string().as_bytes());
    fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
        "annotations": {"org.opencontainers.image.ref.name": "nucleus.test/evil:1"}}]});
    fs::write(layout.join("index.json"), index.to_string()).unwrap();

    let store = Store::new();
    let err = store
        .nucleus(&["load", "-i", layout.to_str().unwrap()])
        .assert_fail()
        .stderr
        .clone();
    assert!(err.contains(&format!("layer `{ld}`")), "{err}");
    assert_eq!(
        fs::read_dir(&victim).unwrap().count(),
        0,
        "something was written outside the layer"
    );
    assert_eq!(store.nucleus(&["images", "-q"]).assert_ok().stdout, "");
    store.nucleus(&["image", "prune"]).assert_ok();
    assert_eq!(store.leftovers(), Vec::<String>::new());
}

#[test]
fn a_debian_python_image_pulls_and_matches_umoci() {
    require_tools!();
    let Some(layout) = python_layout() else {
        return;
    };
    let reg = Registry::start();
    let repo = reg.push(&layout, "py", "test/python:3");
    let store = Store::new();
    let start = Instant::now();
    store.nucleus(&["pull", "-q", &repo]).assert_ok();
    eprintln!("pull + unpack of the python image: {:?}", start.elapsed());
    let v = store.inspect(&repo);
    assert_eq!(v["RootFS"]["Layers"].as_array().unwrap().len(), 2);
    let top = &store.layer_dirs(&repo)[0];
    assert!(fs::read_dir(top.join("usr/bin")).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("python3")));
    assert_same_tree_as_umoci(&store, &repo, &layout, "py");
    store.nucleus(&["rmi", &repo]).assert_ok();
    assert_eq!(store.leftovers(), Vec::<String>::new());
}

/// A state root of its own for containers, checked empty at the end.
fn assert_no_containers_left(store: &Store, state: &Path) {
    let roots = state.join(".image-roots");
    let left: Vec<_> = fs::read_dir(&roots)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "image roots left: {left:?}");
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(state.to_str().unwrap()),
        "mounts left under {}",
        state.display()
    );
    let users: Vec<_> = fs::read_dir(store.data().join("users")).unwrap().collect();
    assert!(users.is_empty(), "use records left: {users:?}");
}

#[test]
fn pull_run_commit_run_and_rm_leave_nothing() {
    require_tools!();
    let reg = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let repo = reg.push(&busybox_layout(work.path()), "bb", "test/run:1");
    let store = Store::new();
    let state = store.dir.path().join("state");
    let st = state.to_str().unwrap();
    store.nucleus(&["pull", "-q", &repo]).assert_ok();

    // The image's cmd, env and layers, with the whiteout applied; every agent protection on.
    let out = store.nucleus(&["--root", st, "run", &repo, "--", "/bin/sh", "-c",
        "echo $PATH; cat /added; test ! -e /gone && echo gone-hidden; grep -E '^(NoNewPrivs|CapEff|Seccomp):' /proc/self/status; echo w > /w && cat /w"]).assert_ok().stdout.clone();
    for want in [
        "/bin\n",
        "new\n",
        "gone-hidden",
        "NoNewPrivs:\t1",
        "CapEff:\t0000000000000000",
        "Seccomp:\t2",
        "w\n",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    assert_no_containers_left(&store, &state);
    // Docker's override rules: --entrypoint replaces the image's, CMD follows the image.
    let out = store
        .nucleus(&[
            "--root",
            st,
            "run",
            "--entrypoint",
            "/bin/echo",
            &repo,
            "hi",
        ])
        .assert_ok()
        .stdout
        .clone();
    assert_eq!(out, "hi\n");
    let out = store
        .nucleus(&[
            "--root",
            st,
            "run",
            "--read-only",
            &repo,
            "--",
            "/bin/sh",
            "-c",
            "echo x > /x",
        ])
        .assert_fail()
        .stderr
        .clone();
    assert!(out.contains("Read-only file system"), "{out}");

    // Detached: in use, so rmi is refused; commit keeps its changes, deletions as whiteouts.
    let id = store.nucleus(&["--root", st, "run", "-d", "--name", "c1", &repo, "--", "/bin/sh", "-c",
        "rm /added; rm -rf /keep; mkdir /keep; echo fresh > /keep/only; echo made > /made; sleep 60"]).assert_ok().stdout.trim().to_string();
    assert!(common::wait_until(Duration::from_secs(10), || store
        .nucleus(&["--root", st, "logs", "c1"])
        .success()
        && fs::read_dir(
            state.join(".image-roots").join(&id).join("upper")
        )
        .map(|d| d.count() >= 3)
        .unwrap_or(false)));
    let ps = store
        .nucleus(&["--root", st, "ps"])
        .assert_ok()
        .stdout
        .clone();
    assert!(ps.contains("c1"), "{ps}");
    let err = store
        .nucleus(&["rmi", "-f", &repo])
        .assert_fail()
        .stderr
        .clone();
    assert!(
        err.contains("in use by container(s)") && err.contains(&id),
        "{err}"
    );
    let committed = "nucleus.test/committed:1";
    store
        .nucleus(&["--root", st, "commit", "c1", committed])
        .assert_ok();
    store.nucleus(&["--root", st, "rm", "-f", "c1"]).assert_ok();
    assert_no_containers_left(&store, &state);
    let out = store
        .nucleus(&[
            "--root",
            st,
            "run",
            committed,
            "--",
            "/bin/sh",
            "-c",
            "cat /made; ls /keep; test ! -e /added && echo added-gone",
        ])
        .assert_ok()
        .stdout
        .clone();
    assert_eq!(out, "made\nonly\nadded-gone\n");
    assert_eq!(
        store.inspect(committed)["RootFS"]["Layers"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    store.nucleus(&["rmi", committed]).assert_ok();
    store.nucleus(&["rmi", &repo]).assert_ok();
    assert_no_containers_left(&store, &state);
    assert_eq!(store.leftovers(), Vec::<String>::new());
}

#[test]
fn zstd_layers_pull_and_run() {
    require_tools!();
    let reg = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let repo = reg.push_with(
        &busybox_layout(work.path()),
        "bb",
        "test/zstd:1",
        &["--dest-compress-format", "zstd"],
    );
    let store = Store::new();
    let state = store.dir.path().join("state");
    let st = state.to_str().unwrap();
    store.nucleus(&["pull", "-q", &repo]).assert_ok();
    let v = store.inspect(&repo);
    let layers = v["RootFS"]["Layers"].as_array().unwrap();
    assert!(
        layers
            .iter()
            .all(|l| l["MediaType"].as_str().unwrap_or("").ends_with("+zstd")),
        "not zstd layers: {v}"
    );
    let out = store
        .nucleus(&[
            "--root",
            st,
            "run",
            &repo,
            "--",
            "/bin/sh",
            "-c",
            "cat /added; test ! -e /gone && echo gone",
        ])
        .assert_ok()
        .stdout
        .clone();
    assert_eq!(out, "new\ngone\n");
    store.nucleus(&["rmi", &repo]).assert_ok();
    assert_no_containers_left(&store, &state);
    assert_eq!(store.leftovers(), Vec::<String>::new());
}

/// A registry that is not on a local address is spoken to over HTTPS and its
/// certificate is checked against the system's trust (here `SSL_CERT_FILE`,
/// as OpenSSL-based clients read it): trusted, the pull succeeds; not
/// trusted, it fails naming the certificate and stores nothing.
#[test]
fn pull_over_https_checks_the_registrys_certificate() {
    require_tools!();
    let reg = Registry::start_tls();
    let work = tempfile::tempdir().unwrap();
    let layout = busybox_layout(work.path());
    let repo = reg.push(&layout, "bb", "test/tls:1");
    let ca = reg.ca().unwrap();

    let untrusted = Store::new();
    let mut cmd = untrusted.cmd(&["pull", &repo]);
    cmd.env("SSL_CERT_FILE", work.path().join("no-such-ca.pem"));
    let err = exec(cmd, &untrusted.dir.path().join("io"), TIMEOUT);
    err.assert_fail();
    assert!(
        err.stderr.to_lowercase().contains("certificate"),
        "{}",
        err.stderr
    );
    assert_eq!(untrusted.leftovers(), Vec::<String>::new());

    let trusted = Store::new();
    let mut cmd = trusted.cmd(&["pull", &repo]);
    cmd.env("SSL_CERT_FILE", &ca);
    let out = exec(cmd, &trusted.dir.path().join("io"), TIMEOUT);
    out.assert_ok();
    assert!(out.stdout.trim_end().ends_with(&repo), "{}", out.stdout);
    assert_eq!(trusted.inspect(&repo)["Config"]["Cmd"][0], "/bin/sh");
}
