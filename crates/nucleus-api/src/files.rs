//! `/v1/sandboxes/{id}/files…`: read, write, list, stat and remove files in
//! a running sandbox, and move directories in and out as tar.
//!
//! The sandbox's root is reached through `/proc/<init pid>/root`, and every
//! path is resolved with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`
//! from that directory: a symlink in the sandbox resolves as the sandbox
//! sees it and can never lead to a host file, and `/proc/…` magic links are
//! refused. The last component is never followed when writing or removing
//! (`O_NOFOLLOW`, `unlinkat`), and a tar unpacks beneath its target without
//! following any symlink (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`). Writes
//! keep the sandbox's mount flags (a read-only root stays read-only) and
//! belong to the sandbox's user.

use crate::error::ApiError;
use crate::{blocking, AppState, Service, Shared};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::Json;
use nucleus_engine::state::StateRoot;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use serde::Deserialize;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Component;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);
const BENEATH: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PathQuery {
    pub path: String,
    /// Create missing parent directories (writes) or remove a directory
    /// with its contents (remove).
    pub parents: bool,
    pub recursive: bool,
    /// Octal mode of a written file (0644 by default).
    pub mode: Option<String>,
}

/// An open sandbox root and the owner new files get.
struct Root {
    id: String,
    fd: OwnedFd,
    owner: (u32, u32),
}

impl Root {
    fn open(st: &AppState, query: &str) -> Result<Root, ApiError> {
        let root = StateRoot::new(&st.root);
        let id = nucleus_sandbox::names::resolve(&root, query)?;
        let state = root
            .peek(&id)
            .map_err(|_| ApiError::NotFound(query.to_string()))?;
        if !state.is_alive() {
            return Err(ApiError::NotRunning(query.to_string()));
        }
        let proc_root = format!("/proc/{}/root", state.pid);
        let fd = rustix::fs::open(
            &proc_root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|_| ApiError::NotRunning(query.to_string()))?;
        // The pid could have been reused between the check and the open.
        if !state.is_alive() {
            return Err(ApiError::NotRunning(query.to_string()));
        }
        let owner = state
            .spec
            .process()
            .as_ref()
            .map(|p| (p.user().uid(), p.user().gid()))
            .unwrap_or((0, 0));
        Ok(Root { id, fd, owner })
    }

