//! `POST /v1/logs` (DESIGN.md, "HTTP surface"): a JSON array or NDJSON body (optionally gzip),
//! streamed through [`schema::RecordReader`]; the answer comes only after Kafka acknowledged
//! every accepted record.
//!
//! | status | when |
//! |---|---|
//! | 200 | `{accepted, rejected, errors: [{index, reason}]}`: every accepted record is in Kafka |
//! | 400 | the body is not JSON at all, or is truncated / structurally broken; nothing was sent |
//! | 401 | a token is configured and the request lacks `Authorization: Bearer <token>` (any case) |
//! | 413 | the body (or its gzip-decoded form) is over `INGEST_MAX_BODY_BYTES` |
//! | 415 | a `Content-Encoding` other than `gzip` or `identity` |
//! | 500 | some accepted records could not be delivered (counts in the body) |
//! | 503 | the producer's queue is full (`Retry-After`); nothing, or only the counted part, was sent |

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use http_body_util::BodyExt;
use schema::{Reason, RecordReader};
use serde::Serialize;

use crate::metrics::Metrics;
use crate::sink::{SendError, Sink, Tracker};

/// Errors listed in a response at most (the counts stay exact).
pub const MAX_LISTED_ERRORS: usize = 100;
/// Seconds a client is told to wait when the queue is full.
pub const RETRY_AFTER_SECS: u64 = 1;
/// How long one request waits for room in a full queue before answering 503.
const QUEUE_WAIT: Duration = Duration::from_millis(500);

/// What the ingest route needs.
#[derive(Clone)]
pub struct IngestState {
    /// The Kafka producer.
    pub sink: Arc<Sink>,
    /// The service's metrics.
    pub metrics: Arc<Metrics>,
    /// The bearer token; empty means no authentication.
    pub token: service::config::Secret,
    /// Body cap in bytes, before and after gzip decoding.
    pub max_body_bytes: u64,
    /// Record cap in bytes.
    pub max_record_bytes: usize,
}

impl std::fmt::Debug for IngestState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestState")
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

/// The producer's own routes (merge with [`service::admin::router`]).
pub fn router(state: IngestState) -> Router {
    Router::new()
        .route("/v1/logs", post(ingest))
        .with_state(state)
}

/// One rejected record of a request.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RecordFailure {
    /// 0-based index of the record in the body.
    pub index: u64,
    /// The reason code.
    pub reason: &'static str,
}

/// The answer to a request that was parsed.
#[derive(Debug, Clone, Serialize, Default)]
pub struct IngestResponse {
    /// Records acknowledged by Kafka.
    pub accepted: u64,
    /// Records rejected as invalid.
    pub rejected: u64,
    /// Records valid but not delivered (only on 500/503).
    #[serde(skip_serializing_if = "is_zero")]
    pub failed: u64,
    /// The first rejected records with their reasons.
    pub errors: Vec<RecordFailure>,
    /// What went wrong, on 4xx/5xx.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    let body = IngestResponse {
        error: Some(message.into()),
        ..IngestResponse::default()
    };
    (status, Json(body)).into_response()
}

fn queue_full_response(body: IngestResponse) -> Response {
    let mut r = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    r
}

async fn ingest(State(state): State<IngestState>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let response = handle(&state, &headers, body).await;
    state
        .metrics
        .http_answered(response.status().as_u16(), started.elapsed());
    response
}

/// Compares in time independent of where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(state: &IngestState, headers: &HeaderMap) -> bool {
    state.token.is_empty() || bearer_matches(headers.get(header::AUTHORIZATION), &state.token)
}

/// True when `authorization` is `Bearer <token>`: the scheme in any case (RFC 7235 section
/// 2.1), one or more spaces, then exactly the token.
fn bearer_matches(authorization: Option<&HeaderValue>, token: &service::config::Secret) -> bool {
    let Some(value) = authorization else {
        return false;
    };
    let Some((scheme, credentials)) = value.as_bytes().split_at_checked(6) else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") || !credentials.starts_with(b" ") {
        return false;
    }
    constant_time_eq(credentials.trim_ascii_start(), token.expose().as_bytes())
}

/// Parsed, valid records of a request: keys and values in two buffers.
#[derive(Default)]
struct Parsed {
    keys: Vec<u8>,
    values: Vec<u8>,
    /// (key end, value end) per record.
    ends: Vec<(usize, usize)>,
    rejected: u64,
    json_like: u64,
    errors: Vec<RecordFailure>,
    /// The first rejected record's error, with its position.
    first_error: Option<String>,
    /// Rejections by (stage, reason).
    reasons: std::collections::BTreeMap<(&'static str, &'static str), u64>,
    read: u64,
}

enum Outcome {
    Malformed(String),
    Parsed(Parsed),
}

