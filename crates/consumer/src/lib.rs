//! The consumer service: a Kafka consumer group that batches log records into Grafana Loki
//! pushes and commits offsets only after Loki (or the dead-letter topic) has the data
//! (DESIGN.md, "Delivery semantics"; LOKI.md).
//!
//! [`run`] wires the pieces: [`kafka`] (group client, rebalances, lag), [`pipeline`] (the consume
//! loop), [`batch`], [`labels`], [`deliver`] (retries and 400 bisection), [`loki`] (the client),
//! [`dlq`], [`offsets`], [`metrics`] and the admin server from the `service` crate.

pub mod batch;
pub mod config;
pub mod deliver;
pub mod dlq;
pub mod kafka;
pub mod labels;
pub mod loki;
pub mod metrics;
pub mod offsets;
pub mod pipeline;
pub mod retry;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use service::admin::{self, AdminState, Readiness};
use thiserror::Error;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use config::ConsumerConfig;
pub use metrics::Metrics;
pub use pipeline::Summary;

/// Why the service could not start or run.
#[derive(Debug, Error)]
pub enum RunError {
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
    Kafka(#[from] kafka::KafkaSetupError),
    /// The dead-letter producer could not be created.
    #[error("dead-letter producer: {0}")]
    Dlq(rdkafka::error::KafkaError),
    /// The Loki client could not be built.
    #[error(transparent)]
    Loki(#[from] loki::ClientError),
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
        &config.kafka_topic,
        config.feature_enhanced_metrics,
    )?;
    let readiness = Readiness::new();
    readiness.set("kafka", false, "starting");
    readiness.set("loki", false, "not checked yet");
    let listener = admin::bind(config.http_listen)
        .await
        .map_err(|source| RunError::Bind {
            addr: config.http_listen,
            source,
        })?;
    tracing::info!(addr = %listener.local_addr().map_or(config.http_listen, |a| a), "admin server listening");
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
        &config.kafka_topic,
        metrics.clone(),
    )
    .map_err(RunError::Dlq)?;
    let shared = Arc::new(deliver::Shared {
        loki: loki.clone(),
        dlq,
        metrics: metrics.clone(),
        retry: deliver::RetryPolicy {
            min_backoff: config.retry_min_backoff,
            max_backoff: config.retry_max_backoff,
            max_attempts: config.retry_max_attempts,
            misconfig_interval: config.misconfig_retry_interval,
        },
        permits: Semaphore::new(config.max_in_flight_pushes),
        gate: retry::Gate::new(config.retry_min_backoff, config.retry_max_backoff),
        misconfigured: AtomicBool::new(false),
        readiness: readiness.clone(),
        abandon: CancellationToken::new(),
    });
    let ready_task = tokio::spawn(watch_loki(
        loki,
        shared.clone(),
        config.loki_ready_interval,
        shutdown.clone(),
    ));
    tracing::info!(
        topic = %config.kafka_topic,
        group = %config.kafka_group_id,
        loki = %service::redact::url_credentials(&config.loki_url),
        cooperative = config.feature_new_consumer,
        "consumer started"
    );
    let summary = pipeline::Pipeline::new(Arc::new(consumer), shared, &config)
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
            Err(e @ kafka::KafkaSetupError::Unreachable { .. }) => {
                attempts += 1;
                // Once at WARN, then every ~minute: the outage is visible in /readyz meanwhile.
                if attempts == 1 || attempts % 5 == 0 {
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

/// Keeps the `loki` readiness check current (unless a push found Loki misconfigured, which
/// only a successful push clears).
async fn watch_loki(
    loki: loki::LokiClient,
    shared: Arc<deliver::Shared>,
    every: std::time::Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let result = loki.ready().await;
        if shared
            .misconfigured
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            continue;
        }
        match result {
            Ok(()) => shared.readiness.set("loki", true, "ready"),
            Err(e) => shared.readiness.set("loki", false, e),
        }
    }
}
