//! The consumer's pre-flight (`schema::loki`) against a recorded real Loki: every entry of every
//! request in `tests/loki-conformance/cases.jsonl` (the shared recording, copied) is decoded as
//! Loki decodes it and checked by `schema::loki::limits`, and the verdict is compared with what
//! Loki did: stored or not (the corpus records what Loki held afterwards: labels incl.
//! `service_name`, timestamp, line, structured metadata with its names rewritten), and why (the
//! answer's status and text).
//!
//! Cases whose outcome does not follow from the entries alone are said so, per case: the
//! tenant rate, body sizes, per-stream rates and the active-stream limit depend on token buckets
//! and on what else was pushed; a refused tenant is refused before any entry is looked at. For
//! those only the safe direction is checked: an entry the pre-flight refuses was not stored.
//! Requests Loki refuses before reading entries (bad encoding, bad JSON, no streams) are
//! compared as a whole: the decoder must fail with Loki's text.
//!
//! The corpus is required: when it is missing the test fails, it does not skip.

// As clippy.toml says for test functions: a failed unwrap in a test helper is a failed test
// with a backtrace.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use schema::loki::codec::{decode_json, decode_protobuf, gunzip, DecodeError};
use schema::loki::limits::{
    check_labels, check_stream_entries, parse_stream_labels, Discard, Limits, Rejection,
    DEFAULT_SCHEMA_START_NANOS,
};
use schema::loki::metadata::{normalize_structured_metadata, DETECTED_LEVEL};
use schema::loki::proto::{EntryAdapter, PushRequest};
use schema::Timestamp;
use serde_json::Value;

/// Lines longer than this are recorded only as their length and hash (replay.py's rule).
const BIG_LINE: usize = 4096;
/// Loki's `query_ingesters_within`: older entries are accepted but not visible to queries.
const QUERY_INGESTERS_WITHIN: i64 = 3 * 3600 * 1_000_000_000;

/// The corpus: `tests/loki-conformance` in the repository (a copy of the shared recording,
/// checked identical to it by `crates/testkit/tests/conformance.rs`).
fn corpus() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/loki-conformance");
    assert!(
        dir.join("cases.jsonl").is_file() && dir.join("loki-config.yaml").is_file(),
        "the Loki conformance corpus is missing: expected cases.jsonl and loki-config.yaml in {}. \
         It is required: without it nothing shows that the pre-flight agrees with a real Loki.",
        dir.display()
    );
    dir
}

/// The limits of the recording's `loki-config.yaml` (checked against the file).
fn limits(dir: &std::path::Path) -> Limits {
    let yaml = std::fs::read_to_string(dir.join("loki-config.yaml")).unwrap();
    for line in [
        "reject_old_samples: false",
        "reject_old_samples_max_age: 8760h",
        "creation_grace_period: 10m",
        "max_line_size: 256KB",
        "max_label_names_per_series: 15",
        "max_chunk_age: 2h",
        "- from: 2020-10-24",
    ] {
        assert!(
            yaml.contains(line),
            "loki-config.yaml no longer says {line:?}: update the limits of this test"
        );
    }
    Limits {
        max_line_size: 262_144,
        max_label_names_per_series: 15,
        reject_old_samples: false,
        reject_old_samples_max_age: Duration::from_secs(8760 * 3600),
        creation_grace_period: Duration::from_secs(600),
        max_chunk_age: Duration::from_secs(2 * 3600),
        schema_start: Timestamp::from_nanos(DEFAULT_SCHEMA_START_NANOS).unwrap(),
        ..Limits::default()
    }
}

/// What the pre-flight says about one entry.
#[derive(Debug, Clone)]
enum Verdict {
    /// Loki stores it.
    Stored,
    /// Loki refuses it, for this reason.
    Refused(Rejection),
}

/// An entry as Loki would hold it: tenant (the `X-Scope-OrgID` of the multi-tenant group),
/// stream labels (with `service_name`), timestamp, line, structured metadata as Loki stores it
/// (without `detected_level`).
#[derive(Debug, Clone)]
struct Form {
    tenant: Option<String>,
    labels: BTreeMap<String, String>,
    ts: i64,
    line: String,
    metadata: BTreeMap<String, String>,
}

/// The verdict on one entry, its stream's place in the push, and the form Loki would hold it
/// in (none when its labels do not parse).
struct Checked {
    stream: usize,
    verdict: Verdict,
    form: Option<Form>,
}

