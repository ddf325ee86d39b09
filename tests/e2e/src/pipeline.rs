//! The pipeline's surroundings for one test: a Kafka with a fresh topic, dead-letter topic and
//! group, a Loki, a working folder for logs and inputs, and the environment that points the
//! real `producer` and `consumer` at them. Kafka is a tansu broker of the harness (in memory or
//! durable) and Loki the harness's receiver, unless the run names external ones
//! ([`crate::external`]); each test labels its records with an `environment` of its own, so it
//! finds exactly its records in a Loki it shares.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schema::Timestamp;
use tempfile::TempDir;
use testkit::broker::{self, unique_name, Broker, BrokerOptions, Storage};
use testkit::loki::StoredEntry;
use testkit::service::{Readiness, ServiceProcess, ServiceSpec, MARKER};
use testkit::topic::{self, ReadUntil, TopicRecord};

use crate::bins::Binary;
use crate::error::{Error, Result};
use crate::external::Service;
use crate::kafka;
use crate::loki::Loki;
use crate::wait;

/// How long an external Kafka may take to show a new topic in its metadata.
const TOPIC_TIMEOUT: Duration = Duration::from_secs(60);

/// How far from now the records of a test may be dated unless the test says otherwise
/// ([`PipelineOptions::records_between`]): fresh records are dated up to ten minutes back, and
/// Loki accepts entries up to ten minutes ahead.
const FRESH: Duration = Duration::from_secs(3600);

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
    /// The span of the records' timestamps, both ends included: where Loki is queried for
    /// them. Default: within an hour of the pipeline's start.
    pub records_between: Option<(Timestamp, Timestamp)>,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            storage: Storage::Memory,
            partitions: 3,
            accept_old_records: false,
            records_between: None,
        }
    }
}

/// The Kafka of one test.
#[derive(Debug)]
pub enum Kafka {
    /// A tansu broker of the harness, started for this test.
    Harness(Broker),
    /// A Kafka the test does not own (`E2E_KAFKA_BOOTSTRAP_SERVERS`).
    External(String),
}

impl Kafka {
    /// The `bootstrap.servers` of the services and clients.
    pub fn bootstrap_servers(&self) -> String {
        match self {
            Self::Harness(broker) => broker.bootstrap_servers(),
            Self::External(bootstrap) => bootstrap.clone(),
        }
    }

    /// The harness's broker (to restart it); `None` for an external Kafka.
    pub fn broker_mut(&mut self) -> Option<&mut Broker> {
        match self {
            Self::Harness(broker) => Some(broker),
            Self::External(_) => None,
        }
    }

    async fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        match self {
            Self::Harness(broker) => Ok(broker.create_topic(name, partitions).await?),
            Self::External(bootstrap) => {
                Ok(broker::create_topic(bootstrap, name, partitions, TOPIC_TIMEOUT).await?)
            }
        }
    }
}

/// A Kafka with fresh topics, a Loki, and where the services' logs go.
#[derive(Debug)]
pub struct Pipeline {
    /// The Kafka.
    pub kafka: Kafka,
    /// The Loki (auth off: tenant `fake`).
    pub loki: Loki,
    /// The `environment` label of this test's records (unique to it).
    pub environment: String,
    /// The records topic.
    pub topic: String,
    /// The dead-letter topic.
    pub dlq: String,
    /// The consumer group.
    pub group: String,
    /// Partitions of the records topic.
    pub partitions: i32,
    accept_old_records: bool,
    /// Where Loki is queried for the records: `[start, end)` in ns.
    window: (i64, i64),
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
    /// Starts (or, in external mode, connects to) Kafka and Loki and creates the topics.
    pub async fn start(options: PipelineOptions) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{MARKER}e2e-"))
            .tempdir()
            .map_err(Error::io("cannot create the test folder"))?;
        let kafka = match Service::Kafka.external() {
            Some(bootstrap) => Kafka::External(bootstrap),
            None => Kafka::Harness(
                Broker::start(BrokerOptions {
                    storage: options.storage.clone(),
                    ..BrokerOptions::default()
                })
                .await?,
            ),
        };
        let topic = unique_name("e2e-logs");
        let dlq = format!("{topic}-dlq");
        kafka.create_topic(&topic, options.partitions).await?;
        kafka.create_topic(&dlq, 1).await?;
        let loki = Loki::start(options.accept_old_records).await?;
        let window = match options.records_between {
            Some((first, last)) => (first.as_nanos(), last.as_nanos().saturating_add(1)),
            None => {
                let now = Timestamp::now().as_nanos();
                let fresh = FRESH.as_nanos() as i64;
                (now - fresh, now + fresh)
            }
        };
        Ok(Self {
            kafka,
            loki,
            environment: unique_name("e2e"),
            topic,
            dlq,
            group: unique_name("e2e-group"),
            partitions: options.partitions,
            accept_old_records: options.accept_old_records,
            window,
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
            ("KAFKA_BOOTSTRAP_SERVERS", self.kafka.bootstrap_servers()),
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
            ("ENVIRONMENT", self.environment.clone()),
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
            ("KAFKA_BOOTSTRAP_SERVERS", self.kafka.bootstrap_servers()),
            ("KAFKA_TOPIC", self.topic.clone()),
            ("METADATA_REFRESH_INTERVAL", "500ms".into()),
            ("FOLLOW_POLL_INTERVAL", "50ms".into()),
            ("PROGRESS_INTERVAL", "2s".into()),
            ("SHUTDOWN_TIMEOUT", "20s".into()),
            ("ENVIRONMENT", self.environment.clone()),
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
            &self.kafka.bootstrap_servers(),
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
        let bootstrap = self.kafka.bootstrap_servers();
        let until = ReadUntil::Quiet { at_least };
        Ok(topic::read_topic(&bootstrap, topic, until, within).await?)
    }

    /// Every entry of this test that Loki holds (its `environment`, its records' span).
    pub async fn stored(&self) -> Result<Vec<StoredEntry>> {
        let (start, end) = self.window;
        self.loki.entries(&self.environment, start, end).await
    }

    /// How many entries of this test Loki holds: the receiver's count when it is the
    /// harness's (it holds only this test's), else the entries its query API returns.
    pub async fn stored_count(&self) -> Result<usize> {
        match self.loki.receiver() {
            Some(receiver) => Ok(receiver.stats().entries_stored as usize),
            None => Ok(self.stored().await?.len()),
        }
    }

    /// Waits until Loki holds at least `n` entries of this test.
    pub async fn wait_stored(&self, n: usize, timeout: Duration) -> Result<()> {
        wait::until(&format!("{n} entries in Loki"), timeout, || async move {
            match self.stored_count().await {
                Ok(stored) if stored >= n => Ok(()),
                Ok(stored) => Err(format!("{stored} stored")),
                Err(error) => Err(error.to_string()),
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
