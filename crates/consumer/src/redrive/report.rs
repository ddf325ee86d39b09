//! What a redrive did (or, in a dry run, would do), by reason: counts of letters moved and left
//! (and why), and a few samples of each reason.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::letter::{Leave, Letter};
use crate::moment::rfc3339;
use crate::output::prefix;

/// Characters of a line shown in a sample.
const LINE_PREFIX: usize = 160;
/// Characters of an error shown in a sample.
const ERROR_PREFIX: usize = 200;

/// One letter shown as an example.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Sample {
    /// `partition@offset` in the dead-letter topic.
    pub(crate) letter: String,
    /// `topic/partition@offset` it came from.
    pub(crate) source: String,
    /// When it was dead-lettered.
    pub(crate) written: Option<String>,
    /// The record's timestamp.
    pub(crate) record_time: Option<String>,
    /// What it stays for, or `move`.
    pub(crate) verdict: &'static str,
    /// The start of `dlq-error`.
    pub(crate) error: String,
    /// The start of the line.
    pub(crate) line: String,
}

/// Counts of one reason.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct ReasonTally {
    /// Moved (acknowledged by Kafka), or in a dry run, would move.
    pub(crate) moved: u64,
    /// Left, by why.
    pub(crate) left: BTreeMap<Leave, u64>,
    /// Examples, moved ones first.
    pub(crate) samples: Vec<Sample>,
}

/// The report of a run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    /// The dead-letter topic.
    pub(crate) dlq_topic: String,
    /// The topic records are moved to.
    pub(crate) topic: String,
    /// The redrive's consumer group.
    pub(crate) group: String,
    /// A dry run (nothing published, nothing committed).
    pub(crate) dry_run: bool,
    /// Per partition of the dead-letter topic: the offsets read, `from..to`.
    pub(crate) read: BTreeMap<i32, (i64, i64)>,
    /// Letters read.
    pub(crate) letters: u64,
    /// Per reason.
    pub(crate) reasons: BTreeMap<String, ReasonTally>,
    /// Letters an interrupted run had published, found in the main topic at the start.
    pub(crate) found_published_before: u64,
    /// How the run ended.
    pub(crate) ended: String,
    #[serde(skip)]
    samples_per_reason: usize,
}

impl Report {
    /// An empty report.
    pub(crate) fn new(
        dlq_topic: &str,
        topic: &str,
        group: &str,
        dry_run: bool,
        samples_per_reason: usize,
    ) -> Self {
        Self {
            dlq_topic: dlq_topic.to_owned(),
            topic: topic.to_owned(),
            group: group.to_owned(),
            dry_run,
            read: BTreeMap::new(),
            letters: 0,
            reasons: BTreeMap::new(),
            found_published_before: 0,
            ended: String::new(),
            samples_per_reason,
        }
    }

    /// Counts a letter read (where it is noted in `read`).
    pub(crate) fn read_letter(&mut self, partition: i32, offset: i64) {
        self.letters += 1;
        let r = self.read.entry(partition).or_insert((offset, offset));
        r.1 = r.1.max(offset + 1);
    }

    /// Counts a letter that stays, keeping it as a sample if there is room.
    pub(crate) fn left(&mut self, letter: &Letter<'_>, why: Leave, record_ns: Option<i64>) {
        let tally = self.reasons.entry(letter.reason.to_owned()).or_default();
        *tally.left.entry(why).or_default() += 1;
        if tally.samples.len() < self.samples_per_reason {
            tally.samples.push(sample(letter, why.as_str(), record_ns));
        }
    }

    /// Counts letters of `reason` moved.
    pub(crate) fn moved(&mut self, reason: &str, n: u64) {
        self.reasons.entry(reason.to_owned()).or_default().moved += n;
    }

    /// Keeps a sample of a letter that moves (before letters that stay).
    pub(crate) fn sample_moved(&mut self, letter: &Letter<'_>, record_ns: Option<i64>) {
        let max = self.samples_per_reason;
        let tally = self.reasons.entry(letter.reason.to_owned()).or_default();
        let moved_samples = tally.samples.iter().filter(|s| s.verdict == "move").count();
        if moved_samples < max {
            let s = sample(letter, "move", record_ns);
            tally.samples.insert(moved_samples, s);
            tally.samples.truncate(max);
        }
    }

