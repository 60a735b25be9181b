//! `linux.seccomp`: what the contained process observes under each action, argument
//! conditions, the NOTIFY agent protocol on `listenerPath`, and how bad profiles fail.
//!
//! Syscalls busybox cannot make on demand go through `/bin/sysprobe` (see
//! `common::install_sysprobe`), compiled at test time into each bundle.

#[macro_use]
mod common;

use std::fs;
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixListener;
use std::thread;
use std::time::Instant;

use common::{install_sysprobe, parse_probe, Bundle, Ctx, Out};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use serde_json::{json, Value};

const AT_FDCWD: &str = "-100";

/// The architectures of this host as a profile lists them (native plus its compat ABIs).
fn host_arches() -> Value {
    if cfg!(target_arch = "x86_64") {
        json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
    } else if cfg!(target_arch = "aarch64") {
        json!(["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"])
    } else {
        json!([])
    }
}

/// A bundle with a writable tmpfs at /tmp, `/bin/sysprobe`, and `profile` as
/// `linux.seccomp`; `None` (after printing why) when sysprobe cannot be built.
fn probe_bundle(ctx: &Ctx, profile: Value) -> Option<Bundle> {
    let bundle = ctx
        .bundle()
        .with_mount(
            json!({ "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                            "options": ["nosuid", "nodev", "mode=1777"] }),
        )
        .edit(|s| s["linux"]["seccomp"] = profile);
    match install_sysprobe(&bundle.rootfs()) {
        Ok(()) => Some(bundle),
        Err(reason) => {
            eprintln!("skipped: {reason}");
            None
        }
    }
}

/// `sysprobe NR ARGS...` as a shell command line.
fn probe(nr: libc::c_long, args: &[&str]) -> String {
    let mut cmd = format!("sysprobe {nr}");
    for a in args {
        cmd.push(' ');
        cmd.push_str(a);
    }
    cmd
}

/// Runs `script` (one sysprobe or shell command per line) and returns stdout's lines.
#[track_caller]
fn run_lines(ctx: &Ctx, bundle: Bundle, script: &str) -> (Out, Vec<String>) {
    let out = ctx.run(&bundle.with_sh(script));
    out.assert_ok();
    let lines = out.stdout.lines().map(str::to_string).collect();
    (out, lines)
}

#[test]
fn errno_rule_returns_exactly_its_errno() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let Some(bundle) = probe_bundle(
        &ctx,
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": host_arches(),
            "syscalls": [
                { "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS },
                { "names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EACCES },
                // No errnoRet: the runtime spec's default, EPERM.
                { "names": ["getsid"], "action": "SCMP_ACT_ERRNO" }
            ]
        }),
    ) else {
        return;
    };
    let script = [
        probe(libc::SYS_mkdirat, &[AT_FDCWD, "s:/tmp/a", "0755"]),
        probe(libc::SYS_getpgid, &["0"]),
        probe(libc::SYS_getsid, &["0"]),
        probe(libc::SYS_getppid, &[]),
        probe(libc::SYS_getpid, &[]),
        "mkdir /tmp/b 2>&1; echo mkdir=$?".into(),
        "touch /tmp/c && echo touched; ls /tmp".into(),
    ]
    .join("\n");
    let (out, lines) = run_lines(&ctx, bundle, &script);
    assert_eq!(parse_probe(&lines[0]), (-1, libc::ENOSYS), "mkdirat\n{out}");
    assert_eq!(parse_probe(&lines[1]), (-1, libc::EACCES), "getpgid\n{out}");
    assert_eq!(
        parse_probe(&lines[2]),
        (-1, libc::EPERM),
        "getsid without errnoRet\n{out}"
    );
    // getppid of a child of pid 1 is 1; getpid is its own pid: both unfiltered.
    assert_eq!(parse_probe(&lines[3]), (1, 0), "getppid\n{out}");
    let (pid, errno) = parse_probe(&lines[4]);
    assert!(pid > 1 && errno == 0, "getpid\n{out}");
    assert!(
        lines[5].contains("Function not implemented"),
        "busybox mkdir\n{out}"
    );
    assert_eq!(lines[6], "mkdir=1", "{out}");
    assert_eq!(
        lines[7..],
        ["touched", "c"],
        "only the touched file exists\n{out}"
    );
    ctx.finish();
}

#[test]
fn filter_is_loaded_before_start() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let Some(bundle) = probe_bundle(
        &ctx,
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{ "names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EACCES }]
        }),
    ) else {
        return;
    };
    let bundle = bundle.with_args(&["true"]);
    let id = ctx.id();
    ctx.create(&bundle, &id);
    let pid = ctx.pid(&id);
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let mode = status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .map(str::trim);
    assert_eq!(mode, Some("2"), "created init has no filter yet:\n{status}");
    ctx.start(&id);
    ctx.wait_status(&id, "stopped");
    ctx.delete(&id);
    ctx.finish();
}

