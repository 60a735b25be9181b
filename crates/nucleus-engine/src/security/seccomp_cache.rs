//! A cache of compiled seccomp programs under the state root, keyed by the
//! SHA-256 of (profile JSON, libseccomp version, nucleus version). Compiling
//! the agent profile takes milliseconds; loading a cached program takes a
//! read. Entries are written atomically and the cache is bounded.

use super::seccomp::{self, SeccompProgram};
use crate::error::Result;
use oci_spec::runtime::LinuxSeccomp;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

/// Most entries kept; the oldest are evicted beyond this.
const MAX_ENTRIES: usize = 64;
const MAGIC: &[u8; 8] = b"NUCBPF01";

/// `compile`, through the cache in `dir` when one is given. A cache that
/// cannot be read or written is only a slower start, never an error.
pub fn compile_cached(profile: &LinuxSeccomp, dir: Option<&Path>) -> Result<SeccompProgram> {
    let Some(dir) = dir else {
        return Ok(seccomp::compile(profile)?);
    };
    let key = cache_key(profile);
    let path = dir.join(format!("{key}.bpf"));
    if let Some((insns, flags)) = std::fs::read(&path).ok().and_then(|b| decode(&b)) {
        return Ok(SeccompProgram::from_parts(insns, flags, profile));
    }
    tracing::debug!(key, "seccomp cache miss: compiling");
    let program = seccomp::compile(profile)?;
    if let Err(e) = store(dir, &path, &program) {
        tracing::debug!(error = %e, "seccomp cache not written");
    }
    Ok(program)
}

fn cache_key(profile: &LinuxSeccomp) -> String {
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(profile).unwrap_or_default());
    let v = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default();
    h.update(v.as_bytes());
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn encode(p: &SeccompProgram) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + p.instructions().len() * 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&p.flags().to_le_bytes());
    out.extend_from_slice(
        &u32::try_from(p.instructions().len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    for i in p.instructions() {
        out.extend_from_slice(&i.code.to_le_bytes());
        out.push(i.jt);
        out.push(i.jf);
        out.extend_from_slice(&i.k.to_le_bytes());
    }
    out
}

fn decode(b: &[u8]) -> Option<(Vec<libc::sock_filter>, u32)> {
    let rest = b.strip_prefix(MAGIC.as_slice())?;
    let flags = u32::from_le_bytes(rest.get(0..4)?.try_into().ok()?);
    let n = usize::try_from(u32::from_le_bytes(rest.get(4..8)?.try_into().ok()?)).ok()?;
    let body = rest.get(8..)?;
    if n == 0 || n > 4096 || body.len() != n * 8 {
        return None;
    }
    let insns = body
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_le_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    Some((insns, flags))
}

fn store(dir: &Path, path: &Path, program: &SeccompProgram) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    evict(dir);
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&encode(program))?;
    std::fs::rename(&tmp, path)
}

/// Keeps the cache under MAX_ENTRIES by removing the least recently written.
fn evict(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if files.len() < MAX_ENTRIES {
        return;
    }
    files.sort();
    for (_, p) in files.iter().take(files.len() + 1 - MAX_ENTRIES) {
        let _ = std::fs::remove_file(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_program_is_identical_and_bounded() {
        let profile = crate::security::agent_profile::agent_seccomp_profile();
        let tmp = tempfile::tempdir().unwrap();
        let first = compile_cached(&profile, Some(tmp.path())).unwrap();
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
        let second = compile_cached(&profile, Some(tmp.path())).unwrap();
        assert_eq!(first.flags(), second.flags());
        let same = first
            .instructions()
            .iter()
            .zip(second.instructions())
            .all(|(a, b)| a.code == b.code && a.jt == b.jt && a.jf == b.jf && a.k == b.k);
        assert!(same && first.instructions().len() == second.instructions().len());
        for i in 0..MAX_ENTRIES + 5 {
            std::fs::write(tmp.path().join(format!("junk{i}.bpf")), b"x").unwrap();
        }
        evict(tmp.path());
        assert!(std::fs::read_dir(tmp.path()).unwrap().count() < MAX_ENTRIES);
    }

    #[test]
    fn corrupt_entries_are_ignored() {
        assert!(decode(b"NUCBPF01\\0\\0\\0\\0").is_none());
        assert!(decode(b"garbage").is_none());
    }
}
