//! The workload's identity and limits: rlimits, user and groups, the five
//! capability sets, no_new_privs, and the argv/env/executable for execve.
//! `ProcessPlan::from_spec` runs in the parent and validates everything;
//! the `apply_*` functions run in the child and only execute the plan.

use crate::error::{EngineError, Result};
use crate::launch::{StepContext, StepError};
use caps::{CapSet, Capability, CapsHashSet};
use nix::errno::Errno;
use nix::sys::resource::{setrlimit, Resource};
use nix::unistd::{access, setgroups, setresgid, setresuid, AccessFlags, Gid, Uid};
use oci_spec::runtime::{Capabilities, PosixRlimitType, Process};
use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One rlimit to set, with its spec name for errors.
#[derive(Debug, Clone)]
pub(crate) struct Rlimit {
    pub name: &'static str,
    pub resource: Resource,
    pub soft: u64,
    pub hard: u64,
}

/// Capability sets to apply. A set the spec leaves out is empty, as in
/// runc and crun: nothing of the runtime's own sets leaks into the workload.
#[derive(Debug, Clone, Default)]
pub(crate) struct CapPlan {
    pub bounding: CapsHashSet,
    pub effective: CapsHashSet,
    pub permitted: CapsHashSet,
    pub inheritable: CapsHashSet,
    pub ambient: CapsHashSet,
}

/// Everything about the process, validated and converted before clone.
#[derive(Debug, Clone)]
pub(crate) struct ProcessPlan {
    pub args: Vec<CString>,
    pub env: Vec<CString>,
    pub path_var: String,
    pub cwd: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub umask: u32,
    pub rlimits: Vec<Rlimit>,
    pub caps: CapPlan,
    pub no_new_privs: bool,
    pub terminal: bool,
    pub oom_score_adj: Option<i32>,
    /// `process.ioPriority` as (class, level).
    pub io_priority: Option<(u32, u32)>,
    /// `linux.personality` as a persona value.
    pub personality: Option<libc::c_ulong>,
    /// Scheduler, CPU affinity and memory policy.
    pub sched: crate::sched::SchedPlan,
}

fn cstring(field: &str, s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| EngineError::invalid(field, s, "contains a NUL byte"))
}

fn caps_of(field: &str, set: &Option<Capabilities>) -> Result<CapsHashSet> {
    let mut out = CapsHashSet::new();
    let Some(set) = set else { return Ok(out) };
    for cap in set {
        let name = format!("CAP_{cap}");
        let parsed = Capability::from_str(&name)
            .map_err(|_| EngineError::invalid(field, &name, "unknown capability"))?;
        out.insert(parsed);
    }
    Ok(out)
}

fn resource_of(t: PosixRlimitType) -> (&'static str, Resource) {
    match t {
        PosixRlimitType::RlimitCpu => ("RLIMIT_CPU", Resource::RLIMIT_CPU),
        PosixRlimitType::RlimitFsize => ("RLIMIT_FSIZE", Resource::RLIMIT_FSIZE),
        PosixRlimitType::RlimitData => ("RLIMIT_DATA", Resource::RLIMIT_DATA),
        PosixRlimitType::RlimitStack => ("RLIMIT_STACK", Resource::RLIMIT_STACK),
        PosixRlimitType::RlimitCore => ("RLIMIT_CORE", Resource::RLIMIT_CORE),
        PosixRlimitType::RlimitRss => ("RLIMIT_RSS", Resource::RLIMIT_RSS),
        PosixRlimitType::RlimitNproc => ("RLIMIT_NPROC", Resource::RLIMIT_NPROC),
        PosixRlimitType::RlimitNofile => ("RLIMIT_NOFILE", Resource::RLIMIT_NOFILE),
        PosixRlimitType::RlimitMemlock => ("RLIMIT_MEMLOCK", Resource::RLIMIT_MEMLOCK),
        PosixRlimitType::RlimitAs => ("RLIMIT_AS", Resource::RLIMIT_AS),
        PosixRlimitType::RlimitLocks => ("RLIMIT_LOCKS", Resource::RLIMIT_LOCKS),
        PosixRlimitType::RlimitSigpending => ("RLIMIT_SIGPENDING", Resource::RLIMIT_SIGPENDING),
        PosixRlimitType::RlimitMsgqueue => ("RLIMIT_MSGQUEUE", Resource::RLIMIT_MSGQUEUE),
        PosixRlimitType::RlimitNice => ("RLIMIT_NICE", Resource::RLIMIT_NICE),
        PosixRlimitType::RlimitRtprio => ("RLIMIT_RTPRIO", Resource::RLIMIT_RTPRIO),
        PosixRlimitType::RlimitRttime => ("RLIMIT_RTTIME", Resource::RLIMIT_RTTIME),
    }
}

