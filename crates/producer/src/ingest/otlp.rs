//! OpenTelemetry logs at `POST /v1/logs` ([OTLP/HTTP]): an `ExportLogsServiceRequest` in
//! binary protobuf (`Content-Type: application/x-protobuf`) or in OTLP JSON
//! (`application/json` and a body that is one object with `resourceLogs`), decoded with the
//! `opentelemetry-proto` crate and mapped per the [logs data model] onto our records, which then
//! go through schema validation and the dispatcher like every other record.
//!
//! | OpenTelemetry | record field |
//! |---|---|
//! | resource attribute `service.name` (else `unknown_service`, as SDKs default) | `service` |
//! | `severity_number` (1–4 trace, 5–8 debug, 9–12 info, 13–16 warn, 17–20 error, 21–24 fatal), else `severity_text` (our level names, `information`/`informational`/`notice`, `err`, `crit`/`alert`/`emerg`/`emergency`/`panic`), else `info` | `level` (and `severity_text` kept as a field when it says something else) |
//! | `body`: a string as is, any other value as its JSON | `message` |
//! | `time_unix_nano`, else `observed_time_unix_nano`, else the time of receipt | `timestamp` |
//! | `trace_id`, `span_id` (lower-case hex; absent or all zeros: none) | `trace_id`, `span_id` |
//! | `event_name` | `event_name` |
//! | scope name and version | `otel.scope.name`, `otel.scope.version` |
//! | the log record's attributes, then the scope's, then the resource's | fields named by their keys, values as JSON (bytes as base64, non-finite doubles as strings); a key already taken is kept as `attributes.<key>`, `scope.<key>` or `resource.<key>` |
//!
//! Answers, in the request's encoding: 200 with an `ExportLogsServiceResponse` (a
//! `partial_success` with `rejected_log_records` and an `error_message` when records were
//! rejected: invalid, or too large for Kafka); 400 for a body that cannot be decoded, 401, 413,
//! 415 as for JSON bodies, and 503 with `Retry-After` when Kafka's queue is full or records
//! could not be written (retryable per the spec; the records already acknowledged are then
//! sent again with the retry), each with a `google.rpc.Status` body.
//!
//! [OTLP/HTTP]: https://opentelemetry.io/docs/specs/otlp/#otlphttp
//! [logs data model]: https://opentelemetry.io/docs/specs/otel/logs/data-model/

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;
use schema::record::write_json_str;
use schema::{Level, Position, ReadError, ReadRecord, Timestamp};
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::batch::Batch;

/// The media type of binary protobuf OTLP.
const PROTOBUF: &str = "application/x-protobuf";
/// The media type of OTLP JSON (and of JSON records).
const JSON: &str = "application/json";

/// How an OTLP request (and its answer) is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// Binary protobuf.
    Protobuf,
    /// OTLP JSON.
    Json,
}

/// What a request's `Content-Type` says about its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Declared {
    /// `application/x-protobuf` (or `application/protobuf`): OTLP.
    Protobuf,
    /// `application/json`: records, or OTLP JSON; the body tells.
    Json,
    /// Anything else, or none: records (JSON array or NDJSON).
    Other,
}

impl Declared {
    /// From the request's `Content-Type` (parameters and case ignored).
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        let Some(value) = headers.get(header::CONTENT_TYPE) else {
            return Declared::Other;
        };
        let media = String::from_utf8_lossy(value.as_bytes());
        let media = media.split(';').next().unwrap_or_default().trim();
        if media.eq_ignore_ascii_case(PROTOBUF)
            || media.eq_ignore_ascii_case("application/protobuf")
        {
            Declared::Protobuf
        } else if media.eq_ignore_ascii_case(JSON) {
            Declared::Json
        } else {
            Declared::Other
        }
    }
}

/// The top-level keys that tell an OTLP JSON request from one of our records.
#[derive(Deserialize)]
struct Shape {
    #[serde(rename = "resourceLogs")]
    resource_logs: Option<IgnoredAny>,
    timestamp: Option<IgnoredAny>,
    level: Option<IgnoredAny>,
    service: Option<IgnoredAny>,
    message: Option<IgnoredAny>,
}

