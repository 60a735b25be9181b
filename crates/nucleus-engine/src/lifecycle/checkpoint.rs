//! `checkpoint` and `restore` through CRIU, with runc's options. CRIU is
//! probed with `criu check` first, so a kernel it cannot work on gives one
//! clear error instead of a failed dump part-way through.

use super::{prepare, write_pid_file};
use crate::error::{EngineError, Result};
use crate::state::{ContainerState, StateRoot, Status};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The options runc's `checkpoint` and `restore` share.
#[derive(Debug, Clone, Default)]
pub struct CriuOptions {
    pub image_path: PathBuf,
    /// Where CRIU writes its log (`dump.log`/`restore.log`); the image path if unset.
    pub work_path: Option<PathBuf>,
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    /// `soft` (default), `full` or `strict`.
    pub manage_cgroups_mode: Option<String>,
    pub auto_dedup: bool,
    pub lazy_pages: bool,
    /// Namespaces CRIU should create empty rather than restore (`network`, ...).
    pub empty_ns: Vec<String>,
}

/// Options of `checkpoint`.
#[derive(Debug, Clone, Default)]
pub struct CheckpointOptions {
    pub criu: CriuOptions,
    pub parent_path: Option<PathBuf>,
    pub leave_running: bool,
    pub pre_dump: bool,
    pub page_server: Option<String>,
    pub status_fd: Option<i32>,
}

/// Options of `restore`.
#[derive(Debug, Clone)]
pub struct RestoreOptions<'a> {
    pub criu: CriuOptions,
    pub bundle: &'a Path,
    pub pid_file: Option<&'a Path>,
}

/// The CRIU binary: `$NUCLEUS_CRIU`, else `criu` from the usual directories.
fn criu_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("NUCLEUS_CRIU").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join("criu"))
        .find(|p| p.is_file());
    found.ok_or(EngineError::Criu {
        op: "find criu",
        detail: "`criu` is not installed (checkpoint and restore need it)".into(),
    })
}

/// `criu check`: whether CRIU can work on this kernel; its first error line if not.
fn check_criu(criu: &Path, op: &'static str) -> Result<()> {
    let out = Command::new(criu)
        .arg("check")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| EngineError::io("run", criu, e))?;
    if out.status.success() {
        return Ok(());
    }
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let first = text
        .lines()
        .find(|l| l.contains("Error"))
        .or_else(|| text.lines().next())
        .unwrap_or("no output")
        .trim()
        .to_string();
    Err(EngineError::Criu {
        op,
        detail: format!(
            "criu cannot checkpoint or restore on this kernel (`criu check` failed: {first})"
        ),
    })
}

fn common_args(cmd: &mut Command, o: &CriuOptions, work: &Path, log: &str) {
    cmd.arg("--images-dir")
        .arg(&o.image_path)
        .arg("--work-dir")
        .arg(work)
        .args(["--log-file", log, "-v4"]);
    for (on, flag) in [
        (o.tcp_established, "--tcp-established"),
        (o.ext_unix_sk, "--ext-unix-sk"),
        (o.shell_job, "--shell-job"),
        (o.file_locks, "--file-locks"),
        (o.auto_dedup, "--auto-dedup"),
        (o.lazy_pages, "--lazy-pages"),
    ] {
        if on {
            cmd.arg(flag);
        }
    }
    cmd.arg(format!(
        "--manage-cgroups={}",
        o.manage_cgroups_mode.as_deref().unwrap_or("soft")
    ));
}

/// Runs CRIU; on failure quotes the end of its log, as runc points at it.
fn run_criu(mut cmd: Command, op: &'static str, log: &Path) -> Result<()> {
    tracing::debug!(cmd = ?cmd, "running criu");
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .map_err(|e| EngineError::io("run criu for", log, e))?;
    if status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let last = text
        .lines()
        .rev()
        .find(|l| l.contains("Error"))
        .unwrap_or("")
        .trim();
    Err(EngineError::Criu {
        op,
        detail: format!(
            "criu exited with {status}; log file: {} {last}",
            log.display()
        ),
    })
}

fn work_dir(o: &CriuOptions) -> Result<PathBuf> {
    let work = o.work_path.clone().unwrap_or_else(|| o.image_path.clone());
    std::fs::create_dir_all(&work)
        .map_err(|e| EngineError::io("create criu work directory", &work, e))?;
    Ok(work)
}

