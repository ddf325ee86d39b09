//! Loki's query API as tests, smoke checks and the conformance replay use it (LOKI.md,
//! "Query"): `/ready`, `/loki/api/v1/query_range` with a stream selector and line filters (with
//! `X-Loki-Response-Encoding-Flags: categorize-labels`, structured metadata comes back apart
//! from the stream labels), `/loki/api/v1/series`, `/loki/api/v1/labels` and
//! `/loki/api/v1/label/<name>/values`. Parameters are read as Loki reads them, and like a Loki
//! that never flushed, queries see only entries within `query_ingesters_within` of now.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use schema::labels::is_valid_label_name;
use schema::loki::label_text;
use schema::{LabelSet, Timestamp};
use serde::Serialize;
use thiserror::Error;

use super::faults::Outage;
use super::logql::{LogqlError, Selector};
use super::push::now_nanos;
use super::receiver::Receiver;
use super::store::{Entry, Stream};
use super::tenant::{tenant, TenantError};

const HOUR_NANOS: i64 = 3_600_000_000_000;
/// Loki's default `limit` of `query_range`.
const DEFAULT_LIMIT: usize = 100;

/// A query Loki would refuse.
#[derive(Debug, Error)]
pub(crate) enum QueryError {
    /// No usable tenant (401 or 400).
    #[error(transparent)]
    Tenant(#[from] TenantError),
    /// Not a stream selector (400).
    #[error(transparent)]
    Logql(#[from] LogqlError),
    /// A bad parameter (400), Loki's text.
    #[error("{0}")]
    Param(String),
    /// A query Loki fails with 500, Loki's text.
    #[error("{0}")]
    Internal(String),
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        let status = match &self {
            QueryError::Tenant(e) => e.status(),
            QueryError::Internal(_) => 500,
            _ => 400,
        };
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
        (status, format!("{self}\n")).into_response()
    }
}

/// `GET /ready`: 200 `ready`, or 503 during an `unavailable` outage.
pub(crate) async fn ready(State(receiver): State<Arc<Receiver>>) -> Response {
    if receiver.faults().outage == Some(Outage::Unavailable) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "Ingester not ready: injected outage\n",
        )
            .into_response()
    } else {
        (StatusCode::OK, "ready\n").into_response()
    }
}

#[derive(Serialize)]
struct Success<T> {
    status: &'static str,
    data: T,
}

#[derive(Serialize)]
struct StreamsData<'a> {
    #[serde(rename = "resultType")]
    result_type: &'static str,
    result: Vec<StreamResult<'a>>,
    stats: BTreeMap<String, u64>,
    #[serde(rename = "encodingFlags", skip_serializing_if = "Vec::is_empty")]
    encoding_flags: Vec<&'static str>,
}

#[derive(Serialize)]
struct StreamResult<'a> {
    stream: BTreeMap<Cow<'a, str>, &'a str>,
    values: Vec<Value<'a>>,
}

/// One value of a result stream: `[ns, line]`, or with categorized labels
/// `[ns, line, {"structuredMetadata": {…}}]`.
#[derive(Serialize)]
#[serde(untagged)]
enum Value<'a> {
    Plain((String, &'a str)),
    Categorized((String, &'a str, Categories<'a>)),
}

#[derive(Serialize)]
struct Categories<'a> {
    #[serde(rename = "structuredMetadata")]
    structured_metadata: BTreeMap<&'a str, &'a str>,
}

/// The header with which a client asks for structured metadata apart from the stream labels.
const ENCODING_FLAGS: &str = "x-loki-response-encoding-flags";

