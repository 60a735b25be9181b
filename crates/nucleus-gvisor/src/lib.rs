//! gVisor backend: runs an OCI spec under `runsc`, so the workload talks to
//! gVisor's application kernel instead of the host's. This crate probes
//! runsc ([`probe`]), translates the spec for it ([`translate`]), and builds
//! runsc's command lines ([`runsc`]); the engine owns the lifecycle and the
//! state, and knows when to call here. Nothing here knows any command line.
#![forbid(unsafe_code)]

pub mod error;
pub mod probe;
pub mod record;
pub mod runsc;
pub mod translate;

pub use error::GvisorError;
pub use probe::Probe;
pub use record::Record;
pub use runsc::{Network, Runsc};
pub use translate::{translate, Enforcement, Translated};

/// Annotation selecting the backend: `native` (default) or `gvisor`.
pub const RUNTIME_ANNOTATION: &str = "org.nucleus.runtime";
/// Annotation naming the gVisor platform (`systrap`, `ptrace`, `kvm`).
pub const PLATFORM_ANNOTATION: &str = "org.nucleus.gvisor.platform";
/// Annotation naming the runsc binary.
pub const RUNSC_ANNOTATION: &str = "org.nucleus.gvisor.runsc";
