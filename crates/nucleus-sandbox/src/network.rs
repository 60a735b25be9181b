//! The network attachment step: run for every sandbox start, in the process
//! that starts the container (the CLI in the foreground, the monitor when
//! detached), after the container's namespaces exist and before its
//! workload runs. Bridges and egress policy plug in here; today every
//! network mode is set up by the namespaces alone, so [`NoNetwork`] does
//! nothing.

use crate::error::SandboxError;
use std::path::{Path, PathBuf};

/// What an attachment step is told about the container.
#[derive(Debug, Clone, Copy)]
pub struct AttachContext<'a> {
    pub id: &'a str,
    /// The init's host pid.
    pub pid: i32,
    /// The bundle (its `config.json` holds the spec and annotations).
    pub bundle: &'a Path,
}

impl AttachContext<'_> {
    /// `/proc/PID/ns/net`: the container's network namespace.
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.pid))
    }
}

/// Connects a container's network namespace to the outside.
pub trait NetworkAttach: std::fmt::Debug {
    /// An error aborts the start: the container is killed and removed.
    fn attach(&mut self, ctx: &AttachContext<'_>) -> Result<(), SandboxError>;
}

/// Loopback only (or the host's network): nothing to attach.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoNetwork;

impl NetworkAttach for NoNetwork {
    fn attach(&mut self, _ctx: &AttachContext<'_>) -> Result<(), SandboxError> {
        Ok(())
    }
}

/// Adapts a `NetworkAttach` to the engine's attach step.
#[derive(Debug)]
pub(crate) struct EngineStep<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    pub step: &'a mut dyn NetworkAttach,
}

impl nucleus_engine::attach::Attach for EngineStep<'_> {
    fn attach(&mut self, pid: i32) -> Result<(), nucleus_engine::attach::AttachError> {
        let ctx = AttachContext {
            id: self.id,
            pid,
            bundle: self.bundle,
        };
        self.step
            .attach(&ctx)
            .map_err(|e| Box::new(e) as nucleus_engine::attach::AttachError)
    }
}
