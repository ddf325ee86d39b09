//! The broker helpers against real processes: tansu (`Broker`) and librdkafka's mock cluster
//! (`MockKafka`). Needs tansu (`TANSU_BIN` or PATH); fails, never skips, without it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::{RDKafkaApiKey, RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{Offset, TopicPartitionList};
use testkit::broker::{unique_name, Broker, BrokerOptions};
use testkit::mock::MockKafka;

const WAIT: Duration = Duration::from_secs(30);

/// One consumed record.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Consumed {
    partition: i32,
    offset: i64,
    payload: String,
}

fn producer(config: ClientConfig) -> FutureProducer {
    let mut config = config;
    config
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000");
    config.create().expect("producer config is valid")
}

/// Produces `record-{i}` with key `key-{i}` for every i, waiting for each delivery.
async fn produce(producer: &FutureProducer, topic: &str, ids: std::ops::Range<u32>) {
    let deliveries: Vec<_> = ids
        .map(|i| {
            let (key, payload) = (format!("key-{i}"), format!("record-{i}"));
            producer
                .send_result(FutureRecord::to(topic).key(&key).payload(&payload))
                .map_err(|(error, _)| error)
                .expect("record enqueued")
        })
        .collect();
    for delivery in deliveries {
        let delivered = delivery.await.expect("delivery report arrives");
        delivered
            .map_err(|(error, _)| error)
            .expect("record delivered");
    }
}

fn group_consumer(config: ClientConfig, group: &str) -> StreamConsumer {
    let mut config = config;
    config
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000");
    config.create().expect("consumer config is valid")
}

/// Receives `count` records, failing the test when they do not arrive within [`WAIT`].
async fn consume(consumer: &StreamConsumer, count: usize) -> Vec<Consumed> {
    let mut consumed = Vec::with_capacity(count);
    let deadline = tokio::time::Instant::now() + WAIT;
    while consumed.len() < count {
        let message = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} records arrived", consumed.len()))
            .expect("consumer receives");
        consumed.push(Consumed {
            partition: message.partition(),
            offset: message.offset(),
            payload: String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
        });
    }
    consumed
}

/// Commits, per partition, the offset after the last of `records`.
fn commit_after(consumer: &StreamConsumer, topic: &str, records: &[Consumed]) {
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for record in records {
        let entry = next.entry(record.partition).or_default();
        *entry = (*entry).max(record.offset + 1);
    }
    let mut offsets = TopicPartitionList::new();
    for (partition, offset) in next {
        offsets
            .add_partition_offset(topic, partition, Offset::Offset(offset))
            .expect("offset is valid");
    }
    consumer
        .commit(&offsets, CommitMode::Sync)
        .expect("commit succeeds");
}

