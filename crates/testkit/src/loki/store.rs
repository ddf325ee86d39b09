//! The receiver's memory (tests only): per tenant, per label set, entries ordered by timestamp
//! then arrival, with the structured metadata Loki stores, plus the state Loki's ingester keeps
//! per stream (last line, newest timestamp, rate bucket). An entry identical to a stored one
//! (same stream, timestamp, line and structured metadata) is not stored twice, wherever it sits
//! in the stream (LOKI.md; recorded: `dup-non-consecutive`, `dup-different-sm`).

use std::collections::{BTreeMap, HashMap};

use schema::loki::metadata::DETECTED_LEVEL;
use schema::loki::proto::LabelPairAdapter;
use schema::LabelSet;

use super::logql::Selector;
use super::ratelimit::TokenBucket;

/// A stored entry, as tests see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// The stream's labels (including a discovered `service_name`).
    pub labels: LabelSet,
    /// Nanoseconds since the Unix epoch.
    pub timestamp: i64,
    /// The line.
    pub line: String,
    /// The structured metadata the client sent, as Loki stores it (names normalised, empty
    /// values dropped), without the `detected_level` Loki adds (queries show that one).
    pub metadata: Vec<(String, String)>,
}

/// One entry of a stream.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) line: String,
    /// The client's metadata, normalised as Loki stores it.
    pub(crate) metadata: Vec<LabelPairAdapter>,
    /// The `detected_level` Loki added, if it added one.
    pub(crate) detected_level: Option<String>,
}

impl Entry {
    /// Every metadata pair Loki holds for the entry, `detected_level` included, by name.
    pub(crate) fn stored_metadata(&self) -> Vec<(&str, &str)> {
        let mut all: Vec<(&str, &str)> = self
            .metadata
            .iter()
            .map(|p| (p.name.as_str(), p.value.as_str()))
            .chain(self.detected_level.as_deref().map(|l| (DETECTED_LEVEL, l)))
            .collect();
        all.sort_unstable();
        all
    }
}

/// The last entry appended to a stream: Loki skips an entry equal to it before any other
/// check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LastLine {
    pub(crate) ts: i64,
    pub(crate) line: String,
    pub(crate) metadata: Vec<(String, String)>,
}

/// One stream of a tenant.
#[derive(Debug)]
pub(crate) struct Stream {
    /// Newest timestamp stored, for Loki's "too far behind" rule (kept in count-only mode).
    pub(crate) newest: Option<i64>,
    /// The last entry appended.
    pub(crate) last: Option<LastLine>,
    /// Per-stream rate bucket.
    pub(crate) bucket: TokenBucket,
    /// Entries by timestamp, each timestamp's in arrival order (empty in count-only mode).
    entries: BTreeMap<i64, Vec<Entry>>,
}

impl Stream {
    /// An empty stream.
    pub(crate) fn new(bucket: TokenBucket) -> Self {
        Self {
            newest: None,
            last: None,
            bucket,
            entries: BTreeMap::new(),
        }
    }

    /// Stores an entry unless an identical one (timestamp, line and metadata) is stored; true
    /// when stored.
    pub(crate) fn insert(&mut self, ts: i64, entry: Entry) -> bool {
        let slot = self.entries.entry(ts).or_default();
        let metadata = entry.stored_metadata();
        if slot
            .iter()
            .any(|e| e.line == entry.line && e.stored_metadata() == metadata)
        {
            return false;
        }
        slot.push(entry);
        true
    }

    /// Entries with `start <= ts < end`, oldest first.
    pub(crate) fn range(&self, start: i64, end: i64) -> impl Iterator<Item = (i64, &Entry)> {
        let range = if start < end {
            self.entries.range(start..end)
        } else {
            self.entries.range(0..0)
        };
        range.flat_map(|(ts, entries)| entries.iter().map(move |e| (*ts, e)))
    }

    /// Every entry, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (i64, &Entry)> {
        self.entries
            .iter()
            .flat_map(|(ts, entries)| entries.iter().map(move |e| (*ts, e)))
    }

    /// True when the stream holds an entry in `start..end`.
    pub(crate) fn has_entries_in(&self, start: i64, end: i64) -> bool {
        self.range(start, end).next().is_some()
    }

    /// Removes every entry at `ts` whose line is `line` (whatever its structured metadata);
    /// returns how many were removed.
    pub(crate) fn remove(&mut self, ts: i64, line: &str) -> usize {
        let Some(slot) = self.entries.get_mut(&ts) else {
            return 0;
        };
        let before = slot.len();
        slot.retain(|e| e.line != line);
        let removed = before - slot.len();
        if slot.is_empty() {
            self.entries.remove(&ts);
        }
        removed
    }

    /// Oldest and newest stored timestamps.
    pub(crate) fn bounds(&self) -> Option<(i64, i64)> {
        let first = *self.entries.keys().next()?;
        let last = *self.entries.keys().next_back()?;
        Some((first, last))
    }
}

/// One tenant's streams and its rate bucket.
#[derive(Debug)]
pub(crate) struct Tenant {
    pub(crate) bucket: TokenBucket,
    pub(crate) streams: HashMap<LabelSet, Stream>,
}