    /// Letters moved, all reasons.
    pub(crate) fn total_moved(&self) -> u64 {
        self.reasons.values().map(|t| t.moved).sum()
    }

    /// Letters left for `why`, all reasons.
    pub(crate) fn total_left(&self, why: Leave) -> u64 {
        self.reasons
            .values()
            .map(|t| t.left.get(&why).copied().unwrap_or(0))
            .sum()
    }

    /// The report as text.
    pub(crate) fn to_text(&self) -> String {
        let mut out = String::new();
        let verb = if self.dry_run { "would move" } else { "moved" };
        let _ = writeln!(
            out,
            "{} {} → {} (group {}{}): {} letters read",
            if self.dry_run { "dry run:" } else { "redrive:" },
            self.dlq_topic,
            self.topic,
            self.group,
            if self.dry_run {
                ", nothing published or committed"
            } else {
                ""
            },
            self.letters
        );
        for (p, (from, to)) in &self.read {
            let _ = writeln!(out, "  partition {p}: offsets {from}..{to}");
        }
        let width = self
            .reasons
            .keys()
            .map(String::len)
            .chain([6])
            .max()
            .unwrap_or(6);
        let _ = write!(out, "\n{:<width$}  {:>10}", "reason", verb);
        for why in Leave::ALL {
            let _ = write!(out, "  {:>12}", why.as_str());
        }
        out.push('\n');
        for (reason, t) in &self.reasons {
            let _ = write!(out, "{reason:<width$}  {:>10}", t.moved);
            for why in Leave::ALL {
                let _ = write!(out, "  {:>12}", t.left.get(&why).copied().unwrap_or(0));
            }
            out.push('\n');
        }
        let _ = write!(out, "{:<width$}  {:>10}", "total", self.total_moved());
        for why in Leave::ALL {
            let _ = write!(out, "  {:>12}", self.total_left(why));
        }
        out.push('\n');
        let samples: Vec<(&String, &Sample)> = self
            .reasons
            .iter()
            .flat_map(|(r, t)| t.samples.iter().map(move |s| (r, s)))
            .collect();
        if !samples.is_empty() {
            let _ = writeln!(
                out,
                "\nsamples (up to {} per reason):",
                self.samples_per_reason
            );
            for (reason, s) in samples {
                let _ = writeln!(
                    out,
                    "  [{}] {reason} {}/{} from {} written {} record {}\n      error: {}\n      line:  {}",
                    s.verdict,
                    self.dlq_topic,
                    s.letter,
                    s.source,
                    s.written.as_deref().unwrap_or("-"),
                    s.record_time.as_deref().unwrap_or("-"),
                    s.error,
                    s.line
                );
            }
        }
        let poison = self.total_left(Leave::Poison);
        if poison > 0 {
            let _ = writeln!(
                out,
                "\n{poison} poison letters (not valid records) stay: they would only come back. \
                 Name their reason with --reason to move them anyway."
            );
        }
        if self.found_published_before > 0 {
            let _ = writeln!(
                out,
                "\n{} letters had been published by an interrupted run; they were not published again.",
                self.found_published_before
            );
        }
        if !self.ended.is_empty() {
            let _ = writeln!(out, "\n{}", self.ended);
        }
        out
    }
}

fn sample(letter: &Letter<'_>, verdict: &'static str, record_ns: Option<i64>) -> Sample {
    Sample {
        letter: format!("{}@{}", letter.partition, letter.offset),
        source: format!(
            "{}/{}@{}",
            letter.source_topic.unwrap_or("?"),
            letter
                .source_partition
                .map_or_else(|| "?".to_owned(), |p| p.to_string()),
            letter
                .source_offset
                .map_or_else(|| "?".to_owned(), |o| o.to_string()),
        ),
        written: letter.written_ns.map(rfc3339),
        record_time: record_ns.map(rfc3339),
        verdict,
        error: prefix(letter.error, ERROR_PREFIX),
        line: prefix(&String::from_utf8_lossy(letter.value), LINE_PREFIX),
    }
}