/// The group's committed offsets of `topic`'s partitions `0..partitions`, from the broker.
fn committed(config: ClientConfig, group: &str, topic: &str, partitions: i32) -> Vec<Offset> {
    let mut config = config;
    let consumer: BaseConsumer = config
        .set("group.id", group)
        .create()
        .expect("consumer config is valid");
    let mut wanted = TopicPartitionList::new();
    for partition in 0..partitions {
        wanted.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(wanted, WAIT)
        .expect("committed offsets query succeeds");
    committed.elements().iter().map(|e| e.offset()).collect()
}

fn sorted_payloads(records: &[Consumed]) -> Vec<String> {
    let mut payloads: Vec<String> = records.iter().map(|r| r.payload.clone()).collect();
    payloads.sort();
    payloads
}

fn expected_payloads(ids: std::ops::Range<u32>) -> Vec<String> {
    let mut payloads: Vec<String> = ids.map(|i| format!("record-{i}")).collect();
    payloads.sort();
    payloads
}

fn pid_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn tansu_delivers_through_a_consumer_group_and_keeps_its_committed_offsets() {
    let broker = Broker::start(BrokerOptions::memory()).await.unwrap();
    let (topic, group) = (unique_name("logs"), unique_name("group"));
    broker.create_topic(&topic, 3).await.unwrap();
    produce(&producer(broker.client_config()), &topic, 0..90).await;

    let consumer = group_consumer(broker.client_config(), &group);
    consumer.subscribe(&[&topic]).unwrap();
    let records = consume(&consumer, 90).await;
    assert_eq!(sorted_payloads(&records), expected_payloads(0..90));
    commit_after(&consumer, &topic, &records);

    let mut per_partition = [0_i64; 3];
    for record in &records {
        per_partition[record.partition as usize] += 1;
    }
    let expected: Vec<Offset> = per_partition.iter().map(|n| Offset::Offset(*n)).collect();
    assert_eq!(
        committed(broker.client_config(), &group, &topic, 3),
        expected
    );
}

#[tokio::test]
async fn durable_storage_keeps_records_and_committed_offsets_across_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(BrokerOptions::durable(data.path()))
        .await
        .unwrap();
    let (topic, group) = (unique_name("logs"), unique_name("group"));
    broker.create_topic(&topic, 1).await.unwrap();
    produce(&producer(broker.client_config()), &topic, 0..10).await;
    {
        let consumer = group_consumer(broker.client_config(), &group);
        consumer.subscribe(&[&topic]).unwrap();
        let records = consume(&consumer, 10).await;
        // Processed the first four only.
        commit_after(&consumer, &topic, &records[..4]);
    }

    let port = broker.port();
    let old_pid = broker.pid().unwrap();
    broker.restart().await.unwrap();
    assert_eq!(broker.port(), port);
    assert_ne!(broker.pid().unwrap(), old_pid);
    assert!(!pid_exists(old_pid));

    assert_eq!(
        committed(broker.client_config(), &group, &topic, 1),
        vec![Offset::Offset(4)]
    );
    let consumer = group_consumer(broker.client_config(), &group);
    consumer.subscribe(&[&topic]).unwrap();
    let records = consume(&consumer, 6).await;
    assert_eq!(records[0].offset, 4, "{records:?}");
    let payloads: Vec<&str> = records.iter().map(|r| r.payload.as_str()).collect();
    assert_eq!(
        payloads,
        ["record-4", "record-5", "record-6", "record-7", "record-8", "record-9"]
    );
}

#[tokio::test]
async fn durable_storage_keeps_delivered_records_after_a_sigkill() {
    let data = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(BrokerOptions::durable(data.path()))
        .await
        .unwrap();
    let topic = unique_name("logs");
    broker.create_topic(&topic, 2).await.unwrap();
    produce(&producer(broker.client_config()), &topic, 0..20).await;

    let pid = broker.pid().unwrap();
    broker.kill().unwrap();
    assert_eq!(broker.pid(), None);
    assert!(!pid_exists(pid));
    broker.restart().await.unwrap();

    let consumer = group_consumer(broker.client_config(), &unique_name("group"));
    consumer.subscribe(&[&topic]).unwrap();
    let records = consume(&consumer, 20).await;
    assert_eq!(sorted_payloads(&records), expected_payloads(0..20));
}

#[tokio::test]
async fn a_new_broker_on_the_same_durable_folder_sees_the_old_topics() {
    let data = tempfile::tempdir().unwrap();
    let topic = unique_name("logs");
    {
        let broker = Broker::start(BrokerOptions::durable(data.path()))
            .await
            .unwrap();
        broker.create_topic(&topic, 2).await.unwrap();
    }
    let broker = Broker::start(BrokerOptions::durable(data.path()))
        .await
        .unwrap();
    let consumer: BaseConsumer = broker.client_config().create().unwrap();
    let metadata = consumer.fetch_metadata(Some(&topic), WAIT).unwrap();
    assert_eq!(metadata.topics()[0].partitions().len(), 2);
}

#[tokio::test]
async fn topics_created_with_n_partitions_show_n_partitions_in_metadata() {
    let broker = Broker::start(BrokerOptions::memory()).await.unwrap();
    let consumer: BaseConsumer = broker.client_config().create().unwrap();
    for partitions in [1, 4, 7] {
        let topic = unique_name(&format!("p{partitions}"));
        broker.create_topic(&topic, partitions).await.unwrap();
        let metadata = consumer.fetch_metadata(Some(&topic), WAIT).unwrap();
        let shown = &metadata.topics()[0];
        assert_eq!(shown.name(), topic);
        assert_eq!(shown.error(), None);
        assert_eq!(shown.partitions().len(), partitions as usize);
    }
}

