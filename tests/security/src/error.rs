//! The one error type of the helpers: what was being done and why it failed.

use std::time::Duration;

/// A helper could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A product binary is not where it was looked for.
    #[error(transparent)]
    BinaryMissing(#[from] testkit::binaries::BinaryNotFound),
    /// A file, socket or process operation failed.
    #[error("{action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A service did not answer `GET /healthz` with 200 in time.
    #[error("{name} did not answer /healthz within {within:?}; last log lines:\n{log_tail}")]
    NotReady {
        /// The service.
        name: String,
        /// How long it was given.
        within: Duration,
        /// The end of its log.
        log_tail: String,
    },
    /// A service exited while it was expected to run.
    #[error("{name} exited ({status}); last log lines:\n{log_tail}")]
    Exited {
        /// The service.
        name: String,
        /// Its exit status.
        status: String,
        /// The end of its log.
        log_tail: String,
    },
    /// A process did not exit in time.
    #[error("{name} did not exit within {within:?}")]
    StillRunning {
        /// The process.
        name: String,
        /// How long it was given.
        within: Duration,
    },
    /// An HTTP request of a helper failed.
    #[error("{action}: {source}")]
    Http {
        /// What was being done.
        action: String,
        /// The client's error.
        #[source]
        source: reqwest::Error,
    },
    /// A Kafka client operation failed.
    #[error("{action}: {source}")]
    Kafka {
        /// What was being done.
        action: String,
        /// The client's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A topic could not be read to its end in time.
    #[error("topic {topic:?}: {detail}")]
    Topic {
        /// The topic.
        topic: String,
        /// What went wrong.
        detail: String,
    },
    /// A file could not be parsed.
    #[error("{path}: {detail}")]
    Parse {
        /// The file (or a description of the text).
        path: String,
        /// What is wrong, with the line.
        detail: String,
    },
}

impl Error {
    /// A closure turning an I/O error into [`Error::Io`] with `action`.
    pub fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let action = action.into();
        move |source| Self::Io { action, source }
    }

    /// A closure turning a Kafka error into [`Error::Kafka`] with `action`.
    pub fn kafka(action: impl Into<String>) -> impl FnOnce(rdkafka::error::KafkaError) -> Self {
        let action = action.into();
        move |source| Self::Kafka { action, source }
    }

    /// A closure turning an HTTP client error into [`Error::Http`] with `action`.
    pub fn http(action: impl Into<String>) -> impl FnOnce(reqwest::Error) -> Self {
        let action = action.into();
        move |source| Self::Http { action, source }
    }
}
