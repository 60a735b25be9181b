//! The runc-compatible verbs: flags, arguments, output and exit codes as
//! runc has them, so containerd's shim, podman and CRI-O work unchanged.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use nucleus_engine::lifecycle::{self, CreateOptions, RunOptions};
use nucleus_engine::state::StateRoot;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a container from a bundle; it waits for `start`
    Create(CreateArgs),
    /// Start a created container
    Start { id: String },
    /// Create and start a container, and wait for it unless detached
    Run(RunArgs),
    /// Run a process inside a running container
    Exec(Box<ExecArgs>),
    /// Print the OCI state of a container
    State { id: String },
    /// Send a signal to a container's init (or all its processes)
    Kill(KillArgs),
    /// Delete a container
    Delete(DeleteArgs),
    /// List containers
    #[command(alias = "ls")]
    List(ListArgs),
    /// Write a default config.json
    Spec(SpecArgs),
    /// Print the features this runtime supports
    Features,
    /// Checkpoint a running container with CRIU
    Checkpoint(Box<CheckpointArgs>),
    /// Restore a container from a CRIU checkpoint
    Restore(Box<RestoreArgs>),
    #[command(flatten)]
    Resources(crate::resources::ResourceCommand),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Bundle directory (holds config.json)
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Unix socket that receives the pty master when process.terminal is set
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Write the init's pid to this file
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root
    #[arg(long)]
    no_pivot: bool,
    /// Accepted for runc compatibility (no session keyring is created)
    #[arg(long)]
    no_new_keyring: bool,
    /// Pass N extra file descriptors (3..3+N) to the container
    #[arg(long, default_value_t = 0)]
    preserve_fds: u32,
    id: String,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    create: CreateArgs,
    /// Return once the workload has started
    #[arg(short, long)]
    detach: bool,
    /// Keep the container's state after it exits
    #[arg(long)]
    keep: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Unix socket that receives the pty master when --tty is set
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Working directory inside the container
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// Extra environment variables (KEY=VALUE)
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Allocate a pseudo-terminal
    #[arg(short, long)]
    tty: bool,
    /// User as uid[:gid]
    #[arg(short, long)]
    user: Option<String>,
    /// Additional gids
    #[arg(short = 'g', long = "additional-gids")]
    additional_gids: Vec<u32>,
    /// A process.json describing the whole process
    #[arg(short, long)]
    process: Option<PathBuf>,
    /// Return once the process has started
    #[arg(short, long)]
    detach: bool,
    /// Write the process's pid to this file
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Accepted for runc compatibility (SELinux is not supported)
    #[arg(long)]
    process_label: Option<String>,
    /// Accepted for runc compatibility (AppArmor is not supported)
    #[arg(long)]
    apparmor: Option<String>,
    /// Set no_new_privs for the process
    #[arg(long)]
    no_new_privs: bool,
    /// Add a capability (repeatable)
    #[arg(short, long = "cap")]
    cap: Vec<String>,
    /// Pass N extra file descriptors (3..3+N)
    #[arg(long, default_value_t = 0)]
    preserve_fds: u32,
    /// Run the process in an existing sub-cgroup: [CONTROLLER:]PATH (repeatable)
    #[arg(long = "cgroup")]
    cgroup: Vec<String>,
    /// Exec even into a paused container (the process starts frozen)
    #[arg(long)]
    ignore_paused: bool,
    id: String,
    /// Command and arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// The CRIU flags `checkpoint` and `restore` share (runc's).
#[derive(Debug, Args)]
pub struct CriuArgs {
    /// Directory for the CRIU image files
    #[arg(long)]
    image_path: Option<PathBuf>,
    /// Directory for CRIU's work files and log
    #[arg(long)]
    work_path: Option<PathBuf>,
    /// Allow open TCP connections
    #[arg(long)]
    tcp_established: bool,
    /// Allow external unix sockets
    #[arg(long)]
    ext_unix_sk: bool,
    /// Allow shell jobs
    #[arg(long)]
    shell_job: bool,
    /// Handle file locks
    #[arg(long)]
    file_locks: bool,
    /// Cgroups mode: soft (default), full or strict
    #[arg(long)]
    manage_cgroups_mode: Option<String>,
    /// Create this namespace empty instead of restoring it (repeatable)
    #[arg(long)]
    empty_ns: Vec<String>,
    /// Deduplicate memory images
    #[arg(long)]
    auto_dedup: bool,
    /// Restore memory pages lazily (userfaultfd)
    #[arg(long)]
    lazy_pages: bool,
}

