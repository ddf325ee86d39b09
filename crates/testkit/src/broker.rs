//! A real Kafka-compatible broker for integration tests: a tansu process on a free loopback port
//! (<https://github.com/tansu-io/tansu>; facts measured on it are in `/work/shared/ENVIRONMENT.md`).
//!
//! [`Broker`] owns the process: it is started ready (it answers Kafka metadata requests), can be
//! stopped, killed and restarted on the same port and storage, and is killed when dropped, also
//! when the test panics; then the last lines of its log are printed beside the failure.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use tempfile::TempDir;

use crate::process::{self, ChildProcess, ServiceLog, MARKER, POLL_INTERVAL};

/// The environment variable naming the tansu binary (`scripts/test.sh` sets it).
pub const TANSU_BIN_ENV: &str = "TANSU_BIN";

/// How many fresh ports [`Broker::start`] tries when another process takes the one it picked.
const PORT_ATTEMPTS: usize = 5;

/// How long tansu may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How long one metadata request of the readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The file in a durable storage folder that keeps the cluster id: tansu files data under it, so
/// a broker started later on the same folder must use the same id to see the same topics.
const CLUSTER_ID_FILE: &str = "logpipe-cluster-id";

/// Errors of starting, stopping and using a test broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Neither `TANSU_BIN` nor `PATH` leads to a tansu binary.
    #[error("tansu binary not found ({searched}): run `scripts/test.sh --only install`")]
    TansuNotFound {
        /// Where it was looked for.
        searched: String,
    },
    /// A file or process operation failed.
    #[error("{action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// tansu exited while it was expected to run.
    #[error("tansu exited before it was ready ({status}); last log lines:\n{log_tail}")]
    Exited {
        /// Its exit status.
        status: String,
        /// The end of its log.
        log_tail: String,
    },
    /// tansu did not answer a metadata request in time.
    #[error("tansu not ready within {timeout:?}: {last_error}; last log lines:\n{log_tail}")]
    NotReady {
        /// How long it was given.
        timeout: Duration,
        /// Why the last probe failed.
        last_error: String,
        /// The end of its log.
        log_tail: String,
    },
    /// Every port tried was taken by another process.
    #[error("no free loopback port after {attempts} attempts; last log lines:\n{log_tail}")]
    NoFreePort {
        /// How many ports were tried.
        attempts: usize,
        /// The end of the log.
        log_tail: String,
    },
    /// A Kafka client operation failed.
    #[error("{action}: {source}")]
    Kafka {
        /// What was being done.
        action: String,
        /// The client's error.
        #[source]
        source: KafkaError,
    },
    /// The broker refused to create a topic.
    #[error("cannot create topic {topic:?}: {code}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// The broker's error code.
        code: RDKafkaErrorCode,
    },
    /// A topic did not show the expected partitions in metadata in time.
    #[error("topic {topic:?} not in metadata with {partitions} partitions within {timeout:?}")]
    TopicNotVisible {
        /// The topic.
        topic: String,
        /// The partition count asked for.
        partitions: i32,
        /// How long it was waited for.
        timeout: Duration,
    },
}

impl BrokerError {
    fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let action = action.into();
        move |source| Self::Io { action, source }
    }

    fn kafka(action: impl Into<String>) -> impl FnOnce(KafkaError) -> Self {
        let action = action.into();
        move |source| Self::Kafka { action, source }
    }
}

/// Where the broker keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// In memory: fast; nothing survives a stop.
    Memory,
    /// A SQLite file `tansu.db` in this folder (created when missing): topics, records and
    /// committed group offsets survive restarts, and a later [`Broker`] on the same folder sees
    /// them too. The caller owns the folder (typically a `tempfile::TempDir`).
    Durable(PathBuf),
}

