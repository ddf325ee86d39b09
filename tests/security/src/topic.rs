//! Producing test records into a Kafka topic (reading one back is
//! [`testkit::topic::read_topic`]).

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use crate::Error;

/// Sends `records` (key, value) to `topic` with `headers`, through a producer built from
/// `config`, and returns once the broker acknowledged every one.
pub async fn produce(
    config: &ClientConfig,
    topic: &str,
    headers: &[(&str, &str)],
    records: &[(String, String)],
) -> Result<(), Error> {
    let producer: FutureProducer = config
        .clone()
        .set("acks", "all")
        .create()
        .map_err(Error::kafka("cannot create a test producer"))?;
    for (key, value) in records {
        let mut owned = OwnedHeaders::new();
        for (name, v) in headers {
            owned = owned.insert(Header {
                key: name,
                value: Some(*v),
            });
        }
        producer
            .send(
                FutureRecord::to(topic)
                    .key(key)
                    .payload(value)
                    .headers(owned),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| Error::Kafka {
                action: format!("cannot produce to {topic:?}"),
                source: e,
            })?;
    }
    Ok(())
}
