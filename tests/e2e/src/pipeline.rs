//! The pipeline's surroundings for one test: a real tansu broker (in memory or durable) with a
//! fresh topic, dead-letter topic and group, the Loki-compatible receiver, a working folder for
//! logs and inputs, and the environment that points the real `producer` and `consumer` at them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;
use testkit::broker::{unique_name, Broker, BrokerOptions, Storage};
use testkit::loki::{LokiConfig, LokiHandle, LokiReceiver, StoredEntry, FAKE_TENANT};
use testkit::service::{Readiness, ServiceProcess, ServiceSpec, MARKER};
use testkit::topic::{self, ReadUntil, TopicRecord};

use crate::bins::Binary;
use crate::error::{Error, Result};
use crate::kafka;
use crate::wait;

/// The `environment` label the services are given.
pub const ENVIRONMENT: &str = "e2e";

/// How to set up a [`Pipeline`].
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Broker storage. Default: in memory.
    pub storage: Storage,
    /// Partitions of the records topic. Default 3.
    pub partitions: i32,
    /// Let old records through: the receiver does not apply Loki's
    /// `reject_old_samples_max_age` and the consumer's pre-flight check is off
    /// (`LOKI_REJECT_OLD_SAMPLES_MAX_AGE=0s`), both as a Loki configured so would. Needed for
    /// `logs.json`, whose records are dated 2026-11-25 and would age out of the 7-day default.
    /// Default false.
    pub accept_old_records: bool,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            storage: Storage::Memory,
            partitions: 3,
            accept_old_records: false,
        }
    }
}

/// A broker with fresh topics, a receiver, and where the services' logs go.
#[derive(Debug)]
pub struct Pipeline {
    /// The broker.
    pub broker: Broker,
    /// The Loki-compatible receiver (auth off: tenant `fake`).
    pub loki: LokiHandle,
    /// The records topic.
    pub topic: String,
    /// The dead-letter topic.
    pub dlq: String,
    /// The consumer group.
    pub group: String,
    /// Partitions of the records topic.
    pub partitions: i32,
    accept_old_records: bool,
    /// `None` only while dropping.
    dir: Option<TempDir>,
}

/// Set to keep a test's folder (service logs, inputs) after it ends; its path is printed.
pub const KEEP_LOGS_ENV: &str = "E2E_KEEP_LOGS";

impl Drop for Pipeline {
    fn drop(&mut self) {
        if std::env::var_os(KEEP_LOGS_ENV).is_some() {
            if let Some(dir) = self.dir.take() {
                eprintln!("e2e: kept the test folder {}", dir.keep().display());
            }
        }
    }
}

