//! The one error type of the end-to-end helpers: what failed while setting up, driving or
//! observing the pipeline. Tests `expect` these; the message says what was being done.

use std::time::Duration;

use rdkafka::error::KafkaError;
use testkit::broker::BrokerError;
use testkit::loki::{FaultsError, StartError};
use testkit::prometheus::PrometheusError;
use testkit::service::ServiceError;
use testkit::topic::TopicError;

/// Errors of the end-to-end helpers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `producer` or `consumer` binary is not where the tests look for it.
    #[error(transparent)]
    BinaryNotFound(#[from] testkit::binaries::BinaryNotFound),
    /// A file, socket or process operation failed.
    #[error("{action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A `producer` or `consumer` process failed to start, answer, or stop.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// A topic could not be read back.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// A wait ran out of time.
    #[error("timed out after {timeout:?} waiting for {what}; last seen: {last}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        timeout: Duration,
        /// The last state observed.
        last: String,
    },
    /// The tansu broker failed.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The Prometheus server failed.
    #[error(transparent)]
    Prometheus(#[from] PrometheusError),
    /// The Loki-compatible receiver did not start.
    #[error(transparent)]
    LokiStart(#[from] StartError),
    /// Faults could not be set on the receiver.
    #[error(transparent)]
    LokiFaults(#[from] FaultsError),
    /// A Kafka client operation failed.
    #[error("{action}: {source}")]
    Kafka {
        /// What was being done.
        action: String,
        /// The client's error.
        #[source]
        source: KafkaError,
    },
    /// An HTTP request failed.
    #[error("{action}: {source}")]
    Http {
        /// What was being done.
        action: String,
        /// The client's error.
        #[source]
        source: reqwest::Error,
    },
    /// Input data (a fixture, a dashboard, a response) is not what it should be.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// An [`Error::Io`] maker for `map_err`.
    pub fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let action = action.into();
        move |source| Self::Io { action, source }
    }

    /// An [`Error::Kafka`] maker for `map_err`.
    pub fn kafka(action: impl Into<String>) -> impl FnOnce(KafkaError) -> Self {
        let action = action.into();
        move |source| Self::Kafka { action, source }
    }

    /// An [`Error::Http`] maker for `map_err`.
    pub fn http(action: impl Into<String>) -> impl FnOnce(reqwest::Error) -> Self {
        let action = action.into();
        move |source| Self::Http { action, source }
    }
}

/// The result type of the end-to-end helpers.
pub type Result<T, E = Error> = std::result::Result<T, E>;
