//! `POST /v1/logs` (DESIGN.md, "HTTP surface"): a JSON array or NDJSON body of records, or
//! OpenTelemetry logs ([`otlp`]: OTLP/HTTP, protobuf or JSON), optionally gzip. Every body is
//! read into a batch of records (validated and encoded like a file's) and sent through a
//! [`Dispatcher`] like every other source; the answer comes only after Kafka acknowledged every
//! accepted record.
//!
//! Which it is: `Content-Type: application/x-protobuf` is OTLP; `application/json` is OTLP when
//! the body is one JSON object with `resourceLogs` and none of a record's own keys
//! ([`otlp::is_otlp_json`]), records otherwise; anything else (or none) is records, as it always
//! was. Answers to records:
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
//!
//! OTLP requests get the OTLP answers ([`otlp`]). A refusal made before the body is read (401,
//! 413, 415) of an `application/json` request, which may be either, carries both shapes: this
//! table's fields and `google.rpc.Status`'s `code` and `message`.
//!
//! The token check ([`auth`]), the body limit (before and after decoding) and gzip decoding are
//! tower-http layers in front of the handler; one outer layer counts every answer
//! (`producer_http_requests_total`) and gives the layers' own refusals (413, 415) this
//! endpoint's answer shape.

mod auth;
mod json;
mod otlp;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use http_body_util::{BodyExt, LengthLimitError};
use schema::{ReadError, Timestamp};
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::map_request_body::MapRequestBodyLayer;
use tower_http::map_response_body::MapResponseBodyLayer;
use tower_http::validate_request::ValidateRequestHeaderLayer;

use self::auth::BearerToken;
use self::json::{IngestResponse, Malformed, Parsed, RecordFailure};
use self::otlp::{Declared, Encoding};
use crate::batch::{Batch, Item};
use crate::config::ProducerConfig;
use crate::dispatch::{Dispatcher, Enqueue, Origin};
use crate::kafka::Sink;
use crate::metrics::Metrics;

/// Seconds a client is told to wait when the queue is full.
pub(crate) const RETRY_AFTER_SECS: u64 = 1;
/// How long one request's record waits for room in a full queue before the rest of the request
/// is refused with 503.
const QUEUE_WAIT: Duration = Duration::from_millis(500);
/// How records of an HTTP request are named in logs.
const ORIGIN: &str = "http";

/// What the ingest route needs.
#[derive(Clone)]
pub struct IngestState {
    sink: Arc<Sink>,
    metrics: Arc<Metrics>,
    token: service::config::Secret,
    max_body_bytes: u64,
    max_record_bytes: usize,
}

impl std::fmt::Debug for IngestState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestState")
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl IngestState {
    /// The route's settings from `config` (`INGEST_TOKEN`, `INGEST_MAX_BODY_BYTES`,
    /// `MAX_RECORD_BYTES`), sending to `sink` and counting into `metrics`.
    pub fn new(config: &ProducerConfig, sink: Arc<Sink>, metrics: Arc<Metrics>) -> Self {
        Self {
            sink,
            metrics,
            token: config.ingest_token.clone(),
            max_body_bytes: config.ingest_max_body_bytes,
            max_record_bytes: config.max_record_bytes,
        }
    }

    /// A dispatcher for one request: its records are one chunk.
    fn dispatcher(&self) -> Dispatcher<()> {
        Dispatcher::new(
            Arc::clone(&self.sink),
            Arc::clone(&self.metrics),
            Origin::Http(QUEUE_WAIT),
            // A request waits for room at most QUEUE_WAIT, shutdown or not.
            CancellationToken::new(),
            QUEUE_WAIT,
            0,
        )
    }
}

/// The producer's own routes (merge with [`service::admin::router`]).
pub fn router(state: IngestState) -> Router {
    let max = usize::try_from(state.max_body_bytes).unwrap_or(usize::MAX);
    let token = (!state.token.is_empty())
        .then(|| BearerToken::new(state.token.clone(), Arc::clone(&state.metrics)));
    let layers = ServiceBuilder::new()
        .layer(axum::middleware::from_fn_with_state(state.clone(), answer))
        .option_layer(token.map(ValidateRequestHeaderLayer::custom))
        .layer(MapResponseBodyLayer::new(Body::new))
        .map_request(normalize_content_encoding)
        // On the body as sent: a declared length over the cap is refused at once, a longer
        // chunked body when the handler reads past the cap.
        .layer(RequestBodyLimitLayer::new(max))
        .layer(RequestDecompressionLayer::new())
        // On the decoded body, when the handler reads it.
        .layer(RequestBodyLimitLayer::new(max))
        .layer(MapRequestBodyLayer::new(Body::new));
    Router::new()
        .route("/v1/logs", post(ingest).layer(layers))
        .with_state(state)
}

