//! The state directory: one directory per container under the root, holding
//! `state.json` and `cgroup.json` (each written atomically, temp + rename),
//! a lock file held by every mutating verb (waited for with a bound, never
//! held by the container's init), and `exec.fifo` while the container
//! waits in `created`. A directory a killed runtime left half-written is
//! still removable by `delete --force`.

use crate::error::{EngineError, Result};
use nix::fcntl::{Flock, FlockArg};
use nucleus_cgroups::Cgroup;
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Longest container id accepted.
pub const MAX_ID_LEN: usize = 1024;

/// In a container's directory: its state, written once it is created.
pub const STATE_FILE: &str = "state.json";
/// In a container's directory: the file every verb locks.
pub const LOCK_FILE: &str = "lock";
const FIFO_FILE: &str = "exec.fifo";
/// The cgroup a create is about to make, recorded before the first mkdir so
/// that `delete --force` can remove it if create dies before `state.json`.
const CGROUP_FILE: &str = "cgroup.json";
/// Under the state root: one file per claimed name, holding its id.
pub const NAMES_DIR: &str = ".names";

/// Annotation holding a container's human-readable name (front ends set it).
pub const NAME_ANNOTATION: &str = "org.nucleus.name";
/// Annotation naming a bundle directory the runtime made and must remove on delete.
pub const OWNED_BUNDLE_ANNOTATION: &str = "org.nucleus.owned-bundle";

/// The lifecycle status of a container, as the OCI state reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What nucleus records about a container between verbs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerState {
    pub id: String,
    /// Host pid of the container's init; 0 before it exists.
    pub pid: i32,
    /// `starttime` from /proc/<pid>/stat, so a reused pid is never mistaken for ours.
    pub pid_start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339 creation time.
    pub created: String,
    pub annotations: HashMap<String, String>,
    pub cgroup: Option<Cgroup>,
    /// The spec as it was when the container was created.
    pub spec: Spec,
}

impl ContainerState {
    /// Whether the recorded init process is still alive (and not a zombie).
    pub fn is_alive(&self) -> bool {
        self.pid > 0
            && matches!(proc_start_time(self.pid), Some((start, alive)) if alive && start == self.pid_start_time)
    }

    /// The OCI state JSON (`ociVersion`, `id`, `status`, `pid`, `bundle`, `annotations`).
    pub fn oci_state(&self, status: Status) -> serde_json::Value {
        let pid = if status == Status::Stopped {
            0
        } else {
            self.pid
        };
        oci_state(&self.id, status, pid, &self.bundle, &self.annotations)
    }
}

/// The OCI state object, as `state` prints it and hooks, the seccomp agent
/// and the console read it on stdin.
pub fn oci_state(
    id: &str,
    status: Status,
    pid: i32,
    bundle: &Path,
    annotations: &HashMap<String, String>,
) -> serde_json::Value {
    serde_json::json!({
        "ociVersion": crate::spec::OCI_VERSION,
        "id": id,
        "status": status,
        "pid": pid,
        "bundle": bundle,
        "annotations": annotations,
    })
}

/// Reads `starttime` (field 22) of /proc/<pid>/stat and whether the process
/// is alive (not a zombie or dead).
pub fn proc_start_time(pid: i32) -> Option<(u64, bool)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((start, !matches!(state, "Z" | "X" | "x")))
}

/// Checks a container id: non-empty, bounded, and a single safe path component.
pub fn validate_id(id: &str) -> Result<()> {
    let bad = |reason| {
        Err(EngineError::InvalidId {
            id: id.to_string(),
            reason,
        })
    };
    if id.is_empty() {
        return bad("it is empty");
    }
    if id.len() > MAX_ID_LEN {
        return bad("it is longer than 1024 bytes");
    }
    if id.starts_with('.') {
        return bad("it starts with `.` (reserved for the runtime's own entries)");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'+'))
    {
        return bad("only letters, digits and `_ - . +` are allowed");
    }
    Ok(())
}

/// The root of all container state directories (`--root`).
#[derive(Debug, Clone)]
pub struct StateRoot {
    root: PathBuf,
}

