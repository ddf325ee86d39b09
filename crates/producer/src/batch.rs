//! Records as the reader yields them, encoded into their Kafka wire form (DESIGN.md, "Kafka
//! message") in input order: every source (file, `--follow`, `POST /v1/logs`) reads into a
//! [`Batch`], the one place a record is encoded, and hands its items to the
//! [`Dispatcher`](crate::dispatch::Dispatcher).

use std::ops::Range;

use schema::kafka::NotCanonical;
use schema::{Level, ReadError, ReadRecord, Timestamp};

/// Records per batch at most, when a source asks [`Batch::is_full`].
pub(crate) const BATCH_RECORDS: usize = 512;

/// Encoded bytes per batch: [`Batch::is_full`] once it holds this many (plus one record).
pub(crate) const BATCH_BYTES: usize = 256 * 1024;

/// One item of a batch, in input order.
#[derive(Debug)]
pub(crate) enum Item {
    /// A valid record: its key and value are in the batch's bytes.
    Record(Encoded),
    /// A record the reader rejected.
    Rejected(ReadError),
}

/// A valid record, encoded.
#[derive(Debug, Clone)]
pub(crate) struct Encoded {
    /// The line it starts on.
    pub(crate) line: u64,
    /// Its level (for per-level counts).
    pub(crate) level: Level,
    /// Its timestamp as read (what `--loop` rebases from).
    pub(crate) timestamp: Timestamp,
    value: Range<usize>,
    key: Range<usize>,
}

/// Validated records, encoded ([`schema::kafka::encode_value`], [`schema::kafka::key`]) into
/// one buffer, and rejected ones, in input order. Cleared and reused, so reading allocates
/// nothing per record once the buffers have grown.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// Each record's value followed by its key.
    bytes: Vec<u8>,
    items: Vec<Item>,
}

impl Batch {
    /// An empty batch with room for a full one ([`Batch::is_full`]).
    pub(crate) fn new() -> Self {
        Self {
            bytes: Vec::with_capacity(BATCH_BYTES + 64 * 1024),
            items: Vec::with_capacity(BATCH_RECORDS),
        }
    }

    /// An empty batch with room for about `bytes` of encoded records.
    pub(crate) fn with_capacity(bytes: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(bytes),
            items: Vec::new(),
        }
    }

    /// Empties the batch, keeping its buffers.
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.items.clear();
    }

    /// True once it holds [`BATCH_RECORDS`] items or [`BATCH_BYTES`] bytes.
    pub(crate) fn is_full(&self) -> bool {
        self.items.len() >= BATCH_RECORDS || self.bytes.len() >= BATCH_BYTES
    }

    /// Items in the batch.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Adds what the reader yielded: a valid record is encoded, a rejected one kept with its
    /// error.
    pub(crate) fn push(&mut self, item: Result<ReadRecord<'_>, ReadError>) {
        let item = match item {
            Ok(r) => {
                let start = self.bytes.len();
                schema::kafka::encode_value(&r.record, &mut self.bytes);
                let value_end = self.bytes.len();
                self.bytes.extend_from_slice(schema::kafka::key(&r.record));
                Item::Record(Encoded {
                    line: r.position.line,
                    level: r.record.level,
                    timestamp: r.record.timestamp,
                    value: start..value_end,
                    key: value_end..self.bytes.len(),
                })
            }
            Err(e) => Item::Rejected(e),
        };
        self.items.push(item);
    }

    /// The items, in input order.
    pub(crate) fn items(&self) -> &[Item] {
        &self.items
    }

    /// A record's key (its service).
    pub(crate) fn key(&self, record: &Encoded) -> &[u8] {
        self.bytes.get(record.key.clone()).unwrap_or_default()
    }

    /// A record's value.
    pub(crate) fn value(&self, record: &Encoded) -> &[u8] {
        self.bytes.get(record.value.clone()).unwrap_or_default()
    }

    /// Re-dates the record at `index` ([`schema::kafka::restamp_value`]).
    pub(crate) fn restamp(
        &mut self,
        index: usize,
        timestamp: Timestamp,
    ) -> Result<(), NotCanonical> {
        let Some(Item::Record(record)) = self.items.get(index) else {
            return Err(NotCanonical);
        };
        match self.bytes.get_mut(record.value.clone()) {
            Some(value) => schema::kafka::restamp_value(value, timestamp),
            None => Err(NotCanonical),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use schema::RecordReader;

    use super::*;

    fn batch_of(input: &str) -> Batch {
        let mut batch = Batch::new();
        let mut reader = RecordReader::new(Cursor::new(input.as_bytes()));
        while let Some(item) = reader.next_record() {
            batch.push(item);
        }
        batch
    }

    #[test]
    fn records_are_encoded_in_input_order_with_the_rejected_ones_between() {
        let batch = batch_of(concat!(
            r#"{"timestamp":"2026-01-02T03:04:05+01:00","level":"WARNING","service":"api","message":"a","x":1}"#,
            "\n",
            r#"{"timestamp":1,"level":"loud","service":"api","message":"b"}"#,
            "\n",
            r#"{"timestamp":2,"level":"info","service":"db","message":"c"}"#,
            "\n",
        ));
        assert_eq!(batch.len(), 3);
        let [Item::Record(a), Item::Rejected(e), Item::Record(c)] = batch.items() else {
            panic!("{:?}", batch.items());
        };
        assert_eq!(batch.key(a), b"api");
        assert_eq!(
            std::str::from_utf8(batch.value(a)).unwrap(),
            r#"{"timestamp":"2026-01-02T02:04:05.000000000Z","level":"warn","service":"api","message":"a","x":1}"#
        );
        assert_eq!((a.line, a.level), (1, Level::Warn));
        assert_eq!(e.reason().as_str(), "invalid_level");
        assert_eq!(batch.key(c), b"db");
        assert_eq!(c.line, 3);
    }

    #[test]
    fn a_restamped_record_keeps_its_neighbours() {
        let mut batch = batch_of(concat!(
            r#"{"timestamp":1,"level":"info","service":"a","message":"m"}"#,
            "\n",
            r#"{"timestamp":2,"level":"info","service":"b","message":"n"}"#,
            "\n",
        ));
        let ts = Timestamp::from_nanos(1_767_323_045_000_000_007).unwrap();
        batch.restamp(0, ts).unwrap();
        let Item::Record(first) = &batch.items()[0] else {
            panic!("not a record");
        };
        assert_eq!(
            std::str::from_utf8(batch.value(first)).unwrap(),
            r#"{"timestamp":"2026-01-02T03:04:05.000000007Z","level":"info","service":"a","message":"m"}"#
        );
        let Item::Record(second) = &batch.items()[1] else {
            panic!("not a record");
        };
        assert!(batch
            .value(second)
            .starts_with(br#"{"timestamp":"1970-01-01T00:00:02"#));
        assert_eq!(batch.key(second), b"b");
    }
}