/// How a case is compared.
enum Class {
    /// Every entry's fate follows from the entries: fully compared.
    PerEntry,
    /// Refused as a request before any entry: the decoder's text is compared.
    Request,
    /// Not decidable per entry, and why; only "refused ⇒ not stored" is checked.
    NotDecidable(String),
    /// The pre-flight refuses on purpose what Loki stores but cannot query back.
    Stricter,
}

struct Report {
    per_entry_cases: usize,
    entries_compared: usize,
    request_cases: Vec<String>,
    not_decidable: Vec<(String, String)>,
    stricter: Vec<String>,
}

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

/// Decodes a recorded request as Loki reads it; `Err` is the text Loki answers with.
fn decode(request: &Value) -> Result<PushRequest, String> {
    let headers = request["headers"].as_object().unwrap();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_str())
    };
    let body = b64(request["body_b64"].as_str().unwrap());
    let gzip = match header("Content-Encoding") {
        None | Some("") | Some("snappy") => false,
        Some("gzip") => true,
        Some(other) => return Err(format!("Content-Encoding {other:?} not supported")),
    };
    let Some(content_type) = header("Content-Type").filter(|c| !c.trim().is_empty()) else {
        return Err("mime: no media type".to_owned());
    };
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let text = |e: DecodeError| e.to_string();
    let push = if media == "application/json" {
        decode_json(&body, gzip, usize::MAX).map_err(text)?
    } else {
        let raw = if gzip {
            gunzip(&body, usize::MAX).map_err(text)?
        } else {
            body
        };
        decode_protobuf(&raw, usize::MAX).map_err(text)?
    };
    if push.streams.is_empty() {
        return Err("error at least one valid stream is required for ingestion".to_owned());
    }
    Ok(push)
}

/// The pre-flight's verdict on every entry of a push, in push order; `newest` is each stream's
/// newest accepted timestamp so far (across the case's requests).
fn check_push(
    push: &PushRequest,
    now: i64,
    newest: &mut HashMap<String, i64>,
    limits: &Limits,
) -> Vec<Checked> {
    let mut out = Vec::new();
    // A label text that does not parse refuses the whole push.
    for stream in &push.streams {
        if let Err(r) = parse_stream_labels(&stream.labels, limits) {
            if r.reason.rejects_whole_request() {
                return push
                    .streams
                    .iter()
                    .enumerate()
                    .flat_map(|(i, s)| s.entries.iter().map(move |_| i))
                    .map(|stream| Checked {
                        stream,
                        verdict: Verdict::Refused(r.clone()),
                        form: None,
                    })
                    .collect();
            }
        }
    }
    for (i, stream) in push.streams.iter().enumerate() {
        let parsed = parse_stream_labels(&stream.labels, limits);
        let labels: Option<BTreeMap<String, String>> = parsed
            .as_ref()
            .ok()
            .map(|p| p.labels.pairs().iter().cloned().collect());
        let forms: Vec<Option<Form>> = stream
            .entries
            .iter()
            .map(|e| {
                Some(Form {
                    tenant: None,
                    labels: labels.clone()?,
                    ts: e.nanos(),
                    line: e.line.clone(),
                    metadata: stored_metadata(e)?,
                })
            })
            .collect();
        let refuse_all = |r: &Rejection| -> Vec<Checked> {
            forms
                .iter()
                .map(|form| Checked {
                    stream: i,
                    verdict: Verdict::Refused(r.clone()),
                    form: form.clone(),
                })
                .collect()
        };
        // The pre-flight's own check, stricter than Loki's on purpose where Loki stores what it
        // cannot query back.
        if let Err(r) = check_labels(&stream.labels, limits) {
            out.extend(refuse_all(&r));
            continue;
        }
        let Ok(parsed) = parsed else {
            continue;
        };
        let known = newest.get(&parsed.text).copied();
        let (verdicts, after) =
            check_stream_entries(&parsed.text, &stream.entries, now, known, limits);
        // An entry before the schema's start fails its new stream as a whole.
        if known.is_none() {
            if let Some(r) = verdicts
                .iter()
                .filter_map(|v| v.as_ref().err())
                .find(|r| r.reason == Discard::BeforeSchemaStart)
            {
                out.extend(refuse_all(r));
                continue;
            }
        }
        if let Some(n) = after {
            newest.insert(parsed.text.clone(), n);
        }
        for (form, verdict) in forms.into_iter().zip(verdicts) {
            out.push(Checked {
                stream: i,
                verdict: match verdict {
                    Ok(()) => Verdict::Stored,
                    Err(r) => Verdict::Refused(r),
                },
                form,
            });
        }
    }
    // A structured-metadata name Loki cannot rewrite fails the whole push.
    if let Some(r) = out.iter().find_map(|c| match &c.verdict {
        Verdict::Refused(r) if r.reason == Discard::InvalidMetadataName => Some(r.clone()),
        _ => None,
    }) {
        for c in &mut out {
            c.verdict = Verdict::Refused(r.clone());
        }
    }
    out
}

