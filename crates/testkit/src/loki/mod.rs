//! A Loki-compatible test receiver (LOKI.md, and the recorded corpus in `loki-conformance/`,
//! which it reproduces case for case: see the crate README): Loki's push API with its
//! acceptance and rejection rules, statuses, texts and discard reasons; an in-memory store with
//! Loki's duplicate rule, structured-metadata normalisation and `detected_level`; the query API
//! (stream selectors with line filters, categorized labels, series, labels); Loki's metrics;
//! and injected faults (outages, status storms, latency, dropped connections) driven from the
//! CLI, a control API on its own port, or the [`LokiHandle`].
//!
//! It accepts and rejects exactly as a real Loki does: a receiver laxer than Loki would hide
//! bugs that surface on a real one.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use testkit::loki::{LokiConfig, LokiReceiver};
//!
//! let loki = LokiReceiver::start(LokiConfig::default()).await?;
//! // … push to loki.push_url() …
//! assert_eq!(loki.entries("fake").len(), 0);
//! loki.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod cli;
mod config;
mod control;
mod faults;
mod level;
mod logql;
mod metrics;
mod push;
mod query;
mod ratelimit;
mod receiver;
mod server;
mod store;
mod tenant;

pub use cli::LokiArgs;
pub use config::{
    ConfigError, LokiConfig, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_DECOMPRESSED_BYTES,
    DEFAULT_QUERY_INGESTERS_WITHIN, MIB, SERVICE_NAME_SOURCES, UNKNOWN_SERVICE,
};
pub use faults::{Faults, FaultsError, Outage, StatusStorm};
pub use logql::{LineFilter, LogqlError, MatchOp, Matcher, Selector};
pub use metrics::Stats;
pub use server::{run, LokiHandle, LokiReceiver, StartError};
pub use store::StoredEntry;
pub use tenant::FAKE_TENANT;
