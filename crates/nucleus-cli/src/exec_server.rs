//! `nucleus exec-server ID --socket PATH` (hidden): the per-sandbox exec
//! server the API starts (see `nucleus_engine::lifecycle::serve_execs`).
//! Each request's command line is run as `nucleus --root ROOT …` by a
//! fork of this process, and must be an `exec` into this container, so
//! the server can do nothing `nucleus exec` could not, with the same
//! checks and protections.

use anyhow::{Context, Result};
use clap::Args;
use nix::fcntl::{Flock, FlockArg};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct ExecServerArgs {
    /// Unix socket to listen on (mode 0600)
    #[arg(long)]
    socket: PathBuf,
    /// The container
    id: String,
}

/// Serves until the container's init exits. Prints `ready` once the
/// socket accepts connections, or `busy` when another server holds
/// `<socket>.lock` (it serves this container, or is about to).
pub fn serve(root: &Path, a: &ExecServerArgs) -> Result<i32> {
    let sroot = nucleus_engine::state::StateRoot::new(root);
    let id = crate::oci::resolve(&sroot, &a.id);
    let lock_path = a.socket.with_extension("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("--socket: open `{}`", lock_path.display()))?;
    let _lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
            println!("busy");
            return Ok(0);
        }
        Err((_, e)) => {
            return Err(e).with_context(|| format!("--socket: lock `{}`", lock_path.display()))
        }
    };
    let mut ready = || {
        let mut out = std::io::stdout();
        let _ = writeln!(out, "ready");
        let _ = out.flush();
        // Whoever waited for `ready` stops reading: nothing else goes there.
        if let Ok(null) = std::fs::File::options().write(true).open("/dev/null") {
            let _ = nix::unistd::dup2_stdout(&null);
        }
    };
    let handler = CliExecs::new(root, &id);
    let result =
        nucleus_engine::lifecycle::serve_execs(&sroot, &id, &a.socket, &mut ready, &handler)
            .with_context(|| format!("exec-server for `{id}`"));
    let _ = std::fs::remove_file(&lock_path);
    result.map(|()| 0)
}

/// What the workers of container `id`'s exec server run: `exec` command
/// lines, parsed with a clap command built once in the server (whether
/// `nucleus exec-server` or a forked monitor).
pub struct CliExecs {
    parser: std::cell::OnceCell<std::cell::RefCell<clap::Command>>,
    root: nucleus_engine::state::StateRoot,
    root_text: String,
    id: String,
}

impl CliExecs {
    pub fn new(root: &Path, id: &str) -> CliExecs {
        CliExecs {
            parser: std::cell::OnceCell::new(),
            root: nucleus_engine::state::StateRoot::new(root),
            root_text: root.to_string_lossy().into_owned(),
            id: id.to_string(),
        }
    }

    /// The same, with the parser built already (by a standby monitor
    /// while it waited, so its exec server has nothing left to build).
    pub fn with_parser(root: &Path, id: &str, parser: clap::Command) -> CliExecs {
        let e = CliExecs::new(root, id);
        let _ = e.parser.set(std::cell::RefCell::new(parser));
        e
    }

    /// The clap command every request is parsed with.
    pub fn build_parser() -> clap::Command {
        let mut c = <crate::Cli as clap::CommandFactory>::command();
        c.build();
        c
    }

    fn parser(&self) -> &std::cell::RefCell<clap::Command> {
        self.parser
            .get_or_init(|| std::cell::RefCell::new(CliExecs::build_parser()))
    }
}

impl nucleus_engine::lifecycle::ExecHandler for CliExecs {
    fn prepare(&self) {
        self.parser();
    }

    fn run(&self, argv: Vec<String>) -> i32 {
        run_exec(
            &mut self.parser().borrow_mut(),
            &self.root,
            &self.root_text,
            &self.id,
            argv,
        )
    }
}

/// One request, in a forked worker: `argv` must be `exec [OPTIONS] ID …`
/// (globals like `--log` allowed, `--root` not: it is ours).
fn run_exec(
    parser: &mut clap::Command,
    root: &nucleus_engine::state::StateRoot,
    root_text: &str,
    id: &str,
    argv: Vec<String>,
) -> i32 {
    use clap::FromArgMatches;
    let mut full = vec!["nucleus".to_string(), "--root".into(), root_text.into()];
    full.extend(argv);
    let parsed = parser
        .try_get_matches_from_mut(full)
        .and_then(|mut m| crate::Cli::from_arg_matches_mut(&mut m));
    let cli = match parsed {
        Ok(c) => c,
        Err(e) => {
            eprintln!("nucleus: {}", crate::first_error_line(&e));
            return crate::EXEC_RUNTIME_ERROR;
        }
    };
    let target = cli.exec_target().map(|q| crate::oci::resolve(root, q));
    if target.as_deref() != Some(id) {
        eprintln!("nucleus: the exec server of `{id}` runs only `exec {id} …`");
        return crate::EXEC_RUNTIME_ERROR;
    }
    crate::execute(cli)
}
