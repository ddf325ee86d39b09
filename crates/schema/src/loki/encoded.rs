//! A stream's entries encoded once, as they arrive: each entry is written as a protobuf
//! `EntryAdapter` message ([`proto`](super::proto), LOKI.md "Request") into one growing buffer,
//! and a push is assembled from those bytes (a header, then the entries in timestamp order).
//!
//! This is the consumer's hot path. Holding entries as [`EntryAdapter`] values costs several
//! allocations per record (the line, every metadata name and value), all freed again on another
//! thread after the push, and a second pass to encode them; here a record costs one copy of its
//! line into the stream's buffer. The bytes are exactly what `prost` writes for the same
//! [`PushRequest`] (proto3: default values are omitted), which the tests check.

use std::ops::Range;

use prost::encoding::{encode_varint, encoded_len_varint};
use prost::Message;

use super::codec::{DecodeError, EncodeError};
use super::proto::{EntryAdapter, PushRequest, StreamAdapter};

/// The buffers [`EncodedEntries::snappy_push`] reuses from one push to the next: the
/// uncompressed protobuf, the compressed block and snappy's hash table. Keep one per thread.
pub struct SnappyScratch {
    raw: Vec<u8>,
    compressed: Vec<u8>,
    encoder: snap::raw::Encoder,
}

impl Default for SnappyScratch {
    fn default() -> Self {
        Self {
            raw: Vec::new(),
            compressed: Vec::new(),
            encoder: snap::raw::Encoder::new(),
        }
    }
}

impl std::fmt::Debug for SnappyScratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnappyScratch")
            .field("raw_capacity", &self.raw.capacity())
            .field("compressed_capacity", &self.compressed.capacity())
            .finish_non_exhaustive()
    }
}

/// Field 1, length-delimited (`PushRequest.streams`, `StreamAdapter.labels`,
/// `EntryAdapter.timestamp`, `LabelPairAdapter.name`).
const TAG_1_LEN: u8 = 0x0a;
/// Field 2, length-delimited (`StreamAdapter.entries`, `EntryAdapter.line`,
/// `LabelPairAdapter.value`).
const TAG_2_LEN: u8 = 0x12;
/// Field 3, length-delimited (`EntryAdapter.structuredMetadata`).
const TAG_3_LEN: u8 = 0x1a;
/// `Timestamp.seconds`: field 1, varint.
const TAG_1_VARINT: u8 = 0x08;
/// `Timestamp.nanos`: field 2, varint.
const TAG_2_VARINT: u8 = 0x10;

/// Where one encoded entry lies, and what it weighs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    nanos: i64,
    start: u32,
    len: u32,
    size: u32,
}

/// Entries of one stream, encoded as they were added, each with a tag of the caller's (for the
/// consumer: the Kafka position the entry came from).
#[derive(Debug, Clone)]
pub struct EncodedEntries<T> {
    buf: Vec<u8>,
    slots: Vec<Slot>,
    tags: Vec<T>,
    bytes: usize,
}

impl<T> Default for EncodedEntries<T> {
    fn default() -> Self {
        Self {
            buf: Vec::new(),
            slots: Vec::new(),
            tags: Vec::new(),
            bytes: 0,
        }
    }
}

/// The size an entry counts for against batch and buffer limits, in bytes: its line, its
/// metadata names and values, and a fixed overhead (about its size on the wire before
/// compression).
pub fn entry_weight<'m>(
    line: &str,
    metadata: impl IntoIterator<Item = (&'m str, &'m str)>,
) -> usize {
    16 + line.len()
        + metadata
            .into_iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum::<usize>()
}

impl<T> EncodedEntries<T> {
    /// No entries.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an entry (timestamp in ns since the epoch, the line, structured metadata pairs)
    /// with its tag; returns the size it counts for ([`entry_weight`]).
    pub fn push<'m, M>(&mut self, nanos: i64, line: &str, metadata: M, tag: T) -> usize
    where
        M: IntoIterator<Item = (&'m str, &'m str)> + Clone,
    {
        let start = self.buf.len();
        write_entry(&mut self.buf, nanos, line, metadata.clone());
        let size = entry_weight(line, metadata);
        self.slots.push(Slot {
            nanos,
            start: offset(start),
            len: offset(self.buf.len() - start),
            size: offset(size),
        });
        self.tags.push(tag);
        self.bytes += size;
        size
    }