#[test]
fn argument_rule_matches_on_the_argument() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let Some(bundle) = probe_bundle(
        &ctx,
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                { "names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EACCES,
                  "args": [{ "index": 0, "value": libc::AF_INET, "op": "SCMP_CMP_EQ" }] },
                // Conditions on different arguments must all hold: AF_UNIX *and* SOCK_DGRAM.
                { "names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM,
                  "args": [{ "index": 0, "value": libc::AF_UNIX, "op": "SCMP_CMP_EQ" },
                           { "index": 1, "value": libc::SOCK_DGRAM, "op": "SCMP_CMP_EQ" }] }
            ]
        }),
    ) else {
        return;
    };
    let socket = |domain: i32, ty: i32| {
        probe(
            libc::SYS_socket,
            &[&domain.to_string(), &ty.to_string(), "0"],
        )
    };
    let script = [
        socket(libc::AF_INET, libc::SOCK_STREAM),
        socket(libc::AF_INET, libc::SOCK_DGRAM),
        socket(libc::AF_UNIX, libc::SOCK_STREAM),
        socket(libc::AF_INET6, libc::SOCK_STREAM),
        socket(libc::AF_UNIX, libc::SOCK_DGRAM),
        socket(libc::AF_INET6, libc::SOCK_DGRAM),
    ]
    .join("\n");
    let (out, lines) = run_lines(&ctx, bundle, &script);
    let results: Vec<(i64, i32)> = lines.iter().map(|l| parse_probe(l)).collect();
    assert_eq!(results[0], (-1, libc::EACCES), "AF_INET stream\n{out}");
    assert_eq!(results[1], (-1, libc::EACCES), "AF_INET dgram\n{out}");
    assert!(results[2].0 >= 0, "AF_UNIX stream must succeed\n{out}");
    assert!(results[3].0 >= 0, "AF_INET6 stream must succeed\n{out}");
    assert_eq!(results[4], (-1, libc::EPERM), "AF_UNIX dgram\n{out}");
    assert!(
        results[5].0 >= 0,
        "AF_INET6 dgram must succeed (only one condition holds)\n{out}"
    );
    ctx.finish();
}

