//! The default seccomp profile of agent mode, as an OCI `LinuxSeccomp`:
//! an allow list big enough for shells, coreutils, compilers, git and
//! interpreters, with everything else refused with `EPERM`. Compiling and
//! loading it belongs to [`super::seccomp`].
//!
//! Refused because they reach kernel surface a sandboxed agent has no use
//! for: mounts and the new mount API, namespaces (`unshare`, `setns`, and
//! `clone` with `CLONE_NEW*`), `bpf`, `perf_event_open`, `ptrace` and
//! cross-process memory access, keyrings, kexec, modules, `reboot`, swap,
//! `userfaultfd`, file handles, clock setting, `syslog`, port I/O,
//! `io_uring` (its operations bypass seccomp), `personality` other than the
//! usual values, and `TIOCSTI`/`TIOCLINUX` (typing into a terminal).
//!
//! Only x86_64. The compiler resolves names against the native table, so an
//! i386 list (`socketcall`, `mmap2`, `*_time64`, ...) cannot be expressed
//! here. x32 is left out too: most kernels ship it disabled, and its
//! section nearly doubled the program (870 to 495 instructions), which the
//! kernel JIT-compiles on every start. i386 and x32 syscalls hit
//! libseccomp's bad-arch action (kill).

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};

/// Syscalls allowed without conditions, grouped by purpose.
const ALLOWED: &[&str] = &[
    // Files and directories.
    "read",
    "write",
    "open",
    "openat",
    "openat2",
    "close",
    "close_range",
    "creat",
    "lseek",
    "pread64",
    "pwrite64",
    "readv",
    "writev",
    "preadv",
    "pwritev",
    "preadv2",
    "pwritev2",
    "stat",
    "fstat",
    "lstat",
    "newfstatat",
    "statx",
    "statfs",
    "fstatfs",
    "access",
    "faccessat",
    "faccessat2",
    "getdents",
    "getdents64",
    "getcwd",
    "chdir",
    "fchdir",
    "rename",
    "renameat",
    "renameat2",
    "mkdir",
    "mkdirat",
    "rmdir",
    "link",
    "linkat",
    "unlink",
    "unlinkat",
    "symlink",
    "symlinkat",
    "readlink",
    "readlinkat",
    "chmod",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "chown",
    "fchown",
    "lchown",
    "fchownat",
    "umask",
    "truncate",
    "ftruncate",
    "fallocate",
    "fsync",
    "fdatasync",
    "sync",
    "syncfs",
    "sync_file_range",
    "flock",
    "fcntl",
    "dup",
    "dup2",
    "dup3",
    "utime",
    "utimes",
    "utimensat",
    "futimesat",
    "mknod",
    "mknodat",
    "readahead",
    "fadvise64",
    "sendfile",
    "splice",
    "tee",
    "vmsplice",
    "copy_file_range",
    "cachestat",
    "setxattr",
    "lsetxattr",
    "fsetxattr",
    "getxattr",
    "lgetxattr",
    "fgetxattr",
    "listxattr",
    "llistxattr",
    "flistxattr",
    "removexattr",
    "lremovexattr",
    "fremovexattr",
    "setxattrat",
    "getxattrat",
    "listxattrat",
    "removexattrat",
    "file_getattr",
    "file_setattr",
    "inotify_init",
    "inotify_init1",
    "inotify_add_watch",
    "inotify_rm_watch",
    "memfd_create",
    // Memory.
    "brk",
    "mmap",
    "munmap",
    "mremap",
    "mprotect",
    "msync",
    "mincore",
    "madvise",
    "mlock",
    "mlock2",
    "munlock",
    "mlockall",
    "munlockall",
    "remap_file_pages",
    "membarrier",
    "pkey_mprotect",
    "pkey_alloc",
    "pkey_free",
    "mbind",
    "set_mempolicy",
    "get_mempolicy",
    "set_mempolicy_home_node",
    "migrate_pages",
    "move_pages",
    "memfd_secret",
    "mseal",
    "map_shadow_stack",
    "process_madvise",
    "process_mrelease",
    // Processes and threads (clone has its own rule below).
    "fork",
    "vfork",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "wait4",
    "waitid",
    "kill",
    "tkill",
    "tgkill",
    "getpid",
    "getppid",
    "gettid",
    "getpgid",
    "setpgid",
    "getpgrp",
    "getsid",
    "setsid",
    "set_tid_address",
    "set_robust_list",
    "get_robust_list",
    "rseq",
    "futex",
    "futex_waitv",
    "futex_wake",
    "futex_wait",
    "futex_requeue",
    "arch_prctl",
    "prctl",
    "set_thread_area",
    "get_thread_area",
    "sched_yield",
    "sched_setaffinity",
    "sched_getaffinity",
    "sched_setparam",
    "sched_getparam",
    "sched_setscheduler",
    "sched_getscheduler",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_rr_get_interval",
    "sched_setattr",
    "sched_getattr",
    "getpriority",
    "setpriority",
    "ioprio_get",
    "ioprio_set",
    "getrlimit",
    "setrlimit",
    "prlimit64",
    "getrusage",
    "times",
    "sysinfo",
    "uname",
    "getcpu",
    "pidfd_open",
    "pidfd_send_signal",
    "restart_syscall",
    // Credentials: changes stay within what the process already holds.
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "getresuid",
    "getresgid",
    "getgroups",
    "setuid",
    "setgid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "setgroups",
    "setfsuid",
    "setfsgid",
    "capget",
    "capset",
    // Signals and time.
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "rt_sigpending",
    "rt_sigtimedwait",
    "rt_sigqueueinfo",
    "rt_tgsigqueueinfo",
    "rt_sigsuspend",
    "sigaltstack",
    "pause",
    "alarm",
    "nanosleep",
    "clock_nanosleep",
    "clock_gettime",
    "clock_getres",
    "gettimeofday",
    "time",
    "getitimer",
    "setitimer",
    "timer_create",
    "timer_settime",
    "timer_gettime",
    "timer_getoverrun",
    "timer_delete",
    "timerfd_create",
    "timerfd_settime",
    "timerfd_gettime",
    "signalfd",
    "signalfd4",
    "eventfd",
    "eventfd2",
    // Polling and pipes.
    "pipe",
    "pipe2",
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    // Sockets (the network namespace limits where they lead).
    "socket",
    "socketpair",
    "connect",
    "accept",
    "accept4",
    "bind",
    "listen",
    "shutdown",
    "getsockname",
    "getpeername",
    "setsockopt",
    "getsockopt",
    "sendto",
    "recvfrom",
    "sendmsg",
    "recvmsg",
    "sendmmsg",
    "recvmmsg",
    // System V and POSIX IPC (the IPC namespace isolates them).
    "shmget",
    "shmat",
    "shmdt",
    "shmctl",
    "semget",
    "semop",
    "semtimedop",
    "semctl",
    "msgget",
    "msgsnd",
    "msgrcv",
    "msgctl",
    "mq_open",
    "mq_unlink",
    "mq_timedsend",
    "mq_timedreceive",
    "mq_notify",
    "mq_getsetattr",
    // Asynchronous I/O (not io_uring).
    "io_setup",
    "io_destroy",
    "io_submit",
    "io_cancel",
    "io_getevents",
    "io_pgetevents",
    // Self-sandboxing only narrows what the process may do.
    "seccomp",
    "landlock_create_ruleset",
    "landlock_add_rule",
    "landlock_restrict_self",
    "getrandom",
];

