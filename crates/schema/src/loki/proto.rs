//! Loki's push protobuf messages (`pkg/push/push.proto`), field numbers as in LOKI.md.
//!
//! ```text
//! message PushRequest   { repeated StreamAdapter streams = 1; }
//! message StreamAdapter { string labels = 1; repeated EntryAdapter entries = 2; uint64 hash = 3; }
//! message EntryAdapter  { google.protobuf.Timestamp timestamp = 1; string line = 2;
//!                         repeated LabelPairAdapter structuredMetadata = 3; }
//! message LabelPairAdapter { string name = 1; string value = 2; }
//! ```

/// A push: one or more streams.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PushRequest {
    /// The streams.
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

/// One stream: a label set and its entries.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct StreamAdapter {
    /// The label selector string, e.g. `{level="info", service="api"}`.
    #[prost(string, tag = "1")]
    pub labels: String,
    /// The entries, oldest first.
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    /// Loki's label hash; 0 lets Loki compute it.
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

/// One log line.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct EntryAdapter {
    /// When the event happened.
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    /// The line.
    #[prost(string, tag = "2")]
    pub line: String,
    /// Structured metadata (name/value pairs that are not labels).
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPairAdapter>,
}

/// A name/value pair of structured metadata.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LabelPairAdapter {
    /// The name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, prost::Message)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds within the second.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl Timestamp {
    /// Nanoseconds since the epoch (saturating).
    pub fn as_nanos(&self) -> i64 {
        self.seconds
            .saturating_mul(1_000_000_000)
            .saturating_add(i64::from(self.nanos))
    }

    /// From nanoseconds since the epoch.
    pub fn from_nanos(nanos: i64) -> Self {
        Self {
            seconds: nanos.div_euclid(1_000_000_000),
            nanos: nanos.rem_euclid(1_000_000_000) as i32,
        }
    }
}

impl EntryAdapter {
    /// The entry's timestamp in nanoseconds since the epoch (0 when absent).
    pub fn nanos(&self) -> i64 {
        self.timestamp.map_or(0, |t| t.as_nanos())
    }
}
