//! The Loki push client (LOKI.md, "Request" and "Answers"): encodes a push (protobuf + snappy by
//! default, JSON with optional gzip as a switch), sends it with tenant and credentials, and
//! classifies the answer into what the pipeline must do next. Retrying lives in
//! [`crate::deliver`]; this module makes one attempt.

use std::time::{Duration, Instant};

use std::cell::RefCell;
use std::ops::Range;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use schema::loki::codec::{encode_json, encode_json_gzip, DecodeError, EncodeError};
use schema::loki::encoded::{EncodedEntries, SnappyScratch};
use service::config::ExposeSecret;
use thiserror::Error;

use crate::config::{ConsumerConfig, Encoding};

/// The client cannot be built from the configuration.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The URL does not parse.
    #[error("loki_url: {0}")]
    Url(String),
    /// A header value (tenant, credentials) is not valid in HTTP.
    #[error("{0} contains characters not allowed in an HTTP header")]
    Header(&'static str),
    /// The CA file cannot be read or parsed.
    #[error("loki_tls_ca_file {path}: {reason}")]
    Ca {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// reqwest refused the settings.
    #[error("building the HTTP client: {0}")]
    Build(#[from] reqwest::Error),
}

/// Why a push is retried (a classification of Loki's answers, also a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryReason {
    /// 429.
    RateLimited,
    /// 5xx.
    ServerError,
    /// Connection or timeout.
    Network,
    /// 401/403/404.
    Misconfigured,
    /// 413: the batch is split.
    TooLarge,
}

impl RetryReason {
    /// Every reason, for pre-initialising metric series.
    pub(crate) const ALL: [RetryReason; 5] = [
        RetryReason::RateLimited,
        RetryReason::ServerError,
        RetryReason::Network,
        RetryReason::Misconfigured,
        RetryReason::TooLarge,
    ];

    /// Label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RetryReason::RateLimited => "rate_limited",
            RetryReason::ServerError => "server_error",
            RetryReason::Network => "network",
            RetryReason::Misconfigured => "misconfigured",
            RetryReason::TooLarge => "too_large",
        }
    }
}

/// A push body that could not be built.
#[derive(Debug, Error)]
pub(crate) enum BodyError {
    /// Encoding or compressing failed.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// An entry could not be read back for the JSON encoding.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

thread_local! {
    /// The buffers of a push (uncompressed protobuf, compressed block, snappy's hash table),
    /// reused by every push built on this thread: a fresh megabyte per push cost page faults
    /// and zeroing that showed as a tenth of the CPU.
    static SNAPPY: RefCell<SnappyScratch> = RefCell::new(SnappyScratch::default());
}

/// What one push attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// 2xx: Loki has every entry.
    Accepted,
    /// 400 (or another 4xx that is not about credentials): Loki refused some entries and may
    /// have stored the others. Carries Loki's text.
    Rejected {
        /// Status code.
        status: u16,
        /// Loki's (aggregated) error text.
        body: String,
    },
    /// 413: the body is over the server's limit; split and retry.
    TooLarge,
    /// Worth retrying later: 429, 5xx, network errors, timeouts.
    Retry {
        /// Why.
        reason: RetryReason,
        /// The server's `Retry-After`, when given.
        retry_after: Option<Duration>,
        /// Status or error text, for logs.
        detail: String,
    },
    /// 401, 403, 404: misconfigured URL, tenant or credentials.
    Misconfigured {
        /// Status code.
        status: u16,
        /// Answer text.
        body: String,
    },
}

/// A Loki push client. Cheap to clone.
#[derive(Clone)]
pub(crate) struct LokiClient {
    http: reqwest::Client,
    base: reqwest::Url,
    push_url: reqwest::Url,
    ready_url: reqwest::Url,
    encoding: Encoding,
    gzip: bool,
}

impl std::fmt::Debug for LokiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LokiClient")
            .field("push_url", &self.push_url.as_str())
            .field("encoding", &self.encoding)
            .finish_non_exhaustive()
    }
}