/// `CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC |
/// CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET`. `CLONE_NEWTIME` (0x80)
/// is not here: in `clone`'s flags that bit is part of the exit signal.
const CLONE_NAMESPACES: u64 = 0x7e02_0000;

/// `personality(2)` values programs use: PER_LINUX, PER_LINUX32,
/// PER_LINUX | UNAME26 (old software checking the kernel version), and
/// 0xffffffff, which only queries the current persona.
const PERSONALITIES: [u64; 4] = [0x0, 0x8, 0x0002_0008, 0xffff_ffff];

/// ioctl requests refused: TIOCSTI (push bytes into a terminal's input)
/// and TIOCLINUX (console selection and other console tricks).
const REFUSED_IOCTLS: [u64; 2] = [0x5412, 0x541c];

/// The ioctl request is an `unsigned int`: only its low 32 bits count, so
/// setting high bits must not slip past the rule.
const IOCTL_REQUEST_BITS: u64 = 0xffff_ffff;

/// `(mask, datum)` tests, `(x & mask) == datum`, whose union matches exactly
/// the x whose low 32 bits are neither of `refused`.
///
/// On a bit where both refused values agree, differing from them excludes
/// both: one single-bit test each. What is left agrees with them on all of
/// those bits; those few values are listed whole, minus the refused two.
fn masks_excluding(refused: [u64; 2]) -> Vec<(u64, u64)> {
    let [a, b] = refused.map(|v| v & IOCTL_REQUEST_BITS);
    let differ = a ^ b;
    let agree = !differ & IOCTL_REQUEST_BITS;
    let mut tests: Vec<(u64, u64)> = (0..32)
        .map(|i| 1_u64 << i)
        .filter(|bit| agree & bit != 0)
        .map(|bit| (bit, !a & bit))
        .collect();
    // Every combination of the differing bits (a subset walk of `differ`).
    let mut sub = 0_u64;
    loop {
        let value = (a & agree) | sub;
        if value != a && value != b {
            tests.push((IOCTL_REQUEST_BITS, value));
        }
        if sub == differ {
            break;
        }
        sub = (sub.wrapping_sub(differ)) & differ;
    }
    tests
}

