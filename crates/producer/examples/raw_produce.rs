//! The raw baseline of `scripts/bench-producer.sh`: sends a file's lines to Kafka as they are
//! (no parsing, no validation, no key, no headers), what `kcat -P -l` does, with the producer
//! service's librdkafka settings ([`producer::client_config`]), and waits until Kafka
//! acknowledged every line.
//!
//! `cargo run --release -p logpipe-producer --example raw_produce -- BOOTSTRAP TOPIC FILE [--key]
//! [--headers]`
//!
//! `--key` keys each message by the line's `"service"` value, found by a byte search (no JSON
//! parsing), and `--headers` adds the record headers: together they isolate what parsing,
//! validation and encoding cost from what keyed partitioning and headers cost.

use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

/// Counts delivery reports.
#[derive(Default)]
struct Counter {
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Counter {}

impl ProducerContext for Counter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.delivered.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// The bytes of the first `"service":"..."` value, by byte search (SIMD, as fast as finding a
/// key gets without parsing, so the keyed baseline is not slowed by the search).
fn service_of(line: &[u8]) -> Option<&[u8]> {
    const NEEDLE: &[u8] = b"\"service\":\"";
    let start = memchr::memmem::find(line, NEEDLE)? + NEEDLE.len();
    let len = memchr::memchr(b'"', &line[start..])?;
    Some(&line[start..start + len])
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (positional, flags): (Vec<&String>, Vec<&String>) =
        args.iter().partition(|a| !a.starts_with("--"));
    let [bootstrap, topic, path] = positional.as_slice() else {
        bail!("usage: raw_produce BOOTSTRAP TOPIC FILE [--key] [--headers]");
    };
    let with_key = flags.iter().any(|f| *f == "--key");
    let with_headers = flags.iter().any(|f| *f == "--headers");
    let headers = producer::record_headers();
    let mut config = producer::ProducerConfig::default();
    config.kafka.bootstrap_servers = (*bootstrap).clone();
    config.kafka.topic = (*topic).clone();
    let producer: ThreadedProducer<Counter> = producer::client_config(&config)
        .create_with_context(Counter::default())
        .context("cannot create the producer")?;
    // Like the producer's start-up check (and kcat's first metadata request): know the topic
    // before the first message, so neither run waits on librdkafka's metadata refresh.
    producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .context("cannot fetch the topic's metadata")?;
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut line = Vec::with_capacity(4096);
    let started = Instant::now();
    let mut sent = 0u64;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let value = line.strip_suffix(b"\n").unwrap_or(&line);
        if value.is_empty() {
            continue;
        }
        let key = if with_key { service_of(value) } else { None };
        loop {
            let mut record = BaseRecord::<[u8], [u8]>::to(topic).payload(value);
            if let Some(k) = key {
                record = record.key(k);
            }
            if with_headers {
                record = record.headers(headers.clone());
            }
            match producer.send(record) {
                Ok(()) => break,
                Err((e, _)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => bail!("send failed: {e}"),
            }
        }
        sent += 1;
    }
    // rdkafka's blocking flush waits in 100 ms steps; wait as the producer does (send what
    // lingers, then watch the count of messages in flight).
    producer.flush(Duration::ZERO).ok();
    let deadline = Instant::now() + Duration::from_secs(300);
    while producer.in_flight_count() > 0 {
        if Instant::now() >= deadline {
            bail!(
                "{} messages still in flight after 300 s",
                producer.in_flight_count()
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let ctx = producer.context();
    let delivered = ctx.delivered.load(Ordering::Relaxed);
    let failed = ctx.failed.load(Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "raw_produce records={sent} delivered={delivered} failed={failed} seconds={secs:.3} rate={:.0}",
        delivered as f64 / secs
    );
    if delivered != sent {
        bail!("{} records not delivered", sent - delivered);
    }
    Ok(())
}
