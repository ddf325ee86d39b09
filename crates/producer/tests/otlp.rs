//! OpenTelemetry logs at `POST /v1/logs` through `tower::ServiceExt::oneshot`, on librdkafka's
//! mock cluster: requests built with the `opentelemetry-proto` crate (protobuf and OTLP JSON)
//! and the spec's JSON example, the records they become in Kafka, and every answer (partial
//! success, 400, 401, 413, 415, 503) in the request's encoding. JSON bodies of records sent as
//! `application/json` are still read as records.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use common::ingest::*;
use common::*;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::{json, Value as Json};
use service::config::Secret;

const PROTOBUF: (&str, &str) = ("content-type", "application/x-protobuf");
const JSON: (&str, &str) = ("content-type", "application/json");

/// 2026-01-02T03:04:05.25Z in nanoseconds.
const T0: u64 = 1_767_323_045_250_000_000;

fn string(s: &str) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(s.to_owned())),
    }
}

fn attribute(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(value),
        ..KeyValue::default()
    }
}

/// A log record numbered `seq` (attribute `seq`), at `T0 + seq` ms.
fn log(seq: i64, severity: i32, body: AnyValue) -> LogRecord {
    LogRecord {
        time_unix_nano: T0 + seq as u64 * 1_000_000,
        severity_number: severity,
        body: Some(body),
        attributes: vec![attribute(
            "seq",
            AnyValue {
                value: Some(Value::IntValue(seq)),
            },
        )],
        ..LogRecord::default()
    }
}

/// One resource (`service.name` = `service`, plus `host.name`) with one scope holding `logs`.
fn request(service: &str, logs: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    attribute("service.name", string(service)),
                    attribute("host.name", string("node-1")),
                ],
                ..Resource::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "app.logger".to_owned(),
                    version: "1.2.3".to_owned(),
                    ..InstrumentationScope::default()
                }),
                log_records: logs,
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    }
}

/// Three records of every interesting shape: a string body with ids, a structured body at
/// warn, an error with a severity text of its own.
fn three() -> ExportLogsServiceRequest {
    let mut first = log(0, 9, string("user signed in"));
    first.trace_id = vec![
        0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6,
        0x0c,
    ];
    first.span_id = vec![0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74];
    let structured = AnyValue {
        value: Some(Value::KvlistValue(KeyValueList {
            values: vec![
                attribute("event", string("cart.updated")),
                attribute(
                    "items",
                    AnyValue {
                        value: Some(Value::ArrayValue(ArrayValue {
                            values: vec![string("a"), string("b")],
                        })),
                    },
                ),
            ],
        })),
    };
    let second = log(1, 13, structured);
    let mut third = log(2, 17, string("payment failed"));
    third.severity_text = "PaymentError".to_owned();
    request("checkout", vec![first, second, third])
}

/// The records in the topic, by their `seq`.
async fn records_by_seq(f: &Fixture, n: usize) -> BTreeMap<u64, Json> {
    let got = consume(
        f.mock.bootstrap_servers(),
        "logs",
        n,
        Duration::from_secs(30),
    )
    .await;
    let mut by_seq = BTreeMap::new();
    for r in got {
        let v = r.json();
        assert_eq!(r.key, v["service"], "the key is the service");
        let seq = v["seq"].as_u64().unwrap();
        assert!(by_seq.insert(seq, v).is_none(), "record {seq} twice");
    }
    by_seq
}

