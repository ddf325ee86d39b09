//! The receiver against a recorded real Loki: `tests/loki-conformance/` (a copy of the shared
//! `../shared/loki-conformance/` next to the repository, kept in the repository so that a
//! GitLab job, which has only the repository, runs these tests too) holds 93 requests sent to a real Grafana Loki, with its answers and what it
//! stored, in four groups of Loki flags. For each group, a fresh receiver is started with the
//! settings of the recording's `loki-config.yaml` plus the group's Loki flags (translated to the
//! receiver's equivalent flags, parsed by the real CLI), and the corpus' own `replay.py` is run
//! against it: every case of the group must come back SAME. A case the receiver cannot match
//! would be listed in the crate README; there is none.
//!
//! The corpus is required: when it is missing the tests fail, they do not skip. Where the shared
//! original is present, the copy must be identical to it (a new recording is not missed).

// As clippy.toml says for test functions: a failed unwrap in a test helper is a failed test
// with a backtrace.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use clap::Parser;
use schema::loki::go_text::parse_byte_size;
use serde_json::Value;
use testkit::loki::{LokiArgs, LokiReceiver};

/// The receiver's command line, as `testkit loki` parses it.
#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    loki: LokiArgs,
}

/// The corpus directory: `tests/loki-conformance` in the repository.
fn corpus() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/loki-conformance");
    assert!(
        dir.join("cases.jsonl").is_file() && dir.join("replay.py").is_file(),
        "the Loki conformance corpus is missing: expected cases.jsonl and replay.py in {}. \
         It is required: without it nothing shows that the receiver answers like a real Loki.",
        dir.display()
    );
    dir
}

#[test]
fn the_corpus_in_the_repository_is_the_shared_recording() {
    let copy = corpus();
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/loki-conformance");
    if !shared.is_dir() {
        // A clone without the shared folder beside it (a GitLab job): the copy is all there is.
        return;
    }
    for file in ["README.md", "cases.jsonl", "loki-config.yaml", "replay.py"] {
        let ours = std::fs::read(copy.join(file)).unwrap();
        let theirs = std::fs::read(shared.join(file)).unwrap();
        assert!(
            ours == theirs,
            "tests/loki-conformance/{file} differs from {}: copy the new recording in \
             (cp {}/* tests/loki-conformance/) and run the conformance tests",
            shared.join(file).display(),
            shared.display()
        );
    }
}

/// The Loki flags of `group` and how many cases it has.
fn group(dir: &std::path::Path, group: &str) -> (Vec<String>, usize) {
    let text = std::fs::read_to_string(dir.join("cases.jsonl")).unwrap();
    let cases: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|c: &Value| c["group"] == group)
        .collect();
    assert!(!cases.is_empty(), "no case of group {group} in the corpus");
    let flags = cases[0]["loki_flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .collect();
    (flags, cases.len())
}

/// The receiver flags equivalent to the recording's `loki-config.yaml`.
fn config_flags(dir: &std::path::Path) -> BTreeMap<String, Option<String>> {
    let yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(dir.join("loki-config.yaml")).unwrap())
            .unwrap();
    let limits = &yaml["limits_config"];
    let text = |v: &serde_yaml_ng::Value| -> String {
        match v {
            serde_yaml_ng::Value::String(s) => s.clone(),
            serde_yaml_ng::Value::Number(n) => n.to_string(),
            serde_yaml_ng::Value::Bool(b) => b.to_string(),
            other => panic!("unexpected value {other:?} in loki-config.yaml"),
        }
    };
    let bytes = |v: &serde_yaml_ng::Value| -> String {
        let t = text(v);
        parse_byte_size(&t)
            .unwrap_or_else(|| panic!("{t} is not a size"))
            .to_string()
    };
    let mut flags = BTreeMap::new();
    let mut set = |flag: &str, value: Option<String>| {
        flags.insert(flag.to_owned(), value);
    };
    if yaml["auth_enabled"].as_bool() == Some(true) {
        set("--auth-enabled", None);
    }
    // key in limits_config → receiver flag, value as the flag takes it.
    for (key, flag, convert) in [
        ("ingestion_rate_mb", "--ingestion-rate-mb", false),
        (
            "ingestion_burst_size_mb",
            "--ingestion-burst-size-mb",
            false,
        ),
        ("per_stream_rate_limit", "--per-stream-rate-limit", false),
        (
            "per_stream_rate_limit_burst",
            "--per-stream-rate-limit-burst",
            false,
        ),
        (
            "max_global_streams_per_user",
            "--max-streams-per-user",
            false,
        ),
        (
            "reject_old_samples_max_age",
            "--reject-old-samples-max-age",
            false,
        ),
        ("creation_grace_period", "--creation-grace-period", false),
        ("max_line_size", "--max-line-size", true),
        (
            "max_label_names_per_series",
            "--max-label-names-per-series",
            false,
        ),
        (
            "max_entries_limit_per_query",
            "--max-entries-limit-per-query",
            false,
        ),
    ] {
        let v = &limits[key];
        if !v.is_null() {
            set(flag, Some(if convert { bytes(v) } else { text(v) }));
        }
    }
    if limits["reject_old_samples"].as_bool() == Some(false) {
        set("--no-reject-old-samples", None);
    }
    assert_ne!(
        limits["max_line_size_truncate"].as_bool(),
        Some(true),
        "the receiver does not truncate lines"
    );
    let chunk_age = &yaml["ingester"]["max_chunk_age"];
    if !chunk_age.is_null() {
        set("--max-chunk-age", Some(text(chunk_age)));
    }
    let from = &yaml["schema_config"]["configs"][0]["from"];
    set("--schema-start", Some(text(from)));
    flags
}

