//! Talking to a sandbox's exec server (see
//! `nucleus_engine::lifecycle::serve_execs`): a process per sandbox, in
//! the sandbox's cgroup, that forks a `nucleus exec` per request instead
//! of this server spawning one. For a sandbox this API creates, the
//! sandbox's monitor forks it, its socket bound before the create returns
//! (`MonitorCommand::exec_sockets`). Otherwise (a sandbox made before a
//! restart, or a monitor that could not fork) it is `nucleus exec-server`,
//! started on the first exec (or at create: [`prestart`]); it lives until
//! the sandbox's init exits. One launch per sandbox is shared by whoever
//! needs it ([`Launches`]). If it cannot be reached or started, [`start`]
//! returns `None` and the caller spawns `nucleus exec`.

use crate::AppState;
use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use std::collections::HashMap;
use std::io::{IoSlice, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};
use tokio::net::unix::pipe;

/// How long to wait for a new server's `ready`, and for a `busy` one's
/// socket to appear.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// The launch of each sandbox's exec server, by sandbox id: set once the
/// server said `ready` (or `busy`); a failed launch leaves it unset, so
/// the next exec tries again.
pub(crate) type Launches = Mutex<HashMap<String, Arc<tokio::sync::OnceCell<()>>>>;

/// One command running through the exec server.
pub(crate) struct Session {
    pub stdin: Option<pipe::Sender>,
    pub stdout: pipe::Receiver,
    pub stderr: pipe::Receiver,
    pub exit: Exit,
}

/// Where the worker's exit code arrives.
pub(crate) struct Exit(tokio::net::UnixStream);

impl Exit {
    /// The worker's exit code (that of `nucleus exec`); -1 when it died
    /// without saying.
    pub async fn wait(&mut self) -> std::io::Result<i32> {
        let mut code = [0u8; 4];
        match self.0.read_exact(&mut code).await {
            Ok(_) => Ok(i32::from_le_bytes(code)),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(-1),
            Err(e) => Err(e),
        }
    }
}

/// `<root>/.api`: where exec servers listen.
pub(crate) fn socket_dir(st: &AppState) -> PathBuf {
    st.root.join(".api")
}

/// `<root>/.api/x-<first 16 hex of id>.sock` (`monitor::exec_socket`).
pub(crate) fn socket_path(st: &AppState, id: &str) -> PathBuf {
    nucleus_sandbox::monitor::exec_socket(&socket_dir(st), id)
}

/// Removes a gone sandbox's exec server socket and lock file (a server
/// killed with its cgroup cannot).
pub(crate) fn remove_files(st: &AppState, id: &str) {
    forget(st, id);
    let sock = socket_path(st, id);
    let _ = std::fs::remove_file(sock.with_extension("lock"));
    let _ = std::fs::remove_file(sock);
}

/// Runs `nucleus <args>` (an `exec` command line) through sandbox `id`'s
/// exec server, starting the server if none answers.
pub(crate) async fn start(
    st: &AppState,
    id: &str,
    args: &[String],
    stdin: bool,
) -> Option<Session> {
    let path = socket_path(st, id);
    let conn = match UnixStream::connect(&path) {
        Ok(c) => c,
        Err(_) => {
            if !ensure_launched(st, id, &path).await? {
                // Launched before, and gone since: start another.
                forget(st, id);
                ensure_launched(st, id, &path).await?;
            }
            connect_until(&path).await?
        }
    };
    send(conn, args, stdin).ok()
}

/// Starts sandbox `id`'s exec server in the background (a new sandbox's
/// first exec then finds it ready, or waits for this same launch).
pub(crate) fn prestart(st: &Arc<AppState>, id: &str) {
    let (st, id) = (st.clone(), id.to_string());
    tokio::spawn(async move {
        let path = socket_path(&st, &id);
        let _ = ensure_launched(&st, &id, &path).await;
    });
}

/// Launches the server unless this API already did (or is doing it);
/// `Some(true)` when this call waited for a launch to finish,
/// `Some(false)` when one had finished before it came.
async fn ensure_launched(st: &AppState, id: &str, path: &std::path::Path) -> Option<bool> {
    let cell = {
        let mut all = st.exec_servers.lock().unwrap_or_else(|p| p.into_inner());
        if !all.contains_key(id) {
            drop_gone(st, &mut all);
        }
        all.entry(id.to_string()).or_default().clone()
    };
    if cell.initialized() {
        return Some(false);
    }
    cell.get_or_try_init(|| async { launch(st, id, path).await.ok_or(()) })
        .await
        .ok()?;
    Some(true)
}

