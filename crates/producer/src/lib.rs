//! The producer service of the log pipeline (DESIGN.md): streams JSON log records from files
//! (`--once`, `--loop`, `--follow`) and `POST /v1/logs` into Kafka, counting a record as sent
//! only when Kafka acknowledged it.
//!
//! [`app::App`] wires the pieces: [`config`], [`metrics`], the Kafka [`sink`], the sources
//! ([`file`](mod@file), [`follow`] with its [`checkpoint`], [`http`]) and `producer validate`
//! ([`validate_cmd`]).

pub mod app;
pub mod checkpoint;
pub mod chunk;
pub mod config;
pub mod file;
pub mod follow;
pub mod http;
pub mod metrics;
pub mod progress;
pub mod rate;
pub mod report;
pub mod resume;
pub mod sink;
pub mod validate_cmd;

pub use app::{App, RunError, RunOptions, Source};
pub use config::ProducerConfig;
pub use metrics::Metrics;
pub use report::Report;
