//! Reading a topic back (`testkit::topic::read_topic`) from a real tansu broker, whose
//! ListOffsets (latest) ends a partition at the base offset of its last record batch plus one:
//! both ways of finding the end must still return every record of multi-record batches. Needs
//! tansu (`TANSU_BIN` or PATH); fails, never skips, without it.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use testkit::broker::{unique_name, Broker, BrokerOptions};
use testkit::topic::{read_topic, ReadUntil, TopicError};

const WITHIN: Duration = Duration::from_secs(60);

/// Sends `value-{i}` with key `key-{i}` for every i in `ids` at once, so that they travel in
/// multi-record batches, and waits for every acknowledgement.
async fn produce_batched(broker: &Broker, topic: &str, ids: std::ops::Range<u32>) {
    let producer: FutureProducer = broker
        .client_config()
        .set("linger.ms", "50")
        .set("acks", "all")
        .create()
        .unwrap();
    let deliveries: Vec<_> = ids
        .map(|i| {
            let (key, value) = (format!("key-{i}"), format!("value-{i}"));
            producer
                .send_result(FutureRecord::to(topic).key(&key).payload(&value))
                .map_err(|(error, _)| error)
                .unwrap()
        })
        .collect();
    for delivery in deliveries {
        delivery.await.unwrap().map_err(|(error, _)| error).unwrap();
    }
}

/// A tansu broker in memory with a fresh topic of `partitions` partitions named after `prefix`.
async fn broker_with_topic(prefix: &str, partitions: i32) -> (Broker, String) {
    let broker = Broker::start(BrokerOptions::memory()).await.unwrap();
    let topic = unique_name(prefix);
    broker.create_topic(&topic, partitions).await.unwrap();
    (broker, topic)
}

/// The values of `ids`, sorted as text.
fn values(ids: std::ops::Range<u32>) -> Vec<String> {
    let mut values: Vec<String> = ids.map(|i| format!("value-{i}")).collect();
    values.sort();
    values
}

#[tokio::test]
async fn both_ends_return_every_record_of_multi_record_batches_in_partition_order() {
    let (broker, topic) = broker_with_topic("read", 2).await;
    produce_batched(&broker, &topic, 0..100).await;
    produce_batched(&broker, &topic, 100..130).await;
    let bootstrap = broker.bootstrap_servers();

    for until in [
        ReadUntil::HighWatermarks,
        ReadUntil::Quiet { at_least: 130 },
    ] {
        let records = read_topic(&bootstrap, &topic, until, WITHIN).await.unwrap();
        let mut got: Vec<String> = records.iter().map(|r| r.text()).collect();
        got.sort();
        assert_eq!(got, values(0..130), "{until:?}");
        let order: Vec<(i32, i64)> = records.iter().map(|r| (r.partition, r.offset)).collect();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            order, sorted,
            "{until:?}: by partition and offset, once each"
        );
        for record in &records {
            let i = record.text().trim_start_matches("value-").to_owned();
            assert_eq!(record.key, format!("key-{i}").into_bytes(), "{until:?}");
        }
    }
}

#[tokio::test]
async fn an_empty_topic_reads_as_empty_either_way() {
    let (broker, topic) = broker_with_topic("empty", 3).await;
    let bootstrap = broker.bootstrap_servers();
    for until in [ReadUntil::HighWatermarks, ReadUntil::Quiet { at_least: 0 }] {
        let records = read_topic(&bootstrap, &topic, until, WITHIN).await.unwrap();
        assert!(records.is_empty(), "{until:?}: {records:?}");
    }
}

#[tokio::test]
async fn a_quiet_read_fails_in_time_when_fewer_records_than_expected_arrive() {
    let (broker, topic) = broker_with_topic("short", 1).await;
    produce_batched(&broker, &topic, 0..3).await;
    let error = read_topic(
        &broker.bootstrap_servers(),
        &topic,
        ReadUntil::Quiet { at_least: 4 },
        Duration::from_secs(3),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, TopicError::Timeout { read: 3, .. }),
        "{error}"
    );
}
