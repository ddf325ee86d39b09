//! The producer service wired together: the HTTP server (ingest and admin routes), the Kafka
//! sink, readiness from a metadata refresher, one optional file source, and shutdown: stop
//! reading and accepting, wait for Kafka to acknowledge what is in flight (bounded by
//! `SHUTDOWN_TIMEOUT`), report what was left.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use prometheus::Registry;
use service::admin::{AdminState, Readiness};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::ProducerConfig;
use crate::file::{FileError, FileOptions};
use crate::follow::FollowError;
use crate::ingest::IngestState;
use crate::kafka::{Sink, SinkError};
use crate::metrics::Metrics;
use crate::report::Report;

/// The version reported by `/healthz` and `build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where records come from besides HTTP.
#[derive(Debug, Clone)]
pub enum Source {
    /// HTTP ingest only.
    Http,
    /// A file read once or in a loop.
    File(FileOptions),
    /// A growing NDJSON file (`--follow`).
    Follow(PathBuf),
}

/// What `producer run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The record source.
    pub source: Source,
    /// Create the topic when missing (`--create-topic`, or `KAFKA_CREATE_TOPIC`).
    pub create_topic: bool,
    /// Stop at the first invalid record (`--strict`, file sources).
    pub strict: bool,
}

/// The service could not start or run.
#[derive(Debug, Error)]
pub enum RunError {
    /// The HTTP port cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Kafka is unusable.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The file source failed.
    #[error(transparent)]
    File(#[from] FileError),
    /// The follow source failed.
    #[error(transparent)]
    Follow(#[from] FollowError),
    /// The HTTP server failed.
    #[error("http server failed: {0}")]
    Serve(#[source] std::io::Error),
    /// A task panicked or was cancelled.
    #[error("internal task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The metrics could not be registered.
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl RunOptions {
    /// The exit status of `producer run` after `report`: [`Report::exit_code`] for a file read
    /// once; 0 for the services that run until a signal (`--loop`, `--follow`, HTTP only), which
    /// log what they left undelivered.
    pub fn exit_code(&self, report: &Report) -> u8 {
        match &self.source {
            Source::File(f) if !f.repeat => report.exit_code(),
            _ => 0,
        }
    }
}

/// Runs the producer: registers its metrics into `registry` (served at `/metrics`), starts
/// ([`App::build`]) and runs it ([`App::run`]) until the source is done (`--once`) or
/// `shutdown` is cancelled; returns what it did.
pub async fn run(
    config: ProducerConfig,
    options: RunOptions,
    registry: Registry,
    shutdown: CancellationToken,
) -> Result<Report, RunError> {
    let flags = config.feature_flags();
    service::admin::register_common_metrics(
        &registry,
        "producer",
        VERSION,
        ProducerConfig::KNOWN_FLAGS,
        &flags,
    )?;
    let metrics = Arc::new(Metrics::register(
        &registry,
        config.service.feature_enhanced_metrics,
    )?);
    tracing::info!(
        version = VERSION,
        environment = %config.service.environment,
        topic = %config.kafka.topic,
        bootstrap = %service::redact::url_credentials(&config.kafka.bootstrap_servers),
        ingest_auth = config.ingest_auth(),
        flags = ?flags,
        "producer starting"
    );
    let app = App::build(config, options, registry, metrics).await?;
    app.run(shutdown).await
}

impl RunError {
    /// The configuration cannot work (a refused librdkafka setting, a topic that does not exist
    /// and may not be created): `producer run` exits with `EX_CONFIG` (78), as for an invalid
    /// setting. Kafka being unreachable is not one: the producer waits for it.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            Self::Sink(SinkError::Client(_) | SinkError::TopicMissing(_))
        )
    }
}

/// A started, not yet running producer: port bound, Kafka client created (not yet connected).
pub struct App {
    config: ProducerConfig,
    options: RunOptions,
    registry: Registry,
    metrics: Arc<Metrics>,
    sink: Arc<Sink>,
    listener: Option<TcpListener>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("options", &self.options)
            .field("addr", &self.local_addr())
            .finish_non_exhaustive()
    }
}

impl App {
    /// Binds the HTTP port and creates the Kafka producer. Kafka is first contacted by
    /// [`App::run`], once `/healthz` answers.
    pub async fn build(
        config: ProducerConfig,
        options: RunOptions,
        registry: Registry,
        metrics: Arc<Metrics>,
    ) -> Result<Self, RunError> {
        let listener = match config.http_addr() {
            Some(addr) => Some(
                service::admin::bind(addr)
                    .await
                    .map_err(|source| RunError::Bind { addr, source })?,
            ),
            None => None,
        };
        let sink = Arc::new(Sink::new(&config)?);
        Ok(Self {
            config,
            options,
            registry,
            metrics,
            sink,
            listener,
        })
    }

