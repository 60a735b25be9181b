//! The nucleus engine: takes an OCI runtime spec, a bundle and a state
//! directory, and turns them into an isolated process. It knows nothing of
//! any command line; front ends translate their input into a spec and call
//! the functions in [`lifecycle`].
//!
//! The start path is single-threaded by design: between clone and execve the
//! child may then use the ordinary Rust runtime without the fork-safety
//! hazards of a threaded parent. `launch` refuses to run in a process with
//! more than one thread.
//!
//! `unsafe` is confined to `launch` (the clone call, the child's `_exit`,
//! and adopting fds received over SCM_RIGHTS); everything else uses
//! `nucleus-sys` and `nix`.

pub mod attach;
pub mod backend;
pub mod devices;
pub mod error;
pub mod fault;
pub mod features;
pub mod hooks;
mod launch;
pub mod lifecycle;
mod mount_options;
mod namespaces;
mod old_root;
mod process;
mod rootfs;
pub mod rootless;
mod safe_path;
mod sched;
pub mod security;
pub mod signal;
pub mod spec;
pub mod state;
pub mod template;
pub mod timefmt;
mod tty;
pub mod userns;

pub use error::EngineError;
pub use nucleus_cgroups as cgroups;
pub use oci_spec;
