//! Side tasks the monitor of a detached sandbox runs next to the container
//! (later: a DNS resolver, health checks, denial collection). The monitor
//! is one thread with one poll loop, so a task is event driven: it offers
//! an fd to poll and a deadline, and is woken when either fires. Each task
//! is started once the workload runs and stopped as soon as the container
//! has exited, before the exit is recorded.

use crate::error::Result;
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::time::Instant;

/// What a side task is told about its container.
#[derive(Debug, Clone, Copy)]
pub struct TaskContext<'a> {
    pub id: &'a str,
    /// The init's host pid (alive from `start` until `stop`).
    pub pid: i32,
    pub bundle: &'a Path,
}

/// One side task of a monitored container.
pub trait SideTask: std::fmt::Debug {
    fn name(&self) -> &str;
    /// The container's workload runs. An error kills the container: a task
    /// the sandbox depends on (a resolver enforcing egress) fails closed.
    fn start(&mut self, ctx: &TaskContext<'_>) -> Result<()>;
    /// An fd the monitor polls for readability, once started.
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
    /// When the task next wants to be woken.
    fn deadline(&self) -> Option<Instant> {
        None
    }
    /// Its fd is readable or its deadline has passed. An error stops the task.
    fn wake(&mut self, _ctx: &TaskContext<'_>) -> Result<()> {
        Ok(())
    }
    /// The container has exited with `exit_code`; release everything.
    fn stop(&mut self, ctx: &TaskContext<'_>, exit_code: i32);
}

/// Chooses the side tasks of a sandbox (the binary that serves as monitor passes it).
pub trait SideTasks: std::fmt::Debug {
    fn for_sandbox(&self, ctx: &TaskContext<'_>) -> Vec<Box<dyn SideTask>>;
}

/// No side tasks.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoSideTasks;

impl SideTasks for NoSideTasks {
    fn for_sandbox(&self, _ctx: &TaskContext<'_>) -> Vec<Box<dyn SideTask>> {
        Vec::new()
    }
}
