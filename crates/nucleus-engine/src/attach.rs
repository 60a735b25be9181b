//! A front end's own step in the start path: run in the runtime process
//! after the container's namespaces exist (the init is cloned, its id maps
//! and cgroups are written) and before the workload can run, ahead of the
//! `prestart`/`createRuntime` hooks. Networking plugs in here (moving a veth
//! into `/proc/PID/ns/net`). The engine only calls it; what it does is the
//! front end's business.

use std::fmt::Debug;
use std::path::Path;

/// The error an attach step returns; the engine wraps it in
/// [`crate::EngineError::Attach`].
pub type AttachError = Box<dyn std::error::Error + Send + Sync>;

/// Called once per container start, with the init's host pid.
pub trait Attach: Debug {
    /// Attaches the container whose init is `pid`. An error aborts the start:
    /// the init is killed and the container's state removed.
    fn attach(&mut self, pid: i32) -> Result<(), AttachError>;

    /// Called just before the clone, where the runtime must be
    /// single-threaded: a step that started work on threads of its own
    /// joins them here (keeping any error for `attach`).
    fn before_clone(&mut self) {}

    /// Called by a foreground run once the container's init has exited,
    /// before the container is deleted: a step may start its teardown
    /// here, to overlap the delete.
    fn exited(&mut self) {}

    /// Whether a backend without a process before the workload (gVisor)
    /// must make the network namespace ahead and call [`Attach::attach_netns`];
    /// otherwise such a backend does not call the step.
    fn wants_netns(&self) -> bool {
        false
    }

    /// Attaches a network namespace made before the container's process
    /// (the gVisor backend's: runsc hands the namespace's interfaces to its
    /// netstack as the sandbox starts). `owner` is a process that lives as
    /// long as the container. Steps that need the container's pid refuse.
    fn attach_netns(&mut self, netns: &Path, owner: i32) -> Result<(), AttachError> {
        let _ = owner;
        Err(format!(
            "this attach step needs the container's process, not the namespace {}",
            netns.display()
        )
        .into())
    }
}
