//! Seccomp: compile an OCI `linux.seccomp` profile to a classic BPF program
//! with libseccomp in the parent, before fork, and load it in the child with
//! one raw syscall. Also hands a user-notification fd to the seccomp agent at
//! `listenerPath`.
//!
//! The child side ([`SeccompProgram::load`]) must not call libseccomp,
//! allocate or log: it runs between clone and execve.

use libseccomp::error::SeccompError as ScmpError;
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
    ScmpVersion,
};
use nix::errno::Errno;
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
use nucleus_sys::seccomp as sys;
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};
use std::fs::File;
use std::io::{self, IoSlice, Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// JSON path of the profile inside config.json; prefixes every field in errors.
const FIELD: &str = "linux.seccomp";
/// Syscalls that may not be sent to a notify supervisor.
const NOTIFY_FORBIDDEN: &[&str] = &["write"];
/// errno for `SCMP_ACT_ERRNO`/`SCMP_ACT_TRACE` without `errnoRet` (runtime-spec default).
const DEFAULT_ERRNO_RET: u32 = libc::EPERM as u32;
/// Syscalls have at most six arguments.
const MAX_ARG_INDEX: usize = 5;
/// Cap on the rules one `syscalls[]` entry may expand to (see [`expand_args`]).
const MAX_ARG_COMBINATIONS: usize = 256;
/// `ociVersion` sent to the agent when the state JSON carries none.
const DEFAULT_OCI_VERSION: &str = "1.2.0";
/// Size of one `struct sock_filter` in libseccomp's export.
const SOCK_FILTER_SIZE: usize = std::mem::size_of::<libc::sock_filter>();

/// A seccomp filter compiled in the parent, ready for the child to load.
#[derive(Debug, Clone)]
pub struct SeccompProgram {
    instructions: Vec<libc::sock_filter>,
    /// `SECCOMP_FILTER_FLAG_*` bits for `seccomp(2)`.
    flags: u32,
    listener_path: Option<PathBuf>,
    listener_metadata: Option<String>,
}

/// Why a seccomp profile could not be compiled or its agent reached.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("{field}: invalid seccomp profile")]
    ParseProfile {
        field: String,
        source: serde_json::Error,
    },
    #[error("{field}: unknown action `{value}`")]
    ParseAction { field: String, value: String },
    #[error("{field}: unknown operator `{value}`")]
    ParseOperator { field: String, value: String },
    #[error("{field}: unknown architecture `{value}`")]
    ParseArchitecture { field: String, value: String },
    #[error("{field}: unknown flag `{value}`")]
    ParseFlag { field: String, value: String },
    #[error("{field}: `{value}` does not fit in 16 bits")]
    CheckErrnoRet { field: String, value: u32 },
    #[error("{field}: argument index `{index}` is out of range 0..=5")]
    CheckArgIndex { field: String, index: usize },
    #[error("{field}: `{count}` argument combinations exceed the limit of `{max}`")]
    ExpandArgs {
        field: String,
        count: usize,
        max: usize,
    },
    #[error("{FIELD}.defaultAction: `SCMP_ACT_NOTIFY` cannot be the default action")]
    CheckDefaultAction,
    #[error("{field}: `SCMP_ACT_NOTIFY` cannot be used for `{name}`: the init calls it after the filter is loaded")]
    CheckNotifySyscall { field: String, name: String },
    #[error("failed to create a libseccomp filter with default action `{action}`")]
    CreateFilter { action: String, source: ScmpError },
    #[error("failed to set libseccomp attribute `{attr}`")]
    SetFilterAttr {
        attr: &'static str,
        source: ScmpError,
    },
    #[error("{field}: failed to add architecture `{arch}`")]
    AddArch {
        field: String,
        arch: String,
        source: ScmpError,
    },
    #[error("{field}: failed to add a rule for syscall `{name}`")]
    AddRule {
        field: String,
        name: String,
        source: ScmpError,
    },
    #[error("failed to create a memfd for the bpf export")]
    CreateMemfd { source: Errno },
    #[error("failed to export the seccomp filter as bpf")]
    ExportBpf { source: ScmpError },
    #[error("failed to read the exported bpf program")]
    ReadBpf { source: io::Error },
    #[error("exported bpf program is `{len}` bytes, not a multiple of `{SOCK_FILTER_SIZE}`")]
    DecodeBpf { len: usize },
    #[error("seccomp program has `{len}` instructions, more than the kernel limit of `{max}`")]
    CheckProgramLength { len: usize, max: usize },
    #[error("failed to parse the container state json for the seccomp agent")]
    ParseState { source: serde_json::Error },
    // "failed to connect with seccomp agent" is runc's wording, which clients match.
    #[error("failed to connect with seccomp agent specified in the seccomp profile at `{}` (linux.seccomp.listenerPath)", .path.display())]
    ConnectListener { path: PathBuf, source: io::Error },
    #[error("failed to send the seccomp notify fd to the agent at `{}`", .path.display())]
    SendToListener { path: PathBuf, source: Errno },
}

