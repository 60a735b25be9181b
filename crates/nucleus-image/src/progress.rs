//! Pull progress: a bar per layer on a terminal, plain lines otherwise,
//! nothing with `--quiet`. It writes to stdout, as `docker pull` does; the
//! runtime's diagnostics stay on stderr.

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Bars on a terminal, lines otherwise.
    Auto,
    Lines,
    Quiet,
}

/// Progress of one pull or load.
#[derive(Debug, Clone)]
pub struct Progress {
    bars: Option<Arc<MultiProgress>>,
    quiet: bool,
}

impl Progress {
    pub fn new(mode: ProgressMode) -> Self {
        let tty = std::io::stdout().is_terminal();
        match mode {
            ProgressMode::Auto if tty => Self {
                bars: Some(Arc::new(MultiProgress::with_draw_target(
                    ProgressDrawTarget::stdout(),
                ))),
                quiet: false,
            },
            ProgressMode::Quiet => Self {
                bars: None,
                quiet: true,
            },
            _ => Self {
                bars: None,
                quiet: false,
            },
        }
    }

    /// A status line (`Digest: …`).
    pub fn line(&self, msg: &str) {
        if self.quiet {
            return;
        }
        match &self.bars {
            Some(m) => {
                let _ = m.println(msg);
            }
            None => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{msg}");
            }
        }
    }

    /// Starts tracking one layer of `size` bytes, named by a short id.
    pub fn layer(&self, id: &str, size: u64) -> LayerProgress {
        let bar = self.bars.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new(size));
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix}: {msg:<18} [{bar:30}] {bytes}/{total_bytes}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(id.to_string());
            bar.set_message("Downloading");
            bar
        });
        LayerProgress {
            id: id.to_string(),
            bar,
            progress: self.clone(),
        }
    }
}

/// Progress of one layer.
#[derive(Debug)]
pub struct LayerProgress {
    id: String,
    bar: Option<ProgressBar>,
    progress: Progress,
}

impl LayerProgress {
    pub fn advance(&self, bytes: u64) {
        if let Some(b) = &self.bar {
            b.inc(bytes);
        }
    }

    /// A step (`Download complete`, `Pull complete`, `Already exists`).
    pub fn status(&self, msg: &'static str, done: bool) {
        match &self.bar {
            Some(b) if done => b.finish_with_message(msg),
            Some(b) => b.set_message(msg),
            None => self.progress.line(&format!("{}: {msg}", self.id)),
        }
    }
}
