//! `SandboxSpec` → OCI spec, table-tested without root.

use super::*;
use crate::agent_root::HostEntry;
use crate::parse;
use crate::spec::{Context, PolicyFile, Resources, Security};
use nucleus_engine::security::landlock::{self as ll, FsAccess};

fn host() -> HostLayout {
    HostLayout {
        system: vec![
            ("usr".into(), HostEntry::Dir),
            ("bin".into(), HostEntry::Symlink("usr/bin".into())),
        ],
        etc: vec![("ld.so.cache".into(), HostEntry::File)],
    }
}

const PASSWD: &str =
    "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000:Alice:/home/alice:/bin/bash\n";
const GROUP: &str = "root:x:0:\nstaff:x:50:\nalice:x:1000:\n";

fn compile_with(
    s: &SandboxSpec,
    policies: &Policies,
    image: Option<ImageRoot<'_>>,
) -> Result<Plan> {
    let host = host();
    let dev = |p: &str| (p == "/dev/sda").then_some((8, 0));
    let seccomp = json!({"defaultAction": "SCMP_ACT_ERRNO"});
    let inp = Inputs {
        id: "0123456789abcdef",
        host: &host,
        passwd: PASSWD,
        group: GROUP,
        host_resolv: "nameserver 10.0.0.1\n",
        device: &dev,
        default_seccomp: &seccomp,
        policies,
        image,
        caller: None,
        cgroup: true,
        nproc_hard: u64::MAX,
    };
    compile(s, &inp)
}

fn plan(s: &SandboxSpec) -> Plan {
    compile_with(s, &Policies::default(), None).unwrap()
}

fn cmd(args: &[&str]) -> SandboxSpec {
    SandboxSpec {
        command: args.iter().map(|a| a.to_string()).collect(),
        ..SandboxSpec::default()
    }
}

