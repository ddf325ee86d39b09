//! The log record of DESIGN.md's data contract: [`LogRecord`], its [`Level`], and its canonical
//! compact JSON form (what travels as the Kafka value and becomes the Loki line).
//!
//! A record borrows from the buffer it was parsed from wherever the input needs no unescaping,
//! so the hot path (read → validate → serialise) allocates only for the list of extra fields.

use std::borrow::Cow;
use std::fmt;

use serde_json::value::RawValue;
use thiserror::Error;

use crate::timestamp::Timestamp;

/// Maximum length of `service`, in bytes.
pub const MAX_SERVICE_LEN: usize = 128;

/// Severity of a record, normalised from the aliases DESIGN.md accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// `trace`
    Trace,
    /// `debug`
    Debug,
    /// `info`
    Info,
    /// `warn` (also accepts `warning`)
    Warn,
    /// `error`
    Error,
    /// `fatal` (also accepts `critical`)
    Fatal,
}

impl Level {
    /// Every level, lowest first (for pre-initialising metric series).
    pub const ALL: [Level; 6] = [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Warn,
        Level::Error,
        Level::Fatal,
    ];

    /// Parses a level case-insensitively, mapping `warning` → `warn` and `critical` → `fatal`.
    pub fn parse(s: &str) -> Option<Level> {
        // Longest accepted spelling is "critical" (8 bytes): lower-case into a stack buffer.
        let b = s.as_bytes();
        if b.len() > 8 {
            return None;
        }
        let mut buf = [0u8; 8];
        for (d, c) in buf.iter_mut().zip(b) {
            *d = c.to_ascii_lowercase();
        }
        Some(match &buf[..b.len()] {
            b"trace" => Level::Trace,
            b"debug" => Level::Debug,
            b"info" => Level::Info,
            b"warn" | b"warning" => Level::Warn,
            b"error" => Level::Error,
            b"fatal" | b"critical" => Level::Fatal,
            _ => return None,
        })
    }

    /// The level's position in [`Level::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The normalised lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Fatal => "fatal",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated, normalised log record.
///
/// The four contract fields are typed; every other field is kept verbatim (as compact JSON) in
/// input order, so nested objects, numbers and ids pass through unchanged.
#[derive(Debug, Clone)]
pub struct LogRecord<'a> {
    /// When the event happened (the record's own time, not the time it was read).
    pub timestamp: Timestamp,
    /// Normalised severity.
    pub level: Level,
    /// Emitting service: non-empty, at most [`MAX_SERVICE_LEN`] bytes.
    pub service: Cow<'a, str>,
    /// The log message (may be empty).
    pub message: Cow<'a, str>,
    /// All other fields, in input order, values as compact JSON.
    pub fields: Vec<(Cow<'a, str>, Cow<'a, RawValue>)>,
}

impl PartialEq for LogRecord<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.timestamp == other.timestamp
            && self.level == other.level
            && self.service == other.service
            && self.message == other.message
            && self.fields.len() == other.fields.len()
            && self
                .fields
                .iter()
                .zip(&other.fields)
                .all(|((ka, va), (kb, vb))| ka == kb && va.get() == vb.get())
    }
}

impl<'a> LogRecord<'a> {
    /// An extra field's raw JSON value, by name.
    pub fn field(&self, name: &str) -> Option<&RawValue> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_ref())
    }

    /// An extra field as a string: a JSON string's content, or the compact JSON text of any other
    /// value. `None` when absent or `null`.
    pub fn field_str(&self, name: &str) -> Option<Cow<'_, str>> {
        let raw = self.field(name)?.get();
        if raw == "null" {
            return None;
        }
        if raw.starts_with('"') {
            // Fast path: no escapes means the content is the raw text without quotes.
            let inner = &raw[1..raw.len() - 1];
            if !inner.contains('\\') {
                return Some(Cow::Borrowed(inner));
            }
            return serde_json::from_str::<String>(raw).ok().map(Cow::Owned);
        }
        Some(Cow::Borrowed(raw))
    }

    /// Detaches the record from the buffer it was parsed from.
    pub fn into_owned(self) -> LogRecord<'static> {
        LogRecord {
            timestamp: self.timestamp,
            level: self.level,
            service: Cow::Owned(self.service.into_owned()),
            message: Cow::Owned(self.message.into_owned()),
            fields: self
                .fields
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into_owned()), Cow::Owned(v.into_owned())))
                .collect(),
        }
    }

    /// Appends the canonical compact JSON form to `out`:
    /// `{"timestamp":"<RFC 3339 ns UTC>","level":"…","service":"…","message":"…",<extras>}`.
    ///
    /// The form is deterministic (same record → same bytes), which keeps Loki's dedupe of
    /// replays working.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(JSON_TIMESTAMP_PREFIX);
        self.timestamp.write_rfc3339(out);
        out.extend_from_slice(b"\",\"level\":\"");
        out.extend_from_slice(self.level.as_str().as_bytes());
        out.extend_from_slice(b"\",\"service\":");
        write_json_str(out, &self.service);
        out.extend_from_slice(b",\"message\":");
        write_json_str(out, &self.message);
        for (k, v) in &self.fields {
            out.push(b',');
            write_json_str(out, k);
            out.push(b':');
            out.extend_from_slice(v.get().as_bytes());
        }
        out.push(b'}');
    }

    /// The canonical compact JSON form as a `String`.
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(256);
        self.write_json(&mut out);
        // write_json only appends valid UTF-8 (escaped strings and validated raw JSON).
        String::from_utf8(out).unwrap_or_default()
    }
}

