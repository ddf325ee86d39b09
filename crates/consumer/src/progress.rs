//! Progress of a command-line run (`redrive`, `audit`): an indicatif bar when stderr is a
//! terminal, a periodic log line otherwise. Log lines written while the bar shows go around it.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a progress line is logged when there is no bar.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// A progress display over `total` units.
#[derive(Debug)]
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    what: &'static str,
    total: u64,
    last_log: Instant,
}

impl Progress {
    /// A bar (on a terminal) or periodic lines about `what` (e.g. "letters").
    pub(crate) fn new(what: &'static str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(total);
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            b.set_style(style);
            b
        });
        Self {
            bar,
            what,
            total,
            last_log: Instant::now(),
        }
    }

    /// Moves to `done` of the total, with a short status message.
    pub(crate) fn set(&mut self, done: u64, message: impl FnOnce() -> String) {
        if let Some(b) = &self.bar {
            b.set_position(done);
            b.set_message(message());
            return;
        }
        if self.last_log.elapsed() >= LOG_EVERY {
            self.last_log = Instant::now();
            tracing::info!(done, total = self.total, status = %message(), "{} progress", self.what);
        }
    }

    /// Runs `log` (which writes log lines) without tearing the bar.
    pub(crate) fn around<T>(&self, log: impl FnOnce() -> T) -> T {
        match &self.bar {
            Some(b) => b.suspend(log),
            None => log(),
        }
    }

    /// Removes the bar.
    pub(crate) fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