impl StateRoot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateRoot { root: root.into() }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Creates the directory for a new container and locks it.
    /// Fails with `AlreadyExists` if the id is taken.
    pub fn reserve(&self, id: &str) -> Result<ContainerDir> {
        validate_id(id)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&self.root)
            .map_err(|e| EngineError::io("create state root", &self.root, e))?;
        let dir = self.root.join(id);
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(EngineError::AlreadyExists { id: id.to_string() })
            }
            Err(e) => return Err(EngineError::io("create state directory", &dir, e)),
        }
        match ContainerDir::lock(id, dir.clone()) {
            Ok(d) => Ok(d),
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    /// Opens and locks an existing container's directory.
    pub fn open(&self, id: &str) -> Result<ContainerDir> {
        let cdir = self.open_partial(id)?;
        // A concurrent delete may have removed it while we waited for the lock.
        if !cdir.state_path().exists() {
            return Err(EngineError::NotFound { id: id.to_string() });
        }
        Ok(cdir)
    }

    /// Locks a container's directory whether or not it has `state.json`
    /// (a create killed early leaves only part of it).
    pub fn open_partial(&self, id: &str) -> Result<ContainerDir> {
        validate_id(id)?;
        let dir = self.root.join(id);
        if !dir.is_dir() {
            return Err(EngineError::NotFound { id: id.to_string() });
        }
        ContainerDir::lock(id, dir)
    }

    /// Reads a container's state without taking its lock (for `state`/`list`).
    pub fn peek(&self, id: &str) -> Result<ContainerState> {
        validate_id(id)?;
        let path = self.root.join(id).join(STATE_FILE);
        read_state(&path).map_err(|e| match e {
            EngineError::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                EngineError::NotFound { id: id.to_string() }
            }
            other => other,
        })
    }

    /// Ids of all containers with a state file, sorted.
    pub fn ids(&self) -> Result<Vec<String>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(EngineError::io("read state root", &self.root, e)),
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join(STATE_FILE).exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Where compiled seccomp programs are cached.
    pub fn seccomp_cache_dir(&self) -> PathBuf {
        self.root.join(".seccomp-cache")
    }

    /// Finds a container by exact id, then by name, then by unique id prefix.
    pub fn resolve(&self, query: &str) -> Result<String> {
        if validate_id(query).is_ok() && self.root.join(query).join(STATE_FILE).exists() {
            return Ok(query.to_string());
        }
        if let Some(id) = self.name_owner(query) {
            return Ok(id);
        }
        let ids = self.ids()?;
        let matches: Vec<&String> = ids
            .iter()
            .filter(|id| !query.is_empty() && id.starts_with(query))
            .collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(EngineError::NotFound {
                id: query.to_string(),
            }),
            _ => Err(EngineError::InvalidId {
                id: query.to_string(),
                reason: "it is a prefix of more than one container id",
            }),
        }
    }

    fn name_path(&self, name: &str) -> Result<PathBuf> {
        validate_id(name).map_err(|_| EngineError::InvalidId {
            id: name.to_string(),
            reason: "names follow the same rules as ids",
        })?;
        Ok(self.root.join(NAMES_DIR).join(name))
    }

    /// The id owning `name`, if the name is taken by a container that still exists.
    pub fn name_owner(&self, name: &str) -> Option<String> {
        let id = fs::read_to_string(self.name_path(name).ok()?).ok()?;
        self.root.join(&id).is_dir().then_some(id)
    }

    /// Reserves `name` for container `id`. Names are unique: creation is
    /// O_EXCL, so of two concurrent claims exactly one wins. A name left by a
    /// container that no longer exists is taken over.
    pub fn claim_name(&self, name: &str, id: &str) -> Result<()> {
        let path = self.name_path(name)?;
        let dir = self.root.join(NAMES_DIR);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| EngineError::io("create", &dir, e))?;
        for _ in 0..2 {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(mut f) => {
                    return f
                        .write_all(id.as_bytes())
                        .map_err(|e| EngineError::io("write", &path, e))
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    // A claim whose container is not reserved yet is live, not stale.
                    let young = fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age < std::time::Duration::from_secs(60));
                    if self.name_owner(name).is_some() || young {
                        return Err(EngineError::NameInUse {
                            name: name.to_string(),
                        });
                    }
                    // Stale: its container is gone. Remove and retry once.
                    let _ = fs::remove_file(&path);
                }
                Err(e) => return Err(EngineError::io("create", &path, e)),
            }
        }
        Err(EngineError::NameInUse {
            name: name.to_string(),
        })
    }

    /// Releases `name` if it still belongs to `id`.
    pub fn release_name(&self, name: &str, id: &str) {
        if let Ok(path) = self.name_path(name) {
            if fs::read_to_string(&path).is_ok_and(|owner| owner == id) {
                let _ = fs::remove_file(&path);
            }
        }
    }

    /// Whether `<root>/<id>` exists.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Current status of a container from its state and the live process.
    pub fn status_of(&self, state: &ContainerState) -> Status {
        status_of(&self.root.join(&state.id), state)
    }
}

