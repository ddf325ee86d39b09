//! The records a test sends and what Loki must show for them: `logs.json` or freshly generated
//! NDJSON, each input record with its normalised form (computed by the `schema` crate, never
//! re-implemented here), and the checks of what the receiver stored: exactly once, and field by
//! field.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schema::{LabelSet, LogRecord, RecordReader, Timestamp};
use serde_json::{Map, Value};
use testkit::gen::{Format, GenOptions, Generator};
use testkit::loki::StoredEntry;

use crate::error::{Error, Result};

/// The contract fields of a record (DESIGN.md, "Data contract"); every other field is kept
/// verbatim.
const CONTRACT_FIELDS: [&str; 4] = ["timestamp", "level", "service", "message"];

/// Fields the label policy copies to structured metadata (DESIGN.md, "Loki entry").
const METADATA_FIELDS: [&str; 3] = ["trace_id", "span_id", "request_id"];

/// The repository root (two levels above this package), canonical.
pub fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::canonicalize(&root).unwrap_or(root)
}

/// `logs.json` at the repository root.
pub fn logs_json() -> PathBuf {
    repo_root().join("logs.json")
}

/// One input record and what the pipeline must make of it.
#[derive(Debug, Clone)]
pub struct Expected {
    /// Position in the input (0-based).
    pub index: usize,
    /// The input record exactly as sent, parsed as JSON (an independent view of the extra
    /// fields, which must arrive verbatim).
    pub input: Map<String, Value>,
    /// The record after the schema's validation and normalisation.
    pub record: LogRecord<'static>,
    /// The canonical JSON of the normalised record: the Kafka value and the Loki line.
    pub line: String,
}

impl Expected {
    /// The stream labels DESIGN.md's default label policy gives this record, plus the
    /// `service_name` label Loki 3 (and the receiver) adds from `service`.
    pub fn labels(&self, environment: &str) -> LabelSet {
        LabelSet::from_pairs([
            ("environment", environment),
            ("level", self.record.level.as_str()),
            ("service", self.record.service.as_ref()),
            ("service_name", self.record.service.as_ref()),
            ("source", "kafka"),
        ])
    }
}

/// Reads every record of a JSON array or NDJSON file; fails on any invalid record (fixtures of
/// these suites are all valid).
pub fn load(path: &Path) -> Result<Vec<Expected>> {
    let open =
        || std::fs::File::open(path).map_err(Error::io(format!("cannot open {}", path.display())));
    let mut reader = RecordReader::new(BufReader::new(open()?));
    let mut records = Vec::new();
    while let Some(item) = reader.next_record() {
        let read = item.map_err(|error| {
            Error::Invalid(format!("{}: invalid record: {error}", path.display()))
        })?;
        records.push(read.record.into_owned());
    }
    // The independent JSON view, in the same order.
    let text = std::fs::read_to_string(path)
        .map_err(Error::io(format!("cannot read {}", path.display())))?;
    let inputs: Vec<Value> = match text.trim_start().starts_with('[') {
        true => serde_json::from_str(&text)
            .map_err(|error| Error::Invalid(format!("{}: {error}", path.display())))?,
        false => text
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()
            .map_err(|error| Error::Invalid(format!("{}: {error}", path.display())))?,
    };
    pair(records, inputs)
}

/// The earliest and latest timestamps of `expected` (`None` when empty): where to look for
/// them in Loki ([`crate::pipeline::PipelineOptions::records_between`]).
pub fn span(expected: &[Expected]) -> Option<(Timestamp, Timestamp)> {
    let first = expected.iter().map(|x| x.record.timestamp).min()?;
    let last = expected.iter().map(|x| x.record.timestamp).max()?;
    Some((first, last))
}

/// The expectations of NDJSON `lines`.
pub fn from_lines(lines: &[String]) -> Result<Vec<Expected>> {
    let mut records = Vec::with_capacity(lines.len());
    let mut inputs = Vec::with_capacity(lines.len());
    for line in lines {
        let record = schema::parse_record(line)
            .map_err(|error| Error::Invalid(format!("invalid record {line}: {error}")))?;
        records.push(record.into_owned());
        inputs.push(
            serde_json::from_str(line)
                .map_err(|error| Error::Invalid(format!("{line}: {error}")))?,
        );
    }
    pair(records, inputs)
}

fn pair(records: Vec<LogRecord<'static>>, inputs: Vec<Value>) -> Result<Vec<Expected>> {
    if records.len() != inputs.len() {
        return Err(Error::Invalid(format!(
            "{} records validated but {} JSON values parsed",
            records.len(),
            inputs.len()
        )));
    }
    records
        .into_iter()
        .zip(inputs)
        .enumerate()
        .map(|(index, (record, input))| {
            let Value::Object(input) = input else {
                return Err(Error::Invalid(format!("record {index} is not an object")));
            };
            let line = record.to_json();
            Ok(Expected {
                index,
                input,
                record,
                line,
            })
        })
        .collect()
}

