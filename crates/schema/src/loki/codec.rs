//! Encoding and decoding of push bodies: protobuf in a raw snappy block (what Promtail sends),
//! and JSON, optionally gzip-compressed (LOKI.md, "Request").

use std::io::{Read, Write};

use prost::Message;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use thiserror::Error;

use super::proto::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp};
use crate::labels::LabelSet;
use crate::record::write_json_str;

/// A body that cannot be decoded (Loki answers these with 400).
#[derive(Debug, Error)]
pub enum DecodeError {
    /// The snappy block is corrupt.
    #[error("decompressing snappy block: {0}")]
    Snappy(#[from] snap::Error),
    /// The protobuf is malformed.
    #[error("decoding protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// The gzip stream is corrupt.
    #[error("decompressing gzip: {0}")]
    Gzip(std::io::Error),
    /// The JSON is malformed or has the wrong shape.
    #[error("decoding JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The decompressed body is larger than allowed.
    #[error("decompressed body exceeds {0} bytes")]
    TooLarge(usize),
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

impl std::fmt::Debug for ProtobufEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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

/// Decodes a raw-snappy protobuf body, refusing to inflate beyond `max_decompressed` bytes.
pub fn decode_protobuf(body: &[u8], max_decompressed: usize) -> Result<PushRequest, DecodeError> {
    let len = snap::raw::decompress_len(body)?;
    if len > max_decompressed {
        return Err(DecodeError::TooLarge(max_decompressed));
    }
    let raw = snap::raw::Decoder::new().decompress_vec(body)?;
    Ok(PushRequest::decode(raw.as_slice())?)
}

/// Encodes `push` as Loki's JSON push body.
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

/// Decodes a JSON push body (gunzipping first when `gzip`), refusing to inflate beyond
/// `max_decompressed` bytes. Label objects become sorted selector strings.
pub fn decode_json(
    body: &[u8],
    gzip: bool,
    max_decompressed: usize,
) -> Result<PushRequest, DecodeError> {
    let inflated;
    let json = if gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body)
            .take((max_decompressed as u64).saturating_add(1))
            .read_to_end(&mut out)
            .map_err(DecodeError::Gzip)?;
        if out.len() > max_decompressed {
            return Err(DecodeError::TooLarge(max_decompressed));
        }
        inflated = out;
        inflated.as_slice()
    } else {
        body
    };
    let parsed: JsonPush = serde_json::from_slice(json)?;
    Ok(PushRequest {
        streams: parsed
            .streams
            .into_iter()
            .map(|s| StreamAdapter {
                labels: LabelSet::from_pairs(s.stream).to_string(),
                entries: s.values.into_iter().map(|v| v.0).collect(),
                hash: 0,
            })
            .collect(),
    })
}

#[derive(Deserialize)]
struct JsonPush {
    streams: Vec<JsonStream>,
}

#[derive(Deserialize)]
struct JsonStream {
    #[serde(default)]
    stream: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<JsonEntry>,
}

/// `["<ns>", "line"]` or `["<ns>", "line", {"name": "value"}]`.
struct JsonEntry(EntryAdapter);

impl<'de> Deserialize<'de> for JsonEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JsonEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array [\"<unix ns>\", \"line\", {metadata}?]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonEntry, A::Error> {
                let ts: String = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let nanos: i64 = ts.parse().map_err(|_| {
                    de::Error::invalid_value(de::Unexpected::Str(&ts), &"unix nanoseconds")
                })?;
                let line: String = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let meta: Option<std::collections::BTreeMap<String, String>> =
                    seq.next_element()?;
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(4, &self));
                }
                Ok(JsonEntry(EntryAdapter {
                    timestamp: Some(Timestamp::from_nanos(nanos)),
                    line,
                    structured_metadata: meta
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(name, value)| LabelPairAdapter { name, value })
                        .collect(),
                }))
            }
        }
        d.deserialize_seq(V)
    }
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
    fn rejects_corrupt_snappy_and_protobuf() {
        assert!(matches!(
            decode_protobuf(b"\xff\xff\xff\xff\xff", 1 << 20),
            Err(DecodeError::Snappy(_))
        ));
        let not_proto = snap::raw::Encoder::new()
            .compress_vec(b"\xff\xff\xff")
            .unwrap();
        assert!(matches!(
            decode_protobuf(&not_proto, 1 << 20),
            Err(DecodeError::Protobuf(_))
        ));
    }

    #[test]
    fn rejects_numeric_json_timestamps() {
        let body = br#"{"streams":[{"stream":{"a":"b"},"values":[[1700000000, "x"]]}]}"#;
        assert!(matches!(
            decode_json(body, false, 1 << 20),
            Err(DecodeError::Json(_))
        ));
    }

    #[test]
    fn refuses_decompression_bombs() {
        let body = encode_protobuf(&sample()).unwrap();
        assert!(matches!(
            decode_protobuf(&body, 10),
            Err(DecodeError::TooLarge(10))
        ));
        let gz = encode_json_gzip(&sample()).unwrap();
        assert!(matches!(
            decode_json(&gz, true, 10),
            Err(DecodeError::TooLarge(10))
        ));
    }
}
