//! Process restrictions applied at the end of the child's setup.
pub mod seccomp;