#[tokio::test]
async fn creating_an_existing_topic_fails() {
    let broker = Broker::start(BrokerOptions::memory()).await.unwrap();
    let topic = unique_name("logs");
    broker.create_topic(&topic, 1).await.unwrap();
    let error = broker.create_topic(&topic, 1).await.unwrap_err();
    assert!(error.to_string().contains(&topic), "{error}");
}

#[tokio::test]
async fn the_broker_process_is_gone_after_drop() {
    let broker = Broker::start(BrokerOptions::memory()).await.unwrap();
    let pid = broker.pid().unwrap();
    assert!(pid_exists(pid));
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(cmdline.contains("logpipe-test-"), "{cmdline:?}");
    drop(broker);
    assert!(!pid_exists(pid));
}

#[test]
fn the_broker_process_is_gone_after_a_test_panics() {
    let (pid_sender, pid) = std::sync::mpsc::channel();
    let outcome = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let broker = Broker::start(BrokerOptions::memory()).await.unwrap();
            pid_sender.send(broker.pid().unwrap()).unwrap();
            panic!("deliberate panic while a broker runs (its log tail follows)");
        })
    })
    .join();
    assert!(outcome.is_err());
    let pid = pid.recv().unwrap();
    assert!(!pid_exists(pid));
}

#[tokio::test]
async fn stop_then_restart_brings_a_memory_broker_back_empty_on_the_same_port() {
    let mut broker = Broker::start(BrokerOptions::memory()).await.unwrap();
    let topic = unique_name("logs");
    broker.create_topic(&topic, 1).await.unwrap();
    let port = broker.port();
    broker.stop().await.unwrap();
    assert_eq!(broker.pid(), None);
    broker.restart().await.unwrap();
    assert_eq!(broker.port(), port);
    let consumer: BaseConsumer = broker.client_config().create().unwrap();
    let metadata = consumer.fetch_metadata(None, WAIT).unwrap();
    assert!(metadata.topics().iter().all(|t| t.name() != topic));
}

#[tokio::test]
async fn mock_produce_survives_broker_down_then_up_with_every_record_once() {
    let mock = MockKafka::new(3).unwrap();
    let topic = unique_name("mock");
    mock.create_topic(&topic, 1).unwrap();
    mock.partition_leader(&topic, 0, Some(1)).unwrap();
    let producer = producer(mock.client_config());
    produce(&producer, &topic, 0..50).await;

    mock.broker_down(1).unwrap();
    let mut pending: Vec<_> = (50..100)
        .map(|i| {
            let (key, payload) = (format!("key-{i}"), format!("record-{i}"));
            producer
                .send_result(FutureRecord::to(&topic).key(&key).payload(&payload))
                .map_err(|(error, _)| error)
                .unwrap()
        })
        .collect();
    // While the leader is down nothing is delivered (the record stays queued).
    let first = pending.remove(0);
    let during_outage = tokio::time::timeout(Duration::from_secs(2), first).await;
    assert!(
        during_outage.is_err(),
        "delivered while down: {during_outage:?}"
    );
    mock.broker_up(1).unwrap();
    // Re-send nothing: the idempotent producer retries what it has queued.
    for delivery in pending {
        delivery.await.unwrap().map_err(|(error, _)| error).unwrap();
    }
    drop(producer);

    let consumer = group_consumer(mock.client_config(), &unique_name("group"));
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(&topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let records = consume(&consumer, 100).await;
    assert_eq!(sorted_payloads(&records), expected_payloads(0..100));
    let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (0..100).collect::<Vec<i64>>());
}

#[tokio::test]
async fn mock_injected_produce_error_reaches_the_delivery_report() {
    let mock = MockKafka::new(1).unwrap();
    let topic = unique_name("mock");
    mock.create_topic(&topic, 1).unwrap();
    let mut config = mock.client_config();
    let producer: FutureProducer = config.set("message.timeout.ms", "10000").create().unwrap();
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
    )
    .unwrap();

    let refused = producer
        .send(FutureRecord::to(&topic).key("k").payload("refused"), WAIT)
        .await
        .map_err(|(error, _)| error)
        .unwrap_err();
    assert_eq!(
        refused,
        KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)
    );
    // The injected error was used up: the next produce goes through.
    producer
        .send(FutureRecord::to(&topic).key("k").payload("accepted"), WAIT)
        .await
        .map_err(|(error, _)| error)
        .unwrap();
}

