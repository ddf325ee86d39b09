//! Helpers shared by the producer's integration tests: a producer app on port 0, a consumer
//! reading a topic back, record fixtures and the real `producer` binary.

#![allow(dead_code)]

pub(crate) mod ingest;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use producer::{App, Metrics, ProducerConfig, Report, RunOptions, Source};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

/// A config for tests: the given broker and topic, HTTP on a free port, short intervals.
pub(crate) fn config(bootstrap: &str, topic: &str) -> ProducerConfig {
    let mut config = ProducerConfig {
        follow_poll_interval: Duration::from_millis(50),
        metadata_refresh_interval: Duration::from_millis(500),
        ..ProducerConfig::default()
    };
    config.kafka.bootstrap_servers = bootstrap.to_owned();
    config.kafka.topic = topic.to_owned();
    config.service.http_listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into();
    config.service.shutdown_timeout = Duration::from_secs(20);
    config
}

/// A running producer app.
pub(crate) struct TestApp {
    pub addr: Option<std::net::SocketAddr>,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<Report, producer::RunError>>,
    pub registry: prometheus::Registry,
}

impl TestApp {
    /// Cancels and waits for the report.
    pub(crate) async fn stop(self) -> Report {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("app did not stop in time")
            .expect("app task panicked")
            .expect("app failed")
    }

    /// Waits for the app to end by itself (`--once`).
    pub(crate) async fn finished(self) -> Report {
        tokio::time::timeout(Duration::from_secs(120), self.task)
            .await
            .expect("app did not finish in time")
            .expect("app task panicked")
            .expect("app failed")
    }
}

/// Starts the app with `source` (port 0) and returns once it runs.
pub(crate) async fn spawn_app(config: ProducerConfig, source: Source) -> TestApp {
    let registry = prometheus::Registry::new();
    let metrics = Arc::new(Metrics::register(&registry, true).unwrap());
    let options = RunOptions {
        source,
        create_topic: false,
        strict: false,
    };
    let app = App::build(config, options, registry.clone(), metrics)
        .await
        .expect("app starts");
    let addr = app.local_addr();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run(shutdown.clone()));
    TestApp {
        addr,
        shutdown,
        task,
        registry,
    }
}

/// One message read back from Kafka.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub value: String,
    pub headers: Vec<(String, String)>,
    pub timestamp_ms: Option<i64>,
}

impl Received {
    /// The value as JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.value).expect("value is JSON")
    }

    /// The `seq` field of a fixture record.
    pub(crate) fn seq(&self) -> u64 {
        self.json()["seq"].as_u64().expect("seq field")
    }
}

/// Reads `topic` from the beginning of every partition until `want` messages arrived (then a
/// short quiet period to catch extras) or `deadline` passes.
pub(crate) async fn consume(
    bootstrap: &str,
    topic: &str,
    want: usize,
    within: Duration,
) -> Vec<Received> {
    let bootstrap = bootstrap.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || consume_blocking(&bootstrap, &topic, want, within))
        .await
        .unwrap()
}

fn consume_blocking(bootstrap: &str, topic: &str, want: usize, within: Duration) -> Vec<Received> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("reader-{topic}"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let partitions = md.topics()[0].partitions().len();
    assert!(partitions > 0, "topic {topic} has no partitions");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p as i32, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    let mut quiet_until: Option<Instant> = None;
    while Instant::now() < deadline {
        if out.len() >= want {
            let q = *quiet_until.get_or_insert_with(|| Instant::now() + Duration::from_millis(500));
            if Instant::now() >= q {
                break;
            }
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|x| {
                                (
                                    x.key.to_owned(),
                                    String::from_utf8_lossy(x.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Received {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                    value: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                    headers,
                    timestamp_ms: m.timestamp().to_millis(),
                });
            }
            Some(Err(e)) => eprintln!("consumer error: {e}"),
            None => {}
        }
    }
    out
}

/// A valid NDJSON fixture line with a sequence number.
pub(crate) fn line(seq: u64) -> String {
    let service = ["api", "web", "db", "auth"][(seq % 4) as usize];
    format!(
        r#"{{"timestamp":"2026-01-02T03:04:05.{:03}Z","level":"info","service":"{service}","message":"event {seq}","seq":{seq}}}"#,
        seq % 1000
    ) + "\n"
}

/// Lines `from..to` concatenated.
pub(crate) fn lines(from: u64, to: u64) -> String {
    (from..to).map(line).collect()
}

/// Appends `text` to `path`.
pub(crate) fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f.sync_all().unwrap();
}

/// Asserts the received `seq`s are exactly `0..n`, each once.
pub(crate) fn assert_exactly_once(got: &[Received], n: u64) {
    assert_exactly_once_of(got, &(0..n).collect::<Vec<_>>());
}

/// Asserts the received `seq`s are exactly `want` (sorted), each once.
pub(crate) fn assert_exactly_once_of(got: &[Received], want: &[u64]) {
    let mut seqs: Vec<u64> = got.iter().map(Received::seq).collect();
    seqs.sort_unstable();
    let dups: Vec<u64> = seqs
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0])
        .collect();
    assert!(dups.is_empty(), "duplicates: {dups:?}");
    let missing: Vec<u64> = want
        .iter()
        .copied()
        .filter(|s| seqs.binary_search(s).is_err())
        .collect();
    assert!(
        missing.is_empty(),
        "missing {} records, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let extra: Vec<u64> = seqs
        .iter()
        .copied()
        .filter(|s| want.binary_search(s).is_err())
        .collect();
    assert!(extra.is_empty(), "extra records: {extra:?}");
}

/// Polls `f` every 50 ms until it is true or `within` passes.
pub(crate) async fn eventually(within: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The real `producer` binary.
pub(crate) fn producer_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_producer"))
}

/// A child process killed on drop.
pub(crate) struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `producer` with `args` and the environment of `config`-like pairs.
pub(crate) fn spawn_producer(args: &[&str], env: &[(&str, String)], stderr: &Path) -> Proc {
    let mut cmd = Command::new(producer_bin());
    cmd.args(args)
        .env_clear()
        .env("LOG_FORMAT", "json")
        .env("HTTP_LISTEN", "")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc(cmd.spawn().unwrap())
}

/// Sends a signal to a process.
pub(crate) fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// Waits for a child to exit within `within`.
pub(crate) async fn wait_exit(p: &mut Proc, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = p.0.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "process did not exit in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
