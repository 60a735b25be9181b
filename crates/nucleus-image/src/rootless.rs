//! The store run by an ordinary user. Layer files must carry the image's
//! owners as the container sees them, and only a process inside a user
//! namespace holding the user's subordinate ids can chown to those (or
//! remove the trees afterwards). So, with a subordinate range, unpacking a
//! layer and removing a layer or a container's root run in a helper: this
//! same binary re-executed with [`HELPER_ENV`], which makes its own user
//! namespace, waits while the parent has its id maps written (through
//! `newuidmap`/`newgidmap`, by the [`MapWriter`] the front end gives), becomes
//! root in it and does the one job. The map is the one containers get, so
//! a file owned by 100 in the image is owned by 100 inside the container.
//!
//! Without a range the work happens in this process and every file is the
//! user's (root inside). Either way, device nodes in layers are skipped
//! (an unprivileged user cannot make them) and an opaque directory is
//! marked with `user.overlay.opaque`, which overlayfs reads when mounted
//! with `userxattr` in a user namespace.

use crate::digest::HashingReader;
use crate::error::{ImageError, Result};
use std::ffi::OsString;
use std::io::{BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Writes the uid and gid maps of the helper with this pid.
pub type MapWriter = Box<dyn Fn(u32) -> std::result::Result<(), String> + Send + Sync>;

/// Set in the helper's environment; its value is ignored.
pub const HELPER_ENV: &str = "NUCLEUS_ROOTLESS_LAYER_HELPER";

/// The xattr overlayfs reads, mounted with `userxattr`, to make a directory opaque.
pub const USER_OPAQUE_XATTR: &str = "user.overlay.opaque";

struct Mode {
    /// `None`: work in this process (no range, or this is the helper).
    helper: Option<MapWriter>,
    in_helper: bool,
}

static MODE: OnceLock<Mode> = OnceLock::new();

/// Makes this process's store rootless; `writer` (when the user has a
/// subordinate range) maps the helper. Set once, before any store use.
pub fn configure(writer: Option<MapWriter>) {
    let _ = MODE.set(Mode {
        helper: writer,
        in_helper: false,
    });
}

/// Whether the store runs as an ordinary user (layers and roots as above).
pub fn is_active() -> bool {
    MODE.get().is_some()
}

fn helper() -> Option<&'static MapWriter> {
    MODE.get().and_then(|m| m.helper.as_ref())
}

/// Called by the unpacker for an entry it cannot make as a user.
pub(crate) fn skipped(layer: &str, path: &Path, what: &str) {
    tracing::debug!(layer, path = %path.display(), "rootless: skipped {what} in layer");
    if MODE.get().is_some_and(|m| m.in_helper) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(b"skipped ");
        let _ = out.write_all(what.as_bytes());
        let _ = out.write_all(b" ");
        let _ = out.write_all(path.as_os_str().as_bytes());
        let _ = out.write_all(b"\n");
    }
}

fn helper_err(action: &'static str, path: &Path, reason: String) -> ImageError {
    ImageError::Rootless {
        action,
        path: path.to_path_buf(),
        reason,
    }
}

/// Unpacks the layer blob `blob` (compressed as `digest` says) into `dest`
/// and returns the digest of the uncompressed stream. `None` when the
/// store does this in process.
pub(crate) fn unpack_in_helper(
    blob: &Path,
    dest: &Path,
    digest: &str,
) -> Option<Result<crate::Digest>> {
    let writer = helper()?;
    let out = run_helper(
        writer,
        "unpack layer into",
        dest,
        &[
            "unpack".into(),
            blob.into(),
            dest.into(),
            OsString::from(digest),
        ],
    );
    Some(out.and_then(|lines| {
        let hex = lines
            .iter()
            .find_map(|l| l.strip_prefix("diff "))
            .ok_or_else(|| {
                helper_err(
                    "unpack layer into",
                    dest,
                    "the helper reported no digest".into(),
                )
            })?;
        crate::Digest::parse(hex)
    }))
}

