//! The settings both services have, under the same keys, with the same defaults and rules, each
//! embedded in a service's settings with `#[serde(flatten)]` (keys stay at the top level):
//! [`KafkaSettings`] (`kafka_bootstrap_servers`, `kafka_topic`, `kafka_extra_properties`,
//! `kafka_sasl_password`, and the librdkafka settings every client starts from) and
//! [`ServiceSettings`] (`http_listen`, `log_level`, `log_format`, `environment`,
//! `shutdown_timeout`, `feature_enhanced_metrics`).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use rdkafka::ClientConfig;
use secrecy::ExposeSecret;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::secret::{secret_list, Secret};
use super::ConfigError;
use crate::telemetry::LogFormat;

/// Where the service's Kafka clients connect, and the topic of the log records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KafkaSettings {
    /// `kafka_bootstrap_servers`: Kafka bootstrap servers, comma-separated `host:port`. Default
    /// `localhost:9092`.
    #[serde(rename = "kafka_bootstrap_servers")]
    pub bootstrap_servers: String,
    /// `kafka_topic`: the topic of the log records (the producer's destination, the consumer's
    /// source), 1–249 of `[a-zA-Z0-9._-]`. Default `logs`.
    #[serde(rename = "kafka_topic")]
    pub topic: String,
    /// `kafka_extra_properties`: extra librdkafka properties for every client of the service,
    /// `key=value` entries (in the environment, separated by commas), e.g.
    /// `security.protocol=SASL_SSL`. The settings the service's guarantees depend on win over
    /// them. Entries may hold secrets: never shown, a bad one is refused by its position.
    /// Default empty.
    #[serde(rename = "kafka_extra_properties", deserialize_with = "secret_list")]
    pub extra_properties: Vec<String>,
    /// `kafka_sasl_password`: SASL password for Kafka, when `sasl.username` is set in the extra
    /// properties. Secret. Default empty.
    #[serde(rename = "kafka_sasl_password")]
    pub sasl_password: Secret,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            bootstrap_servers: "localhost:9092".into(),
            topic: "logs".into(),
            extra_properties: Vec::new(),
            sasl_password: Secret::default(),
        }
    }
}

impl KafkaSettings {
    /// Checks values that parse but cannot work, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err(ConfigError::invalid(
                "kafka_bootstrap_servers",
                "must not be empty",
            ));
        }
        let topic = &self.topic;
        if topic.is_empty()
            || topic.len() > 249
            || topic == "."
            || topic == ".."
            || !topic
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        {
            return Err(ConfigError::invalid(
                "kafka_topic",
                format!("{topic:?} is not a Kafka topic name (1-249 of [a-zA-Z0-9._-])"),
            ));
        }
        self.extra_property_pairs()?;
        Ok(())
    }

    /// The librdkafka settings of a client of the service called `client_id`: the brokers and
    /// the client id, then `tuning` (the service's defaults, which the extra properties may
    /// override), then the extra properties and the SASL password. What the service's
    /// guarantees depend on (`acks`, the group's offset handling) the caller sets afterwards,
    /// so that it wins over the extra properties.
    pub fn client_config(&self, client_id: &str, tuning: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", client_id);
        for (key, value) in tuning {
            c.set(*key, *value);
        }
        // Validated at load; an entry that is not key=value cannot reach here.
        if let Ok(pairs) = self.extra_property_pairs() {
            for (key, value) in pairs {
                c.set(key, value);
            }
        }
        if !self.sasl_password.is_empty() {
            c.set("sasl.password", self.sasl_password.expose_secret());
        }
        c
    }

    /// The extra properties, split and trimmed. An entry that is not `key=value` is refused by
    /// its position, never quoted: it may hold a secret (`sasl.password=...`, or
    /// `sasl.password:...` mistyped).
    fn extra_property_pairs(&self) -> Result<Vec<(&str, &str)>, ConfigError> {
        const KEY: &str = "kafka_extra_properties";
        let n = self.extra_properties.len();
        self.extra_properties
            .iter()
            .enumerate()
            .map(|(i, entry)| match entry.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => Ok((k.trim(), v.trim())),
                Some(_) => Err(ConfigError::invalid(
                    KEY,
                    format!("entry {} of {n} has no key before `=` (entries are not shown: they may hold secrets)", i + 1),
                )),
                None => Err(ConfigError::invalid(
                    KEY,
                    format!("entry {} of {n} is not key=value (entries are not shown: they may hold secrets)", i + 1),
                )),
            })
            .collect()
    }
}

