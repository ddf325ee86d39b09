//! The one error type of the helpers: what was being done and why it failed.

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
    /// A Kafka client operation failed.
    #[error("{action}: {source}")]
    Kafka {
        /// What was being done.
        action: String,
        /// The client's error.
        #[source]
        source: rdkafka::error::KafkaError,
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
}
