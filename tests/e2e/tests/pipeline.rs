//! The whole pipeline with real processes: `logs.json` (2,400 records) → the real `producer`
//! (HTTP ingest, `POST /v1/logs`) → Kafka (tansu, or the external Kafka) → the real `consumer`
//! → Loki (the Loki-compatible receiver, or the external Loki), while a real Prometheus scrapes
//! both services and Loki.
//!
//! The producer runs as a service (`producer run` without `--input`) rather than
//! `--once`: a `--once` producer exits when Kafka acknowledged its records, before Prometheus
//! could scrape its final counters, so its metrics would be unverifiable.

use std::time::{Duration, Instant};

use logpipe_e2e::pipeline::PipelineOptions;
use logpipe_e2e::records::{self, Expected};
use logpipe_e2e::scraped::ScrapedPipeline;

const WAIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_json_arrives_in_loki_exactly_once_field_by_field_and_prometheus_counts_it() {
    let started = Instant::now();
    let expected: Vec<Expected> = records::load(&records::logs_json()).expect("logs.json loads");
    assert_eq!(expected.len(), 2400, "logs.json holds 2,400 records");
    let n = expected.len();
    let scraped = ScrapedPipeline::start(
        PipelineOptions {
            accept_old_records: true,
            records_between: records::span(&expected),
            ..PipelineOptions::default()
        },
        Vec::new(),
    )
    .await
    .expect("pipeline and Prometheus start");
    let pipeline = &scraped.pipeline;

    let body = std::fs::read(records::logs_json()).expect("logs.json readable");
    let answer = scraped.post_logs(body).await.expect("POST /v1/logs");
    assert_eq!(answer["accepted"], n, "{answer}");
    assert_eq!(answer["rejected"], 0, "{answer}");

    pipeline
        .wait_stored(n, WAIT)
        .await
        .expect("every record reaches the receiver");
    let messages = pipeline.read_topic(n).await.expect("topic readable");
    pipeline
        .wait_committed(&logpipe_e2e::pipeline::ends_of(&messages), WAIT)
        .await
        .expect("the consumer commits every offset");

    // In Kafka: each record once, as its canonical JSON.
    let in_kafka: Vec<String> = messages.iter().map(|m| m.text()).collect();
    let mut in_kafka: Vec<&str> = in_kafka.iter().map(String::as_str).collect();
    in_kafka.sort_unstable();
    let mut want: Vec<&str> = expected.iter().map(|x| x.line.as_str()).collect();
    want.sort_unstable();
    assert!(
        in_kafka == want,
        "Kafka holds {} messages, not the {n} canonical records",
        in_kafka.len()
    );

    // In Loki: each record once, and every field as the contract says.
    let stored = pipeline.stored().await.expect("Loki queried");
    records::exactly_once(&expected, &stored).expect("each record exactly once in Loki");
    let problems = records::field_by_field(&expected, &stored, &pipeline.environment);
    assert!(
        problems.is_empty(),
        "{} differences between logs.json and Loki, first ones:\n{}",
        problems.len(),
        problems
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(stored.len(), n, "entries of this test in Loki");
    match pipeline.loki.receiver() {
        Some(receiver) => {
            let stats = receiver.stats();
            assert_eq!(stats.entries_stored, n as u64);
            assert_eq!(stats.duplicates, 0, "a clean run pushes every record once");
            assert!(
                stats.discarded.values().all(|v| *v == 0),
                "discards: {:?}",
                stats.discarded
            );
        }
        None => eprintln!(
            "e2e: external Loki: its duplicate-push, discard and lines-received counters cover \
             every test that shares it, so they are not compared with this test's records; each \
             record was checked once, field by field, through the query API instead"
        ),
    }

    // Through PromQL: both targets up, and the counters agree with what was sent and stored.
    let prom = &scraped.prometheus;
    for job in ["producer", "consumer"] {
        let up = prom
            .query_scalar(&format!("up{{job=\"{job}\"}}"))
            .await
            .expect("up query");
        assert_eq!(up, Some(1.0), "up{{job={job:?}}}");
    }
    let total = n as f64;
    for (query, want) in [
        (
            r#"sum(producer_records_read_total{job="producer",source="http"})"#,
            total,
        ),
        (r#"sum(producer_records_sent_total{job="producer"})"#, total),
        (
            r#"sum(producer_http_requests_total{job="producer",status="200"})"#,
            1.0,
        ),
        (r#"sum(producer_in_flight_records{job="producer"})"#, 0.0),
        (
            r#"sum(consumer_records_consumed_total{job="consumer"})"#,
            total,
        ),
        (
            r#"sum(consumer_records_pushed_total{job="consumer"})"#,
            total,
        ),
        (r#"sum(consumer_records_dlq_total{job="consumer"})"#, 0.0),
        (
            r#"sum(ingestion_errors_total{job=~"producer|consumer"})"#,
            0.0,
        ),
        (r#"sum(kafka_consumer_lag_sum{job="consumer"})"#, 0.0),
        (r#"sum(consumer_assigned_partitions{job="consumer"})"#, 3.0),
    ]
    .into_iter()
    // Loki's own counter: exact only when this test owns Loki.
    .chain(pipeline.loki.receiver().map(|_| {
        (
            r#"sum(loki_distributor_lines_received_total{job="loki"})"#,
            total,
        )
    })) {
        scraped
            .wait_promql(query, want, Duration::from_secs(60))
            .await
            .expect("the counters as Prometheus sees them match the run");
    }
    let bytes = prom
        .query_scalar(r#"sum(producer_bytes_sent_total{job="producer"})"#)
        .await
        .expect("bytes query");
    let want_bytes: usize = expected.iter().map(|x| x.line.len()).sum();
    assert_eq!(
        bytes,
        Some(want_bytes as f64),
        "value bytes acknowledged by Kafka"
    );
    eprintln!(
        "logs.json: {n} records end to end in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