fn parse(body: &[u8], max_record_bytes: usize) -> Outcome {
    let mut p = Parsed::default();
    let mut reader = RecordReader::with_max_record_bytes(body, max_record_bytes);
    while let Some(item) = reader.next_record() {
        p.read += 1;
        match item {
            Ok(r) => {
                p.keys.extend_from_slice(schema::kafka::key(&r.record));
                schema::kafka::encode_value(&r.record, &mut p.values);
                p.ends.push((p.keys.len(), p.values.len()));
                p.json_like += 1;
            }
            Err(e) if e.is_fatal() => return Outcome::Malformed(e.to_string()),
            Err(e) => {
                let reason = e.reason();
                if !matches!(reason, Reason::InvalidJson | Reason::InvalidUtf8) {
                    p.json_like += 1;
                }
                p.rejected += 1;
                if p.first_error.is_none() {
                    p.first_error = Some(e.to_string());
                }
                let stage = match e {
                    schema::ReadError::Invalid { .. } => crate::metrics::STAGE_VALIDATE,
                    _ => crate::metrics::STAGE_READ,
                };
                *p.reasons.entry((stage, reason.as_str())).or_default() += 1;
                if p.errors.len() < MAX_LISTED_ERRORS {
                    p.errors.push(RecordFailure {
                        index: e.position().index,
                        reason: reason.as_str(),
                    });
                }
            }
        }
    }
    if p.read == 0 && body.iter().all(u8::is_ascii_whitespace) {
        return Outcome::Malformed("empty body".to_owned());
    }
    if p.json_like == 0 && p.read > 0 {
        // Say where the first record breaks (record, line, byte and the parser's line and
        // column), so the client can fix it.
        return Outcome::Malformed(match p.first_error.take() {
            Some(e) => format!("the body is not JSON: {e}"),
            None => "the body is not JSON".to_owned(),
        });
    }
    Outcome::Parsed(p)
}

async fn read_body(
    state: &IngestState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, Response> {
    let max = state.max_body_bytes;
    let too_large = |what: &str| {
        state.metrics.http_refused("payload_too_large", what);
        error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{what} is over {max} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large("body"));
    }
    let limited = http_body_util::Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX));
    let bytes = match limited.collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large("body")),
        Err(e) => {
            state.metrics.http_refused("malformed", "body read failed");
            return Err(error_response(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            ));
        }
    };
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("" | "identity") => Ok(bytes),
        Some("gzip" | "x-gzip") => {
            let mut out = Vec::new();
            let decoder = flate2::read::MultiGzDecoder::new(&bytes[..]);
            match decoder.take(max + 1).read_to_end(&mut out) {
                Ok(_) if out.len() as u64 > max => Err(too_large("decoded body")),
                Ok(_) => Ok(Bytes::from(out)),
                Err(e) => {
                    state.metrics.http_refused("malformed", "bad gzip");
                    Err(error_response(
                        StatusCode::BAD_REQUEST,
                        format!("cannot decode gzip: {e}"),
                    ))
                }
            }
        }
        Some(other) => {
            state
                .metrics
                .http_refused("malformed", "unsupported content-encoding");
            Err(error_response(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported content-encoding {other:?} (gzip or identity)"),
            ))
        }
    }
}

async fn handle(state: &IngestState, headers: &HeaderMap, body: Body) -> Response {
    if !authorized(state, headers) {
        state.metrics.unauthorized();
        let mut r = error_response(StatusCode::UNAUTHORIZED, "a bearer token is required");
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let bytes = match read_body(state, headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let st = state.clone();
    let work = tokio::task::spawn_blocking(move || send_all(&st, &bytes)).await;
    let (tracker, mut resp, enqueued_all) = match work {
        Ok(Ok(x)) => x,
        Ok(Err(r)) => return *r,
        Err(e) => {
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("ingest task failed: {e}"),
            )
        }
    };
    let settled = tracker.settled().await;
    state
        .metrics
        .chunk_acknowledged(settled.delivered, settled.delivered_bytes, tracker.age());
    resp.accepted = settled.delivered;
    let not_delivered = settled.failed + settled.too_large;
    if not_delivered > 0 {
        let e = tracker.first_error();
        state
            .metrics
            .delivery_failed("delivery_failed", settled.failed, &e);
        state
            .metrics
            .delivery_failed("message_too_large", settled.too_large, &e);
    }
    resp.failed += not_delivered;
    if !enqueued_all {
        resp.error =
            Some("the producer queue is full; the records not accepted may be resent".into());
        return queue_full_response(resp);
    }
    if resp.failed > 0 {
        resp.error = Some(format!("{} records could not be delivered", resp.failed));
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(resp)).into_response();
    }
    (StatusCode::OK, Json(resp)).into_response()
}

type Sent = (Arc<Tracker>, IngestResponse, bool);

