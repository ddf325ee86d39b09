//! From a Kafka message to a Loki entry in its stream's batch, or to a dead letter: the headers
//! are read once, the value is decoded and validated (a consumer never trusts its input), the
//! stream is resolved, structured metadata is taken from the record, and the entry is checked
//! against Loki's limits before it is encoded into its batch (DESIGN.md, "Loki entry").
//!
//! Nothing here allocates per record on the common path: the line is the producer's canonical
//! bytes, copied once into the batch; metadata values are borrowed from the record.

use std::borrow::Cow;

use rdkafka::message::{BorrowedMessage, Headers, Message};
use schema::kafka::{HEADER_CONTENT_TYPE, HEADER_SCHEMA_VERSION, SCHEMA_VERSION};
use schema::labels::LabelPolicy;
use schema::loki::limits::{check_entry_parts, EntryParts, Limits};
use schema::loki::metadata::normalize_metadata_name;
use schema::LogRecord;
use smallvec::SmallVec;

use crate::batch::{stream_key, Batch, Batcher, Held, NewEntry, StreamKey};
use crate::config::{ConsumerConfig, OversizeLines};
use crate::dlq::DeadLetter;
use crate::labels::LabelResolver;
use crate::metrics::Metrics;
use crate::tenants::Tenants;

/// Structured metadata of one record: (name sent to Loki, value), inline for the usual few.
type Metadata<'a> = SmallVec<[(&'a str, Cow<'a, str>); 8]>;

/// What became of a message.
#[derive(Debug)]
pub(crate) enum Taken {
    /// Its entry is in its stream's batch (`size`: what it counts for); `full` is the stream's
    /// batch when it reached a size limit with it.
    Batched {
        /// The entry's size.
        size: usize,
        /// The batch to push now, if any.
        full: Option<Batch>,
    },
    /// It goes to the dead-letter topic.
    Dead(DeadLetter),
}

/// Turns messages into entries of the streams' batches.
#[derive(Debug)]
pub(crate) struct Intake {
    labels: LabelResolver,
    /// (record field, name sent to Loki) of each structured-metadata field, named once.
    metadata_fields: Vec<(String, String)>,
    tenants: Tenants,
    limits: Limits,
    oversize: OversizeLines,
    /// The newest timestamp sent to each stream of each tenant, for Loki's "too far behind"
    /// check.
    newest: rustc_hash::FxHashMap<StreamKey, i64>,
    /// Wall clock in ns, refreshed by [`Intake::set_now`] (Loki's age checks need minutes, not
    /// nanoseconds).
    now: i64,
    metrics: Metrics,
}

impl Intake {
    /// An intake for these settings.
    pub(crate) fn new(config: &ConsumerConfig, metrics: Metrics) -> Self {
        let policy: LabelPolicy = config.label_policy();
        let metadata_fields = policy
            .metadata_fields
            .iter()
            .map(|f| {
                // As Loki stores it (`trace.id` → `trace_id`), so what is sent is what Loki
                // keeps and a replay is an exact duplicate. Validated at load: the name
                // normalises.
                let name = normalize_metadata_name(f)
                    .map(Cow::into_owned)
                    .unwrap_or_else(|_| f.clone());
                (f.clone(), name)
            })
            .collect();
        Self {
            labels: LabelResolver::new(policy, config.max_label_sets),
            metadata_fields,
            tenants: Tenants::new(config, metrics.clone()),
            limits: config.limits(),
            oversize: config.oversize_lines,
            newest: rustc_hash::FxHashMap::default(),
            now: schema::Timestamp::now().as_nanos(),
            metrics,
        }
    }

    /// Sets the clock the age checks use (ns since the epoch).
    pub(crate) fn set_now(&mut self, now: i64) {
        self.now = now;
    }

    /// Distinct label sets seen.
    pub(crate) fn distinct_streams(&self) -> usize {
        self.labels.distinct_sets()
    }

    /// Distinct tenants seen.
    pub(crate) fn distinct_tenants(&self) -> usize {
        self.tenants.count()
    }

    /// Takes one message (already checked to be of our topic and tracked as `held`).
    pub(crate) fn take(
        &mut self,
        m: &BorrowedMessage<'_>,
        held: Held,
        batcher: &mut Batcher,
    ) -> Taken {
        let (mut schema_version, mut content_type) = (None, None);
        if let Some(headers) = m.headers() {
            for h in headers.iter() {
                if h.key.eq_ignore_ascii_case(HEADER_SCHEMA_VERSION) {
                    schema_version = Some(h.value);
                } else if h.key.eq_ignore_ascii_case(HEADER_CONTENT_TYPE) {
                    content_type = Some(h.value);
                }
            }
        }
        let ours = schema_version == Some(Some(SCHEMA_VERSION.as_bytes()));
        let headers = [
            schema_version.map(|v| (HEADER_SCHEMA_VERSION, v)),
            content_type.map(|v| (HEADER_CONTENT_TYPE, v)),
        ];
        let payload = m.payload();
        match schema::kafka::decode_with_text(payload, headers.into_iter().flatten()) {
            Err(e) => {
                self.metrics.decode_failed(&e, held.partition, held.offset);
                Taken::Dead(DeadLetter {
                    value: payload.unwrap_or_default().to_vec(),
                    key: m.key().map(<[u8]>::to_vec),
                    reason: e.reason().to_owned(),
                    error: e.to_string(),
                    partition: held.partition,
                    offset: held.offset,
                })
            }
            Ok((record, text)) => {
                // Our producer writes the canonical form: its bytes are the line as they are.
                // Anything else is re-serialised to the canonical form.
                let line = if ours {
                    Cow::Borrowed(text)
                } else {
                    Cow::Owned(record.to_json())
                };
                self.entry(&record, line, held, m.timestamp().to_millis(), batcher)
            }
        }
    }

