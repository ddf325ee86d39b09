//! Criterion benchmarks of the schema crate's hot paths:
//! - read + validate + normalise ~250-byte records (target ≥ 1,000,000 records/s on one core);
//! - Loki protobuf + snappy encoding of 1,000-entry batches (target ≥ 1,000,000 entries/s).
//!
//! Run: `cargo bench -p logpipe-schema --bench schema`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::io::Cursor;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use schema::loki::codec::{encode_json, ProtobufEncoder};
use schema::loki::{entry_for, PushBuilder};
use schema::{parse_record, LabelPolicy, RecordReader};

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

fn loki_encode(c: &mut Criterion) {
    const N: usize = 1_000;
    let policy = LabelPolicy::with_environment("bench");
    let lines: Vec<String> = (0..N).map(record).collect();
    let mut builder = PushBuilder::new();
    for line in &lines {
        let r = parse_record(line).expect("valid");
        let (labels, entry) = entry_for(&r, &policy);
        builder.push(&labels, entry);
    }
    let push = builder.finish();
    let mut group = c.benchmark_group("loki_encode");
    group.throughput(Throughput::Elements(N as u64));
    group.bench_function("protobuf_snappy_1000", |b| {
        let mut enc = ProtobufEncoder::new();
        let mut out = Vec::new();
        b.iter(|| {
            enc.encode(black_box(&push), &mut out).expect("encodes");
            black_box(out.len())
        });
    });
    group.bench_function("json_1000", |b| {
        b.iter(|| black_box(encode_json(black_box(&push)).expect("encodes").len()));
    });
    group.bench_function("build_and_encode_1000", |b| {
        let mut enc = ProtobufEncoder::new();
        let mut out = Vec::new();
        b.iter(|| {
            let mut builder = PushBuilder::new();
            for line in &lines {
                let r = parse_record(line).expect("valid");
                let (labels, entry) = entry_for(&r, &policy);
                builder.push(&labels, entry);
            }
            enc.encode(&builder.finish(), &mut out).expect("encodes");
            black_box(out.len())
        });
    });
    group.finish();
}

criterion_group!(benches, read_validate_normalise, loki_encode);
criterion_main!(benches);
