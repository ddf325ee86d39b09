//! Command-line options of `testkit loki`, mapped onto [`LokiConfig`]. Every default is the
//! library's (Loki's), except the listen addresses (3100 and 3101 instead of random ports).
//! Options that mirror a Loki flag or setting also answer to its name (`--max-recv-msg-size`
//! for `-distributor.max-recv-msg-size`, `--per-stream-rate-limit 64KB` for
//! `-ingester.per-stream-rate-limit=64KB`…), so a Loki configuration reads across one to one.

use std::net::SocketAddr;
use std::time::Duration;

use schema::loki::go_text::parse_byte_size;
use schema::loki::limits::Limits;
use schema::Timestamp;

use super::config::{LokiConfig, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_DECOMPRESSED_BYTES, MIB};
use super::faults::{Faults, Outage, StatusStorm};

/// Options of `testkit loki`.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Loki receiver")]
pub struct LokiArgs {
    /// Address of the Loki API (push, query_range, labels, /ready, /metrics).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:3100")]
    pub listen: SocketAddr,
    /// Address of the control API (/control/faults, /control/reset, /control/delete,
    /// /control/stats, /metrics); it stays up during outages.
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
    /// application, app_name, name, app_kubernetes_io_name, container, container_name,
    /// k8s_container_name, component, workload, job or k8s_job_name, else "unknown_service").
    #[arg(long)]
    pub no_discover_service_name: bool,
    /// Do not add Loki 3's detected_level to the structured metadata of every entry (Loki's
    /// -validation.discover-log-levels=false).
    #[arg(long)]
    pub no_discover_log_levels: bool,
    /// Largest push body in bytes as sent (413 beyond); Loki's -distributor.max-recv-msg-size.
    #[arg(
        long,
        alias = "max-recv-msg-size",
        value_name = "BYTES",
        default_value_t = DEFAULT_MAX_BODY_BYTES
    )]
    pub max_body_bytes: usize,
    /// Largest push body in bytes once decompressed (413 beyond); Loki's
    /// -distributor.max-decompressed-size.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_DECOMPRESSED_BYTES)]
    pub max_decompressed_size: usize,
    /// Tenant ingestion rate in MiB/s of line and structured-metadata bytes (429 beyond);
    /// Loki's -distributor.ingestion-rate-limit-mb.
    #[arg(
        long,
        alias = "ingestion-rate-limit-mb",
        value_name = "MB",
        default_value_t = LokiConfig::default().ingestion_rate_mb
    )]
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
    /// Per-stream rate as Loki writes it (64KB, 3MB, 1048576; KB = 1024 bytes), instead of
    /// --per-stream-rate-limit-mb; Loki's -ingester.per-stream-rate-limit.
    #[arg(long, value_name = "SIZE", value_parser = byte_size, conflicts_with = "per_stream_rate_limit_mb")]
    pub per_stream_rate_limit: Option<u64>,
    /// Per-stream burst as Loki writes it, instead of --per-stream-rate-limit-burst-mb; Loki's
    /// -ingester.per-stream-rate-limit-burst.
    #[arg(
        long,
        value_name = "SIZE",
        value_parser = byte_size,
        conflicts_with = "per_stream_rate_limit_burst_mb"
    )]
    pub per_stream_rate_limit_burst: Option<u64>,
    /// Streams a tenant may have (429 "stream_limit" beyond); 0 for no limit. Loki's
    /// -ingester.max-global-streams-per-user, with one ingester.
    #[arg(
        long,
        alias = "max-global-streams-per-user",
        value_name = "N",
        default_value_t = LokiConfig::default().max_streams_per_user
    )]
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
    /// Start of the schema (Loki's schema_config "from", a date or an RFC 3339 time): a new
    /// stream whose oldest entry is older answers 500 "no schema config found".
    #[arg(long, value_name = "DATE", default_value = "2020-10-24", value_parser = schema_start)]
    pub schema_start: Timestamp,
    /// Queries see only entries newer than this before now (Loki's query_ingesters_within; a
    /// Loki that has not flushed shows nothing older); 0s for everything.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "3h",
        value_parser = humantime::parse_duration
    )]
    pub query_ingesters_within: Duration,
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
                schema_start: self.schema_start,
                ..Limits::default()
            },
            auth_enabled: self.auth_enabled,
            max_body_bytes: self.max_body_bytes,
            max_decompressed_bytes: self.max_decompressed_size,
            ingestion_rate_mb: self.ingestion_rate_mb,
            ingestion_burst_size_mb: self.ingestion_burst_size_mb,
            per_stream_rate_limit_mb: self
                .per_stream_rate_limit
                .map_or(self.per_stream_rate_limit_mb, |b| b as f64 / MIB),
            per_stream_rate_limit_burst_mb: self
                .per_stream_rate_limit_burst
                .map_or(self.per_stream_rate_limit_burst_mb, |b| b as f64 / MIB),
            max_streams_per_user: self.max_streams_per_user,
            max_entries_limit_per_query: self.max_entries_limit_per_query,
            count_only: self.count_only,
            discover_service_name: !self.no_discover_service_name,
            discover_log_levels: !self.no_discover_log_levels,
            query_ingesters_within: self.query_ingesters_within,
            faults: Faults {
                outage: self.outage,
                status_storm: self.status_storm,
                latency_ms: self.latency_ms,
                drop_rate: self.drop_rate,
            },
        }
    }
}

/// A byte size as Loki writes it.
fn byte_size(s: &str) -> Result<u64, String> {
    parse_byte_size(s).ok_or_else(|| format!("not a size (e.g. 64KB, 3MB, 1048576): {s}"))
}

/// A date (`2020-10-24`, midnight UTC) or an RFC 3339 time.
fn schema_start(s: &str) -> Result<Timestamp, String> {
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_owned()
    };
    Timestamp::parse_rfc3339(&full).map_err(|e| format!("{s}: {e}"))
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
    fn reads_lokis_flag_names_and_sizes() {
        let c = config(&[
            "--ingestion-rate-limit-mb",
            "1",
            "--max-recv-msg-size",
            "65536",
            "--max-decompressed-size",
            "2097152",
            "--per-stream-rate-limit",
            "64KB",
            "--per-stream-rate-limit-burst",
            "64KB",
            "--max-global-streams-per-user",
            "4",
            "--schema-start",
            "2020-10-24",
            "--query-ingesters-within",
            "0s",
        ]);
        assert_eq!(c.ingestion_rate_mb, 1.0);
        assert_eq!(
            (c.max_body_bytes, c.max_decompressed_bytes),
            (65_536, 2_097_152)
        );
        assert_eq!(c.stream_rate(), (65_536.0, 65_536.0));
        assert_eq!(c.max_streams_per_user, 4);
        assert_eq!(
            c.limits.schema_start.as_nanos(),
            schema::loki::limits::DEFAULT_SCHEMA_START_NANOS
        );
        assert!(c.query_ingesters_within.is_zero());
        let argv = [
            "loki",
            "--per-stream-rate-limit",
            "1MB",
            "--per-stream-rate-limit-mb",
            "1",
        ];
        assert!(Cli::try_parse_from(argv).is_err());
    }

    #[test]
    fn rejects_a_malformed_status_storm() {
        let argv = ["loki", "--status-storm", "429"];
        assert!(Cli::try_parse_from(argv).is_err());
    }
}
