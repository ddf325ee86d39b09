//! Raw consumer baseline for `scripts/bench-consumer.sh`: reads every partition of a topic from
//! the beginning to its end on the same `rdkafka` crate as the consumer, without processing
//! (what `kcat -C -e` does; Debian's kcat cannot talk to tansu), and prints the rate. With no
//! `--property` it runs on librdkafka's default settings, the baseline a user compares with;
//! `--property key=value` (repeatable) sets others, e.g. the consumer's own fetch tuning.
//!
//! `cargo run --release -p logpipe-consumer --example raw_consume -- --bootstrap 127.0.0.1:9092 --topic logs`
//!
//! Output, one line: `records=N bytes=B seconds=S records_per_sec=R` (timed from the first
//! message to the end of the last partition; `total_seconds` includes connecting).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;

/// Consume a topic from the beginning to its end without processing; print records/s.
#[derive(Debug, Parser)]
struct Args {
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Topic to read.
    #[arg(long)]
    topic: String,
    /// A librdkafka property, `key=value` (repeatable); none means librdkafka's defaults.
    #[arg(long = "property", value_name = "KEY=VALUE")]
    properties: Vec<String>,
    /// Give up when no message arrives for this long.
    #[arg(long, default_value = "30s", value_parser = humantime_serde::re::humantime::parse_duration)]
    idle_timeout: Duration,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.bootstrap)
        .set("group.id", "raw-consume-baseline")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    for p in &args.properties {
        let (k, v) = p
            .split_once('=')
            .with_context(|| format!("--property {p:?} is not key=value"))?;
        config.set(k.trim(), v.trim());
    }
    let consumer: BaseConsumer = config.create().context("creating the consumer")?;
    let metadata = consumer
        .fetch_metadata(Some(&args.topic), Duration::from_secs(10))
        .context("fetching metadata")?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == args.topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        bail!("topic {:?} has no partitions (does it exist?)", args.topic);
    }
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition_offset(&args.topic, *p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;

    let (mut records, mut bytes) = (0u64, 0u64);
    let mut at_end = std::collections::BTreeSet::new();
    let mut first: Option<Instant> = None;
    let mut last_message = Instant::now();
    while at_end.len() < partitions.len() {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                records += 1;
                bytes += m.payload_len() as u64;
                at_end.remove(&m.partition());
                last_message = Instant::now();
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => eprintln!("raw_consume: {e}"),
            None if last_message.elapsed() > args.idle_timeout => {
                bail!(
                    "no message for {:?} after {records} records",
                    args.idle_timeout
                )
            }
            None => {}
        }
    }
    let seconds = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    println!(
        "records={records} bytes={bytes} seconds={seconds:.3} records_per_sec={:.0} total_seconds={:.3}",
        records as f64 / seconds.max(1e-9),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