fn dests(p: &Plan) -> Vec<String> {
    p.spec["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["destination"].as_str().unwrap().to_string())
        .collect()
}

fn invalid(e: SandboxError) -> (Field, String) {
    match e {
        SandboxError::InvalidValue { field, value, .. } => (field, value),
        other => panic!("{other}"),
    }
}

#[test]
fn agent_defaults_are_locked_down() {
    let p = plan(&cmd(&["/bin/true"]));
    let s = &p.spec;
    assert_eq!(s["process"]["args"], json!(["/bin/true"]));
    assert_eq!(s["root"], json!({"path": "rootfs", "readonly": true}));
    assert_eq!(s["process"]["noNewPrivileges"], json!(true));
    for set in [
        "bounding",
        "effective",
        "permitted",
        "inheritable",
        "ambient",
    ] {
        assert_eq!(s["process"]["capabilities"][set], json!([]), "{set}");
    }
    let ns: Vec<&str> = s["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert_eq!(ns, ["pid", "mount", "uts", "ipc", "cgroup", "network"]);
    assert_eq!(s["linux"]["resources"]["pids"]["limit"], json!(1024));
    assert_eq!(
        s["linux"]["seccomp"]["defaultAction"],
        json!("SCMP_ACT_ERRNO")
    );
    assert_eq!(s["hostname"], json!("0123456789ab"));
    let d = dests(&p);
    for want in [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/sys",
        "/tmp",
        "/run",
        "/usr",
        "/etc/ld.so.cache",
    ] {
        assert!(d.contains(&want.to_string()), "{want} in {d:?}");
    }
    assert!(!d.iter().any(|d| d.contains("shadow") || d == "/bin"));
    assert!(p.symlinks.contains(&("bin".into(), "usr/bin".into())));
    assert!(s["linux"]["maskedPaths"]
        .as_array()
        .unwrap()
        .contains(&json!("/proc/kcore")));
    let policy = ll::parse_policy(s["annotations"][ll::ANNOTATION].as_str().unwrap()).unwrap();
    assert!(policy
        .rules
        .iter()
        .any(|r| r.path == Path::new("/tmp") && r.access.contains(&FsAccess::WriteFile)));
    let files: Vec<&str> = p.files.iter().map(|(f, _)| f.as_str()).collect();
    assert!(files.contains(&"etc/passwd") && files.contains(&"etc/resolv.conf"));
    assert!(p.timeout.is_none());
}

#[test]
fn no_command_means_sh_and_image_needs_a_provider() {
    assert_eq!(
        plan(&SandboxSpec::default()).spec["process"]["args"],
        json!(["/bin/sh"])
    );
    let s = SandboxSpec {
        rootfs: RootfsSource::Image("alpine".into()),
        ..SandboxSpec::default()
    };
    let e = compile_with(&s, &Policies::default(), None).unwrap_err();
    assert!(e.to_string().contains("`alpine`"));
    assert_eq!(invalid(e), (Field::Image, "alpine".into()));
}

#[test]
fn image_config_gives_the_defaults() {
    let config = ImageConfig {
        env: vec!["PATH=/img/bin".into(), "LANG=C".into()],
        entrypoint: vec!["/entry".into()],
        cmd: vec!["serve".into()],
        user: Some("alice".into()),
        working_dir: Some("/app".into()),
        labels: [("org.example.role".to_string(), "web".to_string())].into(),
        ..ImageConfig::default()
    };
    let root = Path::new("/images/merged");
    let mut s = SandboxSpec {
        rootfs: RootfsSource::Image("web:1".into()),
        env: vec!["LANG=fr".into()],
        ..SandboxSpec::default()
    };
    let p = compile_with(
        &s,
        &Policies::default(),
        Some(ImageRoot {
            rootfs: root,
            config: &config,
            overlay: None,
        }),
    )
    .unwrap();
    assert_eq!(
        p.spec["root"],
        json!({"path": "/images/merged", "readonly": false})
    );
    assert_eq!(p.spec["process"]["args"], json!(["/entry", "serve"]));
    assert_eq!(p.spec["process"]["cwd"], json!("/app"));
    assert_eq!(p.spec["process"]["user"]["uid"], json!(1000));
    let env: Vec<&str> = p.spec["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"PATH=/img/bin") && env.contains(&"LANG=fr") && !env.contains(&"LANG=C"),
        "{env:?}"
    );
    assert_eq!(p.spec["annotations"]["org.example.role"], json!("web"));
    assert!(!p.generated_root);
    // The sandbox's own command replaces the image's cmd, not its entrypoint.
    s.command = vec!["check".into()];
    let p = compile_with(
        &s,
        &Policies::default(),
        Some(ImageRoot {
            rootfs: root,
            config: &config,
            overlay: None,
        }),
    )
    .unwrap();
    assert_eq!(p.spec["process"]["args"], json!(["/entry", "check"]));
}

#[test]
fn env_user_and_workdir() {
    let s = SandboxSpec {
        env: vec!["K=V".into(), "A=1".into(), "A=override".into()],
        user: Some("alice:staff".into()),
        group_add: vec!["1000".into()],
        workdir: Some("/work".into()),
        ..cmd(&["id"])
    };
    let p = plan(&s);
    let env: Vec<&str> = p.spec["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"K=V") && env.contains(&"A=override") && !env.contains(&"A=1"),
        "{env:?}"
    );
    assert!(env.contains(&"HOME=/tmp"));
    assert_eq!(
        p.spec["process"]["user"],
        json!({"uid": 1000, "gid": 50, "additionalGids": [1000]})
    );
    assert_eq!((p.uid, p.gid), (1000, 50));
    assert_eq!(p.spec["process"]["cwd"], json!("/work"));
    let passwd = &p
        .files
        .iter()
        .find(|(f, _)| f.ends_with("passwd"))
        .unwrap()
        .1;
    assert!(passwd.contains("alice:x:1000:50::/tmp:/bin/sh") && !passwd.contains("/bin/bash"));
    let err = |s: SandboxSpec| invalid(compile_with(&s, &Policies::default(), None).unwrap_err());
    assert_eq!(
        err(SandboxSpec {
            user: Some("mallory".into()),
            ..SandboxSpec::default()
        }),
        (Field::User, "mallory".into())
    );
    assert_eq!(
        err(SandboxSpec {
            user: Some("alice:nogroup2".into()),
            ..SandboxSpec::default()
        }),
        (Field::User, "nogroup2".into())
    );
    assert_eq!(
        err(SandboxSpec {
            workdir: Some("rel".into()),
            ..SandboxSpec::default()
        }),
        (Field::Workdir, "rel".into())
    );
}

#[test]
fn volumes_tmpfs_context_and_secrets() {
    let s = SandboxSpec {
        volumes: vec![
            parse::volume("/h:/vol").unwrap(),
            parse::volume("/r:/ro:ro").unwrap(),
        ],
        tmpfs: vec![parse::tmpfs("/scratch:64m").unwrap()],
        context: Some(Context {
            source: "/ctx".into(),
            mode: ContextMode::Copy,
        }),
        secrets: vec![
            parse::secret("/s/token").unwrap(),
            parse::secret("/s/k:api").unwrap(),
        ],
        ..cmd(&["true"])
    };
    let p = plan(&s);
    let m = p.spec["mounts"].as_array().unwrap();
    let vol = m.iter().find(|m| m["destination"] == "/vol").unwrap();
    assert_eq!(vol["options"], json!(["rbind", "nosuid", "nodev"]));
    let ro = m.iter().find(|m| m["destination"] == "/ro").unwrap();
    assert!(ro["options"].as_array().unwrap().contains(&json!("ro")));
    let t = m.iter().find(|m| m["destination"] == "/scratch").unwrap();
    assert!(t["options"]
        .as_array()
        .unwrap()
        .contains(&json!("size=67108864")));
    assert_eq!(p.context, Some((PathBuf::from("/ctx"), ContextMode::Copy)));
    let secrets: Vec<(&Path, &str)> = p
        .secrets
        .iter()
        .map(|s| (s.source.as_path(), s.destination.as_str()))
        .collect();
    assert_eq!(
        secrets,
        [
            (Path::new("/s/token"), "/run/secrets/token"),
            (Path::new("/s/k"), "/run/secrets/api")
        ]
    );
    let policy = ll::parse_policy(p.spec["annotations"][ll::ANNOTATION].as_str().unwrap()).unwrap();
    let rule = |path: &str| {
        policy
            .rules
            .iter()
            .find(|r| r.path == Path::new(path))
            .cloned()
    };
    assert!(rule("/vol").unwrap().access.contains(&FsAccess::WriteFile));
    assert!(rule("/context")
        .unwrap()
        .access
        .contains(&FsAccess::WriteFile));
    assert!(!rule("/ro").unwrap().access.contains(&FsAccess::WriteFile));
    let b = plan(&SandboxSpec {
        context: Some(Context {
            source: "/ctx".into(),
            mode: ContextMode::Bind,
        }),
        ..SandboxSpec::default()
    });
    assert_eq!(b.context, Some((PathBuf::from("/ctx"), ContextMode::Bind)));
}

#[test]
fn resources_translate() {
    let s = SandboxSpec {
        resources: Resources {
            memory: Some(parse::memory("32M").unwrap()),
            memory_swap: Some(parse::memory_swap("64m").unwrap()),
            cpus: Some(1.5),
            cpu_weight: Some(100),
            pids: Some(50),
            io_limits: vec![parse::io_limit("/dev/sda:rbps=1m,wiops=100").unwrap()],
            cgroup_parent: Some(parse::cgroup_parent("/team/").unwrap()),
        },
        ulimits: vec![parse::ulimit("nofile=512:1024").unwrap()],
        timeout: Some(2.5),
        ..SandboxSpec::default()
    };
    let p = plan(&s);
    let r = &p.spec["linux"]["resources"];
    assert!(p.spec["linux"]["cgroupsPath"]
        .as_str()
        .unwrap()
        .starts_with("/team/nucleus-"));
    assert_eq!(r["memory"], json!({"limit": 33554432, "swap": 67108864}));
    assert_eq!(r["cpu"]["quota"], json!(150000));
    assert_eq!(r["cpu"]["period"], json!(100000));
    assert_eq!(
        r["cpu"]["shares"],
        json!(2 + (99u64 * 262_142).div_ceil(9_999))
    );
    assert_eq!(r["pids"]["limit"], json!(50));
    assert_eq!(
        r["blockIO"]["throttleReadBpsDevice"],
        json!([{"major": 8, "minor": 0, "rate": 1048576}])
    );
    assert_eq!(
        r["blockIO"]["throttleWriteIOPSDevice"],
        json!([{"major": 8, "minor": 0, "rate": 100}])
    );
    assert_eq!(
        p.spec["process"]["rlimits"],
        json!([{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024}])
    );
    assert_eq!(p.timeout, Some(Duration::from_millis(2500)));
    let unlimited = SandboxSpec {
        resources: Resources {
            pids: Some(-1),
            ..Resources::default()
        },
        ..SandboxSpec::default()
    };
    assert!(plan(&unlimited).spec["linux"]["resources"]
        .get("pids")
        .is_none());
    let nodev = SandboxSpec {
        resources: Resources {
            io_limits: vec![parse::io_limit("/dev/nope:rbps=1").unwrap()],
            ..Resources::default()
        },
        ..SandboxSpec::default()
    };
    assert_eq!(
        invalid(compile_with(&nodev, &Policies::default(), None).unwrap_err()),
        (Field::IoLimit, "/dev/nope:rbps=1".into())
    );
}

#[test]
fn caps_and_policies() {
    let s = SandboxSpec {
        security: Security {
            cap_add: vec!["net_bind_service".into(), "CAP_CHOWN".into()],
            cap_drop: vec!["chown".into()],
            ..Security::default()
        },
        ..SandboxSpec::default()
    };
    let p = plan(&s);
    assert_eq!(
        p.spec["process"]["capabilities"]["effective"],
        json!(["CAP_NET_BIND_SERVICE"])
    );
    assert_eq!(p.spec["process"]["capabilities"]["ambient"], json!([]));
    let pol = Policies {
        seccomp: Some(json!({"defaultAction": "SCMP_ACT_ALLOW"})),
        caps: Some(
            json!({"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"], "inheritable": [], "ambient": []}),
        ),
        landlock: Some("[[rules]]\npath = \"/tmp\"\naccess = [\"read\"]\n".into()),
    };
    let s = SandboxSpec {
        security: Security {
            allow_degraded_security: true,
            ..Security::default()
        },
        ..SandboxSpec::default()
    };
    let p = compile_with(&s, &pol, None).unwrap();
    assert_eq!(
        p.spec["linux"]["seccomp"]["defaultAction"],
        json!("SCMP_ACT_ALLOW")
    );
    assert_eq!(
        p.spec["process"]["capabilities"]["bounding"],
        json!(["CAP_KILL"])
    );
    assert!(p.spec["annotations"][ll::ANNOTATION]
        .as_str()
        .unwrap()
        .contains("/tmp"));
    assert_eq!(p.spec["annotations"][DEGRADED_ANNOTATION], json!("true"));
}

#[test]
fn network_and_rootfs() {
    let host_net = SandboxSpec {
        network: Network::Host,
        security: Security {
            allow_host_network: true,
            ..Security::default()
        },
        ..SandboxSpec::default()
    };
    let h = plan(&host_net);
    assert!(!h.spec["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .contains(&json!({"type": "network"})));
    assert!(h
        .files
        .iter()
        .any(|(f, c)| f.ends_with("resolv.conf") && c.contains("10.0.0.1")));
    assert!(!dests(&h).contains(&"/sys".to_string()));
    let refused = SandboxSpec {
        network: Network::Host,
        ..SandboxSpec::default()
    };
    assert_eq!(
        invalid(compile_with(&refused, &Policies::default(), None).unwrap_err()),
        (Field::Network, "host".into())
    );
    let r = SandboxSpec {
        rootfs: RootfsSource::Directory("/images/alpine".into()),
        name: Some("web".into()),
        ..cmd(&["sh", "-c", "echo"])
    };
    let r = plan(&r);
    assert_eq!(
        r.spec["root"],
        json!({"path": "/images/alpine", "readonly": false})
    );
    assert_eq!(r.spec["process"]["args"], json!(["sh", "-c", "echo"]));
    assert_eq!(
        r.spec["annotations"][nucleus_engine::state::NAME_ANNOTATION],
        json!("web")
    );
    assert!(r.spec["annotations"].get(ll::ANNOTATION).is_none());
    assert!(!r.generated_root);
    assert!(!dests(&r).contains(&"/tmp".to_string()));
    assert!(dests(&r).contains(&"/etc/hosts".to_string()));
}

#[test]
fn spec_is_a_valid_oci_spec() {
    let s = SandboxSpec {
        tty: true,
        env: vec!["A=B".into()],
        resources: Resources {
            memory: Some(64 << 20),
            ..Resources::default()
        },
        ..cmd(&["sh"])
    };
    let spec: nucleus_engine::oci_spec::runtime::Spec =
        serde_json::from_value(plan(&s).spec).unwrap();
    nucleus_engine::spec::validate(&spec, true).unwrap();
}

#[test]
fn sandbox_spec_round_trips_through_json() {
    let s = SandboxSpec {
        name: Some("web".into()),
        rootfs: RootfsSource::Directory("/r".into()),
        volumes: vec![parse::volume("/h:/v:ro").unwrap()],
        resources: Resources {
            memory: Some(1 << 30),
            ..Resources::default()
        },
        security: Security {
            landlock_policy: Some(PolicyFile {
                path: "/p.toml".into(),
                sha256: None,
            }),
            ..Security::default()
        },
        ..cmd(&["true"])
    };
    let text = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<SandboxSpec>(&text).unwrap(), s);
    // A front end may give only what it needs; a misspelt field is refused.
    let minimal: SandboxSpec =
        serde_json::from_str(r#"{"command": ["true"], "resources": {"pids": 10}}"#).unwrap();
    assert_eq!(minimal.resources.pids, Some(10));
    assert!(serde_json::from_str::<SandboxSpec>(r#"{"comand": ["true"]}"#).is_err());
}

#[test]
fn validate_names_the_field() {
    let cases: Vec<(SandboxSpec, Field)> = vec![
        (
            SandboxSpec {
                name: Some("a/b".into()),
                ..SandboxSpec::default()
            },
            Field::Name,
        ),
        (
            SandboxSpec {
                hostname: Some("a b".into()),
                ..SandboxSpec::default()
            },
            Field::Hostname,
        ),
        (
            SandboxSpec {
                env: vec!["=x".into()],
                ..SandboxSpec::default()
            },
            Field::Env,
        ),
        (
            SandboxSpec {
                resources: Resources {
                    memory: Some(10),
                    ..Resources::default()
                },
                ..SandboxSpec::default()
            },
            Field::Memory,
        ),
        (
            SandboxSpec {
                resources: Resources {
                    memory_swap: Some(1 << 30),
                    ..Resources::default()
                },
                ..SandboxSpec::default()
            },
            Field::MemorySwap,
        ),
        (
            SandboxSpec {
                resources: Resources {
                    memory: Some(2 << 30),
                    memory_swap: Some(1 << 30),
                    ..Resources::default()
                },
                ..SandboxSpec::default()
            },
            Field::MemorySwap,
        ),
        (
            SandboxSpec {
                resources: Resources {
                    cpus: Some(0.0),
                    ..Resources::default()
                },
                ..SandboxSpec::default()
            },
            Field::Cpus,
        ),
        (
            SandboxSpec {
                resources: Resources {
                    cpu_weight: Some(0),
                    ..Resources::default()
                },
                ..SandboxSpec::default()
            },
            Field::CpuWeight,
        ),
        (
            SandboxSpec {
                timeout: Some(-1.0),
                ..SandboxSpec::default()
            },
            Field::Timeout,
        ),
        (
            SandboxSpec {
                security: Security {
                    cap_add: vec!["fly".into()],
                    ..Security::default()
                },
                ..SandboxSpec::default()
            },
            Field::CapAdd,
        ),
        (
            SandboxSpec {
                volumes: vec![crate::spec::Volume {
                    source: "rel".into(),
                    destination: "/x".into(),
                    read_only: false,
                }],
                ..SandboxSpec::default()
            },
            Field::Volume,
        ),
        (
            SandboxSpec {
                network: Network::Pasta,
                net: crate::spec::NetOptions {
                    egress_deny_all: true,
                    ..Default::default()
                },
                ..SandboxSpec::default()
            },
            Field::EgressDenyAll,
        ),
        (
            SandboxSpec {
                network: Network::Slirp4netns,
                net: crate::spec::NetOptions {
                    publish: vec!["8080:80".into()],
                    ..Default::default()
                },
                ..SandboxSpec::default()
            },
            Field::Publish,
        ),
        (
            SandboxSpec {
                network: Network::Pasta,
                runtime: crate::spec::Runtime::Gvisor {
                    platform: None,
                    runsc: None,
                },
                ..SandboxSpec::default()
            },
            Field::Network,
        ),
    ];
    // pasta forwards published ports; its spec spells the mode by name.
    let pasta = SandboxSpec {
        network: crate::parse::network("pasta").unwrap(),
        net: crate::spec::NetOptions {
            publish: vec!["8080:80".into()],
            ..Default::default()
        },
        ..SandboxSpec::default()
    };
    pasta.validate().unwrap();
    assert_eq!(
        serde_json::to_value(&pasta.network).unwrap(),
        json!("pasta")
    );
    for (s, field) in cases {
        assert_eq!(invalid(s.validate().unwrap_err()).0, field);
    }
}

/// Compiles as an unprivileged caller (uid 1000, with or without a range)
/// that has no writable cgroup.
fn compile_rootless(s: &SandboxSpec, ranges: bool) -> Result<Plan> {
    let host = host();
    let dev = |_: &str| None;
    let seccomp = json!({});
    let policies = Policies::default();
    let r = if ranges {
        vec![(100_000, 65_536)]
    } else {
        vec![]
    };
    let caller = Caller {
        uid: 1000,
        gid: 1000,
        name: "alice".into(),
        sub_uids: r.clone(),
        sub_gids: r,
    };
    let inp = Inputs {
        id: "0123456789abcdef",
        host: &host,
        passwd: PASSWD,
        group: GROUP,
        host_resolv: "",
        device: &dev,
        default_seccomp: &seccomp,
        policies: &policies,
        image: None,
        caller: Some(&caller),
        cgroup: false,
        nproc_hard: 4096,
    };
    compile(s, &inp)
}

fn private(s: SandboxSpec) -> SandboxSpec {
    SandboxSpec {
        userns: crate::userns::UserNamespace {
            mode: UsernsMode::Private,
            ..Default::default()
        },
        ..s
    }
}

#[test]
fn rootless_adds_a_user_namespace_and_trades_the_pids_cgroup_for_rlimit_nproc() {
    let p = compile_rootless(&private(cmd(&["true"])), true).unwrap();
    let linux = &p.spec["linux"];
    assert_eq!(linux["namespaces"][0], json!({"type": "user"}));
    assert_eq!(
        linux["uidMappings"],
        json!([{"containerID": 0, "hostID": 1000, "size": 1}, {"containerID": 1, "hostID": 100_000, "size": 65_536}])
    );
    assert!(
        linux["resources"].get("pids").is_none(),
        "{}",
        linux["resources"]
    );
    assert_eq!(
        p.spec["process"]["rlimits"],
        json!([{"type": "RLIMIT_NPROC", "soft": 1024, "hard": 1024}])
    );
    // Files the runtime makes for container root belong to the caller.
    assert_eq!((p.uid, p.gid), (1000, 1000));
    // Without a range, devpts may not name gid 5.
    let p = compile_rootless(&private(cmd(&["true"])), false).unwrap();
    let pts = p.spec["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["type"] == "devpts")
        .unwrap();
    assert!(
        !pts["options"].as_array().unwrap().contains(&json!("gid=5")),
        "{pts}"
    );
}

#[test]
fn rootless_refuses_limits_and_unmapped_users_by_field() {
    let mut s = private(cmd(&["true"]));
    s.resources.memory = Some(64 << 20);
    assert_eq!(
        invalid(compile_rootless(&s, true).unwrap_err()),
        (Field::Memory, (64u64 << 20).to_string())
    );
    s.security.allow_degraded_security = true;
    assert!(compile_rootless(&s, true).is_ok());
    let mut s = private(cmd(&["true"]));
    s.user = Some("alice".into());
    assert_eq!(
        invalid(compile_rootless(&s, false).unwrap_err()),
        (Field::User, "alice".to_string())
    );
    assert!(compile_rootless(&s, true).is_ok());
}
