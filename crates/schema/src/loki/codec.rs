//! Encoding and decoding of push bodies: protobuf in a raw snappy block (what Promtail sends),
//! and JSON, optionally gzip-compressed (LOKI.md, "Request").
//!
//! Encoding is what the consumer sends; it refuses what Loki would misread (a JSON label name
//! outside Loki's grammar is pasted into Loki's label text unquoted and could add labels).
//! Decoding is what a real Loki reads, quirks included, for the test receiver and the tests:
//! a JSON `stream` object becomes Loki's label text with names unquoted
//! ([`label_text::json_stream_text`]), label values that are numbers or objects become their JSON
//! text, invalid UTF-8 in protobuf strings is kept as `U+FFFD` per byte, and errors carry Loki's
//! texts (`snappy: corrupt input`, jsoniter's `… error found in #10 byte of …`).

use std::borrow::Cow;
use std::fmt;
use std::io::{Read, Write};

use prost::Message;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use thiserror::Error;

use super::label_text::{self, go_lossy};
use super::proto::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp};
use crate::labels::{is_valid_label_name, LabelSet};
use crate::record::write_json_str;

/// A body that cannot be decoded. The texts are Loki's: Loki answers these with 400, and 413 for
/// [`DecodeError::TooLarge`].
#[derive(Debug, Error)]
pub enum DecodeError {
    /// The snappy block is corrupt.
    #[error("{}", snappy_text(.0))]
    Snappy(snap::Error),
    /// The protobuf is malformed.
    #[error("proto: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// The gzip stream is corrupt; the text is Go's.
    #[error("{0}")]
    Gzip(String),
    /// The JSON is malformed or has the wrong shape; the text is Loki's (jsoniter's and
    /// jsonparser's).
    #[error("{0}")]
    Json(String),
    /// The decompressed body is larger than allowed (`size` is what was read, at most
    /// `max + 1` for a stream).
    #[error("decompressed message size too large than max ({size} vs {max})")]
    TooLarge {
        /// Decompressed bytes seen.
        size: usize,
        /// The limit.
        max: usize,
    },
}

fn snappy_text(e: &snap::Error) -> &'static str {
    match e {
        snap::Error::TooBig { .. } => "snappy: decoded block is too large",
        _ => "snappy: corrupt input",
    }
}

/// A push that cannot be encoded.
#[derive(Debug, Error)]
pub enum EncodeError {
    /// A stream's label string does not parse (JSON needs the labels as an object).
    #[error("stream labels {labels:?}: {source}")]
    Labels {
        /// The label string.
        labels: String,
        /// Why it does not parse.
        source: crate::labels::LabelParseError,
    },
    /// A label Loki would misread in a JSON push: a name outside `[a-zA-Z_][a-zA-Z0-9_]*` (Loki
    /// pastes JSON label names into its label text unquoted, so it could add labels), or a
    /// value holding `U+FFFD` (Loki's own rendering of it does not parse again).
    #[error("stream labels {labels:?}: {detail}; Loki would misread it in a JSON push")]
    UnsafeLabel {
        /// The label string.
        labels: String,
        /// What is wrong.
        detail: String,
    },
    /// Compression failed.
    #[error("compressing: {0}")]
    Compress(#[from] std::io::Error),
    /// Snappy refused the input (over its 4 GiB block limit).
    #[error("snappy: {0}")]
    Snappy(#[from] snap::Error),
}

/// Reusable buffers for protobuf + snappy encoding, so steady-state pushes do not allocate.
pub struct ProtobufEncoder {
    raw: Vec<u8>,
    scratch: Vec<u8>,
    snappy: snap::raw::Encoder,
}

impl fmt::Debug for ProtobufEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProtobufEncoder").finish_non_exhaustive()
    }
}

impl Default for ProtobufEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ProtobufEncoder {
    /// A new encoder.
    pub fn new() -> Self {
        Self {
            raw: Vec::new(),
            scratch: Vec::new(),
            snappy: snap::raw::Encoder::new(),
        }
    }