/// The settings of the service's process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSettings {
    /// `http_listen`: address of the service's HTTP server; an empty value turns it off (where
    /// the service allows it: the consumer, whose `/metrics`, `/healthz` and `/readyz` are
    /// required, refuses it when it validates its settings). Each service has its own default
    /// (given to [`ServiceSettings::new`]).
    pub http_listen: OptionalAddr,
    /// `log_level`: log filter, e.g. `info` or `info,rdkafka=warn`. Default `info`.
    pub log_level: String,
    /// `log_format`: `json` or `text`; empty picks text on a terminal and JSON otherwise.
    /// Default empty.
    pub log_format: String,
    /// `environment`: deployment environment name (logged at start; the consumer's
    /// `environment` label). Default `development`.
    pub environment: String,
    /// `shutdown_timeout`: bound on draining at shutdown, humantime. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// `feature_enhanced_metrics` (`FEATURE_ENHANCED_METRICS`): the service's detailed series
    /// (per service and level; the consumer's per partition). Default `false`.
    pub feature_enhanced_metrics: bool,
}

impl ServiceSettings {
    /// The defaults, with the service's own HTTP address.
    pub fn new(http_listen: OptionalAddr) -> Self {
        Self {
            http_listen,
            log_level: "info".into(),
            log_format: String::new(),
            environment: "development".into(),
            shutdown_timeout: Duration::from_secs(30),
            feature_enhanced_metrics: false,
        }
    }

    /// Checks values that parse but cannot work, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !matches!(self.log_format.as_str(), "" | "json" | "text") {
            return Err(ConfigError::invalid(
                "log_format",
                "must be json, text or empty",
            ));
        }
        Ok(())
    }

    /// The log format `log_format` asks for (empty: by whether stderr is a terminal).
    pub fn log_format(&self) -> LogFormat {
        LogFormat::from_env((!self.log_format.is_empty()).then_some(self.log_format.as_str()))
    }
}

/// An address that may be off: written as the address (`0.0.0.0:8000`), or as an empty string
/// for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalAddr(Option<SocketAddr>);

impl OptionalAddr {
    /// No address: the server is off.
    pub const OFF: Self = Self(None);

    /// The address, or `None` when off.
    pub fn addr(self) -> Option<SocketAddr> {
        self.0
    }
}

impl From<SocketAddr> for OptionalAddr {
    fn from(addr: SocketAddr) -> Self {
        Self(Some(addr))
    }
}

impl Serialize for OptionalAddr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(addr) => serializer.collect_str(&addr),
            None => serializer.serialize_str(""),
        }
    }
}

impl<'de> Deserialize<'de> for OptionalAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(OptionalAddrVisitor)
    }
}

/// Takes an address, or an empty string for none.
struct OptionalAddrVisitor;

