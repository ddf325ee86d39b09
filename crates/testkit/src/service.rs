//! A service of the pipeline (`producer`, `consumer`) as a child process under test: started
//! with exactly the environment the test gives (nothing is inherited, so a developer's `KAFKA_*`
//! or `LOKI_*` cannot leak in) and its admin server (`HTTP_LISTEN`) on a free loopback port,
//! then killed (SIGKILL) or stopped (SIGTERM, then SIGKILL after a grace period) on demand,
//! restarted with the same command line, and always killed when dropped, also when the test
//! panics; the end of its log is then printed beside the failure.
//!
//! Its `argv[0]` is `logpipe-test-<name>` ([`MARKER`]), so `pgrep -af logpipe-test-` (what
//! `scripts/test.sh` checks after the suites) finds a process that outlived its test.

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

pub use crate::process::MARKER;
use crate::process::{free_loopback_port, ChildProcess, ServiceLog};

/// How long a started service may take to answer `GET /healthz` unless its spec says otherwise.
pub const HEALTHY_TIMEOUT: Duration = Duration::from_secs(60);

/// How many fresh admin ports a start tries when another process took the one picked.
const PORT_ATTEMPTS: usize = 3;

/// How often an HTTP condition (`GET /healthz` answering 200) is polled.
const HTTP_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// How long one HTTP request to a service may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// How many log lines an error about a service carries.
const ERROR_TAIL_LINES: usize = 60;

/// What went wrong with a service process.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A file, socket or process operation failed.
    #[error("{action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An HTTP request to the service failed.
    #[error("{action}: {source}")]
    Http {
        /// What was being done.
        action: String,
        /// The client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The service exited while it was expected to run.
    #[error("{name} exited ({status}); last log lines:\n{log_tail}")]
    Exited {
        /// The service.
        name: String,
        /// Its exit status.
        status: String,
        /// The end of its log.
        log_tail: String,
    },
    /// The service did not answer `GET path` with the awaited status in time.
    #[error(
        "{name} did not answer GET {path} with {want} within {within:?} (last: {last}); last log \
         lines:\n{log_tail}"
    )]
    NotReady {
        /// The service.
        name: String,
        /// The path polled.
        path: String,
        /// The status awaited.
        want: u16,
        /// How long it was given.
        within: Duration,
        /// The last answer (status and body) or request error.
        last: String,
        /// The end of its log.
        log_tail: String,
    },
    /// A process did not exit in time.
    #[error("{name} did not exit within {within:?}")]
    StillRunning {
        /// The process.
        name: String,
        /// How long it was given.
        within: Duration,
    },
    /// A restart was asked of a service that still runs.
    #[error("{name} is still running; stop it before restarting it")]
    Running {
        /// The service.
        name: String,
    },
}

impl ServiceError {
    fn io(action: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let action = action.into();
        move |source| Self::Io { action, source }
    }

    fn http(action: impl Into<String>) -> impl FnOnce(reqwest::Error) -> Self {
        let action = action.into();
        move |source| Self::Http { action, source }
    }
}

/// What a started process must do before [`ServiceProcess::start`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Answer `GET /healthz` with 200 on its admin port (within [`ServiceSpec::ready_within`]).
    Healthz,
    /// Nothing: return once spawned (a `--once` producer may finish before it serves, a service
    /// expected to fail may never serve).
    Spawned,
}

/// How to start a service process.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// A short name, unique in the test: messages, the log file name, the `argv[0]` suffix.
    pub name: String,
    /// The binary.
    pub bin: PathBuf,
    /// Its arguments, e.g. `["run", "--input", "x.ndjson", "--once"]`.
    pub args: Vec<String>,
    /// The whole environment of the child; `HTTP_LISTEN` (the admin address picked) and
    /// `RUST_BACKTRACE=1` are added.
    pub env: Vec<(String, String)>,
    /// The folder `<name>.log` (stdout and stderr, all runs) is written to.
    pub log_dir: PathBuf,
    /// What a start waits for. [`ServiceSpec::run`]: [`Readiness::Healthz`].
    pub readiness: Readiness,
    /// How long [`Readiness::Healthz`] may take. [`ServiceSpec::run`]: [`HEALTHY_TIMEOUT`].
    pub ready_within: Duration,
}

