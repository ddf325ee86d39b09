//! Logging setup: `tracing` to stderr, JSON in containers (`LOG_FORMAT=json`) and text on a
//! terminal, level from `LOG_LEVEL` (an `EnvFilter` directive such as `info` or
//! `info,rdkafka=warn`).

use tracing_subscriber::{fmt, EnvFilter};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (containers, log shippers).
    Json,
    /// Human-readable text.
    Text,
}

impl LogFormat {
    /// `json` → JSON, anything else → text; unset → JSON unless stderr is a terminal.
    pub fn from_env(value: Option<&str>) -> Self {
        match value.map(str::to_ascii_lowercase).as_deref() {
            Some("json") => LogFormat::Json,
            Some(_) => LogFormat::Text,
            None if std::io::IsTerminal::is_terminal(&std::io::stderr()) => LogFormat::Text,
            None => LogFormat::Json,
        }
    }
}

/// Installs the global subscriber. `level` is an `EnvFilter` directive; an invalid one falls
/// back to `info` with a warning. Safe to call once; later calls are ignored.
pub fn init(level: &str, format: LogFormat) {
    let (filter, bad) = match EnvFilter::try_new(level) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new("info"), Some(e.to_string())),
    };
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.with_target(true).try_init(),
    };
    if result.is_ok() {
        if let Some(e) = bad {
            tracing::warn!(directive = level, error = %e, "invalid LOG_LEVEL, using info");
        }
    }
}