    /// Encodes `push` as protobuf in a raw snappy block, replacing the contents of `out`.
    pub fn encode(&mut self, push: &PushRequest, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.raw.clear();
        self.raw.reserve(push.encoded_len());
        // Encoding into a Vec cannot run out of space.
        push.encode(&mut self.raw)
            .map_err(|e| EncodeError::Compress(std::io::Error::other(e)))?;
        // Compress into the reused scratch buffer, then copy out exactly the compressed bytes:
        // `out` is usually handed away (a request body), the scratch stays warm.
        let need = snap::raw::max_compress_len(self.raw.len());
        if self.scratch.len() < need {
            self.scratch.resize(need, 0);
        }
        let n = self.snappy.compress(&self.raw, &mut self.scratch)?;
        out.clear();
        out.extend_from_slice(&self.scratch[..n]);
        Ok(())
    }
}

/// Encodes `push` as protobuf in a raw snappy block.
pub fn encode_protobuf(push: &PushRequest) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    ProtobufEncoder::new().encode(push, &mut out)?;
    Ok(out)
}

/// The protobuf messages with every string as bytes, so that invalid UTF-8 decodes as Loki
/// (Go) keeps it instead of failing the whole body.
mod wire {
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Push {
        #[prost(message, repeated, tag = "1")]
        pub(super) streams: Vec<Stream>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Stream {
        #[prost(bytes = "vec", tag = "1")]
        pub(super) labels: Vec<u8>,
        #[prost(message, repeated, tag = "2")]
        pub(super) entries: Vec<Entry>,
        #[prost(uint64, tag = "3")]
        pub(super) hash: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Entry {
        #[prost(message, optional, tag = "1")]
        pub(super) timestamp: Option<super::Timestamp>,
        #[prost(bytes = "vec", tag = "2")]
        pub(super) line: Vec<u8>,
        #[prost(message, repeated, tag = "3")]
        pub(super) structured_metadata: Vec<Pair>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Pair {
        #[prost(bytes = "vec", tag = "1")]
        pub(super) name: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub(super) value: Vec<u8>,
    }
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| go_lossy(e.as_bytes()))
}

/// Decodes a raw-snappy protobuf body, refusing to inflate beyond `max_decompressed` bytes.
/// Strings that are not valid UTF-8 keep every invalid byte as `U+FFFD`, as Loki shows them.
pub fn decode_protobuf(body: &[u8], max_decompressed: usize) -> Result<PushRequest, DecodeError> {
    let len = snap::raw::decompress_len(body).map_err(DecodeError::Snappy)?;
    if body.is_empty() {
        return Err(DecodeError::Snappy(snap::Error::Empty));
    }
    if len > max_decompressed {
        return Err(DecodeError::TooLarge {
            size: len,
            max: max_decompressed,
        });
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(DecodeError::Snappy)?;
    let push = wire::Push::decode(raw.as_slice())?;
    Ok(PushRequest {
        streams: push
            .streams
            .into_iter()
            .map(|s| StreamAdapter {
                labels: text(s.labels),
                entries: s
                    .entries
                    .into_iter()
                    .map(|e| EntryAdapter {
                        timestamp: e.timestamp,
                        line: text(e.line),
                        structured_metadata: e
                            .structured_metadata
                            .into_iter()
                            .map(|p| LabelPairAdapter {
                                name: text(p.name),
                                value: text(p.value),
                            })
                            .collect(),
                    })
                    .collect(),
                hash: s.hash,
            })
            .collect(),
    })
}

/// Encodes `push` as Loki's JSON push body. Refuses label names outside
/// `[a-zA-Z_][a-zA-Z0-9_]*` and values holding `U+FFFD` ([`EncodeError::UnsafeLabel`]): Loki
/// would misread them.
pub fn encode_json(push: &PushRequest) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(push.encoded_len() + 64);
    out.extend_from_slice(b"{\"streams\":[");
    for (si, stream) in push.streams.iter().enumerate() {
        if si > 0 {
            out.push(b',');
        }
        let labels = LabelSet::parse(&stream.labels).map_err(|source| EncodeError::Labels {
            labels: stream.labels.clone(),
            source,
        })?;
        out.extend_from_slice(b"{\"stream\":{");
        for (i, (k, v)) in labels.pairs().iter().enumerate() {
            let unsafe_label = |detail: String| EncodeError::UnsafeLabel {
                labels: stream.labels.clone(),
                detail,
            };
            if !is_valid_label_name(k) {
                return Err(unsafe_label(format!(
                    "label name {k:?} is not [a-zA-Z_][a-zA-Z0-9_]*"
                )));
            }
            if v.contains('\u{fffd}') {
                return Err(unsafe_label(format!("label {k}'s value holds U+FFFD")));
            }
            if i > 0 {
                out.push(b',');
            }
            write_json_str(&mut out, k);
            out.push(b':');
            write_json_str(&mut out, v);
        }
        out.extend_from_slice(b"},\"values\":[");
        for (ei, e) in stream.entries.iter().enumerate() {
            if ei > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"[\"");
            out.extend_from_slice(e.nanos().to_string().as_bytes());
            out.extend_from_slice(b"\",");
            write_json_str(&mut out, &e.line);
            if !e.structured_metadata.is_empty() {
                out.extend_from_slice(b",{");
                for (i, p) in e.structured_metadata.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_json_str(&mut out, &p.name);
                    out.push(b':');
                    write_json_str(&mut out, &p.value);
                }
                out.push(b'}');
            }
            out.push(b']');
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}

/// Encodes `push` as gzip-compressed JSON (send with `Content-Encoding: gzip`).
pub fn encode_json_gzip(push: &PushRequest) -> Result<Vec<u8>, EncodeError> {
    let json = encode_json(push)?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&json)?;
    Ok(gz.finish()?)
}

/// Inflates a gzip body as Go's `gzip.Reader` does, reading at most `max_decompressed + 1`
/// bytes ([`DecodeError::TooLarge`] beyond `max_decompressed`); errors carry Go's texts
/// (`gzip: invalid header`, `EOF`, `unexpected EOF`).
pub fn gunzip(body: &[u8], max_decompressed: usize) -> Result<Vec<u8>, DecodeError> {
    check_gzip_header(body)?;
    let mut out = Vec::new();
    let read = flate2::read::GzDecoder::new(body)
        .take((max_decompressed as u64).saturating_add(1))
        .read_to_end(&mut out);
    if out.len() > max_decompressed {
        return Err(DecodeError::TooLarge {
            size: out.len(),
            max: max_decompressed,
        });
    }
    read.map_err(|e| {
        DecodeError::Gzip(match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "unexpected EOF".to_owned(),
            _ if e.to_string().contains("checksum") => "gzip: invalid checksum".to_owned(),
            _ if e.to_string().contains("header") => "gzip: invalid header".to_owned(),
            _ => "flate: corrupt input".to_owned(),
        })
    })?;
    Ok(out)
}