impl LokiClient {
    /// Builds a client from the settings (credentials are read here and never logged).
    ///
    /// Credentials inside `loki_url` (`http://user:password@host`) are taken out of it and sent
    /// as basic auth (winning over `loki_username` and `loki_bearer_token`, as they did when
    /// the HTTP client took them from the URL), so no URL this client keeps, shows in `Debug`,
    /// or puts in an error or in `/readyz` carries them.
    pub(crate) fn new(config: &ConsumerConfig) -> Result<Self, ClientError> {
        let mut base = reqwest::Url::parse(config.loki_url.trim_end_matches('/'))
            .map_err(|e| ClientError::Url(e.to_string()))?;
        let url_credentials = take_credentials(&mut base)?;
        let join = |path: &str| {
            let mut u = base.clone();
            let p = format!("{}{}", u.path().trim_end_matches('/'), path);
            u.set_path(&p);
            u
        };
        let mut headers = HeaderMap::new();
        if let Some((user, password)) = url_credentials {
            let raw = format!("{user}:{password}");
            let mut v = HeaderValue::from_str(&format!("Basic {}", encode_base64(raw.as_bytes())))
                .map_err(|_| ClientError::Header("loki_url"))?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        } else if !config.loki_bearer_token.is_empty() {
            let mut v = HeaderValue::from_str(&format!(
                "Bearer {}",
                config.loki_bearer_token.expose_secret()
            ))
            .map_err(|_| ClientError::Header("loki_bearer_token"))?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        } else if !config.loki_username.is_empty() {
            let raw = format!(
                "{}:{}",
                config.loki_username,
                config.loki_password.expose_secret()
            );
            let mut v = HeaderValue::from_str(&format!("Basic {}", encode_base64(raw.as_bytes())))
                .map_err(|_| ClientError::Header("loki_username"))?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(config.loki_timeout)
            .connect_timeout(config.loki_timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("logpipe-consumer/", env!("CARGO_PKG_VERSION")))
            .danger_accept_invalid_certs(config.loki_tls_insecure_skip_verify);
        if !config.loki_tls_ca_file.is_empty() {
            let pem = std::fs::read(&config.loki_tls_ca_file).map_err(|e| ClientError::Ca {
                path: config.loki_tls_ca_file.clone(),
                reason: e.to_string(),
            })?;
            for cert in
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ClientError::Ca {
                    path: config.loki_tls_ca_file.clone(),
                    reason: e.to_string(),
                })?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Self {
            http: builder.build()?,
            push_url: join("/loki/api/v1/push"),
            base: base.clone(),
            ready_url: join("/ready"),
            encoding: config.loki_encoding,
            gzip: config.loki_gzip,
        })
    }

    /// The push body, in the configured format, of the entries in `range` of one stream.
    pub(crate) fn encode<T>(
        &self,
        labels: &str,
        entries: &EncodedEntries<T>,
        range: Range<usize>,
    ) -> Result<Bytes, BodyError> {
        match (self.encoding, self.gzip) {
            (Encoding::Protobuf, _) => {
                let body = SNAPPY
                    .with_borrow_mut(|scratch| entries.snappy_push(labels, range, scratch))?;
                Ok(Bytes::from(body))
            }
            (Encoding::Json, gzip) => {
                let push = entries.push_request(labels, range)?;
                let body = if gzip {
                    encode_json_gzip(&push)?
                } else {
                    encode_json(&push)?
                };
                Ok(Bytes::from(body))
            }
        }
    }

    /// One push attempt for `tenant` (`X-Scope-OrgID`, or none); returns the outcome and the
    /// request's duration.
    pub(crate) async fn push(
        &self,
        body: Bytes,
        tenant: Option<&HeaderValue>,
    ) -> (Outcome, Option<u16>, Duration) {
        let started = Instant::now();
        let mut req = self.http.post(self.push_url.clone()).body(body);
        if let Some(tenant) = tenant {
            req = req.header("X-Scope-OrgID", tenant.clone());
        }
        req = match (self.encoding, self.gzip) {
            (Encoding::Protobuf, _) => req.header(CONTENT_TYPE, "application/x-protobuf"),
            (Encoding::Json, false) => req.header(CONTENT_TYPE, "application/json"),
            (Encoding::Json, true) => req
                .header(CONTENT_TYPE, "application/json")
                .header(CONTENT_ENCODING, "gzip"),
        };
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                return (
                    Outcome::Retry {
                        reason: RetryReason::Network,
                        retry_after: None,
                        detail: error_chain(&e),
                    },
                    None,
                    started.elapsed(),
                )
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        if resp.status().is_success() {
            return (Outcome::Accepted, Some(status), started.elapsed());
        }
        let body = match resp.text().await {
            Ok(t) => t.chars().take(4096).collect::<String>(),
            Err(e) => e.to_string(),
        };
        let outcome = classify(status, retry_after, body);
        (outcome, Some(status), started.elapsed())
    }

    /// A GET of `path` under Loki's base URL with the pushes' credentials (the audit's
    /// queries, `crate::audit::query`, which name the tenant).
    pub(crate) fn get(&self, path: &str) -> reqwest::RequestBuilder {
        let mut u = self.base.clone();
        let p = format!("{}{}", u.path().trim_end_matches('/'), path);
        u.set_path(&p);
        self.http.get(u)
    }

    /// GETs Loki's `/ready`; `Err` with the reason when not ready.
    pub(crate) async fn ready(&self) -> Result<(), String> {
        match self.http.get(self.ready_url.clone()).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("{} answered {}", self.ready_url, r.status())),
            Err(e) => Err(format!("{}: {}", self.ready_url, error_chain(&e))),
        }
    }
}

/// Removes the user and password from `url` and returns them percent-decoded (`None` when the
/// URL carries neither).
fn take_credentials(url: &mut reqwest::Url) -> Result<Option<(String, String)>, ClientError> {
    if url.username().is_empty() && url.password().is_none() {
        return Ok(None);
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|d| d.into_owned())
            // The error would quote the bytes; they are credentials.
            .map_err(|_| ClientError::Url("the credentials in the URL are not UTF-8".to_owned()))
    };
    let user = decode(url.username())?;
    let password = decode(url.password().unwrap_or_default())?;
    // Only a URL that cannot have credentials (`data:`, `mailto:`) refuses these; loki_url is
    // validated to be http or https.
    if url.set_username("").is_err() || url.set_password(None).is_err() {
        return Err(ClientError::Url(
            "this URL cannot carry credentials".to_owned(),
        ));
    }
    Ok(Some((user, password)))
}

