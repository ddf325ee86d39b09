//! The `detected_level` Loki 3 adds to the structured metadata of every entry (its distributor's
//! field detection, `discover_log_levels`, on by default): from a `detected_level` the client
//! sent (normalised), else a level label of the stream, else a level field of the metadata, else
//! the line (a JSON or logfmt `level` field, or a level word in the text), else `unknown`.
//! Recorded: `sm-level-detection`, `json-basic` in `loki-conformance/`.

use schema::loki::metadata::DETECTED_LEVEL;
use schema::loki::proto::LabelPairAdapter;

/// Names a level is read from (Loki's `log_level_fields` default), in order.
const LEVEL_FIELDS: [&str; 14] = [
    "level",
    "LEVEL",
    "Level",
    "log.level",
    "severity",
    "SEVERITY",
    "Severity",
    "SeverityText",
    "lvl",
    "LVL",
    "Lvl",
    "severity_text",
    "Severity_Text",
    "SEVERITY_TEXT",
];

/// How deep into a JSON line a level field is looked for (Loki's default 2).
const JSON_MAX_DEPTH: usize = 2;

/// The level Loki records for an entry: `Some(level)` to append as `detected_level`, `None` when
/// the metadata already has one (normalised in place).
pub(crate) fn detect(
    stream: &[(String, String)],
    metadata: &mut [LabelPairAdapter],
    line: &str,
) -> Option<String> {
    if let Some(existing) = metadata.iter_mut().find(|p| p.name == DETECTED_LEVEL) {
        existing.value = normalize(&existing.value);
        return None;
    }
    if let Some(v) = first_field(stream.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        return Some(normalize(v));
    }
    if let Some(v) = first_field(metadata.iter().map(|p| (p.name.as_str(), p.value.as_str()))) {
        return Some(normalize(v));
    }
    Some(from_line(line))
}

/// The value of the first of [`LEVEL_FIELDS`] present.
fn first_field<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> Option<&'a str> {
    LEVEL_FIELDS
        .iter()
        .find_map(|f| pairs.clone().find(|(k, _)| k == f).map(|(_, v)| v))
}

/// A level word in Loki's lower-case form; anything else as it is.
fn normalize(level: &str) -> String {
    match known(level) {
        Some(l) => l.to_owned(),
        None => level.to_owned(),
    }
}

fn known(v: &str) -> Option<&'static str> {
    let v = v.to_ascii_lowercase();
    Some(match v.as_str() {
        "trace" | "trc" => "trace",
        "debug" | "dbg" => "debug",
        "info" | "inf" | "information" => "info",
        "warn" | "wrn" | "warning" => "warn",
        "error" | "err" => "error",
        "critical" => "critical",
        "fatal" => "fatal",
        _ => return None,
    })
}

fn from_line(line: &str) -> String {
    let field = if is_json(line) {
        json_level(line)
    } else if line.contains('=') {
        logfmt_level(line)
    } else {
        return word_level(line).to_owned();
    };
    match field.as_deref().and_then(known) {
        Some(l) => l.to_owned(),
        None => word_level(line).to_owned(),
    }
}

fn is_json(line: &str) -> bool {
    let first = line.chars().find(|c| !c.is_whitespace());
    // Loki looks at the last byte as a character.
    let last = line
        .bytes()
        .rev()
        .map(char::from)
        .find(|c| !c.is_whitespace());
    first == Some('{') && last == Some('}')
}

/// The first level field of a JSON object, searched `JSON_MAX_DEPTH` levels deep.
fn json_level(line: &str) -> Option<String> {
    fn search(v: &serde_json::Map<String, serde_json::Value>, depth: usize) -> Option<String> {
        if depth >= JSON_MAX_DEPTH {
            return None;
        }
        for (k, value) in v {
            match value {
                serde_json::Value::String(s) if LEVEL_FIELDS.contains(&k.as_str()) => {
                    return Some(s.clone())
                }
                serde_json::Value::Object(inner) => {
                    if let Some(found) = search(inner, depth + 1) {
                        return Some(found);
                    }
                }
                _ => {}
            }
        }
        None
    }
    // serde_json's map keeps keys sorted, not in line order; level fields rarely repeat, so the
    // difference from Loki's first-in-line rule does not show.
    let parsed: serde_json::Value = serde_json::from_str(line).ok()?;
    search(parsed.as_object()?, 0)
}