fn syscall(names: &[&str], action: LinuxSeccompAction, errno: Option<u32>) -> LinuxSyscall {
    let mut rule = LinuxSyscall::default();
    rule.set_names(names.iter().map(|n| (*n).to_owned()).collect());
    rule.set_action(action);
    rule.set_errno_ret(errno);
    rule
}

fn arg(
    index: usize,
    op: LinuxSeccompOperator,
    value: u64,
    value_two: Option<u64>,
) -> LinuxSeccompArg {
    let builder = LinuxSeccompArgBuilder::default()
        .index(index)
        .op(op)
        .value(value);
    let builder = match value_two {
        Some(v) => builder.value_two(v),
        None => builder,
    };
    // The builder defaults every unset field (`#[builder(default)]` in
    // oci-spec), so `build` cannot fail; LinuxSeccompArg has no setters.
    builder
        .build()
        .expect("LinuxSeccompArgBuilder has no required fields")
}

/// The default seccomp profile for agent mode: default action
/// `SCMP_ACT_ERRNO` (`EPERM`) with an allow list. See the module comment
/// for what is refused.
pub fn agent_seccomp_profile() -> LinuxSeccomp {
    let eperm = Some(libc::EPERM as u32);
    let allow = LinuxSeccompAction::ScmpActAllow;
    // Names newer than the host's libseccomp are left out here rather than
    // warned about by `compile` on every start; they stay refused.
    let known: Vec<&str> = ALLOWED
        .iter()
        .copied()
        .filter(|name| libseccomp::ScmpSyscall::from_name(name).is_ok())
        .collect();
    let mut rules = vec![syscall(&known, allow, None)];

    // clone without namespace flags: (flags & CLONE_NAMESPACES) == 0. With
    // them it falls through to the default EPERM.
    let mut clone = syscall(&["clone"], allow, None);
    clone.set_args(Some(vec![arg(
        0,
        LinuxSeccompOperator::ScmpCmpMaskedEq,
        CLONE_NAMESPACES,
        Some(0),
    )]));
    rules.push(clone);

    // clone3 passes its flags in memory, out of a filter's reach. ENOSYS
    // makes glibc (2.34+) fall back to clone, which the rule above checks.
    rules.push(syscall(
        &["clone3"],
        LinuxSeccompAction::ScmpActErrno,
        Some(libc::ENOSYS as u32),
    ));

    // Entries of one index are alternatives (OR).
    let mut personality = syscall(&["personality"], allow, None);
    personality.set_args(Some(
        PERSONALITIES
            .iter()
            .map(|&p| arg(0, LinuxSeccompOperator::ScmpCmpEq, p, None))
            .collect(),
    ));
    rules.push(personality);

    // ioctl is allowed unless its request is refused. A separate EPERM rule
    // would equal the default action (compile drops it), and a rule cannot
    // AND two tests of one argument, so the allow rule lists alternatives
    // that together match every request but the refused ones.
    let mut ioctl = syscall(&["ioctl"], allow, None);
    ioctl.set_args(Some(
        masks_excluding(REFUSED_IOCTLS)
            .into_iter()
            .map(|(mask, datum)| arg(1, LinuxSeccompOperator::ScmpCmpMaskedEq, mask, Some(datum)))
            .collect(),
    ));
    rules.push(ioctl);

    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(LinuxSeccompAction::ScmpActErrno);
    profile.set_default_errno_ret(eperm);
    profile.set_architectures(Some(vec![Arch::ScmpArchX86_64]));
    profile.set_syscalls(Some(rules));
    profile
}

