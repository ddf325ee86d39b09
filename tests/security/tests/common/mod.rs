//! Fixtures shared by the suites that run the product: a tansu broker with fresh topics, the
//! real `producer` and `consumer` binaries started on free loopback ports, log folders that
//! carry the `logpipe-test-` marker, and valid records.

#![allow(dead_code)] // Each suite uses part of the fixtures.
#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::path::PathBuf;
use std::time::Duration;

use logpipe_security::binaries;
use tempfile::TempDir;
use testkit::broker::{unique_name, Broker, BrokerOptions};
use testkit::service::{ServiceProcess, ServiceSpec};
use testkit::topic::{self, ReadUntil, TopicRecord};

/// How long a service may take to answer `/healthz` (generous: builds run beside the tests).
pub(crate) const START_WITHIN: Duration = Duration::from_secs(90);
/// How long a graceful stop may take.
pub(crate) const STOP_WITHIN: Duration = Duration::from_secs(30);
/// How long reading a topic back may take.
pub(crate) const READ_WITHIN: Duration = Duration::from_secs(60);

/// A folder for logs and secret files, removed at the end of the test.
pub(crate) fn work_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("logpipe-test-security-")
        .tempdir()
        .unwrap()
}

/// A tansu broker with a fresh topic of `partitions` partitions (and its name).
pub(crate) async fn broker_with_topic(prefix: &str, partitions: i32) -> (Broker, String) {
    let broker = Broker::start(BrokerOptions::memory())
        .await
        .expect("tansu starts (TANSU_BIN or scripts/test.sh --only install)");
    let topic = unique_name(prefix);
    broker.create_topic(&topic, partitions).await.unwrap();
    (broker, topic)
}

/// `(name, value)` pairs as owned strings.
pub(crate) fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The producer's environment for `broker` and `topic`, plus `extra`.
pub(crate) fn producer_env(
    broker: &Broker,
    topic: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut env = vars(&[
        ("KAFKA_BOOTSTRAP_SERVERS", &broker.bootstrap_servers()),
        ("KAFKA_TOPIC", topic),
        ("LOG_FORMAT", "json"),
        ("METADATA_REFRESH_INTERVAL", "200ms"),
        ("SHUTDOWN_TIMEOUT", "10s"),
    ]);
    env.extend(vars(extra));
    env
}

/// `bin run` named `name` with exactly `env`, logging into `logs`, given [`START_WITHIN`] to
/// answer `/healthz`.
pub(crate) fn run_spec(
    name: &str,
    bin: PathBuf,
    env: Vec<(String, String)>,
    logs: &TempDir,
) -> ServiceSpec {
    let mut spec = ServiceSpec::run(name, bin, env, logs.path());
    spec.ready_within = START_WITHIN;
    spec
}

/// Starts `producer run` (HTTP ingest only) and waits until it is ready (Kafka and topic).
pub(crate) async fn start_producer(env: Vec<(String, String)>, logs: &TempDir) -> ServiceProcess {
    let bin = binaries::producer().unwrap();
    let mut producer = ServiceProcess::start(run_spec("producer", bin, env, logs))
        .await
        .unwrap();
    producer
        .wait_for_status("/readyz", 200, START_WITHIN)
        .await
        .unwrap();
    producer
}

/// Starts `consumer run` and waits until it answers `/healthz`.
pub(crate) async fn start_consumer(env: Vec<(String, String)>, logs: &TempDir) -> ServiceProcess {
    let bin = binaries::consumer().unwrap();
    ServiceProcess::start(run_spec("consumer", bin, env, logs))
        .await
        .unwrap()
}

/// Every record of `topic`, read to the high watermarks it had when the read began (every write
/// the test made was acknowledged before).
pub(crate) async fn read_to_end(broker: &Broker, topic: &str) -> Vec<TopicRecord> {
    topic::read_topic(
        &broker.bootstrap_servers(),
        topic,
        ReadUntil::HighWatermarks,
        READ_WITHIN,
    )
    .await
    .unwrap()
}

/// One valid record (compact JSON, no newline) tagged with `probe` and `seq`; `pad` extra
/// bytes of filler make it longer.
pub(crate) fn record(probe: &str, seq: u64, pad: usize) -> String {
    let filler = if pad == 0 {
        String::new()
    } else {
        format!(",\"pad\":\"{}\"", "x".repeat(pad.saturating_sub(9)))
    };
    format!(
        "{{\"timestamp\":\"2026-01-02T03:04:05.{:03}Z\",\"level\":\"info\",\"service\":\"svc-{}\",\
         \"message\":\"{probe} {seq}\",\"probe\":\"{probe}\",\"seq\":{seq}{filler}}}",
        seq % 1000,
        seq % 4
    )
}

/// Records `from..to` of `probe` as NDJSON.
pub(crate) fn ndjson(probe: &str, from: u64, to: u64) -> String {
    (from..to).map(|s| record(probe, s, 0) + "\n").collect()
}

/// A path inside `dir` holding `content`.
pub(crate) fn write_file(dir: &TempDir, name: &str, content: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, content).unwrap();
    path
}