/// How to start a [`Broker`].
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// Where data is kept. Default: [`Storage::Memory`].
    pub storage: Storage,
    /// The tansu binary. Default: `None`, meaning `$TANSU_BIN`, then `tansu` on `PATH`.
    pub tansu_bin: Option<PathBuf>,
    /// How long a start or restart may take until the broker answers metadata requests.
    /// Default: 30 s (tansu needs well under a second; the margin is for loaded CI machines).
    pub ready_timeout: Duration,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        Self {
            storage: Storage::Memory,
            tansu_bin: None,
            ready_timeout: Duration::from_secs(30),
        }
    }
}

impl BrokerOptions {
    /// In-memory storage, other options default.
    pub fn memory() -> Self {
        Self::default()
    }

    /// Durable storage in `dir`, other options default.
    pub fn durable(dir: impl Into<PathBuf>) -> Self {
        Self {
            storage: Storage::Durable(dir.into()),
            ..Self::default()
        }
    }
}

/// A running tansu broker on `127.0.0.1:<port>`, killed when dropped.
///
/// Its command line carries `--cluster-id logpipe-test-…`, so `pgrep -af logpipe-test-` finds
/// leftovers; its output goes to [`Broker::log_path`].
#[derive(Debug)]
pub struct Broker {
    bin: PathBuf,
    port: u16,
    cluster_id: String,
    storage: Storage,
    ready_timeout: Duration,
    log: ServiceLog,
    /// Where the current run's output starts in the log.
    run_log_offset: u64,
    child: Option<ChildProcess>,
    /// Holds the log (and the working folder of a memory broker); removed on drop.
    _work_dir: TempDir,
}

impl Broker {
    /// Starts tansu on a free loopback port and returns once it answers metadata requests.
    ///
    /// Fails (never skips) when tansu is not installed, naming the install step.
    pub async fn start(options: BrokerOptions) -> Result<Self, BrokerError> {
        let bin = resolve_tansu(
            options.tansu_bin.as_deref(),
            std::env::var_os(TANSU_BIN_ENV),
            std::env::var_os("PATH"),
        )?;
        let work_dir = tempfile::Builder::new()
            .prefix(&format!("{MARKER}tansu-"))
            .tempdir()
            .map_err(BrokerError::io("cannot create the broker's temp dir"))?;
        let cluster_id = match &options.storage {
            Storage::Memory => format!("{MARKER}{}", process::unique_suffix()),
            Storage::Durable(dir) => durable_cluster_id(dir)?,
        };
        let mut broker = Self {
            bin,
            port: 0,
            cluster_id,
            storage: options.storage,
            ready_timeout: options.ready_timeout,
            log: ServiceLog::new(work_dir.path().join("tansu.log")),
            run_log_offset: 0,
            child: None,
            _work_dir: work_dir,
        };
        for _ in 0..PORT_ATTEMPTS {
            broker.port = process::free_loopback_port()
                .map_err(BrokerError::io("cannot pick a free loopback port"))?;
            match broker.spawn_until_ready().await {
                // Another process took the port between our probe and tansu's bind.
                Err(BrokerError::Exited { .. }) if broker.port_taken_by_other() => {
                    // A start-up retry of the harness, not of a test: said on stderr, which
                    // nextest shows with the test's output.
                    eprintln!(
                        "testkit: tansu lost port {} to another process; starting again on a fresh port",
                        broker.port
                    );
                    continue;
                }
                Err(error) => return Err(error),
                Ok(()) => return Ok(broker),
            }
        }
        Err(BrokerError::NoFreePort {
            attempts: PORT_ATTEMPTS,
            log_tail: broker.log.tail(20),
        })
    }