/// Copies the layer `src` onto the empty directory `dest` with owners
/// shifted for `shift` ([`crate::shift`]): in the helper when the user has
/// a range, else in this process.
pub(crate) fn shift_layer(
    src: &Path,
    dest: &Path,
    shift: &crate::IdShift,
) -> std::result::Result<crate::shift::Copied, crate::shift::CopyError> {
    use crate::shift::{encode, Copied, CopyError};
    let Some(writer) = helper() else {
        let in_helper = MODE.get().is_some_and(|m| m.in_helper);
        let (u, g) = crate::shift::translations(shift, in_helper)
            .map_err(|r| CopyError::Failed(helper_err("shift owners into", dest, r)))?;
        return crate::shift::copy_tree(src, dest, &u, &g);
    };
    let lines = run_helper(
        writer,
        "shift owners into",
        dest,
        &[
            "shift".into(),
            src.into(),
            dest.into(),
            encode(&shift.uids).into(),
            encode(&shift.gids).into(),
        ],
    )?;
    for l in &lines {
        if let Some(rest) = l.strip_prefix("unmapped ") {
            let mut f = rest.splitn(3, ' ');
            let (kind, id, path) = (f.next(), f.next().and_then(|i| i.parse().ok()), f.next());
            if let (Some(kind), Some(id), Some(path)) = (kind, id, path) {
                let kind = if kind == "gid" { "gid" } else { "uid" };
                return Err(CopyError::Unmapped {
                    kind,
                    id,
                    path: PathBuf::from(path),
                });
            }
        }
        if let Some(rest) = l.strip_prefix("copied ") {
            let mut f = rest.split(' ').map(|n| n.parse().unwrap_or(0));
            return Ok(Copied {
                entries: f.next().unwrap_or(0),
                bytes: f.next().unwrap_or(0),
            });
        }
    }
    Err(CopyError::Failed(helper_err(
        "shift owners into",
        dest,
        "the helper reported no result".into(),
    )))
}

/// Gives the directory `dir` (a container's upper layer, the root it sees)
/// the owner the run's map gives container 0, as the default map's root
/// is the user's; in the helper when the user has a range.
pub(crate) fn own_as_root(dir: &Path, shift: &crate::IdShift) -> Result<()> {
    use crate::shift::encode;
    let Some(writer) = helper() else {
        let in_helper = MODE.get().is_some_and(|m| m.in_helper);
        let (u, g) = crate::shift::translations(shift, in_helper)
            .map_err(|r| helper_err("chown", dir, r))?;
        let (uid, gid) = (u.root_owner(), g.root_owner());
        let (Some(uid), Some(gid)) = (uid, gid) else {
            return Err(helper_err(
                "chown",
                dir,
                "the user namespace's map does not cover container id 0".into(),
            ));
        };
        return std::os::unix::fs::lchown(dir, Some(uid), Some(gid))
            .map_err(ImageError::fs("chown", dir));
    };
    run_helper(
        writer,
        "chown",
        dir,
        &[
            "own".into(),
            dir.into(),
            encode(&shift.uids).into(),
            encode(&shift.gids).into(),
        ],
    )
    .map(|_| ())
}

/// Removes the trees `paths` (missing ones are fine); in the helper when
/// the user has a range, since the trees hold files of its subordinate ids.
pub(crate) fn remove_trees(paths: &[&Path]) -> Result<()> {
    let missing_ok = |p: &Path, r: std::io::Result<()>| match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ImageError::fs("remove", p)(e)),
        _ => Ok(()),
    };
    match helper() {
        Some(writer) if !paths.is_empty() => {
            let mut args: Vec<OsString> = vec!["remove".into()];
            args.extend(paths.iter().map(|p| p.as_os_str().to_os_string()));
            run_helper(writer, "remove", paths[0], &args).map(|_| ())
        }
        _ => {
            for p in paths {
                missing_ok(p, std::fs::remove_dir_all(p))?;
            }
            Ok(())
        }
    }
}