#[test]
fn comparison_operators() {
    require!(root, busybox);
    let ctx = Ctx::new();
    // One operator per syscall, each with its own errno, on arguments nothing else passes.
    let rule = |name: &str, op: &str, value: u64, errno: i32| {
        json!({ "names": [name], "action": "SCMP_ACT_ERRNO", "errnoRet": errno,
                "args": [{ "index": 0, "value": value, "op": op }] })
    };
    let Some(bundle) = probe_bundle(
        &ctx,
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                rule("getpgid", "SCMP_CMP_GT", 1000, libc::EPROTO),
                rule("getsid", "SCMP_CMP_GE", 2000, libc::EMULTIHOP),
                rule("umask", "SCMP_CMP_LT", 0o22, libc::EBADMSG),
                rule("sched_getscheduler", "SCMP_CMP_LE", 5, libc::EOVERFLOW),
                rule("getpriority", "SCMP_CMP_NE", 0, libc::ENOTUNIQ)
            ]
        }),
    ) else {
        return;
    };
    let script = [
        probe(libc::SYS_getpgid, &["1001"]),
        probe(libc::SYS_getpgid, &["1000"]),
        probe(libc::SYS_getsid, &["2000"]),
        probe(libc::SYS_getsid, &["1999"]),
        probe(libc::SYS_umask, &["17"]),
        probe(libc::SYS_umask, &["18"]),
        probe(libc::SYS_sched_getscheduler, &["5"]),
        probe(libc::SYS_sched_getscheduler, &["6"]),
        probe(libc::SYS_getpriority, &["1", "0"]),
        probe(libc::SYS_getpriority, &["0", "0"]),
    ]
    .join("\n");
    let (out, lines) = run_lines(&ctx, bundle, &script);
    let errno: Vec<i32> = lines.iter().map(|l| parse_probe(l).1).collect();
    assert_eq!(errno[0], libc::EPROTO, "GT: 1001 > 1000\n{out}");
    assert_ne!(errno[1], libc::EPROTO, "GT: 1000 is not > 1000\n{out}");
    assert_eq!(errno[2], libc::EMULTIHOP, "GE: 2000 >= 2000\n{out}");
    assert_ne!(errno[3], libc::EMULTIHOP, "GE: 1999\n{out}");
    assert_eq!(errno[4], libc::EBADMSG, "LT: 17 < 18\n{out}");
    assert_eq!(errno[5], 0, "LT: umask(18) must succeed\n{out}");
    assert_eq!(errno[6], libc::EOVERFLOW, "LE: 5 <= 5\n{out}");
    assert_ne!(errno[7], libc::EOVERFLOW, "LE: 6\n{out}");
    assert_eq!(errno[8], libc::ENOTUNIQ, "NE: 1 != 0\n{out}");
    assert_eq!(
        errno[9], 0,
        "NE: getpriority(PRIO_PROCESS, 0) must succeed\n{out}"
    );
    ctx.finish();
}

#[test]
fn masked_eq_compares_the_masked_argument() {
    require!(root, busybox);
    let ctx = Ctx::new();
    // (type & 0xf) == SOCK_DGRAM, whatever SOCK_CLOEXEC/SOCK_NONBLOCK say.
    let Some(bundle) = probe_bundle(
        &ctx,
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{
                "names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ESOCKTNOSUPPORT,
                "args": [{ "index": 1, "value": 0xf, "valueTwo": libc::SOCK_DGRAM, "op": "SCMP_CMP_MASKED_EQ" }]
            }]
        }),
    ) else {
        return;
    };
    let unix = libc::AF_UNIX.to_string();
    let socket = |ty: i32| probe(libc::SYS_socket, &[&unix, &ty.to_string(), "0"]);
    let script = [
        socket(libc::SOCK_DGRAM),
        socket(libc::SOCK_DGRAM | libc::SOCK_CLOEXEC),
        socket(libc::SOCK_DGRAM | libc::SOCK_NONBLOCK),
        socket(libc::SOCK_STREAM),
        socket(libc::SOCK_STREAM | libc::SOCK_CLOEXEC),
        socket(libc::SOCK_SEQPACKET),
    ]
    .join("\n");
    let (out, lines) = run_lines(&ctx, bundle, &script);
    let results: Vec<(i64, i32)> = lines.iter().map(|l| parse_probe(l)).collect();
    for (i, what) in ["DGRAM", "DGRAM|CLOEXEC", "DGRAM|NONBLOCK"]
        .iter()
        .enumerate()
    {
        assert_eq!(
            results[i],
            (-1, libc::ESOCKTNOSUPPORT),
            "{what} must be refused\n{out}"
        );
    }
    for (i, what) in ["STREAM", "STREAM|CLOEXEC", "SEQPACKET"].iter().enumerate() {
        assert!(results[i + 3].0 >= 0, "{what} must succeed\n{out}");
    }
    ctx.finish();
}

