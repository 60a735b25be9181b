//! The monitor's loop: relays the container's output into the log, runs
//! its side tasks, enforces the timeout, then records the exit.

use super::{ExitRecord, MonitorArgs, Started};
use crate::clock;
use crate::error::{render_chain, Result, SandboxError};
use crate::logs::{LineSplitter, LogWriter, MAX_LOG_BYTES};
use crate::side_task::{SideTask, SideTasks, TaskContext};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nucleus_engine::lifecycle;
use nucleus_engine::state::StateRoot;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::time::{Duration, Instant, SystemTime};

/// How long to keep reading output after the init has exited.
const DRAIN: Duration = Duration::from_millis(500);

/// Kills the container (its timeout passed, or a side task failed to start).
fn kill_container(root: &StateRoot, id: &str, why: &str) {
    tracing::warn!(id, "{why}: killing the container");
    if let Err(e) = lifecycle::kill(root, id, libc::SIGKILL, true) {
        tracing::warn!(id, error = %e, "cannot kill the container");
    }
}

/// Starts each side task; one that fails kills the container.
fn start_tasks(
    root: &StateRoot,
    ctx: &TaskContext<'_>,
    tasks: &dyn SideTasks,
) -> Vec<Box<dyn SideTask>> {
    let mut running = Vec::new();
    for mut t in tasks.for_sandbox(ctx) {
        match t.start(ctx) {
            Ok(()) => running.push(t),
            Err(e) => {
                tracing::error!(id = ctx.id, task = t.name(), error = %render_chain(&e), "side task failed to start");
                kill_container(root, ctx.id, "a side task failed");
            }
        }
    }
    running
}

/// Which fd a poll slot belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Pipe(usize),
    Init,
    Task(usize),
    /// The exec server the monitor forked.
    Server,
}