/// The entry's structured metadata as Loki stores it, without `detected_level`; none when Loki
/// cannot rewrite a name.
fn stored_metadata(entry: &EntryAdapter) -> Option<BTreeMap<String, String>> {
    Some(
        normalize_structured_metadata(&entry.structured_metadata)
            .ok()?
            .iter()
            .filter(|p| p.name != DETECTED_LEVEL)
            .map(|p| (p.name.clone(), p.value.clone()))
            .collect(),
    )
}

/// The answer Loki gives for a push with these verdicts: status, and texts the body must hold.
/// The last stream's ingester error wins (and masks earlier ones); otherwise the distributor's
/// errors; otherwise 204.
fn expected_answer(checked: &[Checked]) -> (u16, Vec<String>) {
    let refusals: Vec<(usize, &Rejection)> = checked
        .iter()
        .filter_map(|c| match &c.verdict {
            Verdict::Refused(r) => Some((c.stream, r)),
            Verdict::Stored => None,
        })
        .collect();
    if let Some((_, r)) = refusals
        .iter()
        .find(|(_, r)| r.reason.rejects_whole_request())
    {
        return (r.reason.status(), vec![r.message.clone()]);
    }
    let ingester =
        |r: &Rejection| matches!(r.reason, Discard::TooFarBehind | Discard::BeforeSchemaStart);
    // Streams that reach the ingester: those with an entry the distributor let through.
    let reaching: BTreeSet<usize> = checked
        .iter()
        .filter(|c| match &c.verdict {
            Verdict::Stored => true,
            Verdict::Refused(r) => ingester(r),
        })
        .map(|c| c.stream)
        .collect();
    if let Some(&last) = reaching.iter().next_back() {
        let errors: Vec<&Rejection> = refusals
            .iter()
            .filter(|(s, r)| *s == last && ingester(r))
            .map(|(_, r)| *r)
            .collect();
        if let Some(first) = errors.first() {
            return (
                first.reason.status(),
                errors.iter().map(|r| r.message.clone()).collect(),
            );
        }
    }
    let distributor: Vec<String> = refusals
        .iter()
        .filter(|(_, r)| !ingester(r))
        .map(|(_, r)| r.message.clone())
        .collect();
    if distributor.is_empty() {
        (204, Vec::new())
    } else {
        (400, distributor)
    }
}

/// A stored query's selector: `{name="value"}`, optionally `|= "text"`.
struct Query {
    tenant: Option<String>,
    name: String,
    value: String,
    contains: Option<String>,
    start: i64,
    end: i64,
}

fn query(q: &Value) -> Query {
    let selector = q["selector"].as_str().unwrap();
    let parsed = (|| {
        let (matcher, filter) = match selector.split_once(" |= ") {
            Some((m, f)) => (m, Some(f)),
            None => (selector, None),
        };
        let inner = matcher.strip_prefix('{')?.strip_suffix('}')?;
        let (name, value) = inner.split_once('=')?;
        let unquote = |s: &str| serde_json::from_str::<String>(s).ok();
        Some(Query {
            tenant: q["tenant"].as_str().map(str::to_owned),
            name: name.to_owned(),
            value: unquote(value)?,
            contains: match filter {
                Some(f) => Some(unquote(f)?),
                None => None,
            },
            start: q["start_ns"].as_str()?.parse().ok()?,
            end: q["end_ns"].as_str()?.parse().ok()?,
        })
    })();
    parsed.unwrap_or_else(|| {
        panic!("stored query {q} is not `{{name=\"value\"}} [|= \"text\"]` with bounds")
    })
}

/// An entry as compared: labels, timestamp, line (or its length when over [`BIG_LINE`]),
/// metadata without `detected_level`.
type Key = (String, i64, String, String);

fn key(labels: &BTreeMap<String, String>, ts: i64, line: &Value, metadata: &Value) -> Key {
    let line = match line {
        Value::String(s) if s.len() <= BIG_LINE => s.clone(),
        Value::String(s) => format!("<{} bytes>", s.len()),
        other => format!("<{} bytes>", other["len_bytes"]),
    };
    (
        serde_json::to_string(labels).unwrap(),
        ts,
        line,
        metadata.to_string(),
    )
}

