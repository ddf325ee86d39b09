//! `consumer audit` against real programs: a tansu broker, a `consumer` process delivering to
//! the Loki-compatible receiver, and entries removed from the receiver on purpose. The audit
//! must find exactly those, count dead letters and duplicates where they are, call records the
//! consumer has not reached pending, page through entries sharing a timestamp, and exit 0 only
//! when nothing is missing. Polls with deadlines; nothing sleeps and hopes.

mod common;
mod tools;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use testkit::loki::{LokiHandle, FAKE_TENANT};
use testkit::service::{Finished, ServiceProcess};
use tools::*;

const SEC: i64 = 1_000_000_000;

/// A pipeline under audit: topics, receiver, a consumer process, and what was produced.
struct Pipeline {
    env: Env,
    loki: LokiHandle,
    consumer: ServiceProcess,
    /// Settings beyond the common ones (tenants).
    extra: Vec<(&'static str, String)>,
    /// Holds the consumer's log folder.
    _logs: tempfile::TempDir,
    /// Messages produced so far.
    produced: i64,
}

impl Pipeline {
    async fn start() -> Self {
        Self::start_with(open_receiver_config(), Vec::new()).await
    }

    async fn start_with(
        loki: testkit::loki::LokiConfig,
        extra: Vec<(&'static str, String)>,
    ) -> Self {
        let env = Env::new(3).await;
        let loki = receiver(loki).await;
        let logs = tempfile::tempdir().expect("log folder");
        let mut v = Self::consumer_vars(&env, &loki);
        v.extend(extra.iter().cloned());
        let consumer = start_consumer("consumer", vars(&v), logs.path()).await;
        Self {
            env,
            loki,
            consumer,
            extra,
            _logs: logs,
            produced: 0,
        }
    }

    /// The settings of the consumer and of its audits.
    fn settings(&self) -> Vec<(String, String)> {
        let mut v = Self::consumer_vars(&self.env, &self.loki);
        v.extend(self.extra.iter().cloned());
        vars(&v)
    }

    fn consumer_vars(env: &Env, loki: &LokiHandle) -> Vec<(&'static str, String)> {
        vec![
            ("KAFKA_BOOTSTRAP_SERVERS", env.broker.bootstrap_servers()),
            ("KAFKA_TOPIC", env.topic.clone()),
            ("KAFKA_DLQ_TOPIC", env.dlq.clone()),
            ("KAFKA_GROUP_ID", env.group.clone()),
            ("KAFKA_SESSION_TIMEOUT", "6s".into()),
            ("LOKI_URL", loki.url().to_owned()),
            ("BATCH_MAX_WAIT", "200ms".into()),
            ("KAFKA_COMMIT_INTERVAL", "200ms".into()),
            ("ENVIRONMENT", "test".into()),
            ("LOKI_MAX_LINE_SIZE", "2048".into()),
        ]
    }

    async fn produce(&mut self, lines: &[String]) {
        self.env.produce_records(lines).await;
        self.produced += lines.len() as i64;
    }

    async fn produce_poison(&mut self, n: usize) {
        let items: Vec<(Option<String>, Vec<u8>)> = (0..n)
            .map(|i| {
                (
                    Some("svc-p".to_owned()),
                    format!("not json {i}").into_bytes(),
                )
            })
            .collect();
        self.env.produce_raw(&items, true).await;
        self.produced += n as i64;
    }

    async fn committed_sum(&self) -> i64 {
        committed(
            &self.env.broker.bootstrap_servers(),
            &self.env.group,
            &self.env.topic,
            3,
        )
        .await
        .values()
        .map(|o| o.unwrap_or(0))
        .sum()
    }

    /// Waits until the consumer committed everything produced and Loki holds `entries`.
    async fn delivered(&self, entries: usize) {
        self.delivered_to(&[FAKE_TENANT], entries).await;
    }

    /// Waits until the consumer committed everything produced and `tenants` hold `entries`.
    async fn delivered_to(&self, tenants: &[&str], entries: usize) {
        let held = || {
            tenants
                .iter()
                .map(|t| self.loki.entries(t).len())
                .sum::<usize>()
        };
        assert!(
            wait_until(Duration::from_secs(90), || async {
                self.committed_sum().await == self.produced && held() >= entries
            })
            .await,
            "delivered: committed {} of {}, Loki holds {} of {entries}\n{}",
            self.committed_sum().await,
            self.produced,
            held(),
            self.consumer.log_tail(30)
        );
        assert_eq!(held(), entries);
    }

    /// `consumer audit ARGS --format json` with the consumer's settings.
    async fn audit(&self, args: &[&str]) -> (Finished, Value) {
        let mut all = vec!["audit"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--format", "json", "--max-queries-per-second", "50"]);
        let finished = run_consumer(&all, &self.settings(), Duration::from_secs(120)).await;
        let value = if finished.stdout.trim().is_empty() {
            Value::Null
        } else {
            report(&finished)
        };
        (finished, value)
    }

    /// Where each line sits in the main topic.
    async fn offsets_of_lines(&self) -> HashMap<String, Vec<(i32, i64)>> {
        let mut out: HashMap<String, Vec<(i32, i64)>> = HashMap::new();
        for r in read_all(&self.env.broker.bootstrap_servers(), &self.env.topic).await {
            out.entry(r.text())
                .or_default()
                .push((r.partition, r.offset));
        }
        out
    }
}

fn exit_code(f: &Finished) -> Option<i32> {
    f.status.code()
}

fn total(r: &Value, column: &str) -> i64 {
    r["total"][column]
        .as_i64()
        .unwrap_or_else(|| panic!("total.{column} in {r}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_topic_audits_clean_with_dead_letters_duplicates_and_shared_timestamps_accounted_for(
) {
    let mut p = Pipeline::start().await;
    let now = now_ns();
    let mut lines = Vec::new();
    // 40 groups of three entries of one stream sharing a timestamp: pages end inside them.
    for g in 0..40i64 {
        for k in 0..3 {
            lines.push(line(
                now - 300 * SEC + g * SEC,
                "svc-a",
                "info",
                &format!("group {g} entry {k}"),
            ));
        }
    }
    // Ten entries of another stream at one timestamp: more than a small page holds.
    for k in 0..10 {
        lines.push(line(
            now - 200 * SEC,
            "svc-b",
            "warn",
            &format!("crowd {k}"),
        ));
    }
    for i in 0..150i64 {
        let service = format!("svc-{}", i % 5);
        let level = ["debug", "info", "error"][(i % 3) as usize];
        lines.push(line(
            now - 100 * SEC + i * 1_000_000,
            &service,
            level,
            &format!("plain {i}"),
        ));
    }
    let duplicated = line(now - 50 * SEC, "svc-c", "info", "said twice");
    lines.push(duplicated.clone());
    lines.push(duplicated.clone());
    let long = "x".repeat(3000);
    for i in 0..5 {
        lines.push(line(
            now - 40 * SEC + i,
            "svc-c",
            "error",
            &format!("too long {i} {long}"),
        ));
    }
    p.produce(&lines).await;
    p.produce_poison(2).await;
    let unique_entries = 120 + 10 + 150 + 1;
    p.delivered(unique_entries).await;

    let (f, r) = p.audit(&["--since", "30m"]).await;
    assert_eq!(exit_code(&f), Some(0), "{}\n{}", f.stdout, f.stderr);
    assert_eq!(total(&r, "in_kafka"), p.produced);
    assert_eq!(total(&r, "in_loki"), unique_entries as i64);
    assert_eq!(total(&r, "duplicates"), 1);
    assert_eq!(total(&r, "in_dlq"), 5 + 2);
    for column in [
        "missing",
        "extra",
        "pending",
        "unverified",
        "beyond_horizon",
    ] {
        assert_eq!(total(&r, column), 0, "{column}: {r}");
    }
    assert_eq!(r["result"], "ok");
    assert_eq!(r["streams"]["(not a record)"]["in_dlq"], 2);
    let svc_c = r["streams"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.contains("service=\"svc-c\"") && k.contains("level=\"info\""))
        .map(|(_, v)| v.clone())
        .unwrap();
    assert_eq!(
        (
            svc_c["in_kafka"].as_i64(),
            svc_c["in_loki"].as_i64(),
            svc_c["duplicates"].as_i64()
        ),
        (Some(2), Some(1), Some(1))
    );
    let per_partition: i64 = r["partitions"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| c["in_kafka"].as_i64().unwrap())
        .sum();
    assert_eq!(per_partition, p.produced);

    // Small pages: the groups are read across page ends; the crowd of ten is more than a page
    // can hold at one timestamp, so three of it are unverified — not missing.
    let (f, r) = p
        .audit(&["--since", "30m", "--max-entries-per-query", "7"])
        .await;
    assert_eq!(exit_code(&f), Some(0), "{}\n{}", f.stdout, f.stderr);
    assert_eq!(total(&r, "unverified"), 3, "{r}");
    assert_eq!(total(&r, "in_loki"), unique_entries as i64 - 3);
    assert_eq!(total(&r, "missing"), 0);
    assert!(r["loki_work"]["queries"].as_i64().unwrap() > (unique_entries / 7) as i64);
    assert!(r["limits"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l.as_str().unwrap().contains("unverified")));

    // The same by offsets, partition by partition: nothing missing, extras not counted.
    let (f, r) = p
        .audit(&[
            "--offsets",
            "0:0-",
            "--offsets",
            "1:0-",
            "--offsets",
            "2:0-",
        ])
        .await;
    assert_eq!(exit_code(&f), Some(0), "{}\n{}", f.stdout, f.stderr);
    assert_eq!(total(&r, "in_kafka"), p.produced);
    assert_eq!(total(&r, "missing"), 0);
    assert_eq!(r["extras_counted"], false);

    // Records the consumer has not reached are pending, not missing.
    p.consumer.terminate(Duration::from_secs(30)).await.unwrap();
    let later: Vec<String> = (0..10)
        .map(|i| line(now_ns() - SEC + i, "svc-d", "info", &format!("later {i}")))
        .collect();
    p.produce(&later).await;
    let (f, r) = p.audit(&["--since", "30m"]).await;
    assert_eq!(exit_code(&f), Some(0), "{}\n{}", f.stdout, f.stderr);
    assert_eq!(total(&r, "pending"), 10);
    assert_eq!(total(&r, "missing"), 0);
    let text = run_consumer(
        &["audit", "--since", "30m"],
        &p.settings(),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(exit_code(&text), Some(0), "{}", text.stderr);
    assert!(
        text.stdout.contains("result: nothing missing"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("pending"), "{}", text.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_lost_by_loki_are_found_exactly_and_the_audit_exits_non_zero() {
    let mut p = Pipeline::start().await;
    let now = now_ns();
    let lines: Vec<String> = (0..100i64)
        .map(|i| {
            let service = format!("svc-{}", i % 4);
            line(
                now - 120 * SEC + i * 10_000_000,
                &service,
                "info",
                &format!("record {i}"),
            )
        })
        .collect();
    p.produce(&lines).await;
    let long = "y".repeat(3000);
    let too_long: Vec<String> = (0..3)
        .map(|i| {
            line(
                now - 60 * SEC + i,
                "svc-0",
                "error",
                &format!("long {i} {long}"),
            )
        })
        .collect();
    p.produce(&too_long).await;
    p.delivered(lines.len()).await;

    // Loki loses four entries.
    let lost: Vec<&String> = [3usize, 17, 58, 99].iter().map(|&i| &lines[i]).collect();
    let body = json!({
        "entries": lost.iter().map(|l| json!({
            "timestamp": schema::parse_record(l).unwrap().timestamp.as_nanos().to_string(),
            "line": l,
        })).collect::<Vec<_>>()
    });
    let answer: Value = reqwest::Client::new()
        .post(format!("{}/control/delete", p.loki.control_url()))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["removed"], 4);
    // And holds one entry nobody sent through Kafka.
    let stranger = line(now - 30 * SEC, "svc-1", "info", "written by someone else");
    let push = json!({"streams": [{
        "stream": {"environment": "test", "level": "info", "service": "svc-1", "source": "kafka"},
        "values": [[schema::parse_record(&stranger).unwrap().timestamp.as_nanos().to_string(), stranger]],
    }]});
    let status = reqwest::Client::new()
        .post(p.loki.push_url())
        .json(&push)
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "{status}");

    let at = p.offsets_of_lines().await;
    let want: BTreeSet<(i64, i64)> = lost
        .iter()
        .map(|l| {
            let (p, o) = at[l.as_str()][0];
            (i64::from(p), o)
        })
        .collect();

    let (f, r) = p.audit(&["--since", "1h"]).await;
    assert_eq!(exit_code(&f), Some(3), "{}\n{}", f.stdout, f.stderr);
    assert_eq!(r["result"], "missing");
    assert_eq!(total(&r, "missing"), 4);
    assert_eq!(total(&r, "in_loki"), 96);
    assert_eq!(total(&r, "in_dlq"), 3);
    assert_eq!(total(&r, "extra"), 1);
    let got: BTreeSet<(i64, i64)> = r["missing_sample"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["partition"].as_i64().unwrap(),
                m["offset"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, want, "exactly the lost records");
    for m in r["missing_sample"].as_array().unwrap() {
        let line = m["line"].as_str().unwrap();
        assert!(
            lost.iter()
                .any(|l| l.starts_with(line.trim_end_matches('…'))),
            "{line}"
        );
        assert!(m["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    let extra = &r["extra_sample"][0];
    assert!(
        extra["line"]
            .as_str()
            .unwrap()
            .contains("written by someone else"),
        "{extra}"
    );
    let missing_per_partition: i64 = r["partitions"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| c["missing"].as_i64().unwrap())
        .sum();
    assert_eq!(missing_per_partition, 4);

    // An offset range holding one lost record finds just that one.
    let (lost_p, lost_o) = *want.iter().next().unwrap();
    let range = format!("{lost_p}:{lost_o}-{}", lost_o + 1);
    let (f, r) = p.audit(&["--offsets", &range]).await;
    assert_eq!(exit_code(&f), Some(3), "{}\n{}", f.stdout, f.stderr);
    assert_eq!((total(&r, "in_kafka"), total(&r, "missing")), (1, 1));
    assert_eq!(total(&r, "extra"), 0, "extras are not counted for offsets");

    // The text report says the same for people.
    let text = run_consumer(
        &["audit", "--since", "1h"],
        &p.settings(),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(exit_code(&text), Some(3));
    assert!(
        text.stdout.contains("result: 4 records missing"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("missing (first 4 of 4)"),
        "{}",
        text.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_record_is_looked_for_in_its_own_tenant() {
    let mut loki = open_receiver_config();
    loki.auth_enabled = true;
    let mut p = Pipeline::start_with(
        loki,
        vec![
            ("LOKI_TENANT_FIELD", "team".into()),
            ("LOKI_TENANT_ID", "shared".into()),
        ],
    )
    .await;
    let now = now_ns();
    let with_team = |i: i64, team: Option<&str>| {
        let mut v: Value = serde_json::from_str(&line(
            now - 60 * SEC + i * 1_000_000,
            "svc-t",
            "info",
            &format!("tenant record {i}"),
        ))
        .unwrap();
        if let Some(team) = team {
            v["team"] = Value::from(team);
        }
        schema::parse_record(&v.to_string()).unwrap().to_json()
    };
    let mut lines: Vec<String> = Vec::new();
    for i in 0..30 {
        let team = match i % 3 {
            0 => Some("team-a"),
            1 => Some("team-b"),
            _ => None,
        };
        lines.push(with_team(i, team));
    }
    // A tenant Loki refuses sends its record to the dead-letter topic.
    lines.push(with_team(99, Some("bad/team")));
    p.produce(&lines).await;
    p.delivered_to(&["team-a", "team-b", "shared"], 30).await;

    let (f, r) = p.audit(&["--since", "1h"]).await;
    assert_eq!(exit_code(&f), Some(0), "{}\n{}", f.stdout, f.stderr);
    assert_eq!(total(&r, "in_loki"), 30);
    assert_eq!(total(&r, "in_dlq"), 1);
    assert_eq!(r["streams"]["(tenant refused)"]["in_dlq"], 1);
    for tenant in ["team-a", "team-b", "shared"] {
        let in_loki: i64 = r["streams"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("[{tenant}] ")))
            .map(|(_, v)| v["in_loki"].as_i64().unwrap())
            .sum();
        assert_eq!(in_loki, 10, "{tenant}: {r}");
    }

    // team-b loses one entry: exactly that one is missing, in team-b's stream.
    let lost = &lines[4];
    let ts = schema::parse_record(lost).unwrap().timestamp.as_nanos();
    assert_eq!(p.loki.remove_entries("team-b", &[(ts, lost.clone())]), 1);
    let (f, r) = p.audit(&["--since", "1h"]).await;
    assert_eq!(exit_code(&f), Some(3), "{}\n{}", f.stdout, f.stderr);
    assert_eq!(total(&r, "missing"), 1);
    let m = &r["missing_sample"][0];
    assert!(
        m["stream"].as_str().unwrap().starts_with("[team-b] "),
        "{m}"
    );
    assert!(
        lost.starts_with(m["line"].as_str().unwrap().trim_end_matches('…')),
        "{m}"
    );
}
