//! `producer`: the command line of the producer service. Only wiring: tracing → config →
//! metrics registry → app → run until done or signalled.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use producer::file::{FileOptions, Input};
use producer::{App, Metrics, ProducerConfig, RunOptions, Source};
use service::telemetry::{self, LogFormat};

/// mimalloc serves every allocation of the process: Rust's, and with its `override` feature
/// librdkafka's `malloc`/`free` too. A Kafka message is allocated by the thread that sends it and
/// freed by whichever thread serves its delivery report (the polling thread, or the sender
/// itself at full speed, see `Sink::poll_inline`); glibc's allocator serialised those threads on
/// one arena lock, mimalloc's thread-local free lists do not (`scripts/bench-producer.sh`,
/// 300 000 records: about 13% more records/s and less CPU per record).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for an unusable configuration (`EX_CONFIG`).
const EXIT_CONFIG: u8 = 78;

/// Streams JSON log records from files and HTTP into Kafka.
///
/// Settings come from built-in defaults, then `--config FILE` (TOML), then the environment
/// (KAFKA_BOOTSTRAP_SERVERS, KAFKA_TOPIC, HTTP_LISTEN, ...; see CONFIG.md).
#[derive(Debug, Parser)]
#[command(name = "producer", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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

#[derive(Debug, Args)]
struct RunArgs {
    /// File to read records from (JSON array or NDJSON); `-` reads stdin. Without it the
    /// service only serves HTTP ingest.
    #[arg(long, value_name = "PATH|-")]
    input: Option<String>,
    /// Read the input once and exit when Kafka acknowledged every record (the default with
    /// --input).
    #[arg(long, group = "mode", requires = "input")]
    once: bool,
    /// Replay the input forever (the demo feed); see --rate and --rebase-timestamps.
    #[arg(long = "loop", group = "mode", requires = "input")]
    repeat: bool,
    /// Tail the input (NDJSON) across rotation and truncation, with a checkpoint
    /// (CHECKPOINT_PATH, default `<input>.checkpoint`).
    #[arg(long, group = "mode", requires = "input")]
    follow: bool,
    /// Send at most N records per second.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    rate: Option<u32>,
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
    rebase_timestamps: Option<bool>,
    /// Create the Kafka topic when missing, with KAFKA_TOPIC_PARTITIONS partitions.
    #[arg(long)]
    create_topic: bool,
    /// Stop at the first invalid record instead of skipping it.
    #[arg(long)]
    strict: bool,
    /// TOML configuration file (the environment overrides it).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ValidateArgs {
    /// The file to check (JSON array or NDJSON).
    path: PathBuf,
    /// How many errors to print with their position.
    #[arg(long, value_name = "N", default_value_t = 20)]
    max_errors: usize,
    /// Largest record in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = schema::reader::DEFAULT_MAX_RECORD_BYTES)]
    max_record_bytes: usize,
}

#[derive(Debug, Args)]
struct HealthcheckArgs {
    /// Port of the producer's HTTP server (default: the port of HTTP_LISTEN, else 8000).
    #[arg(long)]
    port: Option<u16>,
    /// Host to ask.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Path to ask.
    #[arg(long, default_value = "/healthz")]
    path: String,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run(args) => run(args),
        Command::Validate(args) => validate(&args),
        Command::Healthcheck(args) => healthcheck(&args),
    }
}

fn validate(args: &ValidateArgs) -> ExitCode {
    let code = producer::validate_cmd::run(
        &args.path,
        args.max_record_bytes,
        args.max_errors,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    match code {
        Ok(c) => ExitCode::from(c),
        Err(e) => {
            eprintln!("producer validate: cannot write the report: {e}");
            ExitCode::FAILURE
        }
    }
}

fn healthcheck(args: &HealthcheckArgs) -> ExitCode {
    let port = args.port.unwrap_or_else(|| {
        ProducerConfig::load(None, &service::config::process_env())
            .ok()
            .and_then(|c| c.http_addr())
            .map_or(8000, |a| a.port())
    });
    match service::healthcheck::check(&args.host, port, &args.path, Duration::from_secs(3)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("producer healthcheck: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs) -> ExitCode {
    let env = service::config::process_env();
    let config = match ProducerConfig::load(args.config.as_deref(), &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("producer: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let format = (!config.log_format.is_empty()).then_some(config.log_format.as_str());
    telemetry::init(&config.log_level, LogFormat::from_env(format));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("producer: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args, config)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "producer failed");
            eprintln!("producer: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: RunArgs, config: ProducerConfig) -> anyhow::Result<u8> {
    let source = match &args.input {
        None => Source::Http,
        Some(input) if args.follow => match Input::parse(input) {
            Input::Path(p) => Source::Follow(p),
            Input::Stdin => anyhow::bail!("--follow needs a file, not stdin"),
        },
        Some(input) => Source::File(FileOptions {
            input: Input::parse(input),
            repeat: args.repeat,
            rate: args.rate,
            rebase_timestamps: args.rebase_timestamps.unwrap_or(args.repeat),
            strict: args.strict,
        }),
    };
    let once = matches!(&source, Source::File(f) if !f.repeat);
    let options = RunOptions {
        source,
        create_topic: args.create_topic,
        strict: args.strict,
    };
    let registry = prometheus::Registry::new();
    let flags = config.feature_flags();
    service::admin::register_common_metrics(
        &registry,
        "producer",
        producer::app::VERSION,
        ProducerConfig::KNOWN_FLAGS,
        &flags,
    )
    .context("cannot register metrics")?;
    let metrics = Arc::new(
        Metrics::register(&registry, config.feature_enhanced_metrics)
            .context("cannot register metrics")?,
    );
    tracing::info!(
        version = producer::app::VERSION,
        environment = %config.environment,
        topic = %config.kafka_topic,
        bootstrap = %service::redact::url_credentials(&config.kafka_bootstrap_servers),
        ingest_auth = config.ingest_auth(),
        flags = ?flags,
        "producer starting"
    );
    let shutdown = service::shutdown::on_signal();
    let result = match App::build(config, options, registry, metrics).await {
        Ok(app) => app.run(shutdown).await,
        Err(e) => Err(e),
    };
    let report = match result {
        Ok(report) => report,
        Err(e) if e.is_configuration() => {
            tracing::error!(error = %e, "producer stopped: configuration error");
            return Ok(EXIT_CONFIG);
        }
        Err(e) => return Err(e.into()),
    };
    let code = if once { report.exit_code() } else { 0 };
    tracing::info!(exit_code = code, "producer stopped: {report}");
    Ok(code)
}