/// What Loki held for the case's query.
fn recorded_stored(stored: &Value) -> BTreeSet<Key> {
    let mut out = BTreeSet::new();
    for stream in stored["streams"].as_array().unwrap() {
        let labels: BTreeMap<String, String> =
            serde_json::from_value(stream["labels"].clone()).unwrap();
        for e in stream["entries"].as_array().unwrap() {
            let mut metadata: BTreeMap<String, String> =
                serde_json::from_value(e[2].clone()).unwrap();
            metadata.remove(DETECTED_LEVEL);
            let ts: i64 = e[0].as_str().unwrap().parse().unwrap();
            out.insert(key(
                &labels,
                ts,
                &e[1],
                &serde_json::to_value(metadata).unwrap(),
            ));
        }
    }
    out
}

/// The keys of the entries whose verdict `keep` selects, as Loki's query would show them.
fn keys(
    checked: &[Vec<Checked>],
    q: &Query,
    recorded_at: i64,
    keep: impl Fn(&Verdict) -> bool,
) -> BTreeSet<Key> {
    checked
        .iter()
        .flatten()
        .filter(|c| keep(&c.verdict))
        .filter_map(|c| c.form.as_ref())
        .filter(|f| {
            let selected = f.tenant == q.tenant
                && f.labels.get(&q.name) == Some(&q.value)
                && q.contains
                    .as_ref()
                    .is_none_or(|t| f.line.contains(t.as_str()));
            let visible =
                f.ts >= q.start && f.ts <= q.end && f.ts >= recorded_at - QUERY_INGESTERS_WITHIN;
            selected && visible
        })
        .map(|f| {
            key(
                &f.labels,
                f.ts,
                &Value::String(f.line.clone()),
                &serde_json::to_value(&f.metadata).unwrap(),
            )
        })
        .collect()
}

fn classify(
    case: &Value,
    decoded: &[Result<PushRequest, String>],
    checked: &[Vec<Checked>],
) -> Class {
    let group = case["group"].as_str().unwrap();
    if decoded.iter().any(Result::is_err) {
        return Class::Request;
    }
    match group {
        "limits" => {
            return Class::NotDecidable(
                "tenant rate and body-size limits: token-bucket state and request size, not a property of an entry".to_owned(),
            )
        }
        "streamlimits" => {
            return Class::NotDecidable(
                "per-stream rate and active-stream limits: token buckets and the streams pushed before, not a property of an entry".to_owned(),
            )
        }
        _ => {}
    }
    let body = case["response"]["body"].as_str().unwrap();
    let status = case["response"]["status"].as_u64().unwrap();
    if group == "auth"
        && (status == 401 || body.contains("org ID") || body.starts_with("tenant ID"))
    {
        return Class::NotDecidable(format!(
            "the tenant (X-Scope-OrgID) is refused before any entry is checked: {}",
            body.trim()
        ));
    }
    let stricter = checked.iter().flatten().any(
        |c| matches!(&c.verdict, Verdict::Refused(r) if r.reason == Discard::UnqueryableLabelName),
    );
    if stricter {
        return Class::Stricter;
    }
    Class::PerEntry
}