/// Sandboxes removed without this API (by their own monitor after a
/// timeout, or by another front end) leave entries behind; they go each
/// time the map reaches a power of two, so the work stays O(1) per launch.
fn drop_gone(st: &AppState, all: &mut HashMap<String, Arc<tokio::sync::OnceCell<()>>>) {
    let n = all.len();
    if n < 16 || !n.is_power_of_two() {
        return;
    }
    let root = nucleus_engine::state::StateRoot::new(&st.root);
    all.retain(|id, _| root.container_dir(id).exists());
}

fn forget(st: &AppState, id: &str) {
    let mut all = st.exec_servers.lock().unwrap_or_else(|p| p.into_inner());
    all.remove(id);
}

/// Starts the exec server and waits for `ready` (or `busy`: another one
/// is starting). The server outlives this process, like a monitor.
async fn launch(st: &AppState, id: &str, path: &std::path::Path) -> Option<()> {
    // Made by the first exec too, but a server started at create comes first.
    std::fs::create_dir_all(path.parent()?).ok()?;
    let mut c = tokio::process::Command::new(&st.exe);
    c.arg("--root").arg(&st.root);
    if st.debug {
        c.arg("--debug");
    }
    c.arg("exec-server").arg("--socket").arg(path).arg(id);
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0);
    let mut child = c.spawn().ok()?;
    let out = child.stdout.take()?;
    // Reaped when it ends, whenever that is.
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(out);
    tokio::time::timeout(START_TIMEOUT, reader.read_line(&mut line))
        .await
        .ok()?
        .ok()?;
    matches!(line.trim(), "ready" | "busy").then_some(())
}

async fn connect_until(path: &std::path::Path) -> Option<UnixStream> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(c) = UnixStream::connect(path) {
            return Some(c);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Sends the request line with the worker's ends of three new pipes
/// (stdin is `/dev/null` without `stdin`), keeping ours.
fn send(conn: UnixStream, args: &[String], stdin: bool) -> std::io::Result<Session> {
    let cloexec = rustix::pipe::PipeFlags::CLOEXEC;
    let (out_r, out_w) = rustix::pipe::pipe_with(cloexec)?;
    let (err_r, err_w) = rustix::pipe::pipe_with(cloexec)?;
    let (in_ours, in_theirs): (Option<OwnedFd>, OwnedFd) = if stdin {
        let (r, w) = rustix::pipe::pipe_with(cloexec)?;
        (Some(w), r)
    } else {
        (None, std::fs::File::open("/dev/null")?.into())
    };
    let mut line = serde_json::to_vec(args)?;
    line.push(b'\n');
    let fds = [in_theirs.as_fd(), out_w.as_fd(), err_w.as_fd()];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(3))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    if !cmsg.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(std::io::Error::other("control message too large"));
    }
    let sent = sendmsg(
        &conn,
        &[IoSlice::new(&line)],
        &mut cmsg,
        SendFlags::NOSIGNAL,
    )?;
    (&conn).write_all(&line[sent..])?;
    drop((in_theirs, out_w, err_w));
    conn.set_nonblocking(true)?;
    Ok(Session {
        stdin: match in_ours {
            Some(w) => Some(pipe::Sender::from_owned_fd(w)?),
            None => None,
        },
        stdout: pipe::Receiver::from_owned_fd(out_r)?,
        stderr: pipe::Receiver::from_owned_fd(err_r)?,
        exit: Exit(tokio::net::UnixStream::from_std(conn)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_of_gone_sandboxes_are_dropped_when_the_map_doubles() {
        let root = tempfile::tempdir().unwrap();
        let sv = crate::Service::new(
            root.path().into(),
            root.path().into(),
            "/bin/false".into(),
            false,
        );
        std::fs::create_dir(root.path().join("live")).unwrap();
        let mut all = HashMap::new();
        all.insert("live".to_string(), Arc::default());
        for i in 0..14 {
            all.insert(format!("gone{i}"), Arc::default());
        }
        drop_gone(&sv.state, &mut all);
        assert_eq!(all.len(), 15, "below 16 entries nothing is swept");
        all.insert("gone14".to_string(), Arc::default());
        drop_gone(&sv.state, &mut all);
        assert_eq!(all.keys().collect::<Vec<_>>(), vec!["live"]);
    }
}
