//! Loki's health as the consumer sees it, with one owner: the `loki` readiness check, the
//! `consumer_loki_misconfigured` gauge and the flag that pauses consumption while Loki refuses
//! our URL, tenant or credentials (401/403/404). Loki's `/ready` probe and the push outcomes
//! both report here; nothing else writes them. It also counts the pushes Loki accepted: the
//! evidence that Loki works while one push keeps failing, which tells a permanent failure of
//! that push from an outage (`deliver`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use service::admin::Readiness;
use tokio_util::sync::CancellationToken;

use crate::loki::LokiClient;
use crate::metrics::Metrics;

/// The readiness check this module owns.
const CHECK: &str = "loki";

/// What the consumer knows of Loki's health.
#[derive(Debug)]
pub(crate) struct LokiHealth {
    readiness: Arc<Readiness>,
    metrics: Metrics,
    misconfigured: AtomicBool,
    /// Pushes Loki accepted so far.
    accepted: AtomicU64,
}

impl LokiHealth {
    /// Not checked yet: not ready.
    pub(crate) fn new(readiness: Arc<Readiness>, metrics: Metrics) -> Self {
        readiness.set(CHECK, false, "not checked yet");
        Self {
            readiness,
            metrics,
            misconfigured: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
        }
    }

    /// Pushes Loki accepted so far (compare two readings: did Loki take anything between?).
    pub(crate) fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// True while Loki refuses our URL, tenant or credentials: consumption stays paused.
    pub(crate) fn is_misconfigured(&self) -> bool {
        self.misconfigured.load(Ordering::SeqCst)
    }

    /// Loki's `/ready` answered. While a push found Loki misconfigured, only an accepted push
    /// makes the check pass again (`/ready` does not look at credentials).
    pub(crate) fn probed(&self, result: Result<(), String>) {
        if self.is_misconfigured() {
            return;
        }
        match result {
            Ok(()) => self.readiness.set(CHECK, true, "ready"),
            Err(e) => self.readiness.set(CHECK, false, e),
        }
    }

    /// Loki accepted a push.
    pub(crate) fn push_accepted(&self) {
        self.accepted.fetch_add(1, Ordering::SeqCst);
        if self.misconfigured.swap(false, Ordering::SeqCst) {
            self.metrics.loki_misconfigured.set(0);
            self.readiness.set(CHECK, true, "push accepted again");
            tracing::info!("Loki accepts pushes again; resuming");
        }
    }

    /// Loki answered a push with 401, 403 or 404 (`detail`: status and answer).
    pub(crate) fn push_misconfigured(&self, detail: &str) {
        if !self.misconfigured.swap(true, Ordering::SeqCst) {
            self.metrics.loki_misconfigured.set(1);
        }
        self.readiness.set(CHECK, false, detail.to_owned());
    }
}

/// Probes Loki's `/ready` every `every` until `stop`, reporting to `health`.
pub(crate) async fn watch(
    loki: LokiClient,
    health: Arc<LokiHealth>,
    every: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        health.probed(loki.ready().await);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health() -> (Arc<Readiness>, LokiHealth) {
        let readiness = Readiness::new();
        let metrics =
            Metrics::new(&prometheus::Registry::new(), "g", "t", false).expect("metrics register");
        (readiness.clone(), LokiHealth::new(readiness, metrics))
    }

    fn loki_ready(r: &Readiness) -> bool {
        r.snapshot().1.get(CHECK).is_some_and(|c| c.ok)
    }

    #[test]
    fn it_counts_accepted_pushes() {
        let (_r, h) = health();
        assert_eq!(h.accepted(), 0);
        h.push_accepted();
        h.push_accepted();
        assert_eq!(h.accepted(), 2);
    }

    #[test]
    fn the_probe_sets_readiness_until_a_push_finds_loki_misconfigured() {
        let (r, h) = health();
        assert!(!loki_ready(&r), "not ready before the first probe");
        h.probed(Ok(()));
        assert!(loki_ready(&r));
        h.push_misconfigured("401: no");
        assert!(h.is_misconfigured());
        assert!(!loki_ready(&r));
        h.probed(Ok(()));
        assert!(
            !loki_ready(&r),
            "/ready does not clear a credentials problem"
        );
        h.push_accepted();
        assert!(!h.is_misconfigured());
        assert!(loki_ready(&r));
        h.probed(Err("down".into()));
        assert!(!loki_ready(&r));
    }
}
