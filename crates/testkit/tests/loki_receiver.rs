//! The Loki-compatible receiver over real HTTP on 127.0.0.1 (port 0): one test per acceptance or
//! rejection rule of LOKI.md and the recorded corpus (`conformance.rs` replays the recording
//! itself), partial acceptance, duplicates, the query API, tenancy, every fault mode,
//! count-only mode, metrics and `service_name` discovery. Timestamps are relative to now, so
//! the 7-day rule only bites where a test means it to.

// As clippy.toml says for test functions: a failed unwrap in a test helper is a failed test
// with a backtrace.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use schema::loki::codec::{encode_json, encode_json_gzip, encode_protobuf};
use schema::loki::limits::Discard;
use schema::loki::proto::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp};
use serde_json::Value;
use testkit::loki::{
    Faults, LokiConfig, LokiHandle, LokiReceiver, Outage, StatusStorm, StoredEntry,
};

const SEC: i64 = 1_000_000_000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;

/// A `query_range` result: per stream, its labels and its `[ns, line]` values.
type Streams = Vec<(BTreeMap<String, String>, Vec<(String, String)>)>;

// ---------------------------------------------------------------------------------------------
// Helpers

async fn spawn(config: LokiConfig) -> LokiHandle {
    LokiReceiver::start(config).await.unwrap()
}

async fn spawn_default() -> LokiHandle {
    spawn(LokiConfig::default()).await
}

/// A client without connection reuse, so that outages and dropped connections never meet a
/// stale pooled connection.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn now() -> i64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(d.as_nanos()).unwrap()
}

fn entry(ts: i64, line: &str) -> EntryAdapter {
    EntryAdapter {
        timestamp: Some(Timestamp::from_nanos(ts)),
        line: line.to_owned(),
        structured_metadata: vec![],
    }
}

fn with_metadata(mut e: EntryAdapter, pairs: &[(&str, &str)]) -> EntryAdapter {
    e.structured_metadata = pairs
        .iter()
        .map(|(name, value)| LabelPairAdapter {
            name: (*name).to_owned(),
            value: (*value).to_owned(),
        })
        .collect();
    e
}

fn stream(labels: &str, entries: Vec<EntryAdapter>) -> StreamAdapter {
    StreamAdapter {
        labels: labels.to_owned(),
        entries,
        hash: 0,
    }
}

fn request(streams: Vec<StreamAdapter>) -> PushRequest {
    PushRequest { streams }
}

/// An answer: status, headers, body text.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.text().await.unwrap();
    Answer {
        status,
        headers,
        body,
    }
}

async fn post(
    loki: &LokiHandle,
    content_type: Option<&str>,
    encoding: Option<&str>,
    tenant: Option<&str>,
    body: Vec<u8>,
) -> Result<Answer, reqwest::Error> {
    let mut req = client().post(loki.push_url()).body(body);
    if let Some(ct) = content_type {
        req = req.header("Content-Type", ct);
    }
    if let Some(enc) = encoding {
        req = req.header("Content-Encoding", enc);
    }
    if let Some(t) = tenant {
        req = req.header("X-Scope-OrgID", t);
    }
    Ok(answer(req.send().await?).await)
}

/// Pushes as protobuf + snappy, as Promtail and the consumer do.
async fn push(loki: &LokiHandle, push: &PushRequest) -> Answer {
    push_as(loki, None, push).await
}

async fn push_as(loki: &LokiHandle, tenant: Option<&str>, push: &PushRequest) -> Answer {
    let body = encode_protobuf(push).unwrap();
    post(loki, Some("application/x-protobuf"), None, tenant, body)
        .await
        .unwrap()
}

async fn get(
    loki: &LokiHandle,
    path: &str,
    tenant: Option<&str>,
    query: &[(&str, &str)],
) -> Answer {
    let mut req = client().get(format!("{}{path}", loki.url())).query(query);
    if let Some(t) = tenant {
        req = req.header("X-Scope-OrgID", t);
    }
    answer(req.send().await.unwrap()).await
}

fn json(a: &Answer) -> Value {
    serde_json::from_str(&a.body).unwrap_or_else(|e| panic!("{e}: {}", a.body))
}

/// `query_range` as `(stream labels, [(ns, line)])` per result stream.
async fn query_range(loki: &LokiHandle, tenant: Option<&str>, params: &[(&str, &str)]) -> Streams {
    let a = get(loki, "/loki/api/v1/query_range", tenant, params).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let v = json(&a);
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"]["resultType"], "streams");
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let labels = serde_json::from_value(s["stream"].clone()).unwrap();
            let values = serde_json::from_value(s["values"].clone()).unwrap();
            (labels, values)
        })
        .collect()
}

fn lines(entries: &[StoredEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.line.as_str()).collect()
}

fn result_lines(result: &Streams) -> Vec<String> {
    result
        .iter()
        .flat_map(|(_, values)| values.iter().map(|(_, line)| line.clone()))
        .collect()
}

/// One entry in a stream of its own, for rule tests.
fn single(labels: &str, e: EntryAdapter) -> PushRequest {
    request(vec![stream(labels, vec![e])])
}

/// Asserts a 400 whose text names `reason`'s message and that nothing was stored. A single
/// error is Loki's text alone, without `1 errors like:` (recorded: `line-262145`).
async fn assert_rejected(loki: &LokiHandle, p: &PushRequest, text: &str, reason: Discard) {
    let a = push(loki, p).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert!(
        a.body.contains(text),
        "{:?} does not contain {text:?}",
        a.body
    );
    assert!(!a.body.starts_with("1 errors like: "), "{}", a.body);
    assert!(a.body.ends_with('\n'), "{:?}", a.body);
    assert!(loki.entries("fake").is_empty());
    assert_eq!(loki.stats().discarded_for(reason), 1);
}

fn many_labels(n: usize) -> String {
    let pairs: Vec<String> = (0..n).map(|i| format!("l{i}=\"v\"")).collect();
    format!("{{{}}}", pairs.join(", "))
}

// ---------------------------------------------------------------------------------------------
// Acceptance

#[tokio::test]
async fn a_valid_protobuf_push_answers_204_and_is_stored() {
    let loki = spawn_default().await;
    let t = now();
    let p = request(vec![stream(
        r#"{service="api", level="info"}"#,
        vec![entry(t, "one"), entry(t + 1, "two")],
    )]);
    let a = push(&loki, &p).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    let stored = loki.entries("fake");
    assert_eq!(lines(&stored), ["one", "two"]);
    assert_eq!(stored[0].timestamp, t);
    assert_eq!(stored[0].labels.get("service"), Some("api"));
    assert_eq!(loki.stats().entries_stored, 2);
    loki.shutdown().await;
}

