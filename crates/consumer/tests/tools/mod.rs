//! Helpers of the command-line tools' tests (`consumer redrive`, `consumer audit`): records
//! with chosen timestamps, dead letters written as the consumer writes them, whole topics read
//! back with headers, committed offsets, and the `consumer` binary run as a process.
#![allow(dead_code, missing_docs)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use testkit::service::{run_to_exit, Finished, Readiness, ServiceProcess, ServiceSpec};
use testkit::topic::{read_topic, ReadUntil, TopicRecord};

/// The canonical line of a record (what the producer writes and Loki stores).
pub(crate) fn line(ts_ns: i64, service: &str, level: &str, message: &str) -> String {
    let ts = schema::Timestamp::from_nanos(ts_ns)
        .expect("timestamp")
        .to_rfc3339();
    let raw = serde_json::json!({
        "timestamp": ts,
        "level": level,
        "service": service,
        "message": message,
    })
    .to_string();
    schema::parse_record(&raw).expect("valid record").to_json()
}

/// Now, in ns since the epoch.
pub(crate) fn now_ns() -> i64 {
    schema::Timestamp::now().as_nanos()
}

/// The service of a canonical line.
pub(crate) fn service_of(line: &str) -> String {
    schema::parse_record(line)
        .expect("valid record")
        .service
        .to_string()
}

/// An idempotent producer with `acks=all`.
pub(crate) fn producer(bootstrap: &str) -> FutureProducer {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5");
    c.create().expect("producer")
}

/// One message to write: key, value, headers.
pub(crate) struct Outgoing {
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl Outgoing {
    /// A dead letter as the consumer writes it for a record of `source_topic`.
    pub(crate) fn letter(
        value: &str,
        reason: &str,
        source_topic: &str,
        partition: i32,
        offset: i64,
    ) -> Self {
        Self {
            key: None,
            value: value.as_bytes().to_vec(),
            headers: vec![
                ("dlq-error".into(), format!("rejected: {reason}")),
                ("dlq-reason".into(), reason.into()),
                ("dlq-source-topic".into(), source_topic.into()),
                ("dlq-source-partition".into(), partition.to_string()),
                ("dlq-source-offset".into(), offset.to_string()),
            ],
        }
    }
}

/// Writes `messages` to `topic` and waits for every acknowledgement.
pub(crate) async fn write(bootstrap: &str, topic: &str, messages: &[Outgoing]) {
    let p = producer(bootstrap);
    let sends: Vec<_> = messages
        .iter()
        .map(|m| {
            let mut headers = OwnedHeaders::new();
            for (k, v) in &m.headers {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                });
            }
            let mut r: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
                .payload(m.value.as_slice())
                .headers(headers);
            if let Some(k) = &m.key {
                r = r.key(k.as_slice());
            }
            p.send(r, Duration::from_secs(30))
        })
        .collect();
    for s in sends {
        s.await.map_err(|(e, _)| e).expect("written");
    }
    p.flush(Duration::from_secs(10)).expect("flush");
}

/// Every message of `topic`, with headers, to the end as at the call.
pub(crate) async fn read_all(bootstrap: &str, topic: &str) -> Vec<TopicRecord> {
    read_topic(
        bootstrap,
        topic,
        ReadUntil::HighWatermarks,
        Duration::from_secs(60),
    )
    .await
    .unwrap_or_else(|e| panic!("reading {topic}: {e}"))
}

/// The offsets `group` committed on `topic`'s `partitions` (`None`: none).
pub(crate) async fn committed(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> BTreeMap<i32, Option<i64>> {
    let (bootstrap, group, topic) = (bootstrap.to_owned(), group.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &bootstrap)
            .set("group.id", &group)
            .set("enable.auto.commit", "false");
        let consumer: BaseConsumer = c.create().expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(&topic, p);
        }
        let mut attempt = 0;
        let list = loop {
            match consumer.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
                Ok(list) => break list,
                Err(e) if attempt < 4 => {
                    eprintln!("committed offsets of {group}: {e}; asking again");
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => panic!("committed offsets of {group}: {e}"),
            }
        };
        list.elements()
            .iter()
            .map(|e| {
                let o = match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                };
                (e.partition(), o)
            })
            .collect()
    })
    .await
    .expect("committed query")
}

/// Commits `offsets` (topic, partition → offset) for `group` without joining it.
pub(crate) async fn commit(bootstrap: &str, group: &str, offsets: &[(&str, i32, i64)]) {
    let mut tpl = TopicPartitionList::new();
    for (t, p, o) in offsets {
        tpl.add_partition_offset(t, *p, Offset::Offset(*o))
            .expect("offset");
    }
    let (bootstrap, group) = (bootstrap.to_owned(), group.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &bootstrap)
            .set("group.id", &group)
            .set("enable.auto.commit", "false");
        let consumer: BaseConsumer = c.create().expect("consumer");
        consumer.commit(&tpl, CommitMode::Sync).expect("commit");
    })
    .await
    .expect("commit task");
}

/// The environment of the `consumer` binary: exactly these variables, plus text logs.
pub(crate) fn vars(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    env.push(("LOG_FORMAT".into(), "text".into()));
    env.push(("LOG_LEVEL".into(), "info,rdkafka=warn".into()));
    env
}

/// Runs `consumer ARGS` to its exit (at most `within`).
pub(crate) async fn run_consumer(
    args: &[&str],
    env: &[(String, String)],
    within: Duration,
) -> Finished {
    run_to_exit(Path::new(env!("CARGO_BIN_EXE_consumer")), args, env, within)
        .await
        .unwrap_or_else(|e| panic!("consumer {args:?}: {e}"))
}

/// `consumer ARGS` as a process that serves nothing (a command-line tool), to be killed.
pub(crate) async fn spawn_consumer_tool(
    name: &str,
    args: &[&str],
    env: Vec<(String, String)>,
    logs: &Path,
) -> ServiceProcess {
    let mut spec = ServiceSpec::run(name, env!("CARGO_BIN_EXE_consumer"), env, logs);
    spec.args = args.iter().map(|a| (*a).to_owned()).collect();
    spec.readiness = Readiness::Spawned;
    ServiceProcess::start(spec)
        .await
        .unwrap_or_else(|e| panic!("{name} starts: {e}"))
}

/// `consumer run` as a service process, ready once it serves `/healthz`.
pub(crate) async fn start_consumer(
    name: &str,
    env: Vec<(String, String)>,
    logs: &Path,
) -> ServiceProcess {
    let mut spec = ServiceSpec::run(name, env!("CARGO_BIN_EXE_consumer"), env, logs);
    spec.ready_within = Duration::from_secs(30);
    ServiceProcess::start(spec)
        .await
        .unwrap_or_else(|e| panic!("{name} starts: {e}"))
}

/// The report printed on stdout, as JSON (`--format json`).
pub(crate) fn report(finished: &Finished) -> serde_json::Value {
    serde_json::from_str(&finished.stdout).unwrap_or_else(|e| {
        panic!(
            "report is not JSON ({e}); stdout:\n{}\nstderr:\n{}",
            finished.stdout, finished.stderr
        )
    })
}