    /// `127.0.0.1:<port>`, for the `bootstrap.servers` client setting.
    pub fn bootstrap_servers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A client configuration with `bootstrap.servers` set, to add test settings to.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.bootstrap_servers());
        config
    }

    /// The port the broker listens on; the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id while the broker runs; `None` after [`stop`](Self::stop) or
    /// [`kill`](Self::kill).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(ChildProcess::id)
    }

    /// The storage the broker was started with.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The file holding tansu's stdout and stderr (all runs of this broker, appended).
    pub fn log_path(&self) -> &Path {
        self.log.path()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.log.tail(lines)
    }

    /// Creates `name` with `partitions` partitions and returns once metadata shows all of them.
    ///
    /// tansu does not auto-create topics, so every test creates its topics first. See
    /// [`create_topic`].
    pub async fn create_topic(&self, name: &str, partitions: i32) -> Result<(), BrokerError> {
        create_topic(
            &self.bootstrap_servers(),
            name,
            partitions,
            self.ready_timeout,
        )
        .await
    }

    /// Stops the broker (if it runs) and starts it again on the same port and storage. With
    /// [`Storage::Durable`] topics, records and committed offsets are kept; in memory they are
    /// lost.
    pub async fn restart(&mut self) -> Result<(), BrokerError> {
        self.stop().await?;
        // The port was ours a moment ago; give another process that grabbed it a chance to
        // release it before giving up.
        let deadline = tokio::time::Instant::now() + self.ready_timeout;
        loop {
            match self.spawn_until_ready().await {
                Err(BrokerError::Exited { .. })
                    if self.port_taken_by_other() && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                result => return result,
            }
        }
    }

    /// Stops the broker gracefully (SIGTERM, then SIGKILL after 10 s); no-op when stopped.
    pub async fn stop(&mut self) -> Result<(), BrokerError> {
        if let Some(child) = self.child.take() {
            let status = child
                .terminate(STOP_GRACE)
                .await
                .map_err(BrokerError::io("cannot stop tansu"))?;
            self.note(&format!("stopped: {status}"));
        }
        Ok(())
    }

    /// Kills the broker at once (SIGKILL), as a crash would; no-op when stopped.
    pub fn kill(&mut self) -> Result<(), BrokerError> {
        if let Some(child) = self.child.take() {
            let status = child.kill().map_err(BrokerError::io("cannot kill tansu"))?;
            self.note(&format!("killed: {status}"));
        }
        Ok(())
    }

    /// Best-effort log note; the log is for humans, so a failed write only loses the note.
    fn note(&self, line: &str) {
        let _ = self.log.note(line);
    }

    /// Spawns tansu on `self.port` and waits until it is ready or gone.
    async fn spawn_until_ready(&mut self) -> Result<(), BrokerError> {
        let listener = format!("tcp://{}", self.bootstrap_servers());
        let (work_dir, storage_url) = match &self.storage {
            Storage::Memory => (self.log_dir().to_path_buf(), "memory://tansu/"),
            // tansu resolves the SQLite path against its working directory.
            Storage::Durable(dir) => (dir.clone(), "sqlite://tansu.db"),
        };
        let mut command = Command::new(&self.bin);
        command
            .arg("broker")
            .args(["--cluster-id", &self.cluster_id])
            .args(["--listener-url", &listener])
            .args(["--advertised-listener-url", &listener])
            .args(["--storage-engine", storage_url])
            .current_dir(&work_dir)
            .env("NO_COLOR", "1")
            // tansu reads these too; the test decides, not the developer's shell.
            .env_remove("SCHEMA_REGISTRY")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
        self.note(&format!("starting: {command:?} in {}", work_dir.display()));
        self.run_log_offset = self.log.len();
        let child = ChildProcess::spawn(&mut command, &self.log).map_err(BrokerError::io(
            format!("cannot start {}", self.bin.display()),
        ))?;
        self.child = Some(child);
        self.wait_ready().await
    }

    fn log_dir(&self) -> &Path {
        self.log.path().parent().unwrap_or_else(|| Path::new("."))
    }

    /// Whether the current run's output says the port was taken.
    fn port_taken_by_other(&self) -> bool {
        self.log
            .read_from(self.run_log_offset)
            .contains("AddrInUse")
    }

    /// Polls until the broker answers a metadata request with our cluster id (so we are not
    /// talking to another process on a recycled port), failing early when it exits.
    async fn wait_ready(&mut self) -> Result<(), BrokerError> {
        let deadline = tokio::time::Instant::now() + self.ready_timeout;
        let mut last_error = String::from("not probed yet");
        loop {
            self.fail_if_exited()?;
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                let bootstrap = self.bootstrap_servers();
                let cluster_id = self.cluster_id.clone();
                let probe = tokio::task::spawn_blocking(move || probe(&bootstrap, &cluster_id))
                    .await
                    .unwrap_or_else(|error| Err(format!("probe task failed: {error}")));
                match probe {
                    Ok(()) => {
                        // It may have lost a bind race while the probe reached someone else.
                        self.fail_if_exited()?;
                        return Ok(());
                    }
                    Err(error) => last_error = error,
                }
            }
            if tokio::time::Instant::now() >= deadline {
                self.kill()?;
                return Err(BrokerError::NotReady {
                    timeout: self.ready_timeout,
                    last_error,
                    log_tail: self.log.tail(20),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    fn fail_if_exited(&mut self) -> Result<(), BrokerError> {
        let Some(child) = self.child.as_mut() else {
            return Err(BrokerError::Exited {
                status: "not running".into(),
                log_tail: self.log.tail(20),
            });
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                self.child = None;
                Err(BrokerError::Exited {
                    status: status.to_string(),
                    log_tail: self.log.tail(20),
                })
            }
            Err(source) => Err(BrokerError::Io {
                action: "cannot check whether tansu runs".into(),
                source,
            }),
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // Kill first, so the log printed below is complete.
        drop(self.child.take());
        self.log.print_tail_if_panicking("tansu");
    }
}

/// One readiness probe: a metadata request, and the cluster id must be ours.
fn probe(bootstrap: &str, cluster_id: &str) -> Result<(), String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("reconnect.backoff.max.ms", "100")
        .create()
        .map_err(|error| format!("cannot create a probe client: {error}"))?;
    consumer
        .fetch_metadata(None, PROBE_TIMEOUT)
        .map_err(|error| format!("metadata request failed: {error}"))?;
    match consumer.client().fetch_cluster_id(PROBE_TIMEOUT) {
        Some(id) if id == cluster_id => Ok(()),
        Some(id) => Err(format!(
            "another broker answers on {bootstrap} (cluster id {id})"
        )),
        None => Err("no cluster id in the metadata response".into()),
    }
}

/// The cluster id of a durable storage folder: read from the folder, or made and saved there.
fn durable_cluster_id(dir: &Path) -> Result<String, BrokerError> {
    std::fs::create_dir_all(dir).map_err(BrokerError::io(format!(
        "cannot create the storage folder {}",
        dir.display()
    )))?;
    let file = dir.join(CLUSTER_ID_FILE);
    match std::fs::read_to_string(&file) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        _ => {
            let id = format!("{MARKER}{}", process::unique_suffix());
            std::fs::write(&file, &id)
                .map_err(BrokerError::io(format!("cannot write {}", file.display())))?;
            Ok(id)
        }
    }
}

/// The tansu binary: `explicit`, else `$TANSU_BIN` when it exists, else `tansu` on `PATH`.
fn resolve_tansu(
    explicit: Option<&Path>,
    tansu_bin_env: Option<OsString>,
    path_env: Option<OsString>,
) -> Result<PathBuf, BrokerError> {
    if let Some(path) = explicit {
        return if process::is_executable(path) {
            Ok(path.to_path_buf())
        } else {
            Err(BrokerError::TansuNotFound {
                searched: format!("{} is not an executable file", path.display()),
            })
        };
    }
    if let Some(path) = tansu_bin_env.as_ref().map(PathBuf::from) {
        if process::is_executable(&path) {
            return Ok(path);
        }
    }
    if let Some(path) = process::find_on_path("tansu", path_env.as_deref()) {
        return Ok(path);
    }
    let env = match &tansu_bin_env {
        Some(value) => format!("{TANSU_BIN_ENV}={}", Path::new(value).display()),
        None => format!("{TANSU_BIN_ENV} unset"),
    };
    Err(BrokerError::TansuNotFound {
        searched: format!("{env}, and no `tansu` on PATH"),
    })
}

/// Creates `name` with `partitions` partitions (replication factor 1) on the Kafka at
/// `bootstrap` — a [`Broker`] of the harness or any Kafka-compatible cluster, such as the
/// external Kafka of the e2e suites — and returns once metadata shows all of them, within
/// `timeout`. Uses the Kafka CreateTopics API (rdkafka's `AdminClient`), which tansu implements.
pub async fn create_topic(
    bootstrap: &str,
    name: &str,
    partitions: i32,
    timeout: Duration,
) -> Result<(), BrokerError> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    let admin: AdminClient<DefaultClientContext> = config
        .create()
        .map_err(BrokerError::kafka("cannot create an admin client"))?;
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics([&topic], &options)
        .await
        .map_err(BrokerError::kafka(format!("cannot create topic {name:?}")))?;
    for result in results {
        result.map_err(|(topic, code)| BrokerError::CreateTopic { topic, code })?;
    }
    wait_for_topic(config, name, partitions, timeout).await
}

