//! The Kafka side of an audit: every audited message of the main topic under the identity Loki
//! gives its entry — its tenant, the line the consumer pushes and the record's timestamp (the
//! line holds the fields the stream labels come from, so it fixes the stream too) — plus the
//! dead letters that name them, and at the end the classification of each message. Tenants and
//! stream labels come from the consumer's own rules (`crate::tenants`, the label policy).
//!
//! Two messages with the same line and timestamp are one entry in Loki (it drops exact
//! duplicates): the first is counted where the entry is, the others as duplicates. Memory is
//! about 100 bytes per audited message (a 128-bit hash of the identity in a list and a map; no
//! line is kept).

use std::borrow::Cow;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};

use rdkafka::message::{Headers, Message};
use schema::kafka::{HEADER_CONTENT_TYPE, HEADER_SCHEMA_VERSION, SCHEMA_VERSION};
use schema::{LabelPolicy, LabelSet};
use serde::Serialize;

use crate::config::{ConsumerConfig, OversizeLines};
use crate::intake::truncate_line;
use crate::metrics::Metrics;
use crate::tenants::Tenants;

/// The stream shown for messages that are not records (they can only be in the DLQ).
pub(crate) const NOT_A_RECORD: &str = "(not a record)";

/// The stream shown for records whose tenant Loki would refuse (they can only be in the DLQ).
pub(crate) const NO_VALID_TENANT: &str = "(tenant refused)";

/// The identity of a Loki entry: its tenant, timestamp and line, hashed to 128 bits.
pub(crate) fn identity(tenant: &str, ts: i64, line: &str) -> u128 {
    let half = |salt: u8| {
        let mut h = DefaultHasher::new();
        (salt, tenant, ts, line).hash(&mut h);
        h.finish()
    };
    (u128::from(half(1)) << 64) | u128::from(half(2))
}

/// One audited message.
#[derive(Debug, Clone, Copy)]
struct Audited {
    partition: i32,
    offset: i64,
    /// The record's timestamp (for a message that is not a record, its Kafka timestamp).
    ts: i64,
    /// Its identity (0 for a message that is not a record).
    key: u128,
    /// Index into the streams (which carry the tenant).
    stream: u32,
}

/// What the audit knows of one identity.
#[derive(Debug, Clone, Copy, Default)]
struct KeyState {
    /// Loki holds it.
    found: bool,
}

/// Per partition or stream: where the audited messages are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Counts {
    /// Audited messages.
    pub(crate) in_kafka: u64,
    /// Their entry is in Loki.
    pub(crate) in_loki: u64,
    /// In the dead-letter topic (and not in Loki).
    pub(crate) in_dlq: u64,
    /// Same line and timestamp as another message: one entry in Loki for them all.
    pub(crate) duplicates: u64,
    /// At or past the consumer group's committed offset, not in Loki yet: not consumed yet.
    pub(crate) pending: u64,
    /// Older than what Loki can answer (`--loki-horizon`): not checked.
    pub(crate) beyond_horizon: u64,
    /// More entries share their timestamp than one query returns: could not be read.
    pub(crate) unverified: u64,
    /// Consumed (committed), in neither Loki nor the dead-letter topic.
    pub(crate) missing: u64,
    /// In Loki, in the audited window, but not among the audited messages (streams only).
    pub(crate) extra: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.in_kafka += o.in_kafka;
        self.in_loki += o.in_loki;
        self.in_dlq += o.in_dlq;
        self.duplicates += o.duplicates;
        self.pending += o.pending;
        self.beyond_horizon += o.beyond_horizon;
        self.unverified += o.unverified;
        self.missing += o.missing;
        self.extra += o.extra;
    }
}

/// A missing message, for the sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MissingAt {
    /// Its partition.
    pub(crate) partition: i32,
    /// Its offset.
    pub(crate) offset: i64,
    /// The record's timestamp (ns).
    pub(crate) ts: i64,
    /// Its stream.
    pub(crate) stream: String,
}