/// Every tenant.
#[derive(Debug, Default)]
pub(crate) struct Store {
    tenants: HashMap<String, Tenant>,
    stored: u64,
}

impl Store {
    /// A tenant's state, created by `make` when new; the flag says whether it was new.
    pub(crate) fn tenant_mut(
        &mut self,
        name: &str,
        make: impl FnOnce() -> Tenant,
    ) -> (&mut Tenant, bool) {
        let new = !self.tenants.contains_key(name);
        (
            self.tenants.entry(name.to_owned()).or_insert_with(make),
            new,
        )
    }

    /// A tenant's state.
    pub(crate) fn tenant(&self, name: &str) -> Option<&Tenant> {
        self.tenants.get(name)
    }

    /// Counts entries stored by a push.
    pub(crate) fn add_stored(&mut self, n: u64) {
        self.stored += n;
    }

    /// Entries stored, all tenants.
    pub(crate) fn stored(&self) -> u64 {
        self.stored
    }

    /// Forgets everything.
    pub(crate) fn clear(&mut self) {
        self.tenants.clear();
        self.stored = 0;
    }

    /// Removes a tenant's entries at `ts` with line `line` from every stream (as if Loki had
    /// lost them); returns how many were removed. The stream's ingester state (its newest
    /// timestamp and last line) is left as it was, as Loki's own deletes leave it.
    pub(crate) fn remove(&mut self, tenant: &str, ts: i64, line: &str) -> usize {
        self.tenants.get_mut(tenant).map_or(0, |t| {
            t.streams.values_mut().map(|s| s.remove(ts, line)).sum()
        })
    }

    /// A tenant's entries in streams selected by `selector` (all when `None`): streams in
    /// label order, entries oldest first.
    pub(crate) fn entries(&self, tenant: &str, selector: Option<&Selector>) -> Vec<StoredEntry> {
        let Some(t) = self.tenants.get(tenant) else {
            return Vec::new();
        };
        let mut streams: Vec<(&LabelSet, &Stream)> = t
            .streams
            .iter()
            .filter(|(labels, _)| selector.is_none_or(|s| s.matches(labels)))
            .collect();
        streams.sort_by(|a, b| a.0.cmp(b.0));
        streams
            .into_iter()
            .flat_map(|(labels, stream)| {
                stream
                    .iter()
                    .filter(|(_, e)| selector.is_none_or(|s| s.matches_line(&e.line)))
                    .map(move |(timestamp, e)| StoredEntry {
                        labels: labels.clone(),
                        timestamp,
                        line: e.line.clone(),
                        metadata: e
                            .metadata
                            .iter()
                            .map(|p| (p.name.clone(), p.value.clone()))
                            .collect(),
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn stream() -> Stream {
        Stream::new(TokenBucket::new(1.0, 1.0, Instant::now()))
    }

    fn e(line: &str, meta: &[(&str, &str)]) -> Entry {
        Entry {
            line: line.into(),
            metadata: meta
                .iter()
                .map(|(name, value)| LabelPairAdapter {
                    name: (*name).into(),
                    value: (*value).into(),
                })
                .collect(),
            detected_level: Some("unknown".into()),
        }
    }

    #[test]
    fn drops_exact_duplicates_but_keeps_another_line_or_other_metadata() {
        let mut s = stream();
        assert!(s.insert(5, e("a", &[])));
        assert!(!s.insert(5, e("a", &[])));
        assert!(s.insert(5, e("b", &[])));
        assert!(s.insert(5, e("a", &[("k", "1")])));
        assert!(!s.insert(5, e("a", &[("k", "1")])));
        assert!(s.insert(3, e("a", &[])));
        let got: Vec<_> = s.range(0, 10).map(|(t, e)| (t, e.line.as_str())).collect();
        assert_eq!(got, [(3, "a"), (5, "a"), (5, "b"), (5, "a")]);
        assert_eq!(s.bounds(), Some((3, 5)));
    }

    #[test]
    fn removing_takes_every_entry_with_that_timestamp_and_line_and_nothing_else() {
        let mut s = stream();
        assert!(s.insert(5, e("a", &[])));
        assert!(s.insert(5, e("a", &[("k", "1")])));
        assert!(s.insert(5, e("b", &[])));
        assert!(s.insert(6, e("a", &[])));
        assert_eq!(s.remove(5, "a"), 2);
        assert_eq!(s.remove(5, "a"), 0);
        assert_eq!(s.remove(7, "a"), 0);
        let got: Vec<_> = s.iter().map(|(t, e)| (t, e.line.as_str())).collect();
        assert_eq!(got, [(5, "b"), (6, "a")]);
        assert_eq!(s.remove(5, "b"), 1);
        assert_eq!(
            s.bounds(),
            Some((6, 6)),
            "an emptied timestamp leaves no trace"
        );
    }

    #[test]
    fn range_is_start_inclusive_end_exclusive() {
        let mut s = stream();
        for ts in [1, 2, 3] {
            s.insert(ts, e("x", &[]));
        }
        let got: Vec<_> = s.range(1, 3).map(|(t, _)| t).collect();
        assert_eq!(got, [1, 2]);
        assert_eq!(s.range(3, 1).count(), 0);
    }
}
