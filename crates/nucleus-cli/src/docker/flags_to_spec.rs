//! The one place `nucleus run`'s flags become a `SandboxSpec` (plus the
//! run's options). Values are parsed by `nucleus_sandbox::parse`, shared
//! with every front end; a refused value is a `FlagError` naming the flag
//! as typed and the value.

use super::run_flags::RunFlags;
use nucleus_sandbox::error::Field;
use nucleus_sandbox::run::RunOptions;
use nucleus_sandbox::spec::{Context, NetOptions, PolicyFile, Resources, Security};
use nucleus_sandbox::userns::UserNamespace;
use nucleus_sandbox::{parse, RootfsSource, SandboxError, SandboxSpec};
use std::fmt;
use std::path::PathBuf;

/// A flag value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagError {
    pub flag: String,
    pub value: String,
    pub reason: String,
}

impl FlagError {
    pub fn new(flag: &str, value: impl Into<String>, reason: impl Into<String>) -> Self {
        FlagError {
            flag: flag.to_string(),
            value: value.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for FlagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: invalid value `{}`: {}",
            self.flag, self.value, self.reason
        )
    }
}

impl std::error::Error for FlagError {}

/// The flag, as typed, that sets `field`.
pub fn flag_of(field: &Field) -> String {
    let s = match field {
        Field::EnvFile {
            path,
            line: Some(n),
        } => return format!("--env-file {}:{n}", path.display()),
        Field::EnvFile { line: None, .. } => "--env-file",
        Field::Name => "--name",
        Field::Image => "IMAGE",
        Field::Rootfs => "--rootfs",
        Field::Command => "CMD",
        Field::Tty => "-t/--tty",
        Field::Keep => "--keep",
        Field::Env => "-e/--env",
        Field::Workdir => "-w/--workdir",
        Field::Hostname => "--hostname",
        Field::User => "-u/--user",
        Field::GroupAdd => "--group-add",
        Field::Volume => "-v/--volume",
        Field::Tmpfs => "--tmpfs",
        Field::Context => "--context",
        Field::ContextMode => "--context-mode",
        Field::Secret => "--secret",
        Field::Memory => "--memory",
        Field::MemorySwap => "--memory-swap",
        Field::Cpus => "--cpus",
        Field::CpuWeight => "--cpu-weight",
        Field::Pids => "--pids",
        Field::CgroupParent => "--cgroup-parent",
        Field::IoLimit => "--io-limit",
        Field::Ulimit => "--ulimit",
        Field::Timeout => "--timeout",
        Field::CapAdd => "--cap-add",
        Field::CapDrop => "--cap-drop",
        Field::SeccompProfile => "--seccomp-profile",
        Field::SeccompProfileSha256 => "--seccomp-profile-sha256",
        Field::CapsPolicy => "--caps-policy",
        Field::CapsPolicySha256 => "--caps-policy-sha256",
        Field::LandlockPolicy => "--landlock-policy",
        Field::LandlockPolicySha256 => "--landlock-policy-sha256",
        Field::Network => "--network",
        Field::Publish => "-p/--publish",
        Field::PublishAll => "-P/--publish-all",
        Field::PrivatePort => "PRIVATE_PORT",
        Field::EgressAllow => "--egress-allow",
        Field::EgressDeny => "--egress-deny",
        Field::EgressDenyAll => "--egress-deny-all",
        Field::EgressDomain => "--egress-domain",
        Field::Dns => "--dns",
        Field::DnsSearch => "--dns-search",
        Field::AddHost => "--add-host",
        Field::Runtime => "--runtime",
        Field::GvisorPlatform => "--gvisor-platform",
        Field::Userns => "--userns",
        Field::UidMap => "--uidmap",
        Field::GidMap => "--gidmap",
    };
    s.to_string()
}

