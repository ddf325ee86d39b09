//! Helpers shared by the security suites in `tests/`: where the product binaries are, running
//! them as child processes that are always stopped, reading a Kafka topic back to its end,
//! stand-ins for Loki and for a SASL-speaking Kafka broker that record the credentials they are
//! sent, and the static checks of Dockerfiles and Kubernetes manifests.
//!
//! Every process started here is killed when its handle is dropped, also when a test panics; the
//! handle then prints the end of the process's log beside the failure.

pub mod binaries;
pub mod dockerfile;
pub mod error;
pub mod k8s;
pub mod loki_stub;
pub mod sasl_capture;
pub mod secret;
pub mod service;
pub mod topic;
pub mod yaml;

pub use error::Error;
