//! Running a sandbox: check what the spec points at on the host, compile it
//! (`compile`), write the bundle, claim the name, then hand over to the
//! engine: `lifecycle::run_with` in this process for a foreground run, or a
//! monitor (`monitor`) that calls `lifecycle::spawn_with` when detached.
//! Anything half made is undone if a step fails.

use crate::bundle;
use crate::compile::{self, ImageRoot};
use crate::error::{Field, Result, SandboxError};
use crate::image_store::{self, StoreProvider};
use crate::monitor::{self, ExitRecord, MonitorArgs, MonitorCommand};
use crate::names;
use crate::net_attach::{NetAttach, NetPlan, NetworkStore};
use crate::network::{EngineStep, NetworkAttach, NoNetwork};
use crate::rootfs::{ImageProvider, RootfsSource};
use crate::side_task::{NoSideTasks, SideTasks};
use crate::spec::Network;
use crate::spec::SandboxSpec;
use crate::user_net::{UserNet, UserNetPlan};
use nucleus_engine::lifecycle;
use nucleus_engine::state::StateRoot;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How to run, besides what runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// In the background, under a monitor.
    pub detach: bool,
    /// Remove a detached container once it exits (foreground ones always are, unless `keep`).
    pub rm: bool,
    /// Keep a foreground container's state after it exits.
    pub keep: bool,
    /// Keep stdin open for the workload (else it reads /dev/null).
    pub interactive: bool,
}

impl RunOptions {
    /// What a run's options refuse together with the spec.
    pub fn validate(&self, spec: &SandboxSpec) -> Result<()> {
        if self.detach && spec.tty {
            return Err(SandboxError::invalid(
                Field::Tty,
                "true",
                "a terminal is not supported with -d",
            ));
        }
        if self.detach && self.keep {
            return Err(SandboxError::invalid(
                Field::Keep,
                "true",
                "detached containers are kept until `rm` anyway",
            ));
        }
        Ok(())
    }
}

/// The extension points a front end fills in; the defaults do nothing.
/// A detached sandbox is started by its monitor, a separate process: there
/// the monitor binary's own `network` and `side_tasks` (given to
/// `monitor::serve`) are used, not these.
#[derive(Debug)]
pub struct Extensions {
    /// Run after the container's namespaces exist, before its workload
    /// (foreground runs).
    pub network: Box<dyn NetworkAttach>,
    /// Reserved for a front end that runs its monitor in-process.
    pub side_tasks: Box<dyn SideTasks>,
    /// Resolves `RootfsSource::Image`.
    pub images: Option<Box<dyn ImageProvider>>,
    /// Where `Network::Attached` networks live; such a spec is refused without it.
    pub networks: Option<NetworkStore>,
}

impl Extensions {
    /// The image store and the networks under `data_root`, roots under `state_root`.
    pub fn with_stores(state_root: &Path, data_root: &Path) -> Self {
        Extensions {
            images: Some(Box::new(StoreProvider::new(state_root, data_root))),
            networks: Some(NetworkStore::from_env(data_root)),
            ..Extensions::default()
        }
    }
}

impl Default for Extensions {
    fn default() -> Self {
        Extensions {
            network: Box::new(NoNetwork),
            side_tasks: Box::new(NoSideTasks),
            images: None,
            networks: None,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// Started in the background.
    Detached { id: String },
    /// Ran in the foreground: the workload's exit code (128+N for signal N).
    Exited {
        id: String,
        code: i32,
        timed_out: bool,
    },
}

/// Undoes a half-made run: releases the name and removes the bundle.
struct Cleanup<'a> {
    root: &'a StateRoot,
    id: &'a str,
    dir: PathBuf,
    name: Option<&'a str>,
    armed: bool,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if self.root.container_dir(self.id).exists() {
            // Started but failed while running: the engine removes bundle and name.
            if let Err(e) = lifecycle::delete(self.root, self.id, true) {
                tracing::warn!(id = self.id, error = %e, "cleanup after failed run");
            }
        }
        if let Some(name) = self.name {
            self.root.release_name(name, self.id);
        }
        bundle::remove(&self.dir);
    }
}

/// Runs `spec` under state root `root`. `monitor` is the binary to run as
/// the monitor of a detached sandbox.
pub fn run(
    root_path: &Path,
    spec: &SandboxSpec,
    opts: &RunOptions,
    ext: &mut Extensions,
    monitor_cmd: &MonitorCommand,
) -> Result<RunOutcome> {
    let result = run_inner(root_path, spec, opts, ext, monitor_cmd);
    if matches!(spec.rootfs, RootfsSource::Image(_)) {
        // A foreground run's root, or a failed run's, is unused now.
        image_store::sweep_logged(root_path);
    }
    result
}

