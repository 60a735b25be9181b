//! `nucleus run` in its docker-like form: read what the flags point at,
//! translate them into a spec (`spec_builder`), write the bundle, claim the
//! name, then hand over to the engine: `lifecycle::run` in the foreground,
//! or a monitor that calls `lifecycle::spawn` when detached.
//!
//! Exit codes as Docker's: 125 when nucleus fails, 126 when the command
//! cannot be executed, 127 when it is not found, else the workload's own
//! (128+N when killed by signal N).

use super::agent_root::HostLayout;
use super::spec_builder::{self, FlagError, Inputs, Policies};
use super::{bundle, monitor, names, Globals, RunFlags};
use anyhow::{Context, Result};
use nucleus_engine::lifecycle::{self, RunOptions};
use nucleus_engine::security::{caps_policy, landlock, pinning};
use nucleus_engine::state::StateRoot;
use nucleus_engine::EngineError;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Docker's exit code for a failure of the runtime itself.
pub const RUNTIME_ERROR: i32 = super::spec_builder::RUNTIME_ERROR_CODE;

/// Exit code for a failed run: 126/127 when the command could not be
/// executed or found, else 125.
pub fn exit_code_for(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if let Some(EngineError::Child { step, detail }) = cause.downcast_ref::<EngineError>() {
            if step == "exec" {
                return if detail
                    .to_ascii_lowercase()
                    .ends_with("no such file or directory")
                {
                    127
                } else {
                    126
                };
            }
        }
    }
    RUNTIME_ERROR
}

