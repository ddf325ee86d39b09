//! The consumer against real programs: a tansu broker and the Loki-compatible receiver.
//! Every test uses a fresh topic and group, and polls with deadlines instead of sleeping.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::*;
use schema::labels::LabelPolicy;
use testkit::loki::{Faults, StatusStorm, FAKE_TENANT};

fn logs_json_records() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../logs.json");
    let text = std::fs::read_to_string(path).expect("logs.json");
    let values: Vec<serde_json::Value> = serde_json::from_str(&text).expect("array");
    values.iter().map(|v| v.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_of_logs_json_arrives_with_its_labels_metadata_line_and_timestamp() {
    let env = Env::new(3).await;
    let mut rc = open_receiver_config();
    rc.limits.reject_old_samples = false;
    let loki = receiver(rc).await;
    let records = logs_json_records();
    env.produce_records(&records).await;
    let mut config = env.config(&loki);
    config.loki_reject_old_samples_max_age = Duration::ZERO;
    let app = spawn_app(config);
    let n = records.len();
    assert!(
        wait_until(Duration::from_secs(90), || async {
            loki.entries(FAKE_TENANT).len() >= n
        })
        .await,
        "only {} of {n} arrived",
        loki.entries(FAKE_TENANT).len()
    );
    let stored = loki.entries(FAKE_TENANT);
    assert_eq!(stored.len(), n, "each record exactly once");
    let by_line: HashMap<&str, &testkit::loki::StoredEntry> =
        stored.iter().map(|e| (e.line.as_str(), e)).collect();
    let policy = LabelPolicy::with_environment("test");
    for raw in &records {
        let rec = schema::parse_record(raw).unwrap();
        let line = rec.to_json();
        let got = by_line
            .get(line.as_str())
            .unwrap_or_else(|| panic!("missing {line}"));
        assert_eq!(got.timestamp, rec.timestamp.as_nanos());
        let want_labels = policy.labels_for(&rec);
        for (k, v) in want_labels.pairs() {
            assert_eq!(got.labels.get(k), Some(v.as_str()), "label {k} of {line}");
        }
        let mut want_meta = policy.metadata_for(&rec);
        want_meta.sort();
        let mut got_meta = got.metadata.clone();
        got_meta.sort();
        assert_eq!(got_meta, want_meta, "metadata of {line}");
    }
    // Loki answers a push with its last stream's result only: a push of several streams could
    // hide one's rejected entries behind a 204. Every push carries one stream.
    let stats = loki.stats();
    assert_eq!(stats.multi_stream_pushes, 0, "{stats:?}");
    assert!(stats.requests_with(204) > 1, "{stats:?}");
    let summary = app.shutdown().await;
    assert_eq!(summary.abandoned, 0);
    assert_eq!(
        env.committed_sum(3),
        n as i64,
        "every offset committed after delivery"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_go_to_the_dead_letter_topic_and_the_partition_keeps_flowing() {
    let env = Env::new(1).await;
    let loki = receiver(open_receiver_config()).await;
    let good = fresh_records(20, 7);
    let mut items: Vec<(Option<String>, Vec<u8>)> = Vec::new();
    for (i, r) in good.iter().enumerate() {
        items.push((Some("svc".into()), r.clone().into_bytes()));
        if i % 5 == 0 {
            items.push((Some("svc".into()), format!("not json {i}").into_bytes()));
            items.push((
                Some("svc".into()),
                br#"{"timestamp":"yesterday","level":"info","service":"a","message":"m"}"#.to_vec(),
            ));
        }
    }
    env.produce_raw(&items, false).await;
    let app = spawn_app(env.config(&loki));
    assert!(
        wait_until(Duration::from_secs(60), || async {
            loki.entries(FAKE_TENANT).len() >= 20
        })
        .await
    );
    let dlq = env.read_dlq(8);
    assert_eq!(dlq.len(), 8);
    for (value, headers) in &dlq {
        let h: HashMap<_, _> = headers.iter().cloned().collect();
        assert!(
            h["dlq-reason"] == "invalid_json" || h["dlq-reason"] == "invalid_timestamp",
            "{h:?}"
        );
        assert_eq!(h["dlq-source-topic"], env.topic);
        assert_eq!(h["dlq-source-partition"], "0");
        assert!(h.contains_key("dlq-source-offset") && h.contains_key("dlq-error"));
        assert!(!value.is_empty());
    }
    let total = items.len() as i64;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            env.committed_sum(1) == total
        })
        .await,
        "offsets advance past poison messages: committed {} of {total}",
        env.committed_sum(1)
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_with_partial_acceptance_dead_letters_exactly_the_rejected_entries() {
    let env = Env::new(1).await;
    let mut rc = open_receiver_config();
    rc.limits.max_line_size = 600; // the receiver is stricter than the consumer's pre-flight
    let loki = receiver(rc).await;
    let mut records = fresh_records(200, 11);
    // Make every 25th record too long for the receiver, in the same streams as good ones.
    for (i, r) in records.iter_mut().enumerate() {
        let mut v: serde_json::Value = serde_json::from_str(r).unwrap();
        if i % 25 == 3 {
            v["padding"] = serde_json::Value::String("x".repeat(700));
        }
        v["service"] = serde_json::Value::String("one-service".into());
        v["level"] = serde_json::Value::String("info".into());
        *r = v.to_string();
    }
    let long = records
        .iter()
        .filter(|r| schema::parse_record(r).unwrap().to_json().len() > 600)
        .count();
    assert!(long >= 8);
    env.produce_records(&records).await;
    let app = spawn_app(env.config(&loki));
    let good = records.len() - long;
    assert!(
        wait_until(Duration::from_secs(60), || async {
            env.committed_sum(1) == records.len() as i64
        })
        .await,
        "committed {}",
        env.committed_sum(1)
    );
    let stored = loki.entries(FAKE_TENANT);
    assert_eq!(stored.len(), good, "every good entry once");
    assert!(stored.iter().all(|e| e.line.len() <= 600));
    let dlq = env.read_dlq(long);
    assert_eq!(dlq.len(), long, "exactly the rejected entries");
    for (value, headers) in &dlq {
        assert!(value.len() > 600);
        let h: HashMap<_, _> = headers.iter().cloned().collect();
        assert_eq!(h["dlq-reason"], "line_too_long");
        assert!(h["dlq-error"].contains("max entry size"));
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_with_retry_after_is_honoured_and_nothing_is_lost() {
    let env = Env::new(2).await;
    let loki = receiver(open_receiver_config()).await;
    loki.set_faults(Faults {
        status_storm: Some(StatusStorm {
            code: 429,
            rate: 1.0,
            retry_after_secs: Some(1),
        }),
        ..Faults::default()
    })
    .await
    .unwrap();
    let records = fresh_records(300, 3);
    env.produce_records(&records).await;
    let app = spawn_app(env.config(&loki));
    assert!(
        wait_until(Duration::from_secs(20), || async {
            app.metric("loki_push_requests_total", &[("status", "429")]) >= 2.0
        })
        .await
    );
    assert_eq!(loki.entries(FAKE_TENANT).len(), 0);
    assert_eq!(
        env.committed_sum(2),
        0,
        "nothing committed while Loki refuses"
    );
    loki.clear_faults().await.unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || async {
            loki.entries(FAKE_TENANT).len() >= 300
        })
        .await
    );
    assert_eq!(loki.entries(FAKE_TENANT).len(), 300);
    assert!(app.metric("loki_push_retries_total", &[("reason", "rate_limited")]) >= 2.0);
    app.shutdown().await;
    assert_eq!(env.committed_sum(2), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_commits_and_nothing_is_redelivered_on_restart() {
    let env = Env::new(3).await;
    let loki = receiver(open_receiver_config()).await;
    let records = fresh_records(500, 5);
    env.produce_records(&records).await;
    let mut config = env.config(&loki);
    config.batch_max_wait = Duration::from_secs(30); // only the shutdown flush sends the tail
    config.batch_max_records = 64;
    let app = spawn_app(config.clone());
    assert!(
        wait_until(Duration::from_secs(30), || async {
            app.metric("consumer_records_consumed_total", &[]) >= 500.0
        })
        .await
    );
    let summary = app.shutdown().await;
    assert_eq!(summary.abandoned, 0);
    assert_eq!(loki.entries(FAKE_TENANT).len(), 500);
    assert_eq!(env.committed_sum(3), 500);
    let stats_before = loki.stats();
    let app = spawn_app(config);
    tokio::time::sleep(Duration::from_secs(3)).await; // a restart that re-read would push by now
    assert_eq!(app.metric("consumer_records_consumed_total", &[]), 0.0);
    app.shutdown().await;
    assert_eq!(loki.stats().lines_received, stats_before.lines_received);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_outage_loses_nothing_holds_memory_bounded_and_readiness_tells() {
    let env = Env::new(3).await;
    let loki = refusing_receiver().await;
    let records = fresh_records(3000, 9);
    env.produce_records(&records).await;
    let mut config = env.config(&loki);
    config.buffer_max_records = 500;
    config.batch_max_records = 100;
    let app = spawn_app(config);
    // At the bound reading just stops; the partitions are paused (which costs a re-fetch on
    // resume) only once the buffer stayed full for PAUSE_AFTER (5 s).
    assert!(
        wait_until(Duration::from_secs(20), || async {
            app.metric("consumer_buffered_records", &[]) >= 500.0
        })
        .await,
        "the buffer fills while the receiver is down: {} held",
        app.metric("consumer_buffered_records", &[])
    );
    assert_eq!(
        app.metric("consumer_paused", &[]),
        0.0,
        "not paused the moment the buffer is full"
    );
    assert!(
        wait_until(Duration::from_secs(20), || async {
            app.metric("consumer_paused", &[]) == 1.0
        })
        .await,
        "consumption pauses when the buffer stays full"
    );
    let held = app.metric("consumer_buffered_records", &[]);
    assert!(held <= 500.0 + 100.0, "held {held}");
    assert!(
        wait_until(Duration::from_secs(20), || async {
            app.metric("kafka_consumer_lag_sum", &[]) > 0.0
        })
        .await,
        "lag is visible during the outage"
    );
    assert_eq!(env.committed_sum(3), 0);
    loki.clear_faults().await.unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || async {
            loki.entries(FAKE_TENANT).len() >= 3000
        })
        .await,
        "{} arrived",
        loki.entries(FAKE_TENANT).len()
    );
    assert_eq!(loki.entries(FAKE_TENANT).len(), 3000);
    assert!(
        wait_until(Duration::from_secs(20), || async {
            env.committed_sum(3) == 3000
        })
        .await
    );
    assert!(
        wait_until(Duration::from_secs(20), || async {
            app.metric("kafka_consumer_lag_sum", &[]) == 0.0
        })
        .await,
        "lag drains"
    );
    app.shutdown().await;
}

/// During an outage the attempts against Loki stay bounded by the in-flight limit and the
/// back-off, however many batches are queued (here 60): a Loki-wide gate, not one retry loop per
/// batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_against_a_down_receiver_do_not_grow_with_the_queued_batches() {
    let env = Env::new(3).await;
    let loki = refusing_receiver().await;
    let records = fresh_records(3000, 19);
    env.produce_records(&records).await;
    let mut config = env.config(&loki);
    config.batch_max_records = 50;
    config.buffer_max_records = 5000;
    config.retry_min_backoff = Duration::from_millis(50);
    config.retry_max_backoff = Duration::from_millis(500);
    let in_flight = config.max_in_flight_pushes as f64;
    let app = spawn_app(config);
    let attempts = || app.metric("loki_push_requests_total", &[("status", "network")]);
    assert!(
        wait_until(Duration::from_secs(30), || async {
            app.metric("consumer_buffered_records", &[]) >= 3000.0 && attempts() > 0.0
        })
        .await,
        "every record read and held: {}",
        app.metric("consumer_buffered_records", &[])
    );
    let before = attempts();
    let window = Duration::from_secs(5);
    tokio::time::sleep(window).await;
    let during = attempts() - before;
    // The gate reopens at most every 250 ms (half the 500 ms cap, the jitter's floor) once the
    // back-off has grown; each opening lets at most `in_flight` pushes through. One retry loop
    // per batch would make ~60 batches x 13 attempts here.
    let bound = in_flight * (window.as_secs_f64() / 0.25 + 6.0);
    assert!(
        during <= bound,
        "{during} attempts in {window:?} with 60 batches queued (bound {bound})"
    );
    loki.clear_faults().await.unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || async {
            loki.entries(FAKE_TENANT).len() >= 3000
        })
        .await,
        "{} arrived",
        loki.entries(FAKE_TENANT).len()
    );
    assert_eq!(loki.entries(FAKE_TENANT).len(), 3000);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_answers_stop_consumption_and_commit_nothing_until_fixed() {
    let env = Env::new(1).await;
    let mut rc = open_receiver_config();
    rc.auth_enabled = true; // no X-Scope-OrgID → 401
    let loki = receiver(rc).await;
    env.produce_records(&fresh_records(50, 1)).await;
    let app = spawn_app(env.config(&loki));
    assert!(
        wait_until(Duration::from_secs(20), || async {
            app.metric("consumer_loki_misconfigured", &[]) == 1.0
        })
        .await
    );
    assert!(
        wait_until(Duration::from_secs(5), || async {
            app.metric("consumer_paused", &[]) == 1.0
        })
        .await
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(env.committed_sum(1), 0);
    app.shutdown().await;
    assert_eq!(
        env.committed_sum(1),
        0,
        "nothing committed at shutdown either"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_and_resuming_many_times_skips_no_record() {
    // librdkafka purges prefetched messages on pause, and some brokers answer a fetch from the
    // middle of a record batch with the next batch: the consumer must seek back, never skip.
    let env = Env::new(3).await;
    let loki = receiver(open_receiver_config()).await;
    let records = fresh_records(3000, 21);
    env.produce_records(&records).await;
    let mut config = env.config(&loki);
    config.buffer_max_records = 200;
    config.batch_max_records = 50;
    config.batch_max_wait = Duration::from_millis(50);
    let app = spawn_app(config);
    assert!(
        wait_until(Duration::from_secs(120), || async {
            env.committed_sum(3) == 3000
        })
        .await,
        "committed {} of 3000, stored {}",
        env.committed_sum(3),
        loki.entries(FAKE_TENANT).len()
    );
    let stored: HashSet<String> = loki
        .entries(FAKE_TENANT)
        .into_iter()
        .map(|e| e.line)
        .collect();
    assert_eq!(stored.len(), 3000, "every record once");
    for r in &records {
        let line = schema::parse_record(r).unwrap().to_json();
        assert!(stored.contains(&line), "missing {line}");
    }
    app.shutdown().await;
}

/// A record dated after the consumer's idea of Loki's schema start but before the real one's:
/// Loki (here the receiver, as recorded from a real Loki) answers its push with a 500 for
/// good. The consumer must not retry it forever: once Loki has shown it accepts other pushes,
/// exactly those records go to the dead-letter topic and every offset is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_loki_fails_for_good_with_a_500_go_to_the_dlq_and_the_partition_moves_on() {
    let env = Env::new(1).await;
    let mut rc = open_receiver_config();
    rc.limits.reject_old_samples = false;
    rc.limits.schema_start =
        schema::Timestamp::parse_rfc3339("2024-01-01T00:00:00Z").expect("time");
    let loki = receiver(rc).await;
    let old = |service: &str, i: u32| {
        format!(
            r#"{{"timestamp":"2022-06-0{i}T00:00:00Z","level":"error","service":"{service}","message":"dated before the schema {i}"}}"#
        )
    };
    let good = fresh_records(300, 41);
    // Alone in their streams, early and in the middle; one first in a stream of new records
    // (the whole push fails until the old one is split off); good records after all of them.
    let mut records = vec![old("legacy-a", 1)];
    records.extend_from_slice(&good[..100]);
    records.push(old("legacy-b", 2));
    records.extend_from_slice(&good[100..200]);
    records.push(old("legacy-mixed", 3));
    let now = schema::Timestamp::now().to_rfc3339();
    let mixed: Vec<String> = (0..4)
        .map(|i| {
            format!(
                r#"{{"timestamp":"{now}","level":"error","service":"legacy-mixed","message":"new {i}"}}"#
            )
        })
        .collect();
    records.extend(mixed.iter().cloned());
    records.extend_from_slice(&good[200..]);
    env.produce_records(&records).await;

    let mut config = env.config(&loki);
    config.loki_reject_old_samples_max_age = Duration::ZERO;
    config.loki_persistent_error_attempts = 3;
    config.retry_min_backoff = Duration::from_millis(20);
    config.retry_max_backoff = Duration::from_millis(200);
    let app = spawn_app(config);
    let canonical = |r: &String| schema::parse_record(r).expect("record").to_json();
    let expected_stored: HashSet<String> = good.iter().chain(&mixed).map(canonical).collect();
    assert!(
        wait_until(Duration::from_secs(90), || async {
            loki.entries(FAKE_TENANT).len() >= expected_stored.len()
        })
        .await,
        "only {} of {} good records arrived",
        loki.entries(FAKE_TENANT).len(),
        expected_stored.len()
    );
    let dlq = env.read_dlq(3);
    let total = records.len() as i64;
    assert!(
        wait_until(Duration::from_secs(30), || async {
            env.committed_sum(1) == total
        })
        .await,
        "every offset committed (lag back to 0): {} of {total}",
        env.committed_sum(1)
    );
    let stored = loki.entries(FAKE_TENANT);
    let lines: Vec<&str> = stored.iter().map(|e| e.line.as_str()).collect();
    assert_eq!(
        lines.len(),
        expected_stored.len(),
        "each good record exactly once"
    );
    assert_eq!(
        lines
            .iter()
            .map(|l| (*l).to_owned())
            .collect::<HashSet<_>>(),
        expected_stored
    );
    let expected_dead: HashSet<String> = [
        old("legacy-a", 1),
        old("legacy-b", 2),
        old("legacy-mixed", 3),
    ]
    .iter()
    .map(canonical)
    .collect();
    let dead: HashSet<String> = dlq
        .iter()
        .map(|(v, _)| String::from_utf8(v.clone()).expect("utf8"))
        .collect();
    assert_eq!(dlq.len(), 3, "exactly the three records, once each");
    assert_eq!(dead, expected_dead);
    for (_, headers) in &dlq {
        let h: HashMap<_, _> = headers.iter().cloned().collect();
        assert_eq!(h["dlq-reason"], "loki_persistent_error", "{h:?}");
        assert!(h["dlq-error"].contains("no schema config found"), "{h:?}");
    }
    assert!(
        app.metric(
            "ingestion_errors_total",
            &[("stage", "loki"), ("reason", "persistent_error")]
        ) >= 3.0
    );
    app.shutdown().await;
}

/// The other side of the rule above: a Loki answering every push with a 500 is down, however
/// long it lasts and however the answers repeat. Nothing is dead-lettered, nothing committed,
/// and everything arrives once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loki_failing_every_push_with_500_dead_letters_nothing() {
    let env = Env::new(2).await;
    let loki = receiver(open_receiver_config()).await;
    loki.set_faults(Faults {
        status_storm: Some(StatusStorm {
            code: 500,
            rate: 1.0,
            retry_after_secs: None,
        }),
        ..Faults::default()
    })
    .await
    .unwrap();
    let records = fresh_records(200, 17);
    env.produce_records(&records).await;
    let mut config = env.config(&loki);
    config.loki_persistent_error_attempts = 2;
    config.retry_min_backoff = Duration::from_millis(10);
    config.retry_max_backoff = Duration::from_millis(50);
    let app = spawn_app(config);
    // Far more 500s per push than the threshold.
    assert!(
        wait_until(Duration::from_secs(30), || async {
            app.metric("loki_push_requests_total", &[("status", "500")]) >= 40.0
        })
        .await
    );
    assert_eq!(
        env.committed_sum(2),
        0,
        "nothing committed while Loki fails"
    );
    loki.clear_faults().await.unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || async {
            loki.entries(FAKE_TENANT).len() >= records.len()
        })
        .await
    );
    let total = records.len() as i64;
    assert!(
        wait_until(Duration::from_secs(30), || async {
            env.committed_sum(2) == total
        })
        .await
    );
    assert_eq!(loki.entries(FAKE_TENANT).len(), records.len());
    let dead: f64 = [
        "loki_persistent_error",
        "retries_exhausted",
        "loki_rejected",
    ]
    .iter()
    .map(|r| app.metric("consumer_records_dlq_total", &[("reason", r)]))
    .sum();
    assert_eq!(dead, 0.0, "an outage dead-letters nothing");
    app.shutdown().await;
}

