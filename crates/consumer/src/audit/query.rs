//! Reading entries back from Loki for the audit (LOKI.md, "Query"): `series` to find the
//! streams that hold entries in a window, and `query_range` paged as Loki requires — at most
//! `limit` entries per query, `direction=forward`, each next page starting at the last
//! timestamp seen (entries sharing it are asked for again and the ones already read are
//! skipped). Queries are paced to a maximum rate, and 429, 5xx and network errors are retried
//! with back-off (honouring `Retry-After`) a bounded number of times.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use reqwest::StatusCode;
use schema::LabelSet;
use serde::Deserialize;
use thiserror::Error;
use tokio::time::Instant;

use crate::loki::LokiClient;
use crate::retry::{Backoff, MAX_RETRY_AFTER};

/// Attempts of one query before the audit gives up.
const MAX_ATTEMPTS: u32 = 6;

/// How long one query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

/// A query Loki did not answer usefully.
#[derive(Debug, Error)]
pub enum QueryError {
    /// Loki refused the query (4xx other than 429): its text.
    #[error("Loki refused {what} ({status}): {body}")]
    Refused {
        /// Which query.
        what: String,
        /// Its status.
        status: u16,
        /// Loki's text.
        body: String,
    },
    /// Loki kept failing (429, 5xx, no answer).
    #[error("Loki did not answer {what} after {MAX_ATTEMPTS} attempts: {last}")]
    Unavailable {
        /// Which query.
        what: String,
        /// The last failure.
        last: String,
    },
    /// The answer is not Loki's JSON.
    #[error("Loki's answer to {what} does not parse: {reason}")]
    Malformed {
        /// Which query.
        what: String,
        /// Why.
        reason: String,
    },
}

/// One entry read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Nanoseconds since the epoch.
    pub(crate) ts: i64,
    /// The line.
    pub(crate) line: String,
}

/// What reading one stream's window came to.
#[derive(Debug, Default)]
pub(crate) struct StreamRead {
    /// Timestamps at which more entries share one timestamp than a query may return: the
    /// entries at them beyond the first page could not be read.
    pub(crate) crowded: Vec<i64>,
}

/// A paced, retrying reader of Loki's query API.
#[derive(Debug)]
pub(crate) struct LokiReader {
    client: LokiClient,
    limit: usize,
    interval: Duration,
    next_at: Option<Instant>,
    /// Queries sent (every attempt counts).
    pub(crate) queries: u64,
    /// Entries received.
    pub(crate) entries: u64,
}

#[derive(Deserialize)]
struct Answer<T> {
    data: T,
}

#[derive(Deserialize)]
struct Streams {
    result: Vec<StreamResult>,
}

#[derive(Deserialize)]
struct StreamResult {
    stream: BTreeMap<String, String>,
    values: Vec<Vec<serde_json::Value>>,
}

impl LokiReader {
    /// A reader with at most `limit` entries per query and `per_second` queries per second.
    pub(crate) fn new(client: LokiClient, limit: usize, per_second: f64) -> Self {
        Self {
            client,
            limit,
            interval: Duration::from_secs_f64(1.0 / per_second),
            next_at: None,
            queries: 0,
            entries: 0,
        }
    }

    /// The label sets of `tenant`'s streams matched by `selector` with entries in
    /// `start..end` (ns).
    pub(crate) async fn series(
        &mut self,
        tenant: &str,
        selector: &str,
        start: i64,
        end: i64,
    ) -> Result<Vec<BTreeMap<String, String>>, QueryError> {
        let params = [
            ("match[]", selector.to_owned()),
            ("start", start.to_string()),
            ("end", end.to_string()),
        ];
        let what = format!("series {selector}{}", of_tenant(tenant));
        let answer: Answer<Vec<BTreeMap<String, String>>> = self
            .get("/loki/api/v1/series", tenant, &params, &what)
            .await?;
        Ok(answer.data)
    }

    /// Every entry of `tenant`'s stream `labels` with `start <= ts < end`, oldest first,
    /// handed to `visit` page by page; entries of other streams the selector also matches (a
    /// stream with more labels) are left out.
    pub(crate) async fn read_stream<F>(
        &mut self,
        tenant: &str,
        labels: &LabelSet,
        names: &[String],
        start: i64,
        end: i64,
        mut visit: F,
    ) -> Result<StreamRead, QueryError>
    where
        F: FnMut(&Entry),
    {
        let selector = labels.to_string();
        let mut read = StreamRead::default();
        let mut from = start;
        // Entries at `from` already handed over (a page that ends inside a timestamp).
        let mut seen_at_from: HashSet<String> = HashSet::new();
        loop {
            let params = [
                ("query", selector.clone()),
                ("start", from.to_string()),
                ("end", end.to_string()),
                ("limit", self.limit.to_string()),
                ("direction", "forward".to_owned()),
            ];
            let what = format!("query_range {selector}{}", of_tenant(tenant));
            let answer: Answer<Streams> = self
                .get("/loki/api/v1/query_range", tenant, &params, &what)
                .await?;
            let mut page: Vec<Entry> = Vec::new();
            let mut received = 0usize;
            // The newest timestamp of the page, whichever stream it is of.
            let mut last = from;
            for s in answer.data.result {
                received += s.values.len();
                let own = project(&s.stream, names) == *labels;
                for v in s.values {
                    let entry = parse_value(&v).ok_or_else(|| QueryError::Malformed {
                        what: what.clone(),
                        reason: format!("a value is not [\"<ns>\", \"<line>\", …]: {v:?}"),
                    })?;
                    last = last.max(entry.ts);
                    if own {
                        page.push(entry);
                    }
                }
            }
            self.entries += received as u64;
            page.sort_by_key(|e| e.ts);
            for e in &page {
                if e.ts == from && seen_at_from.contains(&e.line) {
                    continue;
                }
                visit(e);
            }
            if received < self.limit {
                return Ok(read);
            }
            // A full page: go on from its last timestamp. Loki may have cut the entries at that
            // timestamp short, so they are asked for again and the ones read are skipped.
            if last == from {
                // The whole page shares one timestamp: paging cannot get past it.
                read.crowded.push(from);
                from = from.saturating_add(1);
                seen_at_from.clear();
                if from >= end {
                    return Ok(read);
                }
                continue;
            }
            seen_at_from = page
                .iter()
                .filter(|e| e.ts == last)
                .map(|e| e.line.clone())
                .collect();
            from = last;
        }
    }

