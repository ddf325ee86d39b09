//! The label policy: which record fields become Loki stream labels, which go to structured
//! metadata, and how names and values are made to fit Loki's label grammar and limits
//! (LOKI.md: names `[a-zA-Z_][a-zA-Z0-9_]*` up to 1024 bytes, values up to 2048 bytes, at most
//! 15 labels).
//!
//! Only low-cardinality fields may be labels; identifiers such as `trace_id` belong in
//! structured metadata, where they are searchable without creating a stream each.

use std::fmt;

use thiserror::Error;

use crate::record::LogRecord;

/// Loki's default maximum number of labels per stream.
pub const MAX_LABELS: usize = 15;
/// Loki's default maximum label name length in bytes.
pub const MAX_LABEL_NAME_LEN: usize = 1024;
/// Loki's default maximum label value length in bytes.
pub const MAX_LABEL_VALUE_LEN: usize = 2048;

/// A stream's labels: unique names, sorted by name. Rendered as Loki's selector string
/// `{a="1", b="2"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct LabelSet(Vec<(String, String)>);

/// A label string that does not parse as `{name="value", …}`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{detail} at byte {at}")]
pub struct LabelParseError {
    /// What was expected.
    pub detail: &'static str,
    /// Byte offset in the label string.
    pub at: usize,
}

impl LabelSet {
    /// Builds a set from pairs; sorts by name, the last value of a repeated name wins.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut v: Vec<(String, String)> = Vec::new();
        for (k, val) in pairs {
            let k = k.into();
            let val = val.into();
            match v.iter_mut().find(|(n, _)| *n == k) {
                Some(slot) => slot.1 = val,
                None => v.push((k, val)),
            }
        }
        v.sort_by(|a, b| a.0.cmp(&b.0));
        Self(v)
    }

    /// The pairs, sorted by name.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// A label's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sets a label, keeping the order.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.0.binary_search_by(|(n, _)| n.as_str().cmp(&name)) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (name, value)),
        }
    }

    /// Parses Loki's selector form `{name="value", …}` (Go string escapes in values).
    pub fn parse(s: &str) -> Result<Self, LabelParseError> {
        let b = s.as_bytes();
        let mut i = skip_spaces(b, 0);
        let err = |detail, at| Err(LabelParseError { detail, at });
        if b.get(i) != Some(&b'{') {
            return err("expected `{`", i);
        }
        i = skip_spaces(b, i + 1);
        let mut pairs: Vec<(String, String)> = Vec::new();
        if b.get(i) == Some(&b'}') {
            return if skip_spaces(b, i + 1) == b.len() {
                Ok(Self(pairs))
            } else {
                err("unexpected data after `}`", i + 1)
            };
        }
        loop {
            let start = i;
            let name: String = if b.get(i) == Some(&b'"') {
                let (name, next) = unquote(s, i + 1)?;
                i = next;
                name
            } else {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                s[start..i].to_owned()
            };
            if i == start {
                return err("expected a label name", i);
            }
            i = skip_spaces(b, i);
            if b.get(i) != Some(&b'=') {
                return err("expected `=`", i);
            }
            i = skip_spaces(b, i + 1);
            if b.get(i) != Some(&b'"') {
                return err("expected `\"`", i);
            }
            let (value, next) = unquote(s, i + 1)?;
            if pairs.iter().any(|(n, _)| *n == name) {
                return err("duplicate label name", start);
            }
            pairs.push((name, value));
            i = skip_spaces(b, next);
            match b.get(i) {
                Some(b',') => i = skip_spaces(b, i + 1),
                Some(b'}') => {
                    if skip_spaces(b, i + 1) != b.len() {
                        return err("unexpected data after `}`", i + 1);
                    }
                    break;
                }
                _ => return err("expected `,` or `}`", i),
            }
        }
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Self(pairs))
    }

    /// Appends the selector form to `out`. Whatever the names and values hold, Loki parses the
    /// text back to exactly this set (no label can be injected): values are quoted with Go's
    /// escapes (`U+FFFD` too, which Loki's parser refuses raw), and a name outside
    /// `[a-zA-Z_][a-zA-Z0-9_]*` is quoted as well (`{"a.b"="c"}`, which Loki accepts).
    pub fn write_to(&self, out: &mut String) {
        out.push('{');
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            if is_valid_label_name(k) {
                out.push_str(k);
            } else {
                write_quoted(out, k);
            }
            out.push('=');
            write_quoted(out, v);
        }
        out.push('}');
    }
}