#[tokio::test]
async fn json_and_gzipped_json_pushes_are_accepted_with_their_metadata() {
    let loki = spawn_default().await;
    let t = now();
    let plain = request(vec![stream(
        r#"{service="api"}"#,
        vec![with_metadata(entry(t, "plain"), &[("trace_id", "abc")])],
    )]);
    let a = post(
        &loki,
        Some("application/json"),
        None,
        None,
        encode_json(&plain).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    let gzipped = request(vec![stream(
        r#"{service="api"}"#,
        vec![entry(t + 1, "gzip")],
    )]);
    let a = post(
        &loki,
        Some("application/json; charset=utf-8"),
        Some("gzip"),
        None,
        encode_json_gzip(&gzipped).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    let stored = loki.entries("fake");
    assert_eq!(lines(&stored), ["plain", "gzip"]);
    assert_eq!(
        stored[0].metadata,
        [("trace_id".to_owned(), "abc".to_owned())]
    );
}

#[tokio::test]
async fn ready_answers_200_ready() {
    let loki = spawn_default().await;
    let a = get(&loki, "/ready", None, &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body.trim(), "ready");
}

// ---------------------------------------------------------------------------------------------
// Entry-level rejections (400)

#[tokio::test]
async fn a_line_over_max_line_size_is_rejected_with_400() {
    let loki = spawn_default().await;
    let long = "x".repeat(256 * 1024 + 1);
    let p = single(r#"{service="api"}"#, entry(now(), &long));
    assert_rejected(
        &loki,
        &p,
        "max entry size '262144' bytes exceeded for stream '{service=\"api\", service_name=\"api\"}' while adding an entry with length '262145' bytes",
        Discard::LineTooLong,
    )
    .await;
}

#[tokio::test]
async fn an_entry_older_than_seven_days_is_rejected_with_400() {
    let loki = spawn_default().await;
    let p = single(
        r#"{service="api"}"#,
        entry(now() - 7 * 24 * HOUR - MIN, "old"),
    );
    assert_rejected(
        &loki,
        &p,
        "has timestamp too old",
        Discard::GreaterThanMaxSampleAge,
    )
    .await;
}

#[tokio::test]
async fn an_entry_beyond_the_creation_grace_period_is_rejected_with_400() {
    let loki = spawn_default().await;
    let p = single(r#"{service="api"}"#, entry(now() + 11 * MIN, "future"));
    assert_rejected(&loki, &p, "has timestamp too new", Discard::TooFarInFuture).await;
}

#[tokio::test]
async fn an_entry_over_an_hour_behind_its_stream_is_rejected_with_400() {
    let loki = spawn_default().await;
    let t = now();
    let first = push(&loki, &single(r#"{service="api"}"#, entry(t, "newest"))).await;
    assert_eq!(first.status, StatusCode::NO_CONTENT);
    let a = push(
        &loki,
        &single(r#"{service="api"}"#, entry(t - HOUR - MIN, "behind")),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.contains("entry too far behind"), "{}", a.body);
    // Within the hour, out of order is fine (Loki ≥ 2.4).
    let a = push(
        &loki,
        &single(r#"{service="api"}"#, entry(t - HOUR + MIN, "late")),
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(lines(&loki.entries("fake")), ["late", "newest"]);
    assert_eq!(loki.stats().discarded_for(Discard::TooFarBehind), 1);
    // Another stream has its own newest entry.
    let a = push(
        &loki,
        &single(r#"{service="web"}"#, entry(t - 2 * HOUR, "web")),
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn structured_metadata_over_64_kib_is_rejected_with_400() {
    let loki = spawn_default().await;
    let big = "v".repeat(64 * 1024);
    let e = with_metadata(entry(now(), "x"), &[("k", &big)]);
    assert_rejected(
        &loki,
        &single(r#"{service="api"}"#, e),
        "has structured metadata too large",
        Discard::StructuredMetadataTooLarge,
    )
    .await;
}

#[tokio::test]
async fn more_than_128_structured_metadata_pairs_are_rejected_with_400() {
    let loki = spawn_default().await;
    let names: Vec<String> = (0..129).map(|i| format!("k{i}")).collect();
    let pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    let e = with_metadata(entry(now(), "x"), &pairs);
    assert_rejected(
        &loki,
        &single(r#"{service="api"}"#, e),
        "has too many structured metadata labels: '129', limit: '128'",
        Discard::StructuredMetadataTooMany,
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Label-set rejections (400): an unparsable text refuses the whole request, a bad label set its
// stream (recorded: multi-stream-one-unparsable, multi-stream-one-too-many-labels).

#[tokio::test]
async fn an_invalid_label_name_is_rejected_with_400() {
    let loki = spawn_default().await;
    let p = single(r#"{1service="api"}"#, entry(now(), "x"));
    assert_rejected(
        &loki,
        &p,
        "couldn't parse labels: 1:2: parse error: unexpected character inside braces: '1'",
        Discard::InvalidLabels,
    )
    .await;
}

#[tokio::test]
async fn a_label_string_that_does_not_parse_is_rejected_with_400() {
    let loki = spawn_default().await;
    let p = single("service=api", entry(now(), "x"));
    assert_rejected(&loki, &p, "couldn't parse labels: ", Discard::InvalidLabels).await;
}

#[tokio::test]
async fn more_than_fifteen_labels_are_rejected_with_400() {
    let loki = spawn_default().await;
    let p = single(&many_labels(16), entry(now(), "x"));
    assert_rejected(
        &loki,
        &p,
        "has 16 label names; limit 15",
        Discard::MaxLabelNamesPerSeries,
    )
    .await;
    // Fifteen are fine, and Loki's own service_name comes on top.
    let a = push(&loki, &single(&many_labels(15), entry(now(), "x"))).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    assert_eq!(loki.entries("fake")[0].labels.len(), 16);
}

#[tokio::test]
async fn a_label_name_over_1024_bytes_is_rejected_with_400() {
    let loki = spawn_default().await;
    let labels = format!("{{{}=\"v\"}}", "n".repeat(1025));
    let p = single(&labels, entry(now(), "x"));
    assert_rejected(
        &loki,
        &p,
        "has label name too long",
        Discard::LabelNameTooLong,
    )
    .await;
}

#[tokio::test]
async fn a_label_value_over_2048_bytes_is_rejected_with_400() {
    let loki = spawn_default().await;
    let labels = format!("{{service=\"{}\"}}", "v".repeat(2049));
    let p = single(&labels, entry(now(), "x"));
    assert_rejected(
        &loki,
        &p,
        "has label value too long",
        Discard::LabelValueTooLong,
    )
    .await;
}

#[tokio::test]
async fn one_unparsable_label_set_rejects_the_whole_request_and_stores_nothing() {
    let loki = spawn_default().await;
    let t = now();
    let p = request(vec![
        stream(
            r#"{service="api"}"#,
            vec![entry(t, "good-1"), entry(t + 1, "good-2")],
        ),
        stream(r#"{bad-name="x"}"#, vec![entry(t, "bad")]),
        stream(r#"{service="web"}"#, vec![entry(t, "good-3")]),
    ]);
    let a = push(&loki, &p).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        a.body,
        "couldn't parse labels: 1:5: parse error: unexpected character inside braces: '-'\n"
    );
    assert!(loki.entries("fake").is_empty());
    let stats = loki.stats();
    assert_eq!(stats.entries_stored, 0);
    assert_eq!(stats.lines_received, 4);
    // Every received line is accounted for under the request's reason.
    assert_eq!(stats.discarded_for(Discard::InvalidLabels), 4);
}

#[tokio::test]
async fn a_bad_label_set_rejects_only_its_stream() {
    let loki = spawn_default().await;
    let t = now();
    let p = request(vec![
        stream(r#"{service="api"}"#, vec![entry(t, "good-1")]),
        stream(&many_labels(16), vec![entry(t, "bad")]),
        stream(r#"{service="web"}"#, vec![entry(t, "good-2")]),
    ]);
    let a = push(&loki, &p).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        a.body.ends_with("has 16 label names; limit 15\n"),
        "{}",
        a.body
    );
    assert_eq!(lines(&loki.entries("fake")), ["good-1", "good-2"]);
    assert_eq!(
        loki.stats().discarded_for(Discard::MaxLabelNamesPerSeries),
        1
    );
}

// ---------------------------------------------------------------------------------------------
// Partial acceptance

#[tokio::test]
async fn good_entries_of_a_stream_with_rejected_ones_are_stored_and_the_answer_aggregates() {
    let loki = spawn_default().await;
    let t = now();
    let long = "x".repeat(256 * 1024 + 1);
    let p = request(vec![stream(
        r#"{service="api"}"#,
        vec![
            entry(t, "good-1"),
            entry(t + 1, &long),
            entry(t + 2, "good-2"),
            entry(t + 20 * MIN, "future"),
            entry(t + 3, &long),
            entry(t + 4, "good-3"),
        ],
    )]);
    let a = push(&loki, &p).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let labels = r#"{service="api", service_name="api"}"#;
    let want = format!(
        "2 errors like: max entry size '262144' bytes exceeded for stream '{labels}' while adding an entry with length '262145' bytes; 1 errors like: entry for stream '{labels}' has timestamp too new: "
    );
    assert!(a.body.starts_with(&want), "{}\nwanted {want}", a.body);
    assert_eq!(lines(&loki.entries("fake")), ["good-1", "good-2", "good-3"]);
    let stats = loki.stats();
    assert_eq!(stats.discarded_for(Discard::LineTooLong), 2);
    assert_eq!(stats.discarded_for(Discard::TooFarInFuture), 1);
    assert_eq!(stats.entries_accepted, 3);
}

// ---------------------------------------------------------------------------------------------
// Malformed requests

#[tokio::test]
async fn malformed_json_is_rejected_with_400() {
    let loki = spawn_default().await;
    let a = post(
        &loki,
        Some("application/json"),
        None,
        None,
        br#"{"streams":["#.to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    // Loki's JSON errors are jsoniter's texts (recorded: json-ts-number).
    assert!(a.body.contains("error found in #"), "{}", a.body);
}

#[tokio::test]
async fn a_numeric_json_timestamp_is_rejected_with_400() {
    let loki = spawn_default().await;
    let body = format!(
        r#"{{"streams":[{{"stream":{{"service":"api"}},"values":[[{}, "x"]]}}]}}"#,
        now()
    );
    let a = post(
        &loki,
        Some("application/json"),
        None,
        None,
        body.into_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert!(loki.entries("fake").is_empty());
}

#[tokio::test]
async fn a_push_without_content_type_is_rejected_with_400() {
    let loki = spawn_default().await;
    let body = encode_protobuf(&single(r#"{service="api"}"#, entry(now(), "x"))).unwrap();
    let a = post(&loki, None, None, None, body.clone()).await.unwrap();
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.body.trim(), "mime: no media type");
    // Any other content type reads as protobuf.
    let a = post(&loki, Some("text/plain"), None, None, body)
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
}

#[tokio::test]
async fn corrupt_snappy_is_rejected_with_400() {
    let loki = spawn_default().await;
    let a = post(
        &loki,
        Some("application/x-protobuf"),
        None,
        None,
        b"\xff\xff\xff\xff\xff\xff".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.contains("snappy"), "{}", a.body);
}

#[tokio::test]
async fn a_push_without_streams_answers_422() {
    let loki = spawn_default().await;
    let a = post(
        &loki,
        Some("application/json"),
        None,
        None,
        br#"{"streams":[]}"#.to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        a.body.trim(),
        "error at least one valid stream is required for ingestion"
    );
}

#[tokio::test]
async fn a_push_without_tenant_answers_401_no_org_id_when_multi_tenant() {
    let loki = spawn(LokiConfig {
        auth_enabled: true,
        ..LokiConfig::default()
    })
    .await;
    let p = single(r#"{service="api"}"#, entry(now(), "x"));
    let a = push_as(&loki, None, &p).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.body.trim(), "no org id");
    let a = push_as(&loki, Some("team-a"), &p).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let a = get(&loki, "/loki/api/v1/labels", None, &[]).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_body_over_the_limit_answers_413() {
    let loki = spawn(LokiConfig {
        max_body_bytes: 1024,
        max_decompressed_bytes: 1024,
        ..LokiConfig::default()
    })
    .await;
    let p = single(r#"{service="api"}"#, entry(now(), &"x".repeat(4000)));
    let a = post(
        &loki,
        Some("application/json"),
        None,
        None,
        encode_json(&p).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        a.body
            .starts_with("request body too large: message size too large than max (1025 vs 1024)"),
        "{}",
        a.body
    );
    // A small compressed body that inflates beyond the decompressed limit is refused as well.
    let a = push(&loki, &p).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.body);
    assert!(
        a.body
            .starts_with("request body too large: decompressed message size too large"),
        "{}",
        a.body
    );
    assert!(loki.entries("fake").is_empty());
}

// ---------------------------------------------------------------------------------------------
// Limits (429)

/// Loki sends no `Retry-After` with any 429 (recorded: rate-second-push).
#[tokio::test]
async fn the_tenant_rate_answers_429_without_retry_after_and_stores_nothing() {
    let loki = spawn(LokiConfig {
        ingestion_rate_mb: 100.0 / 1_048_576.0,
        ingestion_burst_size_mb: 2000.0 / 1_048_576.0,
        ..LokiConfig::default()
    })
    .await;
    let t = now();
    let line = "x".repeat(1500);
    let a = push(&loki, &single(r#"{service="api"}"#, entry(t, &line))).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let a = push(&loki, &single(r#"{service="api"}"#, entry(t + 1, &line))).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        a.body.starts_with("ingestion rate limit exceeded for user fake (limit: 100 bytes/sec) while attempting to ingest '1' lines totaling '1500' bytes"),
        "{}",
        a.body
    );
    assert!(!a.headers.contains_key("retry-after"));
    assert_eq!(loki.entries("fake").len(), 1);
    assert_eq!(loki.stats().discarded_for(Discard::RateLimited), 1);
}

/// Each stream of a push is created or refused on its own; the answer is the last stream's
/// (recorded: stream-limit-exceeded names only the last stream, ts-before-schema-other-stream
/// stores the stream that could be created).
#[tokio::test]
async fn the_stream_limit_answers_429_for_a_new_stream() {
    let loki = spawn(LokiConfig {
        max_streams_per_user: 2,
        ..LokiConfig::default()
    })
    .await;
    let t = now();
    let two = request(vec![
        stream(r#"{service="a"}"#, vec![entry(t, "a")]),
        stream(r#"{service="b"}"#, vec![entry(t, "b")]),
    ]);
    assert_eq!(push(&loki, &two).await.status, StatusCode::NO_CONTENT);
    let third = request(vec![
        stream(r#"{service="a"}"#, vec![entry(t + 1, "a2")]),
        stream(r#"{service="c"}"#, vec![entry(t, "c")]),
    ]);
    let a = push(&loki, &third).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(!a.headers.contains_key("retry-after"));
    assert_eq!(
        a.body,
        "maximum active stream limit exceeded when trying to create stream {service=\"c\", service_name=\"c\"}, reduce the number of active streams (reduce labels or reduce label values), or contact your Loki administrator to see if the limit can be increased, user: 'fake'\n"
    );
    // The existing stream's entry of the same push is stored.
    assert_eq!(lines(&loki.entries("fake")), ["a", "a2", "b"]);
    assert_eq!(loki.stats().discarded_for(Discard::StreamLimit), 1);
    let existing = single(r#"{service="a"}"#, entry(t + 2, "a3"));
    assert_eq!(push(&loki, &existing).await.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn the_per_stream_rate_answers_429_for_a_hot_stream_only() {
    let loki = spawn(LokiConfig {
        per_stream_rate_limit_mb: 100.0 / 1_048_576.0,
        per_stream_rate_limit_burst_mb: 1000.0 / 1_048_576.0,
        ..LokiConfig::default()
    })
    .await;
    let t = now();
    let line = "x".repeat(800);
    let hot = |ts| single(r#"{service="hot"}"#, entry(ts, &line));
    assert_eq!(push(&loki, &hot(t)).await.status, StatusCode::NO_CONTENT);
    let a = push(&loki, &hot(t + 1)).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(!a.headers.contains_key("retry-after"));
    // Loki's ingester lists the refused entries (recorded: stream-rate-over).
    assert!(a.body.starts_with("entry with timestamp "), "{}", a.body);
    assert!(a.body.contains("ignored, reason: 'Per stream rate limit exceeded (limit: 100B/sec) while attempting to ingest for stream '{service=\"hot\", service_name=\"hot\"}' totaling 800B"), "{}", a.body);
    assert!(a.body.ends_with("user 'fake', total ignored: 1 out of 1 for stream: {service=\"hot\", service_name=\"hot\"}\n"), "{}", a.body);
    let cold = single(r#"{service="cold"}"#, entry(t, &line));
    assert_eq!(push(&loki, &cold).await.status, StatusCode::NO_CONTENT);
    assert_eq!(loki.stats().discarded_for(Discard::PerStreamRateLimit), 1);
}

// ---------------------------------------------------------------------------------------------
// Duplicates

#[tokio::test]
async fn exact_duplicates_are_dropped_silently_and_a_new_line_at_the_same_time_is_kept() {
    let loki = spawn_default().await;
    let t0 = now() - 10 * MIN;
    let batch: Vec<EntryAdapter> = (0..100)
        .map(|i| entry(t0 + i * 1_000_000, &format!("line {i}")))
        .collect();
    let labels = r#"{service="api", level="info"}"#;
    let full = request(vec![stream(labels, batch.clone())]);
    assert_eq!(push(&loki, &full).await.status, StatusCode::NO_CONTENT);
    assert_eq!(push(&loki, &full).await.status, StatusCode::NO_CONTENT);
    // A sub-range again, out of order, with two new entries.
    let mut again: Vec<EntryAdapter> = batch[40..60].iter().rev().cloned().collect();
    again.insert(5, entry(t0 + 500 * 1_000_000, "new 1"));
    again.push(entry(t0 + 501 * 1_000_000, "new 2"));
    let a = push(&loki, &request(vec![stream(labels, again)])).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(loki.entries("fake").len(), 102);
    // Same timestamp, another line: a different entry.
    let same_time = single(labels, entry(t0, "line 0, but different"));
    assert_eq!(push(&loki, &same_time).await.status, StatusCode::NO_CONTENT);
    let stored = loki.entries("fake");
    assert_eq!(stored.len(), 103);
    assert_eq!(lines(&stored[..2]), ["line 0", "line 0, but different"]);
    let stats = loki.stats();
    assert_eq!(stats.duplicates, 120);
    assert_eq!(stats.entries_stored, 103);
}

// ---------------------------------------------------------------------------------------------
// Query API

/// Three streams: api/info, api/error, web/info, one entry a second from `t`.
async fn seeded() -> (LokiHandle, i64) {
    let loki = spawn_default().await;
    let t = now() - 10 * MIN;
    let p = request(vec![
        stream(
            r#"{service="api", level="info"}"#,
            vec![entry(t, "api-info-0"), entry(t + 2 * SEC, "api-info-2")],
        ),
        stream(
            r#"{service="api", level="error"}"#,
            vec![entry(t + SEC, "api-error-1")],
        ),
        stream(
            r#"{service="web", level="info"}"#,
            vec![entry(t + 3 * SEC, "web-info-3")],
        ),
    ]);
    assert_eq!(push(&loki, &p).await.status, StatusCode::NO_CONTENT);
    (loki, t)
}

#[tokio::test]
async fn query_range_selects_streams_with_each_matcher() {
    let (loki, _) = seeded().await;
    let cases: [(&str, &[&str]); 5] = [
        (
            r#"{service="api"}"#,
            &["api-info-2", "api-error-1", "api-info-0"],
        ),
        (r#"{service="api", level!="info"}"#, &["api-error-1"]),
        (
            r#"{service=~"a.."}"#,
            &["api-info-2", "api-error-1", "api-info-0"],
        ),
        (r#"{service=~"web|api", level!~"inf.*"}"#, &["api-error-1"]),
        (r#"{level="info", service!~"a.*"}"#, &["web-info-3"]),
    ];
    for (query, want) in cases {
        let got = query_range(&loki, None, &[("query", query)]).await;
        let mut got_lines = result_lines(&got);
        let mut want: Vec<String> = want.iter().map(|s| (*s).to_owned()).collect();
        got_lines.sort();
        want.sort();
        assert_eq!(got_lines, want, "{query}");
    }
    // Regexes are anchored: "ap" does not match "api".
    let got = query_range(&loki, None, &[("query", r#"{service=~"ap"}"#)]).await;
    assert!(got.is_empty());
    // Stream labels include service_name.
    let got = query_range(&loki, None, &[("query", r#"{service="web"}"#)]).await;
    assert_eq!(got[0].0["service_name"], "web");
    assert_eq!(got[0].0["level"], "info");
}

#[tokio::test]
async fn query_range_has_an_inclusive_start_and_an_exclusive_end() {
    let (loki, t) = seeded().await;
    let start = (t + SEC).to_string();
    let end = (t + 3 * SEC).to_string();
    let got = query_range(
        &loki,
        None,
        &[
            ("query", r#"{level=~".+"}"#),
            ("start", &start),
            ("end", &end),
            ("direction", "forward"),
        ],
    )
    .await;
    let mut l = result_lines(&got);
    l.sort();
    assert_eq!(l, ["api-error-1", "api-info-2"]);
    // RFC 3339 works too, and without start the window is the last hour.
    let rfc = schema::Timestamp::from_nanos(t + 3 * SEC)
        .unwrap()
        .to_rfc3339();
    let got = query_range(
        &loki,
        None,
        &[("query", r#"{service="web"}"#), ("start", &rfc)],
    )
    .await;
    assert_eq!(result_lines(&got), ["web-info-3"]);
    let old_end = (t - HOUR).to_string();
    let got = query_range(
        &loki,
        None,
        &[("query", r#"{service="web"}"#), ("end", &old_end)],
    )
    .await;
    assert!(got.is_empty());
    let a = get(
        &loki,
        "/loki/api/v1/query_range",
        None,
        &[
            ("query", r#"{service="web"}"#),
            ("start", &end),
            ("end", &start),
        ],
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn query_range_honours_limit_and_direction() {
    let (loki, _) = seeded().await;
    let q = ("query", r#"{level=~"info|error"}"#);
    let got = query_range(&loki, None, &[q, ("limit", "2")]).await;
    let mut l = result_lines(&got);
    l.sort();
    // Backward by default: the two newest.
    assert_eq!(l, ["api-info-2", "web-info-3"]);
    let got = query_range(&loki, None, &[q, ("limit", "2"), ("direction", "forward")]).await;
    let mut l = result_lines(&got);
    l.sort();
    assert_eq!(l, ["api-error-1", "api-info-0"]);
    // Values within a stream follow the direction.
    let api_info = ("query", r#"{service="api", level="info"}"#);
    let got = query_range(&loki, None, &[api_info]).await;
    assert_eq!(result_lines(&got), ["api-info-2", "api-info-0"]);
    let got = query_range(&loki, None, &[api_info, ("direction", "FORWARD")]).await;
    assert_eq!(result_lines(&got), ["api-info-0", "api-info-2"]);
    for bad in [("limit", "0"), ("limit", "5001"), ("direction", "sideways")] {
        let a = get(&loki, "/loki/api/v1/query_range", None, &[q, bad]).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad:?}");
    }
}

#[tokio::test]
async fn query_range_applies_line_filters() {
    // The corpus queries `{service_name="unknown_service"} |= "line of …"`.
    let (loki, _) = seeded().await;
    let got = query_range(
        &loki,
        None,
        &[("query", r#"{service="api"} |= "info" != "-2""#)],
    )
    .await;
    assert_eq!(result_lines(&got), ["api-info-0"]);
    let got = query_range(&loki, None, &[("query", r#"{level="info"} |~ "^web""#)]).await;
    assert_eq!(result_lines(&got), ["web-info-3"]);
}

#[tokio::test]
async fn query_range_refuses_parsers_and_metric_queries_with_a_parse_error() {
    let (loki, _) = seeded().await;
    for (query, what) in [
        (r#"{service="api"} |= "error" | json"#, "pipeline stages"),
        (r#"{service="api"} | json"#, "pipeline stages"),
        (r#"rate({service="api"}[5m])"#, "metric queries"),
        (r#"{service=~".*"}"#, "at least one"),
        ("", "parse error"),
    ] {
        let a = get(&loki, "/loki/api/v1/query_range", None, &[("query", query)]).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(a.body.starts_with("parse error"), "{query}: {}", a.body);
        assert!(a.body.contains(what), "{query}: {}", a.body);
    }
}

#[tokio::test]
async fn query_results_split_streams_by_structured_metadata() {
    let loki = spawn_default().await;
    let t = now();
    let p = request(vec![stream(
        r#"{service="api"}"#,
        vec![
            with_metadata(entry(t, "a"), &[("trace_id", "1")]),
            with_metadata(entry(t + 1, "b"), &[("trace_id", "2")]),
            with_metadata(entry(t + 2, "c"), &[("trace_id", "1")]),
            entry(t + 3, "d"),
        ],
    )]);
    assert_eq!(push(&loki, &p).await.status, StatusCode::NO_CONTENT);
    let got = query_range(
        &loki,
        None,
        &[("query", r#"{service="api"}"#), ("direction", "forward")],
    )
    .await;
    assert_eq!(got.len(), 3);
    let by_trace: BTreeMap<Option<String>, Vec<String>> = got
        .into_iter()
        .map(|(labels, values)| {
            assert_eq!(labels["service"], "api");
            (
                labels.get("trace_id").cloned(),
                values.into_iter().map(|(_, l)| l).collect(),
            )
        })
        .collect();
    assert_eq!(by_trace[&Some("1".to_owned())], ["a", "c"]);
    assert_eq!(by_trace[&Some("2".to_owned())], ["b"]);
    assert_eq!(by_trace[&None], ["d"]);
    // Values are [ns as a string, line].
    let got = query_range(
        &loki,
        None,
        &[("query", r#"{service="api"}"#), ("limit", "1")],
    )
    .await;
    assert_eq!(got[0].1[0], ((t + 3).to_string(), "d".to_owned()));
}

#[tokio::test]
async fn labels_and_label_values_are_sorted() {
    let (loki, _) = seeded().await;
    let a = get(&loki, "/loki/api/v1/labels", None, &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    let v = json(&a);
    assert_eq!(v["status"], "success");
    assert_eq!(
        v["data"],
        serde_json::json!(["level", "service", "service_name"])
    );
    let a = get(&loki, "/loki/api/v1/label/level/values", None, &[]).await;
    assert_eq!(json(&a)["data"], serde_json::json!(["error", "info"]));
    let a = get(
        &loki,
        "/loki/api/v1/label/level/values",
        None,
        &[("query", r#"{service="web"}"#)],
    )
    .await;
    assert_eq!(json(&a)["data"], serde_json::json!(["info"]));
    let a = get(&loki, "/loki/api/v1/label/nope/values", None, &[]).await;
    assert_eq!(json(&a)["data"], serde_json::json!([]));
}

#[tokio::test]
async fn tenants_are_isolated_in_pushes_queries_and_labels() {
    let loki = spawn(LokiConfig {
        auth_enabled: true,
        ..LokiConfig::default()
    })
    .await;
    let t = now();
    let a = single(r#"{service="api", team="a"}"#, entry(t, "from a"));
    let b = single(r#"{service="api", team="b"}"#, entry(t, "from b"));
    assert_eq!(
        push_as(&loki, Some("tenant-a"), &a).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        push_as(&loki, Some("tenant-b"), &b).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(lines(&loki.entries("tenant-a")), ["from a"]);
    assert_eq!(lines(&loki.entries("tenant-b")), ["from b"]);
    assert!(loki.entries("fake").is_empty());
    let q = [("query", r#"{service="api"}"#)];
    let got = query_range(&loki, Some("tenant-a"), &q).await;
    assert_eq!(result_lines(&got), ["from a"]);
    let got = query_range(&loki, Some("tenant-c"), &q).await;
    assert!(got.is_empty());
    let v = json(
        &get(
            &loki,
            "/loki/api/v1/label/team/values",
            Some("tenant-b"),
            &[],
        )
        .await,
    );
    assert_eq!(v["data"], serde_json::json!(["b"]));
    let a = get(&loki, "/loki/api/v1/query_range", None, &q).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    // The metrics carry the tenant.
    let text = loki.metrics_text();
    assert!(text.contains("loki_distributor_lines_received_total{tenant=\"tenant-a\"} 1"));
    assert!(text
        .contains("loki_discarded_samples_total{reason=\"rate_limited\",tenant=\"tenant-b\"} 0"));
}

#[tokio::test]
async fn categorized_labels_show_normalised_metadata_and_detected_level() {
    // Recorded: sm-name-normalisation, sm-level-detection.
    let loki = spawn_default().await;
    let t = now();
    let p = request(vec![stream(
        r#"{service="api", level="warn"}"#,
        vec![with_metadata(
            entry(t, "x"),
            &[("trace.id", "1"), ("1abc", "2"), ("a__b", "3"), ("e", "")],
        )],
    )]);
    assert_eq!(push(&loki, &p).await.status, StatusCode::NO_CONTENT);
    let a = client()
        .get(format!("{}/loki/api/v1/query_range", loki.url()))
        .header("X-Loki-Response-Encoding-Flags", "categorize-labels")
        .query(&[("query", r#"{service="api"}"#)])
        .send()
        .await
        .unwrap();
    let v: Value = a.json().await.unwrap();
    let result = &v["data"]["result"][0];
    assert_eq!(
        result["stream"],
        serde_json::json!({"level": "warn", "service": "api", "service_name": "api"})
    );
    assert_eq!(
        result["values"][0][2]["structuredMetadata"],
        serde_json::json!({"a_b": "3", "detected_level": "warn", "key_1abc": "2", "trace_id": "1"})
    );
    // The handle shows what the client sent, as Loki stores it, without detected_level.
    let stored = &loki.entries("fake")[0];
    let mut metadata = stored.metadata.clone();
    metadata.sort();
    assert_eq!(
        metadata,
        [
            ("a_b".to_owned(), "3".to_owned()),
            ("key_1abc".to_owned(), "2".to_owned()),
            ("trace_id".to_owned(), "1".to_owned())
        ]
    );
}

#[tokio::test]
async fn series_lists_the_selected_streams_with_entries_in_range() {
    let (loki, t) = seeded().await;
    let a = get(
        &loki,
        "/loki/api/v1/series",
        None,
        &[
            ("match[]", r#"{service="api"}"#),
            ("start", &(t - SEC).to_string()),
            ("end", &(t + 10 * SEC).to_string()),
        ],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(
        json(&a)["data"],
        serde_json::json!([
            {"level": "error", "service": "api", "service_name": "api"},
            {"level": "info", "service": "api", "service_name": "api"}
        ])
    );
    let a = get(
        &loki,
        "/loki/api/v1/series",
        None,
        &[
            ("match[]", r#"{service="api"}"#),
            ("start", &(t - 2 * HOUR).to_string()),
            ("end", &(t - HOUR).to_string()),
        ],
    )
    .await;
    assert_eq!(json(&a)["data"], serde_json::json!([]));
}

#[tokio::test]
async fn queries_see_only_entries_within_query_ingesters_within() {
    // Recorded: ts-old-48h is accepted but cannot be queried back.
    let loki = spawn(LokiConfig {
        limits: schema::loki::limits::Limits {
            reject_old_samples: false,
            ..schema::loki::limits::Limits::default()
        },
        ..LokiConfig::default()
    })
    .await;
    let old = now() - 48 * HOUR;
    let p = single(r#"{service="old"}"#, entry(old, "two days ago"));
    assert_eq!(push(&loki, &p).await.status, StatusCode::NO_CONTENT);
    assert_eq!(loki.entries("fake").len(), 1);
    let range = [
        ("query", r#"{service="old"}"#),
        ("start", &(old - SEC).to_string()),
        ("end", &(old + SEC).to_string()),
    ];
    let got = query_range(&loki, None, &range).await;
    assert!(got.is_empty(), "{got:?}");
    let all = spawn(LokiConfig {
        query_ingesters_within: Duration::ZERO,
        ..loki.config().clone()
    })
    .await;
    assert_eq!(push(&all, &p).await.status, StatusCode::NO_CONTENT);
    assert_eq!(
        result_lines(&query_range(&all, None, &range).await),
        ["two days ago"]
    );
}

#[tokio::test]
async fn permanent_failures_answer_500() {
    // Recorded: ts-zero-new-stream, sm-name-empty.
    let loki = spawn(LokiConfig {
        limits: schema::loki::limits::Limits {
            reject_old_samples: false,
            ..schema::loki::limits::Limits::default()
        },
        ..LokiConfig::default()
    })
    .await;
    let a = push(&loki, &single(r#"{service="api"}"#, entry(0, "epoch"))).await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        a.body,
        "rpc error: code = Unknown desc = failed to create stream: no schema config found for time 0\n"
    );
    let e = with_metadata(entry(now(), "x"), &[("", "v")]);
    let a = push(&loki, &single(r#"{service="api"}"#, e)).await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(a.body, "label name is empty\n");
    assert!(loki.entries("fake").is_empty());
    let stats = loki.stats();
    assert_eq!(stats.discarded_for(Discard::BeforeSchemaStart), 1);
    assert_eq!(stats.discarded_for(Discard::InvalidMetadataName), 1);
}

#[tokio::test]
async fn an_earlier_streams_refused_entry_is_answered_204() {
    // Recorded: too-far-behind-masked; swapped, too-far-behind-last-stream answers 400.
    let loki = spawn_default().await;
    let t = now();
    let masked = request(vec![
        stream(
            r#"{s="1"}"#,
            vec![entry(t, "s1 now"), entry(t - 61 * MIN, "s1 61m ago")],
        ),
        stream(r#"{s="2"}"#, vec![entry(t, "s2 now")]),
    ]);
    assert_eq!(push(&loki, &masked).await.status, StatusCode::NO_CONTENT);
    assert_eq!(lines(&loki.entries("fake")), ["s1 now", "s2 now"]);
    assert_eq!(loki.stats().discarded_for(Discard::TooFarBehind), 1);
    let last = request(vec![
        stream(r#"{s="3"}"#, vec![entry(t, "s3 now")]),
        stream(
            r#"{s="4"}"#,
            vec![entry(t, "s4 now"), entry(t - 61 * MIN, "s4 61m ago")],
        ),
    ]);
    let a = push(&loki, &last).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        a.body.ends_with("user 'fake', total ignored: 1 out of 2 for stream: {s=\"4\", service_name=\"unknown_service\"}\n"),
        "{}",
        a.body
    );
}

#[tokio::test]
async fn json_label_names_are_pasted_unquoted_as_loki_does() {
    // Recorded: json-label-name-injection stores two labels.
    let loki = spawn_default().await;
    let body = format!(
        r#"{{"streams":[{{"stream":{{"case":"j","x=\"1\", injected":"2"}},"values":[["{}","x"]]}}]}}"#,
        now()
    );
    let a = post(
        &loki,
        Some("application/json"),
        None,
        None,
        body.into_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    let stored = &loki.entries("fake")[0];
    assert_eq!(stored.labels.get("x"), Some("1"));
    assert_eq!(stored.labels.get("injected"), Some("2"));
}

#[tokio::test]
async fn a_quoted_label_name_is_stored_but_cannot_be_queried() {
    // Recorded: pb-labels-quoted-name-dot.
    let loki = spawn_default().await;
    let p = single(r#"{case="q", "a.b"="c"}"#, entry(now(), "x"));
    assert_eq!(push(&loki, &p).await.status, StatusCode::NO_CONTENT);
    let a = get(
        &loki,
        "/loki/api/v1/query_range",
        None,
        &[("query", r#"{case="q"}"#)],
    )
    .await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        a.body,
        "could not write JSON response: 1:3: parse error: unexpected character inside braces: '.'\n"
    );
}

// ---------------------------------------------------------------------------------------------
// Faults

#[tokio::test]
async fn a_refuse_outage_refuses_connections_then_recovers_on_the_same_port() {
    let loki = spawn_default().await;
    let p = single(r#"{service="api"}"#, entry(now(), "before"));
    assert_eq!(push(&loki, &p).await.status, StatusCode::NO_CONTENT);
    let addr = loki.addr();
    loki.set_faults(Faults {
        outage: Some(Outage::Refuse),
        ..Faults::default()
    })
    .await
    .unwrap();
    let refused = tokio::net::TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    let err = post(&loki, Some("application/x-protobuf"), None, None, vec![])
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err}");
    // The control API stays reachable and shows the outage; it also ends it.
    let faults: Value = client()
        .get(format!("{}/control/faults", loki.control_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(faults["outage"], "refuse");
    let cleared = client()
        .delete(format!("{}/control/faults", loki.control_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), StatusCode::OK);
    assert_eq!(loki.addr(), addr);
    let p = single(r#"{service="api"}"#, entry(now(), "after"));
    assert_eq!(push(&loki, &p).await.status, StatusCode::NO_CONTENT);
    assert_eq!(lines(&loki.entries("fake")), ["before", "after"]);
    loki.shutdown().await;
}

#[tokio::test]
async fn a_refuse_outage_set_at_start_keeps_the_port_for_recovery() {
    let loki = spawn(LokiConfig {
        faults: Faults {
            outage: Some(Outage::Refuse),
            ..Faults::default()
        },
        ..LokiConfig::default()
    })
    .await;
    assert!(tokio::net::TcpStream::connect(loki.addr()).await.is_err());
    loki.clear_faults().await.unwrap();
    assert_eq!(get(&loki, "/ready", None, &[]).await.status, StatusCode::OK);
}

#[tokio::test]
async fn an_unavailable_outage_answers_503_to_pushes_and_ready() {
    let loki = spawn_default().await;
    loki.set_faults(Faults {
        outage: Some(Outage::Unavailable),
        ..Faults::default()
    })
    .await
    .unwrap();
    let p = single(r#"{service="api"}"#, entry(now(), "x"));
    assert_eq!(
        push(&loki, &p).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get(&loki, "/ready", None, &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(loki.entries("fake").is_empty());
    assert_eq!(loki.stats().requests_with(503), 1);
    loki.clear_faults().await.unwrap();
    assert_eq!(push(&loki, &p).await.status, StatusCode::NO_CONTENT);
    assert_eq!(get(&loki, "/ready", None, &[]).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_429_storm_answers_with_retry_after_and_is_counted() {
    let loki = spawn(LokiConfig {
        faults: Faults {
            status_storm: Some(StatusStorm {
                code: 429,
                rate: 1.0,
                retry_after_secs: Some(7),
            }),
            ..Faults::default()
        },
        ..LokiConfig::default()
    })
    .await;
    let p = single(r#"{service="api"}"#, entry(now(), "x"));
    for _ in 0..3 {
        let a = push(&loki, &p).await;
        assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(a.headers["retry-after"], "7");
    }
    assert!(loki.entries("fake").is_empty());
    assert_eq!(loki.stats().requests_with(429), 3);
    assert!(loki
        .metrics_text()
        .contains("loki_receiver_requests_total{status=\"429\"} 3"));
}

#[tokio::test]
async fn a_5xx_storm_at_half_rate_fails_some_pushes_and_lets_the_others_through() {
    let loki = spawn_default().await;
    loki.set_faults(Faults {
        status_storm: Some(StatusStorm {
            code: 502,
            rate: 0.5,
            retry_after_secs: None,
        }),
        ..Faults::default()
    })
    .await
    .unwrap();
    let t = now();
    let (mut ok, mut failed) = (0, 0);
    for i in 0..60 {
        let a = push(&loki, &single(r#"{service="api"}"#, entry(t + i, "x"))).await;
        match a.status {
            StatusCode::NO_CONTENT => ok += 1,
            StatusCode::BAD_GATEWAY => {
                assert!(!a.headers.contains_key("retry-after"));
                failed += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    // The chance that 60 fair coin flips all land one way is 2^-59.
    assert!(ok > 0 && failed > 0, "{ok} ok, {failed} failed");
    assert_eq!(loki.entries("fake").len(), ok);
    let stats = loki.stats();
    assert_eq!(stats.requests_with(502), failed as u64);
    assert_eq!(stats.requests_with(204), ok as u64);
}

#[tokio::test]
async fn added_latency_delays_every_push() {
    let loki = spawn(LokiConfig {
        faults: Faults {
            latency_ms: 300,
            ..Faults::default()
        },
        ..LokiConfig::default()
    })
    .await;
    let p = single(r#"{service="api"}"#, entry(now(), "x"));
    let started = Instant::now();
    assert_eq!(push(&loki, &p).await.status, StatusCode::NO_CONTENT);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn dropped_connections_get_no_answer_and_store_nothing() {
    let loki = spawn(LokiConfig {
        faults: Faults {
            drop_rate: 1.0,
            ..Faults::default()
        },
        ..LokiConfig::default()
    })
    .await;
    let body = encode_protobuf(&single(r#"{service="api"}"#, entry(now(), "x"))).unwrap();
    let err = post(
        &loki,
        Some("application/x-protobuf"),
        None,
        None,
        body.clone(),
    )
    .await
    .unwrap_err();
    assert!(!err.is_timeout() && err.status().is_none(), "{err}");
    assert!(loki.entries("fake").is_empty());
    assert_eq!(loki.stats().requests_dropped(), 1);
    loki.clear_faults().await.unwrap();
    let a = post(&loki, Some("application/x-protobuf"), None, None, body)
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn the_control_api_sets_faults_reports_stats_and_resets() {
    let loki = spawn_default().await;
    let control = loki.control_url().to_owned();
    let c = client();
    let put = |body: &'static str| {
        c.put(format!("{control}/control/faults"))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    let r = put(r#"{"status_storm":{"code":503,"rate":1,"retry_after_secs":2}}"#)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let p = single(r#"{service="api"}"#, entry(now(), "x"));
    let a = push(&loki, &p).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.headers["retry-after"], "2");
    for bad in [
        r#"{"drop_rate":2}"#,
        r#"{"outage":"flood"}"#,
        r#"{"unknown":1}"#,
    ] {
        let r = put(bad).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let r = c
        .delete(format!("{control}/control/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(push(&loki, &p).await.status, StatusCode::NO_CONTENT);
    let stats: Value = c
        .get(format!("{control}/control/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["entries_stored"], 1);
    assert_eq!(stats["lines_received"], 1);
    assert_eq!(stats["requests"]["503"], 1);
    assert_eq!(stats["requests"]["204"], 1);
    assert_eq!(stats["discarded"]["line_too_long"], 0);
    assert_eq!(stats["duplicates"], 0);
    let r = c
        .post(format!("{control}/control/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(loki.entries("fake").is_empty());
    let stats = loki.stats();
    assert_eq!((stats.entries_stored, stats.lines_received), (0, 0));
    assert_eq!(stats.requests_with(204), 0);
    // After a reset the same entry is new again.
    assert_eq!(push(&loki, &p).await.status, StatusCode::NO_CONTENT);
    assert_eq!(loki.entries("fake").len(), 1);
    let text = c
        .get(format!("{control}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("loki_receiver_entries_stored 1"), "{text}");
}

#[tokio::test]
async fn the_control_api_deletes_exactly_the_entries_named_and_queries_stop_showing_them() {
    let loki = spawn_default().await;
    let t = now();
    let p = request(vec![
        stream(
            r#"{service="api"}"#,
            vec![entry(t, "keep"), entry(t, "gone"), entry(t + 1, "gone")],
        ),
        stream(r#"{service="web"}"#, vec![entry(t, "gone")]),
    ]);
    assert_eq!(push(&loki, &p).await.status, StatusCode::NO_CONTENT);
    let c = client();
    let delete = |body: String| {
        c.post(format!("{}/control/delete", loki.control_url()))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    // Every stream loses the entry at that timestamp with that line; nothing else goes.
    let r = delete(format!(
        r#"{{"entries":[{{"timestamp":"{t}","line":"gone"}},{{"timestamp":{t},"line":"absent"}}]}}"#
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["removed"], 2);
    let stored = loki.entries("fake");
    let mut got: Vec<(i64, &str)> = stored
        .iter()
        .map(|e| (e.timestamp, e.line.as_str()))
        .collect();
    got.sort_unstable();
    assert_eq!(got, [(t, "keep"), (t + 1, "gone")]);
    let start = (t - MIN).to_string();
    let end = (t + MIN).to_string();
    let result = query_range(
        &loki,
        None,
        &[
            ("query", r#"{service=~".+"}"#),
            ("start", &start),
            ("end", &end),
        ],
    )
    .await;
    let mut lines = result_lines(&result);
    lines.sort();
    assert_eq!(lines, ["gone", "keep"]);
    // The handle does the same, and an unknown tenant or a bad body removes nothing.
    assert_eq!(
        loki.remove_entries("fake", &[(t + 1, "gone".to_owned())]),
        1
    );
    assert_eq!(loki.remove_entries("nobody", &[(t, "keep".to_owned())]), 0);
    for bad in [
        r#"{"entries":[{"timestamp":"soon","line":"keep"}]}"#.to_owned(),
        r#"{"entries":[{"line":"keep"}]}"#.to_owned(),
        r#"{"lines":[]}"#.to_owned(),
    ] {
        let r = delete(bad.clone()).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    assert_eq!(lines_of_store(&loki), ["keep"]);
}

fn lines_of_store(loki: &LokiHandle) -> Vec<String> {
    loki.entries("fake").into_iter().map(|e| e.line).collect()
}

// ---------------------------------------------------------------------------------------------
// Modes, metrics, service_name

#[tokio::test]
async fn count_only_mode_validates_and_counts_but_stores_nothing() {
    let loki = spawn(LokiConfig {
        count_only: true,
        ..LokiConfig::default()
    })
    .await;
    let t = now();
    let entries: Vec<EntryAdapter> = (0..10).map(|i| entry(t + i, &format!("l{i}"))).collect();
    let mut p = request(vec![stream(r#"{service="api"}"#, entries)]);
    assert_eq!(push(&loki, &p).await.status, StatusCode::NO_CONTENT);
    p.streams[0].entries.push(entry(t + 20 * MIN, "future"));
    assert_eq!(push(&loki, &p).await.status, StatusCode::BAD_REQUEST);
    assert!(loki.entries("fake").is_empty());
    let stats = loki.stats();
    assert_eq!(stats.lines_received, 21);
    assert_eq!(stats.entries_accepted, 20);
    assert_eq!(stats.entries_stored, 0);
    assert_eq!(stats.discarded_for(Discard::TooFarInFuture), 1);
    let got = query_range(&loki, None, &[("query", r#"{service="api"}"#)]).await;
    assert!(got.is_empty());
}

#[tokio::test]
async fn metrics_expose_the_counters_with_their_values() {
    let loki = spawn_default().await;
    let t = now();
    let p = request(vec![stream(
        r#"{service="api"}"#,
        vec![
            entry(t, "abc"),
            entry(t + 1, "de"),
            entry(t + 2, &"x".repeat(256 * 1024 + 1)),
        ],
    )]);
    assert_eq!(push(&loki, &p).await.status, StatusCode::BAD_REQUEST);
    let dup = single(r#"{service="api"}"#, entry(t, "abc"));
    assert_eq!(push(&loki, &dup).await.status, StatusCode::NO_CONTENT);
    let a = get(&loki, "/metrics", None, &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    let text = a.body;
    for line in [
        "loki_distributor_lines_received_total{tenant=\"fake\"} 4".to_owned(),
        format!(
            "loki_distributor_bytes_received_total{{tenant=\"fake\"}} {}",
            3 + 2 + 256 * 1024 + 1 + 3
        ),
        "loki_discarded_samples_total{reason=\"line_too_long\",tenant=\"fake\"} 1".to_owned(),
        "loki_discarded_samples_total{reason=\"stream_limit\",tenant=\"fake\"} 0".to_owned(),
        "loki_receiver_requests_total{status=\"400\"} 1".to_owned(),
        "loki_receiver_requests_total{status=\"204\"} 1".to_owned(),
        "loki_receiver_requests_total{status=\"429\"} 0".to_owned(),
        "loki_receiver_duplicates_total 1".to_owned(),
        "loki_receiver_entries_stored 2".to_owned(),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

#[tokio::test]
async fn service_name_is_discovered_like_loki_3() {
    let loki = spawn_default().await;
    let t = now();
    let cases = [
        (r#"{service="api", app="shop"}"#, "api"),
        (r#"{app="shop", job="j"}"#, "shop"),
        (r#"{container="c", job="j"}"#, "c"),
        (r#"{job="batch"}"#, "batch"),
        (r#"{env="prod"}"#, "unknown_service"),
        ("{}", "unknown_service"),
        (r#"{service_name="given", app="shop"}"#, "given"),
    ];
    for (i, (labels, _)) in cases.iter().enumerate() {
        let p = single(labels, entry(t, &format!("case {i}")));
        let a = push(&loki, &p).await;
        assert_eq!(a.status, StatusCode::NO_CONTENT, "{labels}: {}", a.body);
    }
    let stored = loki.entries("fake");
    for (i, (labels, want)) in cases.iter().enumerate() {
        let e = stored
            .iter()
            .find(|e| e.line == format!("case {i}"))
            .unwrap();
        assert_eq!(e.labels.get("service_name"), Some(*want), "{labels}");
    }
    // Queries see it like any label, and so does the query helper.
    let got = loki.query("fake", r#"{service_name="shop"}"#).unwrap();
    assert_eq!(lines(&got), ["case 1"]);
}

#[tokio::test]
async fn service_name_discovery_can_be_turned_off() {
    let loki = spawn(LokiConfig {
        discover_service_name: false,
        ..LokiConfig::default()
    })
    .await;
    let p = single(r#"{service="api"}"#, entry(now(), "x"));
    assert_eq!(push(&loki, &p).await.status, StatusCode::NO_CONTENT);
    assert_eq!(loki.entries("fake")[0].labels.get("service_name"), None);
}