/// Status from recorded state plus what the kernel says now.
pub fn status_of(dir: &Path, state: &ContainerState) -> Status {
    if crate::backend::gvisor::is_gvisor(state) {
        return crate::backend::gvisor::status(dir, state);
    }
    if !state.is_alive() {
        return Status::Stopped;
    }
    if dir.join(FIFO_FILE).exists() {
        return Status::Created;
    }
    if let Some(cg) = &state.cgroup {
        if cg.is_frozen().unwrap_or(false) {
            return Status::Paused;
        }
    }
    Status::Running
}

fn read_state(path: &Path) -> Result<ContainerState> {
    let text = fs::read(path).map_err(|e| EngineError::io("read", path, e))?;
    serde_json::from_slice(&text).map_err(|source| EngineError::CorruptState {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `data` to `dir/name` atomically: a temp file in the same
/// directory, then rename, so a reader (or a runtime killed halfway) never
/// sees a partial file.
fn write_atomic(dir: &Path, name: &str, data: &[u8], fault_step: &'static str) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| EngineError::io("create", &tmp, e))?;
    f.write_all(&data[..data.len() / 2])
        .map_err(|e| EngineError::io("write", &tmp, e))?;
    crate::fault::point(fault_step);
    f.write_all(&data[data.len() / 2..])
        .map_err(|e| EngineError::io("write", &tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| EngineError::io("rename into place", &path, e))
}

/// Who holds the flock on `file`, from /proc/locks, for the timeout error.
/// Lines look like `1: FLOCK  ADVISORY  WRITE 4242 00:1b:12345 0 EOF`.
fn lock_holder(file: &File) -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = file.metadata() else {
        return "its holder is unknown".into();
    };
    let (major, minor) = (libc::major(meta.dev()), libc::minor(meta.dev()));
    let want = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    let locks = fs::read_to_string("/proc/locks").unwrap_or_default();
    let pids: Vec<String> = locks
        .lines()
        .filter(|l| !l.contains("->"))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&want.as_str()))
                .then(|| f[4].to_string())
        })
        .collect();
    match pids.as_slice() {
        [] => "its holder is unknown".into(),
        _ => {
            let named: Vec<String> = pids
                .iter()
                .map(|p| match fs::read_to_string(format!("/proc/{p}/comm")) {
                    Ok(comm) => format!("{p} ({})", comm.trim()),
                    Err(_) => format!("{p} (exited; a process it forked holds the lock)"),
                })
                .collect();
            format!("it is held by pid {}", named.join(", "))
        }
    }
}

/// A locked container state directory. The lock is released on drop.
#[derive(Debug)]
pub struct ContainerDir {
    id: String,
    dir: PathBuf,
    lock: Flock<File>,
}

