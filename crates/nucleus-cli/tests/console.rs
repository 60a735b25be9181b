//! `process.terminal` with `--console-socket`: the runtime sends the pty master over a unix
//! socket (SCM_RIGHTS) and the container's stdio is the pty.

#[macro_use]
mod common;

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::{accept_until, pty_master, read_pty, recv_fd, Ctx, Out};
use serde_json::json;

/// `create --console-socket`, returning the create output and the received pty master.
fn create_with_console(
    ctx: &Ctx,
    bundle: &common::Bundle,
    id: &str,
    sock: &Path,
) -> (Out, Option<OwnedFd>) {
    let listener = UnixListener::bind(sock).expect("bind console socket");
    thread::scope(|s| {
        let create =
            s.spawn(|| ctx.create_with(bundle, id, &["--console-socket", sock.to_str().unwrap()]));
        let deadline = Instant::now() + common::CMD_TIMEOUT;
        let master = accept_until(&listener, deadline, || create.is_finished())
            .map(|stream| recv_fd(&stream));
        (create.join().expect("create thread"), master)
    })
}

#[test]
fn console_socket_receives_a_working_pty() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx
        .bundle()
        .edit(|s| {
            s["process"]["terminal"] = json!(true);
            s["process"]["consoleSize"] = json!({ "height": 40, "width": 120 });
        })
        .with_sh("tty; stty size; test -t 0 && test -t 1 && echo all-tty; read line; echo \"got:$line\"; echo hello");
    let id = ctx.id();
    let sock = ctx.scratch("console").join("sock");

    let (out, master) = create_with_console(&ctx, &bundle, &id, &sock);
    out.assert_ok();
    let master = master.unwrap_or_else(|| panic!("runtime never sent a pty master\n{out}"));
    let mut master = pty_master(master);

    ctx.start(&id);
    master.write_all(b"ping\n").expect("write to pty master");
    let text = read_pty(&mut master, Duration::from_secs(20));

    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert!(
        // The terminal echoes "ping" back too, possibly before the process runs.
        lines
            .iter()
            .any(|l| *l == "/dev/pts/0" || *l == "/dev/console"),
        "tty is not the pty: {text:?}"
    );
    assert!(
        lines.contains(&"40 120"),
        "consoleSize not applied: {text:?}"
    );
    assert!(
        lines.contains(&"all-tty"),
        "stdin/stdout are not the terminal: {text:?}"
    );
    assert!(
        lines.contains(&"got:ping"),
        "input written to the master did not reach the process: {text:?}"
    );
    assert!(lines.contains(&"hello"), "{text:?}");

    ctx.wait_status(&id, "stopped");
    ctx.delete(&id);
    ctx.finish();
}

#[test]
fn terminal_without_console_socket_is_refused_on_create() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx
        .bundle()
        .edit(|s| s["process"]["terminal"] = json!(true))
        .with_args(&["true"]);
    let id = ctx.id();
    let out = ctx.create_with(&bundle, &id, &[]);
    out.assert_fail();
    assert!(
        out.stderr.contains("console"),
        "error should mention the console socket\n{out}"
    );
    assert!(
        ctx.root_entries().is_empty(),
        "failed create left state: {:?}",
        ctx.root_entries()
    );
    ctx.finish();
}

#[test]
fn console_socket_that_does_not_exist_fails_create() {
    require!(root, busybox);
    let ctx = Ctx::new();
    let bundle = ctx
        .bundle()
        .edit(|s| s["process"]["terminal"] = json!(true))
        .with_args(&["true"]);
    let id = ctx.id();
    let missing = ctx.scratch("console").join("nobody-listens");
    let out = ctx.create_with(
        &bundle,
        &id,
        &["--console-socket", missing.to_str().unwrap()],
    );
    out.assert_fail();
    assert!(
        ctx.root_entries().is_empty(),
        "failed create left state: {:?}",
        ctx.root_entries()
    );
    ctx.finish();
}