/// The receiver flag for one of the group's Loki flags (`-name=value`).
fn translate(loki_flag: &str) -> (String, Option<String>) {
    let (name, value) = loki_flag
        .trim_start_matches('-')
        .split_once('=')
        .unwrap_or_else(|| panic!("Loki flag {loki_flag} has no value"));
    let flag = match name {
        "auth.enabled" => {
            assert_eq!(value, "true", "{loki_flag}");
            return ("--auth-enabled".to_owned(), None);
        }
        "distributor.ingestion-rate-limit-mb" => "--ingestion-rate-mb",
        "distributor.ingestion-burst-size-mb" => "--ingestion-burst-size-mb",
        "distributor.max-recv-msg-size" => "--max-body-bytes",
        "distributor.max-decompressed-size" => "--max-decompressed-size",
        "ingester.per-stream-rate-limit" => "--per-stream-rate-limit",
        "ingester.per-stream-rate-limit-burst" => "--per-stream-rate-limit-burst",
        "ingester.max-global-streams-per-user" => "--max-streams-per-user",
        other => {
            panic!("the corpus runs Loki with -{other}, which has no receiver equivalent: add one")
        }
    };
    (flag.to_owned(), Some(value.to_owned()))
}

async fn replay(name: &str) {
    let dir = corpus();
    let (loki_flags, cases) = group(&dir, name);
    let mut flags = config_flags(&dir);
    for f in &loki_flags {
        let (flag, value) = translate(f);
        flags.insert(flag, value);
    }
    let mut argv = vec![
        "loki".to_owned(),
        "--listen".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--control-listen".to_owned(),
        "127.0.0.1:0".to_owned(),
    ];
    for (flag, value) in &flags {
        argv.push(flag.clone());
        argv.extend(value.clone());
    }
    let config = Cli::try_parse_from(&argv)
        .unwrap_or_else(|e| panic!("receiver flags {argv:?}: {e}"))
        .loki
        .config();
    let loki = LokiReceiver::start(config).await.unwrap();
    let url = loki.url().to_owned();
    let script = dir.join("replay.py");
    let group = name.to_owned();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(&script)
            .arg(&url)
            .arg("--flags-group")
            .arg(&group)
            .output()
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("cannot run python3 (it is on every machine): {e}"));
    loki.shutdown().await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let summary = stdout.lines().rev().find(|l| !l.trim().is_empty());
    let want = format!("{cases} passed, 0 failed");
    assert!(
        output.status.success() && summary == Some(want.as_str()),
        "replay.py --flags-group {name} against the receiver (flags {argv:?}) did not report \
         every case SAME (want {want:?}):\n{stdout}\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_answers_and_stores_like_the_recorded_loki() {
    replay("default").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_checks_tenants_like_the_recorded_multi_tenant_loki() {
    replay("auth").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_limits_rates_and_bodies_like_the_recorded_loki() {
    replay("limits").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_limits_streams_like_the_recorded_loki() {
    replay("streamlimits").await;
}
