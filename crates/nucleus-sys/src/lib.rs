//! Thin, rustix-style wrappers for the syscalls nucleus needs that `nix`
//! does not offer. This is the only crate in the workspace with `unsafe`;
//! every wrapper documents the C call it makes and the invariants it relies on.
//! No policy lives here.

pub mod clone;
pub mod command;
pub mod fd;
pub mod mem;
pub mod mount;
pub mod net;
pub mod pidfd;
pub mod sched;
pub mod seccomp;
pub mod signal;
pub mod tty;
pub mod uts;

pub use nix::errno::Errno;
