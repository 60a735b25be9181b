//! The extension points on the real kernel, through the library alone:
//! - a network attachment step runs after the container's namespaces exist
//!   and before its workload (it sees the container's netns, and the
//!   workload reads what it wrote), in the foreground and under a monitor;
//! - a monitor's side tasks start after the container starts, are woken
//!   at their deadline, and stop once it has exited.
//!
//! The engine starts containers only from a single-threaded process, so
//! this test has its own `main` (no libtest threads). It is also the
//! monitor binary of its detached sandbox: `main` answers `__monitor`.

use nucleus_engine::state::StateRoot;
use nucleus_sandbox::monitor::{self, MonitorArgs, MonitorCommand, MONITOR_VERB};
use nucleus_sandbox::network::{AttachContext, NetworkAttach};
use nucleus_sandbox::run::{self, Extensions, RunOptions, RunOutcome};
use nucleus_sandbox::side_task::{SideTask, SideTasks, TaskContext};
use nucleus_sandbox::spec::Volume;
use nucleus_sandbox::{SandboxError, SandboxSpec};
use std::cell::Cell;
use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Where the monitor's network step and side tasks write what they saw.
const RECORD_ENV: &str = "NUCLEUS_TEST_RECORD";

fn record(line: &str) {
    let Ok(path) = std::env::var(RECORD_ENV) else {
        return;
    };
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open the record");
    writeln!(f, "{line}").expect("write the record");
}

fn netns_of(pid: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/net"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// Writes the container's netns into the shared volume, so the workload can check it.
#[derive(Debug)]
struct WriteNetns {
    dir: PathBuf,
}

impl NetworkAttach for WriteNetns {
    fn attach(&mut self, ctx: &AttachContext<'_>) -> Result<(), SandboxError> {
        let theirs = netns_of(&ctx.pid.to_string());
        assert_eq!(
            ctx.netns_path(),
            PathBuf::from(format!("/proc/{}/ns/net", ctx.pid))
        );
        assert_ne!(
            theirs,
            netns_of("self"),
            "the container has its own network namespace already"
        );
        fs::write(self.dir.join("attached"), format!("{theirs}\n")).expect("write attached");
        record("attach");
        Ok(())
    }
}

/// Records start, one wake at a deadline, and stop.
#[derive(Debug)]
struct Recorder {
    wake_at: Option<Instant>,
}

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

impl SideTask for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }
    fn start(&mut self, ctx: &TaskContext<'_>) -> Result<(), SandboxError> {
        record(&format!("start alive={}", alive(ctx.pid)));
        self.wake_at = Some(Instant::now() + Duration::from_millis(50));
        Ok(())
    }
    fn deadline(&self) -> Option<Instant> {
        self.wake_at
    }
    fn wake(&mut self, ctx: &TaskContext<'_>) -> Result<(), SandboxError> {
        record(&format!("wake alive={}", alive(ctx.pid)));
        self.wake_at = None;
        Ok(())
    }
    fn stop(&mut self, ctx: &TaskContext<'_>, exit_code: i32) {
        record(&format!("stop code={exit_code} alive={}", alive(ctx.pid)));
    }
}

#[derive(Debug)]
struct RecorderTasks;

impl SideTasks for RecorderTasks {
    fn for_sandbox(&self, _ctx: &TaskContext<'_>) -> Vec<Box<dyn SideTask>> {
        vec![Box::new(Recorder { wake_at: None })]
    }
}

/// `EXE --root ROOT --log FILE [--debug] __monitor ARGS`.
fn serve_monitor(args: &[String]) -> i32 {
    let root = args
        .iter()
        .position(|a| a == "--root")
        .and_then(|i| args.get(i + 1))
        .expect("--root");
    let at = args
        .iter()
        .position(|a| a == MONITOR_VERB)
        .expect("__monitor");
    let a = MonitorArgs::parse(&args[at + 1..]).expect("monitor args");
    let vol = PathBuf::from(std::env::var(RECORD_ENV).expect("record path"))
        .parent()
        .expect("record dir")
        .join("vol");
    monitor::serve(
        &StateRoot::new(root),
        &a,
        &mut WriteNetns { dir: vol },
        &RecorderTasks,
        None,
    )
    .expect("monitor")
}

