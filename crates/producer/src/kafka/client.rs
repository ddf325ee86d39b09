//! The librdkafka settings of the producer's Kafka clients (DESIGN.md, "Kafka message"): the
//! brokers and security settings every client shares, the delivery settings of the producer
//! (`acks=all`, idempotence, compression, queue bounds), and the headers every record carries.

use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};

use crate::config::ProducerConfig;

/// The librdkafka settings every client of the producer shares (the producer, the admin client
/// of the topic check, `--follow`'s watermark and resume readers): brokers, client id and the
/// security settings (`kafka_extra_properties`, `kafka_sasl_password`), as the consumer's.
pub(crate) fn base_client_config(config: &ProducerConfig) -> ClientConfig {
    config.kafka.client_config("logpipe-producer", &[])
}

/// The librdkafka settings of the producer (shared with the raw benchmark baseline,
/// `examples/raw_produce.rs`): the brokers and security settings every client shares, then the delivery settings, which
/// extra properties cannot weaken.
pub fn client_config(config: &ProducerConfig) -> ClientConfig {
    let mut c = base_client_config(config);
    c.set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.codec", &config.kafka_compression)
        .set("linger.ms", config.kafka_linger.as_millis().to_string())
        .set(
            "queue.buffering.max.messages",
            config.kafka_queue_max_messages.to_string(),
        )
        .set(
            "queue.buffering.max.kbytes",
            config.kafka_queue_max_kbytes.to_string(),
        )
        .set(
            "message.max.bytes",
            config.kafka_message_max_bytes.to_string(),
        )
        .set(
            "delivery.timeout.ms",
            config.kafka_delivery_timeout.as_millis().to_string(),
        )
        .set("allow.auto.create.topics", "false");
    c
}

/// The headers every record carries ([`schema::kafka::RECORD_HEADERS`]).
pub fn record_headers() -> OwnedHeaders {
    let mut h = OwnedHeaders::new_with_capacity(schema::kafka::RECORD_HEADERS.len());
    for (key, value) in schema::kafka::RECORD_HEADERS {
        h = h.insert(Header {
            key,
            value: Some(value),
        });
    }
    h
}

#[cfg(test)]
mod tests {
    use rdkafka::admin::AdminClient;
    use rdkafka::client::DefaultClientContext;

    use super::*;
    use crate::kafka::Sink;

    fn secured() -> ProducerConfig {
        let mut config = ProducerConfig::default();
        config.kafka.extra_properties = vec![
            "security.protocol=SASL_SSL".into(),
            "sasl.mechanism=SCRAM-SHA-512".into(),
            "sasl.username=logpipe".into(),
            // An extra property cannot weaken the delivery guarantees.
            "acks=1".into(),
        ];
        config.kafka.sasl_password = service::config::Secret::new("s4sl-pw");
        config
    }

    #[test]
    fn every_client_carries_the_security_settings_and_the_producer_keeps_acks_all() {
        let config = secured();
        for (what, c) in [
            ("base", base_client_config(&config)),
            ("producer", client_config(&config)),
        ] {
            assert_eq!(c.get("security.protocol"), Some("SASL_SSL"), "{what}");
            assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"), "{what}");
            assert_eq!(c.get("sasl.username"), Some("logpipe"), "{what}");
            assert_eq!(c.get("sasl.password"), Some("s4sl-pw"), "{what}");
        }
        assert_eq!(client_config(&config).get("acks"), Some("all"));
        assert_eq!(ProducerConfig::default().kafka.extra_properties.len(), 0);
        assert_eq!(
            base_client_config(&ProducerConfig::default()).get("sasl.password"),
            None
        );
    }

    #[test]
    fn a_sasl_ssl_scram_client_can_be_created() {
        // Fails with "OpenSSL not available at build time" when rdkafka is built without `ssl`.
        // Creating the client does not contact the brokers.
        if let Err(e) = Sink::new(&secured()) {
            panic!("{e}");
        }
        let admin: Result<AdminClient<DefaultClientContext>, _> =
            base_client_config(&secured()).create();
        if let Err(e) = admin {
            panic!("{e}");
        }
    }

    #[test]
    fn the_headers_are_the_schema_headers() {
        use rdkafka::message::Headers;
        let h = record_headers();
        assert_eq!(h.count(), 2);
        assert_eq!(h.get(0).key, "schema-version");
        assert_eq!(h.get(0).value, Some(&b"1"[..]));
        assert_eq!(h.get(1).key, "content-type");
        assert_eq!(h.get(1).value, Some(&b"application/json"[..]));
    }
}
