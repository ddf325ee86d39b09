//! Shared helpers of the consumer's integration tests: a real tansu broker, the Loki-compatible
//! receiver, a producer of records in the wire form, and the consumer run in-process on port 0.
#![allow(dead_code, missing_docs)]

use std::future::Future;
use std::time::{Duration, Instant};

use consumer::ConsumerConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;
use service::config::{KafkaSettings, ServiceSettings};
use testkit::broker::{unique_name, Broker, BrokerOptions};
use testkit::loki::{LokiConfig, LokiHandle, LokiReceiver};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub(crate) struct Env {
    pub broker: Broker,
    pub topic: String,
    pub dlq: String,
    pub group: String,
}

impl Env {
    pub(crate) async fn new(partitions: i32) -> Self {
        let broker = Broker::start(BrokerOptions::memory())
            .await
            .expect("tansu starts");
        let topic = unique_name("logs");
        let dlq = format!("{topic}-dlq");
        broker
            .create_topic(&topic, partitions)
            .await
            .expect("topic");
        broker.create_topic(&dlq, 1).await.expect("dlq topic");
        Self {
            broker,
            topic,
            dlq,
            group: unique_name("group"),
        }
    }

    pub(crate) fn config(&self, loki: &LokiHandle) -> ConsumerConfig {
        ConsumerConfig {
            kafka: KafkaSettings {
                bootstrap_servers: self.broker.bootstrap_servers(),
                topic: self.topic.clone(),
                ..KafkaSettings::default()
            },
            service: ServiceSettings {
                http_listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into(),
                environment: "test".into(),
                ..ConsumerConfig::default().service
            },
            kafka_dlq_topic: self.dlq.clone(),
            kafka_group_id: self.group.clone(),
            kafka_commit_interval: Duration::from_millis(200),
            kafka_session_timeout: Duration::from_secs(6),
            loki_url: loki.url().to_owned(),
            batch_max_wait: Duration::from_millis(200),
            retry_min_backoff: Duration::from_millis(50),
            retry_max_backoff: Duration::from_millis(500),
            misconfig_retry_interval: Duration::from_millis(300),
            loki_ready_interval: Duration::from_millis(200),
            lag_interval: Duration::from_millis(500),
            ..ConsumerConfig::default()
        }
    }