/// Runs the agent sandbox (or `--rootfs`); returns the process exit code.
pub fn run(g: &Globals<'_>, f: &RunFlags) -> i32 {
    match run_inner(g, f) {
        Ok(code) => code,
        Err(e) => {
            crate::logging::report(&e, g.log.is_some());
            exit_code_for(&e)
        }
    }
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

fn run_inner(g: &Globals<'_>, f: &RunFlags) -> Result<i32> {
    let t0 = std::time::Instant::now();
    let root = StateRoot::new(g.root);
    let id = names::new_id()?;
    let host = if f.rootfs.is_none() {
        HostLayout::probe(Path::new("/"))
    } else {
        HostLayout::default()
    };
    let probed = Probed::read(f)?;
    let default_seccomp =
        serde_json::to_value(nucleus_engine::security::agent_profile::agent_seccomp_profile())
            .context("encode the agent seccomp profile")?;
    let env = |k: &str| std::env::var(k).ok();
    let device = |p: &str| {
        let m = std::fs::metadata(p).ok()?;
        if !m.file_type().is_block_device() {
            return None;
        }
        Some((
            i64::try_from(nix::sys::stat::major(m.rdev())).ok()?,
            i64::try_from(nix::sys::stat::minor(m.rdev())).ok()?,
        ))
    };
    let inputs = Inputs {
        id: &id,
        host: &host,
        passwd: &probed.passwd,
        group: &probed.group,
        env_files: &probed.env_files,
        host_env: &env,
        host_resolv: &probed.resolv,
        device: &device,
        default_seccomp: &default_seccomp,
        policies: &probed.policies,
    };
    let mut plan = spec_builder::build(f, &inputs)?;
    let dir = bundle::create_dir(g.root, &id)?;
    let mut cleanup = Cleanup {
        root: &root,
        id: &id,
        dir: dir.clone(),
        name: None,
        armed: true,
    };
    if let Some(name) = &f.name {
        names::claim(&root, name, &id)
            .with_context(|| format!("--name: invalid value `{name}`"))?;
        cleanup.name = Some(name);
    }
    let written = bundle::write(&dir, &mut plan)?;
    tracing::debug!(
        id,
        elapsed_us = t0.elapsed().as_micros(),
        "phase: flags to spec and bundle"
    );

    if f.detach {
        if let Err(fail) = monitor::start(g.root, &id, &written.path, plan.timeout, f.rm, g.debug) {
            eprintln!("nucleus: {}", fail.message);
            return Ok(fail.code);
        }
        cleanup.armed = false;
        println!("{id}");
        return Ok(0);
    }

    if !f.interactive && !f.tty {
        // Without -i the workload reads nothing, as with Docker.
        let null = std::fs::File::open("/dev/null").context("open /dev/null")?;
        nix::unistd::dup2_stdin(&null).context("redirect stdin")?;
    }
    let keep = f.keep && !f.rm;
    let opts = RunOptions {
        bundle: &written.path,
        console_socket: None,
        pid_file: None,
        no_pivot: false,
        preserve_fds: 0,
        detach: false,
        keep,
        timeout: plan.timeout,
    };
    let started = std::time::Instant::now();
    let code = lifecycle::run(&root, &id, &opts)?;
    tracing::debug!(
        id,
        elapsed_us = started.elapsed().as_micros(),
        "phase: engine run, wait and delete"
    );
    drop(written.secret_fds);
    cleanup.armed = false;
    if plan.timeout.is_some_and(|t| started.elapsed() >= t) && code == 128 + libc::SIGKILL {
        eprintln!(
            "nucleus: --timeout: container killed after {}s",
            plan.timeout.map(|t| t.as_secs_f64()).unwrap_or_default()
        );
    }
    if keep {
        let record = monitor::ExitRecord {
            exit_code: code,
            finished_at: super::clock::rfc3339(std::time::SystemTime::now()),
            timed_out: false,
        };
        record.write(&written.path)?;
    }
    Ok(code)
}

/// What the flags point at on the host, read (and checked) up front so a
/// missing file is a flag error before anything is created.
struct Probed {
    passwd: String,
    group: String,
    resolv: String,
    env_files: Vec<(PathBuf, String)>,
    policies: Policies,
}

impl Probed {
    fn read(f: &RunFlags) -> Result<Self, FlagError> {
        let etc = match &f.rootfs {
            Some(dir) => {
                let meta = std::fs::metadata(dir).map_err(|e| {
                    FlagError::new("--rootfs", dir.display().to_string(), e.to_string())
                })?;
                if !meta.is_dir() {
                    return Err(FlagError::new(
                        "--rootfs",
                        dir.display().to_string(),
                        "not a directory",
                    ));
                }
                dir.join("etc")
            }
            None => PathBuf::from("/etc"),
        };
        let passwd = std::fs::read_to_string(etc.join("passwd")).unwrap_or_default();
        let group = std::fs::read_to_string(etc.join("group")).unwrap_or_default();
        let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let env_files = f
            .env_file
            .iter()
            .map(|p| {
                std::fs::read_to_string(p)
                    .map(|t| (p.clone(), t))
                    .map_err(|e| {
                        FlagError::new("--env-file", p.display().to_string(), e.to_string())
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for v in &f.volume {
            let src = v.split(':').next().unwrap_or_default();
            if src.starts_with('/') && std::fs::metadata(src).is_err() {
                return Err(FlagError::new(
                    "-v/--volume",
                    v,
                    format!("`{src}` does not exist"),
                ));
            }
        }
        if let Some(c) = &f.context {
            if !c.is_dir() {
                return Err(FlagError::new(
                    "--context",
                    c.display().to_string(),
                    "not a directory",
                ));
            }
        }
        for s in &f.secret {
            let src = s.split(':').next().unwrap_or_default();
            if !Path::new(src).is_file() {
                return Err(FlagError::new(
                    "--secret",
                    s,
                    format!("`{src}` is not a readable file"),
                ));
            }
        }
        Ok(Probed {
            passwd,
            group,
            resolv,
            env_files,
            policies: read_policies(f)?,
        })
    }
}

/// Reads the policy files, checking their SHA-256 pins, and parses them.
fn read_policies(f: &RunFlags) -> Result<Policies, FlagError> {
    let pinned = |flag: &str,
                  path: &Option<PathBuf>,
                  pin: &Option<String>|
     -> Result<Option<String>, FlagError> {
        match (path, pin) {
            (None, Some(p)) => Err(FlagError::new(
                &format!("{flag}-sha256"),
                p,
                format!("needs {flag}"),
            )),
            (None, None) => Ok(None),
            (Some(path), pin) => pinning::read_pinned(path, pin.as_deref())
                .map(Some)
                .map_err(|e| FlagError::new(flag, path.display().to_string(), e.to_string())),
        }
    };
    let mut p = Policies::default();
    if let Some(text) = pinned(
        "--seccomp-profile",
        &f.seccomp_profile,
        &f.seccomp_profile_sha256,
    )? {
        let path = f
            .seccomp_profile
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let profile = nucleus_engine::security::seccomp::parse_profile(&text, "--seccomp-profile")
            .map_err(|e| FlagError::new("--seccomp-profile", &path, e.to_string()))?;
        p.seccomp = Some(
            serde_json::to_value(profile)
                .map_err(|e| FlagError::new("--seccomp-profile", &path, e.to_string()))?,
        );
    }
    if let Some(text) = pinned("--caps-policy", &f.caps_policy, &f.caps_policy_sha256)? {
        let path = f
            .caps_policy
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let caps = caps_policy::parse_caps_policy(&text)
            .map_err(|e| FlagError::new("--caps-policy", &path, e.to_string()))?;
        p.caps = Some(
            serde_json::to_value(caps)
                .map_err(|e| FlagError::new("--caps-policy", &path, e.to_string()))?,
        );
    }
    if let Some(text) = pinned(
        "--landlock-policy",
        &f.landlock_policy,
        &f.landlock_policy_sha256,
    )? {
        let path = f
            .landlock_policy
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        landlock::parse_policy(&text)
            .map_err(|e| FlagError::new("--landlock-policy", &path, e.to_string()))?;
        p.landlock = Some(text);
    }
    Ok(p)
}