#[test]
fn kill_actions_kill_with_sigsys() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let mkdirat = probe(libc::SYS_mkdirat, &[AT_FDCWD, "s:/tmp/x", "0755"]);
    for action in [
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP",
    ] {
        let profile = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{ "names": ["mkdir", "mkdirat"], "action": action }]
        });
        let Some(bundle) = probe_bundle(&ctx, profile) else {
            return;
        };
        // The calling process dies with SIGSYS (128+31); nothing is created.
        let (out, lines) = run_lines(
            &ctx,
            bundle,
            &format!("{mkdirat}; echo status=$?; test -d /tmp/x || echo not-created; echo alive"),
        );
        assert_eq!(
            lines,
            ["status=159", "not-created", "alive"],
            "{action}\n{out}"
        );
    }

    // As the container's process, KILL_PROCESS ends the container: `run` reports 159.
    let Some(bundle) = probe_bundle(
        &ctx,
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL_PROCESS" }]
        }),
    ) else {
        return;
    };
    let nr = libc::SYS_mkdirat.to_string();
    let bundle = bundle.with_args(&["sysprobe", &nr, AT_FDCWD, "s:/tmp/x", "0755"]);
    let out = ctx.run(&bundle);
    assert_eq!(out.code, Some(159), "run should exit 128+SIGSYS\n{out}");
    assert!(
        out.stdout.is_empty(),
        "sysprobe printed after the killing syscall\n{out}"
    );
    ctx.finish();
}

#[test]
fn trace_without_a_tracer_fails_with_enosys() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let Some(bundle) = probe_bundle(
        &ctx,
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{ "names": ["getpgid"], "action": "SCMP_ACT_TRACE", "errnoRet": 7 }]
        }),
    ) else {
        return;
    };
    let (out, lines) = run_lines(&ctx, bundle, &probe(libc::SYS_getpgid, &["0"]));
    // seccomp(2): with no tracer attached, a TRACE'd syscall returns ENOSYS.
    assert_eq!(parse_probe(&lines[0]), (-1, libc::ENOSYS), "{out}");
    ctx.finish();
}

#[test]
fn log_action_lets_the_syscall_through() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let Some(bundle) = probe_bundle(
        &ctx,
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": host_arches(),
            "syscalls": [{ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_LOG" }]
        }),
    ) else {
        return;
    };
    let script = [
        probe(libc::SYS_mkdirat, &[AT_FDCWD, "s:/tmp/logged", "0755"]),
        "test -d /tmp/logged && echo exists; grep '^Seccomp:' /proc/self/status".into(),
    ]
    .join("\n");
    let (out, lines) = run_lines(&ctx, bundle, &script);
    let (ret, errno) = parse_probe(&lines[0]);
    assert_eq!((ret, errno), (0, 0), "logged mkdirat must succeed\n{out}");
    assert_eq!(lines[1], "exists", "{out}");
    assert!(lines[2].ends_with('2'), "no filter on the process\n{out}");

    // Where the kernel log is readable, say whether the audit record showed up; the
    // kernel's audit settings decide, so this is not asserted.
    let logged = std::process::Command::new("dmesg")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            let needle = format!("syscall={} ", libc::SYS_mkdirat);
            String::from_utf8_lossy(&o.stdout).lines().any(|l| {
                l.contains("type=1326") && l.contains("comm=\"sysprobe\"") && l.contains(&needle)
            })
        });
    match logged {
        Some(true) => eprintln!("note: kernel log shows the SCMP_ACT_LOG audit record for mkdirat"),
        Some(false) => eprintln!("note: no SCMP_ACT_LOG audit record in dmesg (audit settings)"),
        None => eprintln!("note: dmesg unavailable; SCMP_ACT_LOG record not checked"),
    }
    ctx.finish();
}

#[test]
fn filter_flags_are_accepted() {
    require!(root, busybox);
    if !common::is_nucleus() {
        eprintln!("skipped: runc 1.1 refuses linux.seccomp.flags");
        return;
    }
    let ctx = Ctx::new();
    // WAIT_KILLABLE_RECV only means something with a listener; without one it is dropped.
    let Some(bundle) = probe_bundle(
        &ctx,
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                      "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV", "SECCOMP_FILTER_FLAG_TSYNC"],
            "syscalls": [{ "names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EACCES }]
        }),
    ) else {
        return;
    };
    let (out, lines) = run_lines(&ctx, bundle, &probe(libc::SYS_getpgid, &["0"]));
    assert_eq!(parse_probe(&lines[0]), (-1, libc::EACCES), "{out}");
    ctx.finish();
}

