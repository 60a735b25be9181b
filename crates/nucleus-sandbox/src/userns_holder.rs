//! The user namespace that rootless containers with the default map share,
//! as podman's pause process does: a holder process (`nucleus:[usrns]`)
//! owns a user namespace mapped once through `newuidmap`/`newgidmap`, and
//! each start joins it (the OCI user namespace `path`) instead of paying
//! two setuid helpers for a new map. One holder per state root, recorded in
//! `<root>/.userns/holder.json` (pid, start time, namespace inode, maps).
//!
//! Locking (`<root>/.userns/lock`, flock): a start holds it shared from the
//! moment it picks the holder until its container exists in the state root;
//! making a holder takes it exclusively (concurrent first starts make one);
//! `stop_if_unused` takes it exclusively without waiting, so it never stops
//! a holder a start is about to join. A holder killed or replaced does not
//! harm running containers: their namespace lives as long as they do.
//! Must not: hold the lock across a container's lifetime in another
//! process, or let the holder inherit any descriptor but /dev/null.

use crate::error::{Result, SandboxError};
use crate::spec::{Runtime, SandboxSpec};
use crate::userns::{oci_id_maps, IdMap, UsernsMode};
use nix::fcntl::{Flock, FlockArg};
use nucleus_engine::state::StateRoot;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Set in the holder's environment: `holder_main` then holds, nothing else.
pub const HOLDER_ENV: &str = "NUCLEUS_USERNS_HOLDER";
/// The holder's directory under the state root.
pub const DIR: &str = ".userns";
const LOCK: &str = "lock";
const RECORD: &str = "holder.json";
/// Bound on waiting for the lock (a start making the holder holds it ~5 ms).
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// What `holder.json` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    pid: i32,
    /// `starttime` of /proc/PID/stat: a reused pid does not match.
    start_time: u64,
    /// Inode of /proc/PID/ns/user.
    ns_inode: u64,
    uid_map: Vec<IdMap>,
    gid_map: Vec<IdMap>,
}

impl Record {
    /// Whether the recorded process still runs and owns that namespace.
    fn is_live(&self) -> bool {
        matches!(
            nucleus_engine::state::proc_start_time(self.pid),
            Some((t, true)) if t == self.start_time
        ) && ns_inode(self.pid) == Some(self.ns_inode)
    }

    fn ns_path(&self) -> String {
        format!("/proc/{}/ns/user", self.pid)
    }
}

fn ns_inode(pid: i32) -> Option<u64> {
    fs::metadata(format!("/proc/{pid}/ns/user"))
        .ok()
        .map(|m| m.ino())
}

/// Held by a start until its container exists: the holder is not stopped
/// meanwhile.
#[derive(Debug)]
pub struct Lease {
    _lock: Flock<File>,
    pid: i32,
}

impl Lease {
    /// The holder's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }
}

/// The holder process's side: when `HOLDER_ENV` is set, becomes the holder
/// and never returns (or returns the exit code of a failed start). Call it
/// first in `main`, while the process has one thread.
pub fn holder_main() -> Option<i32> {
    std::env::var_os(HOLDER_ENV)?;
    let err = match hold() {
        Ok(never) => match never {},
        Err(e) => e,
    };
    // The spawner reads this line on the status pipe (our stdout).
    println!("err {err}");
    Some(1)
}

enum Never {}

/// Role: holder, on the host, the user's own ids. Unshares a user
/// namespace, says `ok` on stdout, then sleeps until killed; the spawner
/// writes its maps.
fn hold() -> std::result::Result<Never, String> {
    // Its own session: no terminal's signals reach it.
    nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
    std::env::set_current_dir("/").map_err(|e| format!("chdir to `/`: {e}"))?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER)
        .map_err(|e| format!("unshare a user namespace: {e}"))?;
    let _ = nix::sys::prctl::set_name(c"nucleus:[usrns]");
    let null = File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| format!("open `/dev/null`: {e}"))?;
    println!("ok");
    // Closing the status pipe tells the spawner we are ready.
    nix::unistd::dup2_stdout(&null).map_err(|e| format!("redirect stdout: {e}"))?;
    drop(null);
    loop {
        nix::unistd::pause();
    }
}

