//! The `producer` binary's commands that need no broker: `validate` exit codes, `--help`,
//! configuration errors and the start-up line.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;

fn logs_json() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../logs.json")
}

#[tokio::test]
async fn validate_exits_0_65_and_66() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.ndjson");
    std::fs::write(&good, lines(0, 10)).unwrap();
    let bad = dir.path().join("bad.ndjson");
    std::fs::write(&bad, lines(0, 3) + "{\"timestamp\":1,\"level\":\"loud\",\"service\":\"a\",\"message\":\"m\"}\nnot json\n").unwrap();
    let run = |p: &std::path::Path| {
        std::process::Command::new(producer_bin())
            .args(["validate", p.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = run(&good);
    assert_eq!(out.status.code(), Some(0));
    let out = run(&logs_json());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = run(&bad);
    assert_eq!(out.status.code(), Some(65));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&format!("{}:4: record 3: invalid_level:", bad.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!("{}:5: record 4: invalid_json:", bad.display())),
        "{text}"
    );
    let out = run(&dir.path().join("missing.json"));
    assert_eq!(out.status.code(), Some(66));
}

#[test]
fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["validate", "--help"],
        &["healthcheck", "--help"],
    ] {
        let out = std::process::Command::new(producer_bin())
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
    }
}

#[test]
fn an_invalid_setting_fails_before_start_naming_the_key() {
    let out = std::process::Command::new(producer_bin())
        .args(["run"])
        .env("KAFKA_COMPRESSION", "brotli")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("kafka_compression") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn an_empty_ingest_token_file_fails_before_start_naming_the_variable_and_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("ingest_token");
    for content in ["", "\n"] {
        std::fs::write(&token, content).unwrap();
        let out = std::process::Command::new(producer_bin())
            .args(["run"])
            .env_clear()
            .env("INGEST_TOKEN_FILE", &token)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(78), "{content:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.contains("INGEST_TOKEN_FILE")
                && err.contains(token.to_str().unwrap())
                && err.lines().count() == 1,
            "{content:?}: {err}"
        );
    }
}

#[tokio::test]
async fn the_start_line_says_whether_ingest_needs_a_token_without_showing_it() {
    let dir = tempfile::tempdir().unwrap();
    for (token, auth) in [("SxstartQ1K", "bearer_token"), ("", "none")] {
        let stderr = dir.path().join(format!("{auth}.log"));
        // Nothing listens on port 1: the start line comes before Kafka is contacted.
        let _p = spawn_producer(
            &["run"],
            &[
                ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1".to_owned()),
                ("HTTP_LISTEN", "127.0.0.1:0".to_owned()),
                ("INGEST_TOKEN", token.to_owned()),
            ],
            &stderr,
        );
        let read = || std::fs::read_to_string(&stderr).unwrap_or_default();
        eventually(Duration::from_secs(30), "the start line", || {
            read().contains("producer starting")
        })
        .await;
        let text = read();
        let line = text
            .lines()
            .find(|l| l.contains("producer starting"))
            .unwrap();
        assert!(
            line.contains(&format!("\"ingest_auth\":\"{auth}\"")),
            "{line}"
        );
        assert!(!text.contains("SxstartQ1K"), "{text}");
    }
}
