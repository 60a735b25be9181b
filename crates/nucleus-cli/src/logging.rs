//! Diagnostics: quiet by default (warnings and errors), `--debug` for all.
//! Lines have logrus's shapes, as runc's do, so log scrapers built for runc
//! work: `--log-format json` writes one object per line with `level`, `msg`
//! and `time` (what containerd's runc shim parses); text writes
//! `time="…" level=debug msg="…" key=value`. Never starts threads.

use crate::LogFormat;
use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats events as runc-style JSON lines.
struct JsonLines;

/// Formats events as logrus text lines (runc's text format).
struct TextLines;

#[derive(Default)]
struct Fields {
    msg: String,
    extra: serde_json::Map<String, serde_json::Value>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg = value.to_string();
        } else {
            self.extra.insert(field.name().to_string(), value.into());
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.extra.insert(field.name().to_string(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.extra.insert(field.name().to_string(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.msg = format!("{value:?}");
        } else {
            self.extra
                .insert(field.name().to_string(), format!("{value:?}").into());
        }
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = level_name(*event.metadata().level());
        let mut obj = fields.extra;
        obj.insert("level".into(), level.into());
        obj.insert("msg".into(), fields.msg.into());
        obj.insert("time".into(), now_rfc3339().into());
        writeln!(writer, "{}", serde_json::Value::Object(obj))
    }
}

impl<S, N> FormatEvent<S, N> for TextLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = level_name(*event.metadata().level());
        write!(
            writer,
            "time={} level={level} msg={}",
            logfmt_value(&now_rfc3339()),
            logfmt_value(&fields.msg)
        )?;
        for (key, value) in &fields.extra {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            write!(writer, " {key}={}", logfmt_value(&text))?;
        }
        writeln!(writer)
    }
}

/// logrus's level names.
fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// A value as logrus's text formatter writes it: bare when it is made of
/// safe characters, else double-quoted with `"` and `\` escaped.
fn logfmt_value(s: &str) -> String {
    let bare = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._/@^+".contains(c));
    if bare {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn now_rfc3339() -> String {
    nucleus_engine::timefmt::rfc3339_secs(std::time::SystemTime::now())
}

/// Keeps the log file open for the life of the process.
pub struct LogGuard;

/// Where diagnostics go: the `--log` file, else stderr (`None`). Global,
/// so that [`redirect`] can move them once the process knows where.
static TARGET: Mutex<Option<std::fs::File>> = Mutex::new(None);

fn open_log(p: &Path) -> Option<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .ok()
}

/// Installs the global subscriber. A second call (a forked exec worker
/// runs a whole command line again) keeps the first one's target.
pub fn init(log: Option<&Path>, format: LogFormat, debug: bool) -> LogGuard {
    if tracing::dispatcher::has_been_set() {
        return LogGuard;
    }
    let level = if debug { Level::DEBUG } else { Level::WARN };
    *TARGET.lock().unwrap_or_else(|p| p.into_inner()) = log.and_then(open_log);
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(|| Target)
        .with_ansi(false);
    let _ = match format {
        LogFormat::Json => builder.event_format(JsonLines).try_init(),
        LogFormat::Text => builder.event_format(TextLines).try_init(),
    };
    LogGuard
}

/// Sends diagnostics to `path` from now on (a standby monitor, once it
/// knows its container's bundle); unchanged when it cannot be opened.
pub fn redirect(path: &Path) {
    if let Some(f) = open_log(path) {
        *TARGET.lock().unwrap_or_else(|p| p.into_inner()) = Some(f);
    }
}

/// The writer of every event: [`TARGET`].
struct Target;

impl Write for Target {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match TARGET.lock() {
            Ok(mut t) => match t.as_mut() {
                Some(f) => f.write(buf),
                None => std::io::stderr().write(buf),
            },
            Err(_) => Ok(buf.len()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reports a command's failure: to stderr always, and to the log file too
/// when there is one (the shim reads the last error from it).
pub fn report(err: &anyhow::Error, has_log_file: bool) {
    // Engine errors already quote their cause; skip causes said once already.
    let mut msg = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !msg.contains(&text) {
            if !msg.is_empty() {
                msg.push_str(": ");
            }
            msg.push_str(&text);
        }
    }
    let hint = match err.downcast_ref::<nucleus_sandbox::SandboxError>() {
        Some(e) => e.hint(),
        None => err
            .downcast_ref::<nucleus_engine::EngineError>()
            .and_then(|e| e.hint())
            .or_else(|| {
                err.downcast_ref::<nucleus_net::NetError>()
                    .and_then(|e| e.hint())
            }),
    };
    emit(&msg, hint, has_log_file);
}

/// Reports a docker-like verb's failure, like `report`.
pub fn report_sandbox(err: &nucleus_sandbox::SandboxError, has_log_file: bool) {
    emit(
        &nucleus_sandbox::error::render_chain(err),
        err.hint(),
        has_log_file,
    );
}

fn emit(msg: &str, hint: Option<&str>, has_log_file: bool) {
    if has_log_file {
        tracing::error!("{msg}");
    }
    eprintln!("nucleus: {msg}");
    if let Some(hint) = hint {
        eprintln!("hint: {hint}");
    }
}

#[cfg(test)]
mod tests {
    use super::logfmt_value;

    #[test]
    fn values_are_quoted_as_logrus_does() {
        assert_eq!(logfmt_value("debug"), "debug");
        assert_eq!(logfmt_value("/run/nucleus"), "/run/nucleus");
        assert_eq!(logfmt_value("two words"), "\"two words\"");
        assert_eq!(logfmt_value("say \"hi\"\n"), "\"say \\\"hi\\\"\\n\"");
        assert_eq!(logfmt_value(""), "\"\"");
    }
}
