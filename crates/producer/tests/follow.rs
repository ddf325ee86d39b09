//! `--follow` against tansu: appends, partial lines, rotation, truncation, and a `producer`
//! process killed with SIGKILL and restarted, idle (the checkpoint must have caught up with the
//! acknowledgements by itself, without waiting for the next poll of the file) and while sending
//! (the restart must find what Kafka stored after the checkpoint and not send it again). Either
//! way nothing may be skipped or repeated.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use producer::Checkpoint;
use producer::Source;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use testkit::broker::{unique_name, Broker, BrokerOptions};

const WAIT: Duration = Duration::from_secs(60);

async fn broker_and_topic(prefix: &str) -> (Broker, String) {
    let broker = Broker::start(BrokerOptions::memory()).await.unwrap();
    let topic = unique_name(prefix);
    broker.create_topic(&topic, 3).await.unwrap();
    (broker, topic)
}

fn checkpoint_offset(path: &Path) -> Option<u64> {
    Checkpoint::load(path).ok().flatten().map(|c| c.offset)
}

/// A file followed by `producer` processes: the broker and topic, the file `app.log` and the
/// checkpoint `ck.json` in a temporary folder.
struct Followed {
    broker: Broker,
    topic: String,
    dir: tempfile::TempDir,
    log: PathBuf,
    ck: PathBuf,
    poll: &'static str,
}

impl Followed {
    /// `content` written to the file, polled every `poll`.
    async fn new(prefix: &str, content: &str, poll: &'static str) -> Self {
        let (broker, topic) = broker_and_topic(prefix).await;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        let ck = dir.path().join("ck.json");
        std::fs::write(&log, content).unwrap();
        Self {
            broker,
            topic,
            dir,
            log,
            ck,
            poll,
        }
    }

    /// Starts `producer run --follow` on the file, its stderr in `<name>.log`.
    fn spawn(&self, name: &str) -> Proc {
        let env = [
            ("KAFKA_BOOTSTRAP_SERVERS", self.broker.bootstrap_servers()),
            ("KAFKA_TOPIC", self.topic.clone()),
            ("CHECKPOINT_PATH", self.ck.display().to_string()),
            ("FOLLOW_POLL_INTERVAL", self.poll.to_owned()),
        ];
        let args = ["run", "--input", self.log.to_str().unwrap(), "--follow"];
        spawn_producer(&args, &env, &self.stderr(name))
    }