/// The maps a default rootless run of `spec` compiled to (`compiled` is
/// its OCI spec), when a shared namespace serves it: not root, the native
/// runtime, the default mode, a new user namespace, and maps that need the
/// setuid helpers (a single own-id map is written directly, for free).
fn wanted_maps(spec: &SandboxSpec, compiled: &Value) -> Option<(Vec<IdMap>, Vec<IdMap>)> {
    let euid = nix::unistd::geteuid().as_raw();
    if euid == 0
        || spec.runtime != Runtime::Native
        || spec.userns.mode != UsernsMode::Private
        || !spec.userns.uid_map.is_empty()
        || !spec.userns.gid_map.is_empty()
    {
        return None;
    }
    let linux = &compiled["linux"];
    let new_userns = linux["namespaces"]
        .as_array()?
        .iter()
        .any(|n| n["type"] == "user" && n.get("path").is_none());
    if !new_userns {
        return None;
    }
    let uid = parse_maps(&linux["uidMappings"])?;
    let gid = parse_maps(&linux["gidMappings"])?;
    let egid = nix::unistd::getegid().as_raw();
    let own_only = |m: &[IdMap], own: u32| matches!(m, [x] if x.size == 1 && x.host == own);
    if own_only(&uid, euid) && own_only(&gid, egid) {
        return None;
    }
    Some((uid, gid))
}

fn parse_maps(v: &Value) -> Option<Vec<IdMap>> {
    v.as_array()?
        .iter()
        .map(|m| {
            let n = |k: &str| m[k].as_u64().and_then(|x| u32::try_from(x).ok());
            Some(IdMap {
                container: n("containerID")?,
                host: n("hostID")?,
                size: n("size")?,
            })
        })
        .collect()
}

/// For a default rootless run: points `compiled`'s user namespace at this
/// state root's holder (made if there is none, or it died, or its maps are
/// not these), keeping the maps in the spec for the engine to check.
/// `exe` is the binary to start as the holder (it must call `holder_main`).
/// `None`: this run maps a namespace of its own.
pub fn join(
    root: &Path,
    spec: &SandboxSpec,
    compiled: &mut Value,
    exe: &Path,
) -> Result<Option<Lease>> {
    let Some((uid, gid)) = wanted_maps(spec, compiled) else {
        return Ok(None);
    };
    let dir = root.join(DIR);
    let (record, lock) = holder_for(&dir, &uid, &gid, exe)?;
    if let Some(namespaces) = compiled["linux"]["namespaces"].as_array_mut() {
        for n in namespaces.iter_mut().filter(|n| n["type"] == "user") {
            *n = json!({"type": "user", "path": record.ns_path()});
        }
    }
    tracing::debug!(
        pid = record.pid,
        path = record.ns_path(),
        "joining the shared user namespace"
    );
    Ok(Some(Lease {
        _lock: lock,
        pid: record.pid,
    }))
}

fn holder_error(dir: &Path, reason: impl Into<String>) -> SandboxError {
    SandboxError::UsernsHolder {
        dir: dir.to_path_buf(),
        reason: reason.into(),
    }
}

/// A live holder with these maps, and the lock held shared.
fn holder_for(
    dir: &Path,
    uid: &[IdMap],
    gid: &[IdMap],
    exe: &Path,
) -> Result<(Record, Flock<File>)> {
    let fits = |r: &Record| r.uid_map == uid && r.gid_map == gid && r.is_live();
    loop {
        let shared = lock(dir, false)?;
        if let Some(r) = read_record(dir).filter(fits) {
            return Ok((r, shared));
        }
        drop(shared);
        let lock = lock(dir, true)?;
        // Another start may have made one while we waited.
        let record = match read_record(dir) {
            Some(r) if fits(&r) => r,
            stale => {
                if let Some(old) = stale.filter(Record::is_live) {
                    // Other maps (the subordinate ranges changed): its
                    // containers keep their namespace; new ones get these.
                    kill_holder(&old);
                }
                let r = spawn_holder(dir, uid, gid, exe)?;
                write_record(dir, &r)?;
                tracing::debug!(pid = r.pid, "made the shared user namespace");
                r
            }
        };
        // Not atomic (flock(2)): a stop may slip in between, so check again.
        lock.relock(FlockArg::LockShared)
            .map_err(|e| holder_error(dir, format!("downgrade the lock: {e}")))?;
        if fits(&record) {
            return Ok((record, lock));
        }
    }
}

/// Opens and flocks `<dir>/lock` (made with `dir` if missing), shared or
/// exclusive, waiting at most `LOCK_WAIT`. A stop removes the file: the
/// lock is retried until it is on the file the path names.
fn lock(dir: &Path, exclusive: bool) -> Result<Flock<File>> {
    let path = dir.join(LOCK);
    let arg = if exclusive {
        FlockArg::LockExclusiveNonblock
    } else {
        FlockArg::LockSharedNonblock
    };
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(SandboxError::io("create", dir, e)),
        }
        let file = match OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(f) => f,
            // Removed by a stop since we made the directory.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(SandboxError::io("open", &path, e)),
        };
        match Flock::lock(file, arg) {
            Ok(l) => {
                let same = match (l.metadata(), fs::metadata(&path)) {
                    (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                    _ => false,
                };
                if same {
                    return Ok(l);
                }
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK | nix::errno::Errno::EINTR)) => {
                if start.elapsed() >= LOCK_WAIT {
                    return Err(holder_error(
                        dir,
                        format!("`{}` still locked after {LOCK_WAIT:?}", path.display()),
                    ));
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err((_, e)) => return Err(SandboxError::io("lock", &path, e.into())),
        }
    }
}