/// What [`LogRecord::write_json`] writes before the timestamp, which always takes
/// [`Timestamp::RFC3339_LEN`] bytes after it.
const JSON_TIMESTAMP_PREFIX: &[u8] = b"{\"timestamp\":\"";

/// Bytes that are not the canonical JSON form of a record ([`restamp_json`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("not a record's canonical JSON form: no `{{\"timestamp\":\"` with a {len}-byte RFC 3339 value at its start", len = Timestamp::RFC3339_LEN)]
pub struct NotCanonical;

/// Replaces the timestamp of a record's canonical JSON form ([`LogRecord::write_json`]) in
/// place with `timestamp`: the bytes become exactly what writing the record with that timestamp
/// gives. The timestamp sits at a fixed place of the form (first, fixed width), so nothing
/// moves. Refuses (and leaves `json` unchanged) bytes that do not start the way `write_json`
/// starts a record.
pub fn restamp_json(json: &mut [u8], timestamp: Timestamp) -> Result<(), NotCanonical> {
    let start = JSON_TIMESTAMP_PREFIX.len();
    let end = start + Timestamp::RFC3339_LEN;
    let canonical = json.starts_with(JSON_TIMESTAMP_PREFIX)
        && json.get(start..end).is_some_and(Timestamp::is_rfc3339_form)
        && json.get(end) == Some(&b'"');
    if !canonical {
        return Err(NotCanonical);
    }
    let mut stamp = [0u8; Timestamp::RFC3339_LEN];
    timestamp.write_rfc3339_into(&mut stamp);
    json[start..end].copy_from_slice(&stamp);
    Ok(())
}

/// Index of the first byte that JSON requires escaped (`"`, `\\`, or below 0x20), scanning
/// eight bytes at a time.
fn first_escape(bytes: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(LO) & !x & HI;
    let mut i = 0;
    while i + 8 <= bytes.len() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[i..i + 8]);
        let x = u64::from_le_bytes(w);
        // Bytes below 0x20 (ASCII only: a set high bit means not a control byte).
        let ctrl = x.wrapping_sub(LO * 0x20) & !x & HI;
        if ctrl | has_zero(x ^ (LO * u64::from(b'"'))) | has_zero(x ^ (LO * u64::from(b'\\'))) != 0
        {
            break;
        }
        i += 8;
    }
    bytes[i..]
        .iter()
        .position(|&c| c < 0x20 || c == b'"' || c == b'\\')
        .map(|p| p + i)
}

/// Appends `s` as a JSON string literal (quotes and escapes) to `out`.
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let Some(first) = first_escape(bytes) else {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    };
    out.extend_from_slice(&bytes[..first]);
    let mut start = first;
    for (i, &c) in bytes.iter().enumerate().skip(first) {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(c >> 4)]);
                out.push(HEX[usize::from(c & 0xf)]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_index_is_its_position_in_all() {
        for (i, level) in Level::ALL.iter().enumerate() {
            assert_eq!(level.index(), i);
        }
    }

    #[test]
    fn level_aliases_normalise() {
        assert_eq!(Level::parse("WARNING"), Some(Level::Warn));
        assert_eq!(Level::parse("Critical"), Some(Level::Fatal));
        assert_eq!(Level::parse("info"), Some(Level::Info));
        assert_eq!(Level::parse("TRACE"), Some(Level::Trace));
        assert_eq!(Level::parse("informational"), None);
        assert_eq!(Level::parse(""), None);
        assert_eq!(Level::parse("notice"), None);
    }

    #[test]
    fn every_level_round_trips_through_its_name() {
        for l in Level::ALL {
            assert_eq!(Level::parse(l.as_str()), Some(l));
        }
    }

    #[test]
    fn first_escape_finds_every_special_byte_at_every_position() {
        for len in 0..20 {
            assert_eq!(first_escape("é".repeat(len).as_bytes()), None);
            for at in 0..len {
                for special in [b'"', b'\\', b'\n', 0x00, 0x1f] {
                    let mut b = vec![b'a'; len];
                    b[at] = special;
                    assert_eq!(
                        first_escape(&b),
                        Some(at),
                        "len {len} at {at} byte {special}"
                    );
                }
            }
        }
        assert_eq!(first_escape(b"\x7f\x80\xff !#[]"), None);
    }

    #[test]
    fn json_strings_escape_control_characters_and_quotes() {
        let mut out = Vec::new();
        write_json_str(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(String::from_utf8(out).unwrap(), r#""a\"b\\c\nd\u0001é""#);
    }
}