pub(super) fn supervise(
    root: &StateRoot,
    a: &MonitorArgs,
    s: Started,
    task_set: &dyn SideTasks,
    server: Option<nix::unistd::Pid>,
) -> Result<i32> {
    // The exec server is our child: reaped as soon as it ends (with the
    // init, normally), so it never lingers as a zombie.
    let mut server = server.and_then(|pid| {
        let fd = nucleus_sys::pidfd::pidfd_open(pid).ok()?;
        Some((pid, fd))
    });
    let pidfd =
        nucleus_sys::pidfd::pidfd_open(s.spawned.pid).map_err(|source| SandboxError::Sys {
            op: "pidfd_open the container init",
            source,
        })?;
    let deadline = a.timeout.map(|t| Instant::now() + t);
    let mut log = LogWriter::open(&a.bundle, MAX_LOG_BYTES)?;
    let mut splitters = [LineSplitter::new("stdout"), LineSplitter::new("stderr")];
    let mut pipes = [Some(File::from(s.stdout)), Some(File::from(s.stderr))];
    let mut buf = [0u8; 8192];
    let ctx = TaskContext {
        id: &a.id,
        pid: s.spawned.pid.as_raw(),
        bundle: &a.bundle,
    };
    let mut tasks = start_tasks(root, &ctx, task_set);
    // The spec, plans and parse trees of setup are freed: give the pages back.
    nucleus_sys::mem::release_free_heap();
    let mut exit: Option<i32> = None;
    let mut drain_until = None;
    let mut timed_out = false;
    loop {
        let now = Instant::now();
        if exit.is_none() && !timed_out && deadline.is_some_and(|d| now >= d) {
            kill_container(root, &a.id, "timeout reached");
            timed_out = true;
        }
        if exit.is_some()
            && (pipes.iter().all(Option::is_none) || drain_until.is_some_and(|d| now >= d))
        {
            break;
        }
        let task_wake = tasks.iter().filter_map(|t| t.deadline()).min();
        let wake = [
            if exit.is_none() && !timed_out {
                deadline
            } else {
                None
            },
            drain_until,
            task_wake,
        ]
        .into_iter()
        .flatten()
        .min();
        let timeout = match wake {
            Some(w) => {
                PollTimeout::try_from(w.saturating_duration_since(now)).unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(4 + tasks.len());
        let mut which = Vec::with_capacity(4 + tasks.len());
        for (i, p) in pipes.iter().enumerate() {
            if let Some(f) = p {
                fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
                which.push(Slot::Pipe(i));
            }
        }
        if exit.is_none() {
            fds.push(PollFd::new(pidfd.as_fd(), PollFlags::POLLIN));
            which.push(Slot::Init);
        }
        for (i, t) in tasks.iter().enumerate() {
            if let Some(fd) = t.fd() {
                fds.push(PollFd::new(fd, PollFlags::POLLIN));
                which.push(Slot::Task(i));
            }
        }
        if let Some((_, fd)) = &server {
            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            which.push(Slot::Server);
        }
        match poll(&mut fds, timeout) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(source) => return Err(SandboxError::Sys { op: "poll", source }),
            Ok(_) => {}
        }
        let mut ready: Vec<Slot> = fds
            .iter()
            .zip(&which)
            .filter(|(f, _)| f.revents().is_some_and(|r| !r.is_empty()))
            .map(|(_, w)| *w)
            .collect();
        drop(fds);
        let now = Instant::now();
        for (i, t) in tasks.iter().enumerate() {
            if t.deadline().is_some_and(|d| now >= d) && !ready.contains(&Slot::Task(i)) {
                ready.push(Slot::Task(i));
            }
        }
        let mut failed = Vec::new();
        for w in ready {
            match w {
                Slot::Init => {
                    if let Some(code) = s.spawned.reap().map_err(SandboxError::engine("reap"))? {
                        exit = Some(code);
                        drain_until = Some(Instant::now() + DRAIN);
                        // Stopped as soon as the container is gone, before the exit is recorded.
                        for mut t in tasks.drain(..) {
                            t.stop(&ctx, code);
                        }
                    }
                }
                Slot::Server => {
                    if let Some((pid, _)) = server.take() {
                        let _ = nix::sys::wait::waitpid(pid, None);
                    }
                }
                Slot::Task(i) => {
                    if let Some(t) = tasks.get_mut(i) {
                        if let Err(e) = t.wake(&ctx) {
                            tracing::warn!(id = a.id, task = t.name(), error = %render_chain(&e), "side task failed; stopping it");
                            failed.push(i);
                        }
                    }
                }
                Slot::Pipe(i) => {
                    let Some(f) = pipes[i].as_mut() else { continue };
                    match f.read(&mut buf) {
                        Ok(0) | Err(_) => {
                            pipes[i] = None;
                            splitters[i].flush(&mut log)?;
                        }
                        Ok(n) => splitters[i].feed(&buf[..n], &mut log)?,
                    }
                }
            }
        }
        for i in failed.into_iter().rev() {
            if i < tasks.len() {
                let mut t = tasks.remove(i);
                t.stop(&ctx, -1);
            }
        }
    }
    for sp in splitters.iter_mut() {
        sp.flush(&mut log)?;
    }
    if let Some((pid, _)) = server.take() {
        // It saw the init go too; if it has not ended yet, init(1) reaps it.
        let _ = nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
    }
    let code = exit.ok_or(SandboxError::NoExitStatus)?;
    let record = ExitRecord {
        exit_code: code,
        finished_at: clock::rfc3339(SystemTime::now()),
        timed_out,
    };
    if let Err(e) = record.write(&a.bundle) {
        // `rm -f` may have removed the bundle already.
        tracing::debug!(error = %e, "exit record not written");
    }
    if !root.container_dir(&a.id).exists() {
        // Deleted behind our back (`delete --force`) while we were writing: our
        // last files may have kept its bundle from being removed.
        let _ = std::fs::remove_dir_all(&a.bundle);
    }
    if a.rm {
        super::ExitRecord::wait_for_readers(&a.bundle);
        match lifecycle::delete(root, &a.id, true) {
            Ok(()) | Err(nucleus_engine::EngineError::NotFound { .. }) => {}
            Err(e) => {
                tracing::warn!(id = a.id, error = %e, "cannot remove the container after it exited")
            }
        }
    }
    Ok(0)
}
