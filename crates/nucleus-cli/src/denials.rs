//! `nucleus events --denials NAME [--follow] [--format json|table]`: the
//! connections and DNS queries a container's egress policy refused, as
//! recorded by its resolver and its NFLOG listener. `events` without
//! `--denials` stays runc's (statistics and OOM notifications).

use anyhow::{bail, Context, Result};
use nucleus_engine::state::StateRoot;
use nucleus_net::EgressEvent;
use nucleus_sandbox::manage;
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

const POLL: Duration = Duration::from_millis(200);

pub fn print(root: &StateRoot, query: &str, follow: bool, format: &str) -> Result<i32> {
    let table = match format {
        "json" => false,
        "table" => true,
        other => bail!("--format: invalid value `{other}` (expected json or table)"),
    };
    let log = manage::denials(root, query).with_context(|| format!("events `{query}`"))?;
    let mut out = std::io::stdout().lock();
    if table {
        writeln!(out, "{:<24} {:<8} {:<40} RULE", "TIME", "KIND", "TARGET")?;
    }
    let mut offset = 0u64;
    let mut partial = String::new();
    loop {
        // Read the liveness first: whatever was written before the
        // container stopped is then read below, before leaving.
        let live = follow && manage::is_live(root, &log.id);
        let text = read_from(&log.path, &mut offset)?;
        partial.push_str(&text);
        while let Some(end) = partial.find('\n') {
            let line: String = partial.drain(..=end).collect();
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let ev: EgressEvent = serde_json::from_str(line)
                .with_context(|| format!("`{}`: not an event: {line}", log.path.display()))?;
            if table {
                writeln!(
                    out,
                    "{:<24} {:<8} {:<40} {}",
                    ev.time, ev.kind, ev.target, ev.rule
                )?;
            } else {
                serde_json::to_writer(&mut out, &ev)?;
                writeln!(out)?;
            }
        }
        out.flush()?;
        if !live {
            return Ok(0);
        }
        std::thread::sleep(POLL);
    }
}

/// What was appended to `path` since `offset`; nothing while it does not exist.
fn read_from(path: &std::path::Path, offset: &mut u64) -> Result<String> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(e).with_context(|| format!("open `{}`", path.display())),
    };
    f.seek(SeekFrom::Start(*offset))
        .with_context(|| format!("seek in `{}`", path.display()))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)
        .with_context(|| format!("read `{}`", path.display()))?;
    *offset += buf.len() as u64;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}
