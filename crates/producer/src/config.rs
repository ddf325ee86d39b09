//! The producer's settings (DESIGN.md, "Configuration"): one flat [`ProducerConfig`] loaded by
//! [`service::config::load`] from defaults < TOML file < environment (each key's environment name
//! is the key in upper case; secrets may come from `<NAME>_FILE`). The settings it shares with the
//! consumer are `service::config`'s [`KafkaSettings`] and [`ServiceSettings`]. Every setting is
//! documented in `crates/producer/CONFIG.md`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use service::config::{ConfigError, KafkaSettings, OptionalAddr, Secret, ServiceSettings};

/// Compression codecs librdkafka accepts for `compression.codec`.
pub(crate) const COMPRESSIONS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

/// Every setting of the producer service. (No `deny_unknown_fields`, which serde does not
/// support next to `flatten`: [`service::config::load`] refuses a key no setting has.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProducerConfig {
    /// `kafka_bootstrap_servers`, `kafka_topic` (the topic records are produced to),
    /// `kafka_extra_properties` (for the producer and its topic check; its delivery settings
    /// win over them) and `kafka_sasl_password`, as the consumer has them.
    #[serde(flatten)]
    pub kafka: KafkaSettings,
    /// `http_listen` (the HTTP server: `/v1/logs`, `/metrics`, `/healthz`, `/readyz`; empty turns
    /// it off; default `0.0.0.0:8000`), `log_level`, `log_format`, `environment`,
    /// `shutdown_timeout` (the longest wait for in-flight records to be acknowledged) and
    /// `feature_enhanced_metrics` (adds `producer_records_by_level_total{level,service}`), as the
    /// consumer has them.
    #[serde(flatten)]
    pub service: ServiceSettings,
    /// Compression codec: `none`, `gzip`, `snappy`, `lz4` or `zstd`. Default `lz4`.
    pub kafka_compression: String,
    /// How long librdkafka waits to fill a batch (`linger.ms`), humantime. Default `5ms`.
    #[serde(with = "humantime_serde")]
    pub kafka_linger: Duration,
    /// Most messages waiting in the producer's queue (sent or not yet acknowledged); bounds
    /// memory. Default `20000`.
    pub kafka_queue_max_messages: u32,
    /// Most bytes, in KiB, waiting in the producer's queue. Default `32768` (32 MiB).
    pub kafka_queue_max_kbytes: u32,
    /// Largest message, in bytes, the producer sends (`message.max.bytes`, keep it at or below
    /// the broker's); a bigger record is reported as `message_too_large`. Default `1000000`.
    pub kafka_message_max_bytes: u32,
    /// How long librdkafka keeps retrying a message before reporting it undeliverable
    /// (`delivery.timeout.ms`), humantime. Default `5m`.
    #[serde(with = "humantime_serde")]
    pub kafka_delivery_timeout: Duration,
    /// Create the topic at start when it is missing (same as `--create-topic`). Default `false`.
    pub kafka_create_topic: bool,
    /// Partitions of a topic the producer creates. Default `3`.
    pub kafka_topic_partitions: i32,
    /// Replication factor of a topic the producer creates. Default `1`.
    pub kafka_topic_replication: i32,
    /// Bearer token `POST /v1/logs` requires (secret; `INGEST_TOKEN_FILE` works); empty means no
    /// authentication. Default empty.
    pub ingest_token: Secret,
    /// Largest `POST /v1/logs` body in bytes, before and after gzip decoding. Default `5242880`
    /// (5 MiB).
    pub ingest_max_body_bytes: u64,
    /// Largest record in bytes; a bigger one is rejected as `record_too_large` without being
    /// held in memory. Default `1048576` (1 MiB).
    pub max_record_bytes: usize,
    /// Checkpoint file of `--follow`; empty means `<input>.checkpoint` next to the input.
    /// Default empty.
    pub checkpoint_path: String,
    /// How often `--follow` looks for new data, rotation and truncation, humantime.
    /// Default `250ms`.
    #[serde(with = "humantime_serde")]
    pub follow_poll_interval: Duration,
    /// How often Kafka metadata is refreshed for `/readyz`, humantime. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub metadata_refresh_interval: Duration,
    /// How often a progress line is logged by file sources when stderr is not a terminal,
    /// humantime. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub progress_interval: Duration,
    /// How many invalid records are logged with their position before they are only counted.
    /// Default `20`.
    pub max_logged_errors: u32,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            kafka: KafkaSettings::default(),
            service: ServiceSettings::new(OptionalAddr::from(SocketAddr::from((
                [0, 0, 0, 0],
                8000,
            )))),
            kafka_compression: "lz4".into(),
            kafka_linger: Duration::from_millis(5),
            kafka_queue_max_messages: 20_000,
            kafka_queue_max_kbytes: 32 * 1024,
            kafka_message_max_bytes: 1_000_000,
            kafka_delivery_timeout: Duration::from_secs(300),
            kafka_create_topic: false,
            kafka_topic_partitions: 3,
            kafka_topic_replication: 1,
            ingest_token: Secret::default(),
            ingest_max_body_bytes: 5 * 1024 * 1024,
            max_record_bytes: schema::reader::DEFAULT_MAX_RECORD_BYTES,
            checkpoint_path: String::new(),
            follow_poll_interval: Duration::from_millis(250),
            metadata_refresh_interval: Duration::from_secs(5),
            progress_interval: Duration::from_secs(10),
            max_logged_errors: 20,
        }
    }
}

