//! Faults tansu cannot stage, on librdkafka's mock cluster: the broker going down mid-stream,
//! paced and at full speed (idempotence keeps every record exactly once), and a record too large for Kafka (reported,
//! the rest delivered).

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use std::time::Duration;

use common::*;
use producer::Source;
use producer::{FileOptions, Input};
use testkit::mock::MockKafka;

fn once(path: std::path::PathBuf, rate: Option<u32>) -> Source {
    Source::File(FileOptions {
        input: Input::Path(path),
        repeat: false,
        rate,
        rebase_timestamps: false,
        strict: false,
    })
}

fn sent(registry: &prometheus::Registry) -> u64 {
    registry
        .gather()
        .iter()
        .find(|f| f.name() == "producer_records_sent_total")
        .map(|f| f.get_metric()[0].get_counter().value() as u64)
        .unwrap_or(0)
}

/// A mock cluster with the `logs` topic, and an NDJSON file of `total` records.
fn mock_and_input(total: u64) -> (MockKafka, tempfile::TempDir, std::path::PathBuf) {
    let mock = MockKafka::new(1).unwrap();
    mock.create_topic("logs", 3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    std::fs::write(&input, lines(0, total)).unwrap();
    (mock, dir, input)
}

/// The run ends with exit 0, every record sent, and each exactly once in the topic.
async fn ends_with_every_record_exactly_once(app: TestApp, mock: &MockKafka, total: u64) {
    let report = app.finished().await;
    assert_eq!(report.exit_code(), 0, "{report}");
    assert_eq!(report.sent, total);
    let got = consume(
        mock.bootstrap_servers(),
        "logs",
        total as usize,
        Duration::from_secs(60),
    )
    .await;
    assert_exactly_once(&got, total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_then_up_mid_stream_delivers_every_record_exactly_once() {
    let total = 20_000;
    let (mock, _dir, input) = mock_and_input(total);
    let app = spawn_app(
        config(mock.bootstrap_servers(), "logs"),
        once(input, Some(5_000)),
    )
    .await;
    eventually(Duration::from_secs(30), "first acknowledgements", || {
        sent(&app.registry) > 2_000
    })
    .await;
    mock.broker_down(1).unwrap();
    let before = sent(&app.registry);
    // The outage lasts a while; nothing can be acknowledged during it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(sent(&app.registry) <= before + 5_000);
    mock.broker_up(1).unwrap();
    ends_with_every_record_exactly_once(app, &mock, total).await;
}

/// At full speed (no rate) the sending thread serves delivery reports itself
/// (`Sink::poll_inline`); an outage fills the queue, and the reports must still be served while
/// it waits for room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_at_full_speed_fills_the_queue_then_delivers_every_record_exactly_once() {
    let total = 60_000;
    let (mock, _dir, input) = mock_and_input(total);
    let mut c = config(mock.bootstrap_servers(), "logs");
    c.kafka_queue_max_messages = 5_000;
    let app = spawn_app(c, once(input, None)).await;
    mock.broker_down(1).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        sent(&app.registry) < total,
        "everything was sent before the outage"
    );
    mock.broker_up(1).unwrap();
    ends_with_every_record_exactly_once(app, &mock, total).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_too_large_for_kafka_is_reported_and_the_rest_delivered() {
    let mock = MockKafka::new(1).unwrap();
    mock.create_topic("logs", 3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    let big = format!(
        r#"{{"timestamp":"2026-01-02T03:04:05Z","level":"info","service":"api","message":"{}","seq":999999}}"#,
        "x".repeat(20_000)
    );
    std::fs::write(&input, lines(0, 50) + &big + "\n" + &lines(50, 100)).unwrap();
    let mut c = config(mock.bootstrap_servers(), "logs");
    c.kafka_message_max_bytes = 10_000;
    let app = spawn_app(c, once(input, None)).await;
    let registry = app.registry.clone();
    let report = app.finished().await;
    assert_eq!(report.sent, 100);
    assert_eq!(report.failed.get("message_too_large"), Some(&1), "{report}");
    assert_eq!(report.exit_code(), producer::EXIT_UNDELIVERED);
    let text = {
        use prometheus::Encoder;
        let mut b = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut b)
            .unwrap();
        String::from_utf8(b).unwrap()
    };
    assert!(
        text.contains(r#"ingestion_errors_total{reason="message_too_large",service="producer",stage="kafka"} 1"#),
        "{text}"
    );
    let got = consume(
        mock.bootstrap_servers(),
        "logs",
        100,
        Duration::from_secs(30),
    )
    .await;
    assert_exactly_once(&got, 100);
}
