//! A real Prometheus server for metrics tests: a `prometheus` process (Debian's 2.42) on a free
//! loopback port, scraping the targets a test names, queried through the HTTP API
//! (<https://prometheus.io/docs/prometheus/2.42/querying/api/>).
//!
//! [`Prometheus`] writes its `prometheus.yml` and keeps its TSDB in a temp dir, is ready when
//! started (`/-/ready`), and is killed when dropped, also when the test panics; then the last
//! lines of its log are printed beside the failure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::process::{self, ChildProcess, ServiceLog, MARKER, POLL_INTERVAL};

/// How many fresh ports [`Prometheus::start`] tries when another process takes the one it
/// picked.
const PORT_ATTEMPTS: usize = 5;

/// Timeout of one HTTP request to the API.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of starting and querying a test Prometheus.
#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    /// No `prometheus` binary.
    #[error("prometheus binary not found ({searched}): run `scripts/test.sh --only install`")]
    NotFound {
        /// Where it was looked for.
        searched: String,
    },
    /// The options cannot make a valid configuration.
    #[error("invalid prometheus options: {0}")]
    InvalidOptions(String),
    /// A file or process operation failed.
    #[error("{action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Prometheus exited while it was expected to run.
    #[error("prometheus exited ({status}); last log lines:\n{log_tail}")]
    Exited {
        /// Its exit status.
        status: String,
        /// The end of its log.
        log_tail: String,
    },
    /// Prometheus did not report ready in time.
    #[error("prometheus not ready within {timeout:?}; last log lines:\n{log_tail}")]
    NotReady {
        /// How long it was given.
        timeout: Duration,
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
    /// An HTTP request to the API failed.
    #[error("prometheus api request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The API answered with an error.
    #[error("prometheus rejected {query:?}: {error_type}: {error}")]
    Api {
        /// The query.
        query: String,
        /// Prometheus' error class (`bad_data`, `execution`, …).
        error_type: String,
        /// Its message.
        error: String,
    },
    /// The API answered something this client does not understand.
    #[error("unexpected prometheus response to {query:?}: {reason}")]
    UnexpectedResponse {
        /// The query.
        query: String,
        /// What was wrong.
        reason: String,
    },
    /// A query that should give at most one sample gave several.
    #[error("{query:?} returned {count} samples, expected at most one")]
    NotScalar {
        /// The query.
        query: String,
        /// How many samples it returned.
        count: usize,
    },
    /// A wait ran out of time.
    #[error("timed out after {timeout:?} waiting for {what}; last seen: {last}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        timeout: Duration,
        /// The last state observed (query result, scrape error).
        last: String,
    },
}

impl PrometheusError {
    fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let action = action.into();
        move |source| Self::Io { action, source }
    }
}

/// One endpoint to scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeTarget {
    /// The `job` label; targets sharing it form one scrape config.
    pub job: String,
    /// `host:port`.
    pub addr: String,
    /// The HTTP path of the metrics. Default: `/metrics`.
    pub metrics_path: String,
}

impl ScrapeTarget {
    /// Scrapes `http://{addr}/metrics` as job `job`.
    pub fn new(job: impl Into<String>, addr: impl ToString) -> Self {
        Self {
            job: job.into(),
            addr: addr.to_string(),
            metrics_path: "/metrics".into(),
        }
    }

    /// The same target at another metrics path.
    pub fn with_metrics_path(mut self, path: impl Into<String>) -> Self {
        self.metrics_path = path.into();
        self
    }
}

/// How to start a [`Prometheus`].
#[derive(Debug, Clone)]
pub struct PrometheusOptions {
    /// What to scrape. Default: nothing.
    pub targets: Vec<ScrapeTarget>,
    /// Scrape and rule evaluation interval (also the scrape timeout). Default: 1 s.
    pub scrape_interval: Duration,
    /// Rule files to load (recording and alerting rules). Default: none.
    pub rule_files: Vec<PathBuf>,
    /// The binary. Default: `None`, meaning `prometheus` on `PATH`.
    pub prometheus_bin: Option<PathBuf>,
    /// How long start-up may take until `/-/ready` answers 200. Default: 30 s.
    pub ready_timeout: Duration,
}