impl SeccompProgram {
    /// Installs the filter on the calling thread; returns the notify listener
    /// when the profile uses `SCMP_ACT_NOTIFY`.
    ///
    /// Runs in the child: no allocation, no locks, no logging. The caller has
    /// set no_new_privs (or holds `CAP_SYS_ADMIN`), or this fails with `EACCES`.
    pub fn load(&self) -> Result<Option<OwnedFd>, Errno> {
        sys::seccomp_set_mode_filter(self.flags, &self.instructions)
    }

    /// Whether [`load`](Self::load) returns a listener fd that someone must serve.
    pub fn needs_listener(&self) -> bool {
        self.flags & sys::SECCOMP_FILTER_FLAG_NEW_LISTENER != 0
    }

    /// `linux.seccomp.listenerPath`: the agent's unix socket.
    pub fn listener_path(&self) -> Option<&Path> {
        self.listener_path.as_deref()
    }

    /// `linux.seccomp.listenerMetadata`: opaque data for the agent.
    pub fn listener_metadata(&self) -> Option<&str> {
        self.listener_metadata.as_deref()
    }

    /// The BPF program, as the kernel will see it.
    pub fn instructions(&self) -> &[libc::sock_filter] {
        &self.instructions
    }

    /// The `SECCOMP_FILTER_FLAG_*` bits passed to `seccomp(2)`.
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// Rebuilds a program compiled earlier from `profile` (the cache).
    pub(crate) fn from_parts(
        instructions: Vec<libc::sock_filter>,
        flags: u32,
        profile: &LinuxSeccomp,
    ) -> Self {
        SeccompProgram {
            instructions,
            flags,
            listener_path: profile.listener_path().clone(),
            listener_metadata: profile.listener_metadata().clone(),
        }
    }
}

/// Parses a seccomp profile (the `linux.seccomp` object of config.json, or a
/// standalone `--seccomp-profile` file).
///
/// Unlike plain serde, an unknown action, operator, architecture or flag is
/// reported with its JSON path under `field`, e.g.
/// ``linux.seccomp.syscalls[3].args[0].op: unknown operator `SCMP_CMP_FOO` ``.
pub fn parse_profile(json: &str, field: &str) -> Result<LinuxSeccomp, SeccompError> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|source| SeccompError::ParseProfile {
            field: field.to_owned(),
            source,
        })?;
    parse_profile_value(value, field)
}

/// [`parse_profile`] for an already parsed JSON value.
pub fn parse_profile_value(
    value: serde_json::Value,
    field: &str,
) -> Result<LinuxSeccomp, SeccompError> {
    check_enum_strings(&value, field)?;
    serde_json::from_value(value).map_err(|source| SeccompError::ParseProfile {
        field: field.to_owned(),
        source,
    })
}

/// Names the first enum string serde would reject, with its JSON path.
fn check_enum_strings(value: &serde_json::Value, field: &str) -> Result<(), SeccompError> {
    fn check<T: std::str::FromStr>(
        value: Option<&serde_json::Value>,
        field: impl FnOnce() -> String,
        err: impl FnOnce(String, String) -> SeccompError,
    ) -> Result<(), SeccompError> {
        match value.and_then(serde_json::Value::as_str) {
            Some(s) if s.parse::<T>().is_err() => Err(err(field(), s.to_owned())),
            _ => Ok(()),
        }
    }
    let action = |field, value| SeccompError::ParseAction { field, value };
    let list = |key: &str| {
        value
            .get(key)
            .and_then(serde_json::Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    };

    check::<LinuxSeccompAction>(
        value.get("defaultAction"),
        || format!("{field}.defaultAction"),
        action,
    )?;
    for (i, arch) in list("architectures").iter().enumerate() {
        check::<Arch>(
            Some(arch),
            || format!("{field}.architectures[{i}]"),
            |field, value| SeccompError::ParseArchitecture { field, value },
        )?;
    }
    for (i, flag) in list("flags").iter().enumerate() {
        check::<LinuxSeccompFilterFlag>(
            Some(flag),
            || format!("{field}.flags[{i}]"),
            |field, value| SeccompError::ParseFlag { field, value },
        )?;
    }
    for (i, rule) in list("syscalls").iter().enumerate() {
        check::<LinuxSeccompAction>(
            rule.get("action"),
            || format!("{field}.syscalls[{i}].action"),
            action,
        )?;
        let args = rule.get("args").and_then(serde_json::Value::as_array);
        for (j, arg) in args
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            check::<LinuxSeccompOperator>(
                arg.get("op"),
                || format!("{field}.syscalls[{i}].args[{j}].op"),
                |field, value| SeccompError::ParseOperator { field, value },
            )?;
        }
    }
    Ok(())
}

