//! The audit's report: per partition and per stream, where the audited messages are; samples of
//! the missing and the extra; what the audit could not see. Text for people, JSON for scripts.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::ledger::Counts;

/// A missing message, with the start of its line.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MissingSample {
    /// Partition.
    pub(crate) partition: i32,
    /// Offset.
    pub(crate) offset: i64,
    /// The record's timestamp.
    pub(crate) timestamp: String,
    /// Its stream.
    pub(crate) stream: String,
    /// The start of its line.
    pub(crate) line: String,
}

/// An entry in Loki no audited message has.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ExtraSample {
    /// Its stream.
    pub(crate) stream: String,
    /// Its timestamp.
    pub(crate) timestamp: String,
    /// The start of its line.
    pub(crate) line: String,
}

/// What was asked of Loki.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct LokiWork {
    /// Query windows.
    pub(crate) windows: u64,
    /// Requests sent (retries included).
    pub(crate) queries: u64,
    /// Entries received.
    pub(crate) entries: u64,
    /// The cap on queries per second.
    pub(crate) max_queries_per_second: f64,
    /// The cap on entries per query.
    pub(crate) max_entries_per_query: usize,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    /// The audited topic.
    pub(crate) topic: String,
    /// The dead-letter topic.
    pub(crate) dlq_topic: String,
    /// The consumer group whose progress decides "pending".
    pub(crate) group: String,
    /// Loki's URL (credentials removed) and tenant.
    pub(crate) loki: String,
    /// What was audited, in words.
    pub(crate) scope: String,
    /// Offsets of the main topic read, per partition (`from..to`).
    pub(crate) read: BTreeMap<i32, (i64, i64)>,
    /// The group's committed offsets.
    pub(crate) committed: BTreeMap<i32, Option<i64>>,
    /// Per partition.
    pub(crate) partitions: BTreeMap<i32, Counts>,
    /// Per stream.
    pub(crate) streams: BTreeMap<String, Counts>,
    /// All.
    pub(crate) total: Counts,
    /// The first missing messages.
    pub(crate) missing_sample: Vec<MissingSample>,
    /// The first extra entries.
    pub(crate) extra_sample: Vec<ExtraSample>,
    /// Whether extras were looked for (a time window) or not (offset ranges).
    pub(crate) extras_counted: bool,
    /// What was asked of Loki.
    pub(crate) loki_work: LokiWork,
    /// What the audit cannot see.
    pub(crate) limits: Vec<String>,
    /// `ok` or `missing`.
    pub(crate) result: &'static str,
}

const COLUMNS: [&str; 8] = [
    "in kafka",
    "in loki",
    "in dlq",
    "duplicates",
    "pending",
    "beyond horizon",
    "unverified",
    "missing",
];

fn cells(c: &Counts) -> [u64; 8] {
    [
        c.in_kafka,
        c.in_loki,
        c.in_dlq,
        c.duplicates,
        c.pending,
        c.beyond_horizon,
        c.unverified,
        c.missing,
    ]
}

fn row(out: &mut String, name: &str, width: usize, c: &Counts, extra: Option<&str>) {
    let _ = write!(out, "{name:<width$}");
    for (col, v) in COLUMNS.iter().zip(cells(c)) {
        let _ = write!(out, "  {v:>w$}", w = col.len());
    }
    if let Some(e) = extra {
        let _ = write!(out, "  {e:>5}");
    }
    out.push('\n');
}

fn header(out: &mut String, first: &str, width: usize, extra: bool) {
    let _ = write!(out, "{first:<width$}");
    for col in COLUMNS {
        let _ = write!(out, "  {col}");
    }
    if extra {
        out.push_str("  extra");
    }
    out.push('\n');
}

impl Report {
    /// The report as text.
    pub(crate) fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "audit of {} against {} (dead letters: {}; progress of group {})",
            self.topic, self.loki, self.dlq_topic, self.group
        );
        let _ = writeln!(out, "{}", self.scope);
        let read: Vec<String> = self
            .read
            .iter()
            .map(|(p, (a, b))| format!("{p}: {a}..{b}"))
            .collect();
        let _ = writeln!(out, "kafka offsets read: {}", read.join(", "));
        let committed: Vec<String> = self
            .committed
            .iter()
            .map(|(p, o)| {
                format!(
                    "{p}: {}",
                    o.map_or_else(|| "none".to_owned(), |o| o.to_string())
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "committed by {}: {}\n",
            self.group,
            committed.join(", ")
        );

        let width = self
            .partitions
            .keys()
            .map(|p| p.to_string().len())
            .chain(["partition".len(), "total".len()])
            .max()
            .unwrap_or(9);
        header(&mut out, "partition", width, false);
        for (p, c) in &self.partitions {
            row(&mut out, &p.to_string(), width, c, None);
        }
        let mut total = self.total;
        total.extra = 0;
        row(&mut out, "total", width, &total, None);

        let width = self
            .streams
            .keys()
            .map(|s| s.chars().count())
            .chain(["stream".len()])
            .max()
            .unwrap_or(6);
        out.push('\n');
        header(&mut out, "stream", width, true);
        for (s, c) in &self.streams {
            let extra = if self.extras_counted {
                c.extra.to_string()
            } else {
                "-".to_owned()
            };
            row(&mut out, s, width, c, Some(&extra));
        }

        if !self.missing_sample.is_empty() {
            let _ = writeln!(
                out,
                "\nmissing (first {} of {}):",
                self.missing_sample.len(),
                self.total.missing
            );
            for m in &self.missing_sample {
                let _ = writeln!(
                    out,
                    "  partition {} offset {} timestamp {} {}\n      {}",
                    m.partition, m.offset, m.timestamp, m.stream, m.line
                );
            }
        }
        if !self.extra_sample.is_empty() {
            let _ = writeln!(
                out,
                "\nin Loki but not in the audited messages (first {} of {}):",
                self.extra_sample.len(),
                self.total.extra
            );
            for e in &self.extra_sample {
                let _ = writeln!(out, "  {} {}\n      {}", e.timestamp, e.stream, e.line);
            }
        }
        let w = &self.loki_work;
        let _ = writeln!(
            out,
            "\nLoki: {} queries over {} windows (at most {}/s, {} entries each), {} entries read",
            w.queries, w.windows, w.max_queries_per_second, w.max_entries_per_query, w.entries
        );
        let _ = writeln!(out, "\nwhat this audit cannot see:");
        for l in &self.limits {
            let _ = writeln!(out, "  - {l}");
        }
        let _ = writeln!(
            out,
            "\nresult: {}",
            if self.total.missing == 0 {
                "nothing missing".to_owned()
            } else {
                let n = self.total.missing;
                format!("{n} record{} missing", if n == 1 { "" } else { "s" })
            }
        );
        out
    }
}