    fn err(&self, path: &str, e: Errno) -> ApiError {
        let status = match e {
            Errno::NOENT | Errno::NOTDIR => StatusCode::NOT_FOUND,
            Errno::EXIST | Errno::NOTEMPTY | Errno::ISDIR => StatusCode::CONFLICT,
            Errno::ACCESS | Errno::PERM | Errno::ROFS | Errno::XDEV | Errno::LOOP => {
                StatusCode::FORBIDDEN
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let reason = match e {
            Errno::XDEV | Errno::LOOP => {
                format!("{e} (a symlink or magic link that leads out is refused)")
            }
            e => e.to_string(),
        };
        ApiError::Path {
            id: self.id.clone(),
            path: path.to_string(),
            reason,
            status,
        }
    }

    /// Opens `path` as the sandbox sees it.
    fn open_at(&self, path: &str, flags: OFlags, mode: Mode) -> Result<OwnedFd, ApiError> {
        rustix::fs::openat2(&self.fd, rel(path)?, flags | OFlags::CLOEXEC, mode, IN_ROOT)
            .map_err(|e| self.err(path, e))
    }

    /// The parent directory of `path` and its last component.
    fn parent_of<'p>(&self, path: &'p str, create: bool) -> Result<(OwnedFd, &'p str), ApiError> {
        let (parent, name) = split(path)?;
        if create {
            self.make_dirs(parent)?;
        }
        let fd = self.open_at(parent, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())?;
        Ok((fd, name))
    }

    /// `mkdir -p`, one component at a time, each resolved in the root.
    fn make_dirs(&self, path: &str) -> Result<(), ApiError> {
        let mut sofar = String::from("/");
        for part in rel(path)?.split('/').filter(|p| !p.is_empty()) {
            let dir = self.open_at(&sofar, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())?;
            if !sofar.ends_with('/') {
                sofar.push('/');
            }
            sofar.push_str(part);
            match rustix::fs::mkdirat(&dir, part, Mode::from_raw_mode(0o755)) {
                Ok(()) => {
                    let made =
                        self.open_at(&sofar, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
                    self.chown(made.as_fd());
                }
                Err(Errno::EXIST) => {}
                Err(e) => return Err(self.err(&sofar, e)),
            }
        }
        Ok(())
    }

    fn chown(&self, fd: BorrowedFd<'_>) {
        let (u, g) = self.owner;
        let _ = rustix::fs::fchown(
            fd,
            Some(rustix::fs::Uid::from_raw(u)),
            Some(rustix::fs::Gid::from_raw(g)),
        );
    }
}

/// An absolute sandbox path as a relative one for openat2 (`.` for `/`).
fn rel(path: &str) -> Result<&str, ApiError> {
    if !path.starts_with('/') || path.contains('\0') {
        return Err(ApiError::invalid(
            "path",
            path,
            "an absolute path inside the sandbox",
        ));
    }
    let r = path.trim_start_matches('/');
    Ok(if r.is_empty() { "." } else { r })
}

fn split(path: &str) -> Result<(&str, &str), ApiError> {
    rel(path)?;
    let trimmed = path.trim_end_matches('/');
    let (parent, name) = trimmed.rsplit_once('/').unwrap_or(("", trimmed));
    if name.is_empty() || name == "." || name == ".." {
        return Err(ApiError::invalid("path", path, "names no file"));
    }
    Ok((if parent.is_empty() { "/" } else { parent }, name))
}

fn kind(mode: u32) -> &'static str {
    match FileType::from_raw_mode(mode) {
        FileType::RegularFile => "file",
        FileType::Directory => "dir",
        FileType::Symlink => "symlink",
        FileType::Fifo => "fifo",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "char",
        FileType::BlockDevice => "block",
        FileType::Unknown => "unknown",
    }
}

fn describe(dir: BorrowedFd<'_>, name: &str, st: &rustix::fs::Stat) -> Value {
    let mut v = json!({
        "name": name,
        "type": kind(st.st_mode),
        "size": st.st_size,
        "mode": format!("{:04o}", st.st_mode & 0o7777),
        "uid": st.st_uid,
        "gid": st.st_gid,
        "mtime": st.st_mtime,
    });
    if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
        if let Ok(t) = rustix::fs::readlinkat(dir, name, Vec::new()) {
            v["target"] = Value::String(t.to_string_lossy().into_owned());
        }
    }
    v
}

/// Opens a regular file for reading: the file and its size.
pub(crate) fn open_read(
    st: &AppState,
    id: &str,
    path: &str,
) -> Result<(std::fs::File, u64), ApiError> {
    let root = Root::open(st, id)?;
    let fd = root.open_at(
        path,
        OFlags::RDONLY | OFlags::NOCTTY | OFlags::NONBLOCK,
        Mode::empty(),
    )?;
    let stat = rustix::fs::fstat(&fd).map_err(|e| root.err(path, e))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(ApiError::Path {
            id: root.id.clone(),
            path: path.to_string(),
            reason: format!(
                "is a {}, not a file (use files/list or files/archive)",
                kind(stat.st_mode)
            ),
            status: StatusCode::BAD_REQUEST,
        });
    }
    Ok((
        std::fs::File::from(fd),
        u64::try_from(stat.st_size).unwrap_or(0),
    ))
}

/// `GET …/files?path=P`: the bytes of a regular file.
pub async fn read_route(
    State(sv): State<Service>,
    Path(id): Path<String>,
    Query(q): Query<PathQuery>,
) -> Result<Response, ApiError> {
    let (file, size) = sv.open_file(&id, &q.path).await?;
    let stream =
        tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(file), 256 * 1024);
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, size)
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::Runtime(e.to_string()))
}

