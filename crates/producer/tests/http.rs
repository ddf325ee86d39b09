//! `POST /v1/logs` through `tower::ServiceExt::oneshot`, against librdkafka's mock cluster:
//! every status code the endpoint answers.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use common::ingest::*;
use common::*;
use service::config::Secret;

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

/// The refusals the tower-http layers make (token, declared length, encoding) and the ones the
/// handler makes (a chunked or decoded body over the cap) are answered in the endpoint's JSON
/// shape and counted like any other.
#[tokio::test]
async fn every_refusal_is_answered_in_json_and_counted() {
    let f = fixture_with(|c| {
        c.ingest_token = Secret::new("s3cret");
        c.ingest_max_body_bytes = 1024;
    });
    let auth = ("authorization", "bearer s3cret");
    let errors = |reason| {
        f.metric(
            "ingestion_errors_total",
            &[("stage", "http"), ("reason", reason)],
        )
    };
    let answered = |status| f.metric("producer_http_requests_total", &[("status", status)]);

    let (status, json, _) = post(&f.app, lines(0, 1), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json["accepted"], 0, "{json}");
    assert!(json["error"].is_string(), "{json}");
    assert_eq!(errors("unauthorized"), 1.0);

    // Declared too long: refused before the body is read.
    let big = lines(0, 100);
    let (status, json, _) = post(&f.app, big.clone(), &[auth]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(json["error"].as_str().unwrap().contains("1024"), "{json}");
    // No length declared: refused while reading.
    let stream = futures::stream::iter(
        big.into_bytes()
            .chunks(100)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let (status, json, _) = post(&f.app, Body::from_stream(stream), &[auth]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(json["error"].as_str().unwrap().contains("1024"), "{json}");
    assert_eq!(errors("payload_too_large"), 2.0);

    let (status, json, _) = post(
        &f.app,
        lines(0, 1),
        &[auth, ("content-encoding", "deflate")],
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        json["error"].as_str().unwrap().contains("deflate"),
        "{json}"
    );
    assert_eq!(errors("malformed"), 1.0);

    // Encodings in any case, and x-gzip, are gzip.
    for encoding in ["GZIP", "x-gzip"] {
        let (status, json, _) = post(
            &f.app,
            gzip(lines(0, 1).as_bytes()),
            &[auth, ("content-encoding", encoding)],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{encoding}: {json}");
    }
    assert_eq!(answered("401"), 1.0);
    assert_eq!(answered("413"), 2.0);
    assert_eq!(answered("415"), 1.0);
    assert_eq!(answered("200"), 2.0);
}