impl Visitor<'_> for OptionalAddrVisitor {
    type Value = OptionalAddr;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an address like 0.0.0.0:8000, or empty for none")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<OptionalAddr, E> {
        if value.is_empty() {
            return Ok(OptionalAddr::OFF);
        }
        value
            .parse()
            .map(|addr| OptionalAddr(Some(addr)))
            .map_err(|_| E::custom(format!("{value:?} is not an address like 0.0.0.0:8000")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kafka(extra: &[&str], password: &str) -> KafkaSettings {
        KafkaSettings {
            extra_properties: extra.iter().map(|e| (*e).to_owned()).collect(),
            sasl_password: Secret::new(password),
            ..KafkaSettings::default()
        }
    }

    #[test]
    fn a_client_starts_from_the_brokers_then_tuning_then_extra_properties_then_the_password() {
        let k = kafka(
            &[
                "security.protocol = SASL_SSL",
                "sasl.jaas=a=b",
                "fetch.wait.max.ms=250",
            ],
            "s4sl-pw",
        );
        let c = k.client_config(
            "logpipe-test",
            &[("fetch.wait.max.ms", "100"), ("fetch.max.bytes", "2097152")],
        );
        assert_eq!(c.get("bootstrap.servers"), Some("localhost:9092"));
        assert_eq!(c.get("client.id"), Some("logpipe-test"));
        assert_eq!(c.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(c.get("sasl.jaas"), Some("a=b"));
        // The extra properties override the tuning; the tuning stays where they say nothing.
        assert_eq!(c.get("fetch.wait.max.ms"), Some("250"));
        assert_eq!(c.get("fetch.max.bytes"), Some("2097152"));
        assert_eq!(c.get("sasl.password"), Some("s4sl-pw"));
        let plain = KafkaSettings::default().client_config("x", &[]);
        assert_eq!(plain.get("sasl.password"), None);
        assert_eq!(plain.get("security.protocol"), None);
    }

    #[test]
    fn key_value_entries_are_split_and_bad_ones_refused_without_quoting_them() {
        let k = kafka(&["security.protocol = SASL_SSL", "sasl.jaas=a=b"], "");
        assert_eq!(
            k.extra_property_pairs().unwrap(),
            [("security.protocol", "SASL_SSL"), ("sasl.jaas", "a=b")]
        );
        for (bad, what) in [
            ("sasl.password:hunter22", "entry 2 of 2 is not key=value"),
            ("=hunter22", "entry 2 of 2 has no key"),
        ] {
            let k = kafka(&["security.protocol=SASL_SSL", bad], "");
            let e = k.validate().unwrap_err().to_string();
            assert!(
                e.contains("`kafka_extra_properties`") && e.contains(what),
                "{e}"
            );
            assert!(!e.contains("hunter22"), "{e}");
        }
    }

    #[test]
    fn topics_follow_kafkas_grammar_and_brokers_must_be_named() {
        for topic in ["logs", "a.b_c-D9", &"x".repeat(249)] {
            let k = KafkaSettings {
                topic: topic.to_owned(),
                ..KafkaSettings::default()
            };
            assert!(k.validate().is_ok(), "{topic}");
        }
        for topic in ["", ".", "..", "no spaces", "ünï", &"x".repeat(250)] {
            let k = KafkaSettings {
                topic: topic.to_owned(),
                ..KafkaSettings::default()
            };
            let e = k.validate().unwrap_err().to_string();
            assert!(e.contains("`kafka_topic`"), "{topic}: {e}");
        }
        let k = KafkaSettings {
            bootstrap_servers: " ".into(),
            ..KafkaSettings::default()
        };
        let e = k.validate().unwrap_err().to_string();
        assert!(e.contains("`kafka_bootstrap_servers`"), "{e}");
    }

    #[test]
    fn the_log_format_is_json_text_or_empty() {
        let mut s = ServiceSettings::new(OptionalAddr::OFF);
        for ok in ["", "json", "text"] {
            s.log_format = ok.into();
            assert!(s.validate().is_ok(), "{ok}");
        }
        s.log_format = "xml".into();
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("`log_format`"), "{e}");
        s.log_format = "json".into();
        assert_eq!(s.log_format(), LogFormat::Json);
        s.log_format = "text".into();
        assert_eq!(s.log_format(), LogFormat::Text);
    }

    #[test]
    fn an_optional_address_is_written_as_the_address_or_empty() {
        let on = OptionalAddr::from(SocketAddr::from(([127, 0, 0, 1], 8000)));
        assert_eq!(serde_json::to_string(&on).unwrap(), "\"127.0.0.1:8000\"");
        assert_eq!(serde_json::to_string(&OptionalAddr::OFF).unwrap(), "\"\"");
        for addr in [on, OptionalAddr::OFF] {
            let text = serde_json::to_string(&addr).unwrap();
            assert_eq!(serde_json::from_str::<OptionalAddr>(&text).unwrap(), addr);
        }
        let e = serde_json::from_str::<OptionalAddr>("\"port 80\"").unwrap_err();
        assert!(e.to_string().contains("not an address"), "{e}");
    }
}