/// Compiles `profile` to a BPF program with libseccomp. Runs in the parent.
///
/// Unknown syscall names are skipped with a warning, as runc does, so one
/// profile serves several kernels. A rule whose action equals the default
/// action is dropped: it changes nothing and libseccomp refuses it.
pub fn compile(profile: &LinuxSeccomp) -> Result<SeccompProgram, SeccompError> {
    let default_action = to_scmp_action(
        profile.default_action(),
        profile.default_errno_ret(),
        || format!("{FIELD}.defaultErrnoRet"),
    )?;
    if default_action == ScmpAction::Notify {
        return Err(SeccompError::CheckDefaultAction);
    }
    let mut ctx =
        ScmpFilterContext::new(default_action).map_err(|source| SeccompError::CreateFilter {
            action: profile.default_action().to_string(),
            source,
        })?;
    // The engine sets no_new_privs itself, and libseccomp never loads this
    // filter; keep the attribute honest anyway.
    ctx.set_ctl_nnp(false)
        .map_err(|source| SeccompError::SetFilterAttr {
            attr: "SCMP_FLTATR_CTL_NNP",
            source,
        })?;
    // Binary-tree dispatch: O(log n) per syscall instead of a linear scan
    // over ~300 allow rules. Needs libseccomp 2.5.0.
    if libseccomp::check_version(ScmpVersion::from((2, 5, 0))).unwrap_or(false) {
        ctx.set_ctl_optimize(2)
            .map_err(|source| SeccompError::SetFilterAttr {
                attr: "SCMP_FLTATR_CTL_OPTIMIZE",
                source,
            })?;
    } else {
        tracing::warn!("libseccomp older than 2.5.0: seccomp filter is a linear scan");
    }

    // Architectures come first: libseccomp applies a rule only to the
    // architectures present when it is added.
    for (i, arch) in profile.architectures().iter().flatten().enumerate() {
        let scmp_arch = to_scmp_arch(*arch);
        let present = ctx.is_arch_present(scmp_arch).unwrap_or(false);
        if scmp_arch == ScmpArch::Native || present {
            continue;
        }
        ctx.add_arch(scmp_arch)
            .map_err(|source| SeccompError::AddArch {
                field: format!("{FIELD}.architectures[{i}]"),
                arch: arch.to_string(),
                source,
            })?;
    }

    let mut flags = 0;
    for flag in profile.flags().iter().flatten() {
        flags |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => sys::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                sys::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                sys::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
            }
            // The child is single-threaded when it loads the filter.
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 0,
        };
    }

    let mut rules = 0_usize;
    let mut uses_notify = false;
    for (i, syscall) in profile.syscalls().iter().flatten().enumerate() {
        let action = to_scmp_action(syscall.action(), syscall.errno_ret(), || {
            format!("{FIELD}.syscalls[{i}].errnoRet")
        })?;
        if action == default_action {
            tracing::debug!(
                index = i,
                "seccomp rule matches the default action, skipped"
            );
            continue;
        }
        let arg_sets = expand_args(syscall.args().as_deref().unwrap_or_default(), i)?;
        for (j, name) in syscall.names().iter().enumerate() {
            // A supervisor that blocks on `write` could deadlock the
            // container's logging and our own error reports (runc refuses it too).
            if action == ScmpAction::Notify && NOTIFY_FORBIDDEN.contains(&name.as_str()) {
                return Err(SeccompError::CheckNotifySyscall {
                    field: format!("{FIELD}.syscalls[{i}].names[{j}]"),
                    name: name.clone(),
                });
            }
            let Ok(nr) = ScmpSyscall::from_name(name) else {
                tracing::warn!(
                    syscall = %name,
                    field = %format_args!("{FIELD}.syscalls[{i}].names[{j}]"),
                    "unknown syscall, seccomp rule skipped"
                );
                continue;
            };
            for conditions in &arg_sets {
                let added = if conditions.is_empty() {
                    ctx.add_rule(action, nr)
                } else {
                    ctx.add_rule_conditional(action, nr, conditions)
                };
                added.map_err(|source| SeccompError::AddRule {
                    field: format!("{FIELD}.syscalls[{i}]"),
                    name: name.clone(),
                    source,
                })?;
                rules += 1;
            }
            uses_notify |= action == ScmpAction::Notify;
        }
    }

    if uses_notify {
        flags |= sys::SECCOMP_FILTER_FLAG_NEW_LISTENER;
    } else {
        // The kernel refuses WAIT_KILLABLE_RECV without a listener (EINVAL).
        flags &= !sys::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
    }

    let instructions = export_bpf(&ctx)?;
    tracing::debug!(
        rules,
        instructions = instructions.len(),
        flags,
        "compiled seccomp profile"
    );
    Ok(SeccompProgram {
        instructions,
        flags,
        listener_path: profile.listener_path().clone(),
        listener_metadata: profile.listener_metadata().clone(),
    })
}

/// Maps an OCI action and its `errnoRet` to libseccomp's action.
fn to_scmp_action(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    errno_field: impl FnOnce() -> String,
) -> Result<ScmpAction, SeccompError> {
    let ret = || {
        let value = errno_ret.unwrap_or(DEFAULT_ERRNO_RET);
        u16::try_from(value).map_err(|_| SeccompError::CheckErrnoRet {
            field: errno_field(),
            value,
        })
    };
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(i32::from(ret()?)),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(ret()?),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
    })
}

fn to_scmp_arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

