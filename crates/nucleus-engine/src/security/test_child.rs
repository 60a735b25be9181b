//! Test harness shared by the seccomp and Landlock unit tests: run a shell
//! script in a forked child after restricting it.

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{execv, fork, ForkResult};
use std::ffi::CString;

/// Forks; the child runs `restrict` and, if it returns 0, execs
/// `/bin/sh -c script`. A non-zero code from `restrict` (120-121 by
/// convention) or 122 (exec failed) means the harness failed in the child.
pub(crate) fn sh_after(restrict: impl FnOnce() -> i32, script: &str) -> WaitStatus {
    let sh = CString::new("/bin/sh").expect("cstr");
    let argv = [
        sh.clone(),
        CString::new("-c").expect("cstr"),
        CString::new(script).expect("cstr"),
    ];
    // SAFETY: the child is single-threaded after fork; it runs `restrict`
    // (raw syscalls, and glibc malloc, which is fork-safe; no other lock is
    // shared with the harness threads), then execs or `_exit`s, never
    // returning into the harness.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let mut code = restrict();
            if code == 0 {
                let _ = execv(&sh, &argv);
                code = 122;
            }
            // SAFETY: _exit ends the child at once, running no atexit
            // handler or destructor that could touch harness state.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => waitpid(child, None).expect("waitpid"),
    }
}

/// Asserts the child exited with `code` (a non-zero code names the failed check).
pub(crate) fn assert_exit(status: WaitStatus, code: i32) {
    assert!(
        matches!(status, WaitStatus::Exited(_, c) if c == code),
        "child: {status:?} (wanted exit {code}; the code names the failed check)"
    );
}
