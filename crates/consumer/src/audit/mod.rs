//! `consumer audit`: proves delivery by comparing what the topic holds with what Loki holds and
//! what went to the dead-letter topic (README, "Proving delivery").
//!
//! For a window of record timestamps (or Kafka offset ranges), it reads the main topic with a
//! client that joins no group ([`ledger`]: each message under the identity Loki gives its
//! entry), the dead letters that name those messages, and the consumer group's committed
//! offsets (read first, so a message below them is either in Loki or in the dead-letter topic
//! by the time Loki is asked). Then it asks Loki ([`query`]), window by window: `series` for the
//! streams holding entries, and `query_range` for each of those and each stream the topic has
//! records of, paged and paced. Every message ends in exactly one column: in Loki, in the
//! dead-letter topic, a duplicate of another (one Loki entry for both), pending (past the
//! committed offset), beyond what Loki can answer, unverifiable, or missing.

mod ledger;
mod query;
mod report;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use rdkafka::message::Message;
use rdkafka::ClientConfig;
use schema::Timestamp;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::config::ConsumerConfig;
use crate::kafka::base_client_config;
use crate::loki::{ClientError, LokiClient};
use crate::moment::{rfc3339, Moment};
use crate::output::{prefix, Format};
use crate::progress::Progress;
use crate::redrive::letter::Letter;
use crate::scan::{committed_offsets, ScanError, Scanner, Visit};
use ledger::{Ledger, Visibility};
pub use query::QueryError;
use query::{project, LokiReader};
use report::{ExtraSample, LokiWork, MissingSample, Report};

/// How far a producer's clock (the Kafka timestamp) may be behind a record's own timestamp
/// before the audit could miss the record in a time window.
const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// Characters of a line shown in samples.
const LINE_PREFIX: usize = 160;

/// `consumer audit`'s options (the consumer's settings give the topics, the group, Loki's URL,
/// tenant and credentials, and the label policy).
#[derive(Debug, Clone, clap::Args)]
pub struct AuditArgs {
    /// TOML file with the consumer's settings (keys as in the README, lower case); environment
    /// wins. The audit uses the same KAFKA_*, LOKI_*, LABEL_FIELDS and ENVIRONMENT as the
    /// consumer it checks.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Audit records whose timestamp is at or after this moment: an RFC 3339 time, a date, or a
    /// duration before now (90m, 2h, 7days). Required unless --offsets is given.
    #[arg(long, value_name = "WHEN", value_parser = Moment::parse,
          required_unless_present = "offsets", conflicts_with = "offsets")]
    pub since: Option<Moment>,
    /// Audit records whose timestamp is before this moment (same forms; default: now).
    #[arg(long, value_name = "WHEN", value_parser = Moment::parse, conflicts_with = "offsets")]
    pub until: Option<Moment>,
    /// Audit the messages of a Kafka offset range instead of a time window:
    /// PARTITION:FROM-TO (TO excluded; PARTITION:FROM- reads to the end). Repeatable.
    #[arg(long = "offsets", value_name = "P:FROM-TO", value_parser = OffsetRange::parse)]
    pub offsets: Vec<OffsetRange>,
    /// With --since: how long after its own timestamp a record may have been produced to
    /// Kafka. Records produced later are not read (their Loki entries then show as extra).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    pub max_delay: Duration,
    /// Queries sent to Loki per second, at most.
    #[arg(long, value_name = "N", default_value_t = 5.0, value_parser = positive_rate)]
    pub max_queries_per_second: f64,
    /// Entries asked for per query (Loki refuses more than its max_entries_limit_per_query,
    /// 5000 by default).
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_entries_per_query: u32,
    /// The time span of one query; longer windows are split (Loki also bounds a query's span,
    /// max_query_length, 721h by default).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    pub query_window: Duration,
    /// How far back Loki can answer: its retention_period, or for a Loki without long-term
    /// storage its query_ingesters_within. Older records are reported as beyond the horizon,
    /// not as missing. Default: no limit.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub loki_horizon: Option<Duration>,
    /// Most messages audited in one run (about 100 bytes of memory each); a larger range is
    /// refused: audit it in parts.
    #[arg(long, value_name = "N", default_value_t = 2_000_000)]
    pub max_records: usize,
    /// Missing records (and extra entries) listed in the report.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub samples: usize,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

