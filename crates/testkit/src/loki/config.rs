//! Configuration of the Loki-compatible receiver: listeners, Loki's validation limits, rate and
//! stream limits, modes and the faults to start with (LOKI.md, "Answers"). Defaults are Loki's.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use schema::loki::limits::Limits;
pub use schema::loki::limits::{
    DEFAULT_DISCOVER_SERVICE_NAME as SERVICE_NAME_SOURCES, UNKNOWN_SERVICE,
};
use thiserror::Error;

use super::faults::{Faults, FaultsError};

/// One "MB" of Loki's rate limits: Loki multiplies `ingestion_rate_mb` by 2^20.
pub const MIB: f64 = 1_048_576.0;

/// Loki's default `-distributor.max-recv-msg-size`: 100 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 100 * 1024 * 1024;

/// Loki's default `-distributor.max-decompressed-size`: 5000 MiB.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 5000 * 1024 * 1024;

/// Loki's default `query_ingesters_within`: 3 hours.
pub const DEFAULT_QUERY_INGESTERS_WITHIN: Duration = Duration::from_secs(3 * 3600);

/// Everything the receiver needs. [`LokiConfig::default`] has Loki's defaults and listens on
/// random free ports of 127.0.0.1.
#[derive(Debug, Clone, PartialEq)]
pub struct LokiConfig {
    /// Address of the Loki API (push, query, `/ready`, `/metrics`). Port 0 picks a free port.
    /// Default `127.0.0.1:0`.
    pub listen: SocketAddr,
    /// Address of the control API (faults, reset, stats), a separate listener so that it stays
    /// reachable during an outage. Port 0 picks a free port. Default `127.0.0.1:0`.
    pub control_listen: SocketAddr,
    /// Loki's validation limits (line size, labels, timestamps, structured metadata, schema
    /// start, `service_name` discovery labels). Default [`Limits::default`], Loki's.
    pub limits: Limits,
    /// Loki's `auth_enabled`: when true every request needs `X-Scope-OrgID` (else 401
    /// `no org id`); when false the tenant is always `fake`. Default false.
    pub auth_enabled: bool,
    /// Loki's `-distributor.max-recv-msg-size`: largest push body in bytes as sent (compressed
    /// or not); larger bodies answer 413. Default 100 MiB.
    pub max_body_bytes: usize,
    /// Loki's `-distributor.max-decompressed-size`: largest push body in bytes once gzip or
    /// snappy is undone; larger bodies answer 413. Default 5000 MiB.
    pub max_decompressed_bytes: usize,
    /// Loki's `ingestion_rate_mb`: per-tenant rate of line bytes, in MiB per second.
    /// `f64::INFINITY` disables the limit. Default 4.
    pub ingestion_rate_mb: f64,
    /// Loki's `ingestion_burst_size_mb`: per-tenant burst, in MiB. Default 6.
    pub ingestion_burst_size_mb: f64,
    /// Loki's `per_stream_rate_limit`: per-stream rate of line bytes, in MiB per second.
    /// `f64::INFINITY` disables the limit. Default 3.
    pub per_stream_rate_limit_mb: f64,
    /// Loki's `per_stream_rate_limit_burst`, in MiB. Default 15.
    pub per_stream_rate_limit_burst_mb: f64,
    /// Loki's `max_global_streams_per_user` (with one ingester): streams a tenant may have; 0
    /// disables the limit. Default 5000.
    pub max_streams_per_user: usize,
    /// Loki's `max_entries_limit_per_query`: largest `limit` of a query; 0 disables the limit.
    /// Default 5000.
    pub max_entries_limit_per_query: usize,
    /// Decode, validate and count pushes but store nothing (benchmarks). Duplicates cannot be
    /// recognised in this mode. Default false.
    pub count_only: bool,
    /// Loki 3's `service_name` discovery: add a `service_name` label taken from the first of
    /// `limits.discover_service_name` present, else `unknown_service`. Default true.
    pub discover_service_name: bool,
    /// Loki 3's `discover_log_levels`: add a `detected_level` to every entry's structured
    /// metadata. Default true.
    pub discover_log_levels: bool,
    /// Loki's `query_ingesters_within`: queries see only entries newer than this before now
    /// (Loki holds older ones until it flushes them, and this receiver never does); zero sees
    /// everything. Default 3 hours.
    pub query_ingesters_within: Duration,
    /// Faults active from the start. Default none.
    pub faults: Faults,
}

impl Default for LokiConfig {
    fn default() -> Self {
        let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Self {
            listen: SocketAddr::new(localhost, 0),
            control_listen: SocketAddr::new(localhost, 0),
            limits: Limits::default(),
            auth_enabled: false,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_decompressed_bytes: DEFAULT_MAX_DECOMPRESSED_BYTES,
            ingestion_rate_mb: 4.0,
            ingestion_burst_size_mb: 6.0,
            per_stream_rate_limit_mb: 3.0,
            per_stream_rate_limit_burst_mb: 15.0,
            max_streams_per_user: 5000,
            max_entries_limit_per_query: 5000,
            count_only: false,
            discover_service_name: true,
            discover_log_levels: true,
            query_ingesters_within: DEFAULT_QUERY_INGESTERS_WITHIN,
            faults: Faults::default(),
        }
    }
}

