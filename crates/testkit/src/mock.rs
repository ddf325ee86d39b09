//! An in-process Kafka cluster for fault-injection tests: librdkafka's mock cluster
//! (`rdkafka::mocking`, C API in librdkafka's `src/rdkafka_mock.h`), for faults tansu cannot
//! stage: per-request error codes, brokers going down and up, round-trip delay.
//!
//! `rdkafka::mocking::MockCluster` holds a raw pointer, so it is neither `Send` nor `Sync`, and
//! it borrows or owns the client it was made from. [`MockKafka`] owns one on a dedicated thread
//! and forwards every call to it, so the handle itself is `Send + Sync`: it can live in a
//! `static`, in an `Arc` shared with spawned tasks, or across `.await`s on any runtime.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

type Cluster = MockCluster<'static, DefaultProducerContext>;
type Op = Box<dyn FnOnce(&Cluster) + Send>;

/// Errors of the mock cluster.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    /// The thread owning the cluster could not be started.
    #[error("cannot start the mock cluster thread: {0}")]
    Thread(#[source] std::io::Error),
    /// librdkafka refused to create the cluster.
    #[error("cannot create the mock cluster: {0}")]
    Start(#[source] KafkaError),
    /// A mock operation failed.
    #[error("{op}: {source}")]
    Op {
        /// What was being done.
        op: String,
        /// librdkafka's error.
        #[source]
        source: KafkaError,
    },
    /// The thread owning the cluster has stopped (an earlier operation panicked).
    #[error("the mock cluster thread has stopped")]
    Gone,
}

/// A librdkafka mock cluster of n brokers on loopback, destroyed when dropped.
///
/// Brokers have ids `1..=n`; [`MockKafka::ALL_BROKERS`] addresses all of them. Topics are
/// auto-created on first use (1 partition) unless made with [`create_topic`](Self::create_topic).
/// Drop the clients before the cluster.
#[derive(Debug)]
pub struct MockKafka {
    bootstrap_servers: String,
    brokers: i32,
    ops: Option<mpsc::Sender<Op>>,
    thread: Option<JoinHandle<()>>,
}

impl MockKafka {
    /// The broker id meaning "every broker" in [`broker_down`](Self::broker_down),
    /// [`broker_up`](Self::broker_up) and [`round_trip_time`](Self::round_trip_time).
    pub const ALL_BROKERS: i32 = -1;

    /// Starts a mock cluster of `brokers` brokers.
    pub fn new(brokers: i32) -> Result<Self, MockError> {
        let (ops, incoming) = mpsc::channel::<Op>();
        let (started, start_result) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("mock-kafka".into())
            .spawn(move || {
                let cluster = match MockCluster::new(brokers) {
                    Ok(cluster) => cluster,
                    Err(error) => {
                        let _ = started.send(Err(error));
                        return;
                    }
                };
                if started.send(Ok(cluster.bootstrap_servers())).is_err() {
                    return;
                }
                // Ends when the handle drops its sender; the cluster is destroyed here.
                for op in incoming {
                    op(&cluster);
                }
            })
            .map_err(MockError::Thread)?;
        let bootstrap_servers = start_result
            .recv()
            .map_err(|_| MockError::Gone)?
            .map_err(MockError::Start)?;
        Ok(Self {
            bootstrap_servers,
            brokers,
            ops: Some(ops),
            thread: Some(thread),
        })
    }

    /// The brokers' addresses, for `bootstrap.servers` (usable by other processes too).
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }

    /// A client configuration with `bootstrap.servers` set, to add test settings to.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        config
    }

    /// How many brokers the cluster has.
    pub fn brokers(&self) -> i32 {
        self.brokers
    }

    /// Creates `name` with `partitions` partitions (replication factor 1, leaders spread over
    /// the brokers). The mock does not implement the CreateTopics API, so admin clients cannot.
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<(), MockError> {
        let name = name.to_owned();
        self.call(format!("cannot create topic {name:?}"), move |cluster| {
            cluster.create_topic(&name, partitions, 1)
        })
    }

    /// Makes the next `errors.len()` requests of type `api_key` fail, in order, with these
    /// codes. `RD_KAFKA_RESP_ERR__TRANSPORT` makes the broker drop the connection instead.
    pub fn request_errors(
        &self,
        api_key: RDKafkaApiKey,
        errors: &[RDKafkaRespErr],
    ) -> Result<(), MockError> {
        let errors = errors.to_vec();
        self.with_cluster(move |cluster| cluster.request_errors(api_key, &errors))
    }

    /// Drops the errors still queued for `api_key`.
    pub fn clear_request_errors(&self, api_key: RDKafkaApiKey) -> Result<(), MockError> {
        self.with_cluster(move |cluster| cluster.clear_request_errors(api_key))
    }

    /// Disconnects broker `broker_id` (or [`ALL_BROKERS`](Self::ALL_BROKERS)) and refuses new
    /// connections. Partition leadership does not move.
    pub fn broker_down(&self, broker_id: i32) -> Result<(), MockError> {
        self.call(
            format!("cannot take broker {broker_id} down"),
            move |cluster| cluster.broker_down(broker_id),
        )
    }

    /// Lets broker `broker_id` (or [`ALL_BROKERS`](Self::ALL_BROKERS)) accept connections again.
    pub fn broker_up(&self, broker_id: i32) -> Result<(), MockError> {
        self.call(
            format!("cannot bring broker {broker_id} up"),
            move |cluster| cluster.broker_up(broker_id),
        )
    }

    /// Delays every response of broker `broker_id` (or [`ALL_BROKERS`](Self::ALL_BROKERS)) by
    /// `delay`; `Duration::ZERO` removes the delay.
    pub fn round_trip_time(&self, broker_id: i32, delay: Duration) -> Result<(), MockError> {
        self.call(
            format!("cannot set the round-trip time of broker {broker_id}"),
            move |cluster| cluster.broker_round_trip_time(broker_id, delay),
        )
    }

    /// Moves the leadership of `topic`/`partition` to `broker_id`; `None` leaves it leaderless.
    pub fn partition_leader(
        &self,
        topic: &str,
        partition: i32,
        broker_id: Option<i32>,
    ) -> Result<(), MockError> {
        let topic = topic.to_owned();
        self.call(
            format!("cannot set the leader of {topic}/{partition}"),
            move |cluster| cluster.partition_leader(&topic, partition, broker_id),
        )
    }

    /// Makes metadata requests report `error` for `topic`.
    pub fn topic_error(&self, topic: &str, error: RDKafkaRespErr) -> Result<(), MockError> {
        let topic = topic.to_owned();
        self.call(
            format!("cannot set an error on {topic:?}"),
            move |cluster| cluster.topic_error(&topic, error),
        )
    }

    /// Runs a fallible mock operation on the owning thread.
    fn call(
        &self,
        op: String,
        f: impl FnOnce(&Cluster) -> Result<(), KafkaError> + Send + 'static,
    ) -> Result<(), MockError> {
        self.with_cluster(f)?
            .map_err(|source| MockError::Op { op, source })
    }

    /// Runs `f` on the thread that owns the cluster and returns its result.
    fn with_cluster<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Cluster) -> R + Send + 'static,
    ) -> Result<R, MockError> {
        let (reply, result) = mpsc::sync_channel(1);
        let op: Op = Box::new(move |cluster| {
            let _ = reply.send(f(cluster));
        });
        self.ops
            .as_ref()
            .ok_or(MockError::Gone)?
            .send(op)
            .map_err(|_| MockError::Gone)?;
        result.recv().map_err(|_| MockError::Gone)
    }
}

impl Drop for MockKafka {
    fn drop(&mut self) {
        // Closing the channel ends the owning thread's loop, which destroys the cluster.
        drop(self.ops.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn the_handle_is_send_and_sync() {
        assert_send_sync::<MockKafka>();
    }

    #[test]
    fn a_cluster_has_one_address_per_broker() {
        let mock = MockKafka::new(3).unwrap();
        assert_eq!(mock.brokers(), 3);
        assert_eq!(mock.bootstrap_servers().split(',').count(), 3);
        mock.create_topic("t", 2).unwrap();
        mock.broker_down(2).unwrap();
        mock.broker_up(MockKafka::ALL_BROKERS).unwrap();
    }

    #[test]
    fn unknown_brokers_are_reported() {
        let mock = MockKafka::new(1).unwrap();
        let error = mock.broker_down(7).unwrap_err();
        assert!(matches!(error, MockError::Op { .. }), "{error}");
    }
}
