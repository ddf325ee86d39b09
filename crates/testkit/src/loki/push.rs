//! `POST /loki/api/v1/push` over HTTP (LOKI.md, "Request"): faults, tenant, body size,
//! `Content-Type` and `Content-Encoding`, decoding with the schema's codecs, then the
//! [`Receiver`]'s Loki semantics, and the answer with Loki's status and text.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use schema::loki::codec::{decode_json, decode_protobuf, DecodeError};
use schema::loki::limits::aggregate_errors;
use schema::loki::proto::PushRequest;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use super::faults::{Outage, StatusStorm};
use super::metrics::DROPPED;
use super::receiver::{Receiver, Refusal, MISSING_STREAMS};
use super::tenant::{tenant, TenantError};

/// Closes the connection a request arrived on, without an answer (the `drop_rate` fault). The
/// server puts one in every request's extensions.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionKill(pub(crate) CancellationToken);

/// Why a push is not answered 204.
#[derive(Debug, Error)]
pub(crate) enum PushError {
    /// No usable tenant (401 or 400).
    #[error(transparent)]
    Tenant(#[from] TenantError),
    /// A missing or malformed `Content-Type` (400), with Go's `mime` text.
    #[error("{0}")]
    ContentType(&'static str),
    /// A `Content-Encoding` Loki does not read (400).
    #[error("Content-Encoding {0:?} not supported")]
    Encoding(String),
    /// The body, or what it inflates to, is over the limit (413).
    #[error("request body too large: limit {0} bytes")]
    TooLarge(usize),
    /// The body could not be read (400).
    #[error("reading request body: {0}")]
    Body(String),
    /// The body does not decode (400).
    #[error("{0}")]
    Decode(DecodeError),
    /// A gzip or deflate body that does not inflate (400).
    #[error("decompressing body: {0}")]
    Inflate(std::io::Error),
    /// A push without streams (422).
    #[error("{MISSING_STREAMS}")]
    NoStreams,
    /// A bad label set or rejected entries (400), Loki's aggregated text.
    #[error("{0}")]
    Rejected(String),
    /// A rate or stream limit (429).
    #[error("{message}")]
    Limited {
        /// Loki's text.
        message: String,
        /// `Retry-After`.
        retry_after: Duration,
    },
    /// The `unavailable` outage (503).
    #[error("Loki is unavailable (injected outage)")]
    Unavailable,
    /// A status storm hit this push.
    #[error("injected status storm: {code}")]
    Storm {
        /// The status.
        code: u16,
        /// `Retry-After` in seconds.
        retry_after_secs: Option<u64>,
    },
    /// The `drop_rate` fault hit a request that has no connection to drop (router tests).
    #[error("connection dropped (injected fault)")]
    Dropped,
}

impl PushError {
    /// The status Loki answers with.
    pub(crate) fn status(&self) -> StatusCode {
        let code = match self {
            PushError::Tenant(e) => e.status(),
            PushError::TooLarge(_) | PushError::Decode(DecodeError::TooLarge(_)) => 413,
            PushError::ContentType(_)
            | PushError::Encoding(_)
            | PushError::Body(_)
            | PushError::Decode(_)
            | PushError::Inflate(_)
            | PushError::Rejected(_) => 400,
            PushError::NoStreams => 422,
            PushError::Limited { .. } => 429,
            PushError::Unavailable => 503,
            PushError::Storm { code, .. } => *code,
            PushError::Dropped => 502,
        };
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            PushError::Limited { retry_after, .. } => Some(retry_after.as_secs().max(1)),
            PushError::Storm {
                retry_after_secs, ..
            } => *retry_after_secs,
            _ => None,
        }
    }
}

impl IntoResponse for PushError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), format!("{self}\n")).into_response();
        if let Some(secs) = self.retry_after_secs() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<Refusal> for PushError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::NoStreams => PushError::NoStreams,
            Refusal::InvalidLabels(text) => PushError::Rejected(text),
            Refusal::Limited {
                message,
                retry_after,
            } => PushError::Limited {
                message,
                retry_after,
            },
        }
    }
}

/// The push handler.
pub(crate) async fn push(State(receiver): State<Arc<Receiver>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let faults = receiver.faults();
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    let result = if faults.outage == Some(Outage::Unavailable) {
        Err(PushError::Unavailable)
    } else if faults.drop_rate > 0.0 && rand::random::<f64>() < faults.drop_rate {
        receiver.metrics.request(DROPPED);
        match parts.extensions.get::<ConnectionKill>() {
            Some(kill) => {
                kill.0.cancel();
                // The server drops the connection, and this future with it.
                std::future::pending::<()>().await;
                return PushError::Dropped.into_response();
            }
            None => return PushError::Dropped.into_response(),
        }
    } else if let Some(storm) = faults.status_storm.filter(storm_hits) {
        Err(PushError::Storm {
            code: storm.code,
            retry_after_secs: storm.retry_after_secs,
        })
    } else {
        handle(&receiver, &parts.headers, body).await
    };
    let response = match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            tracing::debug!(error = %e, status = e.status().as_u16(), "push refused");
            e.into_response()
        }
    };
    receiver.metrics.request(response.status().as_str());
    response
}