/// `n` generated NDJSON records (without newlines) whose timestamps spread over the `span`
/// ending now, so Loki's age limits accept them; deterministic for a seed apart from the clock.
pub fn fresh_lines(n: u64, seed: u64, span: Duration) -> Result<Vec<String>> {
    let start = Timestamp::from_nanos(Timestamp::now().as_nanos() - span.as_nanos() as i64)
        .map_err(|error| Error::Invalid(format!("start timestamp: {error}")))?;
    let options = GenOptions {
        records: n,
        seed,
        format: Format::Ndjson,
        start,
        span,
    };
    let mut generator =
        Generator::new(&options).map_err(|error| Error::Invalid(format!("generator: {error}")))?;
    let mut lines = Vec::with_capacity(n as usize);
    let mut buffer = Vec::with_capacity(1024);
    loop {
        buffer.clear();
        let more = generator
            .write_next(&mut buffer)
            .map_err(|error| Error::Invalid(format!("generator: {error}")))?;
        if !more {
            break;
        }
        lines.push(
            String::from_utf8(buffer.clone())
                .map_err(|error| Error::Invalid(format!("generator output: {error}")))?,
        );
    }
    Ok(lines)
}

/// Checks that the receiver's `stored` entries are exactly the `expected` lines, each once:
/// returns a description of what is missing, duplicated or unexpected, or `Ok` with the count.
pub fn exactly_once(expected: &[Expected], stored: &[StoredEntry]) -> Result<usize, String> {
    let mut want: HashMap<&str, usize> = HashMap::new();
    for x in expected {
        *want.entry(x.line.as_str()).or_default() += 1;
    }
    let repeated_input = want.values().filter(|n| **n > 1).count();
    if repeated_input > 0 {
        return Err(format!(
            "the test's input repeats {repeated_input} lines: exactly-once cannot be checked"
        ));
    }
    let mut got: HashMap<&str, usize> = HashMap::new();
    for entry in stored {
        *got.entry(entry.line.as_str()).or_default() += 1;
    }
    let missing: Vec<&str> = want
        .keys()
        .filter(|line| !got.contains_key(*line))
        .copied()
        .collect();
    let duplicated: Vec<(&str, usize)> = got
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(line, n)| (*line, *n))
        .collect();
    let unexpected: Vec<&str> = got
        .keys()
        .filter(|line| !want.contains_key(*line))
        .copied()
        .collect();
    if missing.is_empty() && duplicated.is_empty() && unexpected.is_empty() {
        return Ok(stored.len());
    }
    Err(format!(
        "{} expected, {} stored: {} missing (first: {:?}), {} stored more than once (first: \
         {:?}), {} never sent (first: {:?})",
        expected.len(),
        stored.len(),
        missing.len(),
        missing.first(),
        duplicated.len(),
        duplicated.first(),
        unexpected.len(),
        unexpected.first()
    ))
}

/// Compares every expected record with the entry the receiver stored for it, field by field:
/// stream labels (label policy), timestamp (ns), structured metadata, the line's bytes (the
/// canonical JSON) and, parsed, its contract fields (normalised by the schema) and every other
/// field (verbatim from the input). Entries are matched to records by service label and
/// timestamp, so a mismatch shows as a difference rather than as a missing line. Returns one
/// description per problem (empty when all match).
pub fn field_by_field(
    expected: &[Expected],
    stored: &[StoredEntry],
    environment: &str,
) -> Vec<String> {
    let mut by_key: BTreeMap<(String, i64), Vec<&StoredEntry>> = BTreeMap::new();
    for entry in stored {
        let service = entry.labels.get("service").unwrap_or_default().to_owned();
        by_key
            .entry((service, entry.timestamp))
            .or_default()
            .push(entry);
    }
    let mut problems = Vec::new();
    for x in expected {
        let key = (x.record.service.to_string(), x.record.timestamp.as_nanos());
        match by_key.remove(&key).as_deref() {
            None => problems.push(format!(
                "record {} ({} at {}) has no entry of that service and timestamp (ns {})",
                x.index,
                x.record.service,
                x.record.timestamp.to_rfc3339(),
                key.1
            )),
            Some([entry]) => compare(x, entry, environment, &mut problems),
            Some(entries) => problems.push(format!(
                "record {} ({} at {}) is stored {} times: {:?}",
                x.index,
                x.record.service,
                x.record.timestamp.to_rfc3339(),
                entries.len(),
                entries.iter().map(|e| &e.line).collect::<Vec<_>>()
            )),
        }
    }
    for ((service, ts), entries) in by_key {
        for entry in entries {
            problems.push(format!(
                "entry of {service} at ns {ts} matches no input record: {} {}",
                entry.labels, entry.line
            ));
        }
    }
    problems
}