/// The classification of every audited message.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Per partition.
    pub(crate) partitions: BTreeMap<i32, Counts>,
    /// Per stream (label selector text).
    pub(crate) streams: BTreeMap<String, Counts>,
    /// All.
    pub(crate) total: Counts,
    /// The first missing messages, by partition and offset.
    pub(crate) missing: Vec<MissingAt>,
}

/// What decides what the audit can see, for the classification.
#[derive(Debug, Clone)]
pub(crate) struct Visibility {
    /// The consumer group's committed offsets (`None`: nothing committed).
    pub(crate) committed: BTreeMap<i32, Option<i64>>,
    /// Entries older than this (ns) are beyond what Loki can answer.
    pub(crate) horizon: Option<i64>,
    /// (stream, timestamp) pairs that could not be read in full.
    pub(crate) crowded: HashSet<(u32, i64)>,
}

/// A stream of one tenant.
#[derive(Debug, Clone)]
pub(crate) struct StreamKey {
    /// The tenant (`X-Scope-OrgID`; empty: none).
    pub(crate) tenant: String,
    /// The stream's labels (empty for the pseudo-streams of messages that cannot be in Loki).
    pub(crate) labels: LabelSet,
}

/// The audited messages.
#[derive(Debug)]
pub(crate) struct Ledger {
    policy: LabelPolicy,
    tenants: Tenants,
    /// The fixed tenant (`loki_tenant_id`), where records without a tenant field value go.
    default_tenant: String,
    /// Whether tenants are named in reports (a tenant field, or a fixed tenant, is set).
    show_tenants: bool,
    max_line_size: usize,
    oversize: OversizeLines,
    audited: Vec<Audited>,
    keys: HashMap<u128, KeyState>,
    streams: Vec<StreamKey>,
    stream_text: Vec<String>,
    stream_ids: HashMap<String, u32>,
    /// (partition, offset) of audited messages some dead letter names.
    dead: HashSet<(i32, i64)>,
    /// Extra entries per stream.
    extra: BTreeMap<u32, u64>,
}

/// What [`Ledger::read`] made of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    /// A record: its timestamp (ns).
    Record(i64),
    /// Not a record.
    NotARecord,
}

impl Ledger {
    /// An empty ledger for the consumer's label policy, tenant and line rules.
    pub(crate) fn new(config: &ConsumerConfig) -> Result<Self, prometheus::Error> {
        // The tenant rules count what they see; the audit's counts go nowhere.
        let metrics = Metrics::new(
            &prometheus::Registry::new(),
            &config.kafka_group_id,
            &config.kafka.topic,
            false,
        )?;
        Ok(Self {
            policy: config.label_policy(),
            tenants: Tenants::new(config, metrics),
            default_tenant: config.loki_tenant_id.trim().to_owned(),
            show_tenants: !config.loki_tenant_field.trim().is_empty()
                || !config.loki_tenant_id.trim().is_empty(),
            max_line_size: config.loki_max_line_size,
            oversize: config.oversize_lines,
            audited: Vec::new(),
            keys: HashMap::new(),
            streams: Vec::new(),
            stream_text: Vec::new(),
            stream_ids: HashMap::new(),
            dead: HashSet::new(),
            extra: BTreeMap::new(),
        })
    }

