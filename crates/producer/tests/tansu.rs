//! Integration tests against a real Kafka-compatible broker (tansu, in memory): what arrives in
//! Kafka, start-up checks, the HTTP server on a real socket, and SIGTERM during `--once`.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use std::collections::HashMap;
use std::io::BufReader;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use producer::{App, Metrics, RunError, RunOptions, Source};
use producer::{FileOptions, Input};
use testkit::broker::{unique_name, Broker, BrokerOptions};

fn logs_json() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../logs.json")
}

fn once(input: Input) -> Source {
    Source::File(FileOptions {
        input,
        repeat: false,
        rate: None,
        rebase_timestamps: false,
        strict: false,
    })
}

/// The expected Kafka messages of a file: (key, value) in file order.
fn expected(path: &std::path::Path) -> Vec<(String, String)> {
    let f = std::fs::File::open(path).unwrap();
    let mut reader = schema::RecordReader::new(BufReader::new(f));
    let mut out = Vec::new();
    while let Some(item) = reader.next_record() {
        let r = item.expect("logs.json is valid");
        let mut v = Vec::new();
        schema::kafka::encode_value(&r.record, &mut v);
        out.push((
            String::from_utf8(schema::kafka::key(&r.record).to_vec()).unwrap(),
            String::from_utf8(v).unwrap(),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_of_logs_json_arrives_in_per_key_order_with_contract_values_and_headers() {
    let broker = Broker::start(BrokerOptions::memory()).await.unwrap();
    let topic = unique_name("logs");
    broker.create_topic(&topic, 3).await.unwrap();
    let want = expected(&logs_json());
    let started_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;

    let app = spawn_app(
        config(&broker.bootstrap_servers(), &topic),
        once(Input::Path(logs_json())),
    )
    .await;
    let report = app.finished().await;
    assert_eq!(report.exit_code(), 0, "{report}");
    assert_eq!(report.sent, want.len() as u64);

    let got = consume(
        &broker.bootstrap_servers(),
        &topic,
        want.len(),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(got.len(), want.len(), "every record arrives once");
    // Per key, the order in Kafka is the order in the file, and each key stays on one partition.
    let mut want_by_key: HashMap<&str, Vec<&str>> = HashMap::new();
    for (k, v) in &want {
        want_by_key.entry(k).or_default().push(v);
    }
    let mut got_sorted = got.clone();
    got_sorted.sort_by_key(|m| (m.partition, m.offset));
    let mut got_by_key: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut partition_of: HashMap<&str, i32> = HashMap::new();
    for m in &got_sorted {
        got_by_key.entry(&m.key).or_default().push(&m.value);
        let p = *partition_of.entry(&m.key).or_insert(m.partition);
        assert_eq!(p, m.partition, "key {} on two partitions", m.key);
    }
    assert_eq!(got_by_key, want_by_key);
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for m in &got {
        assert_eq!(
            m.headers,
            [
                ("schema-version".to_owned(), "1".to_owned()),
                ("content-type".to_owned(), "application/json".to_owned())
            ]
        );
        // The message timestamp is the production time, not the record's.
        let ts = m.timestamp_ms.expect("message has a timestamp");
        assert!(
            ts >= started_ms - 5_000 && ts <= now_ms + 5_000,
            "timestamp {ts} is not the production time"
        );
    }
}

#[tokio::test]
async fn a_missing_topic_fails_start_with_one_clear_line() {
    let broker = Broker::start(BrokerOptions::memory()).await.unwrap();
    let topic = unique_name("absent");
    let registry = prometheus::Registry::new();
    let metrics = std::sync::Arc::new(Metrics::register(&registry, false).unwrap());
    let options = RunOptions {
        source: Source::Http,
        create_topic: false,
        strict: false,
    };
    // The port is bound and the client created first (so /healthz answers); the topic check
    // comes with run, and a missing topic ends it as a configuration error.
    let app = App::build(
        config(&broker.bootstrap_servers(), &topic),
        options,
        registry,
        metrics,
    )
    .await
    .unwrap();
    let err = app
        .run(tokio_util::sync::CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.is_configuration(), "{err}");
    assert!(
        matches!(err, RunError::Sink(producer::SinkError::TopicMissing(_))),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&topic) && text.contains("--create-topic"),
        "{text}"
    );
    assert!(!text.contains('\n'));
}

#[tokio::test]
async fn create_topic_creates_the_topic_with_the_configured_partitions() {
    let broker = Broker::start(BrokerOptions::memory()).await.unwrap();
    let topic = unique_name("created");
    let mut c = config(&broker.bootstrap_servers(), &topic);
    c.kafka_topic_partitions = 2;
    producer::ensure_topic(&c, true).await.unwrap();
    let sink = producer::Sink::new(&c).unwrap();
    let partitions = tokio::task::spawn_blocking(move || sink.check_topic(Duration::from_secs(5)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(partitions, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_ingest_on_a_real_socket_reaches_kafka_and_readyz_tells_the_truth() {
    let broker = Broker::start(BrokerOptions::memory()).await.unwrap();
    let topic = unique_name("http");
    broker.create_topic(&topic, 3).await.unwrap();
    let app = spawn_app(config(&broker.bootstrap_servers(), &topic), Source::Http).await;
    let base = format!("http://{}", app.addr.unwrap());
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = client.get(format!("{base}/readyz")).send().await.unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = lines(0, 50);
    let r = client
        .post(format!("{base}/v1/logs"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["accepted"], 50);
    assert_eq!(v["rejected"], 0);
    let health: serde_json::Value = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["version"], producer::VERSION);
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("producer_records_sent_total 50"),
        "{metrics}"
    );
    assert!(metrics.contains(r#"producer_http_requests_total{status="200"} 1"#));
    let got = consume(
        &broker.bootstrap_servers(),
        &topic,
        50,
        Duration::from_secs(30),
    )
    .await;
    assert_exactly_once(&got, 50);
    let report = app.stop().await;
    assert_eq!(report.undelivered, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_once_delivers_everything_read_and_exits_0() {
    let broker = Broker::start(BrokerOptions::memory()).await.unwrap();
    let topic = unique_name("sigterm");
    broker.create_topic(&topic, 3).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    let total = 200_000;
    std::fs::write(&input, lines(0, total)).unwrap();
    let stderr = dir.path().join("stderr.log");
    let mut p = spawn_producer(
        &[
            "run",
            "--input",
            input.to_str().unwrap(),
            "--once",
            "--rate",
            "2000",
        ],
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap_servers()),
            ("KAFKA_TOPIC", topic.clone()),
        ],
        &stderr,
    );
    // Wait until records flow, then stop it mid-file.
    let seen = consume(
        &broker.bootstrap_servers(),
        &topic,
        500,
        Duration::from_secs(30),
    )
    .await;
    assert!(
        seen.len() >= 500,
        "records did not start flowing: {}",
        std::fs::read_to_string(&stderr).unwrap()
    );
    signal(p.0.id(), "-TERM");
    let status = wait_exit(&mut p, Duration::from_secs(30)).await;
    let log = std::fs::read_to_string(&stderr).unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    // Everything read was delivered: Kafka holds exactly the records 0..k, each once.
    let got = consume(
        &broker.bootstrap_servers(),
        &topic,
        usize::MAX,
        Duration::from_secs(5),
    )
    .await;
    let k = got.len() as u64;
    assert!(k > 0 && k < total, "k = {k}");
    assert_exactly_once(&got, k);
    assert!(log.contains("interrupted by shutdown"), "{log}");
}

/// OTLP through a real socket into a real broker: two requests (protobuf, and gzip OTLP JSON)
/// built with `opentelemetry-proto`, some records invalid. Every accepted record is in Kafka
/// exactly once, with the fields the data model maps, and the rejected ones are counted in
/// the partial success and absent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_records_reach_kafka_exactly_once_with_the_mapped_fields() {
    use opentelemetry_proto::tonic::collector::logs::v1::{
        ExportLogsServiceRequest, ExportLogsServiceResponse,
    };
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use prost::Message;

    let broker = Broker::start(BrokerOptions::memory()).await.unwrap();
    let topic = unique_name("otlp");
    broker.create_topic(&topic, 3).await.unwrap();
    let app = spawn_app(config(&broker.bootstrap_servers(), &topic), Source::Http).await;
    let url = format!("http://{}/v1/logs", app.addr.unwrap());
    let value = |v: Value| Some(AnyValue { value: Some(v) });
    let attribute = |key: &str, v: Value| KeyValue {
        key: key.to_owned(),
        value: value(v),
        ..KeyValue::default()
    };
    const T0: u64 = 1_767_323_045_000_000_000;
    // Record `seq` of `service`: severity from the seq, invalid when seq % 50 == 49.
    let request = |service: &str, seqs: std::ops::Range<u64>| ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![attribute(
                    "service.name",
                    Value::StringValue(service.into()),
                )],
                ..Resource::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: seqs
                    .map(|seq| LogRecord {
                        time_unix_nano: if seq % 50 == 49 { u64::MAX } else { T0 + seq },
                        severity_number: [1, 5, 9, 13, 17, 21][(seq % 6) as usize],
                        body: value(Value::StringValue(format!("event {seq}"))),
                        trace_id: (seq as u128 + 1).to_be_bytes().to_vec(),
                        attributes: vec![attribute("seq", Value::IntValue(seq as i64))],
                        ..LogRecord::default()
                    })
                    .collect(),
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    };
    let client = reqwest::Client::new();
    let first = client
        .post(&url)
        .header("content-type", "application/x-protobuf")
        .body(request("checkout", 0..300).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["content-type"], "application/x-protobuf");
    let answer = ExportLogsServiceResponse::decode(first.bytes().await.unwrap()).unwrap();
    assert_eq!(answer.partial_success.unwrap().rejected_log_records, 6);

    let json = serde_json::to_vec(&request("payments", 300..500)).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &json).unwrap();
    let second = client
        .post(&url)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 200);
    let answer: serde_json::Value = second.json().await.unwrap();
    assert_eq!(
        answer["partialSuccess"]["rejectedLogRecords"], 4,
        "{answer}"
    );

    let accepted: Vec<u64> = (0..500).filter(|s| s % 50 != 49).collect();
    let got = consume(
        &broker.bootstrap_servers(),
        &topic,
        accepted.len(),
        Duration::from_secs(60),
    )
    .await;
    // Exactly once, by identity, and nothing else.
    assert_exactly_once_of(&got, &accepted);
    for m in &got {
        let v = m.json();
        let seq = v["seq"].as_u64().unwrap();
        let service = if seq < 300 { "checkout" } else { "payments" };
        let level = ["trace", "debug", "info", "warn", "error", "fatal"][(seq % 6) as usize];
        let nanos = i64::try_from(T0 + seq).unwrap();
        assert_eq!(m.key, service);
        assert_eq!(v["service"], service);
        assert_eq!(v["level"], level, "{v}");
        assert_eq!(v["message"], format!("event {seq}"));
        assert_eq!(
            v["timestamp"],
            schema::Timestamp::from_nanos(nanos).unwrap().to_rfc3339()
        );
        assert_eq!(v["trace_id"], format!("{:032x}", seq + 1));
    }
    let report = app.stop().await;
    assert_eq!(report.undelivered, 0);
}