fn compare(x: &Expected, entry: &StoredEntry, environment: &str, problems: &mut Vec<String>) {
    let at = format!("record {} ({})", x.index, x.record.service);
    let want_labels = x.labels(environment);
    if entry.labels != want_labels {
        problems.push(format!(
            "{at}: labels {} , want {want_labels}",
            entry.labels
        ));
    }
    let mut metadata = entry.metadata.clone();
    metadata.sort();
    let mut want_metadata: Vec<(String, String)> = METADATA_FIELDS
        .iter()
        .filter_map(|name| {
            x.input
                .get(*name)
                .and_then(Value::as_str)
                .map(|value| ((*name).to_owned(), value.to_owned()))
        })
        .collect();
    want_metadata.sort();
    if metadata != want_metadata {
        problems.push(format!(
            "{at}: structured metadata {metadata:?}, want {want_metadata:?}"
        ));
    }
    if entry.line != x.line {
        problems.push(format!(
            "{at}: line is not the canonical JSON\n  got  {}\n  want {}",
            entry.line, x.line
        ));
    }
    let line: Map<String, Value> = match serde_json::from_str(&entry.line) {
        Ok(Value::Object(object)) => object,
        _ => {
            problems.push(format!("{at}: line is not a JSON object: {}", entry.line));
            return;
        }
    };
    let contract = [
        ("timestamp", Value::from(x.record.timestamp.to_rfc3339())),
        ("level", Value::from(x.record.level.as_str())),
        (
            "service",
            x.input.get("service").cloned().unwrap_or_default(),
        ),
        (
            "message",
            x.input.get("message").cloned().unwrap_or_default(),
        ),
    ];
    for (name, want) in contract {
        if line.get(name) != Some(&want) {
            problems.push(format!("{at}: {name} is {:?}, want {want}", line.get(name)));
        }
    }
    let got_keys: BTreeSet<&str> = line.keys().map(String::as_str).collect();
    let want_keys: BTreeSet<&str> = x.input.keys().map(String::as_str).collect();
    if got_keys != want_keys {
        problems.push(format!("{at}: fields {got_keys:?}, want {want_keys:?}"));
    }
    for (name, want) in &x.input {
        if CONTRACT_FIELDS.contains(&name.as_str()) {
            continue;
        }
        if let Some(got) = line.get(name) {
            if got != want {
                problems.push(format!("{at}: field {name} is {got}, want {want}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(labels: LabelSet, ts: i64, line: &str, metadata: &[(&str, &str)]) -> StoredEntry {
        StoredEntry {
            labels,
            timestamp: ts,
            line: line.to_owned(),
            metadata: metadata
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn one() -> Expected {
        let line = r#"{"timestamp":"2026-01-02T03:04:05.5+01:00","level":"WARNING","service":"api","message":"m","trace_id":"t1","http":{"status":500}}"#;
        from_lines(&[line.to_owned()]).expect("valid").remove(0)
    }

    fn stored_as_expected(x: &Expected) -> StoredEntry {
        entry(
            x.labels("e2e"),
            x.record.timestamp.as_nanos(),
            &x.line,
            &[("trace_id", "t1")],
        )
    }

    #[test]
    fn a_faithful_entry_passes_every_check() {
        let x = one();
        assert_eq!(x.record.level.as_str(), "warn");
        let problems = field_by_field(std::slice::from_ref(&x), &[stored_as_expected(&x)], "e2e");
        assert!(problems.is_empty(), "{problems:#?}");
        assert_eq!(
            exactly_once(std::slice::from_ref(&x), &[stored_as_expected(&x)]),
            Ok(1)
        );
    }

    #[test]
    fn a_changed_extra_field_a_wrong_label_and_lost_metadata_are_each_reported() {
        let x = one();
        let mut stored = stored_as_expected(&x);
        stored.line = stored.line.replace("500", "501");
        stored.labels.insert("level", "info");
        stored.metadata.clear();
        let problems = field_by_field(std::slice::from_ref(&x), &[stored], "e2e");
        let text = problems.join("\n");
        assert!(text.contains("field http"), "{text}");
        assert!(text.contains("labels"), "{text}");
        assert!(text.contains("structured metadata"), "{text}");
        assert!(text.contains("canonical"), "{text}");
    }

    #[test]
    fn missing_and_unexpected_entries_are_reported() {
        let x = one();
        let mut other = stored_as_expected(&x);
        other.timestamp += 1;
        let problems = field_by_field(std::slice::from_ref(&x), &[other.clone()], "e2e");
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert!(exactly_once(std::slice::from_ref(&x), &[]).is_err());
        let mut twice = other.clone();
        twice.labels.insert("level", "x");
        assert!(exactly_once(std::slice::from_ref(&x), &[other, twice]).is_err());
    }

    #[test]
    fn fresh_lines_are_valid_distinct_and_recent() {
        let lines = fresh_lines(200, 7, Duration::from_secs(60)).expect("generated");
        let expected = from_lines(&lines).expect("valid");
        let distinct: BTreeSet<&str> = expected.iter().map(|x| x.line.as_str()).collect();
        assert_eq!(distinct.len(), 200);
        let now = Timestamp::now().as_nanos();
        assert!(expected.iter().all(|x| x.record.timestamp.as_nanos() <= now
            && x.record.timestamp.as_nanos() > now - 120_000_000_000));
    }
}