fn storm_hits(storm: &StatusStorm) -> bool {
    storm.rate > 0.0 && rand::random::<f64>() < storm.rate
}

async fn handle(receiver: &Receiver, headers: &HeaderMap, body: Body) -> Result<(), PushError> {
    let config = &receiver.config;
    let tenant = tenant(headers, config.auth_enabled)?;
    let json = is_json(headers)?;
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let max = config.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(PushError::TooLarge(max));
    }
    let body = match Limited::new(body, max).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(PushError::TooLarge(max))
        }
        Err(e) => return Err(PushError::Body(e.to_string())),
    };
    let push = decode(&body, json, &encoding, max)?;
    let outcome = receiver.ingest(tenant, push, now_nanos(), Instant::now())?;
    if outcome.rejections.is_empty() {
        Ok(())
    } else {
        Err(PushError::Rejected(aggregate_errors(&outcome.rejections)))
    }
}

/// `application/json` → JSON; any other valid media type → protobuf; none or a malformed one →
/// 400, as Loki (Go's `mime.ParseMediaType`, whose texts these are).
fn is_json(headers: &HeaderMap) -> Result<bool, PushError> {
    let value = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
        .unwrap_or_default();
    let media = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let is_token = |c: char| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?=".contains(c);
    let kind_end = media.find(|c| !is_token(c)).unwrap_or(media.len());
    if kind_end == 0 {
        return Err(PushError::ContentType("mime: no media type"));
    }
    let rest = &media[kind_end..];
    if !rest.is_empty() {
        let Some(subtype) = rest.strip_prefix('/') else {
            return Err(PushError::ContentType(
                "mime: expected slash after first token",
            ));
        };
        let end = subtype.find(|c| !is_token(c)).unwrap_or(subtype.len());
        if end == 0 {
            return Err(PushError::ContentType("mime: expected token after slash"));
        }
        if end != subtype.len() {
            return Err(PushError::ContentType(
                "mime: unexpected content after media subtype",
            ));
        }
    }
    Ok(media == "application/json")
}

fn decode(body: &[u8], json: bool, encoding: &str, max: usize) -> Result<PushRequest, PushError> {
    match (json, encoding) {
        (true, "gzip") => decode_json(body, true, max).map_err(PushError::Decode),
        (true, "" | "snappy" | "identity") => {
            decode_json(body, false, max).map_err(PushError::Decode)
        }
        (false, "" | "snappy" | "identity") => {
            decode_protobuf(body, max).map_err(PushError::Decode)
        }
        (_, "gzip" | "deflate") => {
            let inflated = inflate(body, encoding == "gzip", max)?;
            if json {
                decode_json(&inflated, false, max).map_err(PushError::Decode)
            } else {
                decode_protobuf(&inflated, max).map_err(PushError::Decode)
            }
        }
        (_, other) => Err(PushError::Encoding(other.to_owned())),
    }
}

/// Inflates a gzip or raw deflate body, refusing to grow beyond `max` bytes.
fn inflate(body: &[u8], gzip: bool, max: usize) -> Result<Vec<u8>, PushError> {
    let limit = (max as u64).saturating_add(1);
    let mut out = Vec::new();
    let read = if gzip {
        flate2::read::GzDecoder::new(body)
            .take(limit)
            .read_to_end(&mut out)
    } else {
        flate2::read::DeflateDecoder::new(body)
            .take(limit)
            .read_to_end(&mut out)
    };
    read.map_err(PushError::Inflate)?;
    if out.len() > max {
        return Err(PushError::TooLarge(max));
    }
    Ok(out)
}

/// The wall clock in nanoseconds since the epoch.
pub(crate) fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content_type(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn reads_content_type_as_loki() {
        assert!(is_json(&content_type("application/json")).unwrap());
        assert!(is_json(&content_type("Application/JSON; charset=utf-8")).unwrap());
        assert!(!is_json(&content_type("application/x-protobuf")).unwrap());
        assert!(!is_json(&content_type("text/plain")).unwrap());
        assert!(!is_json(&content_type("protobuf")).unwrap());
        assert!(is_json(&HeaderMap::new()).is_err());
        assert!(is_json(&content_type("")).is_err());
        assert!(is_json(&content_type("application/")).is_err());
    }

    #[test]
    fn statuses_are_lokis() {
        assert_eq!(PushError::NoStreams.status(), 422);
        assert_eq!(PushError::Tenant(TenantError::NoOrgId).status(), 401);
        assert_eq!(PushError::Decode(DecodeError::TooLarge(1)).status(), 413);
        let limited = PushError::Limited {
            message: "m".into(),
            retry_after: Duration::from_secs(3),
        }
        .into_response();
        assert_eq!(limited.status(), 429);
        assert_eq!(limited.headers()[header::RETRY_AFTER], "3");
    }

    #[test]
    fn rejects_unknown_encodings_and_inflates_deflate() {
        assert!(matches!(
            decode(b"", true, "br", 100),
            Err(PushError::Encoding(_))
        ));
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, br#"{"streams":[]}"#).unwrap();
        let body = enc.finish().unwrap();
        assert_eq!(
            decode(&body, true, "deflate", 100).unwrap().streams.len(),
            0
        );
        assert!(matches!(
            decode(&body, true, "deflate", 5),
            Err(PushError::TooLarge(5))
        ));
    }
}