#[test]
fn unknown_syscall_names_are_skipped() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let Some(bundle) = probe_bundle(
        &ctx,
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                { "names": ["nucleus_no_such_syscall"], "action": "SCMP_ACT_KILL_PROCESS" },
                { "names": ["nucleus_not_a_syscall_either", "mkdir", "mkdirat"],
                  "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EXDEV }
            ]
        }),
    ) else {
        return;
    };
    let (out, lines) = run_lines(
        &ctx,
        bundle,
        &format!(
            "echo running; {}",
            probe(libc::SYS_mkdirat, &[AT_FDCWD, "s:/tmp/a", "0755"])
        ),
    );
    assert_eq!(lines[0], "running", "{out}");
    // The known names of a rule are still enforced.
    assert_eq!(parse_probe(&lines[1]), (-1, libc::EXDEV), "{out}");
    ctx.finish();
}

#[test]
fn invalid_action_or_operator_fails_create() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let cases = [
        (
            json!({ "defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{ "names": ["getpgid"], "action": "SCMP_ACT_FOO" }] }),
            "SCMP_ACT_FOO",
        ),
        (json!({ "defaultAction": "SCMP_ACT_BAR" }), "SCMP_ACT_BAR"),
        (
            json!({ "defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{ "names": ["getpgid"], "action": "SCMP_ACT_ERRNO",
                                   "args": [{ "index": 0, "value": 1, "op": "SCMP_CMP_NOPE" }] }] }),
            "SCMP_CMP_NOPE",
        ),
    ];
    for (profile, bad) in cases {
        let bundle = ctx
            .bundle()
            .with_args(&["true"])
            .edit(|s| s["linux"]["seccomp"] = profile);
        let id = ctx.id();
        let out = ctx.create_with(&bundle, &id, &[]);
        out.assert_fail();
        assert!(
            out.stderr.contains(bad),
            "error should name the bad value `{bad}`\n{out}"
        );
        assert!(
            ctx.root_entries().is_empty(),
            "failed create left state: {:?}",
            ctx.root_entries()
        );
    }
    ctx.finish();
}

/// The architecture says errors name the JSON field. Ignored until the engine validates
/// `linux.seccomp` with field paths when it loads config.json (see the test's message).
#[test]
fn invalid_action_error_names_the_field() {
    require!(root, busybox);
    if !common::is_nucleus() {
        return;
    }
    let ctx = Ctx::new();
    let bundle = ctx.bundle().with_args(&["true"]).edit(|s| {
        s["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{ "names": ["getpgid"], "action": "SCMP_ACT_ALLOW" },
                         { "names": ["getsid"], "action": "SCMP_ACT_FOO" }]
        })
    });
    let id = ctx.id();
    let out = ctx.create_with(&bundle, &id, &[]);
    out.assert_fail();
    assert!(
        out.stderr.contains("linux.seccomp.syscalls[1].action"),
        "error should name the field linux.seccomp.syscalls[1].action\n{out}"
    );
    ctx.finish();
}

/// runc loads the filter while the process can still do so without no_new_privs (before it
/// drops CAP_SYS_ADMIN); Docker's default is exactly this combination.
#[test]
fn filter_loads_without_no_new_privileges() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let Some(bundle) = probe_bundle(
        &ctx,
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{ "names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EACCES }]
        }),
    ) else {
        return;
    };
    let bundle = bundle.edit(|s| s["process"]["noNewPrivileges"] = json!(false));
    let (out, lines) = run_lines(
        &ctx,
        bundle,
        &format!(
            "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status; {}",
            probe(libc::SYS_getpgid, &["0"])
        ),
    );
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NoNewPrivs:", "0"],
        "{out}"
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["Seccomp:", "2"],
        "{out}"
    );
    assert_eq!(parse_probe(&lines[2]), (-1, libc::EACCES), "{out}");
    ctx.finish();
}