/// The mode of a written file, from octal text (0644 when not given).
pub(crate) fn parse_mode(mode: Option<&str>) -> Result<u32, ApiError> {
    match mode {
        Some(m) => u32::from_str_radix(m, 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| ApiError::invalid("mode", m, "an octal mode such as 0644")),
        None => Ok(0o644),
    }
}

/// Writes a stream of chunks to a file (created or truncated, never
/// through a final symlink, owned by the sandbox's user); the bytes written.
pub(crate) async fn write<S, E>(
    st: Shared,
    id: &str,
    path: &str,
    parents: bool,
    mode: u32,
    mut body: S,
) -> Result<u64, ApiError>
where
    S: tokio_stream::Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let (id_owned, path_owned) = (id.to_string(), path.to_string());
    let (file, root) = blocking(move || {
        let root = Root::open(&st, &id_owned)?;
        let (dir, name) = root.parent_of(&path_owned, parents)?;
        let fd = rustix::fs::openat2(
            &dir,
            name,
            OFlags::WRONLY
                | OFlags::CREATE
                | OFlags::TRUNC
                | OFlags::NOFOLLOW
                | OFlags::CLOEXEC
                | OFlags::NOCTTY,
            Mode::from_raw_mode(mode),
            BENEATH,
        )
        .map_err(|e| root.err(&path_owned, e))?;
        root.chown(fd.as_fd());
        let _ = rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode));
        Ok((std::fs::File::from(fd), root))
    })
    .await?;
    let mut file = tokio::fs::File::from_std(file);
    let mut written: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ApiError::invalid("body", "…", e.to_string()))?;
        tokio::io::AsyncWriteExt::write_all(&mut file, &chunk)
            .await
            .map_err(|e| root.err(path, Errno::from_io_error(&e).unwrap_or(Errno::IO)))?;
        written += chunk.len() as u64;
    }
    tokio::io::AsyncWriteExt::flush(&mut file)
        .await
        .map_err(|e| root.err(path, Errno::from_io_error(&e).unwrap_or(Errno::IO)))?;
    Ok(written)
}

/// `PUT …/files?path=P[&parents=true][&mode=0644]`: writes the body to a file.
pub async fn write_route(
    State(sv): State<Service>,
    Path(id): Path<String>,
    Query(q): Query<PathQuery>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let mode = parse_mode(q.mode.as_deref())?;
    let written = sv
        .write_file(&id, &q.path, q.parents, mode, body.into_data_stream())
        .await?;
    Ok(Json(json!({"path": q.path, "size": written})))
}

/// Removes a file, or a directory (with its contents when `recursive`).
pub(crate) fn remove(st: &AppState, id: &str, path: &str, recursive: bool) -> Result<(), ApiError> {
    let root = Root::open(st, id)?;
    let (dir, name) = root.parent_of(path, false)?;
    let stat =
        rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| root.err(path, e))?;
    if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
        if recursive {
            let d = rustix::fs::openat2(
                &dir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
                BENEATH,
            )
            .map_err(|e| root.err(path, e))?;
            empty_dir(&d).map_err(|e| root.err(path, e))?;
        }
        rustix::fs::unlinkat(&dir, name, AtFlags::REMOVEDIR).map_err(|e| root.err(path, e))
    } else {
        rustix::fs::unlinkat(&dir, name, AtFlags::empty()).map_err(|e| root.err(path, e))
    }
}