impl ServiceSpec {
    /// `bin run` named `name`, with exactly `env`, logging into `log_dir`, ready once it answers
    /// `GET /healthz` within [`HEALTHY_TIMEOUT`].
    pub fn run(
        name: &str,
        bin: impl Into<PathBuf>,
        env: Vec<(String, String)>,
        log_dir: &Path,
    ) -> Self {
        Self {
            name: name.to_owned(),
            bin: bin.into(),
            args: vec!["run".to_owned()],
            env,
            log_dir: log_dir.to_owned(),
            readiness: Readiness::Healthz,
            ready_within: HEALTHY_TIMEOUT,
        }
    }
}

/// A running (or exited) service process; killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct ServiceProcess {
    spec: ServiceSpec,
    log: ServiceLog,
    admin: SocketAddr,
    child: ChildProcess,
    /// The log's length when the current run started: what the run wrote comes after it.
    run_start: u64,
    http: reqwest::Client,
}

impl ServiceProcess {
    /// Starts `spec` on a free loopback port, with its output appended to
    /// `<log_dir>/<name>.log`, and waits for its readiness. A start that lost its port to
    /// another process is retried on another one.
    pub async fn start(spec: ServiceSpec) -> Result<Self, ServiceError> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(ServiceError::http("cannot build an HTTP client"))?;
        let log = ServiceLog::new(spec.log_dir.join(format!("{}.log", spec.name)));
        let admin = fresh_admin_addr()?;
        let (child, run_start) = spawn(&spec, &log, admin)?;
        let mut process = Self {
            spec,
            log,
            admin,
            child,
            run_start,
            http,
        };
        process.wait_ready().await?;
        Ok(process)
    }

    /// Starts the same command line again, on the same admin port (so a Prometheus scraping it
    /// keeps its target) unless another process took it meanwhile. The previous run must have
    /// exited (see [`kill9`](Self::kill9) and [`terminate`](Self::terminate)).
    pub async fn restart(&mut self) -> Result<(), ServiceError> {
        if self.is_running() {
            return Err(ServiceError::Running {
                name: self.spec.name.clone(),
            });
        }
        self.note("restarting");
        self.respawn()?;
        self.wait_ready().await
    }

    /// Spawns the spec again on the current admin address; the previous run has exited.
    fn respawn(&mut self) -> Result<(), ServiceError> {
        let (child, run_start) = spawn(&self.spec, &self.log, self.admin)?;
        self.child = child;
        self.run_start = run_start;
        Ok(())
    }

    /// Waits for the spec's readiness, moving to a fresh port when the run lost its port.
    async fn wait_ready(&mut self) -> Result<(), ServiceError> {
        if self.spec.readiness == Readiness::Spawned {
            return Ok(());
        }
        let mut attempt = 1;
        loop {
            match self
                .wait_for_status("/healthz", 200, self.spec.ready_within)
                .await
            {
                Ok(_) => return Ok(()),
                Err(ServiceError::Exited { .. })
                    if attempt < PORT_ATTEMPTS && self.run_lost_its_port() =>
                {
                    attempt += 1;
                    let taken = self.admin;
                    self.admin = fresh_admin_addr()?;
                    self.note(&format!("{taken} was taken; trying {}", self.admin));
                    self.respawn()?;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Whether the current run failed to bind its admin port.
    fn run_lost_its_port(&self) -> bool {
        let text = self.log.read_from(self.run_start);
        text.contains("Address already in use") || text.contains("cannot listen")
    }

    /// The name given in the spec.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The admin server's address (`/metrics`, `/healthz`, `/readyz`, and the producer's
    /// `POST /v1/logs`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// The admin server's loopback port.
    pub fn port(&self) -> u16 {
        self.admin.port()
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// The process id of the current (or last) run.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status once the current run exited (and reaps it), without waiting.
    pub fn exit_status(&mut self) -> Result<Option<ExitStatus>, ServiceError> {
        self.child
            .try_wait()
            .map_err(ServiceError::io(format!("cannot check {}", self.spec.name)))
    }

    /// Whether the current run is still going.
    pub fn is_running(&mut self) -> bool {
        matches!(self.exit_status(), Ok(None))
    }

    /// `GET path`: the status and the body.
    pub async fn get(&self, path: &str) -> Result<(u16, String), ServiceError> {
        let name = &self.spec.name;
        let response = self
            .http
            .get(self.url(path))
            .send()
            .await
            .map_err(ServiceError::http(format!("GET {path} of {name}")))?;
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .map_err(ServiceError::http(format!("body of GET {path} of {name}")))?;
        Ok((status, body))
    }

    /// Polls `GET path` until it answers `want` and returns the body; fails when the process
    /// exits first, or after `within` with the last answer.
    pub async fn wait_for_status(
        &mut self,
        path: &str,
        want: u16,
        within: Duration,
    ) -> Result<String, ServiceError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(status) = self.exit_status()? {
                return Err(self.exited(status));
            }
            let last = match self.get(path).await {
                Ok((status, body)) if status == want => return Ok(body),
                Ok((status, body)) => format!("{status} {body}"),
                Err(error) => error.to_string(),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(ServiceError::NotReady {
                    name: self.spec.name.clone(),
                    path: path.to_owned(),
                    want,
                    within,
                    last,
                    log_tail: self.log_tail(ERROR_TAIL_LINES),
                });
            }
            tokio::time::sleep(HTTP_POLL_INTERVAL).await;
        }
    }

    fn exited(&self, status: ExitStatus) -> ServiceError {
        ServiceError::Exited {
            name: self.spec.name.clone(),
            status: status.to_string(),
            log_tail: self.log_tail(ERROR_TAIL_LINES),
        }
    }

    /// SIGKILL, as a crash or an OOM kill would: no flush, no final commit, no checkpoint.
    /// Returns once the process is reaped (at once when it had exited).
    pub fn kill9(&mut self) -> Result<ExitStatus, ServiceError> {
        let status = self
            .child
            .kill_and_reap()
            .map_err(ServiceError::io(format!("cannot kill {}", self.spec.name)))?;
        self.note(&format!("killed with SIGKILL: {status}"));
        Ok(status)
    }

    /// SIGTERM, then waits up to `grace` for the exit and returns its status (at once when it
    /// had exited); when it did not exit in time it is killed and this fails.
    pub async fn terminate(&mut self, grace: Duration) -> Result<ExitStatus, ServiceError> {
        if let Some(status) = self.exit_status()? {
            return Ok(status);
        }
        if let Err(error) = self.child.sigterm() {
            return match self.exit_status()? {
                Some(status) => Ok(status),
                None => Err(ServiceError::io(format!(
                    "cannot send SIGTERM to {}",
                    self.spec.name
                ))(error)),
            };
        }
        let status = self.wait_exit(grace).await;
        if status.is_err() {
            // Nothing more to report than the timeout: the process is gone either way.
            let _ = self.kill9();
        }
        status
    }

    /// Waits up to `within` for the process to exit by itself (it is left running after that).
    pub async fn wait_exit(&mut self, within: Duration) -> Result<ExitStatus, ServiceError> {
        let name = &self.spec.name;
        match self
            .child
            .wait_exit(within)
            .await
            .map_err(ServiceError::io(format!("cannot check {name}")))?
        {
            Some(status) => {
                self.note(&format!("exited: {status}"));
                Ok(status)
            }
            None => Err(ServiceError::StillRunning {
                name: name.clone(),
                within,
            }),
        }
    }

    /// The `/metrics` text.
    pub async fn metrics_text(&self) -> Result<String, ServiceError> {
        Ok(self.get("/metrics").await?.1)
    }

    /// The sum of every series of metric `name` on `/metrics` (0 when it has none).
    pub async fn metric(&self, name: &str) -> Result<f64, ServiceError> {
        Ok(series(&self.metrics_text().await?, name).values().sum())
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.log.tail(lines)
    }

    /// The whole log (empty when unreadable).
    pub fn log_text(&self) -> String {
        self.log.read_from(0)
    }

    /// Appends a line of the harness' own to the log, so it reads as a story.
    fn note(&self, line: &str) {
        // The log is for humans: a failed write only loses the note.
        let _ = self.log.note(line);
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        // Nothing useful to do with an error in drop; ChildProcess's own drop tries again.
        let _ = self.child.kill_and_reap();
        self.log.print_tail_if_panicking(&self.spec.name);
    }
}

/// A loopback address on a port that was free a moment ago.
fn fresh_admin_addr() -> Result<SocketAddr, ServiceError> {
    let port = free_loopback_port().map_err(ServiceError::io("cannot pick a loopback port"))?;
    Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

/// Spawns `spec` with its admin server on `admin`; returns the child and the log's length
/// before the run.
fn spawn(
    spec: &ServiceSpec,
    log: &ServiceLog,
    admin: SocketAddr,
) -> Result<(ChildProcess, u64), ServiceError> {
    // The log is for humans: a failed note only loses the note.
    let _ = log.note(&format!(
        "starting {} {} (admin {admin})",
        spec.bin.display(),
        spec.args.join(" ")
    ));
    let run_start = log.len();
    let mut command = Command::new(&spec.bin);
    command
        .arg0(format!("{MARKER}{}", spec.name))
        .args(&spec.args)
        .env_clear()
        .envs(run_marker())
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("HTTP_LISTEN", admin.to_string())
        .env("RUST_BACKTRACE", "1");
    let child = ChildProcess::spawn(&mut command, log).map_err(ServiceError::io(format!(
        "cannot start {}",
        spec.bin.display()
    )))?;
    Ok((child, run_start))
}

/// The test run's id (`LOGPIPE_TEST_RUN`, set by `scripts/test.sh`), kept in the environment
/// of processes started with a cleared one, so that run's cleanup finds them (and only them).
fn run_marker() -> Option<(&'static str, String)> {
    std::env::var(RUN_ENV).ok().map(|v| (RUN_ENV, v))
}

/// The environment variable naming the test run a process belongs to.
const RUN_ENV: &str = "LOGPIPE_TEST_RUN";

/// How a process that ran to its end finished.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// What it wrote to stdout.
    pub stdout: String,
    /// What it wrote to stderr.
    pub stderr: String,
}

/// Runs `bin args` with exactly `env` until it exits, capturing stdout and stderr; killed and
/// failing after `within`.
pub async fn run_to_exit(
    bin: &Path,
    args: &[&str],
    env: &[(String, String)],
    within: Duration,
) -> Result<Finished, ServiceError> {
    let mut command = tokio::process::Command::new(bin);
    command
        .args(args)
        .env_clear()
        .envs(run_marker())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(within, command.output())
        .await
        .map_err(|_| ServiceError::StillRunning {
            name: bin.display().to_string(),
            within,
        })?
        .map_err(ServiceError::io(format!("cannot run {}", bin.display())))?;
    Ok(Finished {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// The series of metric `name` in a Prometheus text exposition: label part (as written,
/// without braces) → value. Comment lines and other metrics are skipped.
pub fn series(text: &str, name: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, labels) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            (metric == name).then(|| (labels.to_owned(), value.parse().unwrap_or(f64::NAN)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_series_of_one_metric() {
        let text = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 2\n\
                    a_total{x=\"2\"} 3.5\nab_total 7\na_total_other 9\n";
        let got = series(text, "a_total");
        assert_eq!(got.len(), 2);
        assert_eq!(got["x=\"1\""], 2.0);
        assert_eq!(got.values().sum::<f64>(), 5.5);
        assert_eq!(series(text, "ab_total")[""], 7.0);
        assert!(series(text, "absent").is_empty());
    }

    /// A spec running `sh -c script` (no `run` argument) in `dir`.
    fn shell(name: &str, script: &str, dir: &Path) -> ServiceSpec {
        let mut spec = ServiceSpec::run(name, "/bin/sh", Vec::new(), dir);
        spec.args = vec!["-c".to_owned(), script.to_owned()];
        spec.readiness = Readiness::Spawned;
        spec
    }

    #[tokio::test]
    async fn a_spawned_process_carries_the_marker_and_only_the_given_environment() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = shell("env", "echo \"argv0=$0\"; /usr/bin/env; exit 3", dir.path());
        spec.env = vec![("ONLY_THIS".to_owned(), "1".to_owned())];
        let mut process = ServiceProcess::start(spec).await.unwrap();
        let status = process.wait_exit(Duration::from_secs(10)).await.unwrap();
        assert_eq!(status.code(), Some(3));
        let log = process.log_text();
        assert!(log.contains(&format!("argv0={MARKER}env")), "{log}");
        assert!(log.contains("ONLY_THIS=1"), "{log}");
        assert!(
            log.contains(&format!("HTTP_LISTEN={}", process.admin_addr())),
            "{log}"
        );
        assert!(!log.contains("CARGO_"), "the environment leaked in: {log}");
    }

    #[tokio::test]
    async fn terminate_stops_a_process_and_restart_runs_it_again_on_the_same_port() {
        let dir = tempfile::tempdir().unwrap();
        let spec = shell("sleeper", "echo started; exec /bin/sleep 30", dir.path());
        let mut process = ServiceProcess::start(spec).await.unwrap();
        let port = process.port();
        assert!(process.is_running());
        assert!(matches!(
            process.restart().await,
            Err(ServiceError::Running { .. })
        ));
        let runs = |log: &str| log.lines().filter(|l| *l == "started").count();
        // The first run must have written its line before it is stopped, or a SIGTERM that
        // lands before the shell's `echo` leaves one line for two runs.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while runs(&process.log_text()) < 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(runs(&process.log_text()), 1, "{}", process.log_text());
        let pid = process.pid();
        let status = process.terminate(Duration::from_secs(10)).await.unwrap();
        assert!(!status.success());
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
        process.restart().await.unwrap();
        assert!(process.is_running());
        assert_eq!(process.port(), port);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while runs(&process.log_text()) < 2 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let log = process.log_text();
        assert_eq!(runs(&log), 2, "both runs wrote to the same log: {log}");
        process.kill9().unwrap();
        assert!(!process.is_running());
    }

    #[tokio::test]
    async fn a_start_fails_with_the_log_tail_when_the_service_exits_before_serving() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = shell("broken", "echo 'bad setting FOO'; exit 2", dir.path());
        spec.readiness = Readiness::Healthz;
        let error = ServiceProcess::start(spec).await.unwrap_err();
        assert!(matches!(error, ServiceError::Exited { .. }), "{error}");
        assert!(error.to_string().contains("bad setting FOO"), "{error}");
    }

    #[tokio::test]
    async fn wait_exit_fails_on_a_process_that_keeps_running() {
        let dir = tempfile::tempdir().unwrap();
        let spec = shell("stubborn", "exec /bin/sleep 30", dir.path());
        let mut process = ServiceProcess::start(spec).await.unwrap();
        let error = process
            .wait_exit(Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(
            matches!(error, ServiceError::StillRunning { .. }),
            "{error}"
        );
        assert!(process.is_running());
    }

    #[tokio::test]
    async fn run_to_exit_captures_stdout_and_stderr() {
        let env = vec![("V".to_owned(), "x".to_owned())];
        let finished = run_to_exit(
            Path::new("/bin/sh"),
            &["-c", "echo out $V; echo err >&2; exit 4"],
            &env,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(finished.status.code(), Some(4));
        assert_eq!(finished.stdout, "out x\n");
        assert_eq!(finished.stderr, "err\n");
    }
}
