//! The network attachment step: run for every sandbox start, in the process
//! that starts the container (the CLI in the foreground, the monitor when
//! detached), after the container's namespaces exist and before its
//! workload runs. Bridges and egress policy (`net_attach`) and pasta
//! (`user_net`) plug in here; [`NoNetwork`] is for modes the namespaces
//! alone set up.

use crate::error::SandboxError;
use std::path::{Path, PathBuf};

/// What an attachment step is told about the container.
#[derive(Debug, Clone, Copy)]
pub struct AttachContext<'a> {
    pub id: &'a str,
    /// The init's host pid; with `netns` set, a process that lives exactly
    /// as long as the container.
    pub pid: i32,
    /// The bundle (its `config.json` holds the spec and annotations).
    pub bundle: &'a Path,
    /// A network namespace made ahead of the container (gVisor), when the
    /// container's is not `/proc/PID/ns/net`.
    pub netns: Option<&'a Path>,
}

impl AttachContext<'_> {
    /// The container's network namespace: `netns`, else `/proc/PID/ns/net`.
    pub fn netns_path(&self) -> PathBuf {
        match self.netns {
            Some(p) => p.to_path_buf(),
            None => PathBuf::from(format!("/proc/{}/ns/net", self.pid)),
        }
    }
}

/// Connects a container's network namespace to the outside.
pub trait NetworkAttach: std::fmt::Debug {
    /// An error aborts the start: the container is killed and removed.
    fn attach(&mut self, ctx: &AttachContext<'_>) -> Result<(), SandboxError>;

    /// Called just before the clone: join any thread the step started
    /// (the runtime must then be single-threaded).
    fn before_clone(&mut self) {}

    /// Called by a foreground run once the init has exited, before the
    /// container is deleted: the step may start its teardown.
    fn exited(&mut self) {}

    /// Whether the step adds links to the container's network namespace, so
    /// that a backend without a process before the workload (gVisor) must
    /// make the namespace ahead and attach it with [`AttachContext::netns`].
    fn configures_netns(&self) -> bool {
        false
    }
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
            netns: None,
        };
        self.step
            .attach(&ctx)
            .map_err(|e| Box::new(e) as nucleus_engine::attach::AttachError)
    }

    fn before_clone(&mut self) {
        self.step.before_clone();
    }

    fn exited(&mut self) {
        self.step.exited();
    }

    fn wants_netns(&self) -> bool {
        self.step.configures_netns()
    }

    fn attach_netns(
        &mut self,
        netns: &Path,
        owner: i32,
    ) -> Result<(), nucleus_engine::attach::AttachError> {
        let ctx = AttachContext {
            id: self.id,
            pid: owner,
            bundle: self.bundle,
            netns: Some(netns),
        };
        self.step
            .attach(&ctx)
            .map_err(|e| Box::new(e) as nucleus_engine::attach::AttachError)
    }
}