impl fmt::Display for LabelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        self.write_to(&mut s);
        f.write_str(&s)
    }
}

/// Appends `s` in double quotes with the escapes Loki's (Prometheus') parser reads back.
fn write_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            '\u{fffd}' => out.push_str("\\ufffd"),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn skip_spaces(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Reads a Go-quoted string body starting after the opening quote; returns the value and the
/// index after the closing quote.
fn unquote(s: &str, start: usize) -> Result<(String, usize), LabelParseError> {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut i = start;
    let mut run = start;
    while i < b.len() {
        match b[i] {
            b'"' => {
                out.push_str(&s[run..i]);
                return Ok((out, i + 1));
            }
            b'\\' => {
                out.push_str(&s[run..i]);
                let esc = b.get(i + 1).copied();
                let (ch, len) = match esc {
                    Some(b'"') => ('"', 2),
                    Some(b'\\') => ('\\', 2),
                    Some(b'n') => ('\n', 2),
                    Some(b'r') => ('\r', 2),
                    Some(b't') => ('\t', 2),
                    Some(b'x') => {
                        let hex = s
                            .get(i + 2..i + 4)
                            .and_then(|h| u8::from_str_radix(h, 16).ok());
                        match hex {
                            Some(v) if v < 0x80 => (char::from(v), 4),
                            _ => {
                                return Err(LabelParseError {
                                    detail: "bad \\x escape",
                                    at: i,
                                })
                            }
                        }
                    }
                    Some(b'u') => {
                        let cp = s
                            .get(i + 2..i + 6)
                            .and_then(|h| u32::from_str_radix(h, 16).ok())
                            .and_then(char::from_u32);
                        match cp {
                            Some(c) => (c, 6),
                            None => {
                                return Err(LabelParseError {
                                    detail: "bad \\u escape",
                                    at: i,
                                })
                            }
                        }
                    }
                    _ => {
                        return Err(LabelParseError {
                            detail: "unknown escape",
                            at: i,
                        })
                    }
                };
                out.push(ch);
                i += len;
                run = i;
            }
            b'\n' => {
                return Err(LabelParseError {
                    detail: "newline in label value",
                    at: i,
                })
            }
            _ => i += 1,
        }
    }
    Err(LabelParseError {
        detail: "unterminated label value",
        at: b.len(),
    })
}

/// True when `name` matches Loki's label name grammar `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(c) if c.is_ascii_alphabetic() || c == b'_' => {}
        _ => return false,
    }
    bytes.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Makes any string a valid label name: invalid characters become `_`, a leading digit gets a
/// `_` prefix, and the result is cut to 1024 bytes.
pub fn sanitize_label_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
        out.push('_');
    }
    out.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    out.truncate(MAX_LABEL_NAME_LEN);
    out
}

/// Makes a value fit Loki's label value limit: control characters become spaces, `U+FFFD`
/// becomes `?` (a JSON push cannot carry it: Loki's own rendering of it does not parse), and it
/// is cut to 2048 bytes on a character boundary.
pub fn sanitize_label_value(value: &str) -> String {
    let mut end = value.len().min(MAX_LABEL_VALUE_LEN);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value[..end]
        .chars()
        .map(|c| match c {
            c if c.is_control() => ' ',
            '\u{fffd}' => '?',
            c => c,
        })
        .collect()
}

