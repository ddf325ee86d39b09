//! Criterion benchmarks of the schema crate's hot paths:
//! - read + validate + normalise ~250-byte records (target ≥ 1,000,000 records/s on one core);
//! - Loki protobuf + snappy encoding of 1,000-entry batches (target ≥ 1,000,000 entries/s).
//!
//! Run: `cargo bench -p logpipe-schema --bench schema`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::io::Cursor;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use schema::loki::codec::encode_json;
use schema::loki::encoded::{EncodedEntries, SnappyScratch};
use schema::{parse_record, LabelPolicy, LogRecord, RecordReader};

const SERVICES: [&str; 8] = [
    "api-gateway",
    "auth-service",
    "user-service",
    "order-service",
    "payment-service",
    "inventory-service",
    "notification-service",
    "search-service",
];
const LEVELS: [&str; 4] = ["info", "debug", "warn", "error"];

/// One realistic ~250-byte record.
fn record(i: usize) -> String {
    format!(
        r#"{{"timestamp":"2026-11-25T{:02}:{:02}:{:02}.{:03}Z","level":"{}","service":"{}","message":"GET /api/v1/orders/{} completed","host":"{}-7f9c-{}","trace_id":"{:032x}","span_id":"{:016x}","http":{{"method":"GET","status":200,"duration_ms":{}}}}}"#,
        (i / 3600) % 24,
        (i / 60) % 60,
        i % 60,
        i % 1000,
        LEVELS[i % LEVELS.len()],
        SERVICES[i % SERVICES.len()],
        i,
        SERVICES[i % SERVICES.len()],
        i % 4,
        (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834),
        (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        i % 500,
    )
}

fn ndjson(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        out.extend_from_slice(record(i).as_bytes());
        out.push(b'\n');
    }
    out
}

fn array(n: usize) -> Vec<u8> {
    let mut out = b"[\n".to_vec();
    for i in 0..n {
        if i > 0 {
            out.extend_from_slice(b",\n");
        }
        out.extend_from_slice(b"  ");
        out.extend_from_slice(record(i).as_bytes());
    }
    out.extend_from_slice(b"\n]\n");
    out
}

fn read_validate_normalise(c: &mut Criterion) {
    const N: usize = 100_000;
    let mut group = c.benchmark_group("read_validate_normalise");
    group.throughput(Throughput::Elements(N as u64));
    for (name, input) in [("ndjson", ndjson(N)), ("array", array(N))] {
        let avg = input.len() / N;
        group.bench_function(format!("{name}_{avg}B"), |b| {
            let mut out = Vec::with_capacity(512);
            b.iter(|| {
                let mut reader = RecordReader::new(Cursor::new(&input));
                let mut n = 0usize;
                while let Some(item) = reader.next_record() {
                    let rec = item.expect("valid input");
                    out.clear();
                    rec.record.write_json(&mut out);
                    n += out.len();
                }
                black_box(n)
            });
        });
    }
    group.finish();
}

/// Adds a record's entry to `entries` as the consumer does: the canonical line, the record's
/// timestamp, the policy's metadata fields.
fn push_entry(
    entries: &mut EncodedEntries<()>,
    record: &LogRecord<'_>,
    line: &str,
    policy: &LabelPolicy,
) {
    let metadata: Vec<(&str, std::borrow::Cow<'_, str>)> = policy
        .metadata_fields
        .iter()
        .filter_map(|f| record.field_str(f).map(|v| (f.as_str(), v)))
        .collect();
    entries.push(
        record.timestamp.as_nanos(),
        line,
        metadata.iter().map(|(n, v)| (*n, v.as_ref())),
        (),
    );
}

fn loki_encode(c: &mut Criterion) {
    const N: usize = 1_000;
    let policy = LabelPolicy::with_environment("bench");
    let lines: Vec<String> = (0..N)
        .map(|i| parse_record(&record(i)).expect("valid").to_json())
        .collect();
    let labels = policy
        .labels_for(&parse_record(&lines[0]).expect("valid"))
        .to_string();
    let mut entries = EncodedEntries::new();
    for line in &lines {
        push_entry(
            &mut entries,
            &parse_record(line).expect("valid"),
            line,
            &policy,
        );
    }
    let mut group = c.benchmark_group("loki_encode");
    group.throughput(Throughput::Elements(N as u64));
    // What a push costs the consumer: its stream's encoded entries behind a header, snappy.
    group.bench_function("protobuf_snappy_1000", |b| {
        let mut scratch = SnappyScratch::default();
        b.iter(|| {
            let body = entries
                .snappy_push(black_box(&labels), 0..N, &mut scratch)
                .expect("encodes");
            black_box(body.len())
        });
    });
    group.bench_function("json_1000", |b| {
        b.iter(|| {
            let push = entries.push_request(&labels, 0..N).expect("decodes");
            black_box(encode_json(black_box(&push)).expect("encodes").len())
        });
    });
    // The consumer's whole path per record: parse and validate, encode into the stream's
    // batch, then the push.
    group.bench_function("build_and_encode_1000", |b| {
        let mut scratch = SnappyScratch::default();
        b.iter(|| {
            let mut batch = EncodedEntries::new();
            for line in &lines {
                push_entry(
                    &mut batch,
                    &parse_record(line).expect("valid"),
                    line,
                    &policy,
                );
            }
            let body = batch
                .snappy_push(&labels, 0..N, &mut scratch)
                .expect("encodes");
            black_box(body.len())
        });
    });
    group.finish();
}

criterion_group!(benches, read_validate_normalise, loki_encode);
criterion_main!(benches);
