//! Loki's push API (LOKI.md): the protobuf messages, a builder that groups entries into streams,
//! protobuf + snappy and JSON (+ gzip) codecs, and Loki's validation limits.
//!
//! Decoding lives here as well as encoding, so the test receiver and the tests share one
//! implementation with the consumer.

pub mod codec;
pub mod encoded;
pub mod go_text;
pub mod label_text;
pub mod limits;
pub mod metadata;
pub mod proto;
pub mod tenant;

use std::collections::HashMap;

use crate::labels::{LabelPolicy, LabelSet};
use crate::record::LogRecord;
use proto::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp};

/// Collects entries into streams by label set, then produces a [`PushRequest`] with streams in
/// label order and each stream's entries sorted by timestamp (stable, so equal timestamps keep
/// arrival order).
#[derive(Debug, Default)]
pub struct PushBuilder {
    streams: Vec<StreamAdapter>,
    by_labels: HashMap<String, usize>,
    entries: usize,
    bytes: usize,
}

impl PushBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an entry to the stream with these labels.
    pub fn push(&mut self, labels: &LabelSet, entry: EntryAdapter) {
        self.push_labels_str(&labels.to_string(), entry);
    }

    /// Adds an entry to the stream with this label selector string.
    pub fn push_labels_str(&mut self, labels: &str, entry: EntryAdapter) {
        self.entries += 1;
        self.bytes += entry_size(&entry);
        let idx = match self.by_labels.get(labels) {
            Some(&i) => i,
            None => {
                self.bytes += labels.len();
                self.streams.push(StreamAdapter {
                    labels: labels.to_owned(),
                    entries: Vec::new(),
                    hash: 0,
                });
                let i = self.streams.len() - 1;
                self.by_labels.insert(labels.to_owned(), i);
                i
            }
        };
        self.streams[idx].entries.push(entry);
    }

    /// Number of entries added.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Approximate uncompressed size of what was added, in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// The push request.
    pub fn finish(mut self) -> PushRequest {
        self.streams.sort_by(|a, b| a.labels.cmp(&b.labels));
        for s in &mut self.streams {
            s.entries.sort_by_key(EntryAdapter::nanos);
        }
        PushRequest {
            streams: self.streams,
        }
    }
}

/// Approximate size of an entry on the wire before compression, in bytes.
pub fn entry_size(entry: &EntryAdapter) -> usize {
    16 + entry.line.len()
        + entry
            .structured_metadata
            .iter()
            .map(|p| p.name.len() + p.value.len() + 4)
            .sum::<usize>()
}

/// The Loki entry of a record under a label policy: its labels, and an entry whose line is the
/// canonical record JSON, timestamp the record's, metadata the policy's fields.
pub fn entry_for(record: &LogRecord<'_>, policy: &LabelPolicy) -> (LabelSet, EntryAdapter) {
    let labels = policy.labels_for(record);
    let entry = EntryAdapter {
        timestamp: Some(Timestamp::from_nanos(record.timestamp.as_nanos())),
        line: record.to_json(),
        structured_metadata: policy
            .metadata_for(record)
            .into_iter()
            .map(|(name, value)| LabelPairAdapter { name, value })
            .collect(),
    };
    (labels, entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::parse_record;

    fn e(ts: i64, line: &str) -> EntryAdapter {
        EntryAdapter {
            timestamp: Some(Timestamp::from_nanos(ts)),
            line: line.into(),
            structured_metadata: vec![],
        }
    }

    #[test]
    fn groups_by_label_set_and_sorts_streams_and_entries() {
        let a = LabelSet::from_pairs([("service", "a")]);
        let b = LabelSet::from_pairs([("service", "b")]);
        let mut p = PushBuilder::new();
        p.push(&b, e(3, "b3"));
        p.push(&a, e(2, "a2"));
        p.push(&b, e(1, "b1"));
        p.push(&a, e(2, "a2-second"));
        assert_eq!(p.entries(), 4);
        let req = p.finish();
        assert_eq!(req.streams.len(), 2);
        assert_eq!(req.streams[0].labels, r#"{service="a"}"#);
        let lines: Vec<_> = req.streams[0]
            .entries
            .iter()
            .map(|e| e.line.as_str())
            .collect();
        assert_eq!(lines, ["a2", "a2-second"]);
        let lines: Vec<_> = req.streams[1]
            .entries
            .iter()
            .map(|e| e.line.as_str())
            .collect();
        assert_eq!(lines, ["b1", "b3"]);
    }

    #[test]
    fn entry_for_uses_the_canonical_line_and_record_time() {
        let r = parse_record(
            r#"{"timestamp":"2026-01-02T03:04:05Z","level":"info","service":"api","message":"m","span_id":"s"}"#,
        )
        .unwrap();
        let (labels, entry) = entry_for(&r, &LabelPolicy::default());
        assert_eq!(labels.get("service"), Some("api"));
        assert_eq!(entry.line, r.to_json());
        assert_eq!(entry.nanos(), r.timestamp.as_nanos());
        assert_eq!(entry.structured_metadata[0].name, "span_id");
    }
}
