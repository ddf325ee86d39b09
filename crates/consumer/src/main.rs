//! `consumer`: Kafka → Loki. Wires logging, configuration, metrics and the service; the work is
//! in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use consumer::{AuditArgs, ConsumerConfig, Ending, RedriveArgs, RedriveError};

/// Consumes JSON log records from Kafka and pushes them to Grafana Loki, committing offsets
/// only after Loki (or the dead-letter topic) has them.
///
/// Every setting is read from the environment (its name in upper case, e.g. LOKI_URL) over an
/// optional TOML file over built-in defaults; see the README's configuration table.
#[derive(Debug, Parser)]
#[command(name = "consumer", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the consumer until SIGINT or SIGTERM (then flush, commit, leave the group, exit 0).
    Run {
        /// TOML file with settings (keys as in the README, lower case); environment wins.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Move dead letters back to the main topic once their cause is fixed (runbook:
    /// deploy/README.md, "Redriving the dead-letter topic").
    ///
    /// Reads KAFKA_DLQ_TOPIC as its own consumer group from the group's committed offsets to
    /// the end each partition has at the start, and re-publishes the selected records to
    /// KAFKA_TOPIC exactly as the producer wrote them (key = service, the record headers, the
    /// line unchanged), committing a batch's offsets only once Kafka acknowledged every record
    /// it moved. Letters not selected are passed over: their offsets advance too. Poison
    /// messages (not valid records) stay unless their reason is named with --reason. Exit
    /// status: 0 done (the end reached, or --max-letters read; with --follow, stopped by a
    /// signal), 75 stopped before the end (a signal, another member of the group, or a
    /// publish that kept failing): run again to go on, 78 bad configuration, 1 other
    /// failures, 2 bad usage (including a --group whose name lacks "redrive").
    Redrive(Box<RedriveArgs>),
    /// Prove delivery: compare what the topic holds with what Loki and the dead-letter topic
    /// hold (README, "Proving delivery").
    ///
    /// For a window of record timestamps (--since/--until) or Kafka offset ranges (--offsets),
    /// reads KAFKA_TOPIC (joining no group), the dead letters naming those messages and
    /// KAFKA_GROUP_ID's committed offsets, then asks Loki (LOKI_URL, tenant, credentials) for
    /// every stream of the label policy through query_range, paged and paced. It reports per
    /// partition and per stream: in Kafka, in Loki, in the DLQ, duplicates (one Loki entry
    /// for several messages), pending (not consumed yet), beyond Loki's horizon, unverified,
    /// missing, and extra (in Loki, not in Kafka), with samples. Exit status: 0 nothing
    /// missing, 3 records missing, 78 bad configuration, 1 the audit could not be completed
    /// (Kafka or Loki unreachable, a query refused, a signal), 2 bad usage.
    Audit(Box<AuditArgs>),
    /// Exit 0 when the running consumer's /healthz answers 200 (for container HEALTHCHECKs).
    Healthcheck {
        /// Admin port to check (default: the port of HTTP_LISTEN, 8001).
        #[arg(long)]
        port: Option<u16>,
        /// Check /readyz instead of /healthz.
        #[arg(long)]
        ready: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = service::config::process_env();
    match cli.command {
        Command::Healthcheck { port, ready } => {
            let port = port.unwrap_or_else(|| {
                service::config::load::<ConsumerConfig>(None, &env)
                    .ok()
                    .and_then(|c| c.http_addr().ok())
                    .map_or(8001, |a| a.port())
            });
            let path = if ready { "/readyz" } else { "/healthz" };
            match service::healthcheck::check("127.0.0.1", port, path, Duration::from_secs(3)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("consumer healthcheck: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { config } => match run(config, &env) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("consumer: {e:#}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Redrive(args) => redrive(*args, &env),
        Command::Audit(args) => audit(*args, &env),
    }
}

/// Exit status of an audit that found missing records.
const EXIT_MISSING: u8 = 3;
/// Exit status of a tool that stopped before its end: run it again to go on (EX_TEMPFAIL).
const EXIT_AGAIN: u8 = 75;
/// Exit status for bad usage (as clap's).
const EXIT_USAGE: u8 = 2;
/// Exit status for bad configuration (EX_CONFIG).
const EXIT_CONFIG: u8 = 78;

/// Loads and checks the configuration and starts logging.
fn configure(
    file: Option<&std::path::Path>,
    env: &std::collections::HashMap<String, String>,
) -> anyhow::Result<ConsumerConfig> {
    let config: ConsumerConfig = service::config::load(file, env)?;
    config.validate()?;
    service::telemetry::init(&config.service.log_level, config.service.log_format());
    Ok(config)
}

/// The async runtime of every subcommand but `healthcheck`.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn redrive(args: RedriveArgs, env: &std::collections::HashMap<String, String>) -> ExitCode {
    let config = match configure(args.config.as_deref(), env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("consumer redrive: {e:#}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("consumer redrive: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let shutdown = service::shutdown::on_signal();
        consumer::redrive(config, args, shutdown).await
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    match result {
        Ok(outcome) => {
            print!("{}", outcome.report);
            match outcome.ending {
                Ending::Complete | Ending::Limit => ExitCode::SUCCESS,
                Ending::Interrupted | Ending::Rebalanced => ExitCode::from(EXIT_AGAIN),
            }
        }
        Err(e @ RedriveError::Busy { .. }) => {
            eprintln!("consumer redrive: {e}");
            ExitCode::from(EXIT_AGAIN)
        }
        Err(e @ RedriveError::GroupName(_)) => {
            eprintln!("consumer redrive: {e}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(e) => {
            eprintln!("consumer redrive: {e}");
            ExitCode::FAILURE
        }
    }
}

fn audit(args: AuditArgs, env: &std::collections::HashMap<String, String>) -> ExitCode {
    let config = match configure(args.config.as_deref(), env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("consumer audit: {e:#}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("consumer audit: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let shutdown = service::shutdown::on_signal();
        consumer::audit(config, args, shutdown).await
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    match result {
        Ok(outcome) => {
            print!("{}", outcome.report);
            if outcome.missing == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_MISSING)
            }
        }
        Err(e) => {
            eprintln!("consumer audit: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(
    file: Option<PathBuf>,
    env: &std::collections::HashMap<String, String>,
) -> anyhow::Result<ExitCode> {
    let config = configure(file.as_deref(), env)?;
    let runtime = runtime()?;
    let result = runtime.block_on(async move {
        let shutdown = service::shutdown::on_signal();
        let summary = consumer::run(config, prometheus::Registry::new(), shutdown).await?;
        if summary.abandoned > 0 {
            tracing::error!(
                abandoned = summary.abandoned,
                "records left undelivered at shutdown; their offsets were not committed"
            );
        }
        Ok(ExitCode::SUCCESS)
    });
    // Blocking Kafka calls still waiting on an unreachable broker must not keep the process
    // alive after the shutdown sequence gave up on them.
    runtime.shutdown_timeout(Duration::from_secs(5));
    result
}
