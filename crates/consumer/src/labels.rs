//! Stream labels of consumed records: the schema's [`LabelPolicy`] with a per-value cache (the
//! common policy, labels from `service` and `level`, resolves without allocating) and a
//! cardinality guard: beyond `max_label_sets` distinct sets, a record-derived label value never
//! seen before becomes `other` and its real value moves to structured metadata as
//! `original_<label>`, so a misbehaving source cannot create unbounded streams in Loki.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use schema::labels::{sanitize_label_name, sanitize_label_value, LabelPolicy, LabelSet};
use schema::LogRecord;

/// The value that replaces label values over the cardinality cap.
pub const OVERFLOW_VALUE: &str = "other";

/// Labels of one record.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The label selector string, shared by every record of the stream.
    pub labels: Arc<str>,
    /// Metadata to add when a value was folded into `other`.
    pub overflow: Vec<(String, String)>,
}

/// Resolves records to label sets under a policy, with the cardinality guard.
#[derive(Debug)]
pub struct LabelResolver {
    policy: LabelPolicy,
    max_sets: usize,
    /// Record-derived values (by label) seen so far.
    known_values: HashMap<String, HashSet<String>>,
    sets: HashSet<Arc<str>>,
    /// Fast path cache: (service, level) → labels, when the policy labels exactly those.
    fast: Option<HashMap<String, [Option<Arc<str>>; 6]>>,
}

impl LabelResolver {
    /// A resolver for `policy`, allowing `max_sets` distinct label sets.
    pub fn new(policy: LabelPolicy, max_sets: usize) -> Self {
        let simple = policy
            .record_labels
            .iter()
            .all(|l| l == "service" || l == "level");
        Self {
            policy,
            max_sets,
            known_values: HashMap::new(),
            sets: HashSet::new(),
            fast: simple.then(HashMap::new),
        }
    }

    /// Distinct label sets seen.
    pub fn distinct_sets(&self) -> usize {
        self.sets.len()
    }

    /// The labels of a record.
    pub fn resolve(&mut self, record: &LogRecord<'_>) -> Resolved {
        let level_idx = record.level as usize;
        if let Some(fast) = &self.fast {
            if let Some(Some(labels)) = fast.get(record.service.as_ref()).map(|a| &a[level_idx]) {
                return Resolved {
                    labels: labels.clone(),
                    overflow: Vec::new(),
                };
            }
        }
        let mut set = self.policy.labels_for(record);
        let mut overflow = Vec::new();
        let key: Arc<str> = Arc::from(set.to_string());
        let key = if self.sets.contains(&key) {
            self.sets.get(&key).cloned().unwrap_or(key)
        } else if self.sets.len() < self.max_sets {
            self.remember(&set);
            self.sets.insert(key.clone());
            key
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
            let folded: Arc<str> = Arc::from(set.to_string());
            match self.sets.get(&folded) {
                Some(existing) => existing.clone(),
                None => {
                    // The folded set itself is new: allow it (its values are bounded by the
                    // known ones plus `other`).
                    self.sets.insert(folded.clone());
                    folded
                }
            }
        };
        if overflow.is_empty() {
            if let Some(fast) = &mut self.fast {
                fast.entry(record.service.to_string())
                    .or_insert_with(Default::default)[level_idx] = Some(key.clone());
            }
        }
        Resolved {
            labels: key,
            overflow,
        }
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
        assert!(Arc::ptr_eq(&first.labels, &second.labels));
        assert_eq!(
            &*first.labels,
            r#"{environment="dev", level="info", service="api", source="kafka"}"#
        );
    }

    #[test]
    fn new_values_over_the_cap_become_other_with_the_original_in_metadata() {
        let mut r = LabelResolver::new(LabelPolicy::default(), 2);
        r.resolve(&parse_record(&rec("a", "info")).unwrap());
        r.resolve(&parse_record(&rec("b", "info")).unwrap());
        let over = r.resolve(&parse_record(&rec("c", "info")).unwrap());
        assert!(
            over.labels.contains(r#"service="other""#),
            "{}",
            over.labels
        );
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