fn positive_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{text:?} is not a positive number")),
    }
}

/// An offset range of one partition: `from..to` (`to` excluded; `None`: the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetRange {
    /// The partition.
    pub partition: i32,
    /// The first offset.
    pub from: i64,
    /// The offset after the last (`None`: to the end).
    pub to: Option<i64>,
}

impl OffsetRange {
    /// Parses `P:FROM-TO` or `P:FROM-`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!("{text:?} is not PARTITION:FROM-TO (e.g. 0:1000-2000, or 0:1000- to the end)")
        };
        let (p, range) = text.split_once(':').ok_or_else(bad)?;
        let (from, to) = range.split_once('-').ok_or_else(bad)?;
        let partition = p.trim().parse::<i32>().map_err(|_| bad())?;
        let from = from.trim().parse::<i64>().map_err(|_| bad())?;
        let to = match to.trim() {
            "" => None,
            t => Some(t.parse::<i64>().map_err(|_| bad())?),
        };
        if partition < 0 || from < 0 || to.is_some_and(|t| t < from) {
            return Err(bad());
        }
        Ok(Self {
            partition,
            from,
            to,
        })
    }
}

/// Why an audit could not be completed.
#[derive(Debug, Error)]
pub enum AuditError {
    /// Reading Kafka failed.
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// Loki did not answer usefully.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The Loki client could not be built.
    #[error(transparent)]
    Loki(#[from] ClientError),
    /// More messages than `--max-records`.
    #[error(
        "more than {0} messages to audit (--max-records): audit a shorter window or fewer offsets"
    )]
    TooMany(usize),
    /// Options that do not fit the topic.
    #[error("{0}")]
    Usage(String),
    /// The consumer's tenant rules could not be set up.
    #[error("setting up the tenant rules: {0}")]
    Tenants(#[from] prometheus::Error),
    /// A worker task failed.
    #[error("audit task failed: {0}")]
    Task(String),
}

/// What an audit found.
#[derive(Debug)]
pub struct Outcome {
    /// Messages missing (neither in Loki nor in the dead-letter topic, and consumed).
    pub missing: u64,
    /// The report, rendered in the format asked for.
    pub report: String,
}

/// What is audited.
#[derive(Debug, Clone)]
enum Scope {
    /// Records with `since <= ts < until` (ns).
    Time {
        since: i64,
        until: i64,
        max_delay: i64,
    },
    /// These offsets.
    Offsets(Vec<OffsetRange>),
}

