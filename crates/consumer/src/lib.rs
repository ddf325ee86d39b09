//! The consumer service: a Kafka consumer group that batches log records into Grafana Loki
//! pushes and commits offsets only after Loki (or the dead-letter topic) has the data
//! (DESIGN.md, "Delivery semantics"; LOKI.md).
//!
//! [`run`] wires the pieces: `kafka` (group client, rebalances, lag, start offsets), `pipeline`
//! (the consume loop) with `intake` (message → entry of a stream's batch), `labels`, `batch`,
//! `flow` (backpressure), `gaps` (offset gap repair) and `offsets`; `inflight` and `deliver`
//! (retries and 400 bisection), `loki` (the client), `health` (Loki's health, one owner),
//! `tenants` (a record's tenant, per-tenant back-off and in-flight limits), `dlq`, `retry`,
//! `metrics` and the admin server from the `service` crate.

mod audit;
mod batch;
mod config;
mod deliver;
mod dlq;
mod flow;
mod gaps;
mod health;
mod inflight;
mod intake;
mod kafka;
mod labels;
mod loki;
mod metrics;
mod moment;
mod offsets;
mod output;
mod pipeline;
mod progress;
mod redrive;
mod retry;
mod scan;
mod tenants;

use std::sync::Arc;

use service::admin::{self, AdminState, Readiness};
use service::config::ConfigError;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

pub use audit::{audit, AuditArgs, AuditError, OffsetRange, Outcome as AuditOutcome, QueryError};
pub use config::{ConsumerConfig, Encoding, OversizeLines};
pub use kafka::KafkaSetupError;
pub use loki::ClientError;
pub use moment::Moment;
pub use output::Format;
pub use pipeline::Summary;
pub use redrive::{
    redrive, Ending, Outcome as RedriveOutcome, RedriveArgs, RedriveError, DEFAULT_GROUP,
};

/// Why the service could not start or run.
#[derive(Debug, Error)]
pub enum RunError {
    /// The settings cannot run the service (checked by [`ConsumerConfig::validate`] too, e.g.
    /// an empty `http_listen`).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The admin port could not be bound.
    #[error("binding http_listen {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Kafka could not be set up (unreachable, topic missing, bad settings).
    #[error(transparent)]
    Kafka(#[from] KafkaSetupError),
    /// The Loki client could not be built.
    #[error(transparent)]
    Loki(#[from] ClientError),
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// A start-up task panicked or was cancelled.
    #[error("start-up task failed: {0}")]
    Task(String),
}

/// Runs the consumer until `shutdown` is cancelled; returns what it did.
pub async fn run(
    config: ConsumerConfig,
    registry: prometheus::Registry,
    shutdown: CancellationToken,
) -> Result<Summary, RunError> {
    let addr = config.http_addr()?;
    let flags = config.feature_flags();
    admin::register_common_metrics(
        &registry,
        "consumer",
        env!("CARGO_PKG_VERSION"),
        ConsumerConfig::KNOWN_FLAGS,
        &flags,
    )?;
    let metrics = Metrics::new(
        &registry,
        &config.kafka_group_id,
        &config.kafka.topic,
        config.service.feature_enhanced_metrics,
    )?;
    let readiness = Readiness::new();
    readiness.set("kafka", false, "starting");
    let health = Arc::new(health::LokiHealth::new(readiness.clone(), metrics.clone()));
    let listener = admin::bind(addr)
        .await
        .map_err(|source| RunError::Bind { addr, source })?;
    tracing::info!(addr = %listener.local_addr().map_or(addr, |a| a), "admin server listening");
    let admin_stop = CancellationToken::new();
    let app = admin::router(AdminState {
        service: "consumer",
        version: env!("CARGO_PKG_VERSION"),
        flags,
        registry: registry.clone(),
        readiness: readiness.clone(),
    });
    let admin_task = tokio::spawn(admin::serve(listener, app, admin_stop.clone()));

    let loki = loki::LokiClient::new(&config)?;
    let Some(consumer) = connect(&config, &metrics, &readiness, &shutdown).await? else {
        admin_stop.cancel();
        let _ = admin_task.await;
        return Ok(Summary::default());
    };
    readiness.set("kafka", false, "connected; no partitions assigned yet");
    let dlq = dlq::DeadLetters::new(
        &kafka::base_client_config(&config),
        &config.kafka_dlq_topic,
        &config.kafka.topic,
        metrics.clone(),
    );
    let shared = Arc::new(deliver::Shared {
        loki: loki.clone(),
        dlq,
        metrics: metrics.clone(),
        retry: deliver::RetryPolicy {
            min_backoff: config.retry_min_backoff,
            max_backoff: config.retry_max_backoff,
            max_attempts: config.retry_max_attempts,
            misconfig_interval: config.misconfig_retry_interval,
            persistent_after: config.loki_persistent_error_attempts,
        },
        health: health.clone(),
        abandon: CancellationToken::new(),
    });
    let ready_task = tokio::spawn(health::watch(
        loki,
        health,
        config.loki_ready_interval,
        shutdown.clone(),
    ));
    tracing::info!(
        topic = %config.kafka.topic,
        group = %config.kafka_group_id,
        loki = %service::redact::url_credentials(&config.loki_url),
        cooperative = config.feature_new_consumer,
        "consumer started"
    );
    let summary = pipeline::Pipeline::new(Arc::new(consumer), shared, readiness.clone(), &config)
        .run(shutdown)
        .await;
    readiness.set_draining();
    ready_task.abort();
    admin_stop.cancel();
    let _ = admin_task.await;
    Ok(summary)
}

/// Creates the group consumer once Kafka answers: while no broker does, the service stays up
/// (live, not ready: `/readyz` names the `kafka` check) and tries again every few seconds, as it
/// does when Kafka goes away later; `None` when `shutdown` came first. A missing topic or a
/// refused setting is a configuration error and ends the start.
async fn connect(
    config: &ConsumerConfig,
    metrics: &Metrics,
    readiness: &Readiness,
    shutdown: &CancellationToken,
) -> Result<Option<kafka::LogConsumer>, RunError> {
    const RETRY: std::time::Duration = std::time::Duration::from_secs(2);
    let mut attempts: u64 = 0;
    loop {
        let (c, m) = (config.clone(), metrics.clone());
        let created = tokio::task::spawn_blocking(move || kafka::create_consumer(&c, m))
            .await
            .map_err(|e| RunError::Task(e.to_string()))?;
        match created {
            Ok(consumer) => return Ok(Some(consumer)),
            Err(e @ KafkaSetupError::Unreachable { .. }) => {
                attempts += 1;
                // Once at WARN, then every ~minute: the outage is visible in /readyz meanwhile.
                if attempts == 1 || attempts.is_multiple_of(5) {
                    tracing::warn!(error = %e, attempts, "waiting for kafka");
                }
                readiness.set("kafka", false, e.to_string());
            }
            Err(e) => return Err(e.into()),
        }
        tokio::select! {
            () = shutdown.cancelled() => {
                tracing::info!("shutdown while waiting for kafka");
                return Ok(None);
            }
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}
