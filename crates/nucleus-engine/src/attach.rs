//! A front end's own step in the start path: run in the runtime process
//! after the container's namespaces exist (the init is cloned, its id maps
//! and cgroups are written) and before the workload can run, ahead of the
//! `prestart`/`createRuntime` hooks. Networking plugs in here (moving a veth
//! into `/proc/PID/ns/net`). The engine only calls it; what it does is the
//! front end's business.

use std::fmt::Debug;

/// The error an attach step returns; the engine wraps it in
/// [`crate::EngineError::Attach`].
pub type AttachError = Box<dyn std::error::Error + Send + Sync>;

/// Called once per container start, with the init's host pid.
pub trait Attach: Debug {
    /// Attaches the container whose init is `pid`. An error aborts the start:
    /// the init is killed and the container's state removed.
    fn attach(&mut self, pid: i32) -> Result<(), AttachError>;
}