/// The issue's case, caught before sending: a record dated 2019 with the age check off
/// (`LOKI_REJECT_OLD_SAMPLES_MAX_AGE=0s`, as users replaying old logs set it) is before Loki's
/// schema start (`LOKI_SCHEMA_START`, 2020-10-24), which Loki would answer with a 500 forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_before_the_schema_start_is_dead_lettered_before_sending() {
    let env = Env::new(1).await;
    let mut rc = open_receiver_config();
    rc.limits.reject_old_samples = false;
    let loki = receiver(rc).await;
    let old = r#"{"timestamp":"2019-03-01T12:00:00Z","level":"info","service":"replayed","message":"from 2019"}"#;
    let good = fresh_records(50, 23);
    let mut records = good[..25].to_vec();
    records.push(old.to_owned());
    records.extend_from_slice(&good[25..]);
    env.produce_records(&records).await;
    let mut config = env.config(&loki);
    config.loki_reject_old_samples_max_age = Duration::ZERO;
    let app = spawn_app(config);
    let dlq = env.read_dlq(1);
    assert_eq!(dlq.len(), 1);
    let h: HashMap<_, _> = dlq[0].1.iter().cloned().collect();
    assert_eq!(h["dlq-reason"], "before_schema_start", "{h:?}");
    assert_eq!(
        String::from_utf8(dlq[0].0.clone()).unwrap(),
        schema::parse_record(old).unwrap().to_json()
    );
    let total = records.len() as i64;
    assert!(
        wait_until(Duration::from_secs(30), || async {
            env.committed_sum(1) == total
        })
        .await
    );
    assert_eq!(loki.entries(FAKE_TENANT).len(), good.len());
    assert_eq!(
        app.metric("loki_push_requests_total", &[("status", "500")]),
        0.0,
        "nothing Loki would fail was sent"
    );
    app.shutdown().await;
}

