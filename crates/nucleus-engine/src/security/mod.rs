//! Process restrictions applied at the end of the child's setup, and the
//! policy files that describe them.
pub mod agent_profile;
pub mod caps_policy;
pub mod landlock;
pub mod pinning;
pub mod policy_error;
pub mod seccomp;
pub mod seccomp_cache;
#[cfg(test)]
#[allow(unsafe_code)]
mod test_child;

pub use policy_error::PolicyError;