/// The value of the best-ranked level key of a logfmt line (keys compared case-insensitively).
fn logfmt_level(line: &str) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    for (key, value) in logfmt_pairs(line) {
        if let Some(rank) = LEVEL_FIELDS
            .iter()
            .position(|f| f.eq_ignore_ascii_case(&key))
        {
            if best.as_ref().is_none_or(|(r, _)| rank < *r) {
                if rank == 0 {
                    return Some(value);
                }
                best = Some((rank, value));
            }
        }
    }
    best.map(|(_, v)| v)
}

/// `key=value` pairs of a logfmt line (values may be double-quoted).
fn logfmt_pairs(line: &str) -> Vec<(String, String)> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i] <= b' ' {
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i] > b' ' && b[i] != b'=' && b[i] != b'"' {
            i += 1;
        }
        let key = &line[start..i];
        if i < b.len() && b[i] == b'=' {
            i += 1;
            let value = if i < b.len() && b[i] == b'"' {
                i += 1;
                let vstart = i;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                let v = line.get(vstart..i.min(b.len())).unwrap_or_default();
                i += 1;
                v
            } else {
                let vstart = i;
                while i < b.len() && b[i] > b' ' {
                    i += 1;
                }
                &line[vstart..i]
            };
            if !key.is_empty() {
                out.push((key.to_owned(), value.to_owned()));
            }
        } else if i == start {
            i += 1;
        }
    }
    out
}

/// A level word standing on its own in the line (Loki looks at the first occurrence of each
/// word only), else `unknown`.
fn word_level(line: &str) -> &'static str {
    const WORDS: [(&str, &str); 9] = [
        ("trace", "trace"),
        ("debug", "debug"),
        ("fatal", "fatal"),
        ("critical", "critical"),
        ("error", "error"),
        ("err", "error"),
        ("warning", "warn"),
        ("warn", "warn"),
        ("info", "info"),
    ];
    let lower = line.to_lowercase();
    for (word, level) in WORDS {
        if let Some(pos) = lower.find(word) {
            if boundary(&lower, pos.checked_sub(1)) && boundary(&lower, Some(pos + word.len())) {
                return level;
            }
        }
    }
    "unknown"
}

/// Loki's word boundary: outside the text, or a byte that (as a character) is not a letter, a
/// digit or `_`.
fn boundary(s: &str, pos: Option<usize>) -> bool {
    match pos.and_then(|p| s.as_bytes().get(p)) {
        None => true,
        Some(&b) => {
            let c = char::from(b);
            !c.is_alphabetic() && !c.is_numeric() && c != '_'
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(line: &str, metadata: &[(&str, &str)], stream: &[(&str, &str)]) -> Option<String> {
        let stream: Vec<(String, String)> = stream
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut metadata: Vec<LabelPairAdapter> = metadata
            .iter()
            .map(|(name, value)| LabelPairAdapter {
                name: (*name).to_owned(),
                value: (*value).to_owned(),
            })
            .collect();
        detect(&stream, &mut metadata, line)
    }

    #[test]
    fn detects_levels_as_the_recorded_loki() {
        // sm-level-detection and json-basic
        assert_eq!(
            level("plain text", &[("level", "WARN")], &[]).unwrap(),
            "warn"
        );
        assert_eq!(
            level(r#"{"level":"debug","msg":"json"}"#, &[], &[]).unwrap(),
            "debug"
        );
        assert_eq!(
            level("ts=1 level=info msg=logfmt", &[], &[]).unwrap(),
            "info"
        );
        assert_eq!(
            level("2026-01-01 ERROR something", &[], &[]).unwrap(),
            "error"
        );
        assert_eq!(level("nothing to see", &[], &[]).unwrap(), "unknown");
        assert_eq!(
            level("level=error something broke", &[], &[]).unwrap(),
            "error"
        );
        assert_eq!(
            level("plain line without level", &[], &[]).unwrap(),
            "unknown"
        );
        assert_eq!(level("x", &[("detected_level", "custom")], &[]), None);
    }

    #[test]
    fn a_level_label_wins_over_the_line() {
        assert_eq!(
            level(r#"{"level":"debug"}"#, &[], &[("level", "Error")]).unwrap(),
            "error"
        );
        assert_eq!(level("x", &[], &[("level", "notice")]).unwrap(), "notice");
    }

    #[test]
    fn level_words_need_boundaries() {
        assert_eq!(level("terrorist", &[], &[]).unwrap(), "unknown");
        assert_eq!(level("an err: oops", &[], &[]).unwrap(), "error");
        assert_eq!(level("Information", &[], &[]).unwrap(), "unknown");
        assert_eq!(level("[INFO] started", &[], &[]).unwrap(), "info");
    }
}