/// Checks a gzip header as Go's `gzip.NewReader` does before reading anything else (Loki does
/// that before it looks at the `Content-Type`): `EOF`, `unexpected EOF`, `gzip: invalid header`.
pub fn check_gzip_header(body: &[u8]) -> Result<(), DecodeError> {
    if body.is_empty() {
        return Err(DecodeError::Gzip("EOF".to_owned()));
    }
    // Go reads the 10-byte header first, then checks it.
    if body.len() < 10 {
        return Err(DecodeError::Gzip("unexpected EOF".to_owned()));
    }
    if body[0] != 0x1f || body[1] != 0x8b || body[2] != 8 {
        return Err(DecodeError::Gzip("gzip: invalid header".to_owned()));
    }
    Ok(())
}

/// Inflates a raw deflate body (`Content-Encoding: deflate`), reading at most
/// `max_decompressed + 1` bytes.
pub fn inflate(body: &[u8], max_decompressed: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    let read = flate2::read::DeflateDecoder::new(body)
        .take((max_decompressed as u64).saturating_add(1))
        .read_to_end(&mut out);
    if out.len() > max_decompressed {
        return Err(DecodeError::TooLarge {
            size: out.len(),
            max: max_decompressed,
        });
    }
    read.map_err(|e| {
        DecodeError::Gzip(match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "unexpected EOF".to_owned(),
            _ => "flate: corrupt input".to_owned(),
        })
    })?;
    Ok(out)
}

