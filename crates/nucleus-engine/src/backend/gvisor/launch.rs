//! Starting a gVisor container: the probe and platform choice, the spec
//! translated for runsc, the record written before runsc runs (so a crash at
//! any later step is cleaned by `delete --force`), then `runsc create` or,
//! for a foreground run or a monitor, `runsc run` as our child.

use super::{set_marker, CREATED_MARKER};
use crate::error::{EngineError, Result};
use crate::lifecycle::{CreateOptions, RunOptions, Spawned};
use crate::state::{ContainerDir, ContainerState, StateRoot};
use nucleus_cgroups::{Cgroup, Host};
use nucleus_gvisor::{Probe, Record, Runsc};
use oci_spec::runtime::Spec;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Directory under the state root holding the probe cache and trial bundles.
pub const PROBE_DIR: &str = ".gvisor";
const RUNSC_BUNDLE: &str = "runsc-bundle";
const SANDBOX_PID: &str = "sandbox.pid";

/// A reserved container being set up; undone on drop unless disarmed.
struct Setup {
    id: String,
    dir: Option<ContainerDir>,
    cgroup: Option<Cgroup>,
    runsc: Option<Runsc>,
    spec: Spec,
    bundle: PathBuf,
    rootfs: PathBuf,
    record: Record,
    /// A network namespace made ahead for the front end's attach step.
    netns: Option<PathBuf>,
}

impl Setup {
    fn dir(&self) -> &ContainerDir {
        self.dir
            .as_ref()
            .expect("setup holds its directory until disarmed")
    }

    fn runsc_bundle(&self) -> PathBuf {
        self.dir().path().join(RUNSC_BUNDLE)
    }

    fn state(&self, pid: i32) -> ContainerState {
        ContainerState {
            id: self.id.clone(),
            pid,
            pid_start_time: crate::state::proc_start_time(pid).map_or(0, |(s, _)| s),
            bundle: self.bundle.clone(),
            rootfs: self.rootfs.clone(),
            created: crate::timefmt::rfc3339(std::time::SystemTime::now()),
            annotations: self.spec.annotations().clone().unwrap_or_default(),
            cgroup: self.cgroup.clone(),
            spec: self.spec.clone(),
        }
    }

    fn disarm(mut self) -> ContainerDir {
        self.cgroup = None;
        self.runsc = None;
        self.netns = None;
        self.dir
            .take()
            .expect("setup holds its directory until disarmed")
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(r) = self.runsc.take() {
            let _ = r.call("delete", &["--force", self.id.as_str()]);
        }
        if let Some(cg) = self.cgroup.take() {
            if let Err(e) = cg.destroy() {
                tracing::warn!(error = %e, "cleanup after failed gVisor create: cgroup");
            }
        }
        if let Some(ns) = self.netns.take() {
            super::netns::release(&ns);
        }
        if let Some(dir) = self.dir.take() {
            if let Err(e) = dir.remove() {
                tracing::warn!(error = %e, "cleanup after failed gVisor create: state directory");
            }
        }
    }
}