/// A label policy that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyError {
    /// More labels than Loki accepts.
    #[error("label policy has {0} labels, Loki accepts at most 15")]
    TooManyLabels(usize),
    /// A label name that is not valid.
    #[error("label name {0:?} is not valid (must match [a-zA-Z_][a-zA-Z0-9_]*)")]
    InvalidName(String),
    /// A field known to be high-cardinality was made a label.
    #[error(
        "field {0:?} is a per-request identifier and cannot be a label (use structured metadata)"
    )]
    HighCardinality(String),
}

/// Fields that are unique per request and must never be labels.
pub const HIGH_CARDINALITY_FIELDS: [&str; 5] =
    ["trace_id", "span_id", "request_id", "message", "timestamp"];

/// Which fields become labels and which become structured metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelPolicy {
    /// Record fields that become labels (default `service`, `level`). A field absent from a
    /// record (or empty) gives no label.
    pub record_labels: Vec<String>,
    /// Fixed labels on every stream (default `source="kafka"`, plus `environment` when set).
    /// A record label of the same name wins.
    pub static_labels: Vec<(String, String)>,
    /// Record fields copied to structured metadata (default `trace_id`, `span_id`,
    /// `request_id`).
    pub metadata_fields: Vec<String>,
}

impl Default for LabelPolicy {
    fn default() -> Self {
        Self {
            record_labels: vec!["service".into(), "level".into()],
            static_labels: vec![("source".into(), "kafka".into())],
            metadata_fields: vec!["trace_id".into(), "span_id".into(), "request_id".into()],
        }
    }
}

impl LabelPolicy {
    /// The default policy with an `environment` label.
    pub fn with_environment(environment: &str) -> Self {
        let mut p = Self::default();
        if !environment.is_empty() {
            p.static_labels
                .push(("environment".into(), sanitize_label_value(environment)));
        }
        p
    }