/// True when a JSON `body` is an OTLP request: exactly one JSON object (not an array, not
/// several lines of records) with a `resourceLogs` key and none of a record's own keys
/// (`timestamp`, `level`, `service`, `message`). Anything else is read as records, as before
/// OTLP was accepted: an array, NDJSON, or a single record.
pub(crate) fn is_otlp_json(body: &[u8]) -> bool {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return false;
    }
    match serde_json::from_slice::<Shape>(body) {
        Ok(s) => {
            s.resource_logs.is_some()
                && s.timestamp.is_none()
                && s.level.is_none()
                && s.service.is_none()
                && s.message.is_none()
        }
        Err(_) => false,
    }
}

/// Decodes a request body.
pub(crate) fn decode(body: &[u8], encoding: Encoding) -> Result<ExportLogsServiceRequest, String> {
    match encoding {
        Encoding::Protobuf => ExportLogsServiceRequest::decode(body)
            .map_err(|e| format!("not an OTLP ExportLogsServiceRequest (protobuf): {e}")),
        Encoding::Json => serde_json::from_slice(body)
            .map_err(|e| format!("not an OTLP ExportLogsServiceRequest (JSON): {e}")),
    }
}

/// Maps every log record of `request` onto a record, validates it (records over
/// `max_record_bytes` are rejected) and adds it to `batch`, in request order. Records without
/// any timestamp are dated `now`.
pub(crate) fn read(
    request: &ExportLogsServiceRequest,
    max_record_bytes: usize,
    now: Timestamp,
    batch: &mut Batch,
) {
    let mut json = Vec::with_capacity(1024);
    let mut index = 0u64;
    for resource_logs in &request.resource_logs {
        let resource: &[KeyValue] = resource_logs
            .resource
            .as_ref()
            .map_or(&[], |r| &r.attributes);
        for scope_logs in &resource_logs.scope_logs {
            for log in &scope_logs.log_records {
                json.clear();
                write_record(&mut json, resource, scope_logs.scope.as_ref(), log, now);
                let position = Position {
                    index,
                    line: 1,
                    offset: 0,
                };
                index += 1;
                let item = if json.len() > max_record_bytes {
                    Err(ReadError::TooLarge {
                        position,
                        size: json.len() as u64,
                        limit: max_record_bytes,
                    })
                } else {
                    schema::parse_record_bytes(&json)
                        .map(|record| ReadRecord { position, record })
                        .map_err(|source| ReadError::Invalid { position, source })
                };
                batch.push(item);
            }
        }
    }
}

/// The level of a log record (see the module documentation).
fn level(log: &LogRecord) -> Level {
    match log.severity_number {
        1..=4 => return Level::Trace,
        5..=8 => return Level::Debug,
        9..=12 => return Level::Info,
        13..=16 => return Level::Warn,
        17..=20 => return Level::Error,
        21..=24 => return Level::Fatal,
        _ => {}
    }
    level_of_text(&log.severity_text).unwrap_or(Level::Info)
}

/// A severity text's level: ours, or a common other name (syslog's, .NET's).
fn level_of_text(text: &str) -> Option<Level> {
    let text = text.trim();
    Level::parse(text).or_else(|| {
        let lower = text.to_ascii_lowercase();
        Some(match lower.as_str() {
            "information" | "informational" | "notice" => Level::Info,
            "err" => Level::Error,
            "crit" | "alert" | "emerg" | "emergency" | "panic" => Level::Fatal,
            _ => return None,
        })
    })
}

/// Field names of one record already written, to keep them unique.
struct Keys(Vec<String>);

impl Keys {
    /// `key`, or `prefix.key` when `key` is taken; `None` when both are.
    fn claim(&mut self, key: &str, prefix: &str) -> Option<String> {
        let name = if self.0.iter().any(|k| k == key) {
            let prefixed = format!("{prefix}.{key}");
            if self.0.contains(&prefixed) {
                return None;
            }
            prefixed
        } else {
            key.to_owned()
        };
        self.0.push(name.clone());
        Some(name)
    }
}