    /// One paced, retried GET, parsed.
    async fn get<T: for<'de> Deserialize<'de>>(
        &mut self,
        path: &str,
        tenant: &str,
        params: &[(&str, String)],
        what: &str,
    ) -> Result<T, QueryError> {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        loop {
            self.pace().await;
            self.queries += 1;
            let mut request = self
                .client
                .get(path)
                .query(params)
                .header("X-Loki-Response-Encoding-Flags", "categorize-labels")
                .timeout(QUERY_TIMEOUT);
            if !tenant.is_empty() {
                request = request.header("X-Scope-OrgID", tenant);
            }
            let sent = request.send().await;
            let (retry_after, last) = match sent {
                Ok(r) if r.status().is_success() => {
                    let body = r.bytes().await.map_err(|e| QueryError::Malformed {
                        what: what.to_owned(),
                        reason: e.to_string(),
                    })?;
                    return serde_json::from_slice(&body).map_err(|e| QueryError::Malformed {
                        what: what.to_owned(),
                        reason: e.to_string(),
                    });
                }
                Ok(r) => {
                    let status = r.status();
                    let retry_after = r
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
                    let body: String = r
                        .text()
                        .await
                        .unwrap_or_default()
                        .chars()
                        .take(1000)
                        .collect();
                    if status != StatusCode::TOO_MANY_REQUESTS && !status.is_server_error() {
                        return Err(QueryError::Refused {
                            what: what.to_owned(),
                            status: status.as_u16(),
                            body: body.trim().to_owned(),
                        });
                    }
                    (retry_after, format!("{status}: {}", body.trim()))
                }
                Err(e) => (None, e.to_string()),
            };
            if backoff.attempt() + 1 >= MAX_ATTEMPTS {
                return Err(QueryError::Unavailable {
                    what: what.to_owned(),
                    last,
                });
            }
            let delay = backoff.next_delay(retry_after);
            tracing::warn!(query = what, error = %last, retry_in = ?delay, "Loki query failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// Waits until the next query may go.
    async fn pace(&mut self) {
        let now = Instant::now();
        if let Some(at) = self.next_at {
            if at > now {
                tokio::time::sleep_until(at).await;
            }
        }
        self.next_at = Some(Instant::now() + self.interval);
    }
}

/// ` of tenant x` for messages (nothing without a tenant).
fn of_tenant(tenant: &str) -> String {
    if tenant.is_empty() {
        String::new()
    } else {
        format!(" of tenant {tenant}")
    }
}

/// The labels of `stream` that the label policy makes (`names`), dropping what Loki adds
/// (`service_name`, …).
pub(crate) fn project(stream: &BTreeMap<String, String>, names: &[String]) -> LabelSet {
    LabelSet::from_pairs(
        stream
            .iter()
            .filter(|(k, _)| names.iter().any(|n| n == *k))
            .map(|(k, v)| (k.clone(), v.clone())),
    )
}

/// `["<ns>", "<line>"]` or `["<ns>", "<line>", {…}]`.
fn parse_value(v: &[serde_json::Value]) -> Option<Entry> {
    let ts = v.first()?.as_str()?.parse().ok()?;
    let line = v.get(1)?.as_str()?.to_owned();
    Some(Entry { ts, line })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_with_or_without_metadata() {
        let v: Vec<serde_json::Value> = serde_json::from_str(r#"["17", "a"]"#).unwrap();
        assert_eq!(
            parse_value(&v),
            Some(Entry {
                ts: 17,
                line: "a".into()
            })
        );
        let v: Vec<serde_json::Value> =
            serde_json::from_str(r#"["18", "b", {"structuredMetadata": {"k": "v"}}]"#).unwrap();
        assert_eq!(parse_value(&v).map(|e| e.ts), Some(18));
        let v: Vec<serde_json::Value> = serde_json::from_str(r#"[18, "b"]"#).unwrap();
        assert_eq!(parse_value(&v), None);
    }

    #[test]
    fn a_projection_keeps_only_the_policy_s_labels() {
        let stream: BTreeMap<String, String> = [
            ("service", "api"),
            ("service_name", "api"),
            ("level", "info"),
            ("source", "kafka"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let names = [
            "service".to_owned(),
            "level".to_owned(),
            "source".to_owned(),
        ];
        assert_eq!(
            project(&stream, &names).to_string(),
            r#"{level="info", service="api", source="kafka"}"#
        );
    }
}