impl ProcessPlan {
    pub(crate) fn from_spec(p: &Process) -> Result<ProcessPlan> {
        let args = p
            .args()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, a)| cstring(&format!("process.args[{i}]"), a))
            .collect::<Result<Vec<_>>>()?;
        let env_list = p.env().as_deref().unwrap_or_default();
        let env = env_list
            .iter()
            .enumerate()
            .map(|(i, a)| cstring(&format!("process.env[{i}]"), a))
            .collect::<Result<Vec<_>>>()?;
        let path_var = env_list
            .iter()
            .rev()
            .find_map(|kv| kv.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH)
            .to_string();
        let mut rlimits = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, r) in p
            .rlimits()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let (name, resource) = resource_of(r.typ());
            if !seen.insert(name) {
                return Err(EngineError::invalid(
                    format!("process.rlimits[{i}].type"),
                    name,
                    "rlimit listed twice",
                ));
            }
            if r.soft() > r.hard() {
                return Err(EngineError::invalid(
                    format!("process.rlimits[{i}]"),
                    format!("{name} soft={} hard={}", r.soft(), r.hard()),
                    "soft limit exceeds hard limit",
                ));
            }
            rlimits.push(Rlimit {
                name,
                resource,
                soft: r.soft(),
                hard: r.hard(),
            });
        }
        let c = p.capabilities().as_ref();
        let mut caps = match c {
            None => CapPlan::default(),
            Some(c) => CapPlan {
                bounding: caps_of("process.capabilities.bounding", c.bounding())?,
                effective: caps_of("process.capabilities.effective", c.effective())?,
                permitted: caps_of("process.capabilities.permitted", c.permitted())?,
                inheritable: caps_of("process.capabilities.inheritable", c.inheritable())?,
                ambient: caps_of("process.capabilities.ambient", c.ambient())?,
            },
        };
        // The kernel only raises ambient caps that are permitted and
        // inheritable; like runc, drop the others.
        let dropped: Vec<String> = caps
            .ambient
            .iter()
            .filter(|c| !caps.inheritable.contains(c) || !caps.permitted.contains(c))
            .map(|c| c.to_string())
            .collect();
        if !dropped.is_empty() {
            // Debug, not warn: runc's (and so `nucleus spec`'s) default config
            // lists ambient caps without inheritable ones, and runc is silent.
            tracing::debug!(caps = %dropped.join(","), "ambient capabilities not in the inheritable and permitted sets are ignored");
            caps.ambient.retain(|c| !dropped.contains(&c.to_string()));
        }
        let user = p.user();
        Ok(ProcessPlan {
            args,
            env,
            path_var,
            cwd: p.cwd().clone(),
            uid: user.uid(),
            gid: user.gid(),
            groups: user.additional_gids().clone().unwrap_or_default(),
            umask: user.umask().unwrap_or(0o022),
            rlimits,
            caps,
            no_new_privs: p.no_new_privileges().unwrap_or(false),
            terminal: p.terminal().unwrap_or(false),
            oom_score_adj: p.oom_score_adj(),
            io_priority: match p.io_priority() {
                None => None,
                Some(io) => {
                    let class = match io.class() {
                        oci_spec::runtime::IOPriorityClass::IoprioClassRt => 1,
                        oci_spec::runtime::IOPriorityClass::IoprioClassBe => 2,
                        oci_spec::runtime::IOPriorityClass::IoprioClassIdle => 3,
                    };
                    let level = u32::try_from(io.priority())
                        .ok()
                        .filter(|l| *l <= 7)
                        .ok_or_else(|| {
                            EngineError::invalid(
                                "process.ioPriority.priority",
                                io.priority().to_string(),
                                "must be 0 to 7",
                            )
                        })?;
                    Some((class, level))
                }
            },
            personality: None,
            sched: crate::sched::SchedPlan::from_process(p)?,
        })
    }
}

/// Sets `linux.personality` and `linux.memoryPolicy` on the plan;
/// personality flags are not supported.
pub(crate) fn with_personality(
    mut plan: ProcessPlan,
    spec: &oci_spec::runtime::Spec,
) -> Result<ProcessPlan> {
    plan.sched = std::mem::take(&mut plan.sched).with_memory_policy(spec)?;
    if let Some(p) = spec.linux().as_ref().and_then(|l| l.personality().as_ref()) {
        if p.flags().as_ref().is_some_and(|f| !f.is_empty()) {
            return Err(EngineError::invalid(
                "linux.personality.flags",
                format!("{:?}", p.flags()),
                "personality flags are not supported",
            ));
        }
        plan.personality = Some(match p.domain() {
            oci_spec::runtime::LinuxPersonalityDomain::PerLinux => 0x0000,
            oci_spec::runtime::LinuxPersonalityDomain::PerLinux32 => 0x0008,
        });
    }
    Ok(plan)
}

/// ioPriority, personality, scheduler, affinity and memory policy:
/// settings of the process itself.
pub(crate) fn apply_scheduling(plan: &ProcessPlan) -> Result<(), StepError> {
    if let Some((class, level)) = plan.io_priority {
        nucleus_sys::uts::ioprio_set_self(class, level).step("ioPriority", || {
            format!("ioprio_set class {class} level {level}")
        })?;
    }
    if let Some(persona) = plan.personality {
        nucleus_sys::uts::set_personality(persona)
            .step("personality", || format!("personality {persona:#x}"))?;
    }
    plan.sched.apply()
}