/// Maps a non-2xx status to what to do.
pub(crate) fn classify(status: u16, retry_after: Option<Duration>, body: String) -> Outcome {
    match status {
        401 | 403 | 404 => Outcome::Misconfigured { status, body },
        413 => Outcome::TooLarge,
        429 => Outcome::Retry {
            reason: RetryReason::RateLimited,
            retry_after,
            detail: format!("429: {body}"),
        },
        // 408 (timeout) is transient like a 5xx.
        408 | 500..=599 => Outcome::Retry {
            reason: RetryReason::ServerError,
            retry_after,
            detail: format!("{status}: {body}"),
        },
        _ => Outcome::Rejected { status, body },
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// Standard base64 with padding (RFC 4648), as HTTP Basic credentials use.
fn encode_base64(input: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_actions() {
        assert!(matches!(
            classify(401, None, String::new()),
            Outcome::Misconfigured { .. }
        ));
        assert!(matches!(
            classify(404, None, String::new()),
            Outcome::Misconfigured { .. }
        ));
        assert_eq!(classify(413, None, String::new()), Outcome::TooLarge);
        assert!(matches!(
            classify(429, Some(Duration::from_secs(3)), String::new()),
            Outcome::Retry { reason: RetryReason::RateLimited, retry_after: Some(d), .. } if d == Duration::from_secs(3)
        ));
        assert!(matches!(
            classify(503, None, String::new()),
            Outcome::Retry {
                reason: RetryReason::ServerError,
                ..
            }
        ));
        assert!(matches!(
            classify(400, None, "x".into()),
            Outcome::Rejected { status: 400, .. }
        ));
        assert!(matches!(
            classify(422, None, "x".into()),
            Outcome::Rejected { status: 422, .. }
        ));
    }

    #[tokio::test]
    async fn credentials_in_the_url_are_sent_as_basic_auth_and_kept_out_of_every_url() {
        let password = "SxurlpwQ1K@:";
        let c = ConsumerConfig {
            // Port 1 on loopback: refused at once, so `ready` fails with the URL in its error.
            loki_url: "http://url-user:SxurlpwQ1K%40%3A@127.0.0.1:1/prefix".into(),
            ..ConsumerConfig::default()
        };
        let l = LokiClient::new(&c).unwrap();
        assert_eq!(
            l.push_url.as_str(),
            "http://127.0.0.1:1/prefix/loki/api/v1/push"
        );
        assert_eq!(l.ready_url.as_str(), "http://127.0.0.1:1/prefix/ready");
        let debug = format!("{l:?}");
        let not_ready = l.ready().await.unwrap_err();
        for shown in [&debug, &not_ready] {
            assert!(
                !shown.contains("SxurlpwQ1K") && !shown.contains("url-user"),
                "{shown}"
            );
        }

        let mut url = reqwest::Url::parse(&c.loki_url).unwrap();
        assert_eq!(
            take_credentials(&mut url).unwrap(),
            Some(("url-user".to_owned(), password.to_owned()))
        );
        let mut plain = reqwest::Url::parse("http://loki:3100").unwrap();
        assert_eq!(take_credentials(&mut plain).unwrap(), None);
        assert_eq!(plain.as_str(), "http://loki:3100/");
    }

    #[tokio::test]
    async fn credentials_in_the_url_reach_loki_as_basic_auth() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.unwrap();
                assert!(n > 0, "the request ended early");
                head.extend_from_slice(&buf[..n]);
            }
            socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8(head).unwrap()
        });
        let c = ConsumerConfig {
            loki_url: format!("http://url-user:p%40ss@127.0.0.1:{port}"),
            // The URL's credentials win, as they did when reqwest took them from the URL.
            loki_username: "other".into(),
            ..ConsumerConfig::default()
        };
        LokiClient::new(&c).unwrap().ready().await.unwrap();
        let head = server.await.unwrap().to_ascii_lowercase();
        // RFC 4648 base64 of "url-user:p@ss", written out so an encoding slip fails the test.
        let expected = "authorization: basic dXJsLXVzZXI6cEBzcw==".to_ascii_lowercase();
        assert!(head.contains(&expected), "{head}");
    }

    #[test]
    fn push_and_ready_urls_keep_a_path_prefix() {
        let c = ConsumerConfig {
            loki_url: "http://gw:8080/loki-a/".into(),
            ..ConsumerConfig::default()
        };
        let l = LokiClient::new(&c).unwrap();
        assert_eq!(
            l.push_url.as_str(),
            "http://gw:8080/loki-a/loki/api/v1/push"
        );
        assert_eq!(l.ready_url.as_str(), "http://gw:8080/loki-a/ready");
    }
}