impl Pipeline {
    /// Starts the broker and the receiver and creates the topics.
    pub async fn start(options: PipelineOptions) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{MARKER}e2e-"))
            .tempdir()
            .map_err(Error::io("cannot create the test folder"))?;
        let broker = Broker::start(BrokerOptions {
            storage: options.storage.clone(),
            ..BrokerOptions::default()
        })
        .await?;
        let topic = unique_name("e2e-logs");
        let dlq = format!("{topic}-dlq");
        broker.create_topic(&topic, options.partitions).await?;
        broker.create_topic(&dlq, 1).await?;
        let mut config = LokiConfig::default().without_rate_limits();
        config.limits.reject_old_samples = !options.accept_old_records;
        let loki = LokiReceiver::start(config).await?;
        Ok(Self {
            broker,
            loki,
            topic,
            dlq,
            group: unique_name("e2e-group"),
            partitions: options.partitions,
            accept_old_records: options.accept_old_records,
            dir: Some(dir),
        })
    }

    /// The test's working folder (service logs, input files); removed with the pipeline.
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or_else(|| Path::new("."), TempDir::path)
    }

    /// A path in the working folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    /// The consumer's environment: this pipeline's broker, topics, group and receiver, with
    /// intervals shortened for tests (batches flush after 200 ms, commits every 200 ms).
    pub fn consumer_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("KAFKA_BOOTSTRAP_SERVERS", self.broker.bootstrap_servers()),
            ("KAFKA_TOPIC", self.topic.clone()),
            ("KAFKA_DLQ_TOPIC", self.dlq.clone()),
            ("KAFKA_GROUP_ID", self.group.clone()),
            ("KAFKA_SESSION_TIMEOUT", "6s".into()),
            ("KAFKA_COMMIT_INTERVAL", "200ms".into()),
            ("LOKI_URL", self.loki.url().to_owned()),
            ("LOKI_READY_INTERVAL", "200ms".into()),
            ("BATCH_MAX_WAIT", "200ms".into()),
            ("RETRY_MIN_BACKOFF", "50ms".into()),
            ("RETRY_MAX_BACKOFF", "500ms".into()),
            ("LAG_INTERVAL", "500ms".into()),
            ("SHUTDOWN_TIMEOUT", "10s".into()),
            ("ENVIRONMENT", ENVIRONMENT.into()),
            ("LOG_FORMAT", "text".into()),
            ("LOG_LEVEL", "info,rdkafka=warn".into()),
        ];
        if self.accept_old_records {
            env.push(("LOKI_REJECT_OLD_SAMPLES_MAX_AGE", "0s".into()));
        }
        env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    /// The producer's environment: this pipeline's broker and topic, intervals shortened.
    pub fn producer_env(&self) -> Vec<(String, String)> {
        [
            ("KAFKA_BOOTSTRAP_SERVERS", self.broker.bootstrap_servers()),
            ("KAFKA_TOPIC", self.topic.clone()),
            ("METADATA_REFRESH_INTERVAL", "500ms".into()),
            ("FOLLOW_POLL_INTERVAL", "50ms".into()),
            ("PROGRESS_INTERVAL", "2s".into()),
            ("SHUTDOWN_TIMEOUT", "20s".into()),
            ("ENVIRONMENT", ENVIRONMENT.into()),
            ("LOG_FORMAT", "text".into()),
            ("LOG_LEVEL", "info,rdkafka=warn".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Starts `consumer run` and waits until it serves `/healthz`.
    pub async fn start_consumer(&self, name: &str) -> Result<ServiceProcess> {
        self.start_consumer_with(name, &[]).await
    }

    /// Starts `consumer run` with `extra` settings over [`consumer_env`](Self::consumer_env).
    pub async fn start_consumer_with(
        &self,
        name: &str,
        extra: &[(&str, &str)],
    ) -> Result<ServiceProcess> {
        let mut env = self.consumer_env();
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let spec = ServiceSpec::run(name, Binary::Consumer.path()?, env, self.dir());
        Ok(ServiceProcess::start(spec).await?)
    }

    /// Starts `producer` with `args` (e.g. `["run", "--input", path, "--once"]`).
    pub async fn start_producer(
        &self,
        name: &str,
        args: &[&str],
        readiness: Readiness,
    ) -> Result<ServiceProcess> {
        self.start_producer_with(name, args, &[], readiness).await
    }

    /// Starts `producer` with `args` and `extra` settings over
    /// [`producer_env`](Self::producer_env).
    pub async fn start_producer_with(
        &self,
        name: &str,
        args: &[&str],
        extra: &[(&str, &str)],
        readiness: Readiness,
    ) -> Result<ServiceProcess> {
        let mut env = self.producer_env();
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let mut spec = ServiceSpec::run(name, Binary::Producer.path()?, env, self.dir());
        spec.args = args.iter().map(|a| (*a).to_owned()).collect();
        spec.readiness = readiness;
        Ok(ServiceProcess::start(spec).await?)
    }

    /// The group's committed offsets per partition.
    pub async fn committed(&self) -> Result<BTreeMap<i32, i64>> {
        kafka::committed_offsets(
            &self.broker.bootstrap_servers(),
            &self.group,
            &self.topic,
            self.partitions,
        )
        .await
    }

    /// Every message of the records topic (at least `at_least` of them, then none for a
    /// second), by partition and offset.
    pub async fn read_topic(&self, at_least: usize) -> Result<Vec<TopicRecord>> {
        self.read(&self.topic, at_least, Duration::from_secs(60))
            .await
    }

    /// Every message of the dead-letter topic (once none came for a second), by partition and
    /// offset.
    pub async fn read_dlq(&self) -> Result<Vec<TopicRecord>> {
        self.read(&self.dlq, 0, Duration::from_secs(30)).await
    }

    async fn read(
        &self,
        topic: &str,
        at_least: usize,
        within: Duration,
    ) -> Result<Vec<TopicRecord>> {
        let bootstrap = self.broker.bootstrap_servers();
        let until = ReadUntil::Quiet { at_least };
        Ok(topic::read_topic(&bootstrap, topic, until, within).await?)
    }

    /// Every entry the receiver holds.
    pub fn stored(&self) -> Vec<StoredEntry> {
        self.loki.entries(FAKE_TENANT)
    }

    /// Waits until the receiver holds at least `n` entries.
    pub async fn wait_stored(&self, n: usize, timeout: Duration) -> Result<()> {
        wait::until(&format!("{n} entries in the receiver"), timeout, || {
            let stored = self.loki.stats().entries_stored as usize;
            async move {
                if stored >= n {
                    Ok(())
                } else {
                    Err(format!("{stored} stored"))
                }
            }
        })
        .await
    }

    /// Waits until the group committed every partition up to `ends` (partition → offset after
    /// the last message).
    pub async fn wait_committed(&self, ends: &BTreeMap<i32, i64>, timeout: Duration) -> Result<()> {
        wait::until("every offset committed", timeout, || async {
            match self.committed().await {
                Ok(committed) if &committed == ends => Ok(()),
                Ok(committed) => Err(format!("committed {committed:?}, ends {ends:?}")),
                Err(error) => Err(error.to_string()),
            }
        })
        .await
    }
}

/// Partition → offset after its last message, from a topic's messages.
pub fn ends_of(messages: &[TopicRecord]) -> BTreeMap<i32, i64> {
    let mut ends = BTreeMap::new();
    for message in messages {
        let end = ends.entry(message.partition).or_insert(0);
        *end = (*end).max(message.offset + 1);
    }
    ends
}