/// Turns `syscalls[i].args` into the condition sets of libseccomp rules.
///
/// Conditions on different arguments combine as AND, in one rule. libseccomp
/// allows one comparison per argument per rule, so several conditions on the
/// same argument index become separate rules, i.e. OR (runc does the same).
/// Unlike runc, which then drops the AND with the other indices, each
/// alternative keeps the conditions on the other arguments: the rule set is
/// the cartesian product over argument indices.
///
/// `[{0 EQ 1}, {0 EQ 2}, {1 EQ 5}]` → `[[a0==1, a1==5], [a0==2, a1==5]]`.
/// No args → one empty set (an unconditional rule).
fn expand_args(
    args: &[LinuxSeccompArg],
    rule: usize,
) -> Result<Vec<Vec<ScmpArgCompare>>, SeccompError> {
    let mut by_index: [Vec<ScmpArgCompare>; MAX_ARG_INDEX + 1] = Default::default();
    for (j, arg) in args.iter().enumerate() {
        let index = arg.index();
        let (Some(slot), Ok(arg_nr)) = (by_index.get_mut(index), u32::try_from(index)) else {
            return Err(SeccompError::CheckArgIndex {
                field: format!("{FIELD}.syscalls[{rule}].args[{j}].index"),
                index,
            });
        };
        let op = match arg.op() {
            LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
            LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
            LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
            LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
            LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
            LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
            // `value` is the mask, `valueTwo` the datum: (arg & value) == valueTwo.
            LinuxSeccompOperator::ScmpCmpMaskedEq => {
                slot.push(ScmpArgCompare::new(
                    arg_nr,
                    ScmpCompareOp::MaskedEqual(arg.value()),
                    arg.value_two().unwrap_or(0),
                ));
                continue;
            }
        };
        slot.push(ScmpArgCompare::new(arg_nr, op, arg.value()));
    }

    let mut sets = vec![Vec::new()];
    for alternatives in by_index.iter().filter(|c| !c.is_empty()) {
        let count = sets.len() * alternatives.len();
        if count > MAX_ARG_COMBINATIONS {
            return Err(SeccompError::ExpandArgs {
                field: format!("{FIELD}.syscalls[{rule}].args"),
                count,
                max: MAX_ARG_COMBINATIONS,
            });
        }
        let mut next = Vec::with_capacity(count);
        for set in &sets {
            for condition in alternatives {
                let mut extended: Vec<ScmpArgCompare> = set.clone();
                extended.push(*condition);
                next.push(extended);
            }
        }
        sets = next;
    }
    Ok(sets)
}