    /// No entries, with room for `entries` entries of `bytes` encoded bytes in all (a stream's
    /// previous batch is a good guess: growing a buffer by doubling copies it each time).
    pub fn with_capacity(bytes: usize, entries: usize) -> Self {
        Self {
            buf: Vec::with_capacity(bytes),
            slots: Vec::with_capacity(entries),
            tags: Vec::with_capacity(entries),
            bytes: 0,
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Encoded bytes held (what [`with_capacity`](Self::with_capacity) takes).
    pub fn encoded_len(&self) -> usize {
        self.buf.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Sum of the entries' sizes ([`entry_weight`]).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The sizes of the entries in `range`, summed.
    pub fn bytes_of(&self, range: Range<usize>) -> usize {
        self.slots[range].iter().map(|s| s.size as usize).sum()
    }

    /// Timestamp of entry `i`, in ns since the epoch.
    pub fn nanos(&self, i: usize) -> i64 {
        self.slots[i].nanos
    }

    /// The tags, in entry order.
    pub fn tags(&self) -> &[T] {
        &self.tags
    }

    /// Orders the entries by timestamp, keeping the order of equal ones (Loki rejects an entry
    /// that comes after a much newer one of its stream in the same push).
    pub fn sort_by_time(&mut self)
    where
        T: Clone,
    {
        if self.slots.windows(2).all(|w| w[0].nanos <= w[1].nanos) {
            return;
        }
        let mut order: Vec<usize> = (0..self.slots.len()).collect();
        order.sort_by_key(|&i| self.slots[i].nanos);
        self.slots = order.iter().map(|&i| self.slots[i]).collect();
        self.tags = order.iter().map(|&i| self.tags[i].clone()).collect();
    }

    /// Appends to `out` the protobuf of a [`PushRequest`] holding one stream, `labels`, with the
    /// entries in `range` in their current order.
    pub fn write_push(&self, labels: &str, range: Range<usize>, out: &mut Vec<u8>) {
        let slots = &self.slots[range];
        let entries_len: usize = slots
            .iter()
            .map(|s| 1 + encoded_len_varint(u64::from(s.len)) + s.len as usize)
            .sum();
        let labels_len = if labels.is_empty() {
            0
        } else {
            1 + encoded_len_varint(labels.len() as u64) + labels.len()
        };
        let stream_len = labels_len + entries_len;
        out.reserve(1 + encoded_len_varint(stream_len as u64) + stream_len);
        out.push(TAG_1_LEN);
        encode_varint(stream_len as u64, out);
        if !labels.is_empty() {
            out.push(TAG_1_LEN);
            encode_varint(labels.len() as u64, out);
            out.extend_from_slice(labels.as_bytes());
        }
        for s in slots {
            out.push(TAG_2_LEN);
            encode_varint(u64::from(s.len), out);
            let start = s.start as usize;
            out.extend_from_slice(&self.buf[start..start + s.len as usize]);
        }
    }

    /// The push body Loki takes as `application/x-protobuf`: [`write_push`](Self::write_push)
    /// in a raw snappy block. `scratch` (the uncompressed protobuf, the compressed block and
    /// snappy's hash table) is reused between calls, so no call zeroes or faults in a fresh
    /// buffer; the body is a copy of the compressed bytes, to be handed away.
    pub fn snappy_push(
        &self,
        labels: &str,
        range: Range<usize>,
        scratch: &mut SnappyScratch,
    ) -> Result<Vec<u8>, EncodeError> {
        scratch.raw.clear();
        self.write_push(labels, range, &mut scratch.raw);
        let need = snap::raw::max_compress_len(scratch.raw.len());
        if scratch.compressed.len() < need {
            scratch.compressed.resize(need, 0);
        }
        let n = scratch
            .encoder
            .compress(&scratch.raw, &mut scratch.compressed)?;
        Ok(scratch.compressed[..n].to_vec())
    }

    /// Entry `i` decoded (for the paths that need it as a value: JSON pushes, dead letters).
    pub fn entry(&self, i: usize) -> Result<EntryAdapter, DecodeError> {
        let s = self.slots[i];
        let start = s.start as usize;
        Ok(EntryAdapter::decode(
            &self.buf[start..start + s.len as usize],
        )?)
    }

    /// The push of [`write_push`](Self::write_push) as a value (for the JSON encoding).
    pub fn push_request(
        &self,
        labels: &str,
        range: Range<usize>,
    ) -> Result<PushRequest, DecodeError> {
        let entries = range
            .map(|i| self.entry(i))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PushRequest {
            streams: vec![StreamAdapter {
                labels: labels.to_owned(),
                entries,
                hash: 0,
            }],
        })
    }
}

/// Positions inside one stream's buffer fit in 32 bits: a batch is bounded far below 4 GiB
/// (`BATCH_MAX_BYTES`), and a single entry by `max_line_size`.
fn offset(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn len_delimited_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// Writes an `EntryAdapter` message body (without its own tag and length).
fn write_entry<'m>(
    out: &mut Vec<u8>,
    nanos: i64,
    line: &str,
    metadata: impl IntoIterator<Item = (&'m str, &'m str)>,
) {
    let seconds = nanos.div_euclid(1_000_000_000);
    let subsec = nanos.rem_euclid(1_000_000_000) as u64;
    let mut ts_len = 0;
    if seconds != 0 {
        ts_len += 1 + encoded_len_varint(seconds as u64);
    }
    if subsec != 0 {
        ts_len += 1 + encoded_len_varint(subsec);
    }
    out.push(TAG_1_LEN);
    encode_varint(ts_len as u64, out);
    if seconds != 0 {
        out.push(TAG_1_VARINT);
        // int64 is encoded as its two's complement bits, as prost does.
        encode_varint(seconds as u64, out);
    }
    if subsec != 0 {
        out.push(TAG_2_VARINT);
        encode_varint(subsec, out);
    }
    if !line.is_empty() {
        out.push(TAG_2_LEN);
        encode_varint(line.len() as u64, out);
        out.extend_from_slice(line.as_bytes());
    }
    for (name, value) in metadata {
        let mut pair_len = 0;
        if !name.is_empty() {
            pair_len += len_delimited_len(name.len());
        }
        if !value.is_empty() {
            pair_len += len_delimited_len(value.len());
        }
        out.push(TAG_3_LEN);
        encode_varint(pair_len as u64, out);
        if !name.is_empty() {
            out.push(TAG_1_LEN);
            encode_varint(name.len() as u64, out);
            out.extend_from_slice(name.as_bytes());
        }
        if !value.is_empty() {
            out.push(TAG_2_LEN);
            encode_varint(value.len() as u64, out);
            out.extend_from_slice(value.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loki::proto::{LabelPairAdapter, Timestamp};
    use proptest::prelude::*;

    /// An entry as a test writes it: timestamp, line, metadata pairs.
    type TestEntry = (i64, String, Vec<(String, String)>);

    fn prost_push(labels: &str, entries: &[TestEntry]) -> Vec<u8> {
        PushRequest {
            streams: vec![StreamAdapter {
                labels: labels.to_owned(),
                entries: entries
                    .iter()
                    .map(|(ts, line, md)| EntryAdapter {
                        timestamp: Some(Timestamp::from_nanos(*ts)),
                        line: line.clone(),
                        structured_metadata: md
                            .iter()
                            .map(|(name, value)| LabelPairAdapter {
                                name: name.clone(),
                                value: value.clone(),
                            })
                            .collect(),
                    })
                    .collect(),
                hash: 0,
            }],
        }
        .encode_to_vec()
    }

    fn ours(labels: &str, entries: &[TestEntry]) -> Vec<u8> {
        let mut e = EncodedEntries::new();
        for (i, (ts, line, md)) in entries.iter().enumerate() {
            e.push(
                *ts,
                line,
                md.iter().map(|(n, v)| (n.as_str(), v.as_str())),
                i,
            );
        }
        let mut out = Vec::new();
        e.write_push(labels, 0..e.len(), &mut out);
        out
    }

    #[test]
    fn writes_the_bytes_prost_writes_for_the_same_push() {
        let entries = vec![
            (
                1_764_000_000_123_456_789,
                r#"{"level":"info"}"#.to_owned(),
                vec![("trace_id".to_owned(), "abc".to_owned())],
            ),
            (0, String::new(), vec![(String::new(), String::new())]),
            (-1, "é".to_owned(), vec![("a".to_owned(), String::new())]),
            (1_000_000_000, "x".repeat(300), vec![]),
        ];
        let labels = r#"{level="info", service="api"}"#;
        assert_eq!(ours(labels, &entries), prost_push(labels, &entries));
        assert_eq!(ours("", &entries), prost_push("", &entries));
        assert_eq!(ours(labels, &[]), prost_push(labels, &[]));
    }

    #[test]
    fn a_range_pushes_only_those_entries_and_decodes_back() {
        let mut e = EncodedEntries::new();
        for i in 0..5 {
            e.push(i, &format!("line {i}"), [("n", "v")], i * 10);
        }
        let mut out = Vec::new();
        e.write_push("{a=\"1\"}", 1..3, &mut out);
        let push = PushRequest::decode(out.as_slice()).unwrap();
        let lines: Vec<_> = push.streams[0]
            .entries
            .iter()
            .map(|x| x.line.as_str())
            .collect();
        assert_eq!(lines, ["line 1", "line 2"]);
        assert_eq!(e.entry(4).unwrap().line, "line 4");
        assert_eq!(e.push_request("{a=\"1\"}", 1..3).unwrap(), push);
    }

    #[test]
    fn the_snappy_body_decodes_to_the_same_push() {
        let mut e = EncodedEntries::new();
        for i in 0..50 {
            e.push(
                i,
                &format!("line {i} {}", "x".repeat(i as usize)),
                [("k", "v")],
                (),
            );
        }
        let mut scratch = SnappyScratch::default();
        let body = e.snappy_push("{a=\"1\"}", 0..50, &mut scratch).unwrap();
        let decoded = crate::loki::codec::decode_protobuf(&body, usize::MAX).unwrap();
        assert_eq!(decoded, e.push_request("{a=\"1\"}", 0..50).unwrap());
        // A smaller push after a larger one: the reused buffers hold no bytes of the first.
        let body = e.snappy_push("{a=\"1\"}", 0..3, &mut scratch).unwrap();
        let decoded = crate::loki::codec::decode_protobuf(&body, usize::MAX).unwrap();
        assert_eq!(decoded, e.push_request("{a=\"1\"}", 0..3).unwrap());
    }

    #[test]
    fn sorting_by_time_is_stable_and_carries_the_tags() {
        let mut e = EncodedEntries::new();
        for (ts, tag) in [(3, 'a'), (1, 'b'), (3, 'c'), (2, 'd')] {
            e.push(ts, "l", [], tag);
        }
        e.sort_by_time();
        assert_eq!(e.tags(), ['b', 'd', 'a', 'c']);
        assert_eq!((0..4).map(|i| e.nanos(i)).collect::<Vec<_>>(), [1, 2, 3, 3]);
    }

    /// The weight of a decoded entry, from its parts.
    fn entry_size(entry: &EntryAdapter) -> usize {
        entry_weight(
            &entry.line,
            entry
                .structured_metadata
                .iter()
                .map(|p| (p.name.as_str(), p.value.as_str())),
        )
    }

    #[test]
    fn weight_is_the_entry_size_of_the_same_entry() {
        let entry = EntryAdapter {
            timestamp: Some(Timestamp::from_nanos(5)),
            line: "hello".into(),
            structured_metadata: vec![LabelPairAdapter {
                name: "trace_id".into(),
                value: "t".into(),
            }],
        };
        let mut e = EncodedEntries::new();
        let w = e.push(5, "hello", [("trace_id", "t")], ());
        assert_eq!(w, entry_size(&entry));
        // The fixed 16, the line, and name, value and 4 per metadata pair.
        assert_eq!(w, 16 + 5 + (8 + 1 + 4));
        assert_eq!(e.bytes(), w);
        assert_eq!(e.bytes_of(0..1), w);
    }

    proptest! {
        #[test]
        fn any_entries_encode_as_prost_does(
            labels in ".{0,40}",
            entries in proptest::collection::vec(
                (any::<i64>(), ".{0,50}", proptest::collection::vec((".{0,8}", ".{0,8}"), 0..4)),
                0..8,
            ),
        ) {
            prop_assert_eq!(ours(&labels, &entries), prost_push(&labels, &entries));
        }
    }
}