impl ProducerConfig {
    /// Loads the configuration (defaults < `file` < `env`) and validates it.
    pub fn load(
        file: Option<&Path>,
        env: &std::collections::HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let config: Self = service::config::load(file, env)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that parse but cannot work, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
            ConfigError::invalid(key, reason)
        }
        self.kafka.validate()?;
        self.service.validate()?;
        if !COMPRESSIONS.contains(&self.kafka_compression.as_str()) {
            return Err(invalid(
                "kafka_compression",
                format!(
                    "{:?} is not one of {}",
                    self.kafka_compression,
                    COMPRESSIONS.join(", ")
                ),
            ));
        }
        if self.kafka_linger > Duration::from_secs(900) {
            return Err(invalid("kafka_linger", "must be at most 15m"));
        }
        if self.kafka_queue_max_messages == 0 {
            return Err(invalid("kafka_queue_max_messages", "must be at least 1"));
        }
        if self.kafka_queue_max_kbytes == 0 {
            return Err(invalid("kafka_queue_max_kbytes", "must be at least 1"));
        }
        if self.kafka_message_max_bytes < 1000 {
            return Err(invalid("kafka_message_max_bytes", "must be at least 1000"));
        }
        if self.kafka_delivery_timeout < Duration::from_secs(1) {
            return Err(invalid("kafka_delivery_timeout", "must be at least 1s"));
        }
        if self.kafka_topic_partitions < 1 {
            return Err(invalid("kafka_topic_partitions", "must be at least 1"));
        }
        if self.kafka_topic_replication < 1 {
            return Err(invalid("kafka_topic_replication", "must be at least 1"));
        }
        if self.ingest_max_body_bytes == 0 {
            return Err(invalid("ingest_max_body_bytes", "must be at least 1"));
        }
        if self.max_record_bytes < 64 {
            return Err(invalid("max_record_bytes", "must be at least 64"));
        }
        for (key, d) in [
            ("follow_poll_interval", self.follow_poll_interval),
            ("metadata_refresh_interval", self.metadata_refresh_interval),
            ("progress_interval", self.progress_interval),
        ] {
            if d.is_zero() {
                return Err(invalid(key, "must be more than 0"));
            }
        }
        Ok(())
    }

    /// Whether `POST /v1/logs` requires a token, for the start-up log (never the token):
    /// `bearer_token`, `none` (anyone may post) or `http_off` (no HTTP server).
    pub fn ingest_auth(&self) -> &'static str {
        if self.http_addr().is_none() {
            "http_off"
        } else if self.ingest_token.is_empty() {
            "none"
        } else {
            "bearer_token"
        }
    }

    /// The HTTP address, or `None` when the server is off.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.service.http_listen.addr()
    }

    /// The checkpoint file for `--follow` of `input`.
    pub(crate) fn checkpoint_for(&self, input: &Path) -> PathBuf {
        if self.checkpoint_path.is_empty() {
            let mut name = input.as_os_str().to_owned();
            name.push(".checkpoint");
            PathBuf::from(name)
        } else {
            PathBuf::from(&self.checkpoint_path)
        }
    }

    /// Every feature flag the producer has (`feature_flag{name}` is exported for each).
    pub const KNOWN_FLAGS: &'static [&'static str] = &["enhanced_metrics"];

    /// The flags that are on, by name, for `/healthz` and `feature_flag{name}`.
    pub fn feature_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        if self.service.feature_enhanced_metrics {
            flags.push("enhanced_metrics".to_owned());
        }
        flags
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use service::config::ExposeSecret;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_default_config_loads_and_validates() {
        let c = ProducerConfig::load(None, &env(&[])).unwrap();
        assert_eq!(c, ProducerConfig::default());
    }

    #[test]
    fn seed_environment_names_work() {
        let c = ProducerConfig::load(
            None,
            &env(&[
                ("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092"),
                ("KAFKA_LINGER", "20ms"),
                ("FEATURE_ENHANCED_METRICS", "true"),
                ("INGEST_TOKEN", "t0ken"),
            ]),
        )
        .unwrap();
        assert_eq!(c.kafka.bootstrap_servers, "k1:9092,k2:9092");
        assert_eq!(c.kafka_linger, Duration::from_millis(20));
        assert_eq!(c.feature_flags(), ["enhanced_metrics"]);
        assert_eq!(c.ingest_token.expose_secret(), "t0ken");
        assert!(!format!("{c:?}").contains("t0ken"));
    }

    #[test]
    fn an_invalid_value_names_its_key() {
        for (name, value, key) in [
            ("KAFKA_COMPRESSION", "brotli", "kafka_compression"),
            ("KAFKA_TOPIC", "no spaces", "kafka_topic"),
            ("HTTP_LISTEN", "port 80", "http_listen"),
            ("KAFKA_TOPIC_PARTITIONS", "0", "kafka_topic_partitions"),
            ("KAFKA_LINGER", "soon", "kafka_linger"),
            ("SHUTDOWN_TIMEOUT", "-1", "shutdown_timeout"),
            ("LOG_FORMAT", "xml", "log_format"),
            ("KAFKA_BOOTSTRAP_SERVERS", " ", "kafka_bootstrap_servers"),
            (
                "FEATURE_ENHANCED_METRICS",
                "maybe",
                "feature_enhanced_metrics",
            ),
        ] {
            let e = ProducerConfig::load(None, &env(&[(name, value)]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{name}={value}: {e}");
        }
    }

    #[test]
    fn kafka_security_settings_are_read_like_the_consumers() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("sasl");
        std::fs::write(&pw, "s4sl-pw\n").unwrap();
        let c = ProducerConfig::load(
            None,
            &env(&[
                (
                    "KAFKA_EXTRA_PROPERTIES",
                    "security.protocol=SASL_SSL, sasl.mechanism=SCRAM-SHA-512,sasl.username=u",
                ),
                ("KAFKA_SASL_PASSWORD_FILE", pw.to_str().unwrap()),
            ]),
        )
        .unwrap();
        assert_eq!(
            c.kafka.extra_properties,
            [
                "security.protocol=SASL_SSL",
                "sasl.mechanism=SCRAM-SHA-512",
                "sasl.username=u"
            ]
        );
        assert_eq!(c.kafka.sasl_password.expose_secret(), "s4sl-pw");
        assert!(!format!("{c:?}").contains("s4sl-pw"));
    }

    #[test]
    fn a_malformed_extra_property_is_refused_without_being_shown() {
        let e = ProducerConfig::load(
            None,
            &env(&[("KAFKA_EXTRA_PROPERTIES", "sasl.password:hunter22")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("`kafka_extra_properties`") && e.contains("entry 1 of 1"),
            "{e}"
        );
        assert!(!e.contains("hunter22"), "{e}");
        // In a file, a string where a list belongs is refused without being shown too.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "kafka_extra_properties = \"sasl.password:hunter22\"\n").unwrap();
        let e = ProducerConfig::load(Some(&f), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`kafka_extra_properties`"), "{e}");
        assert!(!e.contains("hunter22"), "{e}");
    }

    #[test]
    fn an_empty_ingest_token_file_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "\n").unwrap();
        let e = ProducerConfig::load(None, &env(&[("INGEST_TOKEN_FILE", f.to_str().unwrap())]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("INGEST_TOKEN_FILE") && e.contains(f.to_str().unwrap()),
            "{e}"
        );
    }

    #[test]
    fn a_non_string_ingest_token_in_a_file_is_refused_without_being_shown() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        for (text, value) in [
            ("ingest_token = 7000019877\n", "7000019877"),
            ("ingest_token = SxtomlQ1K\n", "SxtomlQ1K"),
        ] {
            std::fs::write(&f, text).unwrap();
            let e = ProducerConfig::load(Some(&f), &env(&[]))
                .unwrap_err()
                .to_string();
            assert!(e.contains("ingest_token"), "{text}: {e}");
            assert!(!e.contains(value), "{text}: {e}");
        }
    }

    #[test]
    fn ingest_auth_says_whether_a_token_is_required() {
        let mut c = ProducerConfig::default();
        assert_eq!(c.ingest_auth(), "none");
        c.ingest_token = Secret::new("t0ken");
        assert_eq!(c.ingest_auth(), "bearer_token");
        c.service.http_listen = OptionalAddr::OFF;
        assert_eq!(c.ingest_auth(), "http_off");
    }

    #[test]
    fn an_empty_http_listen_turns_the_http_server_off() {
        let c = ProducerConfig::load(None, &env(&[("HTTP_LISTEN", "")])).unwrap();
        assert_eq!(c.http_addr(), None);
        assert_eq!(c.ingest_auth(), "http_off");
        let c = ProducerConfig::load(None, &env(&[("HTTP_LISTEN", "127.0.0.1:9000")])).unwrap();
        assert_eq!(
            c.http_addr(),
            Some(SocketAddr::from(([127, 0, 0, 1], 9000)))
        );
        let c = ProducerConfig::load(None, &env(&[])).unwrap();
        assert_eq!(c.http_addr(), Some(SocketAddr::from(([0, 0, 0, 0], 8000))));
    }

    #[test]
    fn a_config_file_sets_own_and_shared_settings_and_refuses_unknown_keys_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("producer.toml");
        std::fs::write(
            &f,
            "kafka_topic = \"app-logs\"\nkafka_linger = \"20ms\"\nhttp_listen = \"\"\n",
        )
        .unwrap();
        let c = ProducerConfig::load(Some(&f), &env(&[("KAFKA_TOPIC", "env-logs")])).unwrap();
        assert_eq!(c.kafka.topic, "env-logs");
        assert_eq!(c.kafka_linger, Duration::from_millis(20));
        assert_eq!(c.http_addr(), None);
        std::fs::write(&f, "kafka_linger = \"20ms\"\nkafka_lingr = \"5ms\"\n").unwrap();
        let e = ProducerConfig::load(Some(&f), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`kafka_lingr`") && e.contains("producer.toml, line 2"),
            "{e}"
        );
    }

    #[test]
    fn checkpoint_defaults_to_a_file_next_to_the_input() {
        let c = ProducerConfig::default();
        assert_eq!(
            c.checkpoint_for(Path::new("/var/log/app.log")),
            Path::new("/var/log/app.log.checkpoint")
        );
    }
}