// ---------------------------------------------------------------------------------------
// SCMP_ACT_NOTIFY: a small seccomp agent
// ---------------------------------------------------------------------------------------

/// struct seccomp_data (linux/seccomp.h).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct SeccompData {
    nr: i32,
    arch: u32,
    instruction_pointer: u64,
    args: [u64; 6],
}

/// struct seccomp_notif.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct SeccompNotif {
    id: u64,
    pid: u32,
    flags: u32,
    data: SeccompData,
}

/// struct seccomp_notif_resp.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct SeccompNotifResp {
    id: u64,
    val: i64,
    error: i32,
    flags: u32,
}

const SECCOMP_IOCTL_NOTIF_RECV: u64 = 0xc050_2100;
const SECCOMP_IOCTL_NOTIF_SEND: u64 = 0xc018_2101;
const SECCOMP_USER_NOTIF_FLAG_CONTINUE: u32 = 1;

/// What the agent answers for one notification.
#[derive(Debug, Clone, Copy)]
enum Reply {
    /// Fail the syscall with this errno.
    Errno(i32),
    /// Pretend it succeeded, returning this value, without running it.
    Fake(i64),
    /// Let the kernel run the syscall.
    Continue,
}

/// One message the agent received on `listenerPath`: the JSON and the fds passed with it.
struct AgentHello {
    message: Value,
    fds: Vec<OwnedFd>,
}

/// Accepts one connection on `listener` and reads the container process state and its fds,
/// giving up when `done()` (the runtime exited) or at `deadline`.
fn agent_accept(
    listener: &UnixListener,
    deadline: Instant,
    done: impl Fn() -> bool,
) -> Option<AgentHello> {
    let stream = common::accept_until(listener, deadline, done)?;
    let mut buf = vec![0u8; 1 << 16];
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let (len, fds) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .expect("recvmsg on the seccomp listener");
        let mut fds = Vec::new();
        for c in msg.cmsgs().expect("control messages") {
            if let ControlMessageOwned::ScmRights(raw) = c {
                // SAFETY: SCM_RIGHTS just installed these fds in our table; we own them.
                fds.extend(
                    raw.into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        (msg.bytes, fds)
    };
    let message = serde_json::from_slice(&buf[..len]).unwrap_or_else(|e| {
        panic!(
            "listener message is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&buf[..len])
        )
    });
    Some(AgentHello { message, fds })
}

/// Reads a NUL-terminated string at `addr` in process `pid`.
fn read_string(pid: u32, addr: u64) -> String {
    let Ok(mem) = fs::File::open(format!("/proc/{pid}/mem")) else {
        return String::new();
    };
    let mut buf = [0u8; 256];
    let n = mem.read_at(&mut buf, addr).unwrap_or(0);
    let end = buf[..n].iter().position(|b| *b == 0).unwrap_or(n);
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// One notification as the agent saw it.
#[derive(Debug, Clone)]
struct Seen {
    /// `/proc/PID/ns/pid` of the caller, read while it waited for the reply.
    pid_ns: String,
    nr: i64,
    path: String,
}

/// Serves notifications on `fd` until `done()` and the fd is idle, or `deadline`: the path
/// argument of mkdir/mkdirat picks the reply.
fn agent_serve(
    fd: &OwnedFd,
    deadline: Instant,
    done: impl Fn() -> bool,
    reply_for: impl Fn(&str) -> Reply,
) -> Vec<Seen> {
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let ready = poll(&mut fds, PollTimeout::from(100u16)).expect("poll notify fd");
        let revents = fds[0].revents().unwrap_or(PollFlags::empty());
        if ready == 0 || !revents.contains(PollFlags::POLLIN) {
            if done() || revents.contains(PollFlags::POLLHUP) {
                break;
            }
            continue;
        }
        let mut req = SeccompNotif::default();
        // SAFETY: NOTIF_RECV writes one struct seccomp_notif, which `req` is (repr(C), zeroed
        // as the kernel requires).
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), SECCOMP_IOCTL_NOTIF_RECV as _, &mut req) };
        if rc != 0 {
            // ENOENT: the caller was interrupted or died before we read it.
            continue;
        }
        let nr = i64::from(req.data.nr);
        let path_arg = if nr == libc::SYS_mkdirat {
            req.data.args[1]
        } else {
            req.data.args[0]
        };
        let path = read_string(req.pid, path_arg);
        let pid_ns = fs::read_link(format!("/proc/{}/ns/pid", req.pid))
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut resp = SeccompNotifResp {
            id: req.id,
            ..Default::default()
        };
        match reply_for(&path) {
            Reply::Errno(e) => resp.error = -e,
            Reply::Fake(v) => resp.val = v,
            Reply::Continue => resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE,
        }
        // SAFETY: NOTIF_SEND reads one struct seccomp_notif_resp, which `resp` is.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), SECCOMP_IOCTL_NOTIF_SEND as _, &resp) };
        assert_eq!(
            rc,
            0,
            "SECCOMP_IOCTL_NOTIF_SEND: {}",
            std::io::Error::last_os_error()
        );
        seen.push(Seen { pid_ns, nr, path });
    }
    seen
}

