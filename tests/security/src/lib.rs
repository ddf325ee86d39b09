//! Helpers shared by the security suites in `tests/`: where the product binaries are, producing
//! test records into a topic, stand-ins for Loki and for a SASL-speaking Kafka broker that record
//! the credentials they are sent, and the static checks of Dockerfiles and Kubernetes manifests.
//!
//! The product binaries run as [`testkit::service::ServiceProcess`]es (killed when dropped, also
//! when a test panics, which then shows the end of their log), and topics are read back to
//! their end with [`testkit::topic::read_topic`].

pub mod binaries;
pub mod dockerfile;
pub mod error;
pub mod k8s;
pub mod loki_stub;
pub mod sasl_capture;
pub mod secret;
pub mod topic;
pub mod yaml;

pub use error::Error;
