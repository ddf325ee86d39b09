//! Command-line options of `testkit loki`, mapped onto [`LokiConfig`]. Every default is the
//! library's (Loki's), except the listen addresses (3100 and 3101 instead of random ports).

use std::net::SocketAddr;
use std::time::Duration;

use schema::loki::limits::Limits;

use super::config::{LokiConfig, DEFAULT_MAX_BODY_BYTES};
use super::faults::{Faults, Outage, StatusStorm};

/// Options of `testkit loki`.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Loki receiver")]
pub struct LokiArgs {
    /// Address of the Loki API (push, query_range, labels, /ready, /metrics).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:3100")]
    pub listen: SocketAddr,
    /// Address of the control API (/control/faults, /control/reset, /control/stats, /metrics);
    /// it stays up during outages.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:3101")]
    pub control_listen: SocketAddr,
    /// Multi-tenant mode (Loki's auth_enabled): every request needs X-Scope-OrgID, else 401
    /// "no org id". Off by default: the tenant is then always "fake".
    #[arg(long)]
    pub auth_enabled: bool,
    /// Decode, validate and count pushes but store nothing (benchmarks). Off by default.
    #[arg(long)]
    pub count_only: bool,
    /// Do not add Loki 3's service_name label (by default it is added, from service, app,
    /// application, name, app_kubernetes_io_name, container, container_name, component,
    /// workload or job, else "unknown_service").
    #[arg(long)]
    pub no_discover_service_name: bool,
    /// Largest push body in bytes, compressed or inflated (413 beyond).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Tenant ingestion rate in MiB/s of line bytes (429 "rate_limited" beyond).
    #[arg(long, value_name = "MB", default_value_t = LokiConfig::default().ingestion_rate_mb)]
    pub ingestion_rate_mb: f64,
    /// Tenant ingestion burst in MiB.
    #[arg(long, value_name = "MB", default_value_t = LokiConfig::default().ingestion_burst_size_mb)]
    pub ingestion_burst_size_mb: f64,
    /// Per-stream rate in MiB/s of line bytes (429 "per_stream_rate_limit" beyond).
    #[arg(long, value_name = "MB", default_value_t = LokiConfig::default().per_stream_rate_limit_mb)]
    pub per_stream_rate_limit_mb: f64,
    /// Per-stream burst in MiB.
    #[arg(
        long,
        value_name = "MB",
        default_value_t = LokiConfig::default().per_stream_rate_limit_burst_mb
    )]
    pub per_stream_rate_limit_burst_mb: f64,
    /// Streams a tenant may have (429 "stream_limit" beyond); 0 for no limit.
    #[arg(long, value_name = "N", default_value_t = LokiConfig::default().max_streams_per_user)]
    pub max_streams_per_user: usize,
    /// Largest `limit` a query may ask for; 0 for no limit.
    #[arg(
        long,
        value_name = "N",
        default_value_t = LokiConfig::default().max_entries_limit_per_query
    )]
    pub max_entries_limit_per_query: usize,
    /// Longest line in bytes (400 "line_too_long" beyond).
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_line_size)]
    pub max_line_size: usize,
    /// Most labels per stream, service_name not counted (400 for the whole push beyond).
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_label_names_per_series)]
    pub max_label_names_per_series: usize,
    /// Longest label name in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_label_name_length)]
    pub max_label_name_length: usize,
    /// Longest label value in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_label_value_length)]
    pub max_label_value_length: usize,
    /// Accept entries of any age (by default entries older than --reject-old-samples-max-age
    /// are rejected).
    #[arg(long)]
    pub no_reject_old_samples: bool,
    /// Oldest accepted entry, as a duration before now (e.g. 7d, 12h).
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub reject_old_samples_max_age: Duration,
    /// How far in the future an entry may be.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = humantime::parse_duration)]
    pub creation_grace_period: Duration,
    /// Loki's max_chunk_age: an entry more than half of it behind its stream's newest entry is
    /// rejected ("too_far_behind").
    #[arg(long, value_name = "DURATION", default_value = "2h", value_parser = humantime::parse_duration)]
    pub max_chunk_age: Duration,
    /// Largest structured metadata of an entry in bytes.
    #[arg(
        long,
        value_name = "BYTES",
        default_value_t = Limits::default().max_structured_metadata_size
    )]
    pub max_structured_metadata_size: usize,
    /// Most structured metadata pairs of an entry.
    #[arg(
        long,
        value_name = "N",
        default_value_t = Limits::default().max_structured_metadata_entries
    )]
    pub max_structured_metadata_entries: usize,
    /// Start in an outage: "refuse" (the API port is closed) or "unavailable" (503 on every
    /// push and on /ready). None by default.
    #[arg(long, value_enum, value_name = "MODE")]
    pub outage: Option<Outage>,
    /// Start with a status storm: answer a share RATE (0 to 1) of pushes with CODE (400 to
    /// 599), with a Retry-After header when RETRY_AFTER (seconds) is given, e.g. 429:0.5:2.
    /// None by default.
    #[arg(long, value_name = "CODE:RATE[:RETRY_AFTER]")]
    pub status_storm: Option<StatusStorm>,
    /// Latency added to every push, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub latency_ms: u64,
    /// Share of pushes (0 to 1) whose connection is closed without an answer.
    #[arg(long, value_name = "R", default_value_t = 0.0)]
    pub drop_rate: f64,
}