    fn stderr(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    fn len(&self) -> u64 {
        std::fs::metadata(&self.log).unwrap().len()
    }

    async fn consume(&self, want: usize, within: Duration) -> Vec<Received> {
        consume(&self.broker.bootstrap_servers(), &self.topic, want, within).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_sends_appended_lines_once_and_waits_for_the_newline_of_a_partial_line() {
    let (broker, topic) = broker_and_topic("follow-append").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    std::fs::write(&log, lines(0, 100)).unwrap();
    let app = spawn_app(
        config(&broker.bootstrap_servers(), &topic),
        Source::Follow(log.clone()),
    )
    .await;
    let got = consume(&broker.bootstrap_servers(), &topic, 100, WAIT).await;
    assert_exactly_once(&got, 100);

    append(&log, &lines(100, 200));
    let partial = line(200);
    append(&log, &partial[..partial.len() / 2]);
    let ck = dir.path().join("app.log.checkpoint");
    let whole = std::fs::metadata(&log).unwrap().len() - (partial.len() / 2) as u64;
    eventually(WAIT, "checkpoint before the partial line", || {
        checkpoint_offset(&ck) == Some(whole)
    })
    .await;
    let got = consume(&broker.bootstrap_servers(), &topic, 200, WAIT).await;
    assert_exactly_once(&got, 200);

    append(&log, &partial[partial.len() / 2..]);
    let len = std::fs::metadata(&log).unwrap().len();
    eventually(WAIT, "checkpoint at the end", || {
        checkpoint_offset(&ck) == Some(len)
    })
    .await;
    let report = app.stop().await;
    assert_eq!(report.sent, 201);
    let got = consume(&broker.bootstrap_servers(), &topic, 201, WAIT).await;
    assert_exactly_once(&got, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_finishes_a_rotated_file_then_reads_the_new_one_from_its_start() {
    let (broker, topic) = broker_and_topic("follow-rotate").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    std::fs::write(&log, lines(0, 100)).unwrap();
    let app = spawn_app(
        config(&broker.bootstrap_servers(), &topic),
        Source::Follow(log.clone()),
    )
    .await;
    let got = consume(&broker.bootstrap_servers(), &topic, 100, WAIT).await;
    assert_exactly_once(&got, 100);
    // The last writes to the old file land just before the rotation.
    append(&log, &lines(100, 150));
    std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    std::fs::write(&log, lines(150, 250)).unwrap();
    let got = consume(&broker.bootstrap_servers(), &topic, 250, WAIT).await;
    assert_exactly_once(&got, 250);
    let ck = dir.path().join("app.log.checkpoint");
    let len = std::fs::metadata(&log).unwrap().len();
    eventually(WAIT, "checkpoint on the new file", || {
        checkpoint_offset(&ck) == Some(len)
    })
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_reads_a_truncated_file_again_from_its_start() {
    let (broker, topic) = broker_and_topic("follow-truncate").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    std::fs::write(&log, lines(0, 100)).unwrap();
    let app = spawn_app(
        config(&broker.bootstrap_servers(), &topic),
        Source::Follow(log.clone()),
    )
    .await;
    let got = consume(&broker.bootstrap_servers(), &topic, 100, WAIT).await;
    assert_exactly_once(&got, 100);
    // copytruncate: same inode, shorter content.
    let f = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
    f.set_len(0).unwrap();
    drop(f);
    append(&log, &lines(100, 130));
    let got = consume(&broker.bootstrap_servers(), &topic, 130, WAIT).await;
    assert_exactly_once(&got, 130);
    app.stop().await;
}

#[tokio::test]
async fn follow_refuses_a_json_array_with_a_clear_error() {
    let (broker, topic) = broker_and_topic("follow-array").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.json");
    std::fs::write(&log, format!("[\n{}]\n", line(0))).unwrap();
    let app = spawn_app(
        config(&broker.bootstrap_servers(), &topic),
        Source::Follow(log),
    )
    .await;
    let err = tokio::time::timeout(WAIT, app.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("--follow needs NDJSON"), "{err}");
}

/// A SIGKILL more than the checkpoint interval after Kafka acknowledged everything re-sends
/// nothing, even while the producer sleeps in a long poll wait: the acknowledgements that came in
/// after it went idle were written without waiting for the next poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_killed_with_sigkill_during_a_long_poll_wait_sends_nothing_again() {
    // A poll interval far longer than the test: the file is read once at the start, then only
    // the acknowledgements can move the checkpoint.
    let f = Followed::new("follow-kill-idle", &lines(0, 300), "10m").await;
    let mut p = f.spawn("first");
    assert_exactly_once(&f.consume(300, WAIT).await, 300);
    // Every record is in Kafka, so acknowledged (or about to be): well past the checkpoint
    // interval later, the checkpoint must name the end of the file.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        checkpoint_offset(&f.ck),
        Some(f.len()),
        "checkpoint 1 s after every record reached Kafka, the producer idle in its poll wait"
    );
    signal(p.0.id(), "-KILL");
    wait_exit(&mut p, WAIT).await;
    append(&f.log, &lines(300, 400));
    let mut p = f.spawn("second");
    let len = f.len();
    eventually(WAIT, "checkpoint at the end after the restart", || {
        checkpoint_offset(&f.ck) == Some(len)
    })
    .await;
    signal(p.0.id(), "-TERM");
    let status = wait_exit(&mut p, WAIT).await;
    assert_eq!(status.code(), Some(0));
    assert_exactly_once(&f.consume(400, WAIT).await, 400);
}

/// Killed once its checkpoint caught up with the whole file, then restarted after more lines,
/// a rotation and a new file: the restart finishes the rotated file from the checkpoint, then
/// reads the new one, skipping and repeating nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_killed_with_sigkill_resumes_at_its_checkpoint_across_a_rotation() {
    let f = Followed::new("follow-kill", &lines(0, 1000), "50ms").await;
    let mut p = f.spawn("first");
    let len = f.len();
    eventually(WAIT, "first checkpoint at the end", || {
        checkpoint_offset(&f.ck) == Some(len)
    })
    .await;
    signal(p.0.id(), "-KILL");
    wait_exit(&mut p, WAIT).await;
    // While it is down: more lines, a rotation, and a new file.
    append(&f.log, &lines(1000, 1500));
    std::fs::rename(&f.log, f.dir.path().join("app.log.1")).unwrap();
    std::fs::write(&f.log, lines(1500, 2000)).unwrap();
    let mut p = f.spawn("second");
    let len = f.len();
    eventually(WAIT, "checkpoint at the end of the new file", || {
        Checkpoint::load(&f.ck).ok().flatten().is_some_and(|c| {
            c.offset == len
                && c.inode
                    == std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&f.log).unwrap())
        })
    })
    .await;
    signal(p.0.id(), "-TERM");
    let status = wait_exit(&mut p, WAIT).await;
    assert_eq!(status.code(), Some(0));
    assert_exactly_once(&f.consume(2000, WAIT).await, 2000);
}

/// Killed while it is sending (its checkpoint, written at most every 100 ms, behind what Kafka
/// stored, and records in flight), then restarted: the restart reads what Kafka stored after
/// the checkpoint and sends only the rest, so every record is in the topic exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_killed_with_sigkill_while_sending_repeats_nothing_and_skips_nothing() {
    const N: u64 = 60_000;
    let f = Followed::new("follow-kill-busy", &lines(0, N), "50ms").await;
    let len = f.len();
    let text = lines(0, N);
    let records_before = |offset: u64| {
        text.as_bytes()
            .iter()
            .take(offset as usize)
            .filter(|&&b| b == b'\n')
            .count() as i64
    };
    let mut p = f.spawn("first");
    // Killed once Kafka holds clearly more than the checkpoint covers (the checkpoint is
    // written at most every 100 ms): the window a restart must not send again.
    let watermarks: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", f.broker.bootstrap_servers())
        .create()
        .unwrap();
    let stored = || -> i64 {
        // tansu's high watermark is at or below the real end: a lower bound of what is stored.
        (0..3)
            .map(|partition| {
                watermarks
                    .fetch_watermarks(&f.topic, partition, Duration::from_secs(5))
                    .map_or(0, |(_, high)| high)
            })
            .sum()
    };
    let ahead = |covered: i64, stored: i64| covered > 0 && stored > covered + 500;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let covered = records_before(checkpoint_offset(&f.ck).unwrap_or(0));
        if ahead(covered, stored()) {
            // Frozen, the checkpoint cannot move: check the window again and kill inside it,
            // or let it run on (the checkpoint caught up between the look and the stop).
            signal(p.0.id(), "-STOP");
            let covered = records_before(checkpoint_offset(&f.ck).unwrap_or(0));
            if ahead(covered, stored()) {
                break;
            }
            signal(p.0.id(), "-CONT");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Kafka never got ahead of the checkpoint: {} stored, {covered} covered",
            stored()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    signal(p.0.id(), "-KILL");
    wait_exit(&mut p, WAIT).await;
    let at_kill = checkpoint_offset(&f.ck).unwrap_or(0);
    assert!(
        at_kill < len,
        "killed before the checkpoint reached the end ({at_kill} of {len} bytes), or nothing is tested"
    );
    // Everything there is (more than can be there, so it reads for the whole 5 s).
    let stored_at_kill = f
        .consume(N as usize + 1, Duration::from_secs(5))
        .await
        .len();

    let mut p = f.spawn("second");
    eventually(WAIT, "checkpoint at the end of the file", || {
        checkpoint_offset(&f.ck) == Some(len)
    })
    .await;
    signal(p.0.id(), "-TERM");
    let status = wait_exit(&mut p, WAIT).await;
    assert_eq!(status.code(), Some(0));
    assert_exactly_once(&f.consume(N as usize, WAIT).await, N);
    // The case this is about: Kafka had records the checkpoint did not cover yet.
    let checkpointed_records = records_before(at_kill) as usize;
    assert!(
        stored_at_kill > checkpointed_records,
        "Kafka had {stored_at_kill} records at the kill, the checkpoint covered {checkpointed_records}: \
         the kill did not fall between an acknowledgement and its checkpoint"
    );
    let restart_log = std::fs::read_to_string(f.stderr("second")).unwrap();
    assert!(
        restart_log.contains("were not sent again"),
        "the restart skipped what Kafka had: {restart_log}"
    );
}