    /// The label names the policy makes (record labels as Loki names them, and the static
    /// ones).
    pub(crate) fn label_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .policy
            .record_labels
            .iter()
            .map(|f| schema::labels::sanitize_label_name(f))
            .chain(self.policy.static_labels.iter().map(|(k, _)| k.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The selector of every stream the consumer writes: its static labels.
    pub(crate) fn static_selector(&self) -> String {
        LabelSet::from_pairs(self.policy.static_labels.iter().cloned()).to_string()
    }

    /// Audited messages.
    pub(crate) fn len(&self) -> usize {
        self.audited.len()
    }

    /// The record a message holds and its Loki line, as the consumer makes them
    /// (`crate::intake`): our producer's canonical bytes as they are, anything else
    /// re-serialised; a line over the limit truncated when the consumer truncates.
    pub(crate) fn read<M: Message>(m: &M) -> Option<(schema::LogRecord<'_>, Cow<'_, str>)> {
        let mut ours = false;
        let mut headers: Vec<(&str, Option<&[u8]>)> = Vec::new();
        if let Some(h) = m.headers() {
            for x in h.iter() {
                if x.key.eq_ignore_ascii_case(HEADER_SCHEMA_VERSION) {
                    ours = x.value == Some(SCHEMA_VERSION.as_bytes());
                    headers.push((HEADER_SCHEMA_VERSION, x.value));
                } else if x.key.eq_ignore_ascii_case(HEADER_CONTENT_TYPE) {
                    headers.push((HEADER_CONTENT_TYPE, x.value));
                }
            }
        }
        let (record, text) = schema::kafka::decode_with_text(m.payload(), headers).ok()?;
        let line = if ours {
            Cow::Borrowed(text)
        } else {
            Cow::Owned(record.to_json())
        };
        Some((record, line))
    }

    /// The line as Loki holds it (after the consumer's truncation, if it truncates).
    fn loki_line<'a>(&self, line: Cow<'a, str>) -> Cow<'a, str> {
        if line.len() > self.max_line_size && self.oversize == OversizeLines::Truncate {
            Cow::Owned(truncate_line(&line, self.max_line_size))
        } else {
            line
        }
    }

    /// Adds a message; `keep` decides, from the record's timestamp (or `None` for a message
    /// that is not a record), whether it is audited. Returns what it was.
    pub(crate) fn add<M: Message>(&mut self, m: &M, keep: impl Fn(Option<i64>) -> bool) -> Read {
        let kafka_ns = m
            .timestamp()
            .to_millis()
            .map_or(0, |ms| ms.saturating_mul(1_000_000));
        match Self::read(m) {
            Some((record, line)) => {
                let ts = record.timestamp.as_nanos();
                if keep(Some(ts)) {
                    let tenant = self.tenants.of(&record).map(|t| t.name.to_string()).ok();
                    let (key, stream) = match tenant {
                        Some(tenant) => {
                            let line = self.loki_line(line);
                            let key = identity(&tenant, ts, &line);
                            let labels = self.policy.labels_for(&record);
                            self.keys.entry(key).or_default();
                            (key, self.intern(StreamKey { tenant, labels }))
                        }
                        // The consumer dead-letters it (`invalid_tenant`).
                        None => (0, self.intern_text(NO_VALID_TENANT)),
                    };
                    self.audited.push(Audited {
                        partition: m.partition(),
                        offset: m.offset(),
                        ts,
                        key,
                        stream,
                    });
                }
                Read::Record(ts)
            }
            None => {
                if keep(None) {
                    let stream = self.intern_text(NOT_A_RECORD);
                    self.audited.push(Audited {
                        partition: m.partition(),
                        offset: m.offset(),
                        ts: kafka_ns,
                        key: 0,
                        stream,
                    });
                }
                Read::NotARecord
            }
        }
    }

    fn intern(&mut self, key: StreamKey) -> u32 {
        let text = if self.show_tenants {
            format!("[{}] {}", key.tenant, key.labels)
        } else {
            key.labels.to_string()
        };
        self.intern_as(text, key)
    }

    fn intern_text(&mut self, text: &str) -> u32 {
        self.intern_as(
            text.to_owned(),
            StreamKey {
                tenant: String::new(),
                labels: LabelSet::default(),
            },
        )
    }

    fn intern_as(&mut self, text: String, key: StreamKey) -> u32 {
        if let Some(&id) = self.stream_ids.get(&text) {
            return id;
        }
        let id = u32::try_from(self.streams.len()).unwrap_or(u32::MAX);
        self.stream_ids.insert(text.clone(), id);
        self.stream_text.push(text);
        self.streams.push(key);
        id
    }

    /// The stream id of a label set read from `tenant`'s Loki (new ones are added).
    pub(crate) fn stream_of(&mut self, tenant: &str, labels: LabelSet) -> u32 {
        self.intern(StreamKey {
            tenant: tenant.to_owned(),
            labels,
        })
    }