#[derive(Debug, Args)]
pub struct CheckpointArgs {
    #[command(flatten)]
    criu: CriuArgs,
    /// Directory of the previous (pre-dump) images
    #[arg(long)]
    parent_path: Option<PathBuf>,
    /// Leave the container running after the checkpoint
    #[arg(long)]
    leave_running: bool,
    /// Dump memory only and leave the container running
    #[arg(long)]
    pre_dump: bool,
    /// ADDRESS:PORT of a CRIU page server
    #[arg(long)]
    page_server: Option<String>,
    /// CRIU writes \0 to this fd once lazy pages are ready
    #[arg(long, allow_hyphen_values = true)]
    status_fd: Option<i32>,
    id: String,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    criu: CriuArgs,
    /// Bundle directory (holds config.json)
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Accepted for runc compatibility: a restored container always runs detached
    #[arg(short, long)]
    detach: bool,
    /// Write the restored init's pid to this file
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Accepted for runc compatibility (no console is restored)
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Accepted for runc compatibility
    #[arg(long)]
    no_subreaper: bool,
    /// Accepted for runc compatibility
    #[arg(long)]
    no_pivot: bool,
    /// Accepted for runc compatibility (LSMs are not supported)
    #[arg(long)]
    lsm_profile: Option<String>,
    /// Accepted for runc compatibility (LSMs are not supported)
    #[arg(long)]
    lsm_mount_context: Option<String>,
    id: String,
}

