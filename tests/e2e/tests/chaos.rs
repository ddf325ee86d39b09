//! The whole pipeline under chaos, with real processes: the consumer killed with SIGKILL again
//! and again, the receiver (Loki) down, the producer killed while it follows a growing file,
//! and the broker restarted. Each test asserts zero loss: every record produced is in Loki
//! exactly once (it drops exact duplicates), nothing went to the dead-letter topic, every offset
//! ends committed, and — sampled all along, checked against the topic's content — no committed
//! offset ever passed a record Loki did not hold yet.
//!
//! Against an external Kafka and Loki (`E2E_KAFKA_BOOTSTRAP_SERVERS`, `E2E_LOKI_URL`) the
//! killed consumer and the killed producer run as here; the outage of Loki (injected into the
//! harness's receiver) and the restart of the broker (the harness's tansu process) need services
//! the test owns, and say so and end when it does not.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use logpipe_e2e::audit::CommitAudit;
use logpipe_e2e::external::{self, Service};
use logpipe_e2e::pipeline::{ends_of, Pipeline, PipelineOptions};
use logpipe_e2e::records::{self, Expected};
use logpipe_e2e::wait;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use testkit::broker::Storage;
use testkit::loki::{Faults, Outage};
use testkit::service::{Readiness, ServiceProcess};

const WAIT: Duration = Duration::from_secs(120);

/// Fresh records (timestamps in the last ten minutes) written as an NDJSON file in the
/// pipeline's folder; returns their expectations and the file.
fn input(pipeline: &Pipeline, n: u64, seed: u64) -> (Vec<Expected>, String) {
    let lines = records::fresh_lines(n, seed, Duration::from_secs(600)).expect("generated");
    let path = pipeline.path("input.ndjson");
    std::fs::write(&path, lines.join("\n") + "\n").expect("input written");
    let expected = records::from_lines(&lines).expect("valid records");
    (expected, path.display().to_string())
}

/// A random generator whose seed is printed (and can be fixed with `E2E_CHAOS_SEED`), so a
/// failing run can be replayed.
fn rng() -> StdRng {
    let seed = std::env::var("E2E_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or_default()
        });
    eprintln!("chaos seed: E2E_CHAOS_SEED={seed}");
    StdRng::seed_from_u64(seed)
}

/// Waits until the receiver holds at least `n` entries, sampling the commit audit meanwhile.
async fn stored_at_least(
    pipeline: &Pipeline,
    consumer: &ServiceProcess,
    audit: &mut CommitAudit,
    n: usize,
    label: &str,
) {
    let deadline = Instant::now() + WAIT;
    loop {
        let stored = match pipeline.stored_count().await {
            Ok(stored) if stored >= n => return,
            Ok(stored) => stored.to_string(),
            Err(error) => format!("unknown ({error})"),
        };
        if Instant::now() >= deadline {
            panic!(
                "{label}: only {stored} of {n} entries reached Loki\n{}",
                consumer_state(consumer).await
            );
        }
        audit.sample_now_and_then(pipeline, label).await;
        tokio::time::sleep(wait::POLL_INTERVAL).await;
    }
}