/// Checkpoints container `id` into `opts.criu.image_path`. Unless the
/// container is left running (or only pre-dumped), it is deleted after a
/// successful dump, as runc does.
pub fn checkpoint(root: &StateRoot, id: &str, opts: &CheckpointOptions) -> Result<()> {
    let st = root.peek(id)?;
    let status = root.status_of(&st);
    if !matches!(status, Status::Running | Status::Paused) {
        return Err(EngineError::WrongStatus {
            id: id.to_string(),
            status: status.to_string(),
            op: "checkpoint a container that is not running",
        });
    }
    let criu = criu_binary()?;
    check_criu(&criu, "checkpoint")?;
    std::fs::create_dir_all(&opts.criu.image_path)
        .map_err(|e| EngineError::io("create image directory", &opts.criu.image_path, e))?;
    let work = work_dir(&opts.criu)?;
    let mut cmd = Command::new(&criu);
    cmd.arg(if opts.pre_dump { "pre-dump" } else { "dump" })
        .arg("--tree")
        .arg(st.pid.to_string())
        .arg("--root")
        .arg(&st.rootfs);
    common_args(&mut cmd, &opts.criu, &work, "dump.log");
    if opts.leave_running || opts.pre_dump {
        cmd.arg("--leave-running");
    }
    if let Some(parent) = &opts.parent_path {
        cmd.arg("--prev-images-dir").arg(parent).arg("--track-mem");
    }
    if let Some(server) = &opts.page_server {
        let (addr, port) = server
            .rsplit_once(':')
            .ok_or_else(|| EngineError::invalid("--page-server", server, "must be ADDRESS:PORT"))?;
        cmd.args(["--page-server", "--address", addr, "--port", port]);
    }
    if let Some(fd) = opts.status_fd {
        cmd.arg("--status-fd").arg(fd.to_string());
    }
    // Bind mounts come from the host: CRIU records them as external.
    for m in st.spec.mounts().iter().flatten() {
        if m.typ().as_deref() == Some("bind")
            || m.options()
                .iter()
                .flatten()
                .any(|o| o == "bind" || o == "rbind")
        {
            let dest = m.destination().display().to_string();
            cmd.arg("--ext-mount-map").arg(format!("{dest}:{dest}"));
        }
    }
    run_criu(cmd, "checkpoint", &work.join("dump.log"))?;
    if !opts.leave_running && !opts.pre_dump {
        super::delete(root, id, true)?;
    }
    Ok(())
}

/// Restores container `id` from `opts.criu.image_path` with the bundle's
/// spec; returns once the restored tree runs (always detached).
pub fn restore(root: &StateRoot, id: &str, opts: &RestoreOptions<'_>) -> Result<i32> {
    let criu = criu_binary()?;
    check_criu(&criu, "restore")?;
    let inventory = opts.criu.image_path.join("inventory.img");
    if !inventory.is_file() {
        return Err(EngineError::invalid(
            "--image-path",
            opts.criu.image_path.display().to_string(),
            "holds no criu images (no inventory.img)",
        ));
    }
    let p = prepare(root, id, opts.bundle)?;
    let work = work_dir(&opts.criu)?;
    let pid_path = work.join("restore.pid");
    let mut cmd = Command::new(&criu);
    cmd.arg("restore")
        .arg("--restore-detached")
        .arg("--pidfile")
        .arg(&pid_path)
        .arg("--root")
        .arg(&p.rootfs);
    common_args(&mut cmd, &opts.criu, &work, "restore.log");
    for ns in &opts.criu.empty_ns {
        cmd.arg("--empty-ns").arg(ns);
    }
    for m in p.spec.mounts().iter().flatten() {
        if let (Some(src), true) = (
            m.source(),
            m.typ().as_deref() == Some("bind")
                || m.options()
                    .iter()
                    .flatten()
                    .any(|o| o == "bind" || o == "rbind"),
        ) {
            cmd.arg("--ext-mount-map").arg(format!(
                "{}:{}",
                m.destination().display(),
                src.display()
            ));
        }
    }
    if let Some(dir) = p
        .reservation
        .cgroup
        .as_ref()
        .and_then(|cg| cg.dirs().next())
    {
        let rel = dir.path.strip_prefix(&dir.mountpoint).unwrap_or(&dir.path);
        cmd.arg("--cgroup-root").arg(Path::new("/").join(rel));
    }
    run_criu(cmd, "restore", &work.join("restore.log"))?;
    let text = std::fs::read_to_string(&pid_path)
        .map_err(|e| EngineError::io("read criu pid file", &pid_path, e))?;
    let pid: i32 = text
        .trim()
        .parse()
        .map_err(|_| EngineError::invalid("criu pid file", text.trim(), "not a pid"))?;
    let start = crate::state::proc_start_time(pid)
        .map(|(t, _)| t)
        .unwrap_or(0);
    let state = ContainerState {
        id: id.to_string(),
        pid,
        pid_start_time: start,
        bundle: p.bundle.clone(),
        rootfs: p.rootfs.clone(),
        created: crate::timefmt::rfc3339(std::time::SystemTime::now()),
        annotations: p.spec.annotations().clone().unwrap_or_default(),
        cgroup: p.reservation.cgroup.clone(),
        spec: p.spec.clone(),
    };
    if let Some(dir) = p.reservation.dir.as_ref() {
        dir.save(&state)?;
    }
    if let Some(path) = opts.pid_file {
        write_pid_file(path, pid)?;
    }
    p.reservation.disarm();
    Ok(0)
}