/// Adds `"team": team` to a record.
fn with_team(record: &str, team: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(record).expect("record");
    v["team"] = serde_json::Value::from(team);
    v.to_string()
}

/// Tenants from a record field (`LOKI_TENANT_FIELD`), against a receiver with auth on and a
/// per-tenant ingestion rate that one tenant exceeds: every record reaches its own tenant once,
/// no push mixes tenants, the throttled tenant never delays the other, a tenant Loki would
/// refuse goes to the dead-letter topic, and offsets wait for every tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_gets_its_records_and_one_tenants_429s_do_not_stall_another() {
    let env = Env::new(1).await;
    let mut rc = open_receiver_config();
    rc.auth_enabled = true;
    // About 60 KB/s per tenant: the noisy tenant's ~1 MB takes many seconds, the quiet one's
    // few KB fit in the burst.
    rc.ingestion_rate_mb = 0.06;
    rc.ingestion_burst_size_mb = 0.1;
    let loki = receiver(rc).await;
    let base = fresh_records(3000, 29);
    let mut records = Vec::new();
    let (mut noisy, mut quiet, mut shared) = (Vec::new(), Vec::new(), Vec::new());
    for (i, r) in base.iter().enumerate() {
        let r = match i % 60 {
            0 => with_team(r, "quiet"),
            1 => r.clone(),
            _ => with_team(r, "noisy"),
        };
        match i % 60 {
            0 => quiet.push(r.clone()),
            1 => shared.push(r.clone()),
            _ => noisy.push(r.clone()),
        }
        records.push(r);
    }
    let refused = with_team(&base[0], "a|b");
    records.insert(1500, refused.clone());
    env.produce_records(&records).await;

    let mut config = env.config(&loki);
    config.loki_tenant_field = "team".into();
    config.loki_tenant_id = "shared".into();
    // A push bigger than the tenant's burst never passes: split after three 429s.
    config.loki_persistent_error_attempts = 3;
    config.retry_min_backoff = Duration::from_millis(50);
    config.retry_max_backoff = Duration::from_millis(400);
    let app = spawn_app(config);
    assert!(
        wait_until(Duration::from_secs(60), || async {
            loki.entries("quiet").len() >= quiet.len()
                && loki.entries("shared").len() >= shared.len()
        })
        .await,
        "the quiet tenants' records arrive: quiet {} of {}, shared {} of {}",
        loki.entries("quiet").len(),
        quiet.len(),
        loki.entries("shared").len(),
        shared.len()
    );
    // At that moment the noisy tenant is still being throttled.
    let noisy_then = loki.entries("noisy").len();
    assert!(
        noisy_then < noisy.len(),
        "noisy was not throttled: {noisy_then}"
    );
    assert!(loki.stats().requests_with(429) > 0, "{:?}", loki.stats());
    assert!(
        wait_until(Duration::from_secs(120), || async {
            loki.entries("noisy").len() >= noisy.len()
        })
        .await,
        "noisy: {} of {}",
        loki.entries("noisy").len(),
        noisy.len()
    );
    let canonical = |r: &String| schema::parse_record(r).expect("record").to_json();
    for (tenant, sent) in [("noisy", &noisy), ("quiet", &quiet), ("shared", &shared)] {
        let stored: Vec<String> = loki
            .entries(tenant)
            .iter()
            .map(|e| e.line.clone())
            .collect();
        assert_eq!(
            stored.len(),
            sent.len(),
            "{tenant}: each record exactly once"
        );
        let want: HashSet<String> = sent.iter().map(canonical).collect();
        assert_eq!(
            stored.into_iter().collect::<HashSet<_>>(),
            want,
            "{tenant} holds exactly its own records"
        );
    }
    let dlq = env.read_dlq(1);
    assert_eq!(dlq.len(), 1);
    let h: HashMap<_, _> = dlq[0].1.iter().cloned().collect();
    assert_eq!(h["dlq-reason"], "invalid_tenant", "{h:?}");
    assert_eq!(
        String::from_utf8(dlq[0].0.clone()).unwrap(),
        canonical(&refused)
    );
    let total = records.len() as i64;
    assert!(
        wait_until(Duration::from_secs(30), || async {
            env.committed_sum(1) == total
        })
        .await
    );
    assert!(
        app.metric(
            "consumer_tenant_push_retries_total",
            &[("tenant", "noisy"), ("reason", "rate_limited")]
        ) > 0.0
    );
    assert_eq!(
        app.metric(
            "consumer_tenant_push_retries_total",
            &[("tenant", "quiet"), ("reason", "rate_limited")]
        ),
        0.0
    );
    assert_eq!(
        app.metric(
            "consumer_tenant_records_pushed_total",
            &[("tenant", "quiet")]
        ),
        quiet.len() as f64
    );
    app.shutdown().await;
}
