//! Fault injection for the crash-safety tests, in debug builds only: with
//! `NUCLEUS_FAULT=<step>` the runtime SIGKILLs itself when it reaches that
//! step, as a `kill -9` at that moment would. Release builds compile every
//! point to nothing and ignore the variable.

use std::time::Duration;

/// Every named step, in the order a create, start, run or delete reaches them.
pub const STEPS: &[&str] = &[
    "create-reserved",
    "cgroup-file-temp",
    "create-cgroup-recorded",
    "create-cgroup-made",
    "launch-fifo-made",
    "launch-cloned",
    "launch-maps-written",
    "launch-go-sent",
    "state-file-temp",
    "launch-state-saved",
    "launch-ready",
    "create-pid-file",
    "start-locked",
    "start-after-fifo",
    "start-fifo-removed",
    "run-started",
    "run-exited",
    "delete-locked",
    "delete-killed",
    "delete-cgroup-removed",
    "delete-hooks-done",
    "delete-state-removed",
];

/// How long a verb waits for a container's lock before it gives up.
const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// Dies by SIGKILL here if `NUCLEUS_FAULT` names `step`.
#[cfg(debug_assertions)]
pub(crate) fn point(step: &'static str) {
    debug_assert!(
        STEPS.contains(&step),
        "fault step `{step}` is not in fault::STEPS"
    );
    if std::env::var_os("NUCLEUS_FAULT").is_some_and(|v| v == step) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub(crate) fn point(_step: &'static str) {}

/// The lock wait bound; debug builds take `NUCLEUS_LOCK_TIMEOUT_MS` so the
/// tests need not wait the full bound.
pub(crate) fn lock_timeout() -> Duration {
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("NUCLEUS_LOCK_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return Duration::from_millis(ms);
    }
    LOCK_TIMEOUT
}