impl LokiArgs {
    /// The receiver configuration these options describe (validated when the receiver starts).
    pub fn config(&self) -> LokiConfig {
        LokiConfig {
            listen: self.listen,
            control_listen: self.control_listen,
            limits: Limits {
                max_line_size: self.max_line_size,
                max_label_names_per_series: self.max_label_names_per_series,
                max_label_name_length: self.max_label_name_length,
                max_label_value_length: self.max_label_value_length,
                reject_old_samples: !self.no_reject_old_samples,
                reject_old_samples_max_age: self.reject_old_samples_max_age,
                creation_grace_period: self.creation_grace_period,
                max_chunk_age: self.max_chunk_age,
                max_structured_metadata_size: self.max_structured_metadata_size,
                max_structured_metadata_entries: self.max_structured_metadata_entries,
            },
            auth_enabled: self.auth_enabled,
            max_body_bytes: self.max_body_bytes,
            ingestion_rate_mb: self.ingestion_rate_mb,
            ingestion_burst_size_mb: self.ingestion_burst_size_mb,
            per_stream_rate_limit_mb: self.per_stream_rate_limit_mb,
            per_stream_rate_limit_burst_mb: self.per_stream_rate_limit_burst_mb,
            max_streams_per_user: self.max_streams_per_user,
            max_entries_limit_per_query: self.max_entries_limit_per_query,
            count_only: self.count_only,
            discover_service_name: !self.no_discover_service_name,
            faults: Faults {
                outage: self.outage,
                status_storm: self.status_storm,
                latency_ms: self.latency_ms,
                drop_rate: self.drop_rate,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        loki: LokiArgs,
    }

    fn config(args: &[&str]) -> LokiConfig {
        let argv = std::iter::once("loki").chain(args.iter().copied());
        Cli::try_parse_from(argv).unwrap().loki.config()
    }

    #[test]
    fn defaults_are_the_library_defaults_on_ports_3100_and_3101() {
        let got = config(&[]);
        let want = LokiConfig {
            listen: "127.0.0.1:3100".parse().unwrap(),
            control_listen: "127.0.0.1:3101".parse().unwrap(),
            ..LokiConfig::default()
        };
        assert_eq!(got, want);
    }

    #[test]
    fn parses_every_fault_and_limit_flag() {
        let c = config(&[
            "--auth-enabled",
            "--count-only",
            "--no-discover-service-name",
            "--ingestion-rate-mb",
            "100",
            "--max-line-size",
            "1000",
            "--reject-old-samples-max-age",
            "12h",
            "--outage",
            "unavailable",
            "--status-storm",
            "503:0.25:7",
            "--latency-ms",
            "20",
            "--drop-rate",
            "0.1",
        ]);
        assert!(c.auth_enabled && c.count_only && !c.discover_service_name);
        assert_eq!(c.ingestion_rate_mb, 100.0);
        assert_eq!(c.limits.max_line_size, 1000);
        assert_eq!(
            c.limits.reject_old_samples_max_age,
            Duration::from_secs(12 * 3600)
        );
        assert_eq!(c.faults.outage, Some(Outage::Unavailable));
        assert_eq!(
            c.faults.status_storm,
            Some(StatusStorm {
                code: 503,
                rate: 0.25,
                retry_after_secs: Some(7)
            })
        );
        assert_eq!((c.faults.latency_ms, c.faults.drop_rate), (20, 0.1));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn rejects_a_malformed_status_storm() {
        let argv = ["loki", "--status-storm", "429"];
        assert!(Cli::try_parse_from(argv).is_err());
    }
}