/// Writes the record of `log` as JSON (the input of schema validation, like a line of NDJSON).
fn write_record(
    out: &mut Vec<u8>,
    resource: &[KeyValue],
    scope: Option<&InstrumentationScope>,
    log: &LogRecord,
    now: Timestamp,
) {
    let service = resource
        .iter()
        .find(|kv| kv.key == "service.name")
        .and_then(
            |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => Some(s.as_str()),
                _ => None,
            },
        )
        .unwrap_or("unknown_service");
    let level = level(log);
    let mut keys = Keys(
        ["timestamp", "level", "service", "message"]
            .map(str::to_owned)
            .to_vec(),
    );
    out.extend_from_slice(b"{\"timestamp\":");
    let nanos = [log.time_unix_nano, log.observed_time_unix_nano]
        .into_iter()
        .find(|&t| t != 0);
    match nanos {
        None => write_timestamp(out, now),
        Some(t) => match i64::try_from(t)
            .ok()
            .and_then(|n| Timestamp::from_nanos(n).ok())
        {
            Some(ts) => write_timestamp(out, ts),
            // Validation rejects it, saying why.
            None => out.extend_from_slice(t.to_string().as_bytes()),
        },
    }
    out.extend_from_slice(b",\"level\":\"");
    out.extend_from_slice(level.as_str().as_bytes());
    out.extend_from_slice(b"\",\"service\":");
    write_json_str(out, service);
    out.extend_from_slice(b",\"message\":");
    match log.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(Value::StringValue(s)) => write_json_str(out, s),
        None => out.extend_from_slice(b"\"\""),
        Some(_) => {
            let mut text = Vec::new();
            if let Some(body) = &log.body {
                write_any(&mut text, body);
            }
            write_json_str(out, &String::from_utf8_lossy(&text));
        }
    }
    let mut field = |out: &mut Vec<u8>, key: &str, prefix: &str, value: &dyn Fn(&mut Vec<u8>)| {
        if let Some(name) = keys.claim(key, prefix) {
            out.push(b',');
            write_json_str(out, &name);
            out.push(b':');
            value(out);
        }
    };
    for (key, id) in [("trace_id", &log.trace_id), ("span_id", &log.span_id)] {
        if id.iter().any(|&b| b != 0) {
            field(out, key, "otel", &|out| write_hex(out, id));
        }
    }
    let text = log.severity_text.trim();
    if !text.is_empty() && level_of_text(text) != Some(level) {
        field(out, "severity_text", "otel", &|out| {
            write_json_str(out, text)
        });
    }
    if !log.event_name.is_empty() {
        field(out, "event_name", "otel", &|out| {
            write_json_str(out, &log.event_name)
        });
    }
    if let Some(scope) = scope {
        if !scope.name.is_empty() {
            field(out, "otel.scope.name", "scope", &|out| {
                write_json_str(out, &scope.name)
            });
        }
        if !scope.version.is_empty() {
            field(out, "otel.scope.version", "scope", &|out| {
                write_json_str(out, &scope.version)
            });
        }
    }
    let attributes = log
        .attributes
        .iter()
        .map(|kv| (kv, "attributes"))
        .chain(
            scope
                .into_iter()
                .flat_map(|s| &s.attributes)
                .map(|kv| (kv, "scope")),
        )
        .chain(
            resource
                .iter()
                .filter(|kv| kv.key != "service.name")
                .map(|kv| (kv, "resource")),
        );
    for (kv, prefix) in attributes {
        field(out, &kv.key, prefix, &|out| match &kv.value {
            Some(v) => write_any(out, v),
            None => out.extend_from_slice(b"null"),
        });
    }
    out.push(b'}');
}

fn write_timestamp(out: &mut Vec<u8>, ts: Timestamp) {
    out.push(b'"');
    ts.write_rfc3339(out);
    out.push(b'"');
}