/// setrlimit for each entry; failures name the rlimit and the values.
pub(crate) fn apply_rlimits(plan: &ProcessPlan) -> Result<(), StepError> {
    for r in &plan.rlimits {
        setrlimit(r.resource, r.soft, r.hard).step("rlimits", || {
            format!(
                "setrlimit {} soft={} hard={} (raising a hard limit needs CAP_SYS_RESOURCE)",
                r.name, r.soft, r.hard
            )
        })?;
    }
    Ok(())
}

fn caps_err(step: &'static str, what: &str, e: caps::errors::CapsError) -> StepError {
    StepError::new(step, format!("{what}: {e}"), Errno::last())
}

fn setgroups_denied() -> bool {
    std::fs::read("/proc/self/setgroups").is_ok_and(|s| s.starts_with(b"deny"))
}

/// Switches to the workload's user and groups and sets the capability sets.
/// Order matters: the bounding set is reduced while we still hold
/// CAP_SETPCAP; keepcaps preserves the permitted set across setresuid;
/// effective is narrowed before permitted (it must stay a subset).
pub(crate) fn apply_identity(plan: &ProcessPlan) -> Result<(), StepError> {
    // One PR_CAPBSET_DROP per capability, without first asking the kernel
    // which it supports (`caps::runtime::thread_all_supported` reads each one:
    // 41 more syscalls on the init's path). A capability this kernel does not
    // know is EINVAL: there is nothing to drop.
    for cap in caps::all() {
        if plan.caps.bounding.contains(&cap) {
            continue;
        }
        let set = rustix::thread::CapabilitySet::from_bits_retain(1u64 << cap.index());
        match rustix::thread::remove_capability_from_bounding_set(set) {
            Ok(()) | Err(rustix::io::Errno::INVAL) => {}
            Err(e) => {
                return Err(StepError::new(
                    "capabilities",
                    format!("drop {cap} from bounding"),
                    Errno::from_raw(e.raw_os_error()),
                ))
            }
        }
    }
    nix::sys::prctl::set_keepcaps(true).step("user", || "set keepcaps".into())?;
    let groups: Vec<Gid> = plan.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    match setgroups(&groups) {
        // A user namespace whose gid_map an unprivileged runtime wrote has
        // setgroups denied: the supplementary groups stay the caller's own.
        Err(Errno::EPERM) if groups.is_empty() && setgroups_denied() => {}
        r => r.step("user", || format!("setgroups {:?}", plan.groups))?,
    }
    let gid = Gid::from_raw(plan.gid);
    setresgid(gid, gid, gid).step("user", || format!("setresgid {}", plan.gid))?;
    let uid = Uid::from_raw(plan.uid);
    setresuid(uid, uid, uid).step("user", || format!("setresuid {}", plan.uid))?;
    nix::sys::prctl::set_keepcaps(false).step("user", || "clear keepcaps".into())?;
    let c = &plan.caps;
    for (set, value, name) in [
        (CapSet::Effective, &c.effective, "effective"),
        (CapSet::Permitted, &c.permitted, "permitted"),
        (CapSet::Inheritable, &c.inheritable, "inheritable"),
    ] {
        caps::set(None, set, value)
            .map_err(|e| caps_err("capabilities", &format!("set {name} set"), e))?;
    }
    caps::clear(None, CapSet::Ambient)
        .map_err(|e| caps_err("capabilities", "clear ambient set", e))?;
    for cap in &c.ambient {
        caps::raise(None, CapSet::Ambient, *cap)
            .map_err(|e| caps_err("capabilities", &format!("raise ambient {cap}"), e))?;
    }
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(plan.umask));
    Ok(())
}

/// Finds the executable the way execvp would, inside the container's root,
/// so a missing program is reported at create time rather than lost after start.
pub(crate) fn find_executable(plan: &ProcessPlan) -> Result<CString, StepError> {
    let arg0 = plan
        .args
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    let check = |p: &Path| -> Result<(), Errno> {
        let meta = std::fs::metadata(p)
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::ENOENT)))?;
        if meta.is_dir() || meta.permissions().mode() & 0o111 == 0 {
            return Err(Errno::EACCES);
        }
        access(p, AccessFlags::X_OK)
    };
    if arg0.contains('/') {
        let p = Path::new(&arg0);
        check(p).step("exec", || format!("executable `{arg0}`"))?;
        return CString::new(arg0.clone())
            .map_err(|_| StepError::new("exec", "NUL in path", Errno::EINVAL));
    }
    let mut denied = false;
    for dir in plan.path_var.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(&arg0);
        match check(&candidate) {
            Ok(()) => {
                return CString::new(candidate.into_os_string().into_encoded_bytes())
                    .map_err(|_| StepError::new("exec", "NUL in path", Errno::EINVAL))
            }
            Err(Errno::EACCES) => denied = true,
            Err(_) => {}
        }
    }
    let errno = if denied { Errno::EACCES } else { Errno::ENOENT };
    Err(StepError::new(
        "exec",
        format!("executable file `{arg0}` not found in $PATH"),
        errno,
    ))
}