impl Default for PrometheusOptions {
    fn default() -> Self {
        Self {
            targets: Vec::new(),
            scrape_interval: Duration::from_secs(1),
            rule_files: Vec::new(),
            prometheus_bin: None,
            ready_timeout: Duration::from_secs(30),
        }
    }
}

/// One sample of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series' labels, `__name__` included when the query keeps it.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

/// A running Prometheus on `127.0.0.1:<port>`, killed when dropped.
///
/// Its command line carries the `logpipe-test-prometheus-…` temp dir, so
/// `pgrep -af logpipe-test-` finds leftovers.
#[derive(Debug)]
pub struct Prometheus {
    port: u16,
    pid: u32,
    http: reqwest::Client,
    log: ServiceLog,
    child: Option<ChildProcess>,
    dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` every `scrape_interval` and returns once ready.
    pub async fn start(
        targets: &[ScrapeTarget],
        scrape_interval: Duration,
    ) -> Result<Self, PrometheusError> {
        Self::start_with(PrometheusOptions {
            targets: targets.to_vec(),
            scrape_interval,
            ..PrometheusOptions::default()
        })
        .await
    }

    /// Starts Prometheus with all options and returns once ready.
    pub async fn start_with(options: PrometheusOptions) -> Result<Self, PrometheusError> {
        let bin = match &options.prometheus_bin {
            Some(path) if process::is_executable(path) => path.clone(),
            Some(path) => {
                return Err(PrometheusError::NotFound {
                    searched: format!("{} is not an executable file", path.display()),
                })
            }
            None => process::find_on_path("prometheus", std::env::var_os("PATH").as_deref())
                .ok_or_else(|| PrometheusError::NotFound {
                    searched: "no `prometheus` on PATH".into(),
                })?,
        };
        let config = render_config(&options)?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        let mut last_tail = String::new();
        for _ in 0..PORT_ATTEMPTS {
            // A fresh dir per attempt: a failed attempt's dir goes with its process.
            let dir = tempfile::Builder::new()
                .prefix(&format!("{MARKER}prometheus-"))
                .tempdir()
                .map_err(PrometheusError::io("cannot create the prometheus temp dir"))?;
            let config_path = dir.path().join("prometheus.yml");
            std::fs::write(&config_path, &config)
                .map_err(PrometheusError::io("cannot write prometheus.yml"))?;
            let log = ServiceLog::new(dir.path().join("prometheus.log"));
            let port = process::free_loopback_port()
                .map_err(PrometheusError::io("cannot pick a free loopback port"))?;
            let mut command = Command::new(&bin);
            command
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .current_dir(dir.path());
            let _ = log.note(&format!("starting: {command:?}"));
            let child = ChildProcess::spawn(&mut command, &log).map_err(PrometheusError::io(
                format!("cannot start {}", bin.display()),
            ))?;
            let mut prometheus = Self {
                port,
                pid: child.id(),
                http: http.clone(),
                log,
                child: Some(child),
                dir,
            };
            match prometheus.wait_ready(options.ready_timeout).await {
                Ok(()) => return Ok(prometheus),
                // Another process took the port between our probe and Prometheus' bind.
                Err(PrometheusError::Exited { log_tail, .. })
                    if log_tail.contains("address already in use") =>
                {
                    // A start-up retry of the harness, not of a test: said on stderr, which
                    // nextest shows with the test's output.
                    eprintln!("testkit: prometheus lost port {port} to another process; starting again on a fresh port");
                    last_tail = log_tail;
                }
                Err(error) => return Err(error),
            }
        }
        Err(PrometheusError::NoFreePort {
            attempts: PORT_ATTEMPTS,
            log_tail: last_tail,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The temp dir holding `prometheus.yml`, the TSDB and the log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The file holding Prometheus' output.
    pub fn log_path(&self) -> &Path {
        self.log.path()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.log.tail(lines)
    }

    /// Waits until every target of `job` has been scraped successfully (`up{job=…}` is 1).
    ///
    /// Allow at least 10 s: Prometheus 2.42 hands targets to its scrape manager on a fixed 5 s
    /// tick, so the first scrape comes about 5 s after start whatever the scrape interval. On
    /// timeout the error carries each target's last scrape error.
    pub async fn wait_scraped(&self, job: &str, timeout: Duration) -> Result<(), PrometheusError> {
        let query = format!("up{{job={}}}", promql_string(job));
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let up = self.query_vector(&query).await?;
            if !up.is_empty() && up.iter().all(|sample| sample.value == 1.0) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(PrometheusError::Timeout {
                    what: format!("a successful scrape of job {job:?}"),
                    timeout,
                    last: self.scrape_errors(job).await,
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Runs an instant query (`/api/v1/query`) and returns the response's `data` object
    /// (`{"resultType": …, "result": …}`).
    pub async fn query(&self, promql: &str) -> Result<Value, PrometheusError> {
        let response: Value = self
            .http
            .get(format!("{}/api/v1/query", self.url()))
            .query(&[("query", promql)])
            .send()
            .await?
            .json()
            .await?;
        let field = |name: &str| response.get(name).and_then(Value::as_str).unwrap_or("");
        match field("status") {
            "success" => {
                response
                    .get("data")
                    .cloned()
                    .ok_or_else(|| PrometheusError::UnexpectedResponse {
                        query: promql.into(),
                        reason: "no data".into(),
                    })
            }
            _ => Err(PrometheusError::Api {
                query: promql.into(),
                error_type: field("errorType").into(),
                error: field("error").into(),
            }),
        }
    }

    /// Runs an instant query and returns its samples; a scalar result becomes one sample
    /// without labels.
    pub async fn query_vector(&self, promql: &str) -> Result<Vec<Sample>, PrometheusError> {
        let data = self.query(promql).await?;
        parse_samples(&data).map_err(|reason| PrometheusError::UnexpectedResponse {
            query: promql.into(),
            reason,
        })
    }

    /// Runs an instant query expected to give at most one sample: its value, `None` when the
    /// result is empty (the series does not exist, yet).
    pub async fn query_scalar(&self, promql: &str) -> Result<Option<f64>, PrometheusError> {
        let samples = self.query_vector(promql).await?;
        match samples.as_slice() {
            [] => Ok(None),
            [sample] => Ok(Some(sample.value)),
            _ => Err(PrometheusError::NotScalar {
                query: promql.into(),
                count: samples.len(),
            }),
        }
    }

    /// Polls `promql` (as [`query_scalar`](Self::query_scalar)) until its value satisfies
    /// `accept`, and returns that value.
    pub async fn wait_until(
        &self,
        promql: &str,
        timeout: Duration,
        accept: impl Fn(f64) -> bool,
    ) -> Result<f64, PrometheusError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let value = self.query_scalar(promql).await?;
            if let Some(value) = value.filter(|value| accept(*value)) {
                return Ok(value);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(PrometheusError::Timeout {
                    what: format!("{promql:?} to reach the expected value"),
                    timeout,
                    last: format!("{value:?}"),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The targets' last scrape errors of `job`, for timeout messages.
    async fn scrape_errors(&self, job: &str) -> String {
        let targets: Result<Value, reqwest::Error> = async {
            self.http
                .get(format!("{}/api/v1/targets", self.url()))
                .send()
                .await?
                .json()
                .await
        }
        .await;
        let Ok(targets) = targets else {
            return "targets unavailable".into();
        };
        let active = targets
            .pointer("/data/activeTargets")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let errors: Vec<String> = active
            .iter()
            .filter(|target| target.pointer("/labels/job").and_then(Value::as_str) == Some(job))
            .map(|target| {
                let text = |pointer: &str| target.pointer(pointer).and_then(Value::as_str);
                format!(
                    "{} health={} error={:?}",
                    text("/scrapeUrl").unwrap_or("?"),
                    text("/health").unwrap_or("?"),
                    text("/lastError").unwrap_or("")
                )
            })
            .collect();
        if errors.is_empty() {
            format!("no target with job {job:?} yet (targets appear about 5 s after start)")
        } else {
            errors.join("; ")
        }
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), PrometheusError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let ready_url = format!("{}/-/ready", self.url());
        loop {
            self.fail_if_exited()?;
            let ready = self.http.get(&ready_url).send().await;
            if ready.is_ok_and(|response| response.status().is_success()) {
                // It may have lost a bind race while another server answered.
                return self.fail_if_exited();
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(PrometheusError::NotReady {
                    timeout,
                    log_tail: self.log.tail(20),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    fn fail_if_exited(&mut self) -> Result<(), PrometheusError> {
        let exited = match self.child.as_mut().map(ChildProcess::try_wait) {
            None => Some("not running".to_owned()),
            Some(Ok(None)) => None,
            Some(Ok(Some(status))) => Some(status.to_string()),
            Some(Err(source)) => {
                return Err(PrometheusError::Io {
                    action: "cannot check whether prometheus runs".into(),
                    source,
                })
            }
        };
        match exited {
            None => Ok(()),
            Some(status) => {
                self.child = None;
                Err(PrometheusError::Exited {
                    status,
                    log_tail: self.log.tail(20),
                })
            }
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // Kill first, so the log printed below is complete.
        drop(self.child.take());
        self.log.print_tail_if_panicking("prometheus");
    }
}

/// The generated `prometheus.yml`. Strings are written as JSON strings, which YAML reads as
/// double-quoted scalars.
fn render_config(options: &PrometheusOptions) -> Result<String, PrometheusError> {
    let interval = options.scrape_interval.as_millis();
    if interval == 0 {
        return Err(PrometheusError::InvalidOptions(
            "scrape_interval must be at least 1 ms".into(),
        ));
    }
    let quote = |text: &str| Value::from(text).to_string();
    let mut yaml = format!(
        "global:\n  scrape_interval: {interval}ms\n  scrape_timeout: {interval}ms\n  \
         evaluation_interval: {interval}ms\n"
    );
    if !options.rule_files.is_empty() {
        yaml.push_str("rule_files:\n");
        for file in &options.rule_files {
            let file = std::path::absolute(file).map_err(PrometheusError::io(format!(
                "cannot resolve rule file {}",
                file.display()
            )))?;
            if !file.is_file() {
                return Err(PrometheusError::InvalidOptions(format!(
                    "rule file {} does not exist",
                    file.display()
                )));
            }
            yaml.push_str(&format!("  - {}\n", quote(&file.to_string_lossy())));
        }
    }
    // One scrape config per job, in the order jobs first appear.
    let mut jobs: Vec<(&str, &str, Vec<&str>)> = Vec::new();
    for target in &options.targets {
        match jobs.iter_mut().find(|(job, _, _)| *job == target.job) {
            Some((_, path, addrs)) if *path == target.metrics_path => addrs.push(&target.addr),
            Some(_) => {
                return Err(PrometheusError::InvalidOptions(format!(
                    "job {:?} has targets with different metrics paths",
                    target.job
                )))
            }
            None => jobs.push((&target.job, &target.metrics_path, vec![&target.addr])),
        }
    }
    yaml.push_str("scrape_configs:");
    if jobs.is_empty() {
        yaml.push_str(" []\n");
    } else {
        yaml.push('\n');
    }
    for (job, path, addrs) in jobs {
        let addrs: Vec<String> = addrs.into_iter().map(quote).collect();
        yaml.push_str(&format!(
            "  - job_name: {}\n    metrics_path: {}\n    static_configs:\n      - targets: [{}]\n",
            quote(job),
            quote(path),
            addrs.join(", ")
        ));
    }
    Ok(yaml)
}

/// `text` as a PromQL string literal (double-quoted, Go escapes, which JSON's are a subset of).
fn promql_string(text: &str) -> String {
    Value::from(text).to_string()
}

/// The samples of a query's `data` object (vector or scalar result).
fn parse_samples(data: &Value) -> Result<Vec<Sample>, String> {
    let result = data.get("result").ok_or("no result")?;
    match data.get("resultType").and_then(Value::as_str) {
        Some("vector") => result
            .as_array()
            .ok_or("vector result is not an array")?
            .iter()
            .map(|item| {
                let labels = item
                    .get("metric")
                    .and_then(Value::as_object)
                    .ok_or("sample without metric")?
                    .iter()
                    .map(|(name, value)| {
                        (name.clone(), value.as_str().unwrap_or_default().to_owned())
                    })
                    .collect();
                let value = parse_value(item.get("value").ok_or("sample without value")?)?;
                Ok(Sample { labels, value })
            })
            .collect(),
        Some("scalar") => Ok(vec![Sample {
            labels: BTreeMap::new(),
            value: parse_value(result)?,
        }]),
        other => Err(format!("unsupported result type {other:?}")),
    }
}

/// A `[timestamp, "value"]` pair's value (`"NaN"`, `"+Inf"` included).
fn parse_value(pair: &Value) -> Result<f64, String> {
    let text = pair
        .get(1)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("malformed sample value {pair}"))?;
    text.parse()
        .map_err(|_| format!("sample value {text:?} is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn config_has_one_scrape_config_per_job() {
        let options = PrometheusOptions {
            targets: vec![
                ScrapeTarget::new("a", "127.0.0.1:1"),
                ScrapeTarget::new("b", "127.0.0.1:2").with_metrics_path("/m"),
                ScrapeTarget::new("a", "127.0.0.1:3"),
            ],
            scrape_interval: Duration::from_millis(500),
            ..PrometheusOptions::default()
        };
        let yaml = render_config(&options).unwrap();
        assert!(yaml.contains("scrape_interval: 500ms"), "{yaml}");
        assert!(yaml.contains("scrape_timeout: 500ms"), "{yaml}");
        assert_eq!(yaml.matches("job_name").count(), 2, "{yaml}");
        assert!(
            yaml.contains(r#"targets: ["127.0.0.1:1", "127.0.0.1:3"]"#),
            "{yaml}"
        );
        assert!(yaml.contains(r#"metrics_path: "/m""#), "{yaml}");
    }

    #[test]
    fn config_rejects_one_job_with_two_metrics_paths() {
        let options = PrometheusOptions {
            targets: vec![
                ScrapeTarget::new("a", "127.0.0.1:1"),
                ScrapeTarget::new("a", "127.0.0.1:2").with_metrics_path("/m"),
            ],
            ..PrometheusOptions::default()
        };
        assert!(matches!(
            render_config(&options),
            Err(PrometheusError::InvalidOptions(_))
        ));
    }

    #[test]
    fn config_rejects_a_missing_rule_file() {
        let options = PrometheusOptions {
            rule_files: vec!["/nonexistent/rules.yml".into()],
            ..PrometheusOptions::default()
        };
        assert!(matches!(
            render_config(&options),
            Err(PrometheusError::InvalidOptions(_))
        ));
    }

    #[test]
    fn parses_vector_and_scalar_results() {
        let vector = json!({"resultType": "vector", "result": [
            {"metric": {"__name__": "x", "job": "j"}, "value": [1.5, "42"]},
            {"metric": {}, "value": [1.5, "+Inf"]},
        ]});
        let samples = parse_samples(&vector).unwrap();
        assert_eq!(samples[0].value, 42.0);
        assert_eq!(samples[0].labels["job"], "j");
        assert_eq!(samples[1].value, f64::INFINITY);
        let scalar = json!({"resultType": "scalar", "result": [1.5, "NaN"]});
        assert!(parse_samples(&scalar).unwrap()[0].value.is_nan());
    }

    #[test]
    fn the_server_handle_and_its_futures_can_move_between_threads() {
        fn assert_send<T: Send>(_: T) {}
        fn assert_send_sync<T: Send + Sync>() {}
        fn futures(prometheus: &Prometheus) {
            assert_send(prometheus.wait_scraped("j", Duration::ZERO));
            assert_send(prometheus.query_scalar("up"));
        }
        assert_send_sync::<Prometheus>();
        let _ = futures as fn(&Prometheus);
    }

    #[test]
    fn promql_strings_are_quoted_and_escaped() {
        assert_eq!(promql_string(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