#[test]
fn the_pre_flight_agrees_with_the_recorded_loki_on_every_entry() {
    let dir = corpus();
    let limits = limits(&dir);
    let text = std::fs::read_to_string(dir.join("cases.jsonl")).unwrap();
    let cases: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        cases.len() >= 93,
        "only {} cases in the corpus",
        cases.len()
    );
    let mut report = Report {
        per_entry_cases: 0,
        entries_compared: 0,
        request_cases: Vec::new(),
        not_decidable: Vec::new(),
        stricter: Vec::new(),
    };
    let mut problems: Vec<String> = Vec::new();
    for case in &cases {
        let id = case["id"].as_str().unwrap();
        let recorded_at: i64 = case["recorded_at_ns"].as_str().unwrap().parse().unwrap();
        let exchanges: Vec<(&Value, &Value)> = case["setup"]
            .as_array()
            .map(|s| {
                s.iter()
                    .map(|x| (&x["request"], &x["response"]))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
            .into_iter()
            .chain([(&case["request"], &case["response"])])
            .collect();
        let decoded: Vec<Result<PushRequest, String>> =
            exchanges.iter().map(|(req, _)| decode(req)).collect();
        let mut newest = HashMap::new();
        let multi_tenant = case["group"] == "auth";
        let checked: Vec<Vec<Checked>> = decoded
            .iter()
            .zip(&exchanges)
            .map(|(d, (request, _))| match d {
                Ok(push) => {
                    let tenant = multi_tenant
                        .then(|| request["headers"]["X-Scope-OrgID"].as_str())
                        .flatten();
                    let mut checked = check_push(push, recorded_at, &mut newest, &limits);
                    for form in checked.iter_mut().filter_map(|c| c.form.as_mut()) {
                        form.tenant = tenant.map(str::to_owned);
                    }
                    checked
                }
                Err(_) => Vec::new(),
            })
            .collect();
        let class = classify(case, &decoded, &checked);
        let entries = checked.iter().map(Vec::len).sum::<usize>();
        let stored = case["stored"].as_object().map(|_| &case["stored"]);
        match class {
            Class::Request => {
                for ((_, response), d) in exchanges.iter().zip(&decoded) {
                    if let Err(text) = d {
                        let body = response["body"].as_str().unwrap().trim_end();
                        if body != text {
                            problems
                                .push(format!("{id}: decoding says {text:?}, Loki said {body:?}"));
                        }
                        if response["status"].as_u64() != Some(400)
                            && response["status"].as_u64() != Some(422)
                        {
                            problems.push(format!(
                                "{id}: Loki answered {} to an undecodable request",
                                response["status"]
                            ));
                        }
                    }
                }
                report.request_cases.push(id.to_owned());
            }
            Class::NotDecidable(why) => {
                // Safe direction only: what the pre-flight refuses, Loki did not store.
                if let Some(stored) = stored.filter(|s| s["query_error"].is_null()) {
                    let held = recorded_stored(stored);
                    let q = query(&stored["query"]);
                    let refused = keys(&checked, &q, recorded_at, |v| {
                        matches!(v, Verdict::Refused(_))
                    });
                    for k in refused.intersection(&held) {
                        problems.push(format!(
                            "{id}: the pre-flight refuses {k:?}, Loki stored it"
                        ));
                    }
                }
                report.not_decidable.push((id.to_owned(), why));
            }
            Class::Stricter => {
                let query_error = stored.map(|s| s["query_error"]["status"].as_u64());
                if case["response"]["status"].as_u64() != Some(204)
                    || query_error != Some(Some(500))
                {
                    problems.push(format!(
                        "{id}: the pre-flight refuses a label name Loki stores but cannot query; the recording no longer shows that (status {}, query error {query_error:?})",
                        case["response"]["status"]
                    ));
                }
                report.stricter.push(id.to_owned());
            }
            Class::PerEntry => {
                report.per_entry_cases += 1;
                report.entries_compared += entries;
                // Why: each request's answer.
                for ((_, response), c) in exchanges.iter().zip(&checked) {
                    let (status, texts) = expected_answer(c);
                    let got_status = response["status"].as_u64().unwrap();
                    let body = response["body"].as_str().unwrap();
                    if got_status != u64::from(status) {
                        problems.push(format!("{id}: the pre-flight expects {status}, Loki answered {got_status} {body:?}"));
                    }
                    for t in texts {
                        if !body.contains(&t) {
                            problems.push(format!(
                                "{id}: Loki's answer {body:?} lacks the pre-flight's reason {t:?}"
                            ));
                        }
                    }
                }
                // Whether: what Loki held afterwards.
                if let Some(stored) = stored {
                    if !stored["query_error"].is_null() {
                        problems.push(format!("{id}: Loki could not query back what it stored, and the pre-flight did not refuse it"));
                    } else {
                        let held = recorded_stored(stored);
                        let q = query(&stored["query"]);
                        let want =
                            keys(&checked, &q, recorded_at, |v| matches!(v, Verdict::Stored));
                        if held != want {
                            problems.push(format!(
                                "{id}: Loki held {:?}, the pre-flight expects {:?}",
                                held.difference(&want).collect::<Vec<_>>(),
                                want.difference(&held).collect::<Vec<_>>()
                            ));
                        }
                    }
                }
            }
        }
    }
    println!(
        "pre-flight vs recorded Loki: {} cases, {} compared entry by entry ({} entries), {} refused as requests (decoder text compared), {} deliberately stricter, {} not decidable per entry:",
        cases.len(),
        report.per_entry_cases,
        report.entries_compared,
        report.request_cases.len(),
        report.stricter.len(),
        report.not_decidable.len()
    );
    for (id, why) in &report.not_decidable {
        println!("  not decidable per entry: {id}: {why}");
    }
    for id in &report.stricter {
        println!("  stricter than Loki on purpose: {id}: Loki stores the label name but every query over the stream fails (500)");
    }
    println!("  refused as requests: {}", report.request_cases.join(", "));
    assert!(
        problems.is_empty(),
        "{} disagreements:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert_eq!(
        report.per_entry_cases
            + report.request_cases.len()
            + report.not_decidable.len()
            + report.stricter.len(),
        cases.len(),
        "every case is classified"
    );
}