#[tokio::test]
async fn mock_retriable_errors_are_retried_and_the_record_stored_once() {
    let mock = MockKafka::new(1).unwrap();
    let topic = unique_name("mock");
    mock.create_topic(&topic, 1).unwrap();
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 3],
    )
    .unwrap();
    produce(&producer(mock.client_config()), &topic, 0..1).await;

    let consumer = group_consumer(mock.client_config(), &unique_name("group"));
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(&topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let records = consume(&consumer, 1).await;
    assert_eq!(records[0].offset, 0);
    let (low, high) = consumer
        .fetch_watermarks(&topic, 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!((low, high), (0, 1));
}

#[tokio::test]
async fn mock_round_trip_time_delays_every_response() {
    let mock = MockKafka::new(1).unwrap();
    let topic = unique_name("mock");
    mock.create_topic(&topic, 1).unwrap();
    let producer = producer(mock.client_config());
    produce(&producer, &topic, 0..1).await;

    mock.round_trip_time(MockKafka::ALL_BROKERS, Duration::from_millis(800))
        .unwrap();
    let started = Instant::now();
    produce(&producer, &topic, 1..2).await;
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );

    mock.round_trip_time(MockKafka::ALL_BROKERS, Duration::ZERO)
        .unwrap();
}

/// The partitions `consumer` holds now, after serving its queue for `for_at_least` (a stream
/// consumer runs its rebalance callbacks while it is polled).
async fn assignment_after(consumer: &StreamConsumer, for_at_least: Duration) -> Vec<i32> {
    let until = tokio::time::Instant::now() + for_at_least;
    while tokio::time::Instant::now() < until {
        let _ = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await;
    }
    let mut held: Vec<i32> = consumer
        .assignment()
        .expect("assignment is readable")
        .elements()
        .iter()
        .map(|e| e.partition())
        .collect();
    held.sort_unstable();
    held
}

/// Waits until `consumer` holds `want`, failing with what it holds after `within`.
async fn wait_for_assignment(
    consumer: &StreamConsumer,
    want: &[i32],
    within: Duration,
    what: &str,
) {
    let expected = format!("{want:?}");
    wait_for_assignment_where(consumer, |held| held == want, &expected, within, what).await;
}

/// Waits until what `consumer` holds satisfies `ok` (described by `expected`) and returns it,
/// failing with what it holds after `within`.
async fn wait_for_assignment_where(
    consumer: &StreamConsumer,
    ok: impl Fn(&[i32]) -> bool,
    expected: &str,
    within: Duration,
    what: &str,
) -> Vec<i32> {
    let deadline = Instant::now() + within;
    loop {
        let held = assignment_after(consumer, Duration::from_millis(200)).await;
        if ok(&held) {
            return held;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: after {within:?} the consumer holds {held:?}, not {expected}"
        );
    }
}

/// A `testkit group-member` child process, killed (SIGKILL, without leaving its group) and
/// reaped when dropped, so a failing test leaves no member behind.
struct Member(std::process::Child);

impl Member {
    /// Kills it without letting it leave the group, as a lost host would.
    fn kill(&mut self) {
        self.0.kill().expect("SIGKILL");
        self.0.wait().expect("member reaped");
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `testkit group-member` (a member of `group` reading `topic`, heartbeats every 1.5 s,
/// session 6 s) in a child process; `stdout` gets its "holds [..]" lines.
fn spawn_member(broker: &Broker, topic: &str, group: &str, stdout: std::process::Stdio) -> Member {
    Member(
        std::process::Command::new(env!("CARGO_BIN_EXE_testkit"))
            .args(["group-member", "--bootstrap", &broker.bootstrap_servers()])
            .args(["--group", group, "--session-timeout", "6s"])
            .args(["--heartbeat-interval", "1500ms", topic])
            .stdout(stdout)
            .spawn()
            .expect("testkit group-member starts"),
    )
}

/// Waits until the member process prints `want` on its (piped) stdout; fails after `within`
/// with the last line it printed.
async fn wait_for_member_line(member: &mut Member, want: &str, within: Duration) {
    use std::io::BufRead;
    let stdout = member
        .0
        .stdout
        .take()
        .expect("the member's stdout is piped");
    let want = want.to_owned();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // Reads until the member's stdout closes (it is killed at the end of the test).
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut last = String::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(line)) if line == want => return,
            Ok(Some(line)) => last = line,
            Ok(None) => panic!("the member process ended; its last line: {last:?}"),
            Err(_) => panic!("after {within:?} the member process printed {last:?}, not {want:?}"),
        }
    }
}

