//! The topic records go to: its partitions from metadata (readiness, `--follow`'s watermarks)
//! and the start-up check that it exists, creating it when asked (`--create-topic`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::ClientContext;

use super::client::base_client_config;
use super::SinkError;
use crate::config::ProducerConfig;

/// The ids of the topic's partitions, from metadata (`servers` names the brokers in errors).
pub(crate) fn partition_ids<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    servers: &str,
    timeout: Duration,
) -> Result<Vec<i32>, SinkError> {
    let md = client
        .fetch_metadata(Some(topic), timeout)
        .map_err(|source| SinkError::Unreachable {
            servers: servers.to_owned(),
            source,
        })?;
    match md.topics().iter().find(|t| t.name() == topic) {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
            Ok(t.partitions().iter().map(|p| p.id()).collect())
        }
        _ => Err(SinkError::TopicMissing(topic.to_owned())),
    }
}

/// Makes sure the topic exists: checks metadata, and when it is missing creates it with the
/// configured partitions if `create` is true, or fails with [`SinkError::TopicMissing`].
pub async fn ensure_topic(config: &ProducerConfig, create: bool) -> Result<(), SinkError> {
    let admin: AdminClient<DefaultClientContext> = base_client_config(config)
        .create()
        .map_err(SinkError::Client)?;
    let admin = Arc::new(admin);
    let topic = config.kafka.topic.clone();
    let servers = config.kafka.bootstrap_servers.clone();
    let check = {
        let admin = Arc::clone(&admin);
        let topic = topic.clone();
        let servers = servers.clone();
        move || partition_ids(admin.inner(), &topic, &servers, Duration::from_secs(10)).map(|_| ())
    };
    match tokio::task::spawn_blocking(check.clone()).await {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(SinkError::TopicMissing(_))) if create => {}
        Ok(Err(e)) => return Err(e),
        Err(e) => {
            return Err(SinkError::CreateTopic {
                topic,
                reason: e.to_string(),
            })
        }
    }
    let new = NewTopic::new(
        &topic,
        config.kafka_topic_partitions,
        TopicReplication::Fixed(config.kafka_topic_replication),
    );
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics([&new], &opts)
        .await
        .map_err(|e| SinkError::CreateTopic {
            topic: topic.clone(),
            reason: e.to_string(),
        })?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(SinkError::CreateTopic {
                    topic: topic.clone(),
                    reason: code.to_string(),
                })
            }
        }
    }
    tracing::info!(topic = %topic, partitions = config.kafka_topic_partitions, "kafka topic created");
    // Metadata can lag creation by a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::task::spawn_blocking(check.clone()).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) if Instant::now() >= deadline => return Err(e),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