/// A library error about a bad value, said with the flag; `None` for other errors.
pub fn as_flag_error(e: &SandboxError) -> Option<FlagError> {
    match e {
        SandboxError::InvalidValue {
            field,
            value,
            reason,
        } => Some(FlagError::new(&flag_of(field), value, reason)),
        SandboxError::ClaimName { name, source } => {
            Some(FlagError::new("--name", name, source.to_string()))
        }
        _ => None,
    }
}

fn flag(e: SandboxError) -> FlagError {
    as_flag_error(&e).unwrap_or_else(|| FlagError::new("run", "", e.to_string()))
}

/// A policy file flag and its pin.
fn policy(
    file: &Option<PathBuf>,
    pin: &Option<String>,
    flag: &str,
) -> Result<Option<PolicyFile>, FlagError> {
    match (file, pin) {
        (None, Some(p)) => Err(FlagError::new(
            &format!("{flag}-sha256"),
            p,
            format!("needs {flag}"),
        )),
        (None, None) => Ok(None),
        (Some(path), pin) => Ok(Some(PolicyFile {
            path: path.clone(),
            sha256: pin.clone(),
        })),
    }
}

/// Translates the flags; `host_env` answers `-e KEY` without a value;
/// `rootless` picks the user namespace's defaults.
pub fn to_spec(
    f: &RunFlags,
    host_env: &dyn Fn(&str) -> Option<String>,
    rootless: bool,
) -> Result<(SandboxSpec, RunOptions), FlagError> {
    let opts = RunOptions {
        detach: f.detach,
        rm: f.rm,
        keep: f.keep,
        interactive: f.interactive,
    };
    // `-- CMD`, or with --rootfs the positional words; else the first word is an image.
    let (rootfs, command) = match (&f.rootfs, f.command_follows, f.args.split_first()) {
        (Some(dir), _, _) => (RootfsSource::Directory(dir.clone()), f.args.clone()),
        // `IMAGE -- CMD`: clap keeps the `--` once positionals have begun.
        (None, false, Some((image, rest))) => {
            let rest = rest.strip_prefix(&["--".to_string()]).unwrap_or(rest);
            (RootfsSource::Image(image.clone()), rest.to_vec())
        }
        (None, _, _) => (RootfsSource::HostDerived, f.args.clone()),
    };
    let mut env = Vec::new();
    for path in &f.env_file {
        env.extend(parse::read_env_file(path, host_env).map_err(flag)?);
    }
    for e in &f.env {
        env.extend(parse::env_entry(Field::Env, e, host_env).map_err(flag)?);
    }
    let context = match (&f.context, f.context_mode.as_deref()) {
        (None, Some(m)) => return Err(FlagError::new("--context-mode", m, "needs --context")),
        (None, None) => None,
        (Some(dir), mode) => Some(Context {
            source: dir.clone(),
            mode: parse::context_mode(mode.unwrap_or("copy")).map_err(flag)?,
        }),
    };
    let opt = |v: &Option<String>, p: fn(&str) -> nucleus_sandbox::error::Result<i64>| {
        v.as_deref().map(p).transpose().map_err(flag)
    };
    let resources = Resources {
        memory: opt(&f.memory, parse::memory)?,
        memory_swap: opt(&f.memory_swap, parse::memory_swap)?,
        cpus: f
            .cpus
            .as_deref()
            .map(parse::cpus)
            .transpose()
            .map_err(flag)?,
        cpu_weight: f
            .cpu_weight
            .as_deref()
            .map(parse::cpu_weight)
            .transpose()
            .map_err(flag)?,
        pids: opt(&f.pids, parse::pids)?,
        io_limits: f
            .io_limit
            .iter()
            .map(|s| parse::io_limit(s))
            .collect::<Result<_, _>>()
            .map_err(flag)?,
        cgroup_parent: f
            .cgroup_parent
            .as_deref()
            .map(parse::cgroup_parent)
            .transpose()
            .map_err(flag)?,
    };
    let security = Security {
        cap_add: f.cap_add.clone(),
        cap_drop: f.cap_drop.clone(),
        seccomp_profile: policy(
            &f.seccomp_profile,
            &f.seccomp_profile_sha256,
            "--seccomp-profile",
        )?,
        caps_policy: policy(&f.caps_policy, &f.caps_policy_sha256, "--caps-policy")?,
        landlock_policy: policy(
            &f.landlock_policy,
            &f.landlock_policy_sha256,
            "--landlock-policy",
        )?,
        allow_degraded_security: f.allow_degraded_security,
        allow_host_network: f.allow_host_network,
    };
    let spec = SandboxSpec {
        userns: UserNamespace::default(),
        name: f.name.clone(),
        rootfs,
        read_only: f.read_only,
        entrypoint: f.entrypoint.clone(),
        command,
        tty: f.tty,
        env,
        workdir: f.workdir.clone(),
        hostname: f.hostname.clone(),
        user: f.user.clone(),
        group_add: f.group_add.clone(),
        volumes: f
            .volume
            .iter()
            .map(|v| parse::volume(v))
            .collect::<Result<_, _>>()
            .map_err(flag)?,
        tmpfs: f
            .tmpfs
            .iter()
            .map(|t| parse::tmpfs(t))
            .collect::<Result<_, _>>()
            .map_err(flag)?,
        context,
        secrets: f
            .secret
            .iter()
            .map(|s| parse::secret(s))
            .collect::<Result<_, _>>()
            .map_err(flag)?,
        resources,
        ulimits: f
            .ulimit
            .iter()
            .map(|u| parse::ulimit(u))
            .collect::<Result<_, _>>()
            .map_err(flag)?,
        timeout: f
            .timeout
            .as_deref()
            .map(parse::timeout)
            .transpose()
            .map_err(flag)?,
        security,
        network: f
            .network
            .as_deref()
            .map(parse::network)
            .transpose()
            .map_err(flag)?
            .unwrap_or_default(),
        net: NetOptions {
            publish: f.publish.clone(),
            publish_all: f.publish_all,
            egress_allow: f.egress_allow.clone(),
            egress_deny: f.egress_deny.clone(),
            egress_deny_all: f.egress_deny_all,
            egress_domain: f.egress_domain.clone(),
            dns: f.dns.clone(),
            dns_search: f.dns_search.clone(),
            add_host: f.add_host.clone(),
        },
        runtime: parse::runtime(
            f.runtime.as_deref().unwrap_or("native"),
            f.gvisor_platform.as_deref(),
            f.gvisor_runsc.as_deref(),
        )
        .map_err(flag)?,
    };
    let userns = UserNamespace {
        mode: parse::userns_mode(f.userns.as_deref(), rootless).map_err(flag)?,
        uid_map: f
            .uidmap
            .iter()
            .map(|m| parse::id_map(Field::UidMap, m))
            .collect::<Result<_, _>>()
            .map_err(flag)?,
        gid_map: f
            .gidmap
            .iter()
            .map(|m| parse::id_map(Field::GidMap, m))
            .collect::<Result<_, _>>()
            .map_err(flag)?,
    };
    let spec = SandboxSpec { userns, ..spec };
    opts.validate(&spec).map_err(flag)?;
    spec.validate().map_err(|e| with_typed_value(flag(e), f))?;
    Ok((spec, opts))
}

