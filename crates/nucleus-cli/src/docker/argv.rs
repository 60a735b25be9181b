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

/// The flags that take a value, read off clap's definition of the command
/// line, so a value is never mistaken for a positional argument.
#[derive(Debug, Default)]
pub struct Valued {
    /// Global flags (they may come before or after the verb).
    global: Vec<String>,
    /// Flags of either `run` (runc's and the docker-like one).
    run: Vec<String>,
}

impl Valued {
    pub fn of(cli: &clap::Command) -> Valued {
        let mut v = Valued::default();
        names_into(
            cli.get_arguments().filter(|a| a.is_global_set()),
            &mut v.global,
        );
        for verb in cli
            .get_subcommands()
            .filter(|c| matches!(c.get_name(), "run" | AGENT_RUN))
        {
            names_into(verb.get_arguments(), &mut v.run);
        }
        v
    }

    fn is_global(&self, a: &str) -> bool {
        self.global.iter().any(|g| g == a)
    }

    fn is_run(&self, a: &str) -> bool {
        self.run.iter().any(|g| g == a)
    }
}

/// `--long`, `-s` and their aliases of every argument that takes a value.
fn names_into<'a>(args: impl Iterator<Item = &'a clap::Arg>, out: &mut Vec<String>) {
    for arg in args.filter(|a| a.get_action().takes_values() && !a.is_positional()) {
        out.extend(
            arg.get_long_and_visible_aliases()
                .into_iter()
                .flatten()
                .map(|l| format!("--{l}")),
        );
        out.extend(
            arg.get_all_aliases()
                .into_iter()
                .flatten()
                .map(|l| format!("--{l}")),
        );
        out.extend(
            arg.get_short_and_visible_aliases()
                .into_iter()
                .flatten()
                .map(|c| format!("-{c}")),
        );
        out.extend(
            arg.get_all_short_aliases()
                .into_iter()
                .flatten()
                .map(|c| format!("-{c}")),
        );
    }
}

/// Returns `args` (including argv[0]) with the verb renamed when the
/// docker-like form is meant, and whether it was `run` in agent form.
pub fn rewrite(
    mut args: Vec<OsString>,
    valued: &Valued,
    cwd_has_config: impl FnOnce() -> bool,
) -> (Vec<OsString>, bool) {
    bare_rootless_is_true(&mut args, valued);
    let Some(verb_at) = verb_index(&args, valued) else {
        return (args, false);
    };
    let verb = args[verb_at].to_string_lossy().into_owned();
    let rest: Vec<String> = args[verb_at + 1..]
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let new = match verb.as_str() {
        "run" if !is_oci_run(&rest, valued, cwd_has_config) => Some(AGENT_RUN),
        "ps" if is_docker_ps(&rest, valued) => Some(DOCKER_PS),
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
                && positionals(&before, valued).is_empty()
            {
                args.insert(verb_at + 1, OsString::from(COMMAND_FOLLOWS));
            }
            (args, name == AGENT_RUN)
        }
        None => (args, false),
    }
}

/// `--rootless` takes a value as runc's does (`--rootless true`), and
/// alone means `--rootless=true`; before the verb only.
fn bare_rootless_is_true(args: &mut [OsString], valued: &Valued) {
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_string_lossy().into_owned();
        if a == "--rootless" {
            let has_value = args
                .get(i + 1)
                .is_some_and(|v| matches!(v.to_str(), Some("true" | "false" | "auto")));
            if !has_value {
                args[i] = OsString::from("--rootless=true");
            }
            i += if has_value { 2 } else { 1 };
        } else if valued.is_global(&a) {
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
fn verb_index(args: &[OsString], valued: &Valued) -> Option<usize> {
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        if valued.is_global(&a) {
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

fn is_oci_run(rest: &[String], valued: &Valued, cwd_has_config: impl FnOnce() -> bool) -> bool {
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
    !has_dashdash && positionals(&before_dashdash, valued).len() == 1 && cwd_has_config()
}

fn positionals<'a>(args: &[&'a String], valued: &Valued) -> Vec<&'a String> {
    let mut out = Vec::new();
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
            continue;
        }
        if a.starts_with('-') {
            skip = (valued.is_run(a) || valued.is_global(a)) && !a.contains('=');
            continue;
        }
        out.push(*a);
    }
    out
}

fn is_docker_ps(rest: &[String], valued: &Valued) -> bool {
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
            skip = matches!(a.as_str(), "-f" | "--format") || valued.is_global(a);
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
        let valued = Valued::of(&<crate::Cli as clap::CommandFactory>::command());
        let (out, _) = rewrite(v, &valued, || config);
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
    fn valued_flags_come_from_clap() {
        let v = Valued::of(&<crate::Cli as clap::CommandFactory>::command());
        for f in ["--root", "--data-root", "--log", "--log-format"] {
            assert!(v.is_global(f), "{f}");
        }
        for f in [
            "-e",
            "--env",
            "-v",
            "--network",
            "-p",
            "--runtime",
            "-b",
            "--bundle",
            "--pid-file",
        ] {
            assert!(v.is_run(f), "{f}");
        }
        for f in ["-d", "--detach", "--rm", "--read-only"] {
            assert!(!v.is_run(f), "{f}");
        }
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
        let valued = Valued::of(&<crate::Cli as clap::CommandFactory>::command());
        let (out, agent) = rewrite(
            a(&["nucleus", "--rootless", "run", "--", "true"]),
            &valued,
            || false,
        );
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
            &valued,
            || false,
        );
        assert_eq!(
            out,
            a(&["nucleus", "--rootless", "false", "spec", "--rootless"])
        );
    }
}