/// `DELETE …/files?path=P[&recursive=true]`.
pub async fn remove_route(
    State(sv): State<Service>,
    Path(id): Path<String>,
    Query(q): Query<PathQuery>,
) -> Result<StatusCode, ApiError> {
    sv.remove_file(&id, &q.path, q.recursive).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes everything inside directory `dir`, never following a symlink.
fn empty_dir(dir: &OwnedFd) -> Result<(), Errno> {
    let mut names = Vec::new();
    for e in rustix::fs::Dir::read_from(dir)? {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(e.file_name().to_owned());
        }
    }
    for n in names {
        let st = rustix::fs::statat(dir, n.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            let sub = rustix::fs::openat2(
                dir,
                n.as_c_str(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
                BENEATH,
            )?;
            empty_dir(&sub)?;
            rustix::fs::unlinkat(dir, n.as_c_str(), AtFlags::REMOVEDIR)?;
        } else {
            rustix::fs::unlinkat(dir, n.as_c_str(), AtFlags::empty())?;
        }
    }
    Ok(())
}

/// The entries of a directory, sorted by name.
pub(crate) fn list(st: &AppState, id: &str, path: &str) -> Result<Value, ApiError> {
    let root = Root::open(st, id)?;
    let dir = root.open_at(path, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
    let mut out = Vec::new();
    for e in rustix::fs::Dir::read_from(&dir).map_err(|e| root.err(path, e))? {
        let e = e.map_err(|e| root.err(path, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "." || name == ".." {
            continue;
        }
        if let Ok(st) = rustix::fs::statat(&dir, e.file_name(), AtFlags::SYMLINK_NOFOLLOW) {
            out.push(describe(dir.as_fd(), &name, &st));
        }
    }
    out.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(Value::Array(out))
}

/// One entry, not following a final symlink.
pub(crate) fn stat(st: &AppState, id: &str, path: &str) -> Result<Value, ApiError> {
    let root = Root::open(st, id)?;
    if rel(path)? == "." {
        let st = rustix::fs::fstat(&root.fd).map_err(|e| root.err(path, e))?;
        return Ok(describe(root.fd.as_fd(), "/", &st));
    }
    let (dir, name) = root.parent_of(path, false)?;
    let st =
        rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| root.err(path, e))?;
    Ok(describe(dir.as_fd(), name, &st))
}

/// `GET …/files/list?path=P`.
pub async fn list_route(
    State(sv): State<Service>,
    Path(id): Path<String>,
    Query(q): Query<PathQuery>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(sv.list_dir(&id, &q.path).await?))
}

/// `GET …/files/stat?path=P`.
pub async fn stat_route(
    State(sv): State<Service>,
    Path(id): Path<String>,
    Query(q): Query<PathQuery>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(sv.stat_file(&id, &q.path).await?))
}

/// Chunks written to a blocking `Write` become a response body.
struct ChannelWriter(mpsc::Sender<Result<Bytes, std::io::Error>>);

impl Write for ChannelWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(b)))
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
            })?;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `GET …/files/archive?path=P`: a directory (or file) as a tar stream.
