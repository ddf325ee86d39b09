//! `POST /v1/logs` of the real `producer run` binary against a real broker (tansu): requests
//! without the right bearer token get 401 (with `WWW-Authenticate: Bearer`), oversize bodies get
//! 413 (declared, chunked and gzip-inflated), malformed bodies get 400 saying where, an
//! unsupported encoding gets 415 — and none of them puts a single record into the topic, which
//! is read back to its high watermark after a positive control (a valid request with the token)
//! went through. A batch with one invalid record follows the documented contract: 200 with the
//! counts and the rejected index, the valid records forwarded and the invalid one not.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use std::collections::BTreeSet;
use std::io::Write;

use common::*;
use logpipe_security::secret;
use serde_json::Value;
use tempfile::TempDir;
use testkit::broker::Broker;
use testkit::service::ServiceProcess;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The body cap the producer runs with in these tests.
const MAX_BODY: usize = 65_536;

/// A producer requiring a token, on a fresh topic.
struct Ingest {
    producer: ServiceProcess,
    broker: Broker,
    topic: String,
    token: String,
    http: reqwest::Client,
    _logs: TempDir,
}

/// An answer of the ingest route.
#[derive(Debug)]
struct Answer {
    status: u16,
    www_authenticate: Option<String>,
    body: Value,
}

impl Ingest {
    async fn start() -> Self {
        let (broker, topic) = broker_with_topic("ingest", 3).await;
        let token = secret::distinctive("ingest");
        let logs = work_dir();
        let env = producer_env(
            &broker,
            &topic,
            &[
                ("INGEST_TOKEN", &token),
                ("INGEST_MAX_BODY_BYTES", &MAX_BODY.to_string()),
                ("LOG_LEVEL", "info,rdkafka=warn"),
            ],
        );
        let producer = start_producer(env, &logs).await;
        Self {
            producer,
            broker,
            topic,
            token,
            http: reqwest::Client::new(),
            _logs: logs,
        }
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    async fn post(&self, body: impl Into<reqwest::Body>, headers: &[(&str, &str)]) -> Answer {
        self.post_to("/v1/logs", body, headers).await
    }

    async fn post_to(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self
            .http
            .post(self.producer.url(path))
            .header("content-type", "application/x-ndjson")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let www_authenticate = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            www_authenticate,
            body,
        }
    }

    /// Posts `to - from` valid records of `probe` with the token and expects all accepted.
    async fn control(&self, probe: &str, from: u64, to: u64) {
        let bearer = self.bearer();
        let answer = self
            .post(ndjson(probe, from, to), &[("authorization", &bearer)])
            .await;
        assert_eq!(answer.status, 200, "positive control refused: {answer:?}");
        assert_eq!(answer.body["accepted"], to - from, "{answer:?}");
        assert_eq!(answer.body["rejected"], 0, "{answer:?}");
    }

