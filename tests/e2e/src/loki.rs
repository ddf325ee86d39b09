//! Where a test's records land: the harness's Loki-compatible receiver (one per test, with its
//! counters and fault injection), or the external Loki named by `E2E_LOKI_URL` (see
//! [`crate::external`]), read as any client reads Loki: `GET /loki/api/v1/query_range` with
//! categorized labels, so structured metadata comes back apart from the stream labels. The
//! receiver answers that API exactly as Loki does, so either way every entry is seen with its
//! labels, timestamp, line and metadata.

use std::collections::BTreeSet;
use std::time::Duration;

use schema::loki::metadata::DETECTED_LEVEL;
use schema::LabelSet;
use serde_json::Value;
use testkit::loki::{LokiConfig, LokiHandle, LokiReceiver, StoredEntry, FAKE_TENANT};

use crate::error::{Error, Result};
use crate::external::Service;

/// Entries asked for per query: Loki's default `max_entries_limit_per_query`.
const PAGE: usize = 5000;

/// How long one query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// The Loki of one test.
#[derive(Debug)]
pub enum Loki {
    /// The harness's receiver, started for this test.
    Receiver(LokiHandle),
    /// A Loki the test does not own (`E2E_LOKI_URL`).
    External {
        /// Base URL, without a trailing `/`.
        url: String,
        /// Client for its query API.
        http: reqwest::Client,
    },
}

impl Loki {
    /// The external Loki when `E2E_LOKI_URL` is set, else a receiver started with rate limits
    /// off and, when `accept_old_records`, without Loki's `reject_old_samples`.
    pub async fn start(accept_old_records: bool) -> Result<Self> {
        if let Some(url) = Service::Loki.external() {
            let http = reqwest::Client::builder()
                .no_proxy()
                .timeout(QUERY_TIMEOUT)
                .build()
                .map_err(Error::http("cannot build an HTTP client"))?;
            return Ok(Self::External { url, http });
        }
        let mut config = LokiConfig::default().without_rate_limits();
        config.limits.reject_old_samples = !accept_old_records;
        Ok(Self::Receiver(LokiReceiver::start(config).await?))
    }

    /// The base URL the consumer pushes to.
    pub fn url(&self) -> &str {
        match self {
            Self::Receiver(handle) => handle.url(),
            Self::External { url, .. } => url,
        }
    }

    /// `host:port` of its `/metrics`, for Prometheus.
    pub fn metrics_addr(&self) -> String {
        match self {
            Self::Receiver(handle) => handle.addr().to_string(),
            Self::External { url, .. } => {
                let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
                rest.split('/').next().unwrap_or(rest).to_owned()
            }
        }
    }

    /// The harness's receiver (its counters and faults); `None` for an external Loki.
    pub fn receiver(&self) -> Option<&LokiHandle> {
        match self {
            Self::Receiver(handle) => Some(handle),
            Self::External { .. } => None,
        }
    }

    /// Every entry of streams labelled `environment` with a timestamp in `[start, end)` (ns),
    /// each once (Loki holds no two identical entries).
    pub async fn entries(
        &self,
        environment: &str,
        start: i64,
        end: i64,
    ) -> Result<Vec<StoredEntry>> {
        match self {
            Self::Receiver(handle) => Ok(handle
                .entries(FAKE_TENANT)
                .into_iter()
                .filter(|e| {
                    e.labels.get("environment") == Some(environment)
                        && (start..end).contains(&e.timestamp)
                })
                .collect()),
            Self::External { url, http } => {
                let query = format!("{{environment=\"{environment}\"}}");
                query_range(http, url, &query, start, end).await
            }
        }
    }
}