/// How a request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Records (JSON array or NDJSON): the answer of the module's table.
    Records,
    /// OTLP in this encoding.
    Otlp(Encoding),
    /// `application/json` whose body was not looked at yet: records or OTLP JSON.
    Json,
}

impl Format {
    /// What the request's `Content-Type` says.
    pub(crate) fn declared(headers: &HeaderMap) -> Self {
        match Declared::of(headers) {
            Declared::Protobuf => Format::Otlp(Encoding::Protobuf),
            Declared::Json => Format::Json,
            Declared::Other => Format::Records,
        }
    }

    /// What the body turned out to be.
    fn resolve(self, body: &[u8]) -> Self {
        match self {
            Format::Json if otlp::is_otlp_json(body) => Format::Otlp(Encoding::Json),
            Format::Json => Format::Records,
            known => known,
        }
    }

    /// The answer to a request refused with `status`, saying why.
    pub(crate) fn refusal(self, status: StatusCode, message: impl Into<String>) -> Response {
        let message = message.into();
        match self {
            Format::Otlp(encoding) => answered(otlp::failure(encoding, status, &message)),
            Format::Records | Format::Json => {
                let status_fields =
                    (self == Format::Json).then(|| (otlp::grpc_code(status), message.clone()));
                let (code, status_message) = status_fields.unzip();
                respond(
                    status,
                    IngestResponse {
                        error: Some(message),
                        code,
                        message: status_message,
                        ..IngestResponse::default()
                    },
                )
            }
        }
    }
}

/// Marks a response this endpoint wrote itself (as opposed to a layer's bare refusal).
#[derive(Debug, Clone, Copy)]
struct Answered;

/// `response`, marked as the endpoint's own; a 503 tells the client when to retry.
fn answered(mut response: Response) -> Response {
    if response.status() == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    response.extensions_mut().insert(Answered);
    response
}

/// The JSON answer to records.
fn respond(status: StatusCode, body: IngestResponse) -> Response {
    answered((status, Json(body)).into_response())
}

/// The outermost layer: counts every answer of the route, and turns the refusals the
/// tower-http layers write themselves (413 for a declared length over the cap, 415 for an
/// encoding other than gzip) into this endpoint's answers, counted in `ingestion_errors_total`.
async fn answer(State(state): State<IngestState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let format = Format::declared(request.headers());
    let encoding = request.headers().get(header::CONTENT_ENCODING).cloned();
    let mut response = next.run(request).await;
    if response.extensions().get::<Answered>().is_none() {
        let status = response.status();
        let replaced = match status {
            StatusCode::PAYLOAD_TOO_LARGE => Some(too_large(&state, format)),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                let encoding = encoding
                    .as_ref()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .unwrap_or_default();
                state
                    .metrics
                    .http_refused("malformed", "unsupported content-encoding");
                Some(format.refusal(
                    status,
                    format!("unsupported content-encoding {encoding:?} (gzip or identity)"),
                ))
            }
            _ => None,
        };
        if let Some(mut replaced) = replaced {
            // Keep what the layer said besides the body (e.g. `Accept-Encoding`).
            for (name, value) in response.headers() {
                if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                    replaced.headers_mut().insert(name, value.clone());
                }
            }
            response = replaced;
        }
    }
    state
        .metrics
        .http_answered(response.status().as_u16(), started.elapsed());
    response
}

/// 413, counted.
fn too_large(state: &IngestState, format: Format) -> Response {
    state
        .metrics
        .http_refused("payload_too_large", "body over the cap");
    format.refusal(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "body is over {} bytes (before or after gzip decoding)",
            state.max_body_bytes
        ),
    )
}

