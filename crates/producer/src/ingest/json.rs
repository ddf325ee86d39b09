//! JSON bodies of `POST /v1/logs`: a JSON array or NDJSON of records, read by
//! [`schema::RecordReader`] into a [`Batch`], and the answer's shape ([`IngestResponse`]).

use schema::{Reason, RecordReader};
use serde::Serialize;

use crate::batch::Batch;

/// Errors listed in a response at most (the counts stay exact).
pub(crate) const MAX_LISTED_ERRORS: usize = 100;

/// One rejected record of a request.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct RecordFailure {
    /// 0-based index of the record in the body.
    pub(crate) index: u64,
    /// The reason code.
    pub(crate) reason: &'static str,
}

/// The answer to a JSON request.
#[derive(Debug, Clone, Serialize, Default)]
pub(crate) struct IngestResponse {
    /// Records acknowledged by Kafka.
    pub(crate) accepted: u64,
    /// Records rejected as invalid.
    pub(crate) rejected: u64,
    /// Records valid but not delivered (only on 500/503).
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) failed: u64,
    /// The first rejected records with their reasons.
    pub(crate) errors: Vec<RecordFailure>,
    /// What went wrong, on 4xx/5xx.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// `google.rpc.Status`'s code, on a refusal of an `application/json` request made before
    /// its body told whether it is OTLP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) code: Option<i32>,
    /// `google.rpc.Status`'s message (the same as `error`), likewise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) message: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The records of a body that could be read, valid or not.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    /// Every record read, encoded or rejected, in body order.
    pub(crate) batch: Batch,
    /// The first rejected records, for the answer.
    pub(crate) errors: Vec<RecordFailure>,
}

/// A body that is not records at all: not JSON, empty, truncated or structurally broken.
/// Nothing of it is sent; the message says where it breaks.
#[derive(Debug)]
pub(crate) struct Malformed(pub(crate) String);

/// Reads every record of `body`: all of them, before any is sent, so a body broken anywhere is
/// refused whole.
pub(crate) fn parse(body: &[u8], max_record_bytes: usize) -> Result<Parsed, Malformed> {
    let mut p = Parsed {
        // Encoded records take about as many bytes as the body.
        batch: Batch::with_capacity(body.len()),
        errors: Vec::new(),
    };
    let mut reader = RecordReader::with_max_record_bytes(body, max_record_bytes);
    let mut read = 0u64;
    let mut json_like = 0u64;
    let mut first_error: Option<String> = None;
    while let Some(item) = reader.next_record() {
        read += 1;
        if let Err(e) = &item {
            if e.is_fatal() {
                return Err(Malformed(e.to_string()));
            }
            if !matches!(e.reason(), Reason::InvalidJson | Reason::InvalidUtf8) {
                json_like += 1;
            }
            if first_error.is_none() {
                first_error = Some(e.to_string());
            }
            if p.errors.len() < MAX_LISTED_ERRORS {
                p.errors.push(RecordFailure {
                    index: e.position().index,
                    reason: e.reason().as_str(),
                });
            }
        } else {
            json_like += 1;
        }
        p.batch.push(item);
    }
    if read == 0 && body.iter().all(u8::is_ascii_whitespace) {
        return Err(Malformed("empty body".to_owned()));
    }
    if json_like == 0 && read > 0 {
        // Say where the first record breaks (record, line, byte and the parser's line and
        // column), so the client can fix it.
        return Err(Malformed(match first_error {
            Some(e) => format!("the body is not JSON: {e}"),
            None => "the body is not JSON".to_owned(),
        }));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Item;

    #[test]
    fn a_body_whose_only_record_is_broken_json_says_where() {
        let body = br#"{"timestamp":1,"level":"info","service":"a","message":"m",}"#;
        match parse(body, 1 << 20) {
            Err(Malformed(m)) => assert!(
                m.contains("record 0")
                    && m.contains("line 1")
                    && m.contains("column")
                    && m.contains("byte"),
                "{m}"
            ),
            Ok(_) => panic!("a broken record alone is not JSON"),
        }
    }

    #[test]
    fn a_body_that_is_not_json_is_malformed_but_one_bad_record_is_not() {
        assert!(parse(b"hello world", 1 << 20).is_err());
        assert!(parse(b"", 1 << 20).is_err());
        assert!(parse(b"[{\"a\":1}", 1 << 20).is_err());
        let body = br#"{"timestamp":1,"level":"info","service":"a","message":"m"}
{"timestamp":1,"level":"loud","service":"a","message":"m"}
"#;
        match parse(body, 1 << 20) {
            Ok(p) => {
                let records = p
                    .batch
                    .items()
                    .iter()
                    .filter(|i| matches!(i, Item::Record(_)));
                assert_eq!(records.count(), 1);
                assert_eq!(p.batch.len(), 2);
                assert_eq!(
                    p.errors,
                    [RecordFailure {
                        index: 1,
                        reason: "invalid_level"
                    }]
                );
            }
            Err(Malformed(m)) => panic!("{m}"),
        }
    }
}