    /// Reads the topic to its end and asserts it holds exactly `seqs` of `probe`, once each,
    /// and nothing else.
    async fn assert_topic_holds_only(&self, probe: &str, seqs: &[u64]) {
        let records = read_to_end(&self.broker, &self.topic).await;
        let mut seen = Vec::new();
        for r in &records {
            let value: Value = serde_json::from_slice(&r.value)
                .unwrap_or_else(|e| panic!("not JSON in the topic ({e}): {}", r.text()));
            assert_eq!(
                value["probe"],
                probe,
                "a record that should not be in the topic: {}",
                r.text()
            );
            seen.push(value["seq"].as_u64().unwrap());
        }
        seen.sort_unstable();
        assert_eq!(seen, seqs, "the topic holds {} records", records.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_the_right_bearer_token_get_401_and_reach_no_topic() {
    let ingest = Ingest::start().await;
    let token = ingest.token.clone();
    let wrong: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("no Authorization header", vec![]),
        (
            "another token",
            vec![("authorization", "Bearer not-the-token".into())],
        ),
        (
            "the token plus a byte",
            vec![("authorization", format!("Bearer {token}x"))],
        ),
        (
            "the token minus its last byte",
            vec![(
                "authorization",
                format!("Bearer {}", &token[..token.len() - 1]),
            )],
        ),
        (
            "an empty bearer token",
            vec![("authorization", "Bearer ".into())],
        ),
        (
            "the token without a scheme",
            vec![("authorization", token.clone())],
        ),
        (
            "the token as Basic credentials",
            vec![(
                "authorization",
                format!(
                    "Basic {}",
                    secret::base64(format!("user:{token}").as_bytes())
                ),
            )],
        ),
        (
            "the token in another scheme",
            vec![("authorization", format!("Token {token}"))],
        ),
        (
            "the token in another header",
            vec![("x-api-key", token.clone())],
        ),
    ];
    let body = ndjson("refused", 0, 5);
    for (what, headers) in &wrong {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let answer = ingest.post(body.clone(), &headers).await;
        assert_eq!(answer.status, 401, "{what}: {answer:?}");
        assert_eq!(
            answer.www_authenticate.as_deref(),
            Some("Bearer"),
            "{what}: {answer:?}"
        );
        assert_eq!(answer.body["accepted"], 0, "{what}: {answer:?}");
        assert!(answer.body["error"].is_string(), "{what}: {answer:?}");
    }
    let in_query = ingest
        .post_to(&format!("/v1/logs?access_token={token}"), body.clone(), &[])
        .await;
    assert_eq!(in_query.status, 401, "token in the query: {in_query:?}");

    ingest.control("control", 0, 3).await;
    ingest.assert_topic_holds_only("control", &[0, 1, 2]).await;
}

/// NDJSON of `probe` records, padded to exactly `size` bytes.
fn body_of_exactly(probe: &str, size: usize) -> String {
    let mut body = String::new();
    let mut seq = 0;
    loop {
        let line = record(probe, seq, 0) + "\n";
        // Keep room for the last record, padded to fill the rest.
        if body.len() + 2 * line.len() + 16 > size {
            break;
        }
        body.push_str(&line);
        seq += 1;
    }
    let last_plain = record(probe, seq, 0).len() + 1;
    let pad = size - body.len() - last_plain;
    body.push_str(&(record(probe, seq, pad) + "\n"));
    assert_eq!(body.len(), size);
    body
}

fn records_in(body: &str) -> u64 {
    body.lines().count() as u64
}

/// Sends `body` with `Transfer-Encoding: chunked` (no length announced) over a raw connection
/// and returns the status code of the answer.
async fn post_chunked(ingest: &Ingest, body: &[u8]) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", ingest.producer.port()))
        .await
        .unwrap();
    let head = format!(
        "POST /v1/logs HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: {}\r\n\
         content-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\
         connection: close\r\n\r\n",
        ingest.bearer()
    );
    let mut request = head.into_bytes();
    for chunk in body.chunks(4096) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    // The server may answer and close before it read everything: a failed write is expected
    // then, and the answer is still there to read.
    let _ = stream.write_all(&request).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok());
    status.unwrap_or_else(|| panic!("no HTTP answer to the chunked request: {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_bodies_get_413_and_reach_no_topic() {
    let ingest = Ingest::start().await;
    let bearer = ingest.bearer();
    let auth = [("authorization", bearer.as_str())];

    let over = body_of_exactly("refused", MAX_BODY + 1);
    let answer = ingest.post(over.clone(), &auth).await;
    assert_eq!(
        answer.status, 413,
        "declared length over the cap: {answer:?}"
    );
    assert!(
        answer.body["error"]
            .as_str()
            .unwrap()
            .contains(&MAX_BODY.to_string()),
        "{answer:?}"
    );

    assert_eq!(
        post_chunked(&ingest, over.as_bytes()).await,
        413,
        "chunked body over the cap"
    );

    // Small on the wire, over the cap once decoded.
    let inflated = ndjson("refused", 0, 4 * MAX_BODY as u64 / 100);
    assert!(inflated.len() > 2 * MAX_BODY);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(inflated.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    assert!(gz.len() < MAX_BODY / 2, "compressed to {} bytes", gz.len());
    let answer = ingest
        .post(
            gz,
            &[("authorization", &bearer), ("content-encoding", "gzip")],
        )
        .await;
    assert_eq!(
        answer.status, 413,
        "gzip body inflating over the cap: {answer:?}"
    );

    // The cap is inclusive: a body of exactly the cap is the positive control.
    let exact = body_of_exactly("control", MAX_BODY);
    let n = records_in(&exact);
    let answer = ingest.post(exact, &auth).await;
    assert_eq!(answer.status, 200, "a body of exactly the cap: {answer:?}");
    assert_eq!(answer.body["accepted"], n, "{answer:?}");
    let seqs: Vec<u64> = (0..n).collect();
    ingest.assert_topic_holds_only("control", &seqs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_get_400_saying_where_and_reach_no_topic() {
    let ingest = Ingest::start().await;
    let bearer = ingest.bearer();
    let auth = [("authorization", bearer.as_str())];
    let ok0 = record("refused", 0, 0);
    let ok1 = record("refused", 1, 0);
    // (what, body, what the error must say: the record and where it starts)
    let cases = [
        (
            "an array cut inside its second element",
            format!("[{ok0}, {{\"timestamp\": "),
            vec!["record 1", "line 1", "byte"],
        ),
        (
            "an array with garbage between elements",
            format!("[{ok0}, {ok1} x]"),
            vec!["record", "line 1", "byte"],
        ),
        (
            "bytes after the closing bracket",
            format!("[{ok0}]\n{ok1}"),
            vec!["record", "line", "byte"],
        ),
        (
            "NDJSON whose last record is cut off",
            format!("{ok0}\n{{\"timestamp\":\"2026-01-02T03:04:05Z\",\"lev"),
            vec!["record 1", "line 2", "byte"],
        ),
    ];
    for (what, body, needles) in &cases {
        let answer = ingest.post(body.clone(), &auth).await;
        assert_eq!(answer.status, 400, "{what}: {answer:?}");
        assert_eq!(answer.body["accepted"], 0, "{what}: {answer:?}");
        let error = answer.body["error"].as_str().unwrap_or_default();
        for needle in needles {
            assert!(
                error.contains(needle),
                "{what}: {needle:?} not in {error:?}"
            );
        }
    }
    for (what, body) in [
        ("an empty body", ""),
        ("a body that is not JSON", "hello world\n"),
    ] {
        let answer = ingest.post(body, &auth).await;
        assert_eq!(answer.status, 400, "{what}: {answer:?}");
        assert!(answer.body["error"].is_string(), "{what}: {answer:?}");
    }
    let answer = ingest
        .post(
            ndjson("refused", 0, 2),
            &[("authorization", &bearer), ("content-encoding", "br")],
        )
        .await;
    assert_eq!(
        answer.status, 415,
        "an unsupported content-encoding: {answer:?}"
    );

    ingest.control("control", 0, 2).await;
    ingest.assert_topic_holds_only("control", &[0, 1]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_whose_only_record_is_broken_json_gets_400_saying_where() {
    let ingest = Ingest::start().await;
    let bearer = ingest.bearer();
    // A trailing comma: JSON-like, one syntax error at a known place.
    let broken = record("refused", 0, 0).replace("}", ",}");
    let answer = ingest
        .post(format!("{broken}\n"), &[("authorization", &bearer)])
        .await;
    assert_eq!(answer.status, 400, "{answer:?}");
    let error = answer.body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("line 1") && (error.contains("column") || error.contains("byte")),
        "the 400 does not say where the JSON breaks: {error:?}"
    );
    ingest.control("control", 0, 1).await;
    ingest.assert_topic_holds_only("control", &[0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_one_invalid_record_forwards_only_the_valid_ones() {
    let ingest = Ingest::start().await;
    let bearer = ingest.bearer();
    let auth = [("authorization", bearer.as_str())];

    // NDJSON: record 2 has a level outside the contract.
    let mut lines: Vec<String> = (0..5).map(|s| record("control", s, 0)).collect();
    lines[2] = lines[2].replace("\"level\":\"info\"", "\"level\":\"loud\"");
    let answer = ingest.post(lines.join("\n") + "\n", &auth).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["accepted"], 4, "{answer:?}");
    assert_eq!(answer.body["rejected"], 1, "{answer:?}");
    assert_eq!(
        answer.body["errors"],
        serde_json::json!([{"index": 2, "reason": "invalid_level"}]),
        "{answer:?}"
    );

    // A JSON array: element 1 (seq 6) has no message.
    let elements = [
        record("control", 5, 0),
        record("control", 6, 0).replace("\"message\":\"control 6\",", ""),
        record("control", 7, 0),
    ];
    let answer = ingest
        .post(format!("[{}]", elements.join(",\n")), &auth)
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["accepted"], 2, "{answer:?}");
    assert_eq!(answer.body["rejected"], 1, "{answer:?}");
    assert_eq!(answer.body["errors"][0]["index"], 1, "{answer:?}");
    assert_eq!(
        answer.body["errors"][0]["reason"], "missing_field",
        "{answer:?}"
    );

    let expected: BTreeSet<u64> = [0, 1, 3, 4, 5, 7].into();
    ingest
        .assert_topic_holds_only("control", &expected.into_iter().collect::<Vec<_>>())
        .await;
}
