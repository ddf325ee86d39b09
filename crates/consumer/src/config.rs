//! The consumer's settings: one flat struct, every field's environment name is its key in upper
//! case (DESIGN.md, "Configuration"). Loaded by [`service::config::load`]; [`ConsumerConfig::validate`]
//! fails before any port is bound or connection made, naming the key. The settings it shares
//! with the producer are `service::config`'s [`KafkaSettings`] and [`ServiceSettings`].

use std::net::SocketAddr;
use std::time::Duration;

use schema::labels::{LabelPolicy, MAX_LABELS};
use schema::loki::limits::Limits;
use schema::loki::metadata::normalize_metadata_name;
use schema::loki::tenant::check_tenant_id;
use schema::Timestamp;
use serde::{Deserialize, Serialize};
use service::config::{ConfigError, KafkaSettings, OptionalAddr, Secret, ServiceSettings};

/// How a line over Loki's `max_line_size` is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OversizeLines {
    /// Send the record to the dead-letter topic (nothing is altered).
    Dlq,
    /// Cut the line to the limit (marked with `…[truncated]`) and push it.
    Truncate,
}

/// Push body encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Protobuf in a raw snappy block (what Promtail sends).
    Protobuf,
    /// JSON (optionally gzip, see `loki_gzip`).
    Json,
}