/// Lower-case hex of `bytes`, as a JSON string.
fn write_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xf)]);
    }
    out.push(b'"');
}

/// An `AnyValue` as JSON: strings, booleans and numbers as themselves, arrays and key-value
/// lists as arrays and objects, bytes as base64, doubles JSON cannot hold (NaN, infinities) as
/// the strings proto3's JSON mapping uses.
fn write_any(out: &mut Vec<u8>, value: &AnyValue) {
    match &value.value {
        None => out.extend_from_slice(b"null"),
        Some(Value::StringValue(s)) => write_json_str(out, s),
        Some(Value::BoolValue(b)) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Some(Value::IntValue(i)) => out.extend_from_slice(i.to_string().as_bytes()),
        Some(Value::DoubleValue(d)) if d.is_finite() => {
            out.extend_from_slice(d.to_string().as_bytes());
        }
        Some(Value::DoubleValue(d)) => write_json_str(
            out,
            if d.is_nan() {
                "NaN"
            } else if *d > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            },
        ),
        Some(Value::ArrayValue(a)) => {
            out.push(b'[');
            for (i, v) in a.values.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_any(out, v);
            }
            out.push(b']');
        }
        Some(Value::KvlistValue(list)) => {
            out.push(b'{');
            for (i, kv) in list.values.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_str(out, &kv.key);
                out.push(b':');
                match &kv.value {
                    Some(v) => write_any(out, v),
                    None => out.extend_from_slice(b"null"),
                }
            }
            out.push(b'}');
        }
        Some(Value::BytesValue(b)) => {
            write_json_str(out, &base64::engine::general_purpose::STANDARD.encode(b));
        }
        // An index into a profile's string table: meaningless without it, kept as the number.
        Some(Value::StringValueStrindex(i)) => out.extend_from_slice(i.to_string().as_bytes()),
    }
}

/// `google.rpc.Status`, the body of every OTLP failure answer (not part of the
/// `opentelemetry-proto` crate). `code` is the gRPC code matching the HTTP status.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub(crate) struct Status {
    /// gRPC status code.
    #[prost(int32, tag = "1")]
    pub(crate) code: i32,
    /// Developer-facing error message.
    #[prost(string, tag = "2")]
    pub(crate) message: String,
}

/// The gRPC code of an HTTP status (the mapping gRPC gateways use).
pub(crate) fn grpc_code(status: StatusCode) -> i32 {
    match status.as_u16() {
        400 | 413 | 415 => 3, // INVALID_ARGUMENT
        401 => 16,            // UNAUTHENTICATED
        429 => 8,             // RESOURCE_EXHAUSTED
        503 => 14,            // UNAVAILABLE
        _ => 13,              // INTERNAL
    }
}

/// A failure answer: `status` with a `google.rpc.Status` body in `encoding`.
pub(crate) fn failure(encoding: Encoding, status: StatusCode, message: &str) -> Response {
    let body = Status {
        code: grpc_code(status),
        message: message.to_owned(),
    };
    encoded(encoding, status, &body)
}

/// The success answer: 200 with an `ExportLogsServiceResponse`, its `partial_success` set
/// when records were rejected and left unset otherwise (`{}` in JSON).
pub(crate) fn success(encoding: Encoding, rejected: u64, message: String) -> Response {
    let body = ExportLogsServiceResponse {
        partial_success: (rejected > 0).then(|| ExportLogsPartialSuccess {
            rejected_log_records: i64::try_from(rejected).unwrap_or(i64::MAX),
            error_message: message,
        }),
    };
    if encoding == Encoding::Json && body.partial_success.is_none() {
        // The crate's serde would write `"partialSuccess": null`.
        return with_type((StatusCode::OK, "{}").into_response(), JSON);
    }
    encoded(encoding, StatusCode::OK, &body)
}

