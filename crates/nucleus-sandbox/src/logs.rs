//! Container logs: the monitor writes the workload's stdout and stderr as
//! JSON lines `{"time","stream","log"}` into `<bundle>/container.log`,
//! rotated once (to `container.log.1`) at `MAX_LOG_BYTES`; `nucleus logs`
//! reads them back. Buffers are small and fixed: the monitor must stay tiny.
//! Reading returns entries; printing them is the front end's.

use crate::clock;
use crate::error::{Result, SandboxError};
use serde::Serialize;
use serde_json::{json, Value};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub const LOG_FILE: &str = "container.log";
/// Size at which the log is rotated (once: the older half is dropped).
pub const MAX_LOG_BYTES: u64 = 10 << 20;
/// Longest line kept whole; longer output is split into several entries.
const MAX_LINE: usize = 16 << 10;

/// Appends log entries and rotates the file when it grows too big.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    max: u64,
}

impl LogWriter {
    pub fn open(dir: &Path, max: u64) -> Result<Self> {
        let path = dir.join(LOG_FILE);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| SandboxError::io("open", &path, e))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(LogWriter {
            path,
            file,
            size,
            max,
        })
    }

    /// Writes one entry; `log` is the raw bytes of one line (with its newline).
    pub fn write(&mut self, stream: &str, log: &[u8]) -> Result<()> {
        let mut line = json!({"time": clock::rfc3339(SystemTime::now()), "stream": stream, "log": String::from_utf8_lossy(log)}).to_string();
        line.push('\n');
        if self.size + line.len() as u64 > self.max && self.size > 0 {
            let old = self.path.with_extension("log.1");
            fs::rename(&self.path, &old).map_err(|e| SandboxError::io("rotate", &self.path, e))?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(|e| SandboxError::io("open", &self.path, e))?;
            self.size = 0;
        }
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| SandboxError::io("write", &self.path, e))?;
        self.size += line.len() as u64;
        Ok(())
    }
}

/// Splits a stream's bytes into lines for `LogWriter`.
#[derive(Debug)]
pub struct LineSplitter {
    pub stream: &'static str,
    buf: Vec<u8>,
}

impl LineSplitter {
    pub fn new(stream: &'static str) -> Self {
        LineSplitter {
            stream,
            buf: Vec::new(),
        }
    }

    /// Feeds bytes; writes every complete line (and over-long partial ones).
    pub fn feed(&mut self, data: &[u8], out: &mut LogWriter) -> Result<()> {
        for chunk in data.split_inclusive(|b| *b == b'\n') {
            self.buf.extend_from_slice(chunk);
            if chunk.ends_with(b"\n") || self.buf.len() >= MAX_LINE {
                out.write(self.stream, &self.buf)?;
                self.buf.clear();
            }
        }
        if self.buf.capacity() > MAX_LINE * 2 {
            self.buf.shrink_to(MAX_LINE);
        }
        Ok(())
    }

    /// Writes what is left at end of stream.
    pub fn flush(&mut self, out: &mut LogWriter) -> Result<()> {
        if !self.buf.is_empty() {
            out.write(self.stream, &self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

/// One parsed entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub time: String,
    pub stream: String,
    pub log: String,
}

fn parse(line: &str) -> Option<Entry> {
    let v: Value = serde_json::from_str(line).ok()?;
    Some(Entry {
        time: v["time"].as_str()?.to_string(),
        stream: v["stream"].as_str()?.to_string(),
        log: v["log"].as_str()?.to_string(),
    })
}

/// Every entry in the rotated file, then the current one.
pub fn read_all(dir: &Path) -> Vec<Entry> {
    let mut out = Vec::new();
    for p in [
        dir.join(LOG_FILE).with_extension("log.1"),
        dir.join(LOG_FILE),
    ] {
        if let Ok(f) = File::open(&p) {
            out.extend(
                BufReader::new(f)
                    .lines()
                    .map_while(|l| l.ok())
                    .filter_map(|l| parse(&l)),
            );
        }
    }
    out
}

/// Follows the current log file from its end, handing each new entry to
/// `emit`, until `done()` says the container has stopped and nothing new
/// has arrived. An error from `emit` (a closed pipe) ends it.
pub fn follow(
    dir: &Path,
    done: impl Fn() -> bool,
    mut emit: impl FnMut(&Entry) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let path = dir.join(LOG_FILE);
    let mut offset = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let mut partial = String::new();
    loop {
        let finished = done();
        if let Ok(mut f) = File::open(&path) {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            if len < offset {
                // Rotated: the new file starts from scratch.
                offset = 0;
            }
            f.seek(SeekFrom::Start(offset))?;
            let mut reader = BufReader::new(f);
            let mut line = String::new();
            while reader.read_line(&mut line)? > 0 {
                offset += line.len() as u64;
                partial.push_str(&line);
                line.clear();
                if partial.ends_with('\n') {
                    if let Some(e) = parse(partial.trim_end()) {
                        emit(&e)?;
                    }
                    partial.clear();
                }
            }
        }
        if finished {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json_and_rotate_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(dir.path(), 300).unwrap();
        let mut s = LineSplitter::new("stdout");
        s.feed(b"hello\nwor", &mut w).unwrap();
        s.feed(b"ld\n", &mut w).unwrap();
        s.feed(b"tail", &mut w).unwrap();
        s.flush(&mut w).unwrap();
        let e = read_all(dir.path());
        let logs: Vec<&str> = e.iter().map(|e| e.log.as_str()).collect();
        assert_eq!(logs, ["hello\n", "world\n", "tail"]);
        assert!(e
            .iter()
            .all(|e| e.stream == "stdout" && e.time.ends_with('Z')));
        for i in 0..20 {
            w.write("stderr", format!("line {i}\n").as_bytes()).unwrap();
        }
        assert!(dir.path().join("container.log.1").exists());
        assert!(fs::metadata(dir.path().join(LOG_FILE)).unwrap().len() <= 300);
        let e = read_all(dir.path());
        assert_eq!(e.last().unwrap().log, "line 19\n");
    }
}