/// Decodes a JSON push body (gunzipping first when `gzip`, refusing to inflate beyond
/// `max_decompressed` bytes) as Loki reads it: each stream's labels become Loki's label text
/// ([`label_text::json_stream_text`], names unquoted), a label value that is not a string is
/// kept as its JSON text, `null` entries are skipped, values beyond the third of an entry are
/// ignored, the first JSON value of the body is read and anything after it ignored. Errors carry
/// Loki's texts.
pub fn decode_json(
    body: &[u8],
    gzip: bool,
    max_decompressed: usize,
) -> Result<PushRequest, DecodeError> {
    let inflated;
    let json = if gzip {
        inflated = gunzip(body, max_decompressed)?;
        inflated.as_slice()
    } else {
        body
    };
    let Some(first) = json.iter().position(|b| !b.is_ascii_whitespace()) else {
        return Err(DecodeError::Json("EOF".to_owned()));
    };
    match json[first] {
        b'{' => {}
        b'n' if json[first..].starts_with(b"null") => return Ok(PushRequest { streams: vec![] }),
        c => {
            return Err(DecodeError::Json(jsoniter_error(
                &format!(
                    "loghttp.PushRequest.ReadObjectCB: expect {{ or n, but found {}",
                    c as char
                ),
                json,
                first + 1,
            )))
        }
    }
    let mut de = serde_json::Deserializer::from_slice(json);
    let top = Top::deserialize(&mut de).map_err(|e| {
        let at = serde_offset(json, &e);
        if e.is_eof() && at >= json.len() {
            DecodeError::Json(jsoniter_error(
                "loghttp.PushRequest.Streams: []loghttp.LogProtoStream: ReadArrayCB: unexpected end of input",
                json,
                json.len(),
            ))
        } else {
            DecodeError::Json(jsoniter_error(
                &format!("loghttp.PushRequest.Streams: {e}"),
                json,
                at,
            ))
        }
    })?;
    let mut streams = Vec::new();
    for raw in top.streams.unwrap_or_default() {
        let end = offset_in(json, raw.get()) + raw.get().len();
        let stream = decode_json_stream(raw.get()).map_err(|e| {
            DecodeError::Json(jsoniter_error(
                &format!(
                    "loghttp.PushRequest.Streams: []loghttp.LogProtoStream: unmarshalerDecoder: {e}"
                ),
                json,
                end,
            ))
        })?;
        streams.push(stream);
    }
    Ok(PushRequest { streams })
}

/// The top level of a JSON push: only `streams` (any case, as jsoniter matches field names)
/// matters.
struct Top<'a> {
    streams: Option<Vec<&'a RawValue>>,
}

impl<'de> Deserialize<'de> for Top<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Top<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object with \"streams\"")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top<'de>, A::Error> {
                let mut streams = None;
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    if key.eq_ignore_ascii_case("streams") {
                        streams = map.next_value::<Option<Vec<&'de RawValue>>>()?;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Top { streams })
            }
        }
        d.deserialize_map(V)
    }
}

/// Key/value pairs of a JSON object in order, values raw.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    out.push((key, map.next_value::<&'de RawValue>()?));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Elements of a JSON array, raw.
struct Elements<'a>(Vec<&'a RawValue>);

impl<'de> Deserialize<'de> for Elements<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Elements<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Elements<'de>, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element::<&'de RawValue>()? {
                    out.push(v);
                }
                Ok(Elements(out))
            }
        }
        d.deserialize_seq(V)
    }
}

/// jsonparser's error texts, which Loki's JSON push decoding returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonparserError {
    MalformedValue,
    MalformedString,
    MalformedObject,
    MalformedArray,
    Overflow,
}

impl fmt::Display for JsonparserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JsonparserError::MalformedValue => {
                "Value looks like Number/Boolean/None, but can't find its end: ',' or '}' symbol"
            }
            JsonparserError::MalformedString => {
                "Value is string, but can't find closing '\"' symbol"
            }
            JsonparserError::MalformedObject => {
                "Value looks like object, but can't find closing '}' symbol"
            }
            JsonparserError::MalformedArray => "Value is array, but can't find closing ']' symbol",
            JsonparserError::Overflow => "Value is number, but overflowed while parsing",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    String,
    Object,
    Array,
    Null,
    Other,
}

fn kind(raw: &RawValue) -> Kind {
    match raw.get().as_bytes().first() {
        Some(b'"') => Kind::String,
        Some(b'{') => Kind::Object,
        Some(b'[') => Kind::Array,
        Some(b'n') => Kind::Null,
        _ => Kind::Other,
    }
}