/// Every setting of the consumer. Environment name = key in upper case. (No
/// `deny_unknown_fields`, which serde does not support next to `flatten`:
/// [`service::config::load`] refuses a key no setting has.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsumerConfig {
    /// `kafka_bootstrap_servers`, `kafka_topic` (the topic to consume),
    /// `kafka_extra_properties` (SSL and SASL PLAIN/SCRAM are built in, against the system
    /// OpenSSL; they override the fetch tuning, the group and offset settings win over them)
    /// and `kafka_sasl_password`, as the producer has them.
    #[serde(flatten)]
    pub kafka: KafkaSettings,
    /// `http_listen` (the admin server: `/metrics`, `/healthz`, `/readyz`; required, so
    /// [`ConsumerConfig::validate`] refuses it empty; default `0.0.0.0:8001`; see
    /// [`ConsumerConfig::http_addr`]), `log_level`, `log_format`, `environment` (sent as the
    /// `environment` label), `shutdown_timeout` (the bound on flushing at shutdown) and
    /// `feature_enhanced_metrics` (per-partition and per-service/level series), as the producer
    /// has them.
    #[serde(flatten)]
    pub service: ServiceSettings,
    /// Consumer group id. Default `log-consumer`.
    pub kafka_group_id: String,
    /// Dead-letter topic for records Loki will never accept. Default `logs-dlq`.
    pub kafka_dlq_topic: String,
    /// Where a group without committed offsets starts: `earliest` or `latest`. Default
    /// `earliest` (nothing already in the topic is skipped).
    pub kafka_auto_offset_reset: String,
    /// Group session timeout, 6 s to 30 min (what a broker accepts by default). Default `10s`.
    #[serde(with = "humantime_serde")]
    pub kafka_session_timeout: Duration,
    /// How often stored (delivered) offsets are committed. Default `1s`.
    #[serde(with = "humantime_serde")]
    pub kafka_commit_interval: Duration,
    /// `FEATURE_NEW_CONSUMER`: cooperative-sticky incremental rebalancing instead of eager
    /// range assignment. Default `false`.
    pub feature_new_consumer: bool,

    /// Loki base URL. Default `http://localhost:3100`. Credentials in it
    /// (`http://user:password@host`) are sent as basic auth (they win over `loki_username` and
    /// `loki_bearer_token`) and never logged.
    pub loki_url: String,
    /// Tenant sent as `X-Scope-OrgID`; empty sends none. With `loki_tenant_field`, the tenant of
    /// records without that field. Default empty.
    pub loki_tenant_id: String,
    /// Record field whose value is the record's tenant (`X-Scope-OrgID`), so one consumer
    /// serves many teams of one Loki; records without it get `loki_tenant_id`, records whose
    /// value Loki would refuse as a tenant go to the dead-letter topic (`invalid_tenant`).
    /// Empty: every record has `loki_tenant_id`. Default empty.
    pub loki_tenant_field: String,
    /// Tenants named in per-tenant metrics; the rest are counted as `other`. Default 100.
    pub max_tenant_series: usize,
    /// Basic-auth user name; empty for none. Default empty.
    pub loki_username: String,
    /// Basic-auth password. Secret.
    pub loki_password: Secret,
    /// Bearer token (instead of basic auth). Secret.
    pub loki_bearer_token: Secret,
    /// Push encoding: `protobuf` or `json`. Default `protobuf`.
    pub loki_encoding: Encoding,
    /// Gzip JSON push bodies. Default `false`.
    pub loki_gzip: bool,
    /// Timeout of one push request. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub loki_timeout: Duration,
    /// PEM file of extra CA certificates for Loki's TLS. Default empty.
    pub loki_tls_ca_file: String,
    /// Accept any TLS certificate from Loki (testing only). Default `false`.
    pub loki_tls_insecure_skip_verify: bool,
    /// Loki's `max_line_size` in bytes, checked before sending. Default 262144.
    pub loki_max_line_size: usize,
    /// Loki's `reject_old_samples_max_age`; older records go to the dead-letter topic.
    /// `0s` disables the check. Default `7days`.
    #[serde(with = "humantime_serde")]
    pub loki_reject_old_samples_max_age: Duration,
    /// Loki's `creation_grace_period`: how far in the future a record may be. Default `10m`.
    #[serde(with = "humantime_serde")]
    pub loki_creation_grace_period: Duration,
    /// Loki's `max_chunk_age`; a record more than half of it behind the newest of its stream
    /// is refused by Loki. Default `2h`.
    #[serde(with = "humantime_serde")]
    pub loki_max_chunk_age: Duration,
    /// The start of Loki's first schema period (`schema_config.configs[0].from`), as a date
    /// (`2020-10-24`) or an RFC 3339 time. Loki answers a record dated before it with a 500
    /// forever, so such records go to the dead-letter topic instead. Default `2020-10-24` (as
    /// `deploy/loki/config.yaml`).
    pub loki_schema_start: String,
    /// What to do with a line over `loki_max_line_size`: `dlq` or `truncate`. Default `dlq`.
    pub oversize_lines: OversizeLines,

    /// Flush a stream's batch at this many bytes. Default 1 MiB (as Promtail).
    pub batch_max_bytes: usize,
    /// Flush a stream's batch at this many records. Default 10000.
    pub batch_max_records: usize,
    /// Flush a stream's batch when its oldest record was produced this long ago (Kafka
    /// timestamp), at least half of it after the batch opened and at most all of it. Default `1s`.
    #[serde(with = "humantime_serde")]
    pub batch_max_wait: Duration,
    /// Pushes in flight at once, per tenant. Default 4.
    pub max_in_flight_pushes: usize,
    /// Records held (batching, in flight, retrying) before reading stops; held that long (5 s),
    /// the partitions are paused. Default 10000.
    pub buffer_max_records: usize,
    /// Bytes held before reading stops (then pausing, as for records). Default 8 MiB.
    pub buffer_max_bytes: usize,
    /// First retry delay for 429, 5xx and network errors. Default `250ms`.
    #[serde(with = "humantime_serde")]
    pub retry_min_backoff: Duration,
    /// Longest retry delay. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub retry_max_backoff: Duration,
    /// Attempts before a retriable push is given up (its records then go to the dead-letter
    /// topic); 0 retries forever. Default 0.
    pub retry_max_attempts: u32,
    /// Consecutive 500 answers to one push, while Loki accepts other pushes, after which the
    /// push's failure is taken as permanent: it is split like a 400 and exactly the records
    /// that fail alone go to the dead-letter topic (`loki_persistent_error`). A Loki that is
    /// down (no answer, 503s, every push failing) is retried without limit regardless. Also:
    /// 429s in a row to one push while the tenant's other pushes pass (it is bigger than the
    /// tenant's burst) split it; nothing is dead-lettered for a 429. 0 never gives up.
    /// Default 10.
    pub loki_persistent_error_attempts: u32,
    /// Retry interval while Loki answers 401/403/404 (misconfiguration). Default `30s`.
    #[serde(with = "humantime_serde")]
    pub misconfig_retry_interval: Duration,

    /// Record fields that become stream labels. Default `service,level`.
    pub label_fields: Vec<String>,
    /// Record fields copied to structured metadata. Default `trace_id,span_id,request_id`.
    pub metadata_fields: Vec<String>,
    /// Distinct label sets before new label values are folded into `other`. Default 1000.
    pub max_label_sets: usize,

    /// How often Loki's `/ready` is checked for readiness. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub loki_ready_interval: Duration,
    /// How often consumer lag is refreshed (librdkafka statistics interval). Default `5s`.
    #[serde(with = "humantime_serde")]
    pub lag_interval: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        let limits = Limits::default();
        Self {
            kafka: KafkaSettings::default(),
            service: ServiceSettings::new(OptionalAddr::from(SocketAddr::from((
                [0, 0, 0, 0],
                8001,
            )))),
            kafka_group_id: "log-consumer".into(),
            kafka_dlq_topic: "logs-dlq".into(),
            kafka_auto_offset_reset: "earliest".into(),
            kafka_session_timeout: Duration::from_secs(10),
            kafka_commit_interval: Duration::from_secs(1),
            feature_new_consumer: false,
            loki_url: "http://localhost:3100".into(),
            loki_tenant_id: String::new(),
            loki_tenant_field: String::new(),
            max_tenant_series: 100,
            loki_username: String::new(),
            loki_password: Secret::default(),
            loki_bearer_token: Secret::default(),
            loki_encoding: Encoding::Protobuf,
            loki_gzip: false,
            loki_timeout: Duration::from_secs(10),
            loki_tls_ca_file: String::new(),
            loki_tls_insecure_skip_verify: false,
            loki_max_line_size: limits.max_line_size,
            loki_reject_old_samples_max_age: limits.reject_old_samples_max_age,
            loki_creation_grace_period: limits.creation_grace_period,
            loki_max_chunk_age: limits.max_chunk_age,
            loki_schema_start: "2020-10-24".into(),
            oversize_lines: OversizeLines::Dlq,
            batch_max_bytes: 1024 * 1024,
            batch_max_records: 10_000,
            batch_max_wait: Duration::from_secs(1),
            max_in_flight_pushes: 4,
            buffer_max_records: 10_000,
            buffer_max_bytes: 8 * 1024 * 1024,
            retry_min_backoff: Duration::from_millis(250),
            retry_max_backoff: Duration::from_secs(30),
            retry_max_attempts: 0,
            loki_persistent_error_attempts: 10,
            misconfig_retry_interval: Duration::from_secs(30),
            label_fields: vec!["service".into(), "level".into()],
            metadata_fields: vec!["trace_id".into(), "span_id".into(), "request_id".into()],
            max_label_sets: 1000,
            loki_ready_interval: Duration::from_secs(5),
            lag_interval: Duration::from_secs(5),
        }
    }
}