impl Scope {
    fn window(&self) -> Option<(i64, i64)> {
        match self {
            Scope::Time { since, until, .. } => Some((*since, *until)),
            Scope::Offsets(_) => None,
        }
    }
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Runs an audit with the consumer's `config`.
pub async fn audit(
    config: ConsumerConfig,
    args: AuditArgs,
    shutdown: CancellationToken,
) -> Result<Outcome, AuditError> {
    let now = Timestamp::now();
    let scope = if args.offsets.is_empty() {
        let since = args
            .since
            .map(|m| m.resolve(now))
            .ok_or_else(|| AuditError::Usage("give --since or --offsets".into()))?;
        let until = args.until.map_or(now.as_nanos(), |m| m.resolve(now));
        if until <= since {
            return Err(AuditError::Usage(format!(
                "--until ({}) must be after --since ({})",
                rfc3339(until),
                rfc3339(since)
            )));
        }
        Scope::Time {
            since,
            until,
            max_delay: nanos(args.max_delay),
        }
    } else {
        Scope::Offsets(args.offsets.clone())
    };
    if args.query_window.is_zero() {
        return Err(AuditError::Usage(
            "--query-window must be longer than 0".into(),
        ));
    }
    let horizon = args
        .loki_horizon
        .map(|h| now.as_nanos().saturating_sub(nanos(h)));
    let loki = LokiClient::new(&config)?;
    let mut base = base_client_config(&config);
    base.set("client.id", "logpipe-audit");

    let kafka = {
        let (config, base, scope, cancel) = (
            config.clone(),
            base.clone(),
            scope.clone(),
            shutdown.clone(),
        );
        let max = args.max_records;
        tokio::task::spawn_blocking(move || read_kafka(&config, &base, &scope, max, &cancel))
            .await
            .map_err(|e| AuditError::Task(e.to_string()))??
    };
    let KafkaSide {
        mut ledger,
        committed,
        read,
    } = kafka;

    let mut reader = LokiReader::new(
        loki,
        args.max_entries_per_query as usize,
        args.max_queries_per_second,
    );
    let window_len = nanos(args.query_window);
    let plan = windows(&ledger, &scope, window_len, horizon);
    let names = ledger.label_names();
    let selector = ledger.static_selector();
    let mut crowded: HashSet<(u32, i64)> = HashSet::new();
    let mut extra_sample: Vec<ExtraSample> = Vec::new();
    let counted_window = scope.window();
    let mut progress = Progress::new("windows", plan.len() as u64);
    let tenants = ledger.tenants();
    for (i, (start, end, kafka_streams)) in plan.iter().enumerate() {
        let (start, end) = (*start, *end);
        let mut streams: BTreeSet<u32> = kafka_streams.clone();
        for tenant in &tenants {
            for labels in reader.series(tenant, &selector, start, end).await? {
                let projected = project(&labels, &names);
                if !projected.is_empty() {
                    streams.insert(ledger.stream_of(tenant, projected));
                }
            }
        }
        for stream in streams {
            let key = ledger.stream(stream).clone();
            let text = ledger.stream_text(stream).to_owned();
            let read = reader
                .read_stream(&key.tenant, &key.labels, &names, start, end, |e| {
                    if ledger.found(&key.tenant, e.ts, &e.line) {
                        return;
                    }
                    if counted_window.is_some_and(|(s, u)| e.ts >= s && e.ts < u) {
                        ledger.extra(stream);
                        if extra_sample.len() < args.samples {
                            extra_sample.push(ExtraSample {
                                stream: text.clone(),
                                timestamp: rfc3339(e.ts),
                                line: prefix(&e.line, LINE_PREFIX),
                            });
                        }
                    }
                })
                .await?;
            crowded.extend(read.crowded.into_iter().map(|ts| (stream, ts)));
        }
        let (queries, entries) = (reader.queries, reader.entries);
        progress.set(i as u64 + 1, || {
            format!("{queries} queries, {entries} entries")
        });
        if shutdown.is_cancelled() {
            progress.finish();
            return Err(AuditError::Scan(ScanError::Cancelled("Loki".into())));
        }
    }
    progress.finish();

    let tally = ledger.classify(
        &Visibility {
            committed: committed.clone(),
            horizon,
            crowded: crowded.clone(),
        },
        args.samples,
    );
    let missing_sample = {
        let (base, topic, missing, cancel) = (
            base.clone(),
            config.kafka.topic.clone(),
            tally.missing.clone(),
            shutdown.clone(),
        );
        tokio::task::spawn_blocking(move || sample_lines(&base, &topic, missing, &cancel))
            .await
            .map_err(|e| AuditError::Task(e.to_string()))??
    };
    let report = Report {
        topic: config.kafka.topic.clone(),
        dlq_topic: config.kafka_dlq_topic.clone(),
        group: config.kafka_group_id.clone(),
        loki: format!(
            "{}{}",
            service::redact::url_credentials(&config.loki_url),
            match tenants.as_slice() {
                [only] if only.is_empty() => String::new(),
                all => format!(" (tenants {})", all.join(", ")),
            }
        ),
        scope: describe(&scope, args.max_delay),
        read,
        committed,
        partitions: tally.partitions,
        streams: tally.streams,
        total: tally.total,
        missing_sample,
        extra_sample,
        extras_counted: counted_window.is_some(),
        loki_work: LokiWork {
            windows: plan.len() as u64,
            queries: reader.queries,
            entries: reader.entries,
            max_queries_per_second: args.max_queries_per_second,
            max_entries_per_query: args.max_entries_per_query as usize,
        },
        limits: limits(&args, &scope, &config, !crowded.is_empty()),
        result: if tally.total.missing == 0 {
            "ok"
        } else {
            "missing"
        },
    };
    let text = match args.format {
        Format::Text => report.to_text(),
        Format::Json => serde_json::to_string_pretty(&report)
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")),
    };
    Ok(Outcome {
        missing: report.total.missing,
        report: text,
    })
}

/// What the Kafka side found.
struct KafkaSide {
    ledger: Ledger,
    committed: BTreeMap<i32, Option<i64>>,
    read: BTreeMap<i32, (i64, i64)>,
}

/// Reads the consumer group's committed offsets, then the audited messages, then the dead
/// letters naming them.
fn read_kafka(
    config: &ConsumerConfig,
    base: &ClientConfig,
    scope: &Scope,
    max_records: usize,
    cancel: &CancellationToken,
) -> Result<KafkaSide, AuditError> {
    let main = Scanner::new(base, &config.kafka.topic)?;
    let partitions = main.partitions()?;
    // First: a message below these offsets is in Loki or the dead-letter topic by now.
    let committed = committed_offsets(
        base,
        &config.kafka_group_id,
        &config.kafka.topic,
        &partitions,
    )?;
    let bounds = main.bounds(&partitions, cancel)?;
    let mut ranges: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
    match scope {
        Scope::Offsets(list) => {
            for r in list {
                let b = bounds.get(&r.partition).ok_or_else(|| {
                    AuditError::Usage(format!(
                        "{} has no partition {} (it has {partitions:?})",
                        config.kafka.topic, r.partition
                    ))
                })?;
                let to = r.to.unwrap_or(b.end).min(b.end);
                ranges.insert(r.partition, (r.from.max(b.low), to));
            }
        }
        Scope::Time { since, .. } => {
            let from_ms = (since - nanos(CLOCK_SKEW)).div_euclid(1_000_000);
            let starts = main.offsets_at(&partitions, from_ms)?;
            for (&p, b) in &bounds {
                let start = match starts.get(&p).copied().flatten() {
                    Some(o) => o.clamp(b.low, b.end),
                    None => b.end,
                };
                ranges.insert(p, (start, b.end));
            }
        }
    }
    let total: u64 = ranges.values().map(|(a, b)| (b - a).max(0) as u64).sum();
    let mut progress = Progress::new("messages", total);
    let mut ledger = Ledger::new(config)?;
    let mut seen = 0u64;
    let mut overflow = false;
    let mut oldest_ms: Option<i64> = None;
    let (window, stop_after) = match scope {
        Scope::Time {
            since,
            until,
            max_delay,
        } => (
            Some((*since, *until)),
            Some(
                until
                    .saturating_add(*max_delay)
                    .saturating_add(nanos(CLOCK_SKEW)),
            ),
        ),
        Scope::Offsets(_) => (None, None),
    };
    main.read(&ranges, cancel, |m| {
        seen += 1;
        progress.set(seen, || format!("{} audited", ledger.len()));
        let kafka_ns = m
            .timestamp()
            .to_millis()
            .map(|ms| ms.saturating_mul(1_000_000));
        if stop_after.is_some_and(|s| kafka_ns.is_some_and(|k| k > s)) {
            // Produced after the latest a record of the window may be: the rest of the
            // partition is newer still.
            return Visit::StopPartition;
        }
        let before = ledger.len();
        ledger.add(m, |ts| match window {
            None => true,
            Some((since, until)) => ts.or(kafka_ns).is_some_and(|t| t >= since && t < until),
        });
        if ledger.len() > before {
            if let Some(ms) = m.timestamp().to_millis() {
                oldest_ms = Some(oldest_ms.map_or(ms, |o| o.min(ms)));
            }
        }
        if ledger.len() > max_records {
            overflow = true;
            return Visit::StopPartition;
        }
        Visit::Continue
    })?;
    progress.finish();
    if overflow {
        return Err(AuditError::TooMany(max_records));
    }
    if ledger.len() > 0 {
        read_dead_letters(config, base, &mut ledger, oldest_ms, cancel)?;
    }
    Ok(KafkaSide {
        ledger,
        committed,
        read: ranges,
    })
}

/// Notes every dead letter that names an audited message. A letter is written after its
/// message was read, so the dead-letter topic is read from the time of the oldest audited
/// message on.
fn read_dead_letters(
    config: &ConsumerConfig,
    base: &ClientConfig,
    ledger: &mut Ledger,
    oldest_ms: Option<i64>,
    cancel: &CancellationToken,
) -> Result<(), AuditError> {
    let dlq = Scanner::new(base, &config.kafka_dlq_topic)?;
    let partitions = dlq.partitions()?;
    let bounds = dlq.bounds(&partitions, cancel)?;
    let starts = match oldest_ms {
        Some(ms) => dlq.offsets_at(&partitions, ms - CLOCK_SKEW.as_millis() as i64)?,
        None => BTreeMap::new(),
    };
    let ranges: BTreeMap<i32, (i64, i64)> = bounds
        .iter()
        .map(|(&p, b)| {
            let start = starts
                .get(&p)
                .copied()
                .flatten()
                .map_or(b.low, |o| o.clamp(b.low, b.end));
            (p, (start, b.end))
        })
        .collect();
    let spans = ledger.offset_spans();
    let topic = config.kafka.topic.as_str();
    dlq.read(&ranges, cancel, |m| {
        let letter = Letter::of(m);
        if letter.source_topic == Some(topic) {
            if let (Some(p), Some(o)) = (letter.source_partition, letter.source_offset) {
                if spans.get(&p).is_some_and(|(a, b)| o >= *a && o <= *b) {
                    ledger.dead_letter(p, o);
                }
            }
        }
        Visit::Continue
    })?;
    Ok(())
}

/// The query windows: (start, end, streams with audited records in it). Windows are aligned
/// to multiples of `len` since the epoch; a time scope covers its whole window (so entries
/// of any stream are seen), an offset scope only the windows holding its records.
fn windows(
    ledger: &Ledger,
    scope: &Scope,
    len: i64,
    horizon: Option<i64>,
) -> Vec<(i64, i64, BTreeSet<u32>)> {
    let with_records = ledger.windows(len, horizon);
    let clip = |start: i64, end: i64| {
        let start = horizon.map_or(start, |h| start.max(h));
        (start < end).then_some((start, end))
    };
    match scope {
        Scope::Time { since, until, .. } => {
            let mut out = Vec::new();
            let mut w = since.div_euclid(len) * len;
            while w < *until {
                if let Some((s, e)) = clip(w.max(*since), w.saturating_add(len).min(*until)) {
                    out.push((s, e, with_records.get(&w).cloned().unwrap_or_default()));
                }
                w = w.saturating_add(len);
            }
            out
        }
        Scope::Offsets(_) => with_records
            .into_iter()
            .filter_map(|(w, streams)| clip(w, w.saturating_add(len)).map(|(s, e)| (s, e, streams)))
            .collect(),
    }
}

/// The missing messages with the start of their lines, read again from Kafka.
fn sample_lines(
    base: &ClientConfig,
    topic: &str,
    missing: Vec<ledger::MissingAt>,
    cancel: &CancellationToken,
) -> Result<Vec<MissingSample>, AuditError> {
    let scanner = Scanner::new(base, topic)?;
    let mut out = Vec::with_capacity(missing.len());
    for m in missing {
        let mut line = String::new();
        let range = BTreeMap::from([(m.partition, (m.offset, m.offset + 1))]);
        scanner.read(&range, cancel, |msg| {
            line = prefix(
                &String::from_utf8_lossy(msg.payload().unwrap_or_default()),
                LINE_PREFIX,
            );
            Visit::StopPartition
        })?;
        out.push(MissingSample {
            partition: m.partition,
            offset: m.offset,
            timestamp: rfc3339(m.ts),
            stream: m.stream,
            line,
        });
    }
    Ok(out)
}

fn describe(scope: &Scope, max_delay: Duration) -> String {
    match scope {
        Scope::Time { since, until, .. } => format!(
            "records timestamped {} to {} (produced up to {} after)",
            rfc3339(*since),
            rfc3339(*until),
            humantime::format_duration(max_delay)
        ),
        Scope::Offsets(list) => {
            let parts: Vec<String> = list
                .iter()
                .map(|r| {
                    format!(
                        "{}:{}-{}",
                        r.partition,
                        r.from,
                        r.to.map_or_else(String::new, |t| t.to_string())
                    )
                })
                .collect();
            format!("messages at offsets {}", parts.join(", "))
        }
    }
}

/// What this audit cannot see, in words.
fn limits(args: &AuditArgs, scope: &Scope, config: &ConsumerConfig, crowded: bool) -> Vec<String> {
    let mut out = Vec::new();
    match args.loki_horizon {
        Some(h) => out.push(format!(
            "records older than {} (--loki-horizon) are not checked: Loki may have deleted them (retention) or not answer for them",
            humantime::format_duration(h)
        )),
        None => out.push(
            "Loki's retention is taken as unlimited: records older than Loki keeps would show as missing \
             (set --loki-horizon to retention_period, or to query_ingesters_within for a Loki without long-term storage)"
                .to_owned(),
        ),
    }
    out.push(
        "Loki keeps one entry for messages with the same stream, timestamp and line: they are counted as \
         duplicates, not missing; an entry written by another writer with the same stream, timestamp and line \
         cannot be told from ours"
            .to_owned(),
    );
    out.push(format!(
        "messages at or past group {}'s committed offsets are pending (not consumed yet), not missing",
        config.kafka_group_id
    ));
    match scope {
        Scope::Time { .. } => out.push(format!(
            "only messages produced from {} before --since to {} after --until were read: a record produced later \
             than that after its own timestamp is not audited (and its entry counts as extra); extra entries may \
             also come from another writer using the same labels",
            humantime::format_duration(CLOCK_SKEW),
            humantime::format_duration(args.max_delay + CLOCK_SKEW)
        )),
        Scope::Offsets(_) => out.push(
            "extra entries are not counted for offset ranges: other offsets' records share the time windows"
                .to_owned(),
        ),
    }
    if crowded {
        out.push(
            "some timestamps hold more entries of one stream than one query returns: those entries are \
             unverified (raise --max-entries-per-query up to Loki's max_entries_limit_per_query)"
                .to_owned(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_ranges_read_as_partition_from_to() {
        assert_eq!(
            OffsetRange::parse("2:100-200"),
            Ok(OffsetRange {
                partition: 2,
                from: 100,
                to: Some(200)
            })
        );
        assert_eq!(OffsetRange::parse("0:7-").map(|r| r.to), Ok(None));
        for bad in ["2", "2:100", "x:1-2", "1:5-3", "-1:0-1", "1:a-"] {
            let e = OffsetRange::parse(bad).unwrap_err();
            assert!(e.contains("PARTITION:FROM-TO"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_time_scope_is_covered_by_aligned_windows_clipped_to_it_and_to_the_horizon() {
        let ledger = Ledger::new(&ConsumerConfig::default()).unwrap();
        let scope = Scope::Time {
            since: 150,
            until: 420,
            max_delay: 0,
        };
        let w: Vec<(i64, i64)> = windows(&ledger, &scope, 100, None)
            .into_iter()
            .map(|(s, e, _)| (s, e))
            .collect();
        assert_eq!(w, [(150, 200), (200, 300), (300, 400), (400, 420)]);
        let w: Vec<(i64, i64)> = windows(&ledger, &scope, 100, Some(250))
            .into_iter()
            .map(|(s, e, _)| (s, e))
            .collect();
        assert_eq!(w, [(250, 300), (300, 400), (400, 420)]);
    }

    #[test]
    fn a_rate_must_be_positive() {
        assert!(positive_rate("0").is_err());
        assert!(positive_rate("-1").is_err());
        assert!(positive_rate("inf").is_err());
        assert_eq!(positive_rate("2.5"), Ok(2.5));
    }
}