fn content_type(headers: &HeaderMap) -> &str {
    headers.get("content-type").unwrap().to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protobuf_request_becomes_records_with_the_mapped_fields_and_a_protobuf_answer() {
    let f = fixture();
    let (status, headers, body) = post_raw(&f.app, three().encode_to_vec(), &[PROTOBUF]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type(&headers), "application/x-protobuf");
    let answer = ExportLogsServiceResponse::decode(body).unwrap();
    assert_eq!(answer.partial_success, None, "full success leaves it unset");

    let got = records_by_seq(&f, 3).await;
    assert_eq!(got.len(), 3);
    assert_eq!(
        got[&0],
        json!({
            "timestamp": "2026-01-02T03:04:05.250000000Z",
            "level": "info",
            "service": "checkout",
            "message": "user signed in",
            "trace_id": "5b8efff798038103d269b633813fc60c",
            "span_id": "eee19b7ec3c1b174",
            "otel.scope.name": "app.logger",
            "otel.scope.version": "1.2.3",
            "seq": 0,
            "host.name": "node-1",
        })
    );
    assert_eq!(got[&1]["level"], "warn");
    assert_eq!(
        serde_json::from_str::<Json>(got[&1]["message"].as_str().unwrap()).unwrap(),
        json!({"event": "cart.updated", "items": ["a", "b"]}),
        "a structured body is its JSON"
    );
    assert!(got[&1].get("trace_id").is_none(), "no ids, no fields");
    assert_eq!(got[&2]["level"], "error");
    assert_eq!(got[&2]["severity_text"], "PaymentError");
    assert_eq!(got[&2]["timestamp"], "2026-01-02T03:04:05.252000000Z");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_otlp_json_request_built_with_the_crate_gets_a_json_answer() {
    let f = fixture();
    let body = serde_json::to_vec(&three()).unwrap();
    let (status, headers, answer) = post_raw(&f.app, body, &[JSON]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type(&headers), "application/json");
    let answer: ExportLogsServiceResponse = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer.partial_success, None);
    let got = records_by_seq(&f, 3).await;
    assert_eq!(got[&0]["trace_id"], "5b8efff798038103d269b633813fc60c");
    assert_eq!(got[&2]["level"], "error");
}

/// `tests/fixtures/otlp-logs.json` follows the OTLP JSON example published with the
/// specification (opentelemetry-proto, `examples/logs.json`): the same structure and value
/// kinds (64-bit times as JSON numbers, upper-case hex ids, a severity text without a number,
/// every kind of attribute value), with values of our own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spec_shaped_json_example_is_accepted_with_every_kind_of_attribute() {
    let f = fixture();
    let example = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/otlp-logs.json"),
    )
    .unwrap();
    let (status, _, answer) = post_raw(&f.app, example.clone(), &[JSON]).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let got = consume(
        f.mock.bootstrap_servers(),
        "logs",
        1,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].key, "checkout.service");
    // "Information" names the level it maps to: no severity_text field.
    assert_eq!(
        got[0].json(),
        json!({
            "timestamp": "2026-01-02T03:04:05.250000000Z",
            "level": "info",
            "service": "checkout.service",
            "message": "An example log record",
            "trace_id": "0af7651916cd43dd8448eb211c80319c",
            "span_id": "b7ad6b7169203331",
            "otel.scope.name": "checkout.logging",
            "otel.scope.version": "2.1.0",
            "string.attribute": "a string",
            "boolean.attribute": false,
            "int.attribute": 42,
            "double.attribute": 12.5,
            "array.attribute": ["several", "strings"],
            "map.attribute": {"nested.key": "a nested value"},
            "checkout.scope.attribute": "a scope attribute",
        })
    );
    // The crate reads the example as the handler does: the same request.
    let parsed: ExportLogsServiceRequest = serde_json::from_slice(&example).unwrap();
    assert_eq!(
        parsed.resource_logs[0].scope_logs[0].log_records[0].time_unix_nano,
        1_767_323_045_250_000_000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_that_break_the_contract_are_counted_in_a_partial_success() {
    let f = fixture_with(|c| c.max_record_bytes = 2048);
    let mut logs = vec![
        log(0, 9, string("fine")),
        log(1, 9, string(&"x".repeat(4096))),
    ];
    let mut far = log(2, 9, string("after 2262"));
    far.time_unix_nano = u64::MAX;
    logs.push(far);
    logs.push(log(3, 9, string("also fine")));
    let mut req = request("checkout", logs);
    // A second resource whose service name is over 128 bytes.
    req.resource_logs
        .extend(request(&"s".repeat(200), vec![log(4, 9, string("m"))]).resource_logs);
    let (status, headers, body) = post_raw(&f.app, req.encode_to_vec(), &[PROTOBUF]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type(&headers), "application/x-protobuf");
    let partial = ExportLogsServiceResponse::decode(body)
        .unwrap()
        .partial_success
        .expect("partial success");
    assert_eq!(partial.rejected_log_records, 3);
    for said in [
        "record_too_large: 1",
        "timestamp_out_of_range: 1",
        "service_too_long: 1",
        "log record 1",
    ] {
        assert!(
            partial.error_message.contains(said),
            "{said:?} in {:?}",
            partial.error_message
        );
    }
    let got = records_by_seq(&f, 2).await;
    assert_eq!(got.keys().copied().collect::<Vec<_>>(), [0, 3]);
}

#[tokio::test]
async fn an_empty_request_is_a_full_success() {
    let f = fixture();
    let empty = ExportLogsServiceRequest::default();
    let (status, _, body) = post_raw(&f.app, empty.encode_to_vec(), &[PROTOBUF]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        ExportLogsServiceResponse::decode(body)
            .unwrap()
            .partial_success,
        None
    );
    let (status, _, _) = post_raw(&f.app, r#"{"resourceLogs":[]}"#, &[JSON]).await;
    assert_eq!(status, StatusCode::OK);
}

/// A `google.rpc.Status` as the answer carries it.
#[derive(Clone, PartialEq, Message)]
struct Status {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

#[tokio::test]
async fn an_undecodable_body_is_400_with_a_status_in_the_request_encoding() {
    let f = fixture();
    let (status, headers, body) =
        post_raw(&f.app, b"\xff\xff\xff not protobuf".to_vec(), &[PROTOBUF]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(content_type(&headers), "application/x-protobuf");
    let s = Status::decode(body).unwrap();
    assert_eq!(s.code, 3);
    assert!(s.message.contains("protobuf"), "{}", s.message);

    let (status, headers, body) = post_raw(&f.app, r#"{"resourceLogs": 5}"#, &[JSON]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(content_type(&headers), "application/json");
    let s: Json = serde_json::from_slice(&body).unwrap();
    assert_eq!(s["code"], 3);
    assert!(s["message"].as_str().unwrap().contains("JSON"), "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_the_token_and_the_size_limit_apply_as_for_json_bodies() {
    let f = fixture_with(|c| {
        c.ingest_token = Secret::new("s3cret");
        c.ingest_max_body_bytes = 4096;
    });
    let auth = ("authorization", "Bearer s3cret");
    let (status, _, _) = post_raw(
        &f.app,
        gzip(&three().encode_to_vec()),
        &[PROTOBUF, auth, ("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let (status, headers, body) = post_raw(&f.app, three().encode_to_vec(), &[PROTOBUF]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers.get("www-authenticate").unwrap(), "Bearer");
    assert_eq!(Status::decode(body).unwrap().code, 16);

    let big = request(
        "checkout",
        (0..200)
            .map(|i| log(i, 9, string("a record of some length")))
            .collect(),
    );
    let wire = big.encode_to_vec();
    assert!(wire.len() > 4096);
    let (status, headers, body) = post_raw(&f.app, wire.clone(), &[PROTOBUF, auth]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(content_type(&headers), "application/x-protobuf");
    assert!(Status::decode(body).unwrap().message.contains("4096"));
    let zipped = gzip(&wire);
    assert!(zipped.len() < 4096);
    let (status, _, body) = post_raw(
        &f.app,
        zipped,
        &[PROTOBUF, auth, ("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "over the cap once decoded"
    );
    assert!(Status::decode(body).unwrap().message.contains("4096"));

    let (status, _, body) = post_raw(
        &f.app,
        three().encode_to_vec(),
        &[PROTOBUF, auth, ("content-encoding", "br")],
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(Status::decode(body).unwrap().message.contains("br"));

    // Refused before the body tells: an application/json answer carries both shapes.
    let (status, json, _) = post(&f.app, serde_json::to_vec(&three()).unwrap(), &[JSON]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json["accepted"], 0, "{json}");
    assert_eq!(json["code"], 16, "{json}");
    assert_eq!(json["message"], json["error"], "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_503_with_retry_after_and_a_status() {
    let f = fixture_with(|c| {
        c.kafka_queue_max_messages = 5;
        c.kafka_delivery_timeout = Duration::from_secs(2);
    });
    f.mock.broker_down(1).unwrap();
    let app = f.app.clone();
    let first = tokio::spawn(async move { post(&app, lines(0, 4), &[]).await.0 });
    let sink = Arc::clone(&f.sink);
    eventually(Duration::from_secs(10), "records in flight", || {
        sink.in_flight() == 4
    })
    .await;
    let (status, headers, body) = post_raw(&f.app, three().encode_to_vec(), &[PROTOBUF]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers.get("retry-after").unwrap(), "1");
    assert_eq!(Status::decode(body).unwrap().code, 14);
    assert_eq!(
        f.sink.in_flight(),
        4,
        "nothing of the refused request was enqueued"
    );
    assert_eq!(first.await.unwrap(), StatusCode::INTERNAL_SERVER_ERROR);
}

/// Records Kafka did not take in time make an OTLP request retryable (503), where a JSON
/// request gets 500: OTLP senders retry only 429/502/503/504.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_that_time_out_make_the_request_retryable() {
    let f = fixture_with(|c| c.kafka_delivery_timeout = Duration::from_secs(1));
    f.mock.broker_down(1).unwrap();
    let (status, headers, body) = post_raw(&f.app, three().encode_to_vec(), &[PROTOBUF]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.contains_key("retry-after"));
    assert!(Status::decode(body)
        .unwrap()
        .message
        .contains("3 log records"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_records_sent_as_application_json_are_still_records() {
    let f = fixture();
    // One record, several (NDJSON), an array: the answer of the JSON path.
    let one = line(0);
    let array = format!("[{}]", lines(1, 3).trim_end().replace('\n', ","));
    for (body, n) in [(one, 1), (lines(3, 5), 2), (array, 2)] {
        let (status, json, _) = post(&f.app, body, &[JSON]).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        assert_eq!(json["accepted"], n, "{json}");
    }
    // A record with a field named resourceLogs is still a record.
    let odd = line(5).replace("\"seq\":5", "\"seq\":5,\"resourceLogs\":[]");
    let (status, json, _) = post(&f.app, odd, &[JSON]).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["accepted"], 1, "{json}");
    let got = consume(
        f.mock.bootstrap_servers(),
        "logs",
        6,
        Duration::from_secs(30),
    )
    .await;
    assert_exactly_once(&got, 6);
}

/// The README's curl example of an OTLP JSON request works as it says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_example_is_accepted_in_full() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let marker = "-H 'content-type: application/json' -d '";
    let from = readme
        .match_indices(marker)
        .map(|(i, _)| i + marker.len())
        .find(|&i| readme[i..].starts_with("{\n  \"resourceLogs\""))
        .expect("the README's OTLP curl example");
    let to = from + readme[from..].find("}'").unwrap() + 1;
    let body = &readme[from..to];
    let f = fixture();
    let (status, _, answer) = post_raw(&f.app, body.to_owned(), &[JSON]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(&answer[..], b"{}", "as the README shows");
    let got = consume(
        f.mock.bootstrap_servers(),
        "logs",
        1,
        Duration::from_secs(30),
    )
    .await;
    let v = got[0].json();
    assert_eq!(v["service"], "checkout");
    assert_eq!(v["level"], "error");
    assert_eq!(v["order.id"], 1042);
    assert_eq!(v["trace_id"], "5b8efff798038103d269b633813fc60c");
}