impl ContainerDir {
    /// Takes the directory's lock, waiting at most `fault::lock_timeout()`:
    /// a verb never hangs on a lock, it names the holder instead.
    fn lock(id: &str, dir: PathBuf) -> Result<Self> {
        let lock_path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&lock_path)
            .map_err(|e| match e.kind() {
                // A concurrent delete removed the directory since it was seen.
                std::io::ErrorKind::NotFound => EngineError::NotFound { id: id.to_string() },
                _ => EngineError::io("open lock file", &lock_path, e),
            })?;
        let limit = crate::fault::lock_timeout();
        let start = Instant::now();
        let mut pause = Duration::from_millis(1);
        let lock = loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => break lock,
                Err((f, nix::errno::Errno::EWOULDBLOCK | nix::errno::Errno::EINTR)) => {
                    if start.elapsed() >= limit {
                        return Err(EngineError::LockTimeout {
                            holder: lock_holder(&f),
                            path: lock_path,
                            waited: start.elapsed(),
                        });
                    }
                    file = f;
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err((_, errno)) => return Err(EngineError::io("lock", &lock_path, errno.into())),
            }
        };
        // The holder we waited for may have been a delete that removed it all.
        if !dir.is_dir() {
            return Err(EngineError::NotFound { id: id.to_string() });
        }
        Ok(ContainerDir {
            id: id.to_string(),
            dir,
            lock,
        })
    }

    /// The lock's fd, which a forked init must close (see `launch::child`).
    pub(crate) fn lock_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.lock.as_raw_fd()
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    pub fn fifo_path(&self) -> PathBuf {
        self.dir.join(FIFO_FILE)
    }

    pub fn load(&self) -> Result<ContainerState> {
        read_state(&self.state_path())
    }

    /// Writes state.json atomically.
    pub fn save(&self, state: &ContainerState) -> Result<()> {
        let data = serde_json::to_vec(state).map_err(|source| EngineError::CorruptState {
            path: self.state_path(),
            source,
        })?;
        write_atomic(&self.dir, STATE_FILE, &data, "state-file-temp")
    }

    /// Records the cgroup before it is created (see `CGROUP_FILE`), atomically.
    pub fn save_cgroup(&self, cg: &Cgroup) -> Result<()> {
        let data = serde_json::to_vec(cg).map_err(|source| EngineError::CorruptState {
            path: self.dir.join(CGROUP_FILE),
            source,
        })?;
        write_atomic(&self.dir, CGROUP_FILE, &data, "cgroup-file-temp")
    }

    /// The cgroup recorded by `save_cgroup`, if it was recorded.
    pub fn pending_cgroup(&self) -> Result<Option<Cgroup>> {
        let path = self.dir.join(CGROUP_FILE);
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(EngineError::io("read", &path, e)),
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|source| EngineError::CorruptState { path, source })
    }

    pub fn status(&self, state: &ContainerState) -> Status {
        status_of(&self.dir, state)
    }

    /// Removes the directory and everything in it, `state.json` before the
    /// rest (so a half-removed directory reads as a partial one, which
    /// `delete --force` handles). The lock goes last. On failure the error
    /// names what is left.
    pub fn remove(self) -> Result<()> {
        match fs::remove_file(self.state_path()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.remove_error(e)),
        }
        crate::fault::point("delete-state-removed");
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.remove_error(e)),
        }
    }

    fn remove_error(&self, source: std::io::Error) -> EngineError {
        let left = fs::read_dir(&self.dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        EngineError::RemoveState {
            path: self.dir.clone(),
            left,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_removed_under_a_verb_is_not_found() {
        // `rm -f` racing a `--rm` monitor: the directory goes between the
        // existence check and the lock.
        let tmp = tempfile::tempdir().unwrap();
        let gone = tmp.path().join("abc");
        assert!(matches!(
            ContainerDir::lock("abc", gone),
            Err(EngineError::NotFound { id }) if id == "abc"
        ));
    }

    #[test]
    fn id_rules() {
        for ok in ["abc", "a-b_c.d+e", "0", &"x".repeat(1024)] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".names",
            "a/b",
            "../x",
            "a b",
            &"x".repeat(1025),
            "a\0b",
        ] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reserve_is_exclusive_and_removable() {
        let tmp = tempfile::tempdir().unwrap();
        let root = StateRoot::new(tmp.path().join("state"));
        let d = root.reserve("c1").unwrap();
        assert!(matches!(
            root.reserve("c1"),
            Err(EngineError::AlreadyExists { .. })
        ));
        d.remove().unwrap();
        assert!(root.ids().unwrap().is_empty());
        assert!(matches!(root.open("c1"), Err(EngineError::NotFound { .. })));
    }

    #[test]
    fn names_are_unique_and_resolve() {
        let tmp = tempfile::tempdir().unwrap();
        let root = StateRoot::new(tmp.path().join("state"));
        let d = root.reserve("abc123").unwrap();
        std::fs::write(d.state_path(), "{}").unwrap();
        root.claim_name("web", "abc123").unwrap();
        assert!(matches!(
            root.claim_name("web", "other"),
            Err(EngineError::NameInUse { .. })
        ));
        assert_eq!(root.resolve("web").unwrap(), "abc123");
        assert_eq!(root.resolve("abc").unwrap(), "abc123");
        assert_eq!(root.resolve("abc123").unwrap(), "abc123");
        assert!(root.resolve("zzz").is_err());
        root.release_name("web", "abc123");
        assert!(root.name_owner("web").is_none());
    }

    #[test]
    fn own_start_time_is_alive() {
        let pid = i32::try_from(std::process::id()).unwrap();
        let (_, alive) = proc_start_time(pid).unwrap();
        assert!(alive);
        assert!(proc_start_time(i32::MAX).is_none());
    }
}