/// Loads the spec, reserves the id, probes runsc, translates the spec into
/// `<dir>/runsc-bundle` and records everything before runsc is called.
/// With `netns_ahead`, a spec asking for a new network namespace gets one
/// made now, at `<dir>/netns`, for the front end to attach before runsc runs.
fn prepare(root: &StateRoot, id: &str, bundle: &Path, netns_ahead: bool) -> Result<Setup> {
    crate::state::validate_id(id)?;
    let bundle =
        std::fs::canonicalize(bundle).map_err(|e| EngineError::io("open bundle", bundle, e))?;
    let spec = crate::spec::load(&bundle)?;
    crate::spec::validate(&spec, true)?;
    let rootfs = crate::spec::rootfs_path(&spec, &bundle)?;
    let annotations = spec.annotations().clone().unwrap_or_default();
    let dir = root.reserve(id)?;
    let mut setup = Setup {
        id: id.to_string(),
        dir: Some(dir),
        cgroup: None,
        runsc: None,
        spec,
        bundle,
        rootfs,
        record: Record {
            runsc: Runsc {
                binary: PathBuf::new(),
                root: PathBuf::new(),
                platform: String::new(),
                network: nucleus_gvisor::Network::None,
                oci_seccomp: false,
                log: PathBuf::new(),
                netns: None,
                hide_net_sysctl: false,
            },
            version: String::new(),
            cgroups_path: String::new(),
            warnings: Vec::new(),
            enforcement: Vec::new(),
        },
        netns: None,
    };

    let binary = nucleus_gvisor::probe::find_runsc(
        annotations
            .get(nucleus_gvisor::RUNSC_ANNOTATION)
            .map(Path::new),
    )?;
    let probe_dir = root.path().join(PROBE_DIR);
    std::fs::create_dir_all(&probe_dir).map_err(|e| EngineError::io("create", &probe_dir, e))?;
    let cache = probe_dir.join(format!("probe-{}.json", file_key(&binary)));
    let mut probe = Probe::load_or_run(&binary, &cache)?;
    let (platform, learned) = probe.choose(
        annotations
            .get(nucleus_gvisor::PLATFORM_ANNOTATION)
            .map(String::as_str),
        &probe_dir,
    )?;
    if learned {
        probe.save(&cache)?;
    }
    // The in-memory root asks for a private root over a shared skeleton; the
    // gofer makes mount points on the host, so give it a private copy instead.
    let mut for_runsc = setup.spec.clone();
    if crate::spec::wants_rootfs_tmpfs(&setup.spec) {
        let copy = setup.dir().path().join("rootfs");
        copy_skeleton(&setup.rootfs, &copy)?;
        let mut annotations = annotations.clone();
        annotations.remove(crate::spec::ROOTFS_TMPFS_ANNOTATION);
        for_runsc.set_annotations(Some(annotations));
        if let Some(r) = for_runsc.root().clone() {
            let mut r = r;
            r.set_path(copy);
            for_runsc.set_root(Some(r));
        }
    }
    let t = nucleus_gvisor::translate(
        &for_runsc,
        id,
        &setup.bundle,
        crate::spec::allows_degraded(&setup.spec),
        &probe,
    )?;
    let mut t = t;
    if netns_ahead && t.network == nucleus_gvisor::Network::None {
        let path = super::netns::path_in(setup.dir().path());
        super::netns::make(&path)?;
        setup.netns = Some(path.clone());
        set_netns_path(&mut t.config, &path)?;
        t.network = nucleus_gvisor::Network::Sandbox;
        for e in &mut t.enforcement {
            if e.what == "network" {
                e.by = "gVisor netstack over the namespace nucleus attached (--network=sandbox)"
                    .into();
            }
        }
    }
    let mut netns = None;
    let mut hide_net_sysctl = false;
    if t.network == nucleus_gvisor::Network::Sandbox {
        let sn = probe.sandbox_network(&platform, &probe_dir)?;
        if sn.learned {
            probe.save(&cache)?;
        }
        if sn.trial.works {
            hide_net_sysctl = sn.hide_net_sysctl;
            if hide_net_sysctl {
                ensure_netns_not_host(&mut t.config)?;
            }
        } else {
            netns = Some(nucleus_gvisor::translate::network_without_netstack(
                &mut t,
                crate::spec::allows_degraded(&setup.spec),
                &sn.trial.detail,
            )?);
        }
    }
    for w in &t.warnings {
        tracing::warn!(id, "{w}");
    }
    let dir_path = setup.dir().path().to_path_buf();
    setup.record = Record {
        runsc: Runsc {
            binary,
            root: dir_path.join("runsc"),
            platform,
            network: t.network,
            oci_seccomp: t.oci_seccomp,
            log: dir_path.join("runsc.log"),
            netns,
            hide_net_sysctl,
        },
        version: probe.version.clone(),
        cgroups_path: t.cgroups_path.clone(),
        warnings: t.warnings,
        enforcement: t.enforcement,
    };
    let rb = setup.runsc_bundle();
    std::fs::create_dir(&rb).map_err(|e| EngineError::io("create", &rb, e))?;
    let config = rb.join("config.json");
    std::fs::write(&config, t.config.to_string())
        .map_err(|e| EngineError::io("write", &config, e))?;

    // Recorded before runsc makes it, so `delete --force` finds it after a crash.
    let host = Host::detect()?;
    let cg = Cgroup::resolve(&host, Some(&t.cgroups_path), id)?;
    setup.dir().save_cgroup(&cg)?;
    setup.cgroup = Some(cg.clone());
    // Made and limited here, as the native engine does; runsc joins a cgroup
    // that exists (and then neither sets limits on it nor removes it).
    cg.create()?;
    if let Some(res) = setup
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
    {
        // The device rules are for the workload, which sees only gVisor's own
        // devices; on the host they would deny runsc its /dev/null.
        let mut res = res.clone();
        res.set_devices(None);
        cg.apply(&res)?;
    }
    setup.record.save(&dir_path)?;
    setup.runsc = Some(setup.record.runsc.clone());
    tracing::debug!(id, platform = %setup.record.runsc.platform, network = ?t.network, "gVisor container prepared");
    Ok(setup)
}