/// What a stalled consumer was doing: its readiness, the series that tell where records wait,
/// and the end of its log.
async fn consumer_state(consumer: &ServiceProcess) -> String {
    let ready = match consumer.get("/readyz").await {
        Ok((status, body)) => format!("{status} {body}"),
        Err(e) => format!("unreachable: {e}"),
    };
    let series = match consumer.metrics_text().await {
        Ok(text) => text
            .lines()
            .filter(|l| {
                [
                    "consumer_assigned_partitions",
                    "consumer_records_consumed_total",
                    "consumer_records_pushed_total",
                    "consumer_buffered_records",
                    "consumer_in_flight_pushes",
                    "consumer_paused",
                    "kafka_consumer_lag",
                    "loki_push_requests_total",
                    "consumer_commits_total",
                ]
                .iter()
                .any(|m| l.starts_with(m))
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("metrics unreachable: {e}"),
    };
    format!(
        "consumer /readyz: {ready}\nconsumer series:\n{series}\nconsumer log (last 40 lines):\n{}",
        consumer.log_tail(40)
    )
}

/// What Kafka held at the end, for the caller's own checks.
struct Outcome {
    /// Canonical line → how many messages of the topic carry it.
    copies_in_kafka: HashMap<String, usize>,
}

/// The zero-loss assertions every scenario ends with (see the module documentation).
async fn assert_zero_loss(
    pipeline: &Pipeline,
    consumer: &ServiceProcess,
    expected: &[Expected],
    audit: &mut CommitAudit,
) -> Outcome {
    let n = expected.len();
    stored_at_least(pipeline, consumer, audit, n, "the end").await;
    let messages = pipeline.read_topic(n).await.expect("topic readable");
    let stored = pipeline.stored().await.expect("Loki queried");
    records::exactly_once(expected, &stored).expect("every record exactly once in Loki");
    let mut copies_in_kafka: HashMap<String, usize> = HashMap::new();
    for message in &messages {
        *copies_in_kafka.entry(message.text()).or_default() += 1;
    }
    let missing_in_kafka = expected
        .iter()
        .filter(|x| !copies_in_kafka.contains_key(&x.line))
        .count();
    assert_eq!(missing_in_kafka, 0, "records missing from Kafka");
    assert_eq!(
        copies_in_kafka.len(),
        n,
        "Kafka holds only the produced records"
    );

    pipeline
        .wait_committed(&ends_of(&messages), WAIT)
        .await
        .expect("every offset committed in the end");
    audit.sample(pipeline, "the end").await;
    let covered = audit
        .verify(&messages)
        .expect("commits never ran ahead of delivery");
    assert!(
        audit.mid_run_samples(n) > 0,
        "the audit saw the group mid-run ({} samples, {} failed queries)",
        audit.len(),
        audit.failed_queries()
    );
    let dead_letters = pipeline
        .read_dlq()
        .await
        .expect("dead-letter topic readable");
    assert!(
        dead_letters.is_empty(),
        "records went to the dead-letter topic: {:?}",
        dead_letters.first()
    );
    let dlq_total = consumer
        .metric("consumer_records_dlq_total")
        .await
        .expect("consumer metrics");
    assert_eq!(dlq_total, 0.0, "consumer_records_dlq_total");
    eprintln!(
        "{n} records once in Loki; {} messages in Kafka; {} audit samples covering {covered} \
         committed records ({} mid-run); duplicate pushes Loki absorbed: {}",
        messages.len(),
        audit.len(),
        audit.mid_run_samples(n),
        pipeline.loki.receiver().map_or_else(
            || "not counted (external Loki)".to_owned(),
            |receiver| receiver.stats().duplicates.to_string()
        )
    );
    Outcome { copies_in_kafka }
}

/// (a) While the producer streams, the consumer is killed with SIGKILL five times at random
/// moments (each after it delivered something since its start, plus a random delay) and
/// restarted each time. The session timeout is 6 s, the shortest a Kafka broker accepts by
/// default (`group.min.session.timeout.ms`): a restarted member is assigned the partitions only
/// once the killed member's session expired. (It was 3 s, which a real Kafka refuses; the
/// consumer now refuses it at start.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_five_times_while_records_stream_loses_and_duplicates_nothing() {
    const N: u64 = 4000;
    const KILLS: usize = 5;
    let started = Instant::now();
    let mut rng = rng();
    let pipeline = Pipeline::start(PipelineOptions::default())
        .await
        .expect("pipeline starts");
    let (expected, path) = input(&pipeline, N, 1);
    let mut audit = CommitAudit::new();
    let mut consumer = pipeline
        .start_consumer_with("consumer", &[("KAFKA_SESSION_TIMEOUT", "6s")])
        .await
        .expect("consumer starts");
    // 50 s of streaming: room for five kill-and-rejoin cycles of about 8 s.
    let mut producer = pipeline
        .start_producer(
            "producer",
            &["run", "--input", &path, "--once", "--rate", "80"],
            Readiness::Healthz,
        )
        .await
        .expect("producer starts");

    for kill in 1..=KILLS {
        let before = pipeline.stored_count().await.expect("Loki queried");
        let label = format!("consumer run {kill}");
        stored_at_least(&pipeline, &consumer, &mut audit, before + 20, &label).await;
        let delay = Duration::from_millis(rng.gen_range(0..800));
        let until = Instant::now() + delay;
        while Instant::now() < until {
            audit.sample_now_and_then(&pipeline, &label).await;
            tokio::time::sleep(wait::POLL_INTERVAL).await;
        }
        assert!(
            producer.is_running(),
            "kill {kill} comes while the producer streams (it finished already: the machine is \
             too slow for this scenario's timing)"
        );
        let killed_at = pipeline.stored_count().await.expect("Loki queried");
        consumer.kill9().expect("SIGKILL");
        audit.sample(&pipeline, &format!("after kill {kill}")).await;
        eprintln!(
            "kill {kill} after {delay:?}: {killed_at} stored, committed {:?}, {:.1} s",
            pipeline.committed().await.ok(),
            started.elapsed().as_secs_f64()
        );
        consumer.restart().await.expect("consumer restarts");
    }
    let status = producer
        .wait_exit(WAIT)
        .await
        .expect("the --once producer finishes");
    assert!(status.success(), "producer exit status {status}");
    assert_zero_loss(&pipeline, &consumer, &expected, &mut audit).await;
    eprintln!("scenario a took {:.1} s", started.elapsed().as_secs_f64());
}

/// (b) While the producer streams, Loki is down for several seconds: first refusing
/// connections, then answering 503; then it recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loki_outage_mid_stream_loses_nothing_and_commits_nothing_undelivered() {
    const N: u64 = 2000;
    const PHASE: Duration = Duration::from_secs(3);
    if external::skipped(
        Service::Loki,
        "a Loki outage mid-stream",
        "the outage is injected into the harness's receiver (refused connections, then 503s), \
         which a real Loki cannot be told to do",
    ) {
        return;
    }
    let started = Instant::now();
    let pipeline = Pipeline::start(PipelineOptions::default())
        .await
        .expect("pipeline starts");
    let (expected, path) = input(&pipeline, N, 2);
    let mut audit = CommitAudit::new();
    let consumer = pipeline
        .start_consumer("consumer")
        .await
        .expect("consumer starts");
    let mut producer = pipeline
        .start_producer(
            "producer",
            &["run", "--input", &path, "--once", "--rate", "200"],
            Readiness::Healthz,
        )
        .await
        .expect("producer starts");
    stored_at_least(&pipeline, &consumer, &mut audit, 300, "before the outage").await;

    let receiver = pipeline
        .loki
        .receiver()
        .expect("the harness's receiver (external Loki is skipped above)");
    let mut stored_during = Vec::new();
    for outage in [Outage::Refuse, Outage::Unavailable] {
        receiver
            .set_faults(Faults {
                outage: Some(outage),
                ..Faults::default()
            })
            .await
            .expect("outage set");
        let frozen = receiver.stats().entries_stored;
        let until = Instant::now() + PHASE;
        while Instant::now() < until {
            audit
                .sample_now_and_then(&pipeline, &format!("outage {outage}"))
                .await;
            tokio::time::sleep(wait::POLL_INTERVAL).await;
        }
        stored_during.push((outage, frozen, receiver.stats().entries_stored));
    }
    let retries = consumer
        .metric("loki_push_retries_total")
        .await
        .expect("consumer metrics");
    let lag = consumer
        .metric("kafka_consumer_lag_sum")
        .await
        .expect("consumer metrics");
    let answered_503 = receiver.stats().requests_with(503);
    receiver.clear_faults().await.expect("outage over");

    for (outage, before, after) in &stored_during {
        assert_eq!(
            before, after,
            "nothing is stored during the {outage} outage"
        );
    }
    assert!(
        retries >= 2.0,
        "the consumer retried pushes during the outage: {retries}"
    );
    assert!(answered_503 > 0, "pushes met the 503 phase");
    let status = producer
        .wait_exit(WAIT)
        .await
        .expect("the --once producer finishes");
    assert!(status.success(), "producer exit status {status}");
    assert_zero_loss(&pipeline, &consumer, &expected, &mut audit).await;
    assert!(
        lag > 0.0,
        "kafka_consumer_lag_sum shows the backlog held during the outage (README: lag grows \
         instead): {lag}"
    );
    eprintln!(
        "scenario b: {retries} retries, {answered_503} pushes answered 503, lag {lag} during the outage; {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Appends `lines` to `log`, `chunk` lines every 100 ms, as an application logs.
fn append_in_chunks(log: PathBuf, lines: Vec<String>, chunk: usize) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        use std::io::Write;
        for part in lines.chunks(chunk) {
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(&log)
                .expect("log opens");
            file.write_all((part.join("\n") + "\n").as_bytes())
                .expect("appended");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// The offset of a `--follow` checkpoint file (`None` before the first one).
fn checkpoint_offset(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json.get("offset")?.as_u64()
}

/// The 0-based index of the line starting at byte `offset` of `path`.
fn lines_before(path: &Path, offset: u64) -> usize {
    let bytes = std::fs::read(path).unwrap_or_default();
    let end = (offset as usize).min(bytes.len());
    bytes[..end].iter().filter(|b| **b == b'\n').count()
}

/// (c) The producer follows (`--follow`) a file that keeps growing and is killed with SIGKILL
/// twice, each time after it sent records in its current run (plus a random delay), and
/// restarted: it resumes from its checkpoint. A SIGKILL between Kafka's acknowledgement and the
/// next checkpoint write (the producer writes it at most 100 ms after the acknowledgements
/// advanced it) leaves records after the checkpoint in Kafka; the restart finds them from the
/// partitions' offsets the checkpoint carries and does not send them again
/// (crates/producer/src/follow/resume.rs). So Kafka holds every record exactly once and Loki shows
/// every record exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_following_producer_killed_while_its_file_grows_resumes_at_its_checkpoint() {
    const N: usize = 2000;
    const CHUNK: usize = 20;
    const KILLS: usize = 2;
    let started = Instant::now();
    let mut rng = rng();
    let pipeline = Pipeline::start(PipelineOptions::default())
        .await
        .expect("pipeline starts");
    let lines = records::fresh_lines(N as u64, 3, Duration::from_secs(600)).expect("generated");
    let expected = records::from_lines(&lines).expect("valid records");
    let log = pipeline.path("app.log");
    let checkpoint = pipeline.path("app.checkpoint");
    std::fs::write(&log, lines[..200].join("\n") + "\n").expect("first lines written");
    let mut audit = CommitAudit::new();
    let consumer = pipeline
        .start_consumer("consumer")
        .await
        .expect("consumer starts");
    let log_arg = log.display().to_string();
    let checkpoint_env = checkpoint.display().to_string();
    let args = ["run", "--input", log_arg.as_str(), "--follow"];
    let extra = [("CHECKPOINT_PATH", checkpoint_env.as_str())];
    let mut producer = pipeline
        .start_producer_with("producer", &args, &extra, Readiness::Healthz)
        .await
        .expect("producer starts");

    // The file grows by CHUNK lines every 100 ms (about 9 s in all), as an application logs.
    let appender = append_in_chunks(log.clone(), lines[200..].to_vec(), CHUNK);

    // Per kill: the line the checkpoint pointed at, and the lines in the file.
    let mut at_kills: Vec<(usize, usize)> = Vec::new();
    for kill in 1..=KILLS {
        wait::until(
            "the producer to send records in its current run",
            WAIT,
            || async {
                match producer.metric("producer_records_sent_total").await {
                    Ok(sent) if sent >= 150.0 => Ok(()),
                    Ok(sent) => Err(format!("{sent} sent")),
                    Err(error) => Err(error.to_string()),
                }
            },
        )
        .await
        .expect("the producer sends");
        let delay = Duration::from_millis(rng.gen_range(0..300));
        tokio::time::sleep(delay).await;
        assert!(
            !appender.is_finished(),
            "kill {kill} comes while the file grows (the appender finished already: the machine \
             is too slow for this scenario's timing)"
        );
        producer.kill9().expect("SIGKILL");
        let at = checkpoint_offset(&checkpoint);
        at_kills.push((
            at.map_or(0, |offset| lines_before(&log, offset)),
            lines_before(&log, u64::MAX),
        ));
        audit
            .sample(&pipeline, &format!("producer kill {kill}"))
            .await;
        eprintln!(
            "producer kill {kill} after {delay:?}: checkpoint {at:?} of {} bytes, {} stored, {:.1} s",
            std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0),
            pipeline.stored_count().await.expect("Loki queried"),
            started.elapsed().as_secs_f64()
        );
        producer.restart().await.expect("producer restarts");
    }
    appender.await.expect("appender task");
    let len = std::fs::metadata(&log).expect("log metadata").len();
    wait::until("the checkpoint at the end of the file", WAIT, || {
        let at = checkpoint_offset(&checkpoint);
        async move {
            if at == Some(len) {
                Ok(())
            } else {
                Err(format!("checkpoint {at:?}, file {len} bytes"))
            }
        }
    })
    .await
    .expect("the producer acknowledged the whole file");
    let outcome = assert_zero_loss(&pipeline, &consumer, &expected, &mut audit).await;
    let status = producer
        .terminate(Duration::from_secs(30))
        .await
        .expect("the producer stops on SIGTERM");
    assert!(status.success(), "--follow exits 0 after SIGTERM: {status}");
    let mut resent: Vec<usize> = expected
        .iter()
        .filter(|x| outcome.copies_in_kafka.get(&x.line).copied().unwrap_or(0) > 1)
        .map(|x| x.index)
        .collect();
    resent.sort_unstable();
    // Records sent again by a restart: none. (Before the restart looked at what Kafka stored,
    // up to about 100 ms worth plus what was in flight were, per kill.)
    assert!(
        resent.is_empty(),
        "records in Kafka more than once: {} (input lines {:?}…); checkpoint line and file \
         lines at the kills: {at_kills:?}",
        resent.len(),
        &resent[..resent.len().min(10)]
    );
    eprintln!(
        "scenario c: checkpoint line and file lines at the kills: {at_kills:?}; {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// (d) tansu in durable mode (SQLite) is restarted mid-stream, on the same port and storage,
/// while a file keeps growing and the consumer keeps running.
///
/// The producer (`--follow`, so it resumes from its checkpoint) is stopped with SIGTERM before
/// the restart and started again after it: tansu 0.6.0 cannot be restarted under a live
/// idempotent producer. Tried first with the producer streaming through the restart: the
/// restarted broker's storage panicked (`tansu-storage-0.6.0/src/service.rs:337: internal
/// error: entered unreachable code`, after `operation="Produce" err=SendError`), every later
/// Produce failed with "Unknown broker error", and the producer rightly reported the records
/// undelivered (exit 75). The consumer side lives through the restart: its fetches, commits
/// and group session fail and recover, and zero loss is asserted across it, as is that the
/// committed offsets survived the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_broker_restarted_mid_stream_loses_nothing() {
    const N: usize = 1500;
    const CHUNK: usize = 10;
    if external::skipped(
        Service::Kafka,
        "a durable broker restarted mid-stream",
        "the restart stops and starts the harness's tansu process on its storage, which a Kafka \
         the test does not own cannot be",
    ) {
        return;
    }
    let started = Instant::now();
    let storage = tempfile::Builder::new()
        .prefix("logpipe-test-e2e-tansu-")
        .tempdir()
        .expect("storage folder");
    let mut pipeline = Pipeline::start(PipelineOptions {
        storage: Storage::Durable(storage.path().to_path_buf()),
        ..PipelineOptions::default()
    })
    .await
    .expect("pipeline starts");
    let lines = records::fresh_lines(N as u64, 4, Duration::from_secs(600)).expect("generated");
    let expected = records::from_lines(&lines).expect("valid records");
    let log = pipeline.path("app.log");
    std::fs::write(&log, lines[..100].join("\n") + "\n").expect("first lines written");
    let mut audit = CommitAudit::new();
    let consumer = pipeline
        .start_consumer("consumer")
        .await
        .expect("consumer starts");
    let log_arg = log.display().to_string();
    let checkpoint = pipeline.path("app.checkpoint").display().to_string();
    let mut producer = pipeline
        .start_producer_with(
            "producer",
            &["run", "--input", log_arg.as_str(), "--follow"],
            &[("CHECKPOINT_PATH", checkpoint.as_str())],
            Readiness::Healthz,
        )
        .await
        .expect("producer starts");
    // The file grows by CHUNK lines every 100 ms (about 14 s in all), through the restart.
    let appender = append_in_chunks(log.clone(), lines[100..].to_vec(), CHUNK);
    stored_at_least(&pipeline, &consumer, &mut audit, 400, "before the restart").await;

    let status = producer
        .terminate(Duration::from_secs(30))
        .await
        .expect("the producer stops on SIGTERM");
    assert!(status.success(), "--follow exits 0 after SIGTERM: {status}");
    let committed_before = pipeline.committed().await.expect("committed offsets");
    audit.sample(&pipeline, "before the restart").await;
    let broker = pipeline
        .kafka
        .broker_mut()
        .expect("the harness's broker (external Kafka is skipped above)");
    let pid_before = broker.pid();
    broker.restart().await.expect("tansu restarts");
    assert_ne!(broker.pid(), pid_before, "a new broker process");
    let committed_after = wait::until("committed offsets after the restart", WAIT, || async {
        pipeline
            .committed()
            .await
            .map_err(|error| error.to_string())
    })
    .await
    .expect("committed offsets readable after the restart");
    for (partition, before) in &committed_before {
        let after = committed_after.get(partition).copied().unwrap_or(-1);
        assert!(
            after >= *before,
            "partition {partition}: committed {before} before the restart, {after} after: \
             durable storage lost a commit"
        );
    }
    eprintln!(
        "broker restarted at {} stored, committed {committed_before:?} → {committed_after:?}, \
         {:.1} s",
        pipeline.stored_count().await.expect("Loki queried"),
        started.elapsed().as_secs_f64()
    );
    let stopped_at = checkpoint_offset(Path::new(&checkpoint)).unwrap_or(0);
    let grown_to = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    assert!(
        grown_to > stopped_at,
        "records were appended while the producer was down ({stopped_at} → {grown_to} bytes)"
    );
    producer.restart().await.expect("producer restarts");
    appender.await.expect("appender task");
    stored_at_least(&pipeline, &consumer, &mut audit, N, "after the restart").await;
    let outcome = assert_zero_loss(&pipeline, &consumer, &expected, &mut audit).await;
    let resent = outcome.copies_in_kafka.values().filter(|n| **n > 1).count();
    assert_eq!(
        resent, 0,
        "records produced twice across a SIGTERM stop and restart of --follow"
    );
    eprintln!("scenario d took {:.1} s", started.elapsed().as_secs_f64());
}