fn run_inner(
    root_path: &Path,
    spec: &SandboxSpec,
    opts: &RunOptions,
    ext: &mut Extensions,
    monitor_cmd: &MonitorCommand,
) -> Result<RunOutcome> {
    let t0 = Instant::now();
    opts.validate(spec)?;
    spec.validate()?;
    let mut net_plan = NetPlan::for_spec(spec, ext.networks.as_ref())?;
    // Parsed and checked before anything starts; attached in the foreground.
    let mut net_attach = net_plan.as_ref().map(NetAttach::new).transpose()?;
    let user_net = UserNetPlan::for_spec(spec)?;
    let root = StateRoot::new(root_path);
    let id = names::new_id()?;
    // Without a provider an image is refused by `compile`, naming the image.
    let image = match (&spec.rootfs, ext.images.as_deref()) {
        (RootfsSource::Image(r), Some(p)) => {
            let on_host = matches!(spec.runtime, crate::spec::Runtime::Gvisor { .. });
            // Rootless, a map other than the default gets layers with
            // owners for it (`nucleus_image::IdShift`).
            let maps = if spec.userns.is_host() || nix::unistd::geteuid().is_root() {
                None
            } else {
                compile::image_id_maps(spec, &crate::host::caller())?
            };
            Some(p.prepare(r, &id, on_host, maps.as_ref())?)
        }
        _ => None,
    };
    if let (Some(plan), Some(img)) = (net_plan.as_mut(), image.as_ref()) {
        if plan.options.publish_all && plan.publish_exposed(&img.config.exposed_ports)? {
            net_attach = Some(NetAttach::new(plan)?);
        }
    }
    // A foreground run attaches itself: its host side goes ahead now.
    if let (Some(a), false) = (net_attach.as_mut(), opts.detach) {
        a.prepare_ahead(&id, &bundle::bundle_path(root_path, &id));
    }
    let facts = crate::host::probe(spec, image.as_ref().map(|i| i.files_root()))?;
    let image_in = image.as_ref().map(|i| ImageRoot {
        rootfs: &i.rootfs,
        config: &i.config,
        overlay: i.overlay.as_ref().map(|(d, _)| d.as_str()),
    });
    let mut plan = compile::compile(spec, &facts.inputs(&id, image_in))?;
    if let Network::Container(other) = &spec.network {
        crate::net_share::join_container(&root, other, &mut plan.spec)?;
    }
    // Rootless with the default map: join the namespace mapped once, not
    // a new one through two setuid helpers.
    let lease = crate::userns_holder::join(root_path, spec, &mut plan.spec, &monitor_cmd.exe)?;
    let dir = bundle::create_dir(root_path, &id)?;
    // The bundle marks the holder as used (`userns_holder::stop_if_unused`).
    drop(lease);
    let mut cleanup = Cleanup {
        root: &root,
        id: &id,
        dir: dir.clone(),
        name: None,
        armed: true,
    };
    if let Some(name) = &spec.name {
        names::claim(&root, name, &id)?;
        cleanup.name = Some(name);
    }
    let written = bundle::write(&dir, &mut plan)?;
    tracing::debug!(
        id,
        elapsed_us = t0.elapsed().as_micros(),
        "phase: spec to bundle"
    );

    // The monitor of a detached run attaches with it; `inspect`, `rm` and
    // `events --denials` find the network store through it.
    if let Some(plan) = &net_plan {
        plan.write(&written.path)?;
    }
    if let Some(plan) = &user_net {
        plan.write(&written.path)?;
    }
    if opts.detach {
        let args = MonitorArgs {
            id: id.clone(),
            bundle: written.path.clone(),
            timeout: plan.timeout,
            rm: opts.rm,
            exec_socket: monitor_cmd
                .exec_sockets
                .as_deref()
                .map(|d| monitor::exec_socket(d, &id)),
        };
        monitor::start(
            monitor_cmd,
            root_path,
            &args,
            !written.secret_fds.is_empty(),
        )?;
        cleanup.armed = false;
        drop(cleanup);
        drop(written.secret_fds);
        return Ok(RunOutcome::Detached { id });
    }

    if !opts.interactive && !spec.tty {
        // Without -i the workload reads nothing, as with Docker.
        let null = std::fs::File::open("/dev/null")
            .map_err(|e| SandboxError::io("open", "/dev/null", e))?;
        nix::unistd::dup2_stdin(&null).map_err(|source| SandboxError::Sys {
            op: "redirect stdin",
            source,
        })?;
    }
    let keep = opts.keep && !opts.rm;
    let engine_opts = lifecycle::RunOptions {
        bundle: &written.path,
        console_socket: None,
        pid_file: None,
        no_pivot: false,
        preserve_fds: 0,
        detach: false,
        keep,
        timeout: plan.timeout,
    };
    let started = Instant::now();
    let mut user_net = user_net.map(UserNet::new);
    let mut step = EngineStep {
        id: &id,
        bundle: &written.path,
        step: match (net_attach.as_mut(), user_net.as_mut()) {
            (Some(a), _) => a,
            (None, Some(u)) => u,
            (None, None) => ext.network.as_mut(),
        },
    };
    let code = lifecycle::run_with(&root, &id, &engine_opts, Some(&mut step))
        .map_err(SandboxError::engine("run"))?;
    tracing::debug!(
        id,
        elapsed_us = started.elapsed().as_micros(),
        "phase: engine run, wait and delete"
    );
    drop(written.secret_fds);
    drop(net_attach);
    drop(user_net);
    cleanup.armed = false;
    drop(cleanup);
    let timed_out =
        plan.timeout.is_some_and(|t| started.elapsed() >= t) && code == 128 + libc::SIGKILL;
    if keep {
        let record = ExitRecord {
            exit_code: code,
            finished_at: crate::clock::rfc3339(std::time::SystemTime::now()),
            timed_out: false,
        };
        record.write(&written.path)?;
    }
    Ok(RunOutcome::Exited {
        id,
        code,
        timed_out,
    })
}