fn encoded<M: Message + serde::Serialize>(
    encoding: Encoding,
    status: StatusCode,
    body: &M,
) -> Response {
    let (bytes, media) = match encoding {
        Encoding::Protobuf => (body.encode_to_vec(), PROTOBUF),
        // Serialising these plain structs into a buffer cannot fail.
        Encoding::Json => (serde_json::to_vec(body).unwrap_or_default(), JSON),
    };
    with_type((status, bytes).into_response(), media)
}

fn with_type(mut response: Response, media: &'static str) -> Response {
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    response
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    use super::*;
    use crate::batch::Item;

    fn any(value: Value) -> AnyValue {
        AnyValue { value: Some(value) }
    }

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(any(value)),
            ..KeyValue::default()
        }
    }

    fn s(text: &str) -> Value {
        Value::StringValue(text.to_owned())
    }

    /// The record `log` becomes under a resource with `resource` attributes, as JSON.
    fn mapped(resource: Vec<KeyValue>, log: LogRecord, now: Timestamp) -> serde_json::Value {
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: resource,
                    ..Resource::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![log],
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        };
        let mut batch = Batch::new();
        read(&request, 1 << 20, now, &mut batch);
        match &batch.items()[0] {
            Item::Record(r) => serde_json::from_slice(batch.value(r)).unwrap(),
            Item::Rejected(e) => panic!("{e}"),
        }
    }

    fn at(nanos: i64) -> Timestamp {
        Timestamp::from_nanos(nanos).unwrap()
    }

    #[test]
    fn severity_numbers_map_by_range_and_texts_by_name() {
        let level_of = |number, text: &str| {
            level(&LogRecord {
                severity_number: number,
                severity_text: text.to_owned(),
                ..LogRecord::default()
            })
        };
        for (numbers, want) in [
            (1..=4, Level::Trace),
            (5..=8, Level::Debug),
            (9..=12, Level::Info),
            (13..=16, Level::Warn),
            (17..=20, Level::Error),
            (21..=24, Level::Fatal),
        ] {
            for n in numbers {
                assert_eq!(level_of(n, "debug"), want, "the number wins: {n}");
            }
        }
        for (text, want) in [
            ("WARNING", Level::Warn),
            ("Information", Level::Info),
            ("notice", Level::Info),
            ("err", Level::Error),
            ("CRIT", Level::Fatal),
            ("emergency", Level::Fatal),
            ("", Level::Info),
            ("chatty", Level::Info),
        ] {
            assert_eq!(level_of(0, text), want, "{text:?}");
            assert_eq!(level_of(25, text), want, "out of range is unset: {text:?}");
        }
    }

    #[test]
    fn bodies_and_attributes_of_every_kind_render_as_json() {
        let log = LogRecord {
            time_unix_nano: 1,
            body: Some(any(Value::ArrayValue(ArrayValue {
                values: vec![
                    any(Value::IntValue(-3)),
                    any(Value::DoubleValue(f64::NAN)),
                    any(Value::DoubleValue(f64::NEG_INFINITY)),
                    any(Value::DoubleValue(0.5)),
                    any(Value::BytesValue(vec![0, 1, 2, 255])),
                    AnyValue { value: None },
                    any(Value::KvlistValue(KeyValueList {
                        values: vec![kv("q\"uote", Value::BoolValue(true))],
                    })),
                ],
            }))),
            attributes: vec![
                kv("bytes", Value::BytesValue(b"hi".to_vec())),
                KeyValue {
                    key: "empty".to_owned(),
                    value: None,
                    ..KeyValue::default()
                },
            ],
            ..LogRecord::default()
        };
        let v = mapped(vec![kv("service.name", s("api"))], log, at(5));
        assert_eq!(
            v["message"],
            r#"[-3,"NaN","-Infinity",0.5,"AAEC/w==",null,{"q\"uote":true}]"#
        );
        assert_eq!(v["bytes"], "aGk=");
        assert_eq!(v["empty"], serde_json::Value::Null);
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00.000000001Z");
    }

    #[test]
    fn the_time_falls_back_to_the_observed_time_then_to_now() {
        let now = at(1_767_323_045_000_000_000);
        let observed = LogRecord {
            observed_time_unix_nano: 2_000_000_000,
            ..LogRecord::default()
        };
        assert_eq!(
            mapped(vec![], observed, now)["timestamp"],
            "1970-01-01T00:00:02.000000000Z"
        );
        let neither = mapped(vec![], LogRecord::default(), now);
        assert_eq!(neither["timestamp"], "2026-01-02T03:04:05.000000000Z");
        assert_eq!(neither["service"], "unknown_service", "as SDKs default");
        assert_eq!(neither["message"], "");
        assert_eq!(neither["level"], "info");
    }

    #[test]
    fn all_zero_ids_are_no_ids() {
        let log = LogRecord {
            time_unix_nano: 1,
            trace_id: vec![0; 16],
            span_id: vec![0; 8],
            ..LogRecord::default()
        };
        let v = mapped(vec![], log, at(1));
        assert!(
            v.get("trace_id").is_none() && v.get("span_id").is_none(),
            "{v}"
        );
    }

    #[test]
    fn a_taken_key_keeps_its_value_under_its_source() {
        let log = LogRecord {
            time_unix_nano: 1,
            body: Some(any(s("the body"))),
            attributes: vec![
                kv("message", s("an attribute named message")),
                kv("host.name", s("from the record")),
                kv("trace_id", s("not an id")),
            ],
            ..LogRecord::default()
        };
        let v = mapped(
            vec![
                kv("service.name", s("api")),
                kv("host.name", s("from the resource")),
            ],
            log,
            at(1),
        );
        assert_eq!(v["message"], "the body");
        assert_eq!(v["attributes.message"], "an attribute named message");
        assert_eq!(v["host.name"], "from the record");
        assert_eq!(v["resource.host.name"], "from the resource");
        assert_eq!(
            v["trace_id"], "not an id",
            "no id, so the attribute keeps the name"
        );
    }

    #[test]
    fn only_one_object_with_resource_logs_and_no_record_keys_is_otlp_json() {
        assert!(is_otlp_json(br#" {"resourceLogs": []}"#));
        assert!(is_otlp_json(
            br#"{"resourceLogs": [{"scopeLogs": []}], "unknown": 1}"#
        ));
        for not in [
            &br#"[{"resourceLogs": []}]"#[..],
            br#"{"resourceLogs": []}
{"resourceLogs": []}"#,
            br#"{"timestamp":1,"level":"info","service":"a","message":"m"}"#,
            br#"{"resourceLogs": [], "message": "a record with an odd field"}"#,
            br#"{"resourceLogs": null}"#,
            br#"{"resourceLogs": [], "resourceLogs": []}"#,
            b"{not json",
            b"",
        ] {
            assert!(!is_otlp_json(not), "{}", String::from_utf8_lossy(not));
        }
    }

    async fn body_of(response: Response) -> Vec<u8> {
        use http_body_util::BodyExt;
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec()
    }

    #[tokio::test]
    async fn a_full_success_leaves_partial_success_unset_in_both_encodings() {
        assert_eq!(
            body_of(success(Encoding::Json, 0, String::new())).await,
            b"{}"
        );
        assert!(body_of(success(Encoding::Protobuf, 0, String::new()))
            .await
            .is_empty());
        let partial = body_of(success(Encoding::Json, 2, "why".into())).await;
        let v: serde_json::Value = serde_json::from_slice(&partial).unwrap();
        assert_eq!(v["partialSuccess"]["rejectedLogRecords"], 2);
        assert_eq!(v["partialSuccess"]["errorMessage"], "why");
    }

    #[test]
    fn the_content_type_says_protobuf_json_or_neither() {
        let declared = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
            Declared::of(&h)
        };
        assert_eq!(declared("application/x-protobuf"), Declared::Protobuf);
        assert_eq!(declared("Application/Protobuf"), Declared::Protobuf);
        assert_eq!(declared("application/json; charset=utf-8"), Declared::Json);
        assert_eq!(declared("application/x-ndjson"), Declared::Other);
        assert_eq!(Declared::of(&HeaderMap::new()), Declared::Other);
    }
}