/// A cross-field error names the value as typed (`1g`, not its bytes).
fn with_typed_value(mut e: FlagError, f: &RunFlags) -> FlagError {
    let typed = match e.flag.as_str() {
        "--memory" => &f.memory,
        "--memory-swap" => &f.memory_swap,
        "--cpus" => &f.cpus,
        "--cpu-weight" => &f.cpu_weight,
        "--timeout" => &f.timeout,
        _ => &None,
    };
    if let Some(v) = typed {
        e.value = v.clone();
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        f: RunFlags,
    }

    fn flags(args: &[&str]) -> RunFlags {
        let marker = args.contains(&"--").then_some("--__command-follows");
        T::try_parse_from(
            std::iter::once("run")
                .chain(marker)
                .chain(args.iter().copied()),
        )
        .unwrap()
        .f
    }

    fn spec(args: &[&str]) -> Result<(SandboxSpec, RunOptions), FlagError> {
        to_spec(
            &flags(args),
            &|k| (k == "FROM_HOST").then(|| "yes".to_string()),
            false,
        )
    }

    #[test]
    fn flags_become_the_spec() {
        let (s, o) = spec(&[
            "-d",
            "--rm",
            "--name",
            "web",
            "-e",
            "FROM_HOST",
            "-e",
            "UNSET",
            "-v",
            "/h:/v:ro",
            "--memory",
            "32m",
            "--pids",
            "-1",
            "--",
            "sh",
        ])
        .unwrap();
        assert!(o.detach && o.rm);
        assert_eq!(s.name.as_deref(), Some("web"));
        assert_eq!(s.rootfs, RootfsSource::HostDerived);
        assert_eq!(s.command, ["sh"]);
        assert_eq!(s.env, ["FROM_HOST=yes"]);
        assert!(s.volumes[0].read_only);
        assert_eq!(s.resources.memory, Some(32 << 20));
        assert_eq!(s.resources.pids, Some(-1));
        let (r, _) = spec(&["--rootfs", "/img", "sh", "-c", "echo"]).unwrap();
        assert_eq!(
            (r.rootfs, r.command),
            (
                RootfsSource::Directory("/img".into()),
                vec!["sh".to_string(), "-c".into(), "echo".into()]
            )
        );
        let (i, _) = spec(&["alpine", "ls"]).unwrap();
        assert_eq!(
            (i.rootfs, i.command),
            (RootfsSource::Image("alpine".into()), vec!["ls".to_string()])
        );
    }

    #[test]
    fn bad_values_name_the_flag_and_value() {
        for (args, flag, value) in [
            (&["--memory", "lots"][..], "--memory", "lots"),
            (&["--memory-swap", "1g"][..], "--memory-swap", "1g"),
            (&["--cpus", "-1"][..], "--cpus", "-1"),
            (&["--cpu-weight", "0"][..], "--cpu-weight", "0"),
            (&["--pids", "x"][..], "--pids", "x"),
            (&["--timeout", "0"][..], "--timeout", "0"),
            (&["--ulimit", "nofile"][..], "--ulimit", "nofile"),
            (&["--ulimit", "bogus=1"][..], "--ulimit", "bogus=1"),
            (&["-v", "rel:/x"][..], "-v/--volume", "rel:/x"),
            (&["-v", "/a:/b:rx"][..], "-v/--volume", "/a:/b:rx"),
            (&["--tmpfs", "/t:big"][..], "--tmpfs", "/t:big"),
            (&["--cap-add", "fly"][..], "--cap-add", "fly"),
            (&["--context-mode", "copy"][..], "--context-mode", "copy"),
            (&["--hostname", "a/b"][..], "--hostname", "a/b"),
            (&["--name", "a/b"][..], "--name", "a/b"),
            (&["-e", "=x"][..], "-e/--env", "=x"),
            (&["--secret", "/s:../x"][..], "--secret", "/s:../x"),
            (&["--network", "host"][..], "--network", "host"),
            (
                &["--landlock-policy-sha256", "abc"][..],
                "--landlock-policy-sha256",
                "abc",
            ),
            (&["-w", "rel"][..], "-w/--workdir", "rel"),
            (&["-d", "-t"][..], "-t/--tty", "true"),
            (&["-d", "--keep"][..], "--keep", "true"),
        ] {
            let e = spec(args).unwrap_err();
            assert_eq!(
                (e.flag.as_str(), e.value.as_str()),
                (flag, value),
                "{args:?}"
            );
            assert!(!e.to_string().contains('\n'));
        }
    }
}
