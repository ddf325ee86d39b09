//! `testkit`: the harness's command line.

use std::io::{self, Write};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use schema::Timestamp;
use testkit::gen::{self, Format, GenOptions};
use testkit::loki::LokiArgs;

/// Test harness of the log pipeline.
#[derive(Debug, Parser)]
#[command(name = "testkit", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write deterministic, realistic JSON log records to stdout.
    ///
    /// The same options always give the same bytes, e.g.
    /// `testkit gen --records 2400 --seed 42 --format array > logs.json`.
    Gen(GenArgs),
    /// Run a Loki-compatible test receiver until SIGINT or SIGTERM.
    ///
    /// It accepts, rejects and stores pushes as a recorded real Loki does (LOKI.md and
    /// tests/loki-conformance; see crates/testkit/README.md) and answers Loki's query API,
    /// /ready and /metrics on --listen. Options that mirror a Loki flag also answer to its name
    /// (--max-recv-msg-size, --per-stream-rate-limit 64KB, --max-global-streams-per-user…). The control API on --control-listen changes faults at
    /// run time (GET/PUT/DELETE /control/faults, JSON), clears the store and counters
    /// (POST /control/reset), removes entries as if Loki had lost them (POST /control/delete)
    /// and reports them (GET /control/stats). Logs go to stderr
    /// (LOG_LEVEL, LOG_FORMAT=json|text).
    Loki(Box<LokiArgs>),
    /// Print every message of a Kafka topic, read to the end of each partition: its value on
    /// one line (a record's compact JSON), in partition and offset order.
    ///
    /// For tests that check records by content where only a container on the broker's network
    /// can reach it (`docker compose exec loki testkit topic --bootstrap kafka:29092 logs`).
    Topic(TopicArgs),
    /// Join a Kafka consumer group on a topic and print the partitions this member holds
    /// ("holds [0, 1, 2]") each time they change, until killed.
    ///
    /// For tests of a member that dies without leaving its group (SIGKILL): the broker must
    /// give its partitions to the members still alive once its session expires. Nothing is
    /// committed.
    GroupMember(GroupMemberArgs),
}

#[derive(Debug, Args)]
struct GroupMemberArgs {
    /// Kafka bootstrap servers.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// The consumer group to join.
    #[arg(long)]
    group: String,
    /// Session timeout (the broker expires the member this long after its last heartbeat).
    #[arg(long, value_name = "DURATION", default_value = "6s", value_parser = humantime::parse_duration)]
    session_timeout: Duration,
    /// Heartbeat interval.
    #[arg(long, value_name = "DURATION", default_value = "1500ms", value_parser = humantime::parse_duration)]
    heartbeat_interval: Duration,
    /// The topic.
    topic: String,
}

#[derive(Debug, Args)]
struct TopicArgs {
    /// Kafka bootstrap servers.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Give up when the end of every partition is not reached within this long.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    within: Duration,
    /// The topic.
    topic: String,
}

#[derive(Debug, Args)]
struct GenArgs {
    /// Number of records to write.
    #[arg(long, value_name = "N", default_value_t = GenOptions::default().records)]
    records: u64,
    /// Seed of the pseudo-random generator; equal seeds give equal output.
    #[arg(long, value_name = "S", default_value_t = GenOptions::default().seed)]
    seed: u64,
    /// Output layout.
    #[arg(long, value_enum, default_value_t = Format::Array)]
    format: Format,
    /// Start of the time window the records spread over (RFC 3339).
    #[arg(
        long,
        value_name = "RFC3339",
        value_parser = parse_start,
        default_value = gen::DEFAULT_START
    )]
    start: Timestamp,
    /// Length of the time window, in hours (fractions allowed).
    #[arg(
        long,
        value_name = "H",
        value_parser = parse_hours,
        default_value_t = gen::DEFAULT_SPAN.as_secs_f64() / 3600.0
    )]
    span_hours: f64,
}

impl GenArgs {
    fn options(&self) -> GenOptions {
        GenOptions {
            records: self.records,
            seed: self.seed,
            format: self.format,
            start: self.start,
            // parse_hours guarantees a finite, non-negative value of at most a million hours.
            span: Duration::from_secs_f64(self.span_hours * 3600.0),
        }
    }
}

fn parse_start(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse_rfc3339(s).map_err(|e| e.to_string())
}

fn parse_hours(s: &str) -> Result<f64, String> {
    let hours: f64 = s.parse().map_err(|_| format!("not a number: {s}"))?;
    if !(0.0..=1_000_000.0).contains(&hours) {
        return Err("must be between 0 and 1000000 hours".to_owned());
    }
    Ok(hours)
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Gen(args) => run_gen(&args),
        Command::Loki(args) => run_loki(&args),
        Command::Topic(args) => run_topic(&args),
        Command::GroupMember(args) => run_group_member(&args),
    }
}