/// jsonparser's `ParseString` of a value: a string unescaped, anything else as its JSON text
/// with escapes resolved.
fn value_text(raw: &RawValue) -> Result<String, JsonparserError> {
    let t = raw.get();
    if kind(raw) == Kind::String {
        return json_unescape(&t[1..t.len() - 1]);
    }
    json_unescape(t)
}

/// jsonparser's `Unescape`: resolves `\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t` and
/// `\uXXXX` (with surrogate pairs) wherever they are, other text as it is.
fn json_unescape(t: &str) -> Result<String, JsonparserError> {
    if !t.contains('\\') {
        return Ok(t.to_owned());
    }
    let mut out = String::with_capacity(t.len());
    let mut chars = t.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = chars.next().ok_or(JsonparserError::MalformedValue)?;
        match e {
            '"' | '\\' | '/' => out.push(e),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'u' => {
                let mut hex = || -> Result<u32, JsonparserError> {
                    let h: String = chars.by_ref().take(4).collect();
                    if h.len() != 4 {
                        return Err(JsonparserError::MalformedValue);
                    }
                    u32::from_str_radix(&h, 16).map_err(|_| JsonparserError::MalformedValue)
                };
                let first = hex()?;
                let code = if (0xD800..0xDC00).contains(&first) {
                    let rest = chars.as_str();
                    if let Some(low) = rest
                        .strip_prefix("\\u")
                        .and_then(|r| r.get(..4))
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .filter(|l| (0xDC00..0xE000).contains(l))
                    {
                        chars = rest[6..].chars();
                        0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00)
                    } else {
                        0xFFFD
                    }
                } else {
                    first
                };
                out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
            }
            _ => return Err(JsonparserError::MalformedValue),
        }
    }
    Ok(out)
}

fn members(raw: &RawValue) -> Result<Vec<(Cow<'_, str>, &RawValue)>, JsonparserError> {
    if kind(raw) != Kind::Object {
        return Err(JsonparserError::MalformedObject);
    }
    serde_json::from_str::<Members<'_>>(raw.get())
        .map(|m| m.0)
        .map_err(|_| JsonparserError::MalformedObject)
}

fn elements(raw: &RawValue) -> Result<Vec<&RawValue>, JsonparserError> {
    if kind(raw) != Kind::Array {
        return Err(JsonparserError::MalformedArray);
    }
    serde_json::from_str::<Elements<'_>>(raw.get())
        .map(|e| e.0)
        .map_err(|_| JsonparserError::MalformedArray)
}

/// One stream object, as Loki's `LogProtoStream.UnmarshalJSON`.
fn decode_json_stream(raw: &str) -> Result<StreamAdapter, JsonparserError> {
    let raw: &RawValue = serde_json::from_str(raw).map_err(|_| JsonparserError::MalformedObject)?;
    let mut stream = StreamAdapter {
        labels: String::new(),
        entries: Vec::new(),
        hash: 0,
    };
    for (key, value) in members(raw)? {
        match key.as_ref() {
            "stream" => {
                let mut pairs = Vec::new();
                for (name, v) in members(value)? {
                    pairs.push((name.into_owned(), value_text(v)?));
                }
                stream.labels = label_text::json_stream_text(
                    pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                );
            }
            "values" => {
                if kind(value) == Kind::Null {
                    continue;
                }
                let mut entries = Vec::new();
                for e in elements(value)? {
                    if kind(e) == Kind::Null {
                        continue;
                    }
                    entries.push(decode_json_entry(e)?);
                }
                stream.entries = entries;
            }
            _ => {}
        }
    }
    Ok(stream)
}

/// `["<ns>", "line", {metadata}]`, as Loki's `unmarshalHTTPToLogProtoEntry`.
fn decode_json_entry(raw: &RawValue) -> Result<EntryAdapter, JsonparserError> {
    let mut entry = EntryAdapter {
        timestamp: Some(Timestamp::from_nanos(0)),
        line: String::new(),
        structured_metadata: Vec::new(),
    };
    for (i, v) in elements(raw)?.into_iter().enumerate() {
        match i {
            0 | 1 if kind(v) != Kind::String => return Err(JsonparserError::MalformedValue),
            2 if kind(v) != Kind::Object => return Err(JsonparserError::MalformedObject),
            0 => {
                let t = v.get();
                entry.timestamp = Some(Timestamp::from_nanos(parse_int(&t[1..t.len() - 1])?));
            }
            1 => entry.line = value_text(v)?,
            2 => {
                for (name, value) in members(v)? {
                    if kind(value) != Kind::String {
                        return Err(JsonparserError::MalformedString);
                    }
                    entry.structured_metadata.push(LabelPairAdapter {
                        name: name.into_owned(),
                        value: value_text(value)?,
                    });
                }
            }
            _ => {}
        }
    }
    Ok(entry)
}