pub async fn archive_get(
    State(sv): State<Service>,
    Path(id): Path<String>,
    Query(q): Query<PathQuery>,
) -> Result<Response, ApiError> {
    let (tx, rx) = mpsc::channel(16);
    let root = {
        let st = sv.state.clone();
        blocking(move || Root::open(&st, &id)).await?
    };
    // Opened before the response starts, so a bad path is a 404, not a broken stream.
    let top = root.open_at(&q.path, OFlags::PATH, Mode::empty())?;
    let top_stat = rustix::fs::fstat(&top).map_err(|e| root.err(&q.path, e))?;
    let path = q.path.clone();
    tokio::task::spawn_blocking(move || {
        let w = std::io::BufWriter::with_capacity(256 * 1024, ChannelWriter(tx.clone()));
        let mut b = tar::Builder::new(w);
        b.follow_symlinks(false);
        let name = split(&path)
            .map(|(_, n)| n.to_string())
            .unwrap_or_else(|_| ".".into());
        let result = if FileType::from_raw_mode(top_stat.st_mode) == FileType::Directory {
            rustix::fs::openat2(
                &top,
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                BENEATH,
            )
            .map_err(std::io::Error::from)
            .and_then(|d| append_dir(&mut b, &d, std::path::Path::new("")))
        } else {
            rustix::fs::openat2(
                &top,
                ".",
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::empty(),
            )
            .map_err(std::io::Error::from)
            .and_then(|f| {
                append_file(
                    &mut b,
                    std::fs::File::from(f),
                    &top_stat,
                    std::path::Path::new(&name),
                )
            })
        };
        let result = result
            .and_then(|()| b.into_inner())
            .and_then(|mut w| w.flush());
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(e));
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-tar")
        .body(Body::from_stream(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))
        .map_err(|e| ApiError::Runtime(e.to_string()))
}

fn header_for(st: &rustix::fs::Stat, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(st.st_uid.into());
    h.set_gid(st.st_gid.into());
    h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
    h.set_size(size);
    h
}

fn append_file<W: Write>(
    b: &mut tar::Builder<W>,
    f: std::fs::File,
    st: &rustix::fs::Stat,
    name: &std::path::Path,
) -> std::io::Result<()> {
    let size = u64::try_from(st.st_size).unwrap_or(0);
    let mut h = header_for(st, tar::EntryType::Regular, size);
    b.append_data(&mut h, name, f.take(size))
}

fn append_dir<W: Write>(
    b: &mut tar::Builder<W>,
    dir: &OwnedFd,
    prefix: &std::path::Path,
) -> std::io::Result<()> {
    let mut names = Vec::new();
    for e in rustix::fs::Dir::read_from(dir)? {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(e.file_name().to_owned());
        }
    }
    names.sort();
    for n in names {
        let st = rustix::fs::statat(dir, n.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)?;
        let path = prefix.join(n.to_string_lossy().as_ref());
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                let mut h = header_for(&st, tar::EntryType::Directory, 0);
                b.append_data(&mut h, &path, std::io::empty())?;
                let sub = rustix::fs::openat2(
                    dir,
                    n.as_c_str(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                    BENEATH,
                )?;
                append_dir(b, &sub, &path)?;
            }
            FileType::RegularFile => {
                let f = rustix::fs::openat2(
                    dir,
                    n.as_c_str(),
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
                    Mode::empty(),
                    BENEATH,
                )?;
                append_file(b, std::fs::File::from(f), &st, &path)?;
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(dir, n.as_c_str(), Vec::new())?;
                let mut h = header_for(&st, tar::EntryType::Symlink, 0);
                b.append_link(&mut h, &path, target.to_string_lossy().as_ref())?;
            }
            // Devices, fifos and sockets are not content.
            _ => {}
        }
    }
    Ok(())
}

/// Directory `parent` beneath `top`, made (like `mkdir -p`) where missing;
/// no component may be a symlink.
fn dirs_beneath(root: &Root, top: &OwnedFd, parent: &str) -> Result<OwnedFd, Errno> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut dir = rustix::fs::openat2(top, ".", flags, Mode::empty(), BENEATH)?;
    for part in parent.split('/').filter(|p| !p.is_empty() && *p != ".") {
        match rustix::fs::mkdirat(&dir, part, Mode::from_raw_mode(0o755)) {
            Ok(()) => {
                let made = rustix::fs::openat2(
                    &dir,
                    part,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                    BENEATH,
                )?;
                root.chown(made.as_fd());
            }
            Err(Errno::EXIST) => {}
            Err(e) => return Err(e),
        }
        dir = rustix::fs::openat2(&dir, part, flags, Mode::empty(), BENEATH)?;
    }
    Ok(dir)
}

/// A request body read from a blocking `Read`.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    buf: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.buf = b,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf = self.buf.slice(n..);
        Ok(n)
    }
}