fn notify_profile(listener: &std::path::Path) -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": listener,
        "listenerMetadata": "agent-tag=42",
        "syscalls": [{ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY" }]
    })
}

fn mkdir_reply(path: &str) -> Reply {
    match path {
        "/tmp/denied" => Reply::Errno(libc::EPERM),
        "/tmp/faked" => Reply::Fake(0),
        _ => Reply::Continue,
    }
}

#[test]
fn notify_hands_a_working_fd_to_the_listener() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let sock = ctx.scratch("agent").join("agent.sock");
    let listener = UnixListener::bind(&sock).expect("bind seccomp listener");
    let bundle = ctx
        .bundle()
        .with_mount(json!({ "destination": "/tmp", "type": "tmpfs", "source": "tmpfs" }))
        .edit(|s| s["linux"]["seccomp"] = notify_profile(&sock))
        .with_sh(
            "mkdir /tmp/denied 2>&1; echo denied=$?; \
             mkdir /tmp/allowed && echo allowed=$?; test -d /tmp/allowed && echo allowed-exists; \
             mkdir /tmp/faked && echo faked=$?; test -d /tmp/faked || echo faked-missing",
        );
    let id = ctx.id();

    let (out, hello, seen) = thread::scope(|s| {
        let run = s.spawn(|| ctx.run_with(&bundle, &id, &[]));
        let deadline = Instant::now() + common::CMD_TIMEOUT;
        let hello = agent_accept(&listener, deadline, || run.is_finished());
        let seen = match &hello {
            Some(h) if h.fds.len() == 1 => {
                agent_serve(&h.fds[0], deadline, || run.is_finished(), mkdir_reply)
            }
            _ => Vec::new(),
        };
        (run.join().expect("run thread"), hello, seen)
    });
    let hello =
        hello.unwrap_or_else(|| panic!("the runtime never connected to listenerPath\n{out}"));

    // The container process state, as the runtime spec describes it.
    let msg = &hello.message;
    assert_eq!(
        hello.fds.len(),
        1,
        "expected one fd with the state, got {}: {msg}",
        hello.fds.len()
    );
    assert_eq!(msg["fds"], json!(["seccompFd"]), "{msg}");
    assert_eq!(msg["metadata"], "agent-tag=42", "{msg}");
    assert!(msg["ociVersion"].is_string(), "{msg}");
    assert_eq!(msg["state"]["id"], json!(id.id()), "{msg}");
    assert!(msg["pid"].as_i64().is_some_and(|p| p > 0), "{msg}");
    assert_eq!(
        msg["pid"], msg["state"]["pid"],
        "pid and state.pid differ: {msg}"
    );
    let bundle_path = bundle.path().to_str().unwrap();
    assert_eq!(msg["state"]["bundle"], bundle_path, "{msg}");

    // The fd is a seccomp listener: every mkdir came through it, and its reply is what the
    // container saw.
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("/tmp/denied") && l.contains("Operation not permitted")),
        "EPERM reply not seen by the container\n{out}"
    );
    assert!(lines.contains(&"denied=1"), "{out}");
    assert!(
        lines.contains(&"allowed=0") && lines.contains(&"allowed-exists"),
        "CONTINUE reply\n{out}"
    );
    assert!(
        lines.contains(&"faked=0") && lines.contains(&"faked-missing"),
        "faked success\n{out}"
    );
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/tmp/denied", "/tmp/allowed", "/tmp/faked"],
        "notifications: {seen:?}"
    );
    assert!(
        seen.iter()
            .all(|s| s.nr == libc::SYS_mkdirat || Some(s.nr) == mkdir_nr()),
        "notified for something else: {seen:?}"
    );
    // The callers were the container's processes, not ours.
    let host_ns = fs::read_link("/proc/self/ns/pid")
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        seen.iter()
            .all(|s| !s.pid_ns.is_empty() && s.pid_ns != host_ns && s.pid_ns == seen[0].pid_ns),
        "notifications from outside the container's pid namespace: {seen:?}"
    );
    ctx.finish();
}

