//! `--loop` on librdkafka's mock cluster: the file is replayed, each pass rebased to start at
//! now with the file's spacing kept, paced by `--rate`, until shutdown.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use producer::Source;
use producer::{FileOptions, Input};
use testkit::mock::MockKafka;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_replays_the_file_rebased_to_now_and_never_dated_in_the_future() {
    let mock = MockKafka::new(1).unwrap();
    mock.create_topic("logs", 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    // Ten records one second apart, in 2020.
    let text: String = (0..10)
        .map(|i| {
            format!(
                r#"{{"timestamp":"2020-01-01T00:00:{i:02}Z","level":"info","service":"api","message":"m","seq":{i}}}"#
            ) + "\n"
        })
        .collect();
    std::fs::write(&input, text).unwrap();
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let app = spawn_app(
        config(mock.bootstrap_servers(), "logs"),
        Source::File(FileOptions {
            input: Input::Path(input),
            repeat: true,
            rate: Some(200),
            rebase_timestamps: true,
            strict: false,
        }),
    )
    .await;
    let got = consume(
        mock.bootstrap_servers(),
        "logs",
        30,
        Duration::from_secs(30),
    )
    .await;
    let report = app.stop().await;
    assert!(report.sent >= 30, "{report}");
    assert_eq!(report.exit_code(), 0, "{report}");
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let mut got = got;
    got.sort_by_key(|m| m.offset);
    let ts: Vec<f64> = got
        .iter()
        .map(|m| {
            let t =
                schema::Timestamp::parse_rfc3339(m.json()["timestamp"].as_str().unwrap()).unwrap();
            t.as_nanos() as f64 / 1e9
        })
        .collect();
    for pass in ts.chunks(10).take(3) {
        assert!(
            pass[0] >= before - 1.0 && pass[0] <= after,
            "pass starts at now: {}",
            pass[0]
        );
    }
    // The file says one second apart but the replay runs at 200/s: records are stamped no later
    // than they were sent (Loki refuses the future), in order.
    assert!(
        ts.iter().all(|t| *t <= after),
        "no record dated in the future: {ts:?}"
    );
    assert!(
        ts.windows(2).all(|w| w[1] >= w[0]),
        "timestamps never go back: {ts:?}"
    );
    assert!(ts[10] > ts[0], "a later pass has later timestamps");
}