#[cfg(test)]
// Forking and the raw getppid loop need raw calls; only the tests use them.
#[allow(unsafe_code)]
mod tests {
    use super::*;
    use crate::security::seccomp::{compile, SeccompProgram};
    use crate::security::test_child::{assert_exit, sh_after};
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};
    use std::time::Instant;

    /// Refused syscalls that must not be in the allow list by accident.
    const REFUSED: &[&str] = &[
        "mount",
        "umount2",
        "pivot_root",
        "unshare",
        "setns",
        "bpf",
        "perf_event_open",
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
        "keyctl",
        "add_key",
        "request_key",
        "kexec_load",
        "kexec_file_load",
        "init_module",
        "finit_module",
        "delete_module",
        "reboot",
        "swapon",
        "swapoff",
        "userfaultfd",
        "open_by_handle_at",
        "name_to_handle_at",
        "acct",
        "quotactl",
        "settimeofday",
        "clock_settime",
        "adjtimex",
        "clock_adjtime",
        "syslog",
        "iopl",
        "ioperm",
        "lookup_dcookie",
        "create_module",
        "get_kernel_syms",
        "nfsservctl",
        "fanotify_init",
        "chroot",
        "mount_setattr",
        "move_mount",
        "open_tree",
        "fsopen",
        "fsconfig",
        "fsmount",
        "fspick",
        "io_uring_setup",
        "pidfd_getfd",
        "kcmp",
    ];

    #[test]
    fn ioctl_masks_exclude_exactly_the_refused_requests() {
        let tests = masks_excluding(REFUSED_IOCTLS);
        assert!(tests.len() < 64, "{} alternatives", tests.len());
        let allowed = |x: u64| tests.iter().any(|&(mask, datum)| x & mask == datum);
        for high in [0, 1 << 32, 0xffff_ffff_0000_0000] {
            for low in (0..0x1_0000).chain([0xffff_5412, 0x8000_541c, 0xffff_ffff]) {
                let x = high | low;
                let refused = REFUSED_IOCTLS.contains(&(x & 0xffff_ffff));
                assert_eq!(allowed(x), !refused, "request {x:#x}");
            }
        }
    }

    #[test]
    fn refused_syscalls_are_not_allowed() {
        for name in REFUSED {
            assert!(!ALLOWED.contains(name), "`{name}` is in the allow list");
        }
        let mut seen = std::collections::HashSet::new();
        for name in ALLOWED {
            assert!(seen.insert(name), "`{name}` is listed twice");
        }
    }

    fn compiled() -> SeccompProgram {
        compile(&agent_seccomp_profile()).expect("agent profile compiles")
    }

    /// Runs `/bin/sh -c script` under no_new_privs and `program` (if any).
    /// Exit 120: no_new_privs failed; 121: the filter did not load.
    fn run_filtered(program: Option<&SeccompProgram>, script: &str) -> WaitStatus {
        sh_after(
            || {
                if nix::sys::prctl::set_no_new_privs().is_err() {
                    120
                } else if program.is_some_and(|p| p.load().is_err()) {
                    121
                } else {
                    0
                }
            },
            script,
        )
    }

    #[test]
    fn ordinary_programs_run() {
        let program = compiled();
        let t = tempfile::tempdir().expect("tempdir");
        let script = format!(
            r#"
            T={t}
            ls -la / >/dev/null || exit 2
            touch $T/x || exit 3
            cp $T/x $T/y || exit 4
            tar -cf $T/a.tar -C $T x || exit 5
            find $T >/dev/null || exit 6
            python3 -c "import os,subprocess; subprocess.run(['true'], check=True)" || exit 7
            git init -q $T/repo || exit 8
            gcc --version >/dev/null || exit 9
            make --version >/dev/null || exit 10
            bash -c true || exit 11
            printf 'int main(void){{return 0;}}\n' > $T/m.c && gcc -o $T/m $T/m.c && $T/m || exit 12
            (sleep 0 &) ; wait || exit 13
            exit 0
            "#,
            t = t.path().display()
        );
        assert_exit(run_filtered(Some(&program), &script), 0);
    }

    #[test]
    fn dangerous_syscalls_fail_with_eperm() {
        let program = compiled();
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(t.path().join("m")).expect("mkdir");
        // Each check prints the errno it saw; exit code names the check.
        let script = format!(
            r#"
            T={t}
            eperm() {{ out=$( (eval "$1") 2>&1 ); [ $? -ne 0 ] && case "$out" in *"Operation not permitted"*) true;; *) echo "$out" >&2; false;; esac; }}
            eperm "unshare -U true" || exit 2
            # mount(8) words EPERM as "permission denied"; python checks the errno.
            mount -t tmpfs x $T/m 2>/dev/null && exit 3
            python3 - $T/m <<'EOF' || exit 4
import ctypes, errno, os, pty, sys
libc = ctypes.CDLL(None, use_errno=True)
def refused(name, nr, *args):
    ret = libc.syscall(ctypes.c_long(nr), *[ctypes.c_ulong(a) for a in args])
    err = ctypes.get_errno()
    if ret != -1 or err != errno.EPERM:
        print(f"{{name}}: ret {{ret}} errno {{err}}", file=sys.stderr)
        sys.exit(1)