/// Exports the filter through a memfd (libseccomp 2.5 has no in-memory
/// export) and decodes it into `sock_filter`s.
fn export_bpf(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>, SeccompError> {
    let fd = memfd_create(c"nucleus-seccomp-bpf", MFdFlags::MFD_CLOEXEC)
        .map_err(|source| SeccompError::CreateMemfd { source })?;
    let mut file = File::from(fd);
    ctx.export_bpf(&file)
        .map_err(|source| SeccompError::ExportBpf { source })?;
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(|source| SeccompError::ReadBpf { source })?;

    if bytes.len() % SOCK_FILTER_SIZE != 0 {
        return Err(SeccompError::DecodeBpf { len: bytes.len() });
    }
    let len = bytes.len() / SOCK_FILTER_SIZE;
    if len > sys::BPF_MAXINSNS {
        return Err(SeccompError::CheckProgramLength {
            len,
            max: sys::BPF_MAXINSNS,
        });
    }
    // Native-endian struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; }.
    Ok(bytes
        .chunks_exact(SOCK_FILTER_SIZE)
        .map(|b| libc::sock_filter {
            code: u16::from_ne_bytes([b[0], b[1]]),
            jt: b[2],
            jf: b[3],
            k: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        })
        .collect())
}

/// Sends the notify fd to the agent listening on `listener_path`, as the
/// runtime-spec describes for `SCMP_ACT_NOTIFY`: connect a `SOCK_STREAM` unix
/// socket and send the container process state, `{ociVersion, fds:
/// ["seccompFd"], pid, metadata, state}`, with the fd attached via
/// `SCM_RIGHTS` to the same `sendmsg`.
///
/// `state_json` is the container's state (as `nucleus state` prints it) and
/// `pid` the container process as seen by the runtime.
pub fn send_to_listener(
    listener_path: &Path,
    state_json: &str,
    pid: i32,
    metadata: Option<&str>,
    notify_fd: BorrowedFd<'_>,
) -> Result<(), SeccompError> {
    let state: serde_json::Value =
        serde_json::from_str(state_json).map_err(|source| SeccompError::ParseState { source })?;
    let oci_version = state
        .get("ociVersion")
        .and_then(serde_json::Value::as_str)
        .unwrap_or(DEFAULT_OCI_VERSION)
        .to_owned();
    let mut message = serde_json::json!({
        "ociVersion": oci_version,
        "fds": [oci_spec::runtime::SECCOMP_FD_NAME],
        "pid": pid,
        "state": state,
    });
    if let (Some(metadata), Some(object)) = (metadata, message.as_object_mut()) {
        object.insert("metadata".to_owned(), metadata.into());
    }
    let payload = message.to_string();

    let send_err = |source| SeccompError::SendToListener {
        path: listener_path.to_owned(),
        source,
    };
    let stream =
        UnixStream::connect(listener_path).map_err(|source| SeccompError::ConnectListener {
            path: listener_path.to_owned(),
            source,
        })?;
    let fds = [notify_fd.as_raw_fd()];
    let rights = [ControlMessage::ScmRights(&fds)];
    let mut sent = loop {
        match sendmsg::<UnixAddr>(
            stream.as_raw_fd(),
            &[IoSlice::new(payload.as_bytes())],
            &rights,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Err(Errno::EINTR) => continue,
            other => break other.map_err(send_err)?,
        }
    };
    // A stream socket may take a long state in pieces; the fd went with the first.
    while let Some(rest) = payload.as_bytes().get(sent..).filter(|r| !r.is_empty()) {
        match sendmsg::<UnixAddr>(
            stream.as_raw_fd(),
            &[IoSlice::new(rest)],
            &[],
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Err(Errno::EINTR) => continue,
            Ok(0) => return Err(send_err(Errno::EPIPE)),
            other => sent += other.map_err(send_err)?,
        }
    }
    tracing::debug!(path = %listener_path.display(), pid, "sent seccomp notify fd to agent");
    Ok(())
}

#[cfg(test)]
// Forking and fetching the listener fd need raw calls; only the tests use them.
#[allow(unsafe_code)]
mod tests {
    use super::*;
    use libseccomp::{ScmpNotifReq, ScmpNotifResp, ScmpNotifRespFlags};
    use nix::sys::resource::{setrlimit, Resource};
    use nix::sys::signal::{kill, Signal};
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{dup, fork, getpgid, getsid, pipe, read, write, ForkResult, Pid};
    use serde_json::json;
    use std::os::fd::{AsFd, FromRawFd};
    use std::time::{Duration, Instant};

    fn profile(value: serde_json::Value) -> LinuxSeccomp {
        parse_profile_value(value, FIELD).expect("valid test profile")
    }

    fn compiled(value: serde_json::Value) -> SeccompProgram {
        compile(&profile(value)).expect("profile compiles")
    }

    /// Forks; the child runs `body` and `_exit`s with its result. The harness
    /// is multi-threaded, so `body` must stick to raw syscalls: no allocation,
    /// no locks, no panics.
    fn fork_child(body: impl FnOnce() -> i32) -> Pid {
        // SAFETY: the child only runs `body`, which makes raw syscalls and
        // touches no lock another harness thread could hold, then `_exit`s
        // without returning into the harness or running destructors.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                let code = body();
                // SAFETY: _exit ends the process at once, running no atexit
                // handler or destructor that could touch harness state.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => child,
        }
    }

    fn in_child(body: impl FnOnce() -> i32) -> WaitStatus {
        waitpid(fork_child(body), None).expect("waitpid")
    }

    /// Kills and reaps a child that a failed assertion left blocked.
    struct ChildGuard(Option<Pid>);
    impl Drop for ChildGuard {
        fn drop(&mut self) {
            if let Some(pid) = self.0.take() {
                let _ = kill(pid, Signal::SIGKILL);
                let _ = waitpid(pid, None);
            }
        }
    }

    /// A SIGSYS death must not write a core file into the test directory.
    fn no_core_dumps() -> bool {
        setrlimit(Resource::RLIMIT_CORE, 0, 0).is_ok()
    }

    fn assert_exited_ok(status: WaitStatus) {
        assert!(
            matches!(status, WaitStatus::Exited(_, 0)),
            "child failed: {status:?} (exit code names the failed check)"
        );
    }

    #[test]
    fn errno_rule_returns_errno_ret() {
        let program = compiled(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EHOSTDOWN}]
        }));
        assert!(!program.needs_listener());
        assert_exited_ok(in_child(|| {
            if program.load().is_err() {
                return 10;
            }
            if getpgid(None) != Err(Errno::EHOSTDOWN) {
                return 11;
            }
            if getsid(None).is_err() {
                return 12;
            }
            0
        }));
    }

    #[test]
    fn errno_rule_defaults_to_eperm() {
        let program = compiled(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getpgid"], "action": "SCMP_ACT_ERRNO"}]
        }));
        assert_exited_ok(in_child(|| match (program.load(), getpgid(None)) {
            (Ok(None), Err(Errno::EPERM)) => 0,
            _ => 10,
        }));
    }

    #[test]
    fn arg_rule_matches_socket_domain() {
        let program = compiled(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{
                "names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EACCES,
                "args": [{"index": 0, "value": libc::AF_INET, "op": "SCMP_CMP_EQ"}]
            }]
        }));
        assert_exited_ok(in_child(|| {
            if program.load().is_err() {
                return 10;
            }
            let inet = socket(
                AddressFamily::Inet,
                SockType::Stream,
                SockFlag::SOCK_CLOEXEC,
                None,
            );
            if !matches!(inet, Err(Errno::EACCES)) {
                return 11;
            }
            let unix = socket(
                AddressFamily::Unix,
                SockType::Stream,
                SockFlag::SOCK_CLOEXEC,
                None,
            );
            if unix.is_err() {
                return 12;
            }
            0
        }));
    }

    #[test]
    fn masked_eq_ignores_bits_outside_the_mask() {
        // Deny datagram sockets whatever the SOCK_CLOEXEC/SOCK_NONBLOCK bits.
        let program = compiled(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{
                "names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPROTONOSUPPORT,
                "args": [{"index": 1, "value": 0xf, "valueTwo": libc::SOCK_DGRAM, "op": "SCMP_CMP_MASKED_EQ"}]
            }]
        }));
        assert_exited_ok(in_child(|| {
            if program.load().is_err() {
                return 10;
            }
            let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
            let dgram = socket(AddressFamily::Unix, SockType::Datagram, flags, None);
            if !matches!(dgram, Err(Errno::EPROTONOSUPPORT)) {
                return 11;
            }
            if socket(AddressFamily::Unix, SockType::Stream, flags, None).is_err() {
                return 12;
            }
            0
        }));
    }

    #[test]
    fn conditions_on_one_index_become_alternatives() {
        // (a0 == AF_INET || a0 == AF_INET6) && (a1 & 0xf) == SOCK_DGRAM
        let program = compiled(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{
                "names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EACCES,
                "args": [
                    {"index": 0, "value": libc::AF_INET, "op": "SCMP_CMP_EQ"},
                    {"index": 1, "value": 0xf, "valueTwo": libc::SOCK_DGRAM, "op": "SCMP_CMP_MASKED_EQ"},
                    {"index": 0, "value": libc::AF_INET6, "op": "SCMP_CMP_EQ"}
                ]
            }]
        }));
        assert_exited_ok(in_child(|| {
            if program.load().is_err() {
                return 10;
            }
            let cases = [
                (AddressFamily::Inet, SockType::Datagram, true),
                (AddressFamily::Inet6, SockType::Datagram, true),
                (AddressFamily::Inet, SockType::Stream, false),
                (AddressFamily::Inet6, SockType::Stream, false),
                (AddressFamily::Unix, SockType::Datagram, false),
            ];
            for (code, (family, ty, denied)) in (11..).zip(cases) {
                let ret = socket(family, ty, SockFlag::SOCK_CLOEXEC, None);
                if matches!(ret, Err(Errno::EACCES)) != denied {
                    return code;
                }
            }
            0
        }));
    }

    #[test]
    fn kill_process_kills_with_sigsys() {
        let program = compiled(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getpgid"], "action": "SCMP_ACT_KILL_PROCESS"}]
        }));
        let status = in_child(|| {
            if !no_core_dumps() || program.load().is_err() {
                return 10;
            }
            let _ = getpgid(None);
            11
        });
        assert!(
            matches!(status, WaitStatus::Signaled(_, Signal::SIGSYS, _)),
            "{status:?}"
        );
    }

    #[test]
    fn kill_and_trap_end_single_threaded_child_with_sigsys() {
        for action in ["SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP"] {
            let program = compiled(json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["getpgid"], "action": action}]
            }));
            let status = in_child(|| {
                if !no_core_dumps() || program.load().is_err() {
                    return 10;
                }
                let _ = getpgid(None);
                11
            });
            assert!(
                matches!(status, WaitStatus::Signaled(_, Signal::SIGSYS, _)),
                "{action}: {status:?}"
            );
        }
    }

    #[test]
    fn trace_without_tracer_fails_with_enosys() {
        let program = compiled(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getpgid"], "action": "SCMP_ACT_TRACE", "errnoRet": 7}]
        }));
        assert_exited_ok(in_child(|| match (program.load(), getpgid(None)) {
            (Ok(None), Err(Errno::ENOSYS)) => 0,
            _ => 10,
        }));
    }

    #[test]
    fn default_errno_with_allow_list() {
        let program = compiled(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": libc::ENOTSUP,
            "syscalls": [
                {"names": ["getpgid", "exit_group", "exit", "rt_sigreturn"], "action": "SCMP_ACT_ALLOW"},
                // Same action as the default: dropped, not an error.
                {"names": ["getsid"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOTSUP}
            ]
        }));
        assert_exited_ok(in_child(|| {
            if program.load().is_err() {
                return 10;
            }
            if getpgid(None).is_err() {
                return 11;
            }
            if !matches!(dup(std::io::stdin().as_fd()), Err(Errno::ENOTSUP)) {
                return 12;
            }
            if getsid(None) != Err(Errno::ENOTSUP) {
                return 13;
            }
            0
        }));
    }

    #[test]
    fn log_action_allows_the_call() {
        let program = compiled(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_TSYNC"],
            "syscalls": [{"names": ["getpgid"], "action": "SCMP_ACT_LOG"}]
        }));
        assert_eq!(program.flags(), sys::SECCOMP_FILTER_FLAG_LOG);
        assert_exited_ok(in_child(|| match (program.load(), getpgid(None)) {
            (Ok(None), Ok(_)) => 0,
            _ => 10,
        }));
    }

    #[test]
    fn wait_killable_recv_without_notify_is_dropped() {
        let program = compiled(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
            "syscalls": [{"names": ["getpgid"], "action": "SCMP_ACT_ERRNO"}]
        }));
        assert_eq!(program.flags(), sys::SECCOMP_FILTER_FLAG_SPEC_ALLOW);
        assert_exited_ok(in_child(|| match program.load() {
            Ok(None) => 0,
            _ => 10,
        }));
    }

    /// `pidfd_getfd(pidfd_open(pid), fd)`: copies a child's fd into this process.
    fn steal_fd(pid: Pid, fd: i32) -> OwnedFd {
        // SAFETY: pidfd_open takes plain integers and returns a new fd or -1.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
        let pidfd = i32::try_from(pidfd).expect("pidfd_open");
        assert!(pidfd >= 0, "pidfd_open: {}", Errno::last());
        // SAFETY: pidfd_open just returned this fd and nothing else owns it.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
        // SAFETY: pidfd_getfd takes plain integers and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
        let fd = i32::try_from(fd).expect("pidfd_getfd");
        assert!(fd >= 0, "pidfd_getfd: {}", Errno::last());
        // SAFETY: pidfd_getfd just installed this fd and nothing else owns it.
        unsafe { OwnedFd::from_raw_fd(fd) }
    }

    #[test]
    fn notify_returns_listener_and_supervisor_replies() {
        let program = compiled(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
            "listenerPath": "/run/agent.sock",
            "listenerMetadata": "tag=test",
            "syscalls": [{"names": ["getpgid"], "action": "SCMP_ACT_NOTIFY"}]
        }));
        assert!(program.needs_listener());
        assert_eq!(
            program.flags(),
            sys::SECCOMP_FILTER_FLAG_NEW_LISTENER | sys::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
        );
        assert_eq!(program.listener_path(), Some(Path::new("/run/agent.sock")));
        assert_eq!(program.listener_metadata(), Some("tag=test"));

        let (fd_rx, fd_tx) = pipe().expect("pipe");
        let child = fork_child(|| {
            let Ok(Some(listener)) = program.load() else {
                return 10;
            };
            // Tell the parent which fd to copy, then make the notified call.
            if write(&fd_tx, &listener.as_raw_fd().to_ne_bytes()) != Ok(4) {
                return 11;
            }
            match getpgid(None) {
                Ok(pid) if pid.as_raw() == 4242 => 0,
                _ => 12,
            }
        });
        let mut guard = ChildGuard(Some(child));
        drop(fd_tx);
        let mut number = [0_u8; 4];
        assert_eq!(read(&fd_rx, &mut number), Ok(4));
        let listener = steal_fd(child, i32::from_ne_bytes(number));

        let req = ScmpNotifReq::receive(listener.as_raw_fd()).expect("notification");
        assert_eq!(req.pid, u32::try_from(child.as_raw()).expect("pid"));
        assert_eq!(
            req.data.syscall,
            ScmpSyscall::from_name("getpgid").expect("getpgid")
        );
        ScmpNotifResp::new_val(req.id, 4242, ScmpNotifRespFlags::empty())
            .respond(listener.as_raw_fd())
            .expect("respond");

        guard.0 = None;
        assert_exited_ok(waitpid(child, None).expect("waitpid"));
    }

    #[test]
    fn unknown_syscall_name_is_skipped() {
        let program = compiled(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["no_such_syscall_nucleus", "getpgid"], "action": "SCMP_ACT_ERRNO"}]
        }));
        assert_exited_ok(in_child(|| match (program.load(), getpgid(None)) {
            (Ok(None), Err(Errno::EPERM)) => 0,
            _ => 10,
        }));
    }

    #[test]
    fn rule_equal_to_default_is_skipped() {
        let program = compiled(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getpgid"], "action": "SCMP_ACT_ALLOW"}]
        }));
        assert!(!program.instructions().is_empty());
    }

    fn parse_error(value: serde_json::Value) -> String {
        parse_profile(&value.to_string(), FIELD)
            .expect_err("profile must be rejected")
            .to_string()
    }

    #[test]
    fn bad_strings_name_the_field() {
        let rule = json!({"names": ["getpgid"], "action": "SCMP_ACT_ALLOW"});
        let mut bad_op = rule.clone();
        bad_op["args"] = json!([{"index": 0, "value": 1, "op": "SCMP_CMP_FOO"}]);
        assert_eq!(
            parse_error(json!({
                "defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [rule, rule, rule, bad_op]
            })),
            "linux.seccomp.syscalls[3].args[0].op: unknown operator `SCMP_CMP_FOO`"
        );
        assert_eq!(
            parse_error(json!({"defaultAction": "SCMP_ACT_FOO"})),
            "linux.seccomp.defaultAction: unknown action `SCMP_ACT_FOO`"
        );
        assert_eq!(
            parse_error(json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["getpgid"], "action": "SCMP_ACT_DENY"}]
            })),
            "linux.seccomp.syscalls[0].action: unknown action `SCMP_ACT_DENY`"
        );
        assert_eq!(
            parse_error(
                json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_VAX"]})
            ),
            "linux.seccomp.architectures[1]: unknown architecture `SCMP_ARCH_VAX`"
        );
        assert_eq!(
            parse_error(
                json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_FAST"]})
            ),
            "linux.seccomp.flags[0]: unknown flag `SECCOMP_FILTER_FLAG_FAST`"
        );
        // Anything else serde rejects still names the profile.
        assert!(parse_error(json!({"defaultAction": 3})).starts_with("linux.seccomp: "));
    }

    #[test]
    fn bad_values_name_the_field() {
        let compile_error = |value| compile(&profile(value)).expect_err("rejected").to_string();
        assert_eq!(
            compile_error(json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]
            })),
            "linux.seccomp.syscalls[0].errnoRet: `70000` does not fit in 16 bits"
        );
        assert_eq!(
            compile_error(json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["getpgid"], "action": "SCMP_ACT_ERRNO",
                              "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                                       {"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]
            })),
            "linux.seccomp.syscalls[0].args[1].index: argument index `6` is out of range 0..=5"
        );
        assert_eq!(
            compile_error(json!({"defaultAction": "SCMP_ACT_NOTIFY"})),
            "linux.seccomp.defaultAction: `SCMP_ACT_NOTIFY` cannot be the default action"
        );
        assert_eq!(
            compile_error(json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mkdir", "write"], "action": "SCMP_ACT_NOTIFY"}]
            })),
            "linux.seccomp.syscalls[0].names[1]: `SCMP_ACT_NOTIFY` cannot be used for `write`: the init calls it after the filter is loaded"
        );
    }

    #[test]
    fn expand_args_is_a_product_over_indices() {
        let arg = |index: usize, value: u64| {
            oci_spec::runtime::LinuxSeccompArgBuilder::default()
                .index(index)
                .value(value)
                .op(LinuxSeccompOperator::ScmpCmpEq)
                .build()
                .expect("arg")
        };
        assert_eq!(expand_args(&[], 0).expect("empty"), vec![Vec::new()]);
        let sets = expand_args(&[arg(0, 1), arg(1, 5), arg(0, 2), arg(2, 7), arg(2, 8)], 0)
            .expect("expand");
        assert_eq!(sets.len(), 4);
        assert!(sets.iter().all(|set| set.len() == 3));
    }

    #[test]
    fn send_to_listener_delivers_fd_and_state() {
        use nix::sys::socket::{recvmsg, ControlMessageOwned};
        use std::io::IoSliceMut;
        use std::os::unix::net::UnixListener;

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        // Any fd will do to check SCM_RIGHTS; compare inodes on the far side.
        let stand_in = memfd_create(c"notify-stand-in", MFdFlags::MFD_CLOEXEC).expect("memfd");
        let state =
            r#"{"ociVersion":"1.2.0","id":"c1","status":"creating","pid":77,"bundle":"/b"}"#;

        send_to_listener(&path, state, 77, Some("tag=x"), stand_in.as_fd()).expect("send");

        let (conn, _) = listener.accept().expect("accept");
        let mut buf = vec![0_u8; 65536];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let (len, passed) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = recvmsg::<UnixAddr>(
                conn.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::empty(),
            )
            .expect("recvmsg");
            let mut passed = Vec::new();
            for c in msg.cmsgs().expect("cmsgs") {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    passed.extend(fds);
                }
            }
            (msg.bytes, passed)
        };
        assert_eq!(passed.len(), 1);
        // SAFETY: SCM_RIGHTS just installed this fd in our table; we own it.
        let passed = unsafe { OwnedFd::from_raw_fd(passed[0]) };
        let ours = nix::sys::stat::fstat(&stand_in).expect("fstat");
        let theirs = nix::sys::stat::fstat(&passed).expect("fstat");
        assert_eq!((ours.st_dev, ours.st_ino), (theirs.st_dev, theirs.st_ino));

        let message: serde_json::Value = serde_json::from_slice(&buf[..len]).expect("json");
        assert_eq!(
            message,
            json!({
                "ociVersion": "1.2.0",
                "fds": ["seccompFd"],
                "pid": 77,
                "metadata": "tag=x",
                "state": serde_json::from_str::<serde_json::Value>(state).expect("state")
            })
        );
    }

    #[test]
    fn send_to_listener_names_the_path_on_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("missing.sock");
        let fd = memfd_create(c"x", MFdFlags::MFD_CLOEXEC).expect("memfd");
        let err = send_to_listener(&path, "{}", 1, None, fd.as_fd()).expect_err("no agent");
        assert_eq!(
            err.to_string(),
            format!(
                "failed to connect with seccomp agent specified in the seccomp profile at `{}` (linux.seccomp.listenerPath)",
                path.display()
            )
        );
    }

    /// Not a benchmark: prints how long a ~300-syscall allow list takes.
    #[test]
    fn compile_time_300_syscalls() {
        let names: Vec<String> = (0..1000)
            .filter_map(|nr| ScmpSyscall::from_raw_syscall(nr).get_name().ok())
            .take(300)
            .collect();
        let profile = profile(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [
                {"names": names, "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                          {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}
            ]
        }));
        let mut times: Vec<Duration> = (0..20)
            .map(|_| {
                let start = Instant::now();
                let program = compile(&profile).expect("compile");
                assert!(program.instructions().len() > 300);
                start.elapsed()
            })
            .collect();
        times.sort();
        let program = compile(&profile).expect("compile");
        println!(
            "seccomp compile, {} names x 3 arches: min {:?}, median {:?}, max {:?}, {} instructions",
            names.len(),
            times[0],
            times[times.len() / 2],
            times[times.len() - 1],
            program.instructions().len()
        );
    }
}