fn run_group_member(args: &GroupMemberArgs) -> anyhow::Result<()> {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("group.id", &args.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            args.session_timeout.as_millis().to_string(),
        )
        .set(
            "heartbeat.interval.ms",
            args.heartbeat_interval.as_millis().to_string(),
        )
        .create()
        .context("cannot create the consumer")?;
    consumer
        .subscribe(&[&args.topic])
        .with_context(|| format!("cannot subscribe to {:?}", args.topic))?;
    let mut held: Option<Vec<i32>> = None;
    loop {
        // Serves the group protocol (joins, heartbeats, rebalances); messages are dropped.
        if let Some(Err(e)) = consumer.poll(Duration::from_millis(100)) {
            eprintln!("testkit group-member: {e}");
        }
        let mut now: Vec<i32> = consumer
            .assignment()
            .context("cannot read the assignment")?
            .elements()
            .iter()
            .map(|e| e.partition())
            .collect();
        now.sort_unstable();
        if held.as_ref() != Some(&now) {
            let mut out = io::stdout().lock();
            writeln!(out, "holds {now:?}")?;
            out.flush()?;
            held = Some(now);
        }
    }
}

fn run_topic(args: &TopicArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let records = runtime
        .block_on(testkit::topic::read_topic(
            &args.bootstrap,
            &args.topic,
            testkit::topic::ReadUntil::HighWatermarks,
            args.within,
        ))
        .with_context(|| format!("cannot read topic {:?} from {}", args.topic, args.bootstrap))?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    for record in &records {
        out.write_all(&record.value)?;
        out.write_all(b"\n")?;
    }
    out.flush().context("cannot write the records")
}

fn run_loki(args: &LokiArgs) -> anyhow::Result<()> {
    let level = std::env::var("LOG_LEVEL").unwrap_or_else(|_| "info".to_owned());
    let format = std::env::var("LOG_FORMAT").ok();
    service::telemetry::init(
        &level,
        service::telemetry::LogFormat::from_env(format.as_deref()),
    );
    let config = args.config();
    config
        .validate()
        .context("invalid receiver configuration")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime
        .block_on(async {
            let shutdown = service::shutdown::on_signal();
            testkit::loki::run(config, shutdown).await
        })
        .context("testkit loki failed")
}

fn run_gen(args: &GenArgs) -> anyhow::Result<()> {
    let stdout = io::stdout();
    match gen::generate(&args.options(), stdout.lock()) {
        Ok(_) => Ok(()),
        // The reader went away (`testkit gen | head`): nothing left to do.
        Err(e) if e.is_broken_pipe() => Ok(()),
        Err(e) => Err(e).context("testkit gen failed"),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_library_defaults() {
        let cli = Cli::try_parse_from(["testkit", "gen"]).unwrap();
        let Command::Gen(args) = cli.command else {
            panic!("not the gen subcommand");
        };
        assert_eq!(args.options(), GenOptions::default());
    }

    #[test]
    fn parses_all_gen_options() {
        let cli = Cli::try_parse_from([
            "testkit",
            "gen",
            "--records",
            "5",
            "--seed",
            "9",
            "--format",
            "ndjson",
            "--start",
            "2026-01-01T00:00:00Z",
            "--span-hours",
            "1.5",
        ])
        .unwrap();
        let Command::Gen(args) = cli.command else {
            panic!("not the gen subcommand");
        };
        let options = args.options();
        assert_eq!(options.records, 5);
        assert_eq!(options.seed, 9);
        assert_eq!(options.format, Format::Ndjson);
        assert_eq!(options.start.to_rfc3339(), "2026-01-01T00:00:00.000000000Z");
        assert_eq!(options.span, Duration::from_secs(5_400));
    }

    #[test]
    fn parses_loki_options_onto_the_receiver_config() {
        let cli = Cli::try_parse_from([
            "testkit",
            "loki",
            "--listen",
            "127.0.0.1:4100",
            "--count-only",
            "--status-storm",
            "429:1:5",
        ])
        .unwrap();
        let Command::Loki(args) = cli.command else {
            panic!("not the loki subcommand");
        };
        let config = args.config();
        assert_eq!(config.listen.port(), 4100);
        assert_eq!(config.control_listen.port(), 3101);
        assert!(config.count_only);
        assert_eq!(config.faults.status_storm.map(|s| s.code), Some(429));
    }

    #[test]
    fn rejects_bad_start_and_span() {
        for bad in [
            ["--start", "yesterday"],
            ["--span-hours", "-1"],
            ["--span-hours", "NaN"],
        ] {
            let args = ["testkit", "gen", bad[0], bad[1]];
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?}");
        }
    }
}