/// The shortest group session a Kafka broker accepts by default (`group.min.session.timeout.ms`).
pub(crate) const MIN_SESSION_TIMEOUT: Duration = Duration::from_secs(6);
/// The longest group session a Kafka broker accepts by default (`group.max.session.timeout.ms`).
pub(crate) const MAX_SESSION_TIMEOUT: Duration = Duration::from_secs(30 * 60);

impl ConsumerConfig {
    /// Checks values that parse but cannot work; names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let nonempty = |key: &str, v: &str| {
            if v.trim().is_empty() {
                Err(ConfigError::invalid(key, "must not be empty"))
            } else {
                Ok(())
            }
        };
        self.kafka.validate()?;
        self.service.validate()?;
        self.http_addr()?;
        nonempty("kafka_group_id", &self.kafka_group_id)?;
        nonempty("kafka_dlq_topic", &self.kafka_dlq_topic)?;
        if self.kafka_dlq_topic == self.kafka.topic {
            return Err(ConfigError::invalid(
                "kafka_dlq_topic",
                "must differ from kafka_topic",
            ));
        }
        if !matches!(self.kafka_auto_offset_reset.as_str(), "earliest" | "latest") {
            return Err(ConfigError::invalid(
                "kafka_auto_offset_reset",
                "must be earliest or latest",
            ));
        }
        match reqwest::Url::parse(&self.loki_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            Ok(u) => {
                return Err(ConfigError::invalid(
                    "loki_url",
                    format!("scheme {:?} is not http or https", u.scheme()),
                ))
            }
            Err(e) => return Err(ConfigError::invalid("loki_url", e.to_string())),
        }
        if !self.loki_username.is_empty() && !self.loki_bearer_token.is_empty() {
            return Err(ConfigError::invalid(
                "loki_bearer_token",
                "set either loki_username/loki_password or loki_bearer_token, not both",
            ));
        }
        let positive = |key: &str, v: usize| {
            if v == 0 {
                Err(ConfigError::invalid(key, "must be greater than 0"))
            } else {
                Ok(())
            }
        };
        positive("batch_max_bytes", self.batch_max_bytes)?;
        positive("batch_max_records", self.batch_max_records)?;
        positive("max_in_flight_pushes", self.max_in_flight_pushes)?;
        positive("buffer_max_records", self.buffer_max_records)?;
        positive("buffer_max_bytes", self.buffer_max_bytes)?;
        positive("loki_max_line_size", self.loki_max_line_size)?;
        positive("max_label_sets", self.max_label_sets)?;
        self.schema_start()?;
        let tenant = self.loki_tenant_id.trim();
        if !tenant.is_empty() {
            check_tenant_id(tenant)
                .map_err(|e| ConfigError::invalid("loki_tenant_id", e.to_string()))?;
        }
        for field in &self.metadata_fields {
            if let Err(e) = normalize_metadata_name(field) {
                return Err(ConfigError::invalid(
                    "metadata_fields",
                    format!("{field:?}: {e} (Loki answers such a name with a 500)"),
                ));
            }
        }
        if self.buffer_max_bytes < self.batch_max_bytes {
            return Err(ConfigError::invalid(
                "buffer_max_bytes",
                "must be at least batch_max_bytes",
            ));
        }
        if self.batch_max_wait.is_zero() {
            return Err(ConfigError::invalid(
                "batch_max_wait",
                "must be greater than 0",
            ));
        }
        // A broker with default settings refuses a join outside these bounds
        // (`group.min.session.timeout.ms`, `group.max.session.timeout.ms`) and the consumer would
        // run without ever being assigned a partition.
        if !(MIN_SESSION_TIMEOUT..=MAX_SESSION_TIMEOUT).contains(&self.kafka_session_timeout) {
            return Err(ConfigError::invalid(
                "kafka_session_timeout",
                format!(
                    "{:?} is outside {MIN_SESSION_TIMEOUT:?}..={MAX_SESSION_TIMEOUT:?}, the session \
                     timeouts a Kafka broker accepts by default",
                    self.kafka_session_timeout
                ),
            ));
        }
        if self.retry_min_backoff > self.retry_max_backoff {
            return Err(ConfigError::invalid(
                "retry_min_backoff",
                "must not exceed retry_max_backoff",
            ));
        }
        if self.label_fields.len() + 2 > MAX_LABELS {
            return Err(ConfigError::invalid(
                "label_fields",
                format!(
                    "at most {} fields (source and environment are added)",
                    MAX_LABELS - 2
                ),
            ));
        }
        self.label_policy()
            .validate()
            .map_err(|e| ConfigError::invalid("label_fields", e.to_string()))?;
        Ok(())
    }

    /// The admin server's address (`http_listen`). The consumer cannot run without the server
    /// (its `/metrics`, `/healthz` and `/readyz`), so an empty `http_listen`, which turns it
    /// off, is an error naming the key.
    pub fn http_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.service.http_listen.addr().ok_or_else(|| {
            ConfigError::invalid(
                "http_listen",
                "is empty (HTTP_LISTEN in the environment, or http_listen in the config file), \
                 which turns the HTTP server off; the consumer's /metrics, /healthz and /readyz \
                 need it: give an address like 0.0.0.0:8001",
            )
        })
    }

    /// The label policy these settings describe.
    pub fn label_policy(&self) -> LabelPolicy {
        let mut p = LabelPolicy::with_environment(&self.service.environment);
        p.record_labels = self.label_fields.clone();
        p.metadata_fields = self.metadata_fields.clone();
        p
    }

    /// `loki_schema_start` as a time.
    fn schema_start(&self) -> Result<Timestamp, ConfigError> {
        let text = self.loki_schema_start.trim();
        let full = if text.len() == 10 {
            format!("{text}T00:00:00Z")
        } else {
            text.to_owned()
        };
        Timestamp::parse_rfc3339(&full).map_err(|e| {
            ConfigError::invalid(
                "loki_schema_start",
                format!("{text:?} is not a date (2020-10-24) or an RFC 3339 time: {e}"),
            )
        })
    }

    /// Loki's limits as configured, for pre-flight checks.
    pub fn limits(&self) -> Limits {
        let defaults = Limits::default();
        Limits {
            // Validated at load; an invalid value cannot reach here.
            schema_start: self.schema_start().unwrap_or(defaults.schema_start),
            max_line_size: self.loki_max_line_size,
            reject_old_samples: !self.loki_reject_old_samples_max_age.is_zero(),
            reject_old_samples_max_age: self.loki_reject_old_samples_max_age,
            creation_grace_period: self.loki_creation_grace_period,
            max_chunk_age: self.loki_max_chunk_age,
            ..defaults
        }
    }

    /// Every feature flag the consumer has (`feature_flag{name}` is exported for each).
    pub const KNOWN_FLAGS: &'static [&'static str] = &["new_consumer", "enhanced_metrics"];

    /// The flags that are on, by name, for `/healthz` and `feature_flag{name}`.
    pub fn feature_flags(&self) -> Vec<String> {
        let mut f = Vec::new();
        if self.feature_new_consumer {
            f.push("new_consumer".to_owned());
        }
        if self.service.feature_enhanced_metrics {
            f.push("enhanced_metrics".to_owned());
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(pairs: &[(&str, &str)]) -> Result<ConsumerConfig, ConfigError> {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        let c: ConsumerConfig = service::config::load(None, &env)?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn default_config_loads_and_validates() {
        assert_eq!(load(&[]).unwrap(), ConsumerConfig::default());
    }

    #[test]
    fn seed_environment_names_work() {
        let c = load(&[
            ("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092"),
            ("LOKI_URL", "https://loki.example:3100"),
            ("ENVIRONMENT", "staging"),
            ("FEATURE_NEW_CONSUMER", "true"),
            ("LOKI_ENCODING", "json"),
            ("BATCH_MAX_WAIT", "250ms"),
        ])
        .unwrap();
        assert_eq!(c.kafka.bootstrap_servers, "kafka:9092");
        assert!(c.feature_new_consumer);
        assert_eq!(c.loki_encoding, Encoding::Json);
        assert_eq!(c.batch_max_wait, Duration::from_millis(250));
        assert_eq!(c.feature_flags(), ["new_consumer"]);
    }

    #[test]
    fn the_schema_start_is_a_date_or_a_time_and_reaches_the_limits() {
        let default = ConsumerConfig::default().limits().schema_start;
        assert_eq!(
            default.as_nanos(),
            schema::loki::limits::DEFAULT_SCHEMA_START_NANOS
        );
        let c = load(&[("LOKI_SCHEMA_START", "2024-01-01")]).unwrap();
        assert_eq!(
            c.limits().schema_start.to_rfc3339(),
            "2024-01-01T00:00:00.000000000Z"
        );
        let c = load(&[("LOKI_SCHEMA_START", "2024-01-01T12:00:00+02:00")]).unwrap();
        assert_eq!(
            c.limits().schema_start.to_rfc3339(),
            "2024-01-01T10:00:00.000000000Z"
        );
    }

    #[test]
    fn invalid_values_name_their_key() {
        for (k, v, key) in [
            ("LOKI_URL", "ftp://x", "loki_url"),
            ("LOKI_URL", "not a url", "loki_url"),
            ("KAFKA_DLQ_TOPIC", "logs", "kafka_dlq_topic"),
            ("BATCH_MAX_BYTES", "0", "batch_max_bytes"),
            ("LOKI_ENCODING", "xml", "loki_encoding"),
            ("LABEL_FIELDS", "service,trace_id", "label_fields"),
            (
                "KAFKA_AUTO_OFFSET_RESET",
                "middle",
                "kafka_auto_offset_reset",
            ),
            ("OVERSIZE_LINES", "drop", "oversize_lines"),
            ("LOKI_SCHEMA_START", "24/10/2020", "loki_schema_start"),
            ("LOKI_TENANT_ID", "team/a", "loki_tenant_id"),
            ("METADATA_FIELDS", "trace_id,__", "metadata_fields"),
            ("KAFKA_SESSION_TIMEOUT", "3s", "kafka_session_timeout"),
            ("KAFKA_SESSION_TIMEOUT", "31m", "kafka_session_timeout"),
        ] {
            let e = load(&[(k, v)]).unwrap_err().to_string();
            assert!(e.contains(&format!("`{key}`")), "{k}={v}: {e}");
        }
    }

    #[test]
    fn the_session_timeouts_a_broker_accepts_by_default_load() {
        for v in ["6s", "10s", "30m"] {
            let c = load(&[("KAFKA_SESSION_TIMEOUT", v)]).unwrap();
            assert!((MIN_SESSION_TIMEOUT..=MAX_SESSION_TIMEOUT).contains(&c.kafka_session_timeout));
        }
        let e = load(&[("KAFKA_SESSION_TIMEOUT", "5999ms")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("5.999s is outside 6s..=1800s"), "{e}");
    }

    #[test]
    fn a_malformed_extra_property_is_refused_without_being_shown() {
        let e = load(&[(
            "KAFKA_EXTRA_PROPERTIES",
            "security.protocol=SASL_SSL,sasl.password:hunter22",
        )])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("`kafka_extra_properties`") && e.contains("entry 2 of 2"),
            "{e}"
        );
        assert!(!e.contains("hunter22"), "{e}");
        // In a file, a string where a list belongs is refused without being shown too.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "kafka_extra_properties = \"sasl.password:hunter22\"\n").unwrap();
        let e = service::config::load::<ConsumerConfig>(Some(&f), &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("`kafka_extra_properties`"), "{e}");
        assert!(!e.contains("hunter22"), "{e}");
    }

    #[test]
    fn a_non_string_password_in_a_file_is_refused_without_being_shown() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "loki_password = 7000019877\n").unwrap();
        let e = service::config::load::<ConsumerConfig>(Some(&f), &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("`loki_password`"), "{e}");
        assert!(!e.contains("7000019877"), "{e}");
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let c = load(&[("LOKI_PASSWORD", "hunter2"), ("LOKI_USERNAME", "u")]).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn the_admin_server_cannot_be_turned_off_by_an_empty_http_listen() {
        let refused = |e: &str| {
            e.contains("`http_listen`")
                && e.contains("HTTP_LISTEN")
                && e.contains("/metrics, /healthz and /readyz")
        };
        let e = load(&[("HTTP_LISTEN", "")]).unwrap_err().to_string();
        assert!(refused(&e), "{e}");
        // Loaded, it is off; the check that refuses it is validate's, before any port is bound.
        let off: ConsumerConfig =
            service::config::load(None, &[("HTTP_LISTEN".into(), String::new())].into()).unwrap();
        assert_eq!(off.service.http_listen, OptionalAddr::OFF);
        let e = off.validate().unwrap_err().to_string();
        assert!(refused(&e), "{e}");
        let e = off.http_addr().unwrap_err().to_string();
        assert!(refused(&e), "{e}");
        // From a config file too.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "http_listen = \"\"\n").unwrap();
        let off: ConsumerConfig = service::config::load(Some(&f), &HashMap::new()).unwrap();
        let e = off.validate().unwrap_err().to_string();
        assert!(refused(&e), "{e}");
        // An address is taken, and the default is one.
        let c = load(&[("HTTP_LISTEN", "127.0.0.1:9001")]).unwrap();
        assert_eq!(
            c.http_addr().unwrap(),
            SocketAddr::from(([127, 0, 0, 1], 9001))
        );
        assert_eq!(
            ConsumerConfig::default().http_addr().unwrap(),
            SocketAddr::from(([0, 0, 0, 0], 8001))
        );
        // Not an address: refused when loading, naming the key and where it came from.
        let e = load(&[("HTTP_LISTEN", "nowhere")]).unwrap_err().to_string();
        assert!(
            e.contains("`http_listen`") && e.contains("environment HTTP_LISTEN"),
            "{e}"
        );
    }

    #[test]
    fn shared_settings_are_checked_like_the_producers() {
        for (k, v, key) in [
            ("KAFKA_TOPIC", "no spaces", "kafka_topic"),
            ("KAFKA_BOOTSTRAP_SERVERS", " ", "kafka_bootstrap_servers"),
            ("LOG_FORMAT", "xml", "log_format"),
            ("SHUTDOWN_TIMEOUT", "-1", "shutdown_timeout"),
            (
                "FEATURE_ENHANCED_METRICS",
                "maybe",
                "feature_enhanced_metrics",
            ),
        ] {
            let e = load(&[(k, v)]).unwrap_err().to_string();
            assert!(e.contains(&format!("`{key}`")), "{k}={v}: {e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("consumer.toml");
        std::fs::write(&f, "loki_url = \"http://loki:3100\"\nkafka_topik = \"x\"\n").unwrap();
        let e = service::config::load::<ConsumerConfig>(Some(&f), &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`kafka_topik`") && e.contains("consumer.toml, line 2"),
            "{e}"
        );
    }
}