    /// Checks the policy against Loki's limits and the cardinality rule.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let mut names: Vec<&str> = self.record_labels.iter().map(String::as_str).collect();
        for (n, _) in &self.static_labels {
            if !names.contains(&n.as_str()) {
                names.push(n);
            }
        }
        if names.len() > MAX_LABELS {
            return Err(PolicyError::TooManyLabels(names.len()));
        }
        for n in &names {
            if !is_valid_label_name(n) || n.len() > MAX_LABEL_NAME_LEN {
                return Err(PolicyError::InvalidName((*n).to_owned()));
            }
        }
        for n in &self.record_labels {
            if HIGH_CARDINALITY_FIELDS.contains(&n.as_str()) {
                return Err(PolicyError::HighCardinality(n.clone()));
            }
        }
        Ok(())
    }

    /// The stream labels of a record.
    pub fn labels_for(&self, record: &LogRecord<'_>) -> LabelSet {
        let mut set = LabelSet(Vec::with_capacity(
            self.record_labels.len() + self.static_labels.len(),
        ));
        for (k, v) in &self.static_labels {
            set.insert(k.as_str(), v.as_str());
        }
        for name in &self.record_labels {
            let value = match name.as_str() {
                "service" => Some(std::borrow::Cow::Borrowed(record.service.as_ref())),
                "level" => Some(std::borrow::Cow::Borrowed(record.level.as_str())),
                other => record.field_str(other),
            };
            if let Some(v) = value {
                if !v.is_empty() {
                    set.insert(sanitize_label_name(name), sanitize_label_value(&v));
                }
            }
        }
        set
    }

    /// The structured metadata of a record: each configured field present, as a string.
    pub fn metadata_for(&self, record: &LogRecord<'_>) -> Vec<(String, String)> {
        self.metadata_fields
            .iter()
            .filter_map(|name| {
                record.field_str(name).map(|v| {
                    // Configured names are almost always valid already: copy, don't rebuild.
                    let name = if is_valid_label_name(name) {
                        name.clone()
                    } else {
                        sanitize_label_name(name)
                    };
                    (name, v.into_owned())
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::parse_record;

    #[test]
    fn renders_sorted_selector_with_escapes() {
        let s = LabelSet::from_pairs([("service", "a\"b"), ("level", "info")]);
        assert_eq!(s.to_string(), r#"{level="info", service="a\"b"}"#);
    }

    #[test]
    fn parses_what_it_renders() {
        let s = LabelSet::from_pairs([("a", "x\\y\n\"z\" é"), ("b", "")]);
        assert_eq!(LabelSet::parse(&s.to_string()).unwrap(), s);
    }

    #[test]
    fn parses_loose_spacing_and_empty_sets() {
        let s = LabelSet::parse(r#" { b = "2",a="1" } "#).unwrap();
        assert_eq!(s.get("a"), Some("1"));
        assert_eq!(s.pairs()[0].0, "a");
        assert!(LabelSet::parse("{}").unwrap().is_empty());
    }

    #[test]
    fn rejects_malformed_label_strings() {
        for bad in [
            "",
            "a=\"1\"",
            "{a=1}",
            "{a=\"1\"",
            "{a=\"1\" b=\"2\"}",
            "{=\"1\"}",
            "{a=\"1\",a=\"2\"}",
            "{a=\"\\q\"}",
            "{a=\"1\"} x",
        ] {
            assert!(LabelSet::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validates_label_names() {
        assert!(is_valid_label_name("service_name"));
        assert!(is_valid_label_name("_x1"));
        assert!(!is_valid_label_name("1x"));
        assert!(!is_valid_label_name("a-b"));
        assert!(!is_valid_label_name(""));
    }

    #[test]
    fn sanitises_names_and_values() {
        assert_eq!(sanitize_label_name("http.status-code"), "http_status_code");
        assert_eq!(sanitize_label_name("5xx"), "_5xx");
        assert_eq!(sanitize_label_name(""), "_");
        let long = "é".repeat(2000);
        let v = sanitize_label_value(&long);
        assert!(v.len() <= MAX_LABEL_VALUE_LEN);
        assert_eq!(v.len(), 2048);
        assert_eq!(sanitize_label_value("a\nb"), "a b");
    }

    #[test]
    fn default_policy_labels_service_level_source_and_environment() {
        let r = parse_record(
            r#"{"timestamp":1,"level":"ERROR","service":"api","message":"m","trace_id":"t1","host":"h"}"#,
        )
        .unwrap();
        let p = LabelPolicy::with_environment("staging");
        assert_eq!(
            p.labels_for(&r).to_string(),
            r#"{environment="staging", level="error", service="api", source="kafka"}"#
        );
        assert_eq!(p.metadata_for(&r), vec![("trace_id".into(), "t1".into())]);
    }

    #[test]
    fn record_labels_override_static_ones_and_absent_fields_give_none() {
        let r = parse_record(
            r#"{"timestamp":1,"level":"info","service":"api","message":"m","environment":"prod"}"#,
        )
        .unwrap();
        let mut p = LabelPolicy::with_environment("dev");
        p.record_labels.push("environment".into());
        p.record_labels.push("region".into());
        let l = p.labels_for(&r);
        assert_eq!(l.get("environment"), Some("prod"));
        assert_eq!(l.get("region"), None);
    }

    #[test]
    fn policy_refuses_high_cardinality_and_too_many_labels() {
        let mut p = LabelPolicy::default();
        p.record_labels.push("trace_id".into());
        assert_eq!(
            p.validate(),
            Err(PolicyError::HighCardinality("trace_id".into()))
        );
        let p = LabelPolicy {
            record_labels: (0..16).map(|i| format!("f{i}")).collect(),
            ..LabelPolicy::default()
        };
        assert!(matches!(p.validate(), Err(PolicyError::TooManyLabels(_))));
        assert!(LabelPolicy::default().validate().is_ok());
    }
}