/// Waits until metadata shows `name` with exactly `partitions` partitions.
async fn wait_for_topic(
    config: ClientConfig,
    name: &str,
    partitions: i32,
    timeout: Duration,
) -> Result<(), BrokerError> {
    let topic = name.to_owned();
    let visible = tokio::task::spawn_blocking(move || {
        let Ok(consumer) = config.create::<BaseConsumer>() else {
            return false;
        };
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(metadata) = consumer.fetch_metadata(Some(&topic), PROBE_TIMEOUT) {
                let shown = metadata.topics().iter().find(|t| t.name() == topic);
                if shown.is_some_and(|t| {
                    t.error().is_none() && t.partitions().len() == partitions as usize
                }) {
                    return true;
                }
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        false
    })
    .await
    .unwrap_or(false);
    if visible {
        Ok(())
    } else {
        Err(BrokerError::TopicNotVisible {
            topic: name.to_owned(),
            partitions,
            timeout,
        })
    }
}

/// A fresh topic or group name for one test: `prefix` plus a suffix unique on this machine
/// (process id, counter, clock). `prefix` should use only `[a-zA-Z0-9._-]`, as Kafka names must.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", process::unique_suffix())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tansu_error_says_to_run_the_install_step() {
        let error = resolve_tansu(
            None,
            Some("/nonexistent/tansu".into()),
            Some("/nonexistent".into()),
        )
        .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("scripts/test.sh --only install"),
            "{message}"
        );
        assert!(
            message.contains("TANSU_BIN=/nonexistent/tansu"),
            "{message}"
        );
    }

    #[test]
    fn tansu_bin_env_wins_over_path() {
        let dir = tempfile::tempdir().unwrap();
        let on_path = dir.path().join("tansu");
        std::fs::copy("/bin/true", &on_path).unwrap();
        let found = resolve_tansu(None, Some("/bin/true".into()), Some(dir.path().into())).unwrap();
        assert_eq!(found, Path::new("/bin/true"));
        let found = resolve_tansu(None, None, Some(dir.path().into())).unwrap();
        assert_eq!(found, on_path);
    }

    #[test]
    fn unique_names_keep_the_prefix_and_differ() {
        let a = unique_name("logs");
        let b = unique_name("logs");
        assert!(a.starts_with("logs-"));
        assert_ne!(a, b);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)));
    }

    #[test]
    fn the_broker_and_its_futures_can_move_between_threads() {
        fn assert_send<T: Send>(_: T) {}
        fn assert_send_sync<T: Send + Sync>() {}
        fn futures(broker: &mut Broker) {
            assert_send(broker.create_topic("t", 1));
            assert_send(broker.restart());
        }
        assert_send_sync::<Broker>();
        let _ = futures as fn(&mut Broker);
    }

    #[test]
    fn a_durable_folder_keeps_its_cluster_id() {
        let dir = tempfile::tempdir().unwrap();
        let first = durable_cluster_id(dir.path()).unwrap();
        assert!(first.starts_with(MARKER));
        assert_eq!(durable_cluster_id(dir.path()).unwrap(), first);
    }
}
