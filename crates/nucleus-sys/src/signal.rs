//! Signal state that must not leak from the runtime into the workload.

use nix::errno::Errno;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};

/// Restores default dispositions for every catchable signal and unblocks
/// all signals. execve keeps ignored signals ignored and the blocked mask
/// as is, so without this the workload would inherit, for example, Rust's
/// ignored SIGPIPE.
///
/// `sigaction(sig, {SIG_DFL}, NULL)` for each signal, then
/// `sigprocmask(SIG_SETMASK, {}, NULL)`.
pub fn reset_signals() -> Result<(), Errno> {
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in Signal::iterator() {
        if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: installing SIG_DFL runs no handler code, so no handler can
        // observe inconsistent state; the previous action is discarded.
        unsafe { sigaction(sig, &dfl) }?;
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
}