    pub(crate) fn producer(&self) -> FutureProducer {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.broker.bootstrap_servers())
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5");
        c.create().expect("producer")
    }

    /// Produces raw values (key = service when given) with the record headers when `headers`.
    pub(crate) async fn produce_raw(&self, items: &[(Option<String>, Vec<u8>)], headers: bool) {
        let p = self.producer();
        let futures: Vec<_> = items
            .iter()
            .map(|(key, value)| {
                let mut r: FutureRecord<'_, [u8], [u8]> =
                    FutureRecord::to(&self.topic).payload(value.as_slice());
                if let Some(k) = key {
                    r = r.key(k.as_bytes());
                }
                if headers {
                    let mut h = OwnedHeaders::new();
                    for (k, v) in schema::kafka::RECORD_HEADERS {
                        h = h.insert(Header {
                            key: k,
                            value: Some(v),
                        });
                    }
                    r = r.headers(h);
                }
                p.send(r, Duration::from_secs(30))
            })
            .collect();
        for f in futures {
            f.await.map_err(|(e, _)| e).expect("produced");
        }
        p.flush(Duration::from_secs(10)).expect("flush");
    }

    /// Produces records in the wire form (canonical value, key = service, headers).
    pub(crate) async fn produce_records(&self, records: &[String]) {
        let items: Vec<_> = records
            .iter()
            .map(|r| {
                let rec = schema::parse_record(r).expect("valid record");
                let mut v = Vec::new();
                schema::kafka::encode_value(&rec, &mut v);
                (Some(rec.service.to_string()), v)
            })
            .collect();
        self.produce_raw(&items, true).await;
    }

    /// Committed offsets of the test group, summed over partitions (unset counts as 0).
    pub(crate) fn committed_sum(&self, partitions: i32) -> i64 {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.broker.bootstrap_servers())
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false");
        let consumer: BaseConsumer = c.create().expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(&self.topic, p);
        }
        // The group coordinator can be slow to answer on a loaded machine: ask a few times.
        let mut attempt = 0;
        let committed = loop {
            match consumer.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
                Ok(c) => break c,
                Err(e) if attempt < 5 => {
                    attempt += 1;
                    eprintln!("committed offsets not answered ({e}), asking again");
                }
                Err(e) => panic!("committed offsets: {e}"),
            }
        };
        committed
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            })
            .sum()
    }

    /// Messages in the dead-letter topic with their headers.
    pub(crate) fn read_dlq(&self, expect: usize) -> Vec<DeadLetterMessage> {
        use rdkafka::message::{Headers, Message};
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.broker.bootstrap_servers())
            .set("group.id", unique_name("dlq-reader"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false");
        let consumer: BaseConsumer = c.create().expect("consumer");
        consumer.subscribe(&[&self.dlq]).expect("subscribe");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut out = Vec::new();
        while out.len() < expect && Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|x| {
                                (
                                    x.key.to_owned(),
                                    String::from_utf8_lossy(x.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push((m.payload().unwrap_or_default().to_vec(), headers));
            }
        }
        out
    }
}

pub(crate) async fn receiver(mut config: LokiConfig) -> LokiHandle {
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.control_listen = "127.0.0.1:0".parse().expect("addr");
    LokiReceiver::start(config).await.expect("receiver starts")
}

pub(crate) fn open_receiver_config() -> LokiConfig {
    LokiConfig::default().without_rate_limits()
}

/// A receiver without rate limits that refuses connections (Loki down) until its faults are
/// cleared.
pub(crate) async fn refusing_receiver() -> LokiHandle {
    let loki = receiver(open_receiver_config()).await;
    loki.set_faults(testkit::loki::Faults {
        outage: Some(testkit::loki::Outage::Refuse),
        ..testkit::loki::Faults::default()
    })
    .await
    .expect("faults set");
    loki
}

/// The consumer running in-process. Dropping it (a test that panics) stops the consumer, so
/// the test's runtime can shut down instead of waiting for the consumer's blocking work.
pub(crate) struct App {
    pub stop: CancellationToken,
    pub task: JoinHandle<Result<consumer::Summary, consumer::RunError>>,
    pub registry: prometheus::Registry,
    _stop_on_drop: tokio_util::sync::DropGuard,
}

pub(crate) fn spawn_app(config: ConsumerConfig) -> App {
    // The consumer's log goes to the test's output, which nextest shows when the test fails.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("info,rdkafka=warn")
        .try_init();
    let stop = CancellationToken::new();
    let registry = prometheus::Registry::new();
    let task = tokio::spawn(consumer::run(config, registry.clone(), stop.clone()));
    App {
        _stop_on_drop: stop.clone().drop_guard(),
        stop,
        task,
        registry,
    }
}

impl App {
    pub(crate) async fn shutdown(self) -> consumer::Summary {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("consumer stops in time")
            .expect("task")
            .expect("consumer ran")
    }

    pub(crate) fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_value(&self.registry, name, labels)
    }
}

pub(crate) fn metric_value(
    registry: &prometheus::Registry,
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    for family in registry.gather() {
        if family.name() != name {
            continue;
        }
        for m in family.get_metric() {
            let ok = labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            });
            if ok {
                return match family.get_field_type() {
                    prometheus::proto::MetricType::COUNTER => m.get_counter().value(),
                    _ => m.get_gauge().value(),
                };
            }
        }
    }
    0.0
}

/// Polls `check` until it returns true or `timeout` passes; returns whether it did.
pub(crate) async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `n` valid records from the generator, timestamps ending about now (so Loki's age limits
/// pass), in order.
pub(crate) fn fresh_records(n: u64, seed: u64) -> Vec<String> {
    let span = Duration::from_secs(600);
    let start_ns = schema::Timestamp::now().as_nanos() - span.as_nanos() as i64;
    let opts = testkit::gen::GenOptions {
        records: n,
        seed,
        format: testkit::gen::Format::Ndjson,
        start: schema::Timestamp::from_nanos(start_ns).expect("ts"),
        span,
    };
    let mut out = Vec::new();
    testkit::gen::generate(&opts, &mut out).expect("generate");
    String::from_utf8(out)
        .expect("utf8")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A dead-letter message: its value and its headers.
pub(crate) type DeadLetterMessage = (Vec<u8>, Vec<(String, String)>);
