//! After an interrupted run: which dead letters it had already published to the main topic
//! although their offsets were not committed (a crash between Kafka's acknowledgement and the
//! commit). The redrive keeps, as committed offsets of its own group on the main topic's
//! partitions, a bookmark of where its next copies can land; at start it reads the main topic
//! from there and notes every copy (recognised by its `redriven-from-*` headers) of a letter at
//! or past its partition's committed offset. Those letters are then skipped, so a crash
//! neither loses nor repeats a record.
//!
//! The bookmark of a main-topic partition is committed as `high watermark + 1` while a run may
//! have copies in flight ("dirty"), and as `0` once a run ended cleanly, so the next start
//! reads nothing. A high watermark is never past the partition's end, so reading from it finds
//! every later copy; the `+ 1` keeps a real bookmark apart from the clean mark when the
//! watermark is 0.

use std::collections::{BTreeMap, HashSet};

use rdkafka::message::{Headers, Message};
use schema::kafka::{REDRIVE_HEADER_OFFSET, REDRIVE_HEADER_PARTITION, REDRIVE_HEADER_TOPIC};
use tokio_util::sync::CancellationToken;

use crate::scan::{Bounds, ScanError, Scanner, Visit};

/// The committed bookmark of a main-topic partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    /// No copy of an uncommitted letter can be in this partition.
    Clean,
    /// Copies of uncommitted letters can be at this offset or after it.
    From(i64),
    /// Nothing committed (a new group, or a partition added since).
    Unknown,
}

impl Mark {
    /// Reads a committed offset (`None`: nothing committed).
    pub(crate) fn from_committed(offset: Option<i64>) -> Self {
        match offset {
            None => Mark::Unknown,
            Some(o) if o <= 0 => Mark::Clean,
            Some(o) => Mark::From(o - 1),
        }
    }

    /// The offset to commit for "copies can be at `high` or after".
    pub(crate) fn dirty(high: i64) -> i64 {
        high.max(0) + 1
    }

    /// The offset to commit once no copy is in flight.
    pub(crate) const CLEAN: i64 = 0;
}

/// What the look-up found.
#[derive(Debug, Default)]
pub(crate) struct Found {
    /// (dead-letter partition, offset) of letters already published.
    pub(crate) published: HashSet<(i32, i64)>,
    /// Messages of the main topic read.
    pub(crate) scanned: u64,
    /// Main-topic partitions not read to their end (the limit was reached).
    pub(crate) incomplete: Vec<i32>,
}

/// Reads the main topic from its bookmarks and finds the copies of letters at or past
/// `first_uncommitted` (dead-letter partition → offset). Nothing is read when every bookmark
/// is clean (or none is committed at all: a group that never ran).
pub(crate) fn find_published(
    main: &Scanner,
    main_bounds: &BTreeMap<i32, Bounds>,
    marks: &BTreeMap<i32, Mark>,
    dlq_topic: &str,
    first_uncommitted: &BTreeMap<i32, i64>,
    limit_per_partition: u64,
    cancel: &CancellationToken,
) -> Result<Found, ScanError> {
    let mut found = Found::default();
    if !marks.values().any(|m| matches!(m, Mark::From(_))) {
        return Ok(found);
    }
    let ranges: BTreeMap<i32, (i64, i64)> = main_bounds
        .iter()
        .map(|(&p, b)| {
            let start = match marks.get(&p).copied().unwrap_or(Mark::Unknown) {
                Mark::From(o) => o.max(b.low),
                // Written together with the dirty ones: a partition that has none was added
                // since, and is read whole.
                Mark::Clean | Mark::Unknown => b.low,
            };
            (p, (start, b.end))
        })
        .collect();
    let mut read: BTreeMap<i32, u64> = BTreeMap::new();
    main.read(&ranges, cancel, |m| {
        found.scanned += 1;
        let n = read.entry(m.partition()).or_default();
        *n += 1;
        if let Some((p, o)) = copy_of(m, dlq_topic) {
            if first_uncommitted.get(&p).is_some_and(|&c| o >= c) {
                found.published.insert((p, o));
            }
        }
        if *n >= limit_per_partition {
            found.incomplete.push(m.partition());
            Visit::StopPartition
        } else {
            Visit::Continue
        }
    })?;
    Ok(found)
}

/// The letter (partition, offset) a main-topic message is a copy of, if it is one of
/// `dlq_topic`'s.
fn copy_of<M: Message>(m: &M, dlq_topic: &str) -> Option<(i32, i64)> {
    let headers = m.headers()?;
    let (mut topic, mut partition, mut offset) = (None, None, None);
    for h in headers.iter() {
        let text = h.value.and_then(|v| std::str::from_utf8(v).ok());
        match h.key {
            REDRIVE_HEADER_TOPIC => topic = text,
            REDRIVE_HEADER_PARTITION => partition = text.and_then(|t| t.parse().ok()),
            REDRIVE_HEADER_OFFSET => offset = text.and_then(|t| t.parse().ok()),
            _ => {}
        }
    }
    (topic == Some(dlq_topic)).then_some(())?;
    Some((partition?, offset?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};

    fn message(headers: &[(&str, &str)]) -> OwnedMessage {
        let mut h = OwnedHeaders::new();
        for (k, v) in headers {
            h = h.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        OwnedMessage::new(
            None,
            None,
            "logs".into(),
            Timestamp::NotAvailable,
            0,
            0,
            Some(h),
        )
    }

    #[test]
    fn bookmarks_read_back_as_written() {
        assert_eq!(Mark::from_committed(None), Mark::Unknown);
        assert_eq!(Mark::from_committed(Some(Mark::CLEAN)), Mark::Clean);
        assert_eq!(Mark::from_committed(Some(Mark::dirty(0))), Mark::From(0));
        assert_eq!(Mark::from_committed(Some(Mark::dirty(41))), Mark::From(41));
    }

    #[test]
    fn a_copy_is_recognised_by_its_three_headers_and_only_for_its_dead_letter_topic() {
        let copy = message(&[
            ("schema-version", "1"),
            (REDRIVE_HEADER_TOPIC, "logs-dlq"),
            (REDRIVE_HEADER_PARTITION, "2"),
            (REDRIVE_HEADER_OFFSET, "17"),
        ]);
        assert_eq!(copy_of(&copy, "logs-dlq"), Some((2, 17)));
        assert_eq!(copy_of(&copy, "other-dlq"), None);
        let partial = message(&[
            (REDRIVE_HEADER_TOPIC, "logs-dlq"),
            (REDRIVE_HEADER_OFFSET, "17"),
        ]);
        assert_eq!(copy_of(&partial, "logs-dlq"), None);
        assert_eq!(copy_of(&message(&[]), "logs-dlq"), None);
    }
}
