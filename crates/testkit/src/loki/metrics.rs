//! The receiver's Prometheus metrics, registered in a [`Registry`] the receiver owns, and the
//! [`Stats`] the control API and the handle derive from them (so the two cannot drift). Names
//! are Loki's where Loki has the metric (LOKI.md: `loki_discarded_samples_total{reason}`).

use std::collections::BTreeMap;

use prometheus::core::Collector;
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use schema::loki::limits::Discard;
use serde::{Deserialize, Serialize};

/// Statuses the receiver answers pushes with, pre-initialised to 0.
const STATUSES: [&str; 10] = [
    "204", "400", "401", "413", "422", "429", "500", "502", "503", DROPPED,
];

/// The `status` of pushes whose connection was closed without an answer.
pub(crate) const DROPPED: &str = "dropped";

/// Discarded entries of one push, by reason (indexed as [`Discard::ALL`]).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct DiscardCounts([u64; Discard::ALL.len()]);

impl DiscardCounts {
    /// Counts `n` entries discarded for `reason`.
    pub(crate) fn add(&mut self, reason: Discard, n: u64) {
        if let Some(i) = Discard::ALL.iter().position(|r| *r == reason) {
            self.0[i] += n;
        }
    }
}

/// The receiver's metrics.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    registry: Registry,
    lines_received: IntCounterVec,
    bytes_received: IntCounterVec,
    discarded: IntCounterVec,
    requests: IntCounterVec,
    duplicates: IntCounter,
    accepted: IntCounter,
    stored: IntGauge,
    multi_stream_pushes: IntCounter,
}

impl Metrics {
    /// Creates the metrics in a fresh registry.
    pub(crate) fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let lines_received = IntCounterVec::new(
            Opts::new(
                "loki_distributor_lines_received_total",
                "Entries received in decodable pushes, before validation.",
            ),
            &["tenant"],
        )?;
        let bytes_received = IntCounterVec::new(
            Opts::new(
                "loki_distributor_bytes_received_total",
                "Line bytes received in decodable pushes, before validation.",
            ),
            &["tenant"],
        )?;
        let discarded = IntCounterVec::new(
            Opts::new(
                "loki_discarded_samples_total",
                "Entries rejected, by Loki's discard reason.",
            ),
            &["reason", "tenant"],
        )?;
        let requests = IntCounterVec::new(
            Opts::new(
                "loki_receiver_requests_total",
                "Push requests by answer status (`dropped`: closed without an answer).",
            ),
            &["status"],
        )?;
        let duplicates = IntCounter::new(
            "loki_receiver_duplicates_total",
            "Accepted entries dropped as exact duplicates of stored ones.",
        )?;
        let accepted = IntCounter::new(
            "loki_receiver_entries_accepted_total",
            "Entries that passed every check (stored, duplicate, or counted in count-only mode).",
        )?;
        let stored = IntGauge::new("loki_receiver_entries_stored", "Entries held in memory.")?;
        let multi_stream_pushes = IntCounter::new(
            "loki_receiver_multi_stream_pushes_total",
            "Decodable pushes carrying more than one stream (Loki answers those with the result \
             of the last stream only, which can hide an earlier stream's rejection behind a 204).",
        )?;
        registry.register(Box::new(lines_received.clone()))?;
        registry.register(Box::new(bytes_received.clone()))?;
        registry.register(Box::new(discarded.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duplicates.clone()))?;
        registry.register(Box::new(accepted.clone()))?;
        registry.register(Box::new(stored.clone()))?;
        registry.register(Box::new(multi_stream_pushes.clone()))?;
        let metrics = Self {
            registry,
            lines_received,
            bytes_received,
            discarded,
            requests,
            duplicates,
            accepted,
            stored,
            multi_stream_pushes,
        };
        metrics.init_statuses();
        Ok(metrics)
    }

    fn init_statuses(&self) {
        for status in STATUSES {
            self.requests.with_label_values(&[status]);
        }
    }

    /// Pre-initialises a tenant's series to 0 (every discard reason).
    pub(crate) fn tenant_seen(&self, tenant: &str) {
        self.lines_received.with_label_values(&[tenant]);
        self.bytes_received.with_label_values(&[tenant]);
        for reason in Discard::ALL {
            self.discarded.with_label_values(&[reason.as_str(), tenant]);
        }
    }

    /// Counts the entries of a decoded push of `streams` streams.
    pub(crate) fn received(&self, tenant: &str, streams: usize, lines: u64, bytes: u64) {
        if streams > 1 {
            self.multi_stream_pushes.inc();
        }
        self.lines_received
            .with_label_values(&[tenant])
            .inc_by(lines);
        self.bytes_received
            .with_label_values(&[tenant])
            .inc_by(bytes);
    }

    /// Counts a push's discarded entries.
    pub(crate) fn discarded(&self, tenant: &str, counts: &DiscardCounts) {
        for (reason, n) in Discard::ALL.iter().zip(counts.0) {
            if n > 0 {
                self.discarded
                    .with_label_values(&[reason.as_str(), tenant])
                    .inc_by(n);
            }
        }
    }

    /// Counts a push's accepted entries, duplicates among them, and the new store size.
    pub(crate) fn ingested(&self, accepted: u64, duplicates: u64, stored: u64) {
        self.accepted.inc_by(accepted);
        self.duplicates.inc_by(duplicates);
        self.stored.set(i64::try_from(stored).unwrap_or(i64::MAX));
    }

    /// Counts an answered (or dropped) push.
    pub(crate) fn request(&self, status: &str) {
        self.requests.with_label_values(&[status]).inc();
    }

    /// Zeroes every metric (control API reset); `tenants` get their series again.
    pub(crate) fn reset<'a>(&self, tenants: impl IntoIterator<Item = &'a str>) {
        self.lines_received.reset();
        self.bytes_received.reset();
        self.discarded.reset();
        self.requests.reset();
        self.duplicates.reset();
        self.accepted.reset();
        self.multi_stream_pushes.reset();
        self.stored.set(0);
        self.init_statuses();
        for tenant in tenants {
            self.tenant_seen(tenant);
        }
    }

    /// The Prometheus text exposition.
    pub(crate) fn encode(&self) -> Result<String, prometheus::Error> {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }

    /// Totals over tenants.
    pub(crate) fn stats(&self) -> Stats {
        Stats {
            entries_stored: u64::try_from(self.stored.get()).unwrap_or(0),
            entries_accepted: self.accepted.get(),
            lines_received: sum_by(&self.lines_received, None).values().sum(),
            bytes_received: sum_by(&self.bytes_received, None).values().sum(),
            discarded: sum_by(&self.discarded, Some("reason")),
            requests: sum_by(&self.requests, Some("status")),
            duplicates: self.duplicates.get(),
            multi_stream_pushes: self.multi_stream_pushes.get(),
        }
    }
}