/// Every entry `query` selects in `[start, end)`, paged forward `PAGE` at a time; an entry seen
/// twice at a page edge is kept once.
pub async fn query_range(
    http: &reqwest::Client,
    url: &str,
    query: &str,
    start: i64,
    end: i64,
) -> Result<Vec<StoredEntry>> {
    let endpoint = format!("{url}/loki/api/v1/query_range");
    let mut seen = BTreeSet::new();
    let mut entries = Vec::new();
    let mut from = start;
    loop {
        let response = http
            .get(&endpoint)
            .header("X-Loki-Response-Encoding-Flags", "categorize-labels")
            .query(&[
                ("query", query.to_owned()),
                ("start", from.to_string()),
                ("end", end.to_string()),
                ("limit", PAGE.to_string()),
                ("direction", "forward".to_owned()),
            ])
            .send()
            .await
            .map_err(Error::http(format!("GET {endpoint} {query}")))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(Error::http(format!("reading the answer of GET {endpoint}")))?;
        if !status.is_success() {
            return Err(Error::Invalid(format!(
                "GET {endpoint} {query} answered {status}: {text}"
            )));
        }
        let page = parse_streams(&text)
            .map_err(|why| Error::Invalid(format!("GET {endpoint} {query}: {why}: {text:.300}")))?;
        let (count, last) = (page.len(), page.iter().map(|e| e.timestamp).max());
        for entry in page {
            let key = (
                entry.labels.to_string(),
                entry.timestamp,
                entry.line.clone(),
                entry.metadata.clone(),
            );
            if seen.insert(key) {
                entries.push(entry);
            }
        }
        match last {
            // A full page: the next one starts at its last timestamp (inclusive), so entries
            // sharing it are not missed; those already seen are dropped above.
            Some(last) if count >= PAGE && last > from => from = last,
            Some(_) if count >= PAGE => {
                return Err(Error::Invalid(format!(
                    "more than {PAGE} entries at ns {from}: cannot page through them"
                )))
            }
            _ => return Ok(entries),
        }
    }
}

/// The entries of a `query_range` answer with categorized labels.
fn parse_streams(text: &str) -> Result<Vec<StoredEntry>, String> {
    let body: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    if body["status"] != "success" || body["data"]["resultType"] != "streams" {
        return Err("not a successful streams result".to_owned());
    }
    let results = body["data"]["result"].as_array().ok_or("no result array")?;
    let mut entries = Vec::new();
    for result in results {
        let labels = LabelSet::from_pairs(
            result["stream"]
                .as_object()
                .ok_or("a stream without labels")?
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or_default())),
        );
        for value in result["values"]
            .as_array()
            .ok_or("a stream without values")?
        {
            let ts = value[0].as_str().ok_or("a value without a timestamp")?;
            let timestamp = ts
                .parse::<i64>()
                .map_err(|e| format!("timestamp {ts:?}: {e}"))?;
            let line = value[1]
                .as_str()
                .ok_or("a value without a line")?
                .to_owned();
            let mut metadata: Vec<(String, String)> = value[2]["structuredMetadata"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(k, _)| k.as_str() != DETECTED_LEVEL)
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            metadata.sort();
            entries.push(StoredEntry {
                labels: labels.clone(),
                timestamp,
                line,
                metadata,
            });
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categorized_answers_become_entries_without_detected_level() {
        let text = r#"{"status":"success","data":{"resultType":"streams","encodingFlags":["categorize-labels"],"result":[
            {"stream":{"environment":"e","service":"api"},"values":[
                ["1700000000000000001","{\"a\":1}",{"structuredMetadata":{"trace_id":"t","detected_level":"info"}}],
                ["1700000000000000002","{\"a\":2}",{}]]}]}}"#;
        let entries = parse_streams(text).expect("parsed");
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].labels.get("service"), Some("api"));
        assert_eq!(entries[0].timestamp, 1_700_000_000_000_000_001);
        assert_eq!(
            entries[0].metadata,
            vec![("trace_id".to_owned(), "t".to_owned())]
        );
        assert!(entries[1].metadata.is_empty());
    }

    #[test]
    fn a_failed_query_is_an_error() {
        assert!(parse_streams(r#"{"status":"error","error":"x"}"#).is_err());
        assert!(parse_streams("parse error").is_err());
    }

    #[test]
    fn the_metrics_address_of_an_external_loki_is_its_host_and_port() {
        let loki = Loki::External {
            url: "http://loki:3100".to_owned(),
            http: reqwest::Client::new(),
        };
        assert_eq!(loki.metrics_addr(), "loki:3100");
    }
}
