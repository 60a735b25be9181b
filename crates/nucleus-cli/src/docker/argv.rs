//! Chooses between the runc verbs and the docker-like ones before clap sees
//! the command line, by renaming the verb to a hidden subcommand:
//! - `run` is runc's when `--bundle/-b` is given, or when there is exactly
//!   one positional argument, no `--`, and `./config.json` exists;
//!   otherwise it is the agent sandbox (`__agent-run`).
//! - `ps` without a container id, or with `-a`, is the docker listing.
//! - `kill` with `-s/--signal` is docker's form.

use std::ffi::OsString;
use std::path::Path;

/// Hidden subcommand names the rewritten verbs map to.
pub const AGENT_RUN: &str = "__agent-run";
pub const DOCKER_PS: &str = "__docker-ps";
pub const DOCKER_KILL: &str = "__docker-kill";
/// Hidden flag telling the docker-like `run` that its words came after `--`.
pub const COMMAND_FOLLOWS: &str = "--__command-follows";

/// Global flags that take a value (they may come before or after the verb).
const GLOBAL_VALUED: &[&str] = &[
    "--root",
    "--log",
    "--log-format",
    "--rootless",
    "--data-root",
];

/// Flags of either `run` that take a value, so their values are not
/// counted as positional arguments.
const RUN_VALUED: &[&str] = &[
    "--name",
    "--entrypoint",
    "-e",
    "--env",
    "--env-file",
    "-w",
    "--workdir",
    "--hostname",
    "-u",
    "--user",
    "--group-add",
    "-v",
    "--volume",
    "--tmpfs",
    "--context",
    "--context-mode",
    "--secret",
    "-m",
    "--memory",
    "--memory-swap",
    "--cpus",
    "--cpu-weight",
    "--pids",
    "--io-limit",
    "--ulimit",
    "--timeout",
    "--cap-add",
    "--cap-drop",
    "--seccomp-profile",
    "--seccomp-profile-sha256",
    "--caps-policy",
    "--caps-policy-sha256",
    "--landlock-policy",
    "--landlock-policy-sha256",
    "--network",
    "-p",
    "--publish",
    "--dns",
    "--dns-search",
    "--add-host",
    "--egress-allow",
    "--egress-deny",
    "--egress-domain",
    "--rootfs",
    "--userns",
    "--uidmap",
    "--gidmap",
    "--runtime",
    "--gvisor-platform",
    "--gvisor-runsc",
    "-b",
    "--bundle",
    "--console-socket",
    "--pid-file",
    "--preserve-fds",
];

/// Returns `args` (including argv[0]) with the verb renamed when the
/// docker-like form is meant, and whether it was `run` in agent form.
pub fn rewrite(
    mut args: Vec<OsString>,
    cwd_has_config: impl FnOnce() -> bool,
) -> (Vec<OsString>, bool) {
    bare_rootless_is_true(&mut args);
    let Some(verb_at) = verb_index(&args) else {
        return (args, false);
    };
    let verb = args[verb_at].to_string_lossy().into_owned();
    let rest: Vec<String> = args[verb_at + 1..]
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let new = match verb.as_str() {
        "run" if !is_oci_run(&rest, cwd_has_config) => Some(AGENT_RUN),
        "ps" if is_docker_ps(&rest) => Some(DOCKER_PS),
        "kill" if has_flag(&rest, &["-s", "--signal"]) => Some(DOCKER_KILL),
        _ => None,
    };
    match new {
        Some(name) => {
            args[verb_at] = OsString::from(name);
            // `run IMAGE -- CMD`: a positional before `--` is the image, so
            // the words after it are its command, not a host-derived run's.
            let before: Vec<&String> = rest.iter().take_while(|a| a.as_str() != "--").collect();
            if name == AGENT_RUN
                && rest.iter().any(|a| a == "--")
                && positionals(&before).is_empty()
            {
                args.insert(verb_at + 1, OsString::from(COMMAND_FOLLOWS));
            }
            (args, name == AGENT_RUN)
        }
        None => (args, false),
    }
}

/// `--rootless` takes a value as runc's does (`--rootless true`), and
/// alone means `--rootless=true`; before `--` only.
fn bare_rootless_is_true(args: &mut [OsString]) {
    // Global flags only: those before the verb.
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_string_lossy().into_owned();
        if a == "--rootless" {
            let valued = args
                .get(i + 1)
                .is_some_and(|v| matches!(v.to_str(), Some("true" | "false" | "auto")));
            if !valued {
                args[i] = OsString::from("--rootless=true");
            }
            i += if valued { 2 } else { 1 };
        } else if GLOBAL_VALUED.contains(&a.as_str()) {
            i += 2;
        } else if a.starts_with('-') {
            i += 1;
        } else {
            return;
        }
    }
}

/// Index of the subcommand: the first argument that is neither a global
/// flag nor a global flag's value.
fn verb_index(args: &[OsString]) -> Option<usize> {
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        if GLOBAL_VALUED.contains(&a.as_ref()) {
            i += 2;
            continue;
        }
        if a.starts_with('-') {
            i += 1;
            continue;
        }
        return Some(i);
    }
    None
}

fn is_oci_run(rest: &[String], cwd_has_config: impl FnOnce() -> bool) -> bool {
    let before_dashdash: Vec<&String> = rest.iter().take_while(|a| a.as_str() != "--").collect();
    let has_dashdash = before_dashdash.len() != rest.len();
    let bundle_flag = before_dashdash.iter().any(|a| {
        a.as_str() == "-b"
            || a.as_str() == "--bundle"
            || a.starts_with("--bundle=")
            || (a.starts_with("-b") && !a.starts_with("--"))
    });
    if bundle_flag {
        return true;
    }
    !has_dashdash && positionals(&before_dashdash).len() == 1 && cwd_has_config()
}