/// The translated spec's network namespace entry.
fn network_ns(config: &mut serde_json::Value) -> Option<&mut serde_json::Value> {
    config
        .pointer_mut("/linux/namespaces")
        .and_then(serde_json::Value::as_array_mut)?
        .iter_mut()
        .find(|n| n.get("type").and_then(serde_json::Value::as_str) == Some("network"))
}

/// Points the translated spec's network namespace at `path`.
fn set_netns_path(config: &mut serde_json::Value, path: &Path) -> Result<()> {
    let ns = network_ns(config).ok_or_else(|| {
        EngineError::invalid("linux.namespaces", "", "no network namespace to attach")
    })?;
    ns["path"] = serde_json::Value::String(path.display().to_string());
    Ok(())
}

/// runsc will skip its own host-namespace check: make it ourselves.
fn ensure_netns_not_host(config: &mut serde_json::Value) -> Result<()> {
    let path = network_ns(config)
        .and_then(|n| n.get("path"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_string();
    super::netns::ensure_not_host(Path::new(&path))
}

/// A short, path-safe key for the probe cache of one runsc binary.
fn file_key(binary: &Path) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(binary.as_os_str().as_encoded_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// `create` under gVisor: `runsc create`, whose sandbox waits for `start`.
pub(crate) fn create(root: &StateRoot, id: &str, opts: &CreateOptions<'_>) -> Result<i32> {
    let setup = prepare(root, id, opts.bundle, false)?;
    let runsc = &setup.record.runsc;
    let pid_path = setup.dir().path().join(SANDBOX_PID);
    let mut cmd = runsc.command("create");
    cmd.arg("--bundle")
        .arg(setup.runsc_bundle())
        .arg("--pid-file")
        .arg(&pid_path);
    if let Some(sock) = opts.console_socket {
        cmd.arg("--console-socket").arg(sock);
    }
    cmd.arg(id);
    // stdio inherited: the sandbox keeps it as the workload's stdio, as runc's init does.
    let status = cmd
        .status()
        .map_err(|e| EngineError::io("run", &runsc.binary, e))?;
    if !status.success() {
        return Err(runsc.failed("create", &status.to_string(), b"").into());
    }
    let text = std::fs::read_to_string(&pid_path)
        .map_err(|e| EngineError::io("read runsc pid file", &pid_path, e))?;
    let pid: i32 = text
        .trim()
        .parse()
        .map_err(|_| EngineError::invalid("runsc pid file", text.trim(), "not a pid"))?;
    set_marker(setup.dir().path(), CREATED_MARKER, true)?;
    setup.dir().save(&setup.state(pid))?;
    if let Some(path) = opts.pid_file {
        crate::lifecycle::write_pid_file(path, pid)?;
    }
    setup.disarm();
    tracing::debug!(id, pid, "gVisor container created");
    Ok(pid)
}

/// `runsc run` as our child, its stdio inherited. The recorded pid is the
/// runsc process: it lives exactly as long as the container does.
///
/// An attach step that configures a network namespace gets one made ahead
/// (runsc's netstack takes its interfaces as the sandbox starts), with this
/// process as the one that lives as long as the container; other steps are
/// not run.
pub(crate) fn spawn(
    root: &StateRoot,
    id: &str,
    opts: &RunOptions<'_>,
    attach: Option<&mut dyn crate::attach::Attach>,
) -> Result<Spawned> {
    let attach = attach.filter(|a| a.wants_netns());
    let setup = prepare(root, id, opts.bundle, attach.is_some())?;
    if let (Some(step), Some(ns)) = (attach, setup.netns.as_deref()) {
        let owner = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
        step.attach_netns(ns, owner)
            .map_err(|source| EngineError::Attach { pid: owner, source })?;
    }
    let runsc = &setup.record.runsc;
    let mut cmd = runsc.command("run");
    cmd.arg("--bundle").arg(setup.runsc_bundle());
    if let Some(sock) = opts.console_socket {
        cmd.arg("--console-socket").arg(sock);
    }
    cmd.arg(id).stdin(Stdio::inherit());
    let child = cmd
        .spawn()
        .map_err(|e| EngineError::io("run", &runsc.binary, e))?;
    let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
    // The std handle is dropped without waiting; the caller reaps by pid.
    drop(child);
    let state = setup.state(pid);
    setup.dir().save(&state)?;
    if let Some(path) = opts.pid_file {
        crate::lifecycle::write_pid_file(path, pid)?;
    }
    setup.disarm();
    tracing::debug!(id, pid, "gVisor container running");
    Ok(Spawned::new(nix::unistd::Pid::from_raw(pid), state))
}

/// `run` under gVisor: detached, create then start; in the foreground, a
/// `runsc run` child whose container gets our signals through `runsc kill`.
pub(crate) fn run(
    root: &StateRoot,
    id: &str,
    opts: &RunOptions<'_>,
    attach: Option<&mut dyn crate::attach::Attach>,
) -> Result<i32> {
    if opts.detach {
        let pid = create(
            root,
            id,
            &CreateOptions {
                bundle: opts.bundle,
                console_socket: opts.console_socket,
                pid_file: opts.pid_file,
                no_pivot: opts.no_pivot,
                preserve_fds: opts.preserve_fds,
            },
        )?;
        if let Err(e) = super::start(root, id) {
            let _ = super::delete(root, id, true);
            return Err(e);
        }
        tracing::debug!(id, pid, "gVisor container started detached");
        return Ok(0);
    }
    let blocked = crate::lifecycle::BlockedSignals::block(true)?;
    let spawned = spawn(root, id, opts, attach)?;
    let deadline = opts.timeout.map(|t| std::time::Instant::now() + t);
    let record = Record::load(&root.container_dir(id))?;
    let code = relay_until_exit(&blocked.set, spawned.pid, deadline, id, record.as_ref());
    drop(blocked);
    if !opts.keep {
        super::delete(root, id, true)?;
    }
    code
}

/// Waits for the `runsc run` child, passing each blocked signal to the
/// container with `runsc kill` (runsc run does not forward them itself).
fn relay_until_exit(
    signals: &nix::sys::signal::SigSet,
    pid: nix::unistd::Pid,
    deadline: Option<std::time::Instant>,
    id: &str,
    record: Option<&Record>,
) -> Result<i32> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    use std::os::fd::AsFd;
    let sfd = SignalFd::with_flags(signals, SfdFlags::SFD_CLOEXEC)
        .map_err(|e| EngineError::sys("create signalfd", e))?;
    let pidfd = nucleus_sys::pidfd::pidfd_open(pid)
        .map_err(|e| EngineError::sys("open pidfd of runsc", e))?;
    let send = |sig: i32| {
        if let Some(r) = record {
            if let Err(e) = r.runsc.call("kill", &[id, &sig.to_string()]) {
                tracing::debug!(id, signal = sig, error = %e, "runsc kill");
            }
        }
    };
    let mut killed = false;
    loop {
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() && !killed {
                    tracing::warn!(id, "timeout reached: killing the container");
                    send(libc::SIGKILL);
                    killed = true;
                }
                if killed {
                    PollTimeout::NONE
                } else {
                    PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)
                }
            }
        };
        let mut fds = [
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, timeout) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(EngineError::sys("wait for the container", e)),
            Ok(_) => {}
        }
        if fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN))
        {
            if let Ok(Some(info)) = sfd.read_signal() {
                send(i32::try_from(info.ssi_signo).unwrap_or(libc::SIGTERM));
            }
        }
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            if let Some(code) = crate::lifecycle::reap_init(pid)? {
                return Ok(code);
            }
        }
    }
}

/// Copies a root skeleton (directories, symlinks and small files) to `to`.
fn copy_skeleton(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let md = std::fs::symlink_metadata(from).map_err(|e| EngineError::io("stat", from, e))?;
    if md.file_type().is_symlink() {
        let target = std::fs::read_link(from).map_err(|e| EngineError::io("read link", from, e))?;
        return std::os::unix::fs::symlink(target, to)
            .map_err(|e| EngineError::io("symlink", to, e));
    }
    if md.is_file() {
        std::fs::copy(from, to).map_err(|e| EngineError::io("copy", from, e))?;
        return Ok(());
    }
    if !md.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .mode(md.permissions().mode() & 0o7777)
        .create(to)
        .map_err(|e| EngineError::io("create", to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| EngineError::io("read", from, e))? {
        let entry = entry.map_err(|e| EngineError::io("read", from, e))?;
        copy_skeleton(&entry.path(), &to.join(entry.file_name()))?;
    }
    Ok(())
}
