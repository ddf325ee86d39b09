//! Test harness of the log pipeline: the data generator, a Loki-compatible receiver, a tansu
//! broker, Prometheus, the pipeline's own services as child processes ([`service`]) and reading a
//! Kafka topic back ([`topic`]).

pub mod binaries;
pub mod broker;
pub mod gen;
pub mod loki;
pub mod mock;
mod process;
pub mod prometheus;
pub mod service;
pub mod topic;