impl CriuArgs {
    /// runc's default image directory is `./checkpoint`.
    fn options(&self) -> lifecycle::CriuOptions {
        lifecycle::CriuOptions {
            image_path: self
                .image_path
                .clone()
                .unwrap_or_else(|| PathBuf::from("checkpoint")),
            work_path: self.work_path.clone(),
            tcp_established: self.tcp_established,
            ext_unix_sk: self.ext_unix_sk,
            shell_job: self.shell_job,
            file_locks: self.file_locks,
            manage_cgroups_mode: self.manage_cgroups_mode.clone(),
            auto_dedup: self.auto_dedup,
            lazy_pages: self.lazy_pages,
            empty_ns: self.empty_ns.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal every process in the container
    #[arg(short, long)]
    all: bool,
    id: String,
    /// Signal name or number
    #[arg(default_value = "SIGTERM")]
    signal: String,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Kill the container first if it is still running
    #[arg(short, long)]
    force: bool,
    id: String,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format: table or json
    #[arg(short, long, default_value = "table")]
    format: String,
    /// Print only ids
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Debug, Args)]
pub struct SpecArgs {
    /// Write a spec for a rootless container (user namespace)
    #[arg(long)]
    rootless: bool,
    /// Where to write config.json
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
}

/// Runs one verb; returns the process exit code.
pub fn dispatch(root: &Path, command: Command) -> Result<i32> {
    let root = StateRoot::new(root);
    match command {
        Command::Create(a) => {
            lifecycle::create(&root, &a.id, &create_options(&a))
                .with_context(|| format!("create `{}`", a.id))?;
            Ok(0)
        }
        Command::Start { id } => {
            let id = resolve(&root, &id);
            lifecycle::start(&root, &id).with_context(|| format!("start `{id}`"))?;
            Ok(0)
        }
        Command::Run(a) => {
            let c = &a.create;
            let opts = RunOptions {
                bundle: &c.bundle,
                console_socket: c.console_socket.as_deref(),
                pid_file: c.pid_file.as_deref(),
                no_pivot: c.no_pivot,
                preserve_fds: c.preserve_fds,
                detach: a.detach,
                keep: a.keep,
                timeout: None,
            };
            Ok(lifecycle::run(&root, &c.id, &opts).with_context(|| format!("run `{}`", c.id))?)
        }
        Command::Exec(mut a) => {
            a.id = resolve(&root, &a.id);
            let process = exec_process(&root, &a)?;
            let opts = nucleus_engine::lifecycle::ExecOptions {
                process,
                console_socket: a.console_socket.as_deref(),
                pid_file: a.pid_file.as_deref(),
                detach: a.detach,
                preserve_fds: a.preserve_fds,
                ignore_paused: a.ignore_paused,
                sub_cgroups: a.cgroup.iter().map(|c| parse_sub_cgroup(c)).collect(),
            };
            Ok(lifecycle::exec(&root, &a.id, &opts)
                .with_context(|| format!("exec in `{}`", a.id))?)
        }
        Command::State { id } => {
            let id = resolve(&root, &id);
            let v = lifecycle::state(&root, &id).with_context(|| format!("state `{id}`"))?;
            print_json(&v)?;
            Ok(0)
        }
        Command::Kill(mut a) => {
            a.id = resolve(&root, &a.id);
            // Signal 0 only checks that the init is alive, as with kill(2).
            let sig = match a.signal.as_str() {
                "0" => 0,
                s => nucleus_engine::signal::parse_signal(s).map_err(anyhow::Error::msg)?,
            };
            lifecycle::kill(&root, &a.id, sig, a.all)
                .with_context(|| format!("kill `{}`", a.id))?;
            Ok(0)
        }
        Command::Delete(mut a) => {
            a.id = resolve(&root, &a.id);
            match lifecycle::delete(&root, &a.id, a.force) {
                // runc: `delete --force` of a container that is already gone succeeds
                // quietly. containerd's shim and podman's cleanup call it after a failed
                // create (or twice), and print any error it gives as a second failure.
                Err(nucleus_engine::EngineError::NotFound { .. }) if a.force => Ok(0),
                r => {
                    r.with_context(|| format!("delete `{}`", a.id))?;
                    Ok(0)
                }
            }
        }
        Command::List(a) => list(&root, &a),
        Command::Spec(a) => {
            let path = a.bundle.join("config.json");
            if path.exists() {
                bail!("`{}` exists; remove it first", path.display());
            }
            let (uid, gid) = (
                nix::unistd::getuid().as_raw(),
                nix::unistd::getgid().as_raw(),
            );
            let v = nucleus_engine::template::default_spec(a.rootless, uid, gid);
            let text = serde_json::to_string_pretty(&v)?;
            std::fs::write(&path, text + "\n")
                .with_context(|| format!("write `{}`", path.display()))?;
            Ok(0)
        }
        Command::Resources(c) => crate::resources::dispatch(&root, c),
        Command::Checkpoint(a) => {
            let id = resolve(&root, &a.id);
            let opts = lifecycle::CheckpointOptions {
                criu: a.criu.options(),
                parent_path: a.parent_path.clone(),
                leave_running: a.leave_running,
                pre_dump: a.pre_dump,
                page_server: a.page_server.clone(),
                status_fd: a.status_fd.filter(|fd| *fd >= 0),
            };
            lifecycle::checkpoint(&root, &id, &opts)
                .with_context(|| format!("checkpoint `{id}`"))?;
            Ok(0)
        }
        Command::Restore(a) => {
            let opts = lifecycle::RestoreOptions {
                criu: a.criu.options(),
                bundle: &a.bundle,
                pid_file: a.pid_file.as_deref(),
            };
            Ok(lifecycle::restore(&root, &a.id, &opts)
                .with_context(|| format!("restore `{}`", a.id))?)
        }
        Command::Features => {
            print_json(&nucleus_engine::features::features())?;
            Ok(0)
        }
    }
}

impl Command {
    /// The container an `exec` is for (as queried, unresolved).
    pub fn exec_target(&self) -> Option<&str> {
        match self {
            Command::Exec(a) => Some(&a.id),
            _ => None,
        }
    }
}

/// Every verb finds a container by exact id, then name, then unique id
/// prefix; an unresolved query is passed on so the verb reports it.
pub fn resolve(root: &StateRoot, query: &str) -> String {
    root.resolve(query).unwrap_or_else(|_| query.to_string())
}

/// The exec'd process: `--process` as given, or the container's own process
/// with the command line's args, env, cwd, user and capabilities applied.
fn exec_process(root: &StateRoot, a: &ExecArgs) -> Result<oci_spec::runtime::Process> {
    use oci_spec::runtime::{Capability, Process};
    use std::str::FromStr;
    if let Some(path) = &a.process {
        let text =
            std::fs::read(path).with_context(|| format!("--process: read `{}`", path.display()))?;
        let invalid = || format!("--process: `{}` is not a valid process", path.display());
        let mut value: serde_json::Value = serde_json::from_slice(&text).with_context(invalid)?;
        // A process without `user` runs as the container's user.
        if let Some(obj) = value.as_object_mut().filter(|o| !o.contains_key("user")) {
            let own = lifecycle::container_process(root, &a.id)
                .with_context(|| format!("exec in `{}`", a.id))?;
            obj.insert("user".into(), serde_json::to_value(own.user())?);
        }
        let p: Process = serde_json::from_value(value).with_context(invalid)?;
        return Ok(p);
    }
    if a.command.is_empty() {
        bail!("exec needs a command (or --process)");
    }
    let mut p =
        lifecycle::container_process(root, &a.id).with_context(|| format!("exec in `{}`", a.id))?;
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    let mut env = p.env().clone().unwrap_or_default();
    for kv in &a.env {
        let Some((key, _)) = kv.split_once('=') else {
            bail!("--env: `{kv}` is not KEY=VALUE")
        };
        env.retain(|e| e.split_once('=').map(|(k, _)| k) != Some(key));
        env.push(kv.clone());
    }
    p.set_env(Some(env));
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.clone());
    }
    if let Some(user) = &a.user {
        let (uid, gid) = match user.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (user.as_str(), None),
        };
        let uid: u32 = uid
            .parse()
            .map_err(|_| anyhow::anyhow!("--user: `{user}` is not uid[:gid]"))?;
        p.user_mut().set_uid(uid);
        if let Some(g) = gid {
            p.user_mut().set_gid(
                g.parse()
                    .map_err(|_| anyhow::anyhow!("--user: `{user}` is not uid[:gid]"))?,
            );
        }
    }
    if !a.additional_gids.is_empty() {
        p.user_mut()
            .set_additional_gids(Some(a.additional_gids.clone()));
    }
    if !a.cap.is_empty() {
        // An absent set is empty (not oci-spec's default trio of capabilities).
        let mut caps = p.capabilities().clone().unwrap_or_else(|| {
            let mut c = oci_spec::runtime::LinuxCapabilities::default();
            c.set_bounding(None)
                .set_effective(None)
                .set_permitted(None)
                .set_inheritable(None)
                .set_ambient(None);
            c
        });
        for name in &a.cap {
            let upper = name.to_ascii_uppercase();
            let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
            let cap = Capability::from_str(bare)
                .map_err(|_| anyhow::anyhow!("--cap: unknown capability `{name}`"))?;
            let add = |set: &Option<oci_spec::runtime::Capabilities>| {
                let mut s = set.clone().unwrap_or_default();
                s.insert(cap);
                Some(s)
            };
            let (b, e, pm) = (
                add(caps.bounding()),
                add(caps.effective()),
                add(caps.permitted()),
            );
            caps.set_bounding(b);
            caps.set_effective(e);
            caps.set_permitted(pm);
        }
        p.set_capabilities(Some(caps));
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    Ok(p)
}