/// A configuration that cannot work; found before any port is bound.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// A rate or burst that is not a positive number.
    #[error("{key} must be a positive number of MiB, got {value}")]
    NotPositive {
        /// The setting.
        key: &'static str,
        /// Its value.
        value: f64,
    },
    /// A limit that must not be zero.
    #[error("{key} must be greater than zero")]
    Zero {
        /// The setting.
        key: &'static str,
    },
    /// The API and the control API would share a port.
    #[error("listen and control_listen are both {0}; the control API needs its own port")]
    SameAddress(SocketAddr),
    /// The initial faults are invalid.
    #[error(transparent)]
    Faults(#[from] FaultsError),
}

impl LokiConfig {
    /// The default configuration with every rate and stream limit lifted (benchmarks, and tests
    /// that are not about rate limits).
    pub fn without_rate_limits(mut self) -> Self {
        self.ingestion_rate_mb = f64::INFINITY;
        self.ingestion_burst_size_mb = f64::INFINITY;
        self.per_stream_rate_limit_mb = f64::INFINITY;
        self.per_stream_rate_limit_burst_mb = f64::INFINITY;
        self.max_streams_per_user = 0;
        self
    }

    /// Checks the configuration: positive rates, non-zero limits, distinct listeners, valid
    /// faults.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("ingestion_rate_mb", self.ingestion_rate_mb),
            ("ingestion_burst_size_mb", self.ingestion_burst_size_mb),
            ("per_stream_rate_limit_mb", self.per_stream_rate_limit_mb),
            (
                "per_stream_rate_limit_burst_mb",
                self.per_stream_rate_limit_burst_mb,
            ),
        ] {
            if value.is_nan() || value <= 0.0 {
                return Err(ConfigError::NotPositive { key, value });
            }
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError::Zero {
                key: "max_body_bytes",
            });
        }
        if self.max_decompressed_bytes == 0 {
            return Err(ConfigError::Zero {
                key: "max_decompressed_bytes",
            });
        }
        if self.limits.max_line_size == 0 {
            return Err(ConfigError::Zero {
                key: "max_line_size",
            });
        }
        if self.listen == self.control_listen && self.listen.port() != 0 {
            return Err(ConfigError::SameAddress(self.listen));
        }
        self.faults.validate()?;
        Ok(())
    }

    /// Tenant rate in bytes per second.
    pub(crate) fn tenant_rate(&self) -> (f64, f64) {
        (
            self.ingestion_rate_mb * MIB,
            self.ingestion_burst_size_mb * MIB,
        )
    }

    /// Per-stream rate in bytes per second, and burst in bytes.
    pub(crate) fn stream_rate(&self) -> (f64, f64) {
        (
            self.per_stream_rate_limit_mb * MIB,
            self.per_stream_rate_limit_burst_mb * MIB,
        )
    }

    /// The limits in force: `limits`, without discovery labels when discovery is off.
    pub(crate) fn effective_limits(&self) -> Limits {
        let mut limits = self.limits.clone();
        if !self.discover_service_name {
            limits.discover_service_name.clear();
        }
        limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid_and_has_lokis_limits() {
        let config = LokiConfig::default();
        assert!(config.validate().is_ok());
        assert_eq!(config.limits.max_line_size, 256 * 1024);
        assert_eq!(config.tenant_rate(), (4.0 * MIB, 6.0 * MIB));
        assert_eq!(config.stream_rate(), (3.0 * MIB, 15.0 * MIB));
        assert_eq!(config.max_streams_per_user, 5000);
        assert!(config.discover_service_name);
    }

    #[test]
    fn rejects_non_positive_rates() {
        for value in [0.0, -1.0, f64::NAN] {
            let config = LokiConfig {
                ingestion_rate_mb: value,
                ..LokiConfig::default()
            };
            assert!(matches!(
                config.validate(),
                Err(ConfigError::NotPositive {
                    key: "ingestion_rate_mb",
                    ..
                })
            ));
        }
    }

    #[test]
    fn lifted_rate_limits_are_valid() {
        assert!(LokiConfig::default()
            .without_rate_limits()
            .validate()
            .is_ok());
    }

    #[test]
    fn rejects_one_port_for_both_listeners() {
        let addr: SocketAddr = "127.0.0.1:3100".parse().unwrap();
        let config = LokiConfig {
            listen: addr,
            control_listen: addr,
            ..LokiConfig::default()
        };
        assert!(matches!(config.validate(), Err(ConfigError::SameAddress(a)) if a == addr));
    }
}