/// Parses the body and enqueues its valid records (blocking: runs on the blocking pool).
fn send_all(state: &IngestState, body: &[u8]) -> Result<Sent, Box<Response>> {
    let p = match parse(body, state.max_record_bytes) {
        Outcome::Malformed(msg) => {
            state.metrics.http_refused("malformed", &msg);
            return Err(Box::new(error_response(StatusCode::BAD_REQUEST, msg)));
        }
        Outcome::Parsed(p) => p,
    };
    state.metrics.read("http", p.read);
    for ((stage, reason), n) in &p.reasons {
        state
            .metrics
            .ingestion_errors
            .with_label_values(&["producer", stage, reason])
            .inc_by(*n);
    }
    let n = p.ends.len();
    let mut resp = IngestResponse {
        rejected: p.rejected,
        errors: p.errors.clone(),
        ..IngestResponse::default()
    };
    // Refuse up front when the queue cannot take the request: nothing is sent, the client
    // retries the whole request without creating duplicates.
    // A request larger than the whole queue is let in when the queue is empty and then waits
    // for room record by record.
    let queue_max = state.sink.queue_max();
    if n > 0 && state.sink.in_flight() + n.min(queue_max) > queue_max {
        state
            .metrics
            .http_refused("queue_full", "producer queue is full");
        resp.failed = n as u64;
        resp.error = Some("the producer queue is full".into());
        return Err(Box::new(queue_full_response(resp)));
    }
    let tracker = Tracker::new();
    let mut enqueued_all = true;
    let (mut k0, mut v0) = (0, 0);
    'records: for &(k1, v1) in &p.ends {
        let (key, value) = (&p.keys[k0..k1], &p.values[v0..v1]);
        k0 = k1;
        v0 = v1;
        let waited = Instant::now();
        loop {
            match state.sink.send(key, value, &tracker) {
                Ok(()) => break,
                Err(SendError::QueueFull) if waited.elapsed() < QUEUE_WAIT => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(SendError::QueueFull) => {
                    // Raced with other requests: what was enqueued will be delivered; say how
                    // many records were not taken.
                    state
                        .metrics
                        .http_refused("queue_full", "producer queue filled up mid-request");
                    enqueued_all = false;
                    resp.failed += (p.ends.len() as u64) - tracker.enqueued();
                    break 'records;
                }
                Err(e) => {
                    let reason = e.reason();
                    state.metrics.delivery_failed(reason, 1, &e.to_string());
                    resp.failed += 1;
                    break;
                }
            }
        }
    }
    tracker.seal();
    Ok((tracker, resp, enqueued_all))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison_needs_equal_bytes() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_the_token_exact() {
        let token = service::config::Secret::new("t0ken");
        let ok = |v: &str| bearer_matches(Some(&HeaderValue::from_str(v).unwrap()), &token);
        for good in [
            "Bearer t0ken",
            "bearer t0ken",
            "BEARER t0ken",
            "bEaReR   t0ken",
        ] {
            assert!(ok(good), "{good}");
        }
        for bad in [
            "Bearer t0ke",
            "Bearer t0kenx",
            "Bearer T0KEN",
            "Bearer ",
            "Bearer",
            "Bearert0ken",
            "t0ken",
            "Basic t0ken",
            "Token t0ken",
            "",
        ] {
            assert!(!ok(bad), "{bad:?}");
        }
        assert!(!bearer_matches(None, &token));
    }

    #[test]
    fn a_body_whose_only_record_is_broken_json_says_where() {
        let body = br#"{"timestamp":1,"level":"info","service":"a","message":"m",}"#;
        match parse(body, 1 << 20) {
            Outcome::Malformed(m) => assert!(
                m.contains("record 0")
                    && m.contains("line 1")
                    && m.contains("column")
                    && m.contains("byte"),
                "{m}"
            ),
            Outcome::Parsed(_) => panic!("a broken record alone is not JSON"),
        }
    }

    #[test]
    fn a_body_that_is_not_json_is_malformed_but_one_bad_record_is_not() {
        assert!(matches!(
            parse(b"hello world", 1 << 20),
            Outcome::Malformed(_)
        ));
        assert!(matches!(parse(b"", 1 << 20), Outcome::Malformed(_)));
        assert!(matches!(
            parse(b"[{\"a\":1}", 1 << 20),
            Outcome::Malformed(_)
        ));
        let body = br#"{"timestamp":1,"level":"info","service":"a","message":"m"}
{"timestamp":1,"level":"loud","service":"a","message":"m"}
"#;
        match parse(body, 1 << 20) {
            Outcome::Parsed(p) => {
                assert_eq!(p.ends.len(), 1);
                assert_eq!(p.rejected, 1);
                assert_eq!(
                    p.errors,
                    [RecordFailure {
                        index: 1,
                        reason: "invalid_level"
                    }]
                );
            }
            Outcome::Malformed(m) => panic!("{m}"),
        }
    }
}
