//! Loki's push API (LOKI.md): the protobuf messages, entries encoded once per stream
//! ([`encoded`], the consumer's push path), protobuf + snappy and JSON (+ gzip) codecs, and
//! Loki's validation limits, metadata rules and tenant IDs.
//!
//! Decoding lives here as well as encoding, so the test receiver and the tests share one
//! implementation with the consumer.

pub mod codec;
pub mod encoded;
pub mod go_text;
pub mod label_text;
pub mod limits;
pub mod metadata;
pub mod proto;
pub mod tenant;