fn positionals<'a>(args: &[&'a String]) -> Vec<&'a String> {
    let mut out = Vec::new();
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
            continue;
        }
        if a.starts_with('-') {
            skip = (RUN_VALUED.contains(&a.as_str()) || GLOBAL_VALUED.contains(&a.as_str()))
                && !a.contains('=');
            continue;
        }
        out.push(*a);
    }
    out
}

fn is_docker_ps(rest: &[String]) -> bool {
    let before: Vec<&String> = rest.iter().take_while(|a| a.as_str() != "--").collect();
    if has_flag(rest, &["-a", "--all", "-q", "--quiet"]) {
        return true;
    }
    let mut skip = false;
    for a in &before {
        if skip {
            skip = false;
            continue;
        }
        if a.starts_with('-') {
            skip = matches!(a.as_str(), "-f" | "--format") || GLOBAL_VALUED.contains(&a.as_str());
            continue;
        }
        return false;
    }
    true
}

fn has_flag(rest: &[String], names: &[&str]) -> bool {
    rest.iter().take_while(|a| a.as_str() != "--").any(|a| {
        names
            .iter()
            .any(|n| a == n || a.starts_with(&format!("{n}=")))
            || is_short_cluster(a, names)
    })
}

/// `-as` style clusters of short flags without values.
fn is_short_cluster(a: &str, names: &[&str]) -> bool {
    if !a.starts_with('-') || a.starts_with("--") || a.len() < 3 {
        return false;
    }
    names
        .iter()
        .filter_map(|n| n.strip_prefix('-').filter(|s| s.len() == 1))
        .any(|c| a[1..].contains(c))
}

/// Whether `./config.json` exists (the OCI form of a one-argument `run`).
pub fn cwd_has_config() -> bool {
    Path::new("config.json").is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(args: &[&str], config: bool) -> String {
        let v: Vec<OsString> = std::iter::once("nucleus")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        let (out, _) = rewrite(v, || config);
        out.iter()
            .skip(1)
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn run_forms() {
        assert_eq!(
            rw(&["run", "--runtime", "gvisor", "--", "/bin/true"], false),
            "__agent-run --__command-follows --runtime gvisor -- /bin/true"
        );
        assert_eq!(
            rw(&["run", "busybox", "--", "ls"], false),
            "__agent-run busybox -- ls"
        );
        assert_eq!(
            rw(
                &["run", "--entrypoint", "/bin/echo", "busybox", "--", "x"],
                false
            ),
            "__agent-run --entrypoint /bin/echo busybox -- x"
        );
        assert_eq!(
            rw(&["run", "--bundle", "/b", "id"], false),
            "run --bundle /b id"
        );
        assert_eq!(
            rw(&["--root", "/r", "run", "-b", "/b", "id"], false),
            "--root /r run -b /b id"
        );
        assert_eq!(rw(&["run", "id"], true), "run id");
        assert_eq!(rw(&["run", "-d", "id"], true), "run -d id");
        assert_eq!(rw(&["run", "id"], false), "__agent-run id");
        assert_eq!(
            rw(&["run", "--", "/bin/true"], true),
            "__agent-run --__command-follows -- /bin/true"
        );
        assert_eq!(
            rw(&["run", "--name", "x", "--", "true"], true),
            "__agent-run --__command-follows --name x -- true"
        );
        assert_eq!(rw(&["run", "--name", "x"], true), "__agent-run --name x");
        assert_eq!(
            rw(&["--debug", "run", "-e", "A=1", "-d", "--", "sh"], false),
            "--debug __agent-run --__command-follows -e A=1 -d -- sh"
        );
    }

    #[test]
    fn ps_and_kill_forms() {
        assert_eq!(rw(&["ps"], false), "__docker-ps");
        assert_eq!(rw(&["ps", "-a"], false), "__docker-ps -a");
        assert_eq!(
            rw(&["ps", "--format", "json"], false),
            "__docker-ps --format json"
        );
        assert_eq!(rw(&["ps", "abc"], false), "ps abc");
        assert_eq!(
            rw(&["ps", "-f", "json", "abc", "--", "-ef"], false),
            "ps -f json abc -- -ef"
        );
        assert_eq!(rw(&["kill", "web"], false), "kill web");
        assert_eq!(rw(&["kill", "web", "KILL"], false), "kill web KILL");
        assert_eq!(
            rw(&["kill", "-s", "KILL", "web"], false),
            "__docker-kill -s KILL web"
        );
        assert_eq!(
            rw(&["kill", "--all", "web", "9"], false),
            "kill --all web 9"
        );
    }

    #[test]
    fn bare_global_rootless_means_true() {
        let a = |v: &[&str]| -> Vec<OsString> { v.iter().map(OsString::from).collect() };
        let (out, agent) = rewrite(a(&["nucleus", "--rootless", "run", "--", "true"]), || false);
        assert_eq!(
            out,
            a(&[
                "nucleus",
                "--rootless=true",
                "__agent-run",
                "--__command-follows",
                "--",
                "true"
            ])
        );
        assert!(agent);
        let (out, _) = rewrite(
            a(&["nucleus", "--rootless", "false", "spec", "--rootless"]),
            || false,
        );
        assert_eq!(
            out,
            a(&["nucleus", "--rootless", "false", "spec", "--rootless"])
        );
    }
}