/// `exec --cgroup [CONTROLLER:]PATH` as the engine takes it.
fn parse_sub_cgroup(arg: &str) -> (Option<String>, String) {
    match arg.split_once(':') {
        Some((controller, path)) => (Some(controller.to_string()), path.to_string()),
        None => (None, arg.to_string()),
    }
}

fn create_options(a: &CreateArgs) -> CreateOptions<'_> {
    CreateOptions {
        bundle: &a.bundle,
        console_socket: a.console_socket.as_deref(),
        pid_file: a.pid_file.as_deref(),
        no_pivot: a.no_pivot,
        preserve_fds: a.preserve_fds,
    }
}

fn print_json(v: &serde_json::Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

fn list(root: &StateRoot, a: &ListArgs) -> Result<i32> {
    let entries = lifecycle::list(root)?;
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for e in &entries {
            writeln!(out, "{}", e.id)?;
        }
        return Ok(0);
    }
    match a.format.as_str() {
        "json" => {
            serde_json::to_writer(&mut out, &entries)?;
            writeln!(out)?;
        }
        "table" => {
            writeln!(
                out,
                "{:<20} {:<8} {:<10} {:<40} {:<31} OWNER",
                "ID", "PID", "STATUS", "BUNDLE", "CREATED"
            )?;
            for e in &entries {
                writeln!(
                    out,
                    "{:<20} {:<8} {:<10} {:<40} {:<31} {}",
                    e.id,
                    e.pid,
                    e.status,
                    e.bundle.display(),
                    e.created,
                    e.owner
                )?;
            }
        }
        other => bail!("--format: invalid value `{other}` (expected table or json)"),
    }
    Ok(0)
}