/// A new member joins a group whose leader died without leaving (a consumer started after a
/// broker restore finds the stopped consumer of the backup's moment still in the group). Once
/// the dead leader's session runs out, the new member holds every partition. tansu 0.6.0 (with
/// the expiry patch) answered the new member's SyncGroup, sent as the dead leader's follower
/// and arriving after the expiry had cleared the leader, by forming the group from that
/// follower's empty assignments: the member held [] for good, and no heartbeat asked it to
/// rejoin (GitLab's script-tests job: "green not ready within 60s" after a restore).
/// scripts/lib/patches/tansu-0.6.0-group-leader.patch fixes it; this test fails without it.
#[tokio::test]
async fn a_member_joining_after_the_leader_was_killed_gets_every_partition() {
    let broker = Broker::start(BrokerOptions::memory()).await.unwrap();
    let (topic, group) = (unique_name("logs"), unique_name("group"));
    broker.create_topic(&topic, 3).await.unwrap();
    let mut leader = spawn_member(&broker, &topic, &group, std::process::Stdio::piped());
    wait_for_member_line(&mut leader, "holds [0, 1, 2]", WAIT).await;
    leader.kill();
    // The newcomer joins 4-5.5 s after the leader's last heartbeat (every 1.5 s), inside its
    // 6 s session, so it starts as the dead leader's follower. tansu holds a follower's rejoin
    // 3 s: the leader's expiry is first seen by the newcomer's SyncGroup, while the newcomer's
    // own session still runs (after a restore: the backup's members, gone for seconds).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let newcomer = group_consumer(
        broker
            .client_config()
            .set("heartbeat.interval.ms", "1500")
            .clone(),
        &group,
    );
    newcomer.subscribe(&[&topic]).unwrap();
    wait_for_assignment(
        &newcomer,
        &[0, 1, 2],
        Duration::from_secs(30),
        "joined while the killed leader was still a member",
    )
    .await;
}

/// A member that dies without leaving (SIGKILL) is expired after its session timeout and its
/// partitions go to the members still alive. tansu 0.6.0 as published expired such a member
/// from the formed group's own heartbeat and kept the group formed with the old assignments:
/// the live member rejoined, got its old partitions back, and the dead member's partitions were
/// consumed by nobody (scripts/lib/patches/tansu-0.6.0-group-expiry.patch, applied by
/// scripts/test.sh's install, fixes that; this test fails without it).
#[tokio::test]
async fn a_group_member_killed_without_leaving_has_its_partitions_reassigned() {
    let broker = Broker::start(BrokerOptions::memory()).await.unwrap();
    let (topic, group) = (unique_name("logs"), unique_name("group"));
    broker.create_topic(&topic, 3).await.unwrap();
    // Heartbeats at a quarter of the session, as the consumer service sends them: the
    // survivor's last contact stays within its session through the rebalance, so only the
    // coordinator can bring the dead member's partitions back.
    let survivor = group_consumer(
        broker
            .client_config()
            .set("heartbeat.interval.ms", "1500")
            .clone(),
        &group,
    );
    survivor.subscribe(&[&topic]).unwrap();
    wait_for_assignment(&survivor, &[0, 1, 2], WAIT, "alone in the group").await;

    let mut member = spawn_member(&broker, &topic, &group, std::process::Stdio::null());
    // The second member joins: the survivor gives some partitions up.
    let shared = wait_for_assignment_where(
        &survivor,
        |held| !held.is_empty() && held.len() < 3,
        "some of [0, 1, 2]: the second member's share given up",
        WAIT,
        "a second member joined",
    )
    .await;
    member.kill();
    // Session 6 s: expired by then, with time to rejoin and sync.
    wait_for_assignment(
        &survivor,
        &[0, 1, 2],
        Duration::from_secs(25),
        &format!("held {shared:?} when the other member was killed"),
    )
    .await;
}