fn read_record(dir: &Path) -> Option<Record> {
    let text = fs::read(dir.join(RECORD)).ok()?;
    serde_json::from_slice(&text).ok()
}

fn write_record(dir: &Path, r: &Record) -> Result<()> {
    let path = dir.join(RECORD);
    let tmp = dir.join(format!(".{RECORD}.tmp"));
    let text = serde_json::to_vec(r).map_err(|e| holder_error(dir, e.to_string()))?;
    fs::write(&tmp, text).map_err(|e| SandboxError::io("write", &tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| SandboxError::io("rename into", &path, e))
}

/// Starts `exe` as the holder, waits for its `ok`, maps its namespace.
fn spawn_holder(dir: &Path, uid: &[IdMap], gid: &[IdMap], exe: &Path) -> Result<Record> {
    let mut child = Command::new(exe)
        .env_clear()
        .env(HOLDER_ENV, "1")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| holder_error(dir, format!("start `{}`: {e}", exe.display())))?;
    let mut status = String::new();
    if let Some(mut out) = child.stdout.take() {
        // EOF comes when the holder points stdout at /dev/null (or exits).
        let _ = out.read_to_string(&mut status);
    }
    if status.trim_end() != "ok" {
        let _ = child.kill();
        let _ = child.wait();
        let reason = status
            .trim()
            .strip_prefix("err ")
            .unwrap_or("it exited before it was ready");
        return Err(holder_error(dir, format!("the holder failed: {reason}")));
    }
    let pid = i32::try_from(child.id()).map_err(|_| holder_error(dir, "pid out of range"))?;
    let made = (|| {
        nucleus_engine::userns::write_id_maps(pid, &oci_id_maps(uid), &oci_id_maps(gid))
            .map_err(|e| holder_error(dir, format!("map its user namespace: {e}")))?;
        let (start_time, _) = nucleus_engine::state::proc_start_time(pid)
            .ok_or_else(|| holder_error(dir, format!("pid {pid} exited")))?;
        let ns_inode = ns_inode(pid)
            .ok_or_else(|| holder_error(dir, format!("pid {pid} has no user namespace")))?;
        Ok(Record {
            pid,
            start_time,
            ns_inode,
            uid_map: uid.to_vec(),
            gid_map: gid.to_vec(),
        })
    })();
    if made.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    // Not waited for: it outlives this process and is reaped by init.
    made
}

/// SIGKILLs the recorded holder through a pidfd, once its start time
/// still matches (never a process that reused the pid).
fn kill_holder(r: &Record) {
    let Ok(fd) = nucleus_sys::pidfd::pidfd_open(nix::unistd::Pid::from_raw(r.pid)) else {
        return;
    };
    if r.is_live() {
        use std::os::fd::AsFd;
        let _ = nucleus_sys::pidfd::pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
        let _ = nucleus_sys::pidfd::wait_exit(fd.as_fd(), Duration::from_secs(1));
    }
}

/// Whether the state root holds a container: a state directory (any
/// directory not starting with `.`, one being made too) or a sandbox's
/// bundle (made before the engine reserves the state directory).
fn has_containers(root: &Path) -> bool {
    let any_dir = |dir: &Path, skip_dot: bool| {
        fs::read_dir(dir).into_iter().flatten().flatten().any(|e| {
            !(skip_dot && e.file_name().to_string_lossy().starts_with('.'))
                && e.file_type().is_ok_and(|t| t.is_dir())
        })
    };
    any_dir(root, true) || any_dir(&root.join(crate::bundle::BUNDLES_DIR), false)
}

/// Stops `root`'s holder and removes its files when no container is left
/// and no start is joining it (`rm`, `system prune`). Returns the holder's
/// pid if one was stopped.
pub fn stop_if_unused(root: &StateRoot) -> Result<Option<i32>> {
    let dir = root.path().join(DIR);
    if !dir.is_dir() {
        return Ok(None);
    }
    let lock_path = dir.join(LOCK);
    let file = match OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(&lock_path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SandboxError::io("open", &lock_path, e)),
    };
    let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
        // A start is choosing or making the holder: it is in use.
        return Ok(None);
    };
    if has_containers(root.path()) {
        return Ok(None);
    }
    let stopped = read_record(&dir).filter(Record::is_live).map(|r| {
        kill_holder(&r);
        r.pid
    });
    for f in [RECORD, &format!(".{RECORD}.tmp"), LOCK] {
        match fs::remove_file(dir.join(f)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(SandboxError::io("remove", dir.join(f), e)),
        }
    }
    drop(lock);
    // A start may have made it again meanwhile: then it stays.
    let _ = fs::remove_dir(&dir);
    if let Some(pid) = stopped {
        tracing::debug!(pid, "stopped the shared user namespace");
    }
    Ok(stopped)
}