if libc.mount(b"x", sys.argv[1].encode(), b"tmpfs", ctypes.c_ulong(0), None) != -1 or ctypes.get_errno() != errno.EPERM:
    print(f"mount: errno {{ctypes.get_errno()}}", file=sys.stderr)
    sys.exit(1)
refused("keyctl", 250, 0, 0)                 # KEYCTL_GET_KEYRING_ID
refused("add_key", 248, 0, 0, 0, 0, 0)
refused("bpf", 321, 0, 0, 0)
refused("ptrace", 101, 16, 1, 0, 0)          # PTRACE_ATTACH to pid 1
refused("setns", 308, 0, 0)
refused("unshare", 272, 0x10000000)
refused("perf_event_open", 298, 0, 0, 0, 0, 0)
refused("userfaultfd", 323, 0)
refused("init_module", 175, 0, 0, 0)
refused("io_uring_setup", 425, 1, 0)
refused("clone+newuser", 56, 0x10000000 | 17, 0, 0, 0, 0)
refused("personality", 135, 0x0040000)       # ADDR_NO_RANDOMIZE
m, s = pty.openpty()
refused("ioctl TIOCSTI", 16, s, 0x5412, ctypes.addressof(ctypes.c_char(b"x")))
refused("ioctl TIOCSTI high bits", 16, s, (1 << 32) | 0x5412, ctypes.addressof(ctypes.c_char(b"x")))
import fcntl, termios, struct
fcntl.ioctl(s, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
ret = libc.syscall(ctypes.c_long(435), ctypes.c_ulong(0), ctypes.c_ulong(0))
if ret != -1 or ctypes.get_errno() != errno.ENOSYS:
    print("clone3 is not ENOSYS", file=sys.stderr)
    sys.exit(1)
if libc.personality(ctypes.c_ulong(0xffffffff)) == -1:
    sys.exit(1)
EOF
            exit 0
            "#,
            t = t.path().display()
        );
        assert_exit(run_filtered(Some(&program), &script), 0);
    }

    /// Without the filter the same operations succeed (root), so the
    /// checks above really test the filter.
    #[test]
    fn checks_pass_without_the_filter() {
        let t = tempfile::tempdir().expect("tempdir");
        let script = format!(
            "unshare -U true || exit 2; unshare -m mount -t tmpfs x {} || exit 3",
            t.path().display()
        );
        assert_exit(run_filtered(None, &script), 0);
    }

    /// Prints compile time and the cost of the filter on a syscall loop.
    #[test]
    fn report_compile_time_and_overhead() {
        let start = Instant::now();
        let program = compiled();
        let compile_time = start.elapsed();
        const LOOPS: u64 = 10_000_000;
        let time_loop = |program: Option<&SeccompProgram>| -> f64 {
            let (rd, wr) = nix::unistd::pipe().expect("pipe");
            // SAFETY: the child only makes raw syscalls (prctl, seccomp,
            // getppid, clock_gettime via Instant, write) and `_exit`s.
            match unsafe { fork() }.expect("fork") {
                ForkResult::Child => {
                    if nix::sys::prctl::set_no_new_privs().is_err()
                        || program.is_some_and(|p| p.load().is_err())
                    {
                        // SAFETY: see below.
                        unsafe { libc::_exit(1) }
                    }
                    let start = Instant::now();
                    for _ in 0..LOOPS {
                        // SAFETY: getppid takes no arguments and cannot fail.
                        unsafe { libc::syscall(libc::SYS_getppid) };
                    }
                    let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    let _ = nix::unistd::write(&wr, &nanos.to_ne_bytes());
                    // SAFETY: _exit ends the child without touching harness state.
                    unsafe { libc::_exit(0) }
                }
                ForkResult::Parent { child } => {
                    drop(wr);
                    let mut buf = [0_u8; 8];
                    let n = nix::unistd::read(&rd, &mut buf).expect("read");
                    assert_exit(waitpid(child, None).expect("waitpid"), 0);
                    assert_eq!(n, 8);
                    u64::from_ne_bytes(buf) as f64 / 1e9
                }
            }
        };
        let without = time_loop(None);
        let with = time_loop(Some(&program));
        println!(
            "agent profile: compile {:.2} ms, {} bpf instructions; {LOOPS} getppid: {without:.3} s without filter, {with:.3} s with ({:.1} ns vs {:.1} ns per call)",
            compile_time.as_secs_f64() * 1e3,
            program.instructions().len(),
            without * 1e9 / LOOPS as f64,
            with * 1e9 / LOOPS as f64,
        );
    }
}
