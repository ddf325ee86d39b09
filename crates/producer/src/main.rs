//! `producer`: the command line of the producer service. Only wiring: tracing → config →
//! metrics registry → app → run until done or signalled.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use producer::cli::{Cli, Command, HealthcheckArgs, RunArgs, ValidateArgs};
use producer::ProducerConfig;
use service::telemetry;

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

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run(args) => run(args),
        Command::Validate(args) => validate(&args),
        Command::Healthcheck(args) => healthcheck(&args),
    }
}

fn validate(args: &ValidateArgs) -> ExitCode {
    let code = producer::validate(
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
    let options = match args.options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("producer: {e}");
            return ExitCode::FAILURE;
        }
    };
    telemetry::init(&config.service.log_level, config.service.log_format());
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
    let result = runtime.block_on(async {
        let shutdown = service::shutdown::on_signal();
        producer::run(
            config,
            options.clone(),
            prometheus::Registry::new(),
            shutdown,
        )
        .await
    });
    match result {
        Ok(report) => {
            let code = options.exit_code(&report);
            tracing::info!(exit_code = code, "producer stopped: {report}");
            ExitCode::from(code)
        }
        Err(e) if e.is_configuration() => {
            tracing::error!(error = %e, "producer stopped: configuration error");
            eprintln!("producer: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            tracing::error!(error = %e, "producer failed");
            eprintln!("producer: {e}");
            ExitCode::FAILURE
        }
    }
}