/// The holder's pid for `root`, if one is recorded and alive.
pub fn live_holder(root: &StateRoot) -> Option<i32> {
    read_record(&root.path().join(DIR))
        .filter(Record::is_live)
        .map(|r| r.pid)
}

/// The directory of `root`'s holder files.
pub fn dir_of(root: &StateRoot) -> PathBuf {
    root.path().join(DIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(container: u32, host: u32, size: u32) -> IdMap {
        IdMap {
            container,
            host,
            size,
        }
    }

    fn compiled(ns: Value, uid: Value, gid: Value) -> Value {
        json!({"linux": {"namespaces": ns, "uidMappings": uid, "gidMappings": gid}})
    }

    fn default_spec() -> SandboxSpec {
        let mut s = SandboxSpec::default();
        s.userns.mode = UsernsMode::Private;
        s
    }

    #[test]
    fn only_a_default_map_through_the_helpers_is_shared() {
        if nix::unistd::geteuid().is_root() {
            // Root never shares: the rule below is for ordinary users.
            assert!(wanted_maps(&default_spec(), &json!({})).is_none());
            return;
        }
        let (u, g) = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        let range = |own: u32| {
            json!([{"containerID": 0, "hostID": own, "size": 1},
                   {"containerID": 1, "hostID": 100000, "size": 65536}])
        };
        let c = compiled(json!([{"type": "user"}]), range(u), range(g));
        assert_eq!(
            wanted_maps(&default_spec(), &c),
            Some((
                vec![m(0, u, 1), m(1, 100_000, 65_536)],
                vec![m(0, g, 1), m(1, 100_000, 65_536)]
            ))
        );
        let single = |own: u32| json!([{"containerID": 0, "hostID": own, "size": 1}]);
        let c1 = compiled(json!([{"type": "user"}]), single(u), single(g));
        assert_eq!(wanted_maps(&default_spec(), &c1), None);
        let mut keep = default_spec();
        keep.userns.mode = UsernsMode::KeepId;
        assert_eq!(wanted_maps(&keep, &c), None);
        let joined = compiled(
            json!([{"type": "user", "path": "/proc/1/ns/user"}]),
            range(u),
            range(g),
        );
        assert_eq!(wanted_maps(&default_spec(), &joined), None);
    }

    #[test]
    fn root_never_shares() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let c = compiled(
            json!([{"type": "user"}]),
            json!([{"containerID": 0, "hostID": 5, "size": 9}]),
            json!([{"containerID": 0, "hostID": 5, "size": 9}]),
        );
        assert_eq!(wanted_maps(&default_spec(), &c), None);
    }

    #[test]
    fn a_record_of_a_dead_or_other_process_is_stale() {
        let me = i32::try_from(std::process::id()).unwrap();
        let (start_time, _) = nucleus_engine::state::proc_start_time(me).unwrap();
        let live = Record {
            pid: me,
            start_time,
            ns_inode: ns_inode(me).unwrap(),
            uid_map: vec![],
            gid_map: vec![],
        };
        assert!(live.is_live());
        assert!(!Record {
            start_time: start_time + 1,
            ..live.clone()
        }
        .is_live());
        assert!(!Record {
            ns_inode: 1,
            ..live.clone()
        }
        .is_live());
    }

    #[test]
    fn stop_removes_the_files_only_without_containers() {
        let t = tempfile::tempdir().unwrap();
        let root = StateRoot::new(t.path());
        let dir = dir_of(&root);
        drop(lock(&dir, true).unwrap());
        fs::create_dir(t.path().join("some-container")).unwrap();
        assert_eq!(stop_if_unused(&root).unwrap(), None);
        assert!(dir.join(LOCK).exists());
        fs::remove_dir(t.path().join("some-container")).unwrap();
        // Held shared by a start: left alone.
        let held = lock(&dir, false).unwrap();
        assert_eq!(stop_if_unused(&root).unwrap(), None);
        assert!(dir.join(LOCK).exists());
        drop(held);
        assert_eq!(stop_if_unused(&root).unwrap(), None);
        assert!(!dir.exists());
    }
}
