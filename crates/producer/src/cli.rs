//! The command line of the `producer` binary (clap): its subcommands and their arguments, and
//! what `producer run`'s arguments ask for ([`RunArgs::options`]).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::app::{RunOptions, Source};
use crate::file::{FileOptions, Input};

/// Streams JSON log records from files and HTTP into Kafka.
///
/// Settings come from built-in defaults, then `--config FILE` (TOML), then the environment
/// (KAFKA_BOOTSTRAP_SERVERS, KAFKA_TOPIC, HTTP_LISTEN, ...; see CONFIG.md).
#[derive(Debug, Parser)]
#[command(name = "producer", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: HTTP ingest, plus a file source when --input is given.
    ///
    /// Exit status of --once: 0 when every record was acknowledged by Kafka, 65 when some
    /// records were invalid, 75 when some could not be delivered, 78 for a bad configuration,
    /// 1 for any other failure.
    Run(RunArgs),
    /// Check a file against the record schema without Kafka.
    ///
    /// Prints the first errors as `PATH:LINE: record N: reason: message` and the counts per
    /// reason. Exit 0 when every record is valid, 65 when some are not, 66 when the file cannot
    /// be read.
    Validate(ValidateArgs),
    /// Exit 0 when this host's producer answers GET /healthz (for container HEALTHCHECKs).
    Healthcheck(HealthcheckArgs),
}

/// The arguments of `producer run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// File to read records from (JSON array or NDJSON); `-` reads stdin. Without it the
    /// service only serves HTTP ingest.
    #[arg(long, value_name = "PATH|-")]
    pub input: Option<String>,
    /// Read the input once and exit when Kafka acknowledged every record (the default with
    /// --input).
    #[arg(long, group = "mode", requires = "input")]
    pub once: bool,
    /// Replay the input forever (the demo feed); see --rate and --rebase-timestamps.
    #[arg(long = "loop", group = "mode", requires = "input")]
    pub repeat: bool,
    /// Tail the input (NDJSON) across rotation and truncation, with a checkpoint
    /// (CHECKPOINT_PATH, default `<input>.checkpoint`).
    #[arg(long, group = "mode", requires = "input")]
    pub follow: bool,
    /// Send at most N records per second.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: Option<u32>,
    /// Shift record timestamps so each pass starts at now, keeping the file's spacing but never
    /// dating a record later than the moment it is sent (Loki refuses the future)
    /// (default: on with --loop, off otherwise).
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub rebase_timestamps: Option<bool>,
    /// Create the Kafka topic when missing, with KAFKA_TOPIC_PARTITIONS partitions.
    #[arg(long)]
    pub create_topic: bool,
    /// Stop at the first invalid record instead of skipping it.
    #[arg(long)]
    pub strict: bool,
    /// TOML configuration file (the environment overrides it).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The arguments of `producer validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The file to check (JSON array or NDJSON).
    pub path: PathBuf,
    /// How many errors to print with their position.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub max_errors: usize,
    /// Largest record in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = schema::reader::DEFAULT_MAX_RECORD_BYTES)]
    pub max_record_bytes: usize,
}

/// The arguments of `producer healthcheck`.
#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// Port of the producer's HTTP server (default: the port of HTTP_LISTEN, else 8000).
    #[arg(long)]
    pub port: Option<u16>,
    /// Host to ask.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Path to ask.
    #[arg(long, default_value = "/healthz")]
    pub path: String,
}

impl RunArgs {
    /// What the arguments ask for; an error says which combination cannot work.
    pub fn options(&self) -> Result<RunOptions, &'static str> {
        let source = match &self.input {
            None => Source::Http,
            Some(input) if self.follow => match Input::parse(input) {
                Input::Path(p) => Source::Follow(p),
                Input::Stdin => return Err("--follow needs a file, not stdin"),
            },
            Some(input) => Source::File(FileOptions {
                input: Input::parse(input),
                repeat: self.repeat,
                rate: self.rate,
                rebase_timestamps: self.rebase_timestamps.unwrap_or(self.repeat),
                strict: self.strict,
            }),
        };
        Ok(RunOptions {
            source,
            create_topic: self.create_topic,
            strict: self.strict,
        })
    }
}
