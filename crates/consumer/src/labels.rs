//! Stream labels of consumed records: the schema's [`LabelPolicy`] with a per-value cache (the
//! common policy, labels from `service` and `level`, resolves without allocating) and a
//! cardinality guard: beyond `max_label_sets` distinct sets, a record-derived label value never
//! seen before becomes `other` and its real value moves to structured metadata as
//! `original_<label>`, so a misbehaving source cannot create unbounded streams in Loki.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rustc_hash::FxHashMap;
use schema::labels::{sanitize_label_name, sanitize_label_value, LabelPolicy, LabelSet};
use schema::LogRecord;

/// The value that replaces label values over the cardinality cap.
pub(crate) const OVERFLOW_VALUE: &str = "other";

/// A stream this consumer pushes to: an index into [`LabelResolver`]'s table, so batches and
/// per-stream state are found without hashing label strings per record.
pub(crate) type StreamId = u32;

/// Labels of one record.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// The record's stream.
    pub(crate) stream: StreamId,
    /// Metadata to add when a value was folded into `other` (empty, and not allocated,
    /// otherwise).
    pub(crate) overflow: Vec<(String, String)>,
}

/// Resolves records to label sets under a policy, with the cardinality guard.
#[derive(Debug)]
pub(crate) struct LabelResolver {
    policy: LabelPolicy,
    max_sets: usize,
    /// Record-derived values (by label) seen so far.
    known_values: HashMap<String, HashSet<String>>,
    /// Label string → stream.
    ids: HashMap<Arc<str>, StreamId>,
    /// Stream → label string.
    streams: Vec<Arc<str>>,
    /// Fast path cache: (service, level) → stream, when the policy labels exactly those.
    fast: Option<FxHashMap<Box<str>, [Option<StreamId>; 6]>>,
}

impl LabelResolver {
    /// A resolver for `policy`, allowing `max_sets` distinct label sets.
    pub(crate) fn new(policy: LabelPolicy, max_sets: usize) -> Self {
        let simple = policy
            .record_labels
            .iter()
            .all(|l| l == "service" || l == "level");
        Self {
            policy,
            max_sets,
            known_values: HashMap::new(),
            ids: HashMap::new(),
            streams: Vec::new(),
            fast: simple.then(FxHashMap::default),
        }
    }

    /// Distinct label sets seen.
    pub(crate) fn distinct_sets(&self) -> usize {
        self.streams.len()
    }

    /// The label selector string of a stream.
    pub(crate) fn labels(&self, stream: StreamId) -> &Arc<str> {
        &self.streams[stream as usize]
    }

    /// The stream of a record.
    pub(crate) fn resolve(&mut self, record: &LogRecord<'_>) -> Resolved {
        let level_idx = record.level.index();
        if let Some(Some(stream)) = self
            .fast
            .as_ref()
            .and_then(|fast| fast.get(record.service.as_ref()))
            .map(|a| a[level_idx])
        {
            return Resolved {
                stream,
                overflow: Vec::new(),
            };
        }
        let mut set = self.policy.labels_for(record);
        let mut overflow = Vec::new();
        let key = set.to_string();
        let stream = if let Some(&id) = self.ids.get(key.as_str()) {
            id
        } else if self.streams.len() < self.max_sets {
            self.remember(&set);
            self.intern(key)
        } else {
            // Over the cap: fold every record-derived value not seen before into `other`.
            for field in &self.policy.record_labels {
                let name = sanitize_label_name(field);
                let Some(value) = set.get(&name).map(str::to_owned) else {
                    continue;
                };
                let known = self
                    .known_values
                    .get(&name)
                    .is_some_and(|s| s.contains(&value));
                if !known {
                    overflow.push((format!("original_{name}"), sanitize_label_value(&value)));
                    set.insert(name, OVERFLOW_VALUE);
                }
            }
            // The folded set may itself be new: allow it (its values are bounded by the known
            // ones plus `other`).
            let folded = set.to_string();
            match self.ids.get(folded.as_str()) {
                Some(&id) => id,
                None => self.intern(folded),
            }
        };
        if overflow.is_empty() {
            if let Some(fast) = &mut self.fast {
                fast.entry(record.service.as_ref().into())
                    .or_insert_with(Default::default)[level_idx] = Some(stream);
            }
        }
        Resolved { stream, overflow }
    }

    fn intern(&mut self, labels: String) -> StreamId {
        let labels: Arc<str> = Arc::from(labels);
        let id = StreamId::try_from(self.streams.len()).unwrap_or(StreamId::MAX);
        self.streams.push(labels.clone());
        self.ids.insert(labels, id);
        id
    }

    fn remember(&mut self, set: &LabelSet) {
        for (k, v) in set.pairs() {
            self.known_values
                .entry(k.clone())
                .or_default()
                .insert(v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schema::parse_record;

    fn rec(service: &str, level: &str) -> String {
        format!(r#"{{"timestamp":1,"level":"{level}","service":"{service}","message":"m"}}"#)
    }

    #[test]
    fn same_service_and_level_share_one_label_string() {
        let mut r = LabelResolver::new(LabelPolicy::with_environment("dev"), 100);
        let a = rec("api", "info");
        let first = r.resolve(&parse_record(&a).unwrap());
        let second = r.resolve(&parse_record(&a).unwrap());
        assert_eq!(first.stream, second.stream);
        assert_eq!(
            &**r.labels(first.stream),
            r#"{environment="dev", level="info", service="api", source="kafka"}"#
        );
    }

    #[test]
    fn new_values_over_the_cap_become_other_with_the_original_in_metadata() {
        let mut r = LabelResolver::new(LabelPolicy::default(), 2);
        r.resolve(&parse_record(&rec("a", "info")).unwrap());
        r.resolve(&parse_record(&rec("b", "info")).unwrap());
        let over = r.resolve(&parse_record(&rec("c", "info")).unwrap());
        let labels = r.labels(over.stream);
        assert!(labels.contains(r#"service="other""#), "{labels}");
        assert_eq!(over.overflow, vec![("original_service".into(), "c".into())]);
        // A known service at a known level still resolves normally.
        let known = r.resolve(&parse_record(&rec("a", "info")).unwrap());
        assert!(known.overflow.is_empty());
        // Many more new services add at most the folded sets.
        for i in 0..50 {
            r.resolve(&parse_record(&rec(&format!("s{i}"), "info")).unwrap());
        }
        assert!(r.distinct_sets() <= 3);
    }
}