    /// The bound HTTP address (when the server is on).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves HTTP (`/healthz` answers at once, `/readyz` once Kafka and the topic are there),
    /// waits for Kafka and checks (or creates) the topic, then runs until the source is done
    /// (`--once`) or `shutdown` is cancelled, and drains.
    pub async fn run(self, shutdown: CancellationToken) -> Result<Report, RunError> {
        let App {
            config,
            options,
            registry,
            metrics,
            sink,
            listener,
        } = self;
        let readiness = Readiness::new();
        readiness.set("kafka", false, "starting");
        let stop_tasks = CancellationToken::new();
        tokio::spawn(refresh_readiness(
            Arc::clone(&sink),
            Arc::clone(&metrics),
            Arc::clone(&readiness),
            config.metadata_refresh_interval,
            stop_tasks.clone(),
        ));
        {
            let readiness = Arc::clone(&readiness);
            let shutdown = shutdown.clone();
            let stop = stop_tasks.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = shutdown.cancelled() => readiness.set_draining(),
                    () = stop.cancelled() => {}
                }
            });
        }
        let server_stop = CancellationToken::new();
        let server = listener.map(|listener| {
            let admin = service::admin::router(AdminState {
                service: "producer",
                version: VERSION,
                flags: config.feature_flags(),
                registry: registry.clone(),
                readiness: Arc::clone(&readiness),
            });
            let ingest = crate::ingest::router(IngestState::new(
                &config,
                Arc::clone(&sink),
                Arc::clone(&metrics),
            ));
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "http server listening");
            }
            tokio::spawn(service::admin::serve(
                listener,
                admin.merge(ingest),
                server_stop.clone(),
            ))
        });

        let create = options.create_topic || config.kafka_create_topic;
        let source_result: Result<Report, RunError> =
            match wait_for_topic(&config, create, &shutdown).await {
                Err(e) => Err(e.into()),
                // Signalled before Kafka answered: nothing was accepted, nothing to drain.
                Ok(false) => Ok(Report::default()),
                Ok(true) => match &options.source {
                    Source::Http => {
                        shutdown.cancelled().await;
                        Ok(Report::default())
                    }
                    Source::File(file_options) => {
                        let (sink, metrics, config, shutdown) = (
                            Arc::clone(&sink),
                            Arc::clone(&metrics),
                            config.clone(),
                            shutdown.clone(),
                        );
                        let mut file_options = file_options.clone();
                        file_options.strict |= options.strict;
                        tokio::task::spawn_blocking(move || {
                            crate::file::run(sink, metrics, &config, &file_options, &shutdown)
                        })
                        .await
                        .map_err(RunError::from)
                        .and_then(|r| r.map_err(RunError::from))
                    }
                    Source::Follow(path) => {
                        let (sink, metrics, config, shutdown, path, strict) = (
                            Arc::clone(&sink),
                            Arc::clone(&metrics),
                            config.clone(),
                            shutdown.clone(),
                            path.clone(),
                            options.strict,
                        );
                        tokio::task::spawn_blocking(move || {
                            crate::follow::run(sink, metrics, &config, &path, strict, &shutdown)
                        })
                        .await
                        .map_err(RunError::from)
                        .and_then(|r| r.map_err(RunError::from))
                    }
                },
            };

        // Stop accepting; requests in progress finish (each waits for its acknowledgements).
        readiness.set_draining();
        server_stop.cancel();
        if let Some(server) = server {
            match tokio::time::timeout(config.service.shutdown_timeout, server).await {
                Ok(Ok(Ok(()))) => tracing::info!("http server stopped"),
                Ok(Ok(Err(e))) => tracing::error!(error = %e, "http server failed"),
                Ok(Err(e)) => tracing::error!(error = %e, "http server task failed"),
                Err(_) => tracing::warn!("http requests still running at the shutdown timeout"),
            }
        }
        let timeout = config.service.shutdown_timeout;
        let flush_sink = Arc::clone(&sink);
        let left = tokio::task::spawn_blocking(move || flush_sink.flush(timeout)).await?;
        stop_tasks.cancel();
        metrics.in_flight.set(left as i64);
        let mut report = source_result?;
        report.undelivered = report.undelivered.max(left as u64);
        if left > 0 {
            tracing::error!(records = left, "records left undelivered at exit");
        } else {
            tracing::info!("everything in flight was acknowledged by kafka");
        }
        Ok(report)
    }
}

/// Checks (or creates) the topic once Kafka answers: while no broker does, the producer stays
/// up (live, not ready: the metadata refresher reports the `kafka` check) and tries again every
/// few seconds, as it does when Kafka goes away later. `Ok(false)` when `shutdown` came first; a
/// missing topic (without `create`) or a refused setting is an error.
async fn wait_for_topic(
    config: &ProducerConfig,
    create: bool,
    shutdown: &CancellationToken,
) -> Result<bool, SinkError> {
    const RETRY: std::time::Duration = std::time::Duration::from_secs(2);
    let mut attempts: u64 = 0;
    loop {
        let checked = tokio::select! {
            () = shutdown.cancelled() => return Ok(false),
            r = crate::kafka::topic::ensure_topic(config, create) => r,
        };
        match checked {
            Ok(()) => return Ok(true),
            Err(e @ SinkError::Unreachable { .. }) => {
                attempts += 1;
                // Once at WARN, then every ~minute: the outage is visible in /readyz meanwhile.
                if attempts == 1 || attempts.is_multiple_of(5) {
                    tracing::warn!(error = %e, attempts, "waiting for kafka");
                }
            }
            Err(e) => return Err(e),
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(false),
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// Sets the `kafka` and `topic` readiness checks from fresh metadata every `interval`.
async fn refresh_readiness(
    sink: Arc<Sink>,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    interval: std::time::Duration,
    stop: CancellationToken,
) {
    loop {
        let s = Arc::clone(&sink);
        let checked =
            tokio::task::spawn_blocking(move || s.check_topic(std::time::Duration::from_secs(3)))
                .await;
        match checked {
            Ok(Ok(partitions)) => {
                readiness.set("kafka", true, "connected");
                readiness.set(
                    "topic",
                    true,
                    format!("{}: {partitions} partitions", sink.topic()),
                );
            }
            Ok(Err(e @ SinkError::TopicMissing(_))) => {
                readiness.set("kafka", true, "connected");
                readiness.set("topic", false, e.to_string());
            }
            Ok(Err(e)) => {
                readiness.set("kafka", false, e.to_string());
                readiness.set("topic", false, "unknown: kafka unreachable");
            }
            Err(e) => readiness.set("kafka", false, e.to_string()),
        }
        metrics.in_flight.set(sink.in_flight() as i64);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
