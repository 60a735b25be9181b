//! Starting the container's init process: the parent side (`parent`), the
//! child side (`child`) and the socket between them (`sync`).

pub(crate) mod cgroup_join;
pub(crate) mod child;
pub(crate) mod exec;
pub mod exec_server;
pub(crate) mod idmap;
pub(crate) mod parent;
pub(crate) mod sync;
pub(crate) mod timens;

pub(crate) use child::{FIFO_ERROR, FIFO_GO};
pub(crate) use parent::{launch, LaunchMode, LaunchRequest};

/// A failed step in the child, reported to the parent as one frame.
#[derive(Debug)]
pub(crate) struct StepError {
    pub step: &'static str,
    pub detail: String,
    pub errno: nix::errno::Errno,
}

impl StepError {
    pub(crate) fn new(
        step: &'static str,
        detail: impl Into<String>,
        errno: nix::errno::Errno,
    ) -> Self {
        StepError {
            step,
            detail: detail.into(),
            errno,
        }
    }
}

/// `result.step("mounts", || format!(...))` attaches the step and context.
pub(crate) trait StepContext<T> {
    fn step(self, step: &'static str, detail: impl FnOnce() -> String) -> Result<T, StepError>;
}

impl<T> StepContext<T> for Result<T, nix::errno::Errno> {
    fn step(self, step: &'static str, detail: impl FnOnce() -> String) -> Result<T, StepError> {
        self.map_err(|errno| StepError::new(step, detail(), errno))
    }
}

impl<T> StepContext<T> for Result<T, std::io::Error> {
    fn step(self, step: &'static str, detail: impl FnOnce() -> String) -> Result<T, StepError> {
        self.map_err(|e| {
            StepError::new(
                step,
                detail(),
                nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            )
        })
    }
}
