//! Progress of a file source: an indicatif bar when stderr is a terminal (`--once`), periodic
//! summary log lines otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// A progress display.
#[derive(Debug)]
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    interval: Duration,
    last_log: Instant,
    started: Instant,
}

impl Progress {
    /// A bar over `total_bytes` when `bar` is asked for and stderr is a terminal; log lines
    /// every `interval` otherwise.
    pub(crate) fn new(bar: bool, total_bytes: Option<u64>, interval: Duration) -> Self {
        let bar = (bar && std::io::stderr().is_terminal()).then(|| {
            let b = match total_bytes {
                Some(n) => ProgressBar::new(n),
                None => ProgressBar::new_spinner(),
            };
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            b.set_style(style);
            b
        });
        Self {
            bar,
            interval,
            last_log: Instant::now(),
            started: Instant::now(),
        }
    }

    /// Shows the position (`offset` bytes, `read` records, `sent` acknowledged).
    pub(crate) fn update(&mut self, offset: u64, read: u64, sent: u64) {
        if let Some(b) = &self.bar {
            b.set_position(offset);
            b.set_message(format!("read {read} sent {sent}"));
            return;
        }
        if self.last_log.elapsed() >= self.interval {
            self.last_log = Instant::now();
            let secs = self.started.elapsed().as_secs_f64().max(1e-3);
            tracing::info!(
                read,
                sent,
                bytes = offset,
                records_per_sec = (read as f64 / secs).round(),
                "progress"
            );
        }
    }

    /// Removes the bar.
    pub(crate) fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