/// Parent side: starts the helper, maps it once it has its namespace, lets
/// it go and returns what it printed, line by line.
fn run_helper(
    writer: &MapWriter,
    action: &'static str,
    path: &Path,
    args: &[OsString],
) -> Result<Vec<String>> {
    let err = |reason: String| helper_err(action, path, reason);
    let exe = std::env::current_exe().map_err(|e| err(format!("find this program: {e}")))?;
    let mut child = Command::new(&exe)
        .env(HELPER_ENV, "1")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(format!("start `{}`: {e}", exe.display())))?;
    let (Some(mut stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(err("the helper has no pipes".into()));
    };
    let mut ready = [0u8; 1];
    let mapped = match stdout.read_exact(&mut ready) {
        Ok(()) => writer(child.id()),
        Err(_) => Err("the helper could not make a user namespace".into()),
    };
    if let Err(reason) = mapped {
        drop(stdin);
        let out = child.wait_with_output();
        let stderr = out
            .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
            .unwrap_or_default();
        return Err(err(if stderr.is_empty() {
            reason
        } else {
            format!("{reason}: {stderr}")
        }));
    }
    let _ = stdin.write_all(b"g");
    drop(stdin);
    let mut text = String::new();
    let _ = stdout.read_to_string(&mut text);
    let out = child
        .wait_with_output()
        .map_err(|e| err(format!("wait for the helper: {e}")))?;
    if !out.status.success() {
        return Err(err(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    for l in &lines {
        if let Some(what) = l.strip_prefix("skipped ") {
            tracing::debug!(path = %path.display(), "rootless: skipped {what}");
        }
    }
    Ok(lines)
}

/// The helper's side: `Some(exit code)` when this process was started as
/// one. Call first thing in `main`, while the process has one thread
/// (`unshare(CLONE_NEWUSER)` refuses a threaded process).
pub fn helper_main() -> Option<i32> {
    std::env::var_os(HELPER_ENV)?;
    let _ = MODE.set(Mode {
        helper: None,
        in_helper: true,
    });
    Some(match helper_job() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    })
}

fn helper_job() -> std::result::Result<(), String> {
    use nix::unistd::{setresgid, setresuid, Gid, Uid};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER)
        .map_err(|e| format!("unshare(CLONE_NEWUSER): {e}"))?;
    let mut stdout = std::io::stdout();
    stdout
        .write_all(b"r")
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("signal the parent: {e}"))?;
    let mut go = [0u8; 1];
    if std::io::stdin().read(&mut go).map_err(|e| e.to_string())? != 1 {
        return Err("the parent did not map the user namespace".into());
    }
    setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .map_err(|e| format!("setresgid(0): {e}"))?;
    setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .map_err(|e| format!("setresuid(0): {e}"))?;
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match args.split_first() {
        Some((op, rest)) if op == "unpack" && rest.len() == 3 => {
            let (blob, dest) = (Path::new(&rest[0]), Path::new(&rest[1]));
            let digest =
                crate::Digest::parse(&rest[2].to_string_lossy()).map_err(|e| e.to_string())?;
            let diff = unpack_blob(blob, dest, &digest).map_err(|e| e.to_string())?;
            println!("diff {diff}");
            Ok(())
        }
        Some((op, rest)) if op == "shift" && rest.len() == 4 => {
            let (src, dest) = (Path::new(&rest[0]), Path::new(&rest[1]));
            let shift = crate::IdShift {
                uids: crate::shift::decode(&rest[2].to_string_lossy())?,
                gids: crate::shift::decode(&rest[3].to_string_lossy())?,
            };
            match shift_layer(src, dest, &shift) {
                Ok(done) => println!("copied {} {}", done.entries, done.bytes),
                Err(crate::shift::CopyError::Unmapped { kind, id, path }) => {
                    let shown = path.display().to_string().replace('\n', "\\n");
                    println!("unmapped {kind} {id} {shown}");
                }
                Err(crate::shift::CopyError::Failed(e)) => return Err(e.to_string()),
            }
            Ok(())
        }
        Some((op, rest)) if op == "own" && rest.len() == 3 => {
            let shift = crate::IdShift {
                uids: crate::shift::decode(&rest[1].to_string_lossy())?,
                gids: crate::shift::decode(&rest[2].to_string_lossy())?,
            };
            own_as_root(Path::new(&rest[0]), &shift).map_err(|e| e.to_string())
        }
        Some((op, rest)) if op == "remove" => {
            let paths: Vec<PathBuf> = rest.iter().map(PathBuf::from).collect();
            let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
            remove_trees(&refs).map_err(|e| e.to_string())
        }
        _ => Err(format!("unknown helper job {args:?}")),
    }
}

/// Decompresses and unpacks `blob`; the digest of the uncompressed stream.
pub(crate) fn unpack_blob(
    blob: &Path,
    dest: &Path,
    digest: &crate::Digest,
) -> Result<crate::Digest> {
    let file = std::fs::File::open(blob).map_err(ImageError::fs("open", blob))?;
    let reader = HashingReader::new(crate::layers::Decoder::new(
        BufReader::with_capacity(1 << 20, file),
        digest,
    )?);
    let reader = crate::unpack::unpack_layer(reader, dest, &digest.to_string())?;
    Ok(reader.into_parts().0)
}
