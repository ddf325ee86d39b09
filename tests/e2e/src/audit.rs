//! The consumer's commit invariant, audited from outside (DESIGN.md, "Delivery semantics"): a
//! partition's committed offset never passes a record that Loki does not hold yet.
//!
//! While a scenario runs, [`CommitAudit::sample`] records the group's committed offsets and
//! *then* the set of lines the receiver holds (in that order: a record delivered between the two
//! reads can only hide a violation, never invent one). Afterwards [`CommitAudit::verify`] reads
//! the topic and checks, for every sample, that each message below a committed offset was among
//! the lines held at that moment.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::time::Duration;

use testkit::topic::TopicRecord;
use tokio::time::Instant;

use crate::pipeline::Pipeline;

/// Samples closer together than this are skipped (each costs a Kafka client).
const MIN_SAMPLE_INTERVAL: Duration = Duration::from_millis(400);

/// One observation.
#[derive(Debug)]
struct Sample {
    label: String,
    committed: BTreeMap<i32, i64>,
    /// Hashes of the lines the receiver held just after `committed` was read.
    delivered: HashSet<u64>,
}

/// Samples of committed offsets against delivered records. See the module documentation.
#[derive(Debug, Default)]
pub struct CommitAudit {
    samples: Vec<Sample>,
    failed_queries: usize,
    last: Option<Instant>,
}

impl CommitAudit {
    /// An audit without samples.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a sample now, labelled `label` (what the scenario was doing). A committed-offsets
    /// or Loki query that fails (broker down) is counted, not an error.
    pub async fn sample(&mut self, pipeline: &Pipeline, label: &str) {
        self.last = Some(Instant::now());
        let committed = match pipeline.committed().await {
            Ok(committed) => committed,
            Err(_) => {
                self.failed_queries += 1;
                return;
            }
        };
        let delivered = match pipeline.stored().await {
            Ok(entries) => entries.iter().map(|entry| line_hash(&entry.line)).collect(),
            Err(_) => {
                self.failed_queries += 1;
                return;
            }
        };
        self.samples.push(Sample {
            label: label.to_owned(),
            committed,
            delivered,
        });
    }

    /// Takes a sample unless the last one is very recent (for use inside polling loops).
    pub async fn sample_now_and_then(&mut self, pipeline: &Pipeline, label: &str) {
        if self
            .last
            .is_none_or(|last| last.elapsed() >= MIN_SAMPLE_INTERVAL)
        {
            self.sample(pipeline, label).await;
        }
    }

    /// Samples taken.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether no sample was taken.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Samples lost to a failed query (the broker was down or busy, Loki did not answer).
    pub fn failed_queries(&self) -> usize {
        self.failed_queries
    }

    /// Samples taken mid-run: something committed, but not everything of `total`.
    pub fn mid_run_samples(&self, total: usize) -> usize {
        self.samples
            .iter()
            .filter(|s| {
                let sum: i64 = s.committed.values().sum();
                sum > 0 && (sum as usize) < total
            })
            .count()
    }

    /// Checks every sample against the topic's `messages`; returns the number of records the
    /// samples covered (committed and checked), or every violation found.
    pub fn verify(&self, messages: &[TopicRecord]) -> Result<usize, String> {
        let mut by_partition: BTreeMap<i32, Vec<&TopicRecord>> = BTreeMap::new();
        for message in messages {
            by_partition
                .entry(message.partition)
                .or_default()
                .push(message);
        }
        let mut violations = Vec::new();
        let mut covered = 0;
        for sample in &self.samples {
            for (partition, committed) in &sample.committed {
                let in_partition = by_partition
                    .get(partition)
                    .map(Vec::as_slice)
                    .unwrap_or(&[]);
                let end = in_partition.last().map_or(0, |m| m.offset + 1);
                if *committed > end {
                    violations.push(format!(
                        "[{}] partition {partition}: committed {committed} past the end {end}",
                        sample.label
                    ));
                }
                for message in in_partition.iter().filter(|m| m.offset < *committed) {
                    covered += 1;
                    let line = message.text();
                    if !sample.delivered.contains(&line_hash(&line)) {
                        violations.push(format!(
                            "[{}] partition {partition}: offset {} committed ({committed}) but \
                             its record was not in Loki: {}",
                            sample.label, message.offset, line
                        ));
                    }
                }
            }
        }
        if violations.is_empty() {
            Ok(covered)
        } else {
            let shown: Vec<&String> = violations.iter().take(10).collect();
            Err(format!(
                "{} commits ran ahead of delivery; first ones:\n{}",
                violations.len(),
                shown
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            ))
        }
    }
}

fn line_hash(line: &str) -> u64 {
    // DefaultHasher::new() has fixed keys: equal lines hash equally within the process.
    let mut hasher = DefaultHasher::new();
    line.hash(&mut hasher);
    hasher.finish()
}
