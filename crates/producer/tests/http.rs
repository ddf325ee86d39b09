//! `POST /v1/logs` through `tower::ServiceExt::oneshot`, against librdkafka's mock cluster:
//! every status code the endpoint answers.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use common::*;
use http_body_util::BodyExt;
use producer::http::{router, IngestState};
use producer::sink::Sink;
use producer::{Metrics, ProducerConfig};
use service::config::Secret;
use testkit::mock::MockKafka;
use tower::ServiceExt;

struct Fixture {
    mock: MockKafka,
    app: Router,
    sink: Arc<Sink>,
}

fn fixture_with(f: impl FnOnce(&mut ProducerConfig)) -> Fixture {
    let mock = MockKafka::new(1).unwrap();
    mock.create_topic("logs", 3).unwrap();
    let mut c = config(mock.bootstrap_servers(), "logs");
    c.ingest_max_body_bytes = 64 * 1024;
    f(&mut c);
    let sink = Arc::new(Sink::new(&c).unwrap());
    let state = IngestState {
        sink: Arc::clone(&sink),
        metrics: Arc::new(Metrics::unregistered(false)),
        token: c.ingest_token.clone(),
        max_body_bytes: c.ingest_max_body_bytes,
        max_record_bytes: c.max_record_bytes,
    };
    Fixture {
        mock,
        app: router(state),
        sink,
    }
}

fn fixture() -> Fixture {
    fixture_with(|_| {})
}

async fn post(
    app: &Router,
    body: impl Into<Body>,
    headers: &[(&str, &str)],
) -> (StatusCode, serde_json::Value, Option<String>) {
    let mut req = Request::post("/v1/logs");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app
        .clone()
        .oneshot(req.body(body.into()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, json, retry)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_is_answered_200_after_kafka_acknowledged_with_rejections_listed() {
    let f = fixture();
    let body = lines(0, 2)
        + "{\"timestamp\":1,\"level\":\"loud\",\"service\":\"a\",\"message\":\"m\"}\n"
        + &lines(2, 3);
    let (status, json, _) = post(&f.app, body, &[]).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["accepted"], 3);
    assert_eq!(json["rejected"], 1);
    assert_eq!(
        json["errors"],
        serde_json::json!([{"index": 2, "reason": "invalid_level"}])
    );
    let got = consume(
        f.mock.bootstrap_servers(),
        "logs",
        3,
        Duration::from_secs(20),
    )
    .await;
    assert_exactly_once(&got, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_json_array_is_accepted() {
    let f = fixture();
    let array = format!("[{}]", lines(0, 5).trim_end().replace('\n', ","));
    let (status, json, _) = post(
        &f.app,
        gzip(array.as_bytes()),
        &[("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["accepted"], 5);
}

#[tokio::test]
async fn a_body_that_is_not_json_or_is_truncated_is_400() {
    let f = fixture();
    assert_eq!(post(&f.app, "hello", &[]).await.0, StatusCode::BAD_REQUEST);
    let truncated = format!("[{}", line(0).trim_end());
    assert_eq!(
        post(&f.app, truncated, &[]).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(post(&f.app, "", &[]).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        post(
            &f.app,
            b"not gzip".to_vec(),
            &[("content-encoding", "gzip")]
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_configured_bearer_token_it_is_401() {
    let f = fixture_with(|c| c.ingest_token = Secret::new("s3cret"));
    assert_eq!(
        post(&f.app, lines(0, 1), &[]).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(&f.app, lines(0, 1), &[("authorization", "Bearer wrong")])
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(&f.app, lines(0, 1), &[("authorization", "Bearer s3cret")])
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_body_over_the_cap_is_413_also_after_gzip_decoding() {
    let f = fixture_with(|c| c.ingest_max_body_bytes = 1024);
    let big = lines(0, 100);
    assert_eq!(
        post(&f.app, big.clone(), &[]).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let zipped = gzip(big.as_bytes());
    assert!(zipped.len() < 1024);
    assert_eq!(
        post(&f.app, zipped, &[("content-encoding", "gzip")])
            .await
            .0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
}

#[tokio::test]
async fn an_unknown_content_encoding_is_415() {
    let f = fixture();
    assert_eq!(
        post(&f.app, lines(0, 1), &[("content-encoding", "br")])
            .await
            .0,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_503_with_retry_after_and_nothing_sent() {
    let f = fixture_with(|c| {
        c.kafka_queue_max_messages = 5;
        c.kafka_delivery_timeout = Duration::from_secs(2);
    });
    // With the broker down, a first request's records stay in the queue.
    f.mock.broker_down(1).unwrap();
    let app = f.app.clone();
    let first = tokio::spawn(async move { post(&app, lines(0, 4), &[]).await.0 });
    let sink = Arc::clone(&f.sink);
    eventually(Duration::from_secs(10), "records in flight", || {
        sink.in_flight() == 4
    })
    .await;
    let (status, json, retry) = post(&f.app, lines(4, 6), &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{json}");
    assert_eq!(retry.as_deref(), Some("1"));
    assert_eq!(json["accepted"], 0);
    assert_eq!(json["failed"], 2);
    assert_eq!(
        f.sink.in_flight(),
        4,
        "nothing of the refused request was enqueued"
    );
    assert_eq!(first.await.unwrap(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeliverable_records_are_500_with_counts() {
    let f = fixture_with(|c| {
        c.kafka_message_max_bytes = 1000;
    });
    let big = format!(
        r#"{{"timestamp":"2026-01-02T03:04:05Z","level":"info","service":"api","message":"{}","seq":99}}"#,
        "x".repeat(2000)
    );
    let (status, json, _) = post(&f.app, lines(0, 3) + &big + "\n", &[]).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{json}");
    assert_eq!(json["accepted"], 3);
    assert_eq!(json["failed"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_that_time_out_with_the_broker_down_are_500() {
    let f = fixture_with(|c| c.kafka_delivery_timeout = Duration::from_secs(1));
    f.mock.broker_down(1).unwrap();
    let (status, json, _) = post(&f.app, lines(0, 4), &[]).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{json}");
    assert_eq!(json["accepted"], 0);
    assert_eq!(json["failed"], 4);
}