fn mkdir_nr() -> Option<i64> {
    #[cfg(target_arch = "x86_64")]
    return Some(libc::SYS_mkdir);
    #[cfg(not(target_arch = "x86_64"))]
    return None;
}

/// runc hands exec'd processes' notify fds to the agent too (one connection per process
/// that loads the filter); without it their NOTIFY syscalls fail with ENOSYS.
#[test]
fn exec_under_a_notify_profile_reaches_the_listener() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let sock = ctx.scratch("agent").join("agent.sock");
    let listener = UnixListener::bind(&sock).expect("bind seccomp listener");
    let bundle = ctx
        .bundle()
        .with_mount(json!({ "destination": "/tmp", "type": "tmpfs", "source": "tmpfs" }))
        .edit(|s| s["linux"]["seccomp"] = notify_profile(&sock))
        .with_args(&["sleep", "1000"]);
    let id = ctx.id();
    ctx.run_with(&bundle, &id, &["-d"]).assert_ok();
    let deadline = Instant::now() + common::CMD_TIMEOUT;
    let init = agent_accept(&listener, deadline, || false).expect("init's notify fd");
    assert_eq!(init.fds.len(), 1);
    let init_pid = ctx.pid(&id);
    assert_eq!(init.message["pid"], json!(init_pid), "{}", init.message);

    let (out, hello, seen) = thread::scope(|s| {
        let exec = s.spawn(|| {
            ctx.rt(&[
                "exec",
                &id,
                "sh",
                "-c",
                "mkdir /tmp/denied 2>&1; echo denied=$?",
            ])
        });
        let hello = agent_accept(&listener, deadline, || exec.is_finished());
        let seen = match &hello {
            Some(h) if h.fds.len() == 1 => {
                agent_serve(&h.fds[0], deadline, || exec.is_finished(), mkdir_reply)
            }
            _ => Vec::new(),
        };
        (exec.join().expect("exec thread"), hello, seen)
    });
    out.assert_ok();
    let hello = hello.unwrap_or_else(|| panic!("exec never connected to listenerPath\n{out}"));
    assert_eq!(
        hello.message["fds"],
        json!(["seccompFd"]),
        "{}",
        hello.message
    );
    assert_eq!(
        hello.message["state"]["id"],
        json!(id.id()),
        "{}",
        hello.message
    );
    assert!(
        out.stdout.contains("Operation not permitted"),
        "agent reply not seen by exec\n{out}"
    );
    assert_eq!(seen.len(), 1, "{seen:?}");
    let init_ns = fs::read_link(format!("/proc/{init_pid}/ns/pid")).unwrap();
    assert_eq!(seen[0].pid_ns, init_ns.to_string_lossy(), "{seen:?}");
    drop(init);

    ctx.rt(&["delete", "--force", &id]).assert_ok();
    ctx.finish();
}
