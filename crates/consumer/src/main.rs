//! `consumer`: Kafka → Loki. Wires logging, configuration, metrics and the service; the work is
//! in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use consumer::ConsumerConfig;

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
                    .map(|c| c.service.http_listen.port())
                    .unwrap_or(8001)
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
                ExitCode::from(78)
            }
        },
    }
}

fn run(
    file: Option<PathBuf>,
    env: &std::collections::HashMap<String, String>,
) -> anyhow::Result<ExitCode> {
    let config: ConsumerConfig = service::config::load(file.as_deref(), env)?;
    config.validate()?;
    service::telemetry::init(&config.service.log_level, config.service.log_format());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
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