    fn entry(
        &mut self,
        record: &LogRecord<'_>,
        mut line: Cow<'_, str>,
        held: Held,
        kafka_ms: Option<i64>,
        batcher: &mut Batcher,
    ) -> Taken {
        let tenant = match self.tenants.of(record) {
            Ok(t) => t,
            Err(refused) => {
                let error = format!(
                    "field {:?} holds {:?}, which Loki refuses as a tenant: {}",
                    self.tenants.field().unwrap_or_default(),
                    refused.value,
                    refused.error
                );
                self.metrics
                    .tenant_refused(held.partition, held.offset, &error);
                return Taken::Dead(DeadLetter {
                    value: line.into_owned().into_bytes(),
                    key: Some(record.service.as_bytes().to_vec()),
                    reason: crate::metrics::INVALID_TENANT.to_owned(),
                    error,
                    partition: held.partition,
                    offset: held.offset,
                });
            }
        };
        let resolved = self.labels.resolve(record);
        if !resolved.overflow.is_empty() {
            self.metrics.label_overflow.inc();
        }
        let stream = stream_key(tenant, resolved.stream);
        let mut metadata: Metadata<'_> = self
            .metadata_fields
            .iter()
            .filter_map(|(field, name)| record.field_str(field).map(|v| (name.as_str(), v)))
            .chain(
                resolved
                    .overflow
                    .iter()
                    .map(|(n, v)| (n.as_str(), Cow::Borrowed(v.as_str()))),
            )
            .collect();
        metadata.sort_by(|a, b| a.0.cmp(b.0));
        let pairs = metadata.iter().map(|(n, v)| (*n, v.as_ref()));
        if line.len() > self.limits.max_line_size && self.oversize == OversizeLines::Truncate {
            line = Cow::Owned(truncate_line(&line, self.limits.max_line_size));
        }
        let ts = record.timestamp.as_nanos();
        let newest = self.newest.get(&stream).copied();
        let labels = self.labels.labels(resolved.stream);
        let parts = EntryParts {
            nanos: ts,
            line_len: line.len(),
            metadata: pairs.clone(),
            // Configured fields' names were checked at start (config.rs) and an overflow
            // label's is `original_` and a label name: neither can fail Loki's rewrite.
            names_checked: true,
        };
        if let Err(rejection) = check_entry_parts(labels, parts, (self.now, newest), &self.limits) {
            self.metrics.preflight_failed(
                rejection.reason,
                held.partition,
                held.offset,
                &rejection.message,
            );
            return Taken::Dead(DeadLetter {
                value: line.into_owned().into_bytes(),
                key: Some(record.service.as_bytes().to_vec()),
                reason: rejection.reason.as_str().to_owned(),
                error: rejection.message,
                partition: held.partition,
                offset: held.offset,
            });
        }
        if newest.is_none_or(|n| ts > n) {
            self.newest.insert(stream, ts);
        }
        self.metrics
            .count_level(&record.service, record.level.as_str(), 1);
        let (size, full) = batcher.add(
            stream,
            (labels, tenant),
            NewEntry {
                nanos: ts,
                line: &line,
                metadata: pairs,
                held,
                kafka_ms,
            },
        );
        Taken::Batched { size, full }
    }
}

/// Cuts a line to at most `max` bytes on a character boundary, marking the cut.
pub(crate) fn truncate_line(line: &str, max: usize) -> String {
    const MARK: &str = "…[truncated]";
    let mut end = max.saturating_sub(MARK.len()).min(line.len());
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + MARK.len());
    out.push_str(&line[..end]);
    out.push_str(MARK);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Past `MAX_LABEL_SETS`, a record whose label values are new is folded into `other` (its
    /// values kept as structured metadata) and counted in `consumer_label_overflow_total`.
    #[test]
    fn a_record_folded_past_the_label_set_cap_is_counted() {
        let config = ConsumerConfig {
            max_label_sets: 1,
            ..ConsumerConfig::default()
        };
        let registry = prometheus::Registry::new();
        let metrics = Metrics::new(&registry, "g", "t", false).unwrap();
        let mut intake = Intake::new(&config, metrics.clone());
        let mut batcher = Batcher::new(100, 1 << 20, std::time::Duration::from_secs(1));
        let now = schema::Timestamp::now().as_nanos();
        intake.set_now(now);
        let held = Held {
            partition: 0,
            generation: 1,
            offset: 0,
        };
        for (i, service) in ["a", "b", "c"].into_iter().enumerate() {
            let text = format!(
                r#"{{"timestamp":"{}","level":"info","service":"{service}","message":"m"}}"#,
                schema::Timestamp::now().to_rfc3339()
            );
            let record = schema::parse_record(&text).unwrap();
            let taken = intake.entry(
                &record,
                Cow::Borrowed(text.as_str()),
                Held {
                    offset: i as i64,
                    ..held
                },
                None,
                &mut batcher,
            );
            assert!(matches!(taken, Taken::Batched { .. }), "{taken:?}");
        }
        // "a" opened the one set; "b" and "c" were folded.
        assert_eq!(metrics.label_overflow.get(), 2);
    }

    #[test]
    fn truncation_respects_the_limit_and_char_boundaries() {
        let s = truncate_line(&"é".repeat(100), 51);
        assert!(s.len() <= 51);
        assert!(s.ends_with("…[truncated]"));
    }
}