/// `Content-Encoding` as tower-http's decoder matches it (exact, lower case): case and
/// surrounding blanks do not matter, `x-gzip` is `gzip`, and an empty value is none.
fn normalize_content_encoding(mut request: Request<Body>) -> Request<Body> {
    let headers = request.headers_mut();
    let Some(value) = headers.get(header::CONTENT_ENCODING) else {
        return request;
    };
    let normalized = String::from_utf8_lossy(value.as_bytes())
        .trim()
        .to_ascii_lowercase();
    match normalized.as_str() {
        "" | "identity" => {
            headers.remove(header::CONTENT_ENCODING);
        }
        "gzip" | "x-gzip" => {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        _ => {}
    }
    request
}

async fn ingest(State(state): State<IngestState>, headers: HeaderMap, body: Body) -> Response {
    let declared = Format::declared(&headers);
    let bytes = match read_body(&state, declared, body).await {
        Ok(b) => b,
        Err(response) => return response,
    };
    let format = declared.resolve(&bytes);
    let st = state.clone();
    let sent = tokio::task::spawn_blocking(move || read_and_send(&st, format, &bytes)).await;
    let mut sent = match sent {
        Ok(Ok(sent)) => sent,
        Ok(Err(response)) => return *response,
        Err(e) => {
            return format.refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("ingest task failed: {e}"),
            )
        }
    };
    if !sent.refused {
        sent.d.settle((), |(), _| {}).await;
    }
    match format {
        Format::Otlp(encoding) => otlp_answer(encoding, &sent),
        Format::Records | Format::Json => records_answer(sent),
    }
}

/// The whole (decoded) body; 413 past the cap, 400 when it cannot be read or decoded.
async fn read_body(state: &IngestState, format: Format, body: Body) -> Result<Bytes, Response> {
    match body.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if caused_by::<LengthLimitError>(&e) => Err(too_large(state, format)),
        Err(e) => {
            state.metrics.http_refused("malformed", "body read failed");
            Err(format.refusal(
                StatusCode::BAD_REQUEST,
                format!("cannot read or decode the body: {e}"),
            ))
        }
    }
}

/// True when `error` or one of its sources is an `E`.
fn caused_by<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<E>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// A request's records, read and handed to Kafka.
struct Sent {
    /// The request's dispatcher: its report counts what became of every record.
    d: Dispatcher<()>,
    /// Every record of the body, in order.
    batch: Batch,
    /// The first rejected records (JSON answers list them).
    errors: Vec<RecordFailure>,
    /// Nothing was sent: the queue had no room for the request.
    refused: bool,
}

/// Reads the body as `format` says and enqueues its valid records (blocking: runs on the
/// blocking pool). A body that cannot be read at all is refused (400) and nothing is sent.
fn read_and_send(state: &IngestState, format: Format, body: &[u8]) -> Result<Sent, Box<Response>> {
    let malformed = |message: String| {
        state.metrics.http_refused("malformed", &message);
        Box::new(format.refusal(StatusCode::BAD_REQUEST, message))
    };
    let (batch, errors) = match format {
        Format::Otlp(encoding) => {
            let request = otlp::decode(body, encoding).map_err(malformed)?;
            // Records take about as many bytes as the protobuf, JSON about half of its.
            let mut batch = Batch::with_capacity(body.len());
            otlp::read(
                &request,
                state.max_record_bytes,
                Timestamp::now(),
                &mut batch,
            );
            (batch, Vec::new())
        }
        Format::Records | Format::Json => {
            let Parsed { batch, errors } = json::parse(body, state.max_record_bytes)
                .map_err(|Malformed(message)| malformed(message))?;
            (batch, errors)
        }
    };
    let mut d = state.dispatcher();
    let mut records = 0u64;
    for item in batch.items() {
        match item {
            Item::Record(_) => records += 1,
            Item::Rejected(e) => d.reject(ORIGIN, e),
        }
    }
    // Refuse up front when the queue cannot take the request: nothing is sent, the client
    // retries the whole request without creating duplicates. A request larger than the whole
    // queue is let in when the queue is empty and then waits for room record by record.
    if records > 0 && !d.has_room(usize::try_from(records).unwrap_or(usize::MAX)) {
        state
            .metrics
            .http_refused("queue_full", "producer queue is full");
        d.refuse_for_room(records, records);
        d.seal(());
        return Ok(Sent {
            d,
            batch,
            errors,
            refused: true,
        });
    }
    let mut attempted = 0u64;
    for item in batch.items() {
        let Item::Record(record) = item else {
            continue;
        };
        attempted += 1;
        if d.send(ORIGIN, &batch, record, |(), _| {}) == Enqueue::Interrupted {
            // Raced with other requests: what was enqueued will be delivered; the answer says
            // how many records were not taken.
            state
                .metrics
                .http_refused("queue_full", "producer queue filled up mid-request");
            let rest = records - attempted;
            d.refuse_for_room(rest, rest + 1);
            break;
        }
    }
    Ok(Sent {
        d,
        batch,
        errors,
        refused: false,
    })
}