    /// A stream's tenant and labels.
    pub(crate) fn stream(&self, stream: u32) -> &StreamKey {
        &self.streams[stream as usize]
    }

    /// The tenants of the audited records, and the fixed tenant (where records without a
    /// tenant field go), each once.
    pub(crate) fn tenants(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .streams
            .iter()
            .filter(|s| !s.labels.is_empty())
            .map(|s| s.tenant.clone())
            .chain(std::iter::once(self.default_tenant.clone()))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The selector text of a stream.
    pub(crate) fn stream_text(&self, stream: u32) -> &str {
        &self.stream_text[stream as usize]
    }

    /// Notes a dead letter naming `partition`/`offset` of the audited topic.
    pub(crate) fn dead_letter(&mut self, partition: i32, offset: i64) {
        self.dead.insert((partition, offset));
    }

    /// Where the audited messages are: partition → offsets `first..=last`, for the dead
    /// letters worth keeping.
    pub(crate) fn offset_spans(&self) -> BTreeMap<i32, (i64, i64)> {
        let mut spans: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
        for a in &self.audited {
            let s = spans.entry(a.partition).or_insert((a.offset, a.offset));
            s.0 = s.0.min(a.offset);
            s.1 = s.1.max(a.offset);
        }
        spans
    }

    /// The streams with audited records in each window of `len` ns (window start → streams),
    /// with timestamps at or after `from`.
    pub(crate) fn windows(&self, len: i64, from: Option<i64>) -> BTreeMap<i64, BTreeSet<u32>> {
        let mut out: BTreeMap<i64, BTreeSet<u32>> = BTreeMap::new();
        for a in self.audited.iter().filter(|a| a.key != 0) {
            if from.is_some_and(|f| a.ts < f) {
                continue;
            }
            out.entry(a.ts.div_euclid(len) * len)
                .or_default()
                .insert(a.stream);
        }
        out
    }

    /// Notes an entry `tenant`'s Loki holds; false when no audited message has it.
    pub(crate) fn found(&mut self, tenant: &str, ts: i64, line: &str) -> bool {
        match self.keys.get_mut(&identity(tenant, ts, line)) {
            Some(k) => {
                k.found = true;
                true
            }
            None => false,
        }
    }

    /// Counts an entry of `stream` in Loki that no audited message has.
    pub(crate) fn extra(&mut self, stream: u32) {
        *self.extra.entry(stream).or_default() += 1;
    }

    /// Classifies every audited message; keeps up to `samples` missing ones.
    pub(crate) fn classify(&self, v: &Visibility, samples: usize) -> Tally {
        let mut tally = Tally::default();
        let mut order: Vec<usize> = (0..self.audited.len()).collect();
        order.sort_by_key(|&i| (self.audited[i].partition, self.audited[i].offset));
        // An identity's first message (in partition and offset order) stands for the entry.
        let mut counted: HashSet<u128> = HashSet::new();
        for i in order {
            let a = self.audited[i];
            let mut c = Counts {
                in_kafka: 1,
                ..Counts::default()
            };
            let found = a.key != 0 && self.keys.get(&a.key).is_some_and(|k| k.found);
            if found {
                if counted.insert(a.key) {
                    c.in_loki = 1;
                } else {
                    c.duplicates = 1;
                }
            } else if self.dead.contains(&(a.partition, a.offset)) {
                c.in_dlq = 1;
            } else if v
                .committed
                .get(&a.partition)
                .is_none_or(|committed| committed.is_none_or(|o| a.offset >= o))
            {
                c.pending = 1;
            } else if a.key != 0 && v.horizon.is_some_and(|h| a.ts < h) {
                c.beyond_horizon = 1;
            } else if a.key != 0 && v.crowded.contains(&(a.stream, a.ts)) {
                c.unverified = 1;
            } else {
                c.missing = 1;
                if tally.missing.len() < samples {
                    tally.missing.push(MissingAt {
                        partition: a.partition,
                        offset: a.offset,
                        ts: a.ts,
                        stream: self.stream_text[a.stream as usize].clone(),
                    });
                }
            }
            tally.partitions.entry(a.partition).or_default().add(&c);
            tally
                .streams
                .entry(self.stream_text[a.stream as usize].clone())
                .or_default()
                .add(&c);
            tally.total.add(&c);
        }
        for (&stream, &n) in &self.extra {
            let c = Counts {
                extra: n,
                ..Counts::default()
            };
            tally
                .streams
                .entry(self.stream_text[stream as usize].clone())
                .or_default()
                .add(&c);
            tally.total.add(&c);
        }
        tally
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};

    const TS: i64 = 1_764_000_000_000_000_000;

    fn line(i: u32) -> String {
        let ts = schema::Timestamp::from_nanos(TS + i64::from(i))
            .unwrap()
            .to_rfc3339();
        format!(r#"{{"timestamp":"{ts}","level":"info","service":"api","message":"m{i}"}}"#)
    }

    fn message(partition: i32, offset: i64, value: &str, ours: bool) -> OwnedMessage {
        let headers = ours.then(|| {
            OwnedHeaders::new().insert(Header {
                key: "schema-version",
                value: Some("1"),
            })
        });
        OwnedMessage::new(
            Some(value.as_bytes().to_vec()),
            Some(b"api".to_vec()),
            "logs".into(),
            Timestamp::CreateTime(TS / 1_000_000),
            partition,
            offset,
            headers,
        )
    }

    fn ledger() -> Ledger {
        Ledger::new(&ConsumerConfig::default()).unwrap()
    }

    fn visibility(committed: &[(i32, i64)]) -> Visibility {
        Visibility {
            committed: committed.iter().map(|(p, o)| (*p, Some(*o))).collect(),
            horizon: None,
            crowded: HashSet::new(),
        }
    }

    #[test]
    fn every_message_lands_in_exactly_one_column() {
        let mut l = ledger();
        for i in 0..6 {
            l.add(&message(0, i64::from(i), &line(i), true), |_| true);
        }
        l.add(&message(0, 6, "not json", true), |_| true);
        // 0, 1 in Loki; 2 in the DLQ; 3 missing; 4 missing too but 5 and 6 are pending.
        for i in 0..2 {
            assert!(l.found("", TS + i64::from(i), &line(i)));
        }
        assert!(!l.found("", TS, "something else"));
        l.dead_letter(0, 2);
        let t = l.classify(&visibility(&[(0, 5)]), 10);
        let total = t.total;
        assert_eq!(
            (
                total.in_kafka,
                total.in_loki,
                total.in_dlq,
                total.missing,
                total.pending
            ),
            (7, 2, 1, 2, 2)
        );
        assert_eq!(
            t.missing.iter().map(|m| m.offset).collect::<Vec<_>>(),
            [3, 4]
        );
        assert_eq!(t.streams[NOT_A_RECORD].pending, 1);
        assert_eq!(t.partitions[&0], total);
    }

    #[test]
    fn two_messages_with_the_same_line_and_timestamp_are_one_entry_and_not_missing() {
        let mut l = ledger();
        l.add(&message(1, 10, &line(1), true), |_| true);
        l.add(&message(2, 3, &line(1), true), |_| true);
        assert!(l.found("", TS + 1, &line(1)));
        let t = l.classify(&visibility(&[(1, 11), (2, 4)]), 10);
        assert_eq!(
            (t.total.in_loki, t.total.duplicates, t.total.missing),
            (1, 1, 0)
        );
        assert_eq!(t.partitions[&1].in_loki, 1);
        assert_eq!(t.partitions[&2].duplicates, 1);
    }

    #[test]
    fn a_line_from_another_producer_is_compared_in_its_canonical_form() {
        let mut l = ledger();
        let raw = r#"{"message":"m","service":"api","level":"INFO","timestamp":1764000000}"#;
        l.add(&message(0, 0, raw, false), |_| true);
        let canonical = schema::parse_record(raw).unwrap().to_json();
        assert!(l.found("", 1_764_000_000_000_000_000, &canonical));
    }

    #[test]
    fn a_truncating_consumer_s_lines_are_compared_truncated() {
        let config = ConsumerConfig {
            loki_max_line_size: 120,
            oversize_lines: OversizeLines::Truncate,
            ..ConsumerConfig::default()
        };
        let mut l = Ledger::new(&config).unwrap();
        let long = format!(
            r#"{{"timestamp":"2025-11-24T16:00:00.000000000Z","level":"info","service":"api","message":"{}"}}"#,
            "x".repeat(300)
        );
        l.add(&message(0, 0, &long, true), |_| true);
        let ts = schema::parse_record(&long).unwrap().timestamp.as_nanos();
        assert!(!l.found("", ts, &long));
        assert!(l.found("", ts, &truncate_line(&long, 120)));
    }

    #[test]
    fn each_record_is_looked_for_in_its_tenant_and_a_refused_tenant_is_not_looked_for() {
        let config = ConsumerConfig {
            loki_tenant_field: "team".into(),
            loki_tenant_id: "shared".into(),
            ..ConsumerConfig::default()
        };
        let mut l = Ledger::new(&config).unwrap();
        let with = |team: &str| {
            format!(
                r#"{{"timestamp":"2025-11-24T16:00:00Z","level":"info","service":"api","message":"m","team":"{team}"}}"#
            )
        };
        let a = with("team-a");
        l.add(&message(0, 0, &a, true), |_| true);
        l.add(&message(0, 1, LINE_WITHOUT_TEAM, true), |_| true);
        l.add(&message(0, 2, &with("bad/tenant"), true), |_| true);
        let ts = schema::parse_record(&a).unwrap().timestamp.as_nanos();
        assert!(!l.found("shared", ts, &a), "not in another tenant");
        assert!(l.found("team-a", ts, &a));
        assert_eq!(l.tenants(), ["shared", "team-a"]);
        let t = l.classify(&visibility(&[(0, 3)]), 10);
        assert_eq!((t.total.in_loki, t.total.missing), (1, 2));
        assert_eq!(t.streams[NO_VALID_TENANT].missing, 1);
        assert!(
            t.streams.keys().any(|s| s.starts_with("[team-a] {")),
            "{:?}",
            t.streams.keys()
        );
        assert!(t.streams.keys().any(|s| s.starts_with("[shared] {")));
    }

    const LINE_WITHOUT_TEAM: &str =
        r#"{"timestamp":"2025-11-24T16:00:01Z","level":"info","service":"api","message":"m"}"#;

    #[test]
    fn horizon_and_crowded_timestamps_are_not_called_missing() {
        let mut l = ledger();
        l.add(&message(0, 0, &line(0), true), |_| true);
        l.add(&message(0, 1, &line(1), true), |_| true);
        let mut v = visibility(&[(0, 2)]);
        v.horizon = Some(TS + 1);
        v.crowded.insert((0, TS + 1));
        let t = l.classify(&v, 10);
        assert_eq!(
            (t.total.beyond_horizon, t.total.unverified, t.total.missing),
            (1, 1, 0)
        );
    }

    #[test]
    fn only_kept_messages_are_audited_and_windows_group_their_streams() {
        let mut l = ledger();
        assert_eq!(
            l.add(&message(0, 0, &line(0), true), |_| false),
            Read::Record(TS)
        );
        assert_eq!(l.len(), 0);
        l.add(&message(0, 1, &line(1), true), |_| true);
        let w = l.windows(1_000, None);
        assert_eq!(w.len(), 1);
        let (&start, streams) = w.iter().next().unwrap();
        assert!(start <= TS + 1 && TS + 1 < start + 1_000);
        let s = *streams.iter().next().unwrap();
        assert_eq!(
            l.stream_text(s),
            r#"{environment="development", level="info", service="api", source="kafka"}"#
        );
        assert_eq!(
            l.static_selector(),
            r#"{environment="development", source="kafka"}"#
        );
        assert_eq!(
            l.label_names(),
            ["environment", "level", "service", "source"]
        );
    }
}