/// Sums a counter vector's series by the value of `label` (all under `""` when `None`).
fn sum_by(vec: &IntCounterVec, label: Option<&str>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for family in vec.collect() {
        for metric in family.get_metric() {
            let key = label
                .and_then(|name| {
                    metric
                        .get_label()
                        .iter()
                        .find(|l| l.name() == name)
                        .map(|l| l.value().to_owned())
                })
                .unwrap_or_default();
            // Integer counters hold integral values.
            *out.entry(key).or_insert(0) += metric.get_counter().value() as u64;
        }
    }
    out
}

/// What the receiver has seen since start or the last reset, over all tenants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Entries held in memory (0 in count-only mode).
    pub entries_stored: u64,
    /// Entries that passed every check: stored, dropped as duplicates, or (count-only mode)
    /// counted.
    pub entries_accepted: u64,
    /// Entries received in decodable pushes, before validation.
    pub lines_received: u64,
    /// Line bytes received in decodable pushes.
    pub bytes_received: u64,
    /// Rejected entries by Loki's discard reason (`line_too_long`, `rate_limited`…).
    pub discarded: BTreeMap<String, u64>,
    /// Push requests by answer status (`"204"`, `"429"`…, `"dropped"`).
    pub requests: BTreeMap<String, u64>,
    /// Accepted entries dropped as exact duplicates.
    pub duplicates: u64,
    /// Decodable pushes that carried more than one stream.
    #[serde(default)]
    pub multi_stream_pushes: u64,
}

impl Stats {
    /// Entries discarded for `reason`.
    pub fn discarded_for(&self, reason: Discard) -> u64 {
        self.discarded.get(reason.as_str()).copied().unwrap_or(0)
    }

    /// Pushes answered with `status`.
    pub fn requests_with(&self, status: u16) -> u64 {
        self.requests.get(&status.to_string()).copied().unwrap_or(0)
    }

    /// Pushes closed without an answer.
    pub fn requests_dropped(&self) -> u64 {
        self.requests.get(DROPPED).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_sum_series_over_tenants() {
        let m = Metrics::new().unwrap();
        m.tenant_seen("a");
        m.received("a", 1, 3, 30);
        m.received("b", 2, 2, 20);
        let mut counts = DiscardCounts::default();
        counts.add(Discard::LineTooLong, 2);
        m.discarded("a", &counts);
        m.discarded("b", &counts);
        m.request("204");
        m.request("204");
        m.ingested(3, 1, 2);
        let s = m.stats();
        assert_eq!(s.lines_received, 5);
        assert_eq!(s.bytes_received, 50);
        assert_eq!(s.discarded_for(Discard::LineTooLong), 4);
        assert_eq!(s.discarded_for(Discard::RateLimited), 0);
        assert!(s.discarded.contains_key("rate_limited"));
        assert_eq!(s.requests_with(204), 2);
        assert_eq!(s.requests_with(429), 0);
        assert_eq!(
            (s.entries_accepted, s.duplicates, s.entries_stored),
            (3, 1, 2)
        );
        assert_eq!(s.multi_stream_pushes, 1, "only b's push had two streams");
    }

    #[test]
    fn reset_zeroes_everything_and_keeps_series() {
        let m = Metrics::new().unwrap();
        m.received("fake", 2, 3, 30);
        m.request("400");
        m.reset(["fake"]);
        let s = m.stats();
        assert_eq!(s.lines_received, 0);
        assert_eq!(s.multi_stream_pushes, 0);
        assert_eq!(s.requests_with(400), 0);
        assert!(m
            .encode()
            .unwrap()
            .contains("loki_discarded_samples_total{reason=\"line_too_long\",tenant=\"fake\"} 0"));
    }
}