/// jsonparser's `ParseInt` of a string's (still escaped) content.
fn parse_int(s: &str) -> Result<i64, JsonparserError> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(JsonparserError::MalformedValue);
    }
    s.parse::<i64>().map_err(|_| JsonparserError::Overflow)
}

/// Byte offset of `part` (a slice of `whole`) in `whole`.
fn offset_in(whole: &[u8], part: &str) -> usize {
    (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize)
}

/// Byte offset of a serde_json error in `json`.
fn serde_offset(json: &[u8], e: &serde_json::Error) -> usize {
    let mut line = 1;
    let mut start = 0;
    for (i, b) in json.iter().enumerate() {
        if line == e.line() {
            break;
        }
        if *b == b'\n' {
            line += 1;
            start = i + 1;
        }
    }
    (start + e.column()).min(json.len())
}

/// A jsoniter error text (`Iterator.ReportError`): `<what>, error found in #N byte of
/// ...|<peek>|..., bigger context ...|<context>|...`, where `head` is the reader's position.
/// jsoniter reads the body in 512-byte buffers and only shows the current one; that is
/// emulated with buffers aligned at the start of the body.
fn jsoniter_error(what: &str, json: &[u8], head: usize) -> String {
    const BUF: usize = 512;
    let head = head.min(json.len());
    let chunk_start = (head.saturating_sub(1) / BUF) * BUF;
    let buf = &json[chunk_start..json.len().min(chunk_start + BUF)];
    let head = head - chunk_start;
    let peek_start = head.saturating_sub(10);
    let peek = &buf[peek_start..buf.len().min(head + 10)];
    let context = &buf[head.saturating_sub(50)..buf.len().min(head + 50)];
    format!(
        "{what}, error found in #{} byte of ...|{}|..., bigger context ...|{}|...",
        head - peek_start,
        String::from_utf8_lossy(peek),
        String::from_utf8_lossy(context)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PushRequest {
        PushRequest {
            streams: vec![StreamAdapter {
                labels: r#"{level="info", service="api"}"#.into(),
                entries: vec![
                    EntryAdapter {
                        timestamp: Some(Timestamp::from_nanos(1_700_000_000_000_000_001)),
                        line: "hello é \"q\"".into(),
                        structured_metadata: vec![LabelPairAdapter {
                            name: "trace_id".into(),
                            value: "abc".into(),
                        }],
                    },
                    EntryAdapter {
                        timestamp: Some(Timestamp::from_nanos(1_700_000_000_000_000_002)),
                        line: "two".into(),
                        structured_metadata: vec![],
                    },
                ],
                hash: 0,
            }],
        }
    }

    #[test]
    fn protobuf_round_trips() {
        let body = encode_protobuf(&sample()).unwrap();
        assert_eq!(decode_protobuf(&body, 1 << 20).unwrap(), sample());
    }

    #[test]
    fn json_round_trips_plain_and_gzip() {
        let body = encode_json(&sample()).unwrap();
        assert_eq!(decode_json(&body, false, 1 << 20).unwrap(), sample());
        let gz = encode_json_gzip(&sample()).unwrap();
        assert_eq!(decode_json(&gz, true, 1 << 20).unwrap(), sample());
    }

    #[test]
    fn json_has_lokis_shape() {
        let body = String::from_utf8(encode_json(&sample()).unwrap()).unwrap();
        assert!(body.starts_with(
            r#"{"streams":[{"stream":{"level":"info","service":"api"},"values":[["1700000000000000001","hello é \"q\"",{"trace_id":"abc"}]"#
        ));
    }

    #[test]
    fn json_encoding_refuses_labels_loki_would_misread() {
        let mut push = sample();
        push.streams[0].labels = r#"{"x=\"1\", injected"="2"}"#.into();
        assert!(matches!(
            encode_json(&push),
            Err(EncodeError::Labels { .. } | EncodeError::UnsafeLabel { .. })
        ));
        push.streams[0].labels = "{a=\"\u{fffd}\"}".into();
        assert!(matches!(
            encode_json(&push),
            Err(EncodeError::UnsafeLabel { .. })
        ));
    }

    #[test]
    fn rejects_corrupt_snappy_and_protobuf_with_lokis_texts() {
        let e = decode_protobuf(b"\xff\xff\xff\xff\xff", 1 << 20).unwrap_err();
        assert_eq!(e.to_string(), "snappy: corrupt input");
        assert_eq!(
            decode_protobuf(b"", 1 << 20).unwrap_err().to_string(),
            "snappy: corrupt input"
        );
        let not_proto = snap::raw::Encoder::new()
            .compress_vec(b"\xff\xff\xff")
            .unwrap();
        assert!(matches!(
            decode_protobuf(&not_proto, 1 << 20),
            Err(DecodeError::Protobuf(_))
        ));
    }

    #[test]
    fn protobuf_keeps_invalid_utf8_as_replacement_characters() {
        let mut raw = Vec::new();
        wire::Push {
            streams: vec![wire::Stream {
                labels: b"{a=\"b\"}".to_vec(),
                entries: vec![wire::Entry {
                    timestamp: None,
                    line: b"bad \xff\xfe utf8".to_vec(),
                    structured_metadata: vec![],
                }],
                hash: 0,
            }],
        }
        .encode(&mut raw)
        .unwrap();
        let body = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
        let push = decode_protobuf(&body, 1 << 20).unwrap();
        assert_eq!(push.streams[0].entries[0].line, "bad \u{fffd}\u{fffd} utf8");
    }

    #[test]
    fn json_decodes_as_loki_reads_it() {
        let body = br#"{"streams":[{"stream":{"case":"c","x=\"1\", injected":"2","n":{"a":"b"},"k":5},"values":[["10","l",{"trace.id":"t"}],null,["11","m",{},"ignored"]],"extra":1}],"foo":"bar"} trailing"#;
        let push = decode_json(body, false, 1 << 20).unwrap();
        let s = &push.streams[0];
        assert_eq!(
            s.labels,
            r#"{case="c", k="5", n="{\"a\":\"b\"}", x="1", injected="2"}"#
        );
        assert_eq!(s.entries.len(), 2);
        assert_eq!(s.entries[0].structured_metadata[0].name, "trace.id");
        assert_eq!(s.entries[1].nanos(), 11);
        let no_stream =
            decode_json(br#"{"streams":[{"values":[["1","x"]]}]}"#, false, 100).unwrap();
        assert_eq!(no_stream.streams[0].labels, "");
        assert!(decode_json(b"null", false, 100).unwrap().streams.is_empty());
    }

    #[test]
    fn json_errors_carry_lokis_texts() {
        let e = |b: &[u8]| decode_json(b, false, 1 << 20).unwrap_err().to_string();
        assert_eq!(e(b""), "EOF");
        // Recorded: json-ts-number.
        assert_eq!(
            e(br#"{"streams":[{"stream":{"case":"json-ts-number"},"values":[[1796453680795727000,"x"]]}]}"#),
            r#"loghttp.PushRequest.Streams: []loghttp.LogProtoStream: unmarshalerDecoder: Value looks like Number/Boolean/None, but can't find its end: ',' or '}' symbol, error found in #10 byte of ...|000,"x"]]}]}|..., bigger context ...|-ts-number"},"values":[[1796453680795727000,"x"]]}]}|..."#
        );
        assert!(e(br#"{"streams":["#).contains("error found in"));
        assert!(
            e(b"[]").starts_with("loghttp.PushRequest.ReadObjectCB: expect { or n, but found [")
        );
        let gz = decode_json(br#"{"streams":[]}"#, true, 100).unwrap_err();
        assert_eq!(gz.to_string(), "gzip: invalid header");
    }

    #[test]
    fn refuses_decompression_bombs() {
        let body = encode_protobuf(&sample()).unwrap();
        assert!(matches!(
            decode_protobuf(&body, 10),
            Err(DecodeError::TooLarge { max: 10, .. })
        ));
        let gz = encode_json_gzip(&sample()).unwrap();
        let e = decode_json(&gz, true, 10).unwrap_err();
        assert_eq!(
            e.to_string(),
            "decompressed message size too large than max (11 vs 10)"
        );
    }
}
