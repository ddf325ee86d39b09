//! The producer service of the log pipeline (DESIGN.md): streams JSON log records from files
//! (`--once`, `--loop`, `--follow`) and `POST /v1/logs` into Kafka, counting a record as sent
//! only when Kafka acknowledged it.
//!
//! [`run`] wires the pieces ([`App`]): the configuration ([`ProducerConfig`]), the metrics, the
//! sources (`file`: `--once`/`--loop`; `follow`: `--follow` with its [`Checkpoint`]; `ingest`:
//! `POST /v1/logs`), each reading records into a `batch` (the one place a record is encoded)
//! and handing them to a `dispatch::Dispatcher`, the one route to the Kafka [`Sink`].
//! `producer validate` is [`validate`].

mod app;
mod batch;
pub mod cli;
mod config;
mod dispatch;
mod file;
mod follow;
mod ingest;
mod kafka;
mod metrics;
mod progress;
mod rate;
mod report;
mod validate_cmd;

pub use app::{run, App, RunError, RunOptions, Source, VERSION};
pub use config::ProducerConfig;
pub use file::{FileError, FileOptions, Input};
pub use follow::checkpoint::{Checkpoint, CheckpointError, FileId};
pub use follow::resume::PartitionOffset;
pub use follow::FollowError;
pub use ingest::{router as ingest_router, IngestState};
pub use kafka::client::{client_config, record_headers};
pub use kafka::topic::ensure_topic;
pub use kafka::{Sink, SinkError};
pub use metrics::Metrics;
pub use report::{Report, EXIT_INVALID, EXIT_UNDELIVERED};
pub use validate_cmd::run as validate;
