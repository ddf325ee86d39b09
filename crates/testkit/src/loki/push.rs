//! `POST /loki/api/v1/push` over HTTP (LOKI.md, "Request"), in Loki's order: faults, tenant,
//! `Content-Encoding` (a gzip header is checked first), `Content-Type` (Go's media type
//! parsing: `application/json` is JSON, anything else snappy protobuf), the body limits (413),
//! decoding with the schema's Loki-faithful codecs, then the [`Receiver`]'s Loki semantics, and
//! the answer with Loki's status and text. Loki never sends `Retry-After`; only an injected
//! status storm does.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use schema::loki::codec::{
    check_gzip_header, decode_json, decode_protobuf, gunzip, inflate, DecodeError,
};
use schema::loki::proto::PushRequest;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use super::faults::{Outage, StatusStorm};
use super::metrics::DROPPED;
use super::receiver::{Answer, Receiver};
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
    /// The body as sent, or once decompressed, is over the limit (413); Loki's text.
    #[error("request body too large: {0}")]
    TooLarge(String),
    /// The body could not be read (400).
    #[error("reading request body: {0}")]
    Body(String),
    /// The body does not decode (400), Loki's text.
    #[error("{0}")]
    Decode(DecodeError),
    /// Loki's answer to a decoded push that is not 204.
    #[error("{}", .0.message)]
    Loki(Answer),
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
            PushError::TooLarge(_) | PushError::Decode(DecodeError::TooLarge { .. }) => 413,
            PushError::ContentType(_)
            | PushError::Encoding(_)
            | PushError::Body(_)
            | PushError::Decode(_) => 400,
            PushError::Loki(answer) => answer.status,
            PushError::Unavailable => 503,
            PushError::Storm { code, .. } => *code,
            PushError::Dropped => 502,
        };
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<DecodeError> for PushError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::TooLarge { .. } => PushError::TooLarge(e.to_string()),
            e => PushError::Decode(e),
        }
    }
}

impl IntoResponse for PushError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), format!("{self}\n")).into_response();
        if let PushError::Storm {
            retry_after_secs: Some(secs),
            ..
        } = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
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

/// How the body is compressed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    /// None, or `snappy` (which the protobuf body has anyway).
    Identity,
    Gzip,
    Deflate,
}

async fn handle(receiver: &Receiver, headers: &HeaderMap, body: Body) -> Result<(), PushError> {
    let config = &receiver.config;
    let tenant = tenant(headers, config.auth_enabled)?;
    let encoding = match headers.get(header::CONTENT_ENCODING) {
        None => Encoding::Identity,
        Some(v) => match v.as_bytes() {
            b"" | b"snappy" => Encoding::Identity,
            b"gzip" => Encoding::Gzip,
            b"deflate" => Encoding::Deflate,
            other => {
                return Err(PushError::Encoding(
                    String::from_utf8_lossy(other).into_owned(),
                ))
            }
        },
    };
    let max = config.max_body_bytes;
    let body = read_at_most(body, max.saturating_add(1)).await?;
    if encoding == Encoding::Gzip {
        check_gzip_header(&body)?;
    }
    let json = is_json(headers)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let too_large = |size: usize| {
        PushError::TooLarge(format!("message size too large than max ({size} vs {max})"))
    };
    // Loki checks a protobuf body's declared length first, a JSON body's read length after.
    if let Some(n) = declared.filter(|n| !json && *n > max) {
        return Err(too_large(n));
    }
    if body.len() > max {
        return Err(too_large(body.len()));
    }
    let push = decode(&body, json, encoding, config.max_decompressed_bytes)?;
    receiver
        .ingest(tenant, push, now_nanos(), Instant::now())
        .map_err(PushError::Loki)
}

/// The body, or its first `limit` bytes when it is longer (Loki reads through a limited reader
/// and reports the size it saw).
async fn read_at_most(mut body: Body, limit: usize) -> Result<Vec<u8>, PushError> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| PushError::Body(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            let room = limit - out.len();
            out.extend_from_slice(&data[..data.len().min(room)]);
            if out.len() >= limit {
                break;
            }
        }
    }
    Ok(out)
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

fn decode(
    body: &[u8],
    json: bool,
    encoding: Encoding,
    max_decompressed: usize,
) -> Result<PushRequest, DecodeError> {
    let inflated;
    let body = match encoding {
        Encoding::Identity => body,
        Encoding::Gzip => {
            inflated = gunzip(body, max_decompressed)?;
            inflated.as_slice()
        }
        Encoding::Deflate => {
            inflated = inflate(body, max_decompressed)?;
            inflated.as_slice()
        }
    };
    if json {
        decode_json(body, false, max_decompressed)
    } else {
        decode_protobuf(body, max_decompressed)
    }
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
        assert_eq!(
            PushError::Loki(Answer {
                status: 422,
                message: "m".into()
            })
            .status(),
            422
        );
        assert_eq!(PushError::Tenant(TenantError::NoOrgId).status(), 401);
        assert_eq!(
            PushError::from(DecodeError::TooLarge { size: 2, max: 1 }).status(),
            413
        );
        let limited = PushError::Loki(Answer {
            status: 429,
            message: "m".into(),
        })
        .into_response();
        assert_eq!(limited.status(), 429);
        assert!(limited.headers().get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn inflates_deflate_and_refuses_bombs() {
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, br#"{"streams":[]}"#).unwrap();
        let body = enc.finish().unwrap();
        assert_eq!(
            decode(&body, true, Encoding::Deflate, 100)
                .unwrap()
                .streams
                .len(),
            0
        );
        assert!(matches!(
            decode(&body, true, Encoding::Deflate, 5),
            Err(DecodeError::TooLarge { size: 6, max: 5 })
        ));
    }
}
