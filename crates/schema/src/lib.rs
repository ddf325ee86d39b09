//! The contract between the producer and the consumer of the log pipeline (DESIGN.md, "Data
//! contract"): the [`LogRecord`], a streaming [`RecordReader`] for JSON arrays and NDJSON,
//! validation and normalisation, the [`LabelPolicy`], the Kafka wire form and the Loki push
//! encoding.

pub mod kafka;
pub mod labels;
pub mod loki;
pub mod reader;
pub mod record;
mod timestamp;
mod validate;

pub use labels::{LabelPolicy, LabelSet};
pub use reader::{Position, ReadError, ReadRecord, RecordReader};
pub use record::{Level, LogRecord};
pub use timestamp::{Timestamp, TimestampError};
pub use validate::{parse_record, parse_record_bytes, Reason, RecordError};