/// A state root and a shared volume in a temporary directory, and the
/// containers to delete whatever happens.
struct Scratch {
    dir: tempfile::TempDir,
    ids: Vec<String>,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("vol")).expect("vol");
        Scratch {
            dir,
            ids: Vec::new(),
        }
    }
    fn root(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    fn vol(&self) -> PathBuf {
        self.dir.path().join("vol")
    }
    fn spec(&self, script: &str) -> SandboxSpec {
        SandboxSpec {
            command: vec!["/bin/sh".into(), "-c".into(), script.into()],
            volumes: vec![Volume {
                source: self.vol(),
                destination: "/vol".into(),
                read_only: false,
            }],
            ..SandboxSpec::default()
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let root = StateRoot::new(self.root());
        for id in &self.ids {
            let _ = nucleus_engine::lifecycle::delete(&root, id, true);
        }
    }
}

const CHECK: &str = "cat /vol/attached > /vol/seen && readlink /proc/self/ns/net >> /vol/seen";

fn attach_runs_before_the_foreground_workload() {
    let s = Scratch::new();
    let mut ext = Extensions {
        network: Box::new(WriteNetns { dir: s.vol() }),
        ..Extensions::default()
    };
    let monitor = MonitorCommand::current_exe(false).expect("exe");
    let out = run::run(
        &s.root(),
        &s.spec(CHECK),
        &RunOptions::default(),
        &mut ext,
        &monitor,
    )
    .expect("run");
    let RunOutcome::Exited { code, .. } = out else {
        panic!("{out:?}")
    };
    assert_eq!(code, 0, "the workload found the file the attach step wrote");
    let seen = fs::read_to_string(s.vol().join("seen")).expect("seen");
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(lines.len(), 2, "{seen}");
    assert!(lines[0].starts_with("net:["), "{seen}");
    assert_eq!(
        lines[0], lines[1],
        "the attach step saw the workload's own network namespace"
    );
}

fn monitor_runs_attach_and_side_tasks_in_order() {
    let mut s = Scratch::new();
    let record_path = s.dir.path().join("record");
    std::env::set_var(RECORD_ENV, &record_path);
    let opts = RunOptions {
        detach: true,
        ..RunOptions::default()
    };
    let monitor = MonitorCommand::current_exe(false).expect("exe");
    let script = format!("{CHECK} && sleep 0.3");
    let out = run::run(
        &s.root(),
        &s.spec(&script),
        &opts,
        &mut Extensions::default(),
        &monitor,
    )
    .expect("run -d");
    let RunOutcome::Detached { id } = out else {
        panic!("{out:?}")
    };
    s.ids.push(id.clone());
    let bundle = nucleus_sandbox::bundle::bundle_path(&s.root(), &id);
    let deadline = Instant::now() + Duration::from_secs(10);
    while monitor::ExitRecord::read(&bundle).is_none() {
        assert!(Instant::now() < deadline, "no exit record");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        monitor::ExitRecord::read(&bundle).map(|r| r.exit_code),
        Some(0),
        "the workload found the attach step's file"
    );
    let seen = fs::read_to_string(s.vol().join("seen")).expect("seen");
    let lines: Vec<&str> = seen.lines().collect();
    assert!(lines.len() == 2 && lines[0] == lines[1], "{seen}");
    let got = fs::read_to_string(&record_path).expect("record");
    let got: Vec<&str> = got.lines().collect();
    assert_eq!(
        got,
        [
            "attach",
            "start alive=true",
            "wake alive=true",
            "stop code=0 alive=false"
        ]
    );
    std::env::remove_var(RECORD_ENV);
}

/// Refuses every container, remembering the init it was shown.
#[derive(Debug, Default)]
struct Refuse {
    pid: Rc<Cell<Option<i32>>>,
}

impl NetworkAttach for Refuse {
    fn attach(&mut self, ctx: &AttachContext<'_>) -> Result<(), SandboxError> {
        self.pid.set(Some(ctx.pid));
        Err(SandboxError::AttachNetwork {
            id: ctx.id.to_string(),
            reason: "no network for you".into(),
        })
    }
}

/// The step's error aborts the start and nothing of the container is left.
fn failing_attach_leaves_nothing() {
    let s = Scratch::new();
    let seen = Rc::new(Cell::new(None));
    let mut ext = Extensions {
        network: Box::new(Refuse { pid: seen.clone() }),
        ..Extensions::default()
    };
    let monitor = MonitorCommand::current_exe(false).expect("exe");
    let err = run::run(
        &s.root(),
        &s.spec("touch /vol/ran"),
        &RunOptions::default(),
        &mut ext,
        &monitor,
    )
    .expect_err("refused");
    assert!(
        nucleus_sandbox::error::render_chain(&err).contains("no network for you"),
        "{err}"
    );
    assert!(!s.vol().join("ran").exists(), "the workload never ran");
    let root = StateRoot::new(s.root());
    assert!(
        root.ids().expect("ids").is_empty(),
        "no container state left"
    );
    let bundles: Vec<_> = fs::read_dir(s.root().join(".bundles"))
        .map(|d| d.collect())
        .unwrap_or_default();
    assert!(bundles.is_empty(), "no bundle left: {bundles:?}");
    let pid = seen.get().expect("the step saw the init");
    assert!(!alive(pid), "the init {pid} was killed and reaped");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == MONITOR_VERB) {
        std::process::exit(serve_monitor(&args));
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: starting containers needs root");
        return;
    }
    for (name, test) in [
        (
            "attach_runs_before_the_foreground_workload",
            attach_runs_before_the_foreground_workload as fn(),
        ),
        (
            "monitor_runs_attach_and_side_tasks_in_order",
            monitor_runs_attach_and_side_tasks_in_order,
        ),
        (
            "failing_attach_leaves_nothing",
            failing_attach_leaves_nothing,
        ),
    ] {
        test();
        println!("test {name} ... ok");
    }
}