/// The answer to records (the module's table).
fn records_answer(sent: Sent) -> Response {
    let report = &sent.d.report;
    let mut resp = IngestResponse {
        accepted: report.sent,
        rejected: report.rejected_total(),
        failed: report.failed_total(),
        errors: sent.errors,
        ..IngestResponse::default()
    };
    if sent.refused {
        resp.error = Some("the producer queue is full".into());
        return respond(StatusCode::SERVICE_UNAVAILABLE, resp);
    }
    if report.failed.contains_key("queue_full") {
        resp.error =
            Some("the producer queue is full; the records not accepted may be resent".into());
        return respond(StatusCode::SERVICE_UNAVAILABLE, resp);
    }
    if resp.failed > 0 {
        resp.error = Some(format!("{} records could not be delivered", resp.failed));
        return respond(StatusCode::INTERNAL_SERVER_ERROR, resp);
    }
    respond(StatusCode::OK, resp)
}

/// The answer to OTLP: records Kafka could not take now (a full queue, a delivery failure)
/// make the whole request retryable (503); otherwise 200, with the records rejected for good
/// (invalid, or too large for Kafka) counted in a partial success.
fn otlp_answer(encoding: Encoding, sent: &Sent) -> Response {
    let report = &sent.d.report;
    let failed = |reason| report.failed.get(reason).copied().unwrap_or(0);
    let retryable = failed("queue_full") + failed("delivery_failed");
    if sent.refused || retryable > 0 {
        let message = if sent.refused {
            "the producer's queue is full; nothing was sent, retry later".to_owned()
        } else {
            format!(
                "{retryable} log records could not be written to Kafka now; retry the request \
                 (the {} already written will be written again)",
                report.sent
            )
        };
        return answered(otlp::failure(
            encoding,
            StatusCode::SERVICE_UNAVAILABLE,
            &message,
        ));
    }
    let too_large = failed("message_too_large");
    let rejected = report.rejected_total() + too_large;
    let message = if rejected == 0 {
        String::new()
    } else {
        rejection_message(report, too_large, &sent.batch)
    };
    answered(otlp::success(encoding, rejected, message))
}

/// Why records were rejected, for a partial success: counts by reason, and the first invalid
/// record with its error.
fn rejection_message(report: &crate::report::Report, too_large: u64, batch: &Batch) -> String {
    let mut reasons: Vec<String> = report
        .rejected
        .iter()
        .map(|(reason, n)| format!("{reason}: {n}"))
        .collect();
    if too_large > 0 {
        reasons.push(format!(
            "larger than the Kafka message limit (KAFKA_MESSAGE_MAX_BYTES): {too_large}"
        ));
    }
    let mut message = format!(
        "{} log records rejected ({})",
        report.rejected_total() + too_large,
        reasons.join(", ")
    );
    let first = batch.items().iter().find_map(|i| match i {
        Item::Rejected(e) => Some(e),
        Item::Record(_) => None,
    });
    if let Some(e) = first {
        let why = match e {
            ReadError::Invalid { source, .. } => source.to_string(),
            ReadError::TooLarge { size, limit, .. } => {
                format!("it is {size} bytes, over the {limit}-byte limit (MAX_RECORD_BYTES)")
            }
            other => other.to_string(),
        };
        message.push_str(&format!(
            "; the first, log record {} of the request: {why}",
            e.position().index
        ));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalized(value: &str) -> Option<String> {
        let request = Request::post("/v1/logs")
            .header(header::CONTENT_ENCODING, value)
            .body(Body::empty())
            .unwrap();
        normalize_content_encoding(request)
            .headers()
            .get(header::CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    #[test]
    fn content_encodings_are_matched_in_any_case_and_x_gzip_is_gzip() {
        assert_eq!(normalized("gzip").as_deref(), Some("gzip"));
        assert_eq!(normalized(" GZip ").as_deref(), Some("gzip"));
        assert_eq!(normalized("x-gzip").as_deref(), Some("gzip"));
        assert_eq!(normalized("Identity"), None);
        assert_eq!(normalized(""), None);
        assert_eq!(normalized("br").as_deref(), Some("br"));
    }

    #[tokio::test]
    async fn a_limit_error_is_found_among_the_causes() {
        let limited = http_body_util::Limited::new(Body::from("too long"), 3);
        let Err(inner) = limited.collect().await else {
            panic!("the limit did not trip");
        };
        let outer = axum::Error::new(inner);
        assert!(caused_by::<LengthLimitError>(&outer));
        let other = axum::Error::new(std::io::Error::other("reset"));
        assert!(!caused_by::<LengthLimitError>(&other));
    }
}