/// `PUT …/files/archive?path=DIR[&parents=true]`: unpacks a tar into DIR.
/// Entries are regular files, directories and symlinks; a path with `..`,
/// an absolute path, or one that goes through a symlink is refused.
pub async fn archive_put(
    State(sv): State<Service>,
    Path(id): Path<String>,
    Query(q): Query<PathQuery>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let path = q.path.clone();
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let feeder = tokio::spawn(async move {
        let mut s = body.into_data_stream();
        while let Some(Ok(chunk)) = s.next().await {
            if tx.send(chunk).await.is_err() {
                break;
            }
        }
    });
    let st = sv.state.clone();
    let result = blocking(move || {
        let root = Root::open(&st, &id)?;
        if q.parents {
            root.make_dirs(&q.path)?;
        }
        let top = root.open_at(&q.path, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
        let mut archive = tar::Archive::new(ChannelReader {
            rx,
            buf: Bytes::new(),
        });
        let mut count = 0u64;
        let entries = archive
            .entries()
            .map_err(|e| ApiError::invalid("body", "tar", e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| ApiError::invalid("body", "tar", e.to_string()))?;
            let name = entry
                .path()
                .map_err(|e| ApiError::invalid("body", "tar", e.to_string()))?
                .into_owned();
            let shown = name.display().to_string();
            if name
                .components()
                .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
            {
                return Err(ApiError::invalid(
                    "body",
                    shown,
                    "a tar entry outside the target directory",
                ));
            }
            let rel_name = name.to_string_lossy().trim_end_matches('/').to_string();
            if rel_name.is_empty() || rel_name == "." {
                continue;
            }
            let (parent, leaf) = rel_name.rsplit_once('/').unwrap_or(("", &rel_name));
            let dir = dirs_beneath(&root, &top, parent).map_err(|e| root.err(&shown, e))?;
            let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
            match entry.header().entry_type() {
                tar::EntryType::Directory => {
                    match rustix::fs::mkdirat(&dir, leaf, Mode::from_raw_mode(mode)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(root.err(&shown, e)),
                    }
                    if let Ok(d) = rustix::fs::openat2(
                        &dir,
                        leaf,
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                        BENEATH,
                    ) {
                        root.chown(d.as_fd());
                    }
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let fd = rustix::fs::openat2(
                        &dir,
                        leaf,
                        OFlags::WRONLY
                            | OFlags::CREATE
                            | OFlags::TRUNC
                            | OFlags::NOFOLLOW
                            | OFlags::CLOEXEC
                            | OFlags::NOCTTY,
                        Mode::from_raw_mode(mode),
                        BENEATH,
                    )
                    .map_err(|e| root.err(&shown, e))?;
                    root.chown(fd.as_fd());
                    let _ = rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode));
                    let mut f = std::fs::File::from(fd);
                    std::io::copy(&mut entry, &mut f).map_err(|e| {
                        root.err(&shown, Errno::from_io_error(&e).unwrap_or(Errno::IO))
                    })?;
                }
                tar::EntryType::Symlink => {
                    let target = entry
                        .link_name()
                        .ok()
                        .flatten()
                        .ok_or_else(|| {
                            ApiError::invalid("body", shown.clone(), "a symlink without a target")
                        })?
                        .into_owned();
                    rustix::fs::symlinkat(target.as_os_str(), &dir, leaf)
                        .map_err(|e| root.err(&shown, e))?;
                }
                other => {
                    return Err(ApiError::invalid(
                        "body",
                        shown,
                        format!("tar entries of type {other:?} are not accepted"),
                    ));
                }
            }
            count += 1;
        }
        Ok(count)
    })
    .await;
    feeder.abort();
    Ok(Json(json!({"path": path, "entries": result?})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(rel("/").unwrap(), ".");
        assert_eq!(rel("/tmp/a").unwrap(), "tmp/a");
        assert!(rel("tmp").is_err());
        assert_eq!(split("/tmp/a").unwrap(), ("/tmp", "a"));
        assert_eq!(split("/a/").unwrap(), ("/", "a"));
        assert!(split("/").is_err());
        assert!(split("/tmp/..").is_err());
    }
}