/// `GET /loki/api/v1/query_range`.
pub(crate) async fn query_range(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, QueryError> {
    let tenant = tenant(&headers, receiver.config.auth_enabled)?;
    let selector = Selector::parse(params.get("query").map_or("", String::as_str))?;
    let (start, end) = range(&params, HOUR_NANOS)?;
    let limit = match params.get("limit").filter(|l| !l.is_empty()) {
        None => DEFAULT_LIMIT,
        Some(l) => {
            let n: i64 = l.parse().map_err(|_| {
                QueryError::Param(format!("strconv.ParseInt: parsing {l:?}: invalid syntax"))
            })?;
            if n <= 0 {
                return Err(QueryError::Param(
                    "limit must be a positive value".to_owned(),
                ));
            }
            usize::try_from(n).unwrap_or(usize::MAX)
        }
    };
    let max = receiver.config.max_entries_limit_per_query;
    if max > 0 && limit > max {
        return Err(QueryError::Param(format!(
            "max entries limit per query exceeded, limit > max_entries_limit ({limit} > {max})"
        )));
    }
    let forward = match params.get("direction").map(|d| d.to_ascii_lowercase()) {
        None => false,
        Some(d) if d.is_empty() || d == "backward" => false,
        Some(d) if d == "forward" => true,
        Some(d) => return Err(QueryError::Param(format!("invalid direction '{d}'"))),
    };
    let categorize = headers
        .get_all(ENCODING_FLAGS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|flag| flag.trim() == "categorize-labels");
    let Some((start, end)) = visible(&receiver, start, end) else {
        return Ok(streams_body(Vec::new(), categorize));
    };
    let body = receiver.with_store(|store| {
        let Some(state) = store.tenant(tenant) else {
            return Ok(streams_body(Vec::new(), categorize));
        };
        // Every selected entry in range, streams in label order and entries oldest first.
        let mut streams: Vec<(&LabelSet, &Stream)> = state
            .streams
            .iter()
            .filter(|(labels, _)| selector.matches(labels))
            .collect();
        streams.sort_by(|a, b| a.0.cmp(b.0));
        let mut hits: Vec<(&LabelSet, i64, &Entry)> = streams
            .iter()
            .flat_map(|(labels, stream)| {
                stream
                    .range(start, end)
                    .filter(|(_, e)| selector.matches_line(&e.line))
                    .map(move |(ts, e)| (*labels, ts, e))
            })
            .collect();
        // Loki prints each stream's labels and parses them again on the way out: a name
        // outside the legacy grammar (pushed as `{"a.b"="c"}`) makes every such query fail.
        if let Some((labels, _, _)) = hits
            .iter()
            .find(|(l, _, _)| l.pairs().iter().any(|(k, _)| !is_valid_label_name(k)))
        {
            let text = label_text::render_unquoted_names(labels.pairs());
            let error = label_text::parse(&text)
                .err()
                .map_or_else(|| "invalid label name".to_owned(), |e| e.to_string());
            return Err(QueryError::Internal(format!(
                "could not write JSON response: {error}"
            )));
        }
        hits.sort_by_key(|(_, ts, _)| *ts);
        if !forward {
            hits.reverse();
        }
        hits.truncate(limit);
        let mut results: BTreeMap<Vec<(Cow<'_, str>, &str)>, StreamResult<'_>> = BTreeMap::new();
        for (labels, ts, entry) in hits {
            let (stream, value) = if categorize {
                // Structured metadata apart: one result stream per label set.
                let stream = labels
                    .pairs()
                    .iter()
                    .map(|(k, v)| (Cow::Borrowed(k.as_str()), v.as_str()))
                    .collect();
                let metadata: BTreeMap<&str, &str> = entry.stored_metadata().into_iter().collect();
                let value = if metadata.is_empty() {
                    Value::Plain((ts.to_string(), entry.line.as_str()))
                } else {
                    Value::Categorized((
                        ts.to_string(),
                        entry.line.as_str(),
                        Categories {
                            structured_metadata: metadata,
                        },
                    ))
                };
                (stream, value)
            } else {
                // Entries with different structured metadata land in different result streams.
                (
                    result_labels(labels, entry),
                    Value::Plain((ts.to_string(), entry.line.as_str())),
                )
            };
            let key: Vec<_> = stream.iter().map(|(k, v)| (k.clone(), *v)).collect();
            results
                .entry(key)
                .or_insert_with(|| StreamResult {
                    stream,
                    values: Vec::new(),
                })
                .values
                .push(value);
        }
        Ok(streams_body(results.into_values().collect(), categorize))
    })?;
    Ok(body)
}

/// The part of `start..end` a Loki that never flushed can answer: entries older than
/// `query_ingesters_within` before now are not visible. `None` when nothing is.
fn visible(receiver: &Receiver, start: i64, end: i64) -> Option<(i64, i64)> {
    let within = receiver.config.query_ingesters_within;
    if within.is_zero() {
        return Some((start, end));
    }
    let oldest = now_nanos().saturating_sub(i64::try_from(within.as_nanos()).unwrap_or(i64::MAX));
    (end >= oldest).then_some((start.max(oldest), end))
}

fn streams_body(result: Vec<StreamResult<'_>>, categorize: bool) -> Response {
    Json(Success {
        status: "success",
        data: StreamsData {
            result_type: "streams",
            result,
            stats: BTreeMap::new(),
            encoding_flags: if categorize {
                vec!["categorize-labels"]
            } else {
                Vec::new()
            },
        },
    })
    .into_response()
}

/// A result stream's labels without categorized labels: the stream's, plus the entry's
/// structured metadata (a name that is already a stream label gets Loki's `_extracted`
/// suffix).
fn result_labels<'a>(labels: &'a LabelSet, entry: &'a Entry) -> BTreeMap<Cow<'a, str>, &'a str> {
    let mut out: BTreeMap<Cow<'a, str>, &'a str> = labels
        .pairs()
        .iter()
        .map(|(k, v)| (Cow::Borrowed(k.as_str()), v.as_str()))
        .collect();
    for (name, value) in entry.stored_metadata() {
        let name = if labels.get(name).is_some() {
            Cow::Owned(format!("{name}_extracted"))
        } else {
            Cow::Borrowed(name)
        };
        out.insert(name, value);
    }
    out
}

/// `GET /loki/api/v1/series?match[]=<selector>…`: the label sets of the selected streams with
/// entries in range (default the last hour), sorted.
pub(crate) async fn series(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, QueryError> {
    let tenant = tenant(&headers, receiver.config.auth_enabled)?;
    let params: HashMap<String, String> = pairs.iter().cloned().collect();
    let selectors = pairs
        .iter()
        .filter(|(k, _)| k == "match[]" || k == "match")
        .map(|(_, v)| Selector::parse(v))
        .collect::<Result<Vec<_>, _>>()?;
    let (start, end) = range(&params, HOUR_NANOS)?;
    let Some((start, end)) = visible(&receiver, start, end) else {
        return Ok(series_body(BTreeSet::new()));
    };
    let found = receiver.with_store(|store| {
        let mut data: BTreeSet<&LabelSet> = BTreeSet::new();
        let Some(state) = store.tenant(tenant) else {
            return BTreeSet::new();
        };
        for (labels, stream) in &state.streams {
            let selected = selectors.is_empty() || selectors.iter().any(|s| s.matches(labels));
            // Loki's ingester compares the stream's bounds with the range.
            let overlaps = stream
                .bounds()
                .is_some_and(|(first, last)| end > first && start <= last);
            if selected && overlaps {
                data.insert(labels);
            }
        }
        data.into_iter().cloned().collect::<BTreeSet<LabelSet>>()
    });
    Ok(series_body(found))
}

fn series_body(sets: BTreeSet<LabelSet>) -> Response {
    let data: Vec<BTreeMap<&str, &str>> = sets
        .iter()
        .map(|l| {
            l.pairs()
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect()
        })
        .collect();
    Json(Success {
        status: "success",
        data,
    })
    .into_response()
}

/// `GET /loki/api/v1/labels`: names of the stream labels of streams with entries in range
/// (default the last 6 hours), optionally only of streams selected by `query`.
pub(crate) async fn labels(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, QueryError> {
    label_data(&receiver, &headers, &params, None)
}

/// `GET /loki/api/v1/label/<name>/values`.
pub(crate) async fn label_values(
    State(receiver): State<Arc<Receiver>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, QueryError> {
    label_data(&receiver, &headers, &params, Some(&name))
}

fn label_data(
    receiver: &Receiver,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    name: Option<&str>,
) -> Result<Response, QueryError> {
    let tenant = tenant(headers, receiver.config.auth_enabled)?;
    let selector = match params.get("query").filter(|q| !q.trim().is_empty()) {
        Some(q) => Some(Selector::parse(q)?),
        None => None,
    };
    let (start, end) = range(params, 6 * HOUR_NANOS)?;
    let data: BTreeSet<String> = receiver.with_store(|store| {
        let Some(state) = store.tenant(tenant) else {
            return BTreeSet::new();
        };
        state
            .streams
            .iter()
            .filter(|(labels, stream)| {
                selector.as_ref().is_none_or(|s| s.matches(labels))
                    && (receiver.config.count_only || stream.has_entries_in(start, end))
            })
            .flat_map(|(labels, _)| {
                labels.pairs().iter().filter_map(|(k, v)| match name {
                    None => Some(k.clone()),
                    Some(name) if k == name => Some(v.clone()),
                    Some(_) => None,
                })
            })
            .collect()
    });
    Ok(Json(Success {
        status: "success",
        data,
    })
    .into_response())
}

/// `start` and `end` (defaults: now, and `default_span` before `end`).
fn range(params: &HashMap<String, String>, default_span: i64) -> Result<(i64, i64), QueryError> {
    let end = match params.get("end") {
        Some(v) if !v.is_empty() => parse_time(v)?,
        _ => now_nanos(),
    };
    let start = match params.get("start") {
        Some(v) if !v.is_empty() => parse_time(v)?,
        _ => end.saturating_sub(default_span),
    };
    if end < start {
        return Err(QueryError::Param(
            "end timestamp must not be before or equal to start time".to_owned(),
        ));
    }
    Ok((start, end))
}

/// A time as Loki reads it: RFC 3339, or a Unix time: with a fraction, or of up to 10 digits,
/// in seconds, else in nanoseconds.
pub(crate) fn parse_time(value: &str) -> Result<i64, QueryError> {
    let bad = || QueryError::Param(format!("cannot parse {value:?} to a valid timestamp"));
    if value.contains('.') {
        if let Ok(secs) = value.parse::<f64>() {
            if secs.is_finite() {
                let whole = secs.trunc();
                let millis = ((secs - whole) * 1000.0).round();
                return Ok((whole as i64)
                    .saturating_mul(1_000_000_000)
                    .saturating_add(millis as i64 * 1_000_000));
            }
        }
    }
    match value.parse::<i64>() {
        Ok(n) if value.trim_start_matches('-').len() <= 10 => Ok(n.saturating_mul(1_000_000_000)),
        Ok(n) => Ok(n),
        Err(_) => Timestamp::parse_rfc3339(value)
            .map(Timestamp::as_nanos)
            .map_err(|_| bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_times_as_loki() {
        assert_eq!(parse_time("1700000000").unwrap(), 1_700_000_000_000_000_000);
        assert_eq!(
            parse_time("1700000000123456789").unwrap(),
            1_700_000_000_123_456_789
        );
        assert_eq!(
            parse_time("1700000000.5").unwrap(),
            1_700_000_000_500_000_000
        );
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000_000_000
        );
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn metadata_joins_the_stream_labels() {
        let labels = LabelSet::from_pairs([("service", "api"), ("trace_id", "s")]);
        let entry = Entry {
            line: "l".into(),
            metadata: vec![
                schema::loki::proto::LabelPairAdapter {
                    name: "trace_id".into(),
                    value: "m".into(),
                },
                schema::loki::proto::LabelPairAdapter {
                    name: "span_id".into(),
                    value: "x".into(),
                },
            ],
            detected_level: Some("info".into()),
        };
        let got = result_labels(&labels, &entry);
        assert_eq!(got.get("trace_id"), Some(&"s"));
        assert_eq!(got.get("trace_id_extracted"), Some(&"m"));
        assert_eq!(got.get("span_id"), Some(&"x"));
        assert_eq!(got.get("detected_level"), Some(&"info"));
    }
}
