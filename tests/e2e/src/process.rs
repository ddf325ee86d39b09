//! A real `producer` or `consumer` process under test: started with a clean environment and an
//! admin server on a free loopback port, killed (SIGKILL) or stopped (SIGTERM) on demand,
//! restarted with the same command line, and always killed when dropped, also when the test
//! panics; then the end of its log is printed beside the failure.
//!
//! Its `argv[0]` is `logpipe-test-<name>`, so `pgrep -af logpipe-test-` (what `scripts/test.sh`
//! checks after the suites, and what it kills on exit) finds a process that outlived its test.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::bins::Binary;
use crate::error::{Error, Result};
use crate::wait;

/// The marker every process started by the suites carries in its command line.
pub const MARKER: &str = "logpipe-test-";

/// How long a started service may take to answer `GET /healthz`.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(60);

/// How many fresh admin ports a start tries when the one picked was taken meanwhile.
const PORT_ATTEMPTS: usize = 3;

/// How many log lines a failing test shows per process.
const PANIC_TAIL_LINES: usize = 80;

/// What a started process must do before [`ServiceProcess::start`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Answer `GET /healthz` with 200 on its admin port.
    Healthz,
    /// Nothing: return once spawned (a `--once` producer may finish before it serves).
    Spawned,
}

/// How to start a service process.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// A short name, unique in the test (log file name, `argv[0]` suffix).
    pub name: String,
    /// Which binary.
    pub binary: Binary,
    /// Arguments, e.g. `["run", "--input", "x.ndjson", "--once"]`.
    pub args: Vec<String>,
    /// The environment, on top of an empty one; `HTTP_LISTEN` is set by the start.
    pub env: Vec<(String, String)>,
    /// What the start waits for.
    pub readiness: Readiness,
}

/// A running (or exited) service process.
#[derive(Debug)]
pub struct ServiceProcess {
    spec: ServiceSpec,
    bin: PathBuf,
    log: PathBuf,
    admin: SocketAddr,
    child: Option<Child>,
    http: reqwest::Client,
}

impl ServiceProcess {
    /// Starts `spec` with its output appended to `<log_dir>/<name>.log`, and waits for its
    /// readiness. A start whose admin port was taken meanwhile is retried on another port.
    pub async fn start(spec: ServiceSpec, log_dir: &Path) -> Result<Self> {
        let bin = spec.binary.path()?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(Error::http("cannot build an HTTP client"))?;
        let log = log_dir.join(format!("{}.log", spec.name));
        let mut process = Self {
            spec,
            bin,
            log,
            admin: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            child: None,
            http,
        };
        process.launch(None).await?;
        Ok(process)
    }

    /// Starts the same command line again, on the same admin port when it is free (so a
    /// Prometheus scraping it keeps its target), else on another one. The previous process must
    /// have exited (see [`kill9`](Self::kill9) and [`terminate`](Self::terminate)).
    pub async fn restart(&mut self) -> Result<()> {
        if self.is_running() {
            return Err(Error::Invalid(format!(
                "{} is still running; stop it before restarting it",
                self.spec.name
            )));
        }
        self.note("restarting");
        self.launch(Some(self.admin.port())).await
    }

    async fn launch(&mut self, preferred_port: Option<u16>) -> Result<()> {
        let mut last_reason = String::new();
        for attempt in 0..PORT_ATTEMPTS {
            let port = match (attempt, preferred_port) {
                (0, Some(port)) => port,
                _ => free_loopback_port()?,
            };
            self.admin = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            self.spawn()?;
            match self.spec.readiness {
                Readiness::Spawned => return Ok(()),
                Readiness::Healthz => match self.wait_healthy().await {
                    Ok(()) => return Ok(()),
                    Err(reason) if !self.is_running() => {
                        // Most likely the port was taken in between: try another.
                        last_reason = reason;
                        continue;
                    }
                    Err(reason) => {
                        return Err(Error::ServiceStart {
                            name: self.spec.name.clone(),
                            reason,
                            log_tail: self.log_tail(40),
                        })
                    }
                },
            }
        }
        Err(Error::ServiceStart {
            name: self.spec.name.clone(),
            reason: format!("exited {PORT_ATTEMPTS} times before serving /healthz: {last_reason}"),
            log_tail: self.log_tail(40),
        })
    }

    fn spawn(&mut self) -> Result<()> {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(Error::io(format!("cannot open {}", self.log.display())))?;
        let err = out
            .try_clone()
            .map_err(Error::io("cannot duplicate a log file handle"))?;
        let mut command = Command::new(&self.bin);
        command
            .arg0(format!("{MARKER}{}", self.spec.name))
            .args(&self.spec.args)
            // Only what the test sets: a developer's KAFKA_* or LOKI_* must not leak in.
            .env_clear()
            .envs(self.spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("HTTP_LISTEN", self.admin.to_string())
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        self.note(&format!(
            "starting {} {} (admin {})",
            self.bin.display(),
            self.spec.args.join(" "),
            self.admin
        ));
        let child = command
            .spawn()
            .map_err(Error::io(format!("cannot start {}", self.bin.display())))?;
        self.child = Some(child);
        Ok(())
    }

    async fn wait_healthy(&mut self) -> Result<(), String> {
        let url = format!("http://{}/healthz", self.admin);
        let deadline = tokio::time::Instant::now() + HEALTHY_TIMEOUT;
        loop {
            if let Some(status) = self.exit_status() {
                return Err(format!("exited with {status}"));
            }
            match self.http.get(&url).send().await {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(format!("/healthz answered {}", response.status()));
                    }
                }
                Err(error) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(format!("/healthz not answered: {error}"));
                    }
                }
            }
            tokio::time::sleep(wait::POLL_INTERVAL).await;
        }
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

    /// `http://<admin address>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process runs (has not exited).
    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none() && self.child.is_some()
    }

    /// The exit status once it exited, without waiting (and reaps it).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child.try_wait().ok().flatten()
    }

    /// SIGKILL, as a crash or an OOM kill would: no flush, no final commit, no checkpoint. Waits
    /// until the process is reaped.
    pub fn kill9(&mut self) -> Result<ExitStatus> {
        let child = self
            .child
            .as_mut()
            .ok_or_else(|| Error::Invalid(format!("{} was never started", self.spec.name)))?;
        if let Some(status) = child
            .try_wait()
            .map_err(Error::io("cannot check a child"))?
        {
            return Ok(status);
        }
        child.kill().map_err(Error::io("cannot send SIGKILL"))?;
        let status = child.wait().map_err(Error::io("cannot reap a child"))?;
        self.note(&format!("killed with SIGKILL: {status}"));
        Ok(status)
    }

    /// SIGTERM, then waits up to `grace` for the exit and returns its status (an error when it
    /// did not exit in time; the process is then killed).
    pub async fn terminate(&mut self, grace: Duration) -> Result<ExitStatus> {
        let Some(pid) = self.pid() else {
            return Err(Error::Invalid(format!(
                "{} was never started",
                self.spec.name
            )));
        };
        if let Some(status) = self.exit_status() {
            return Ok(status);
        }
        // std has no SIGTERM and the workspace forbids `unsafe` (libc::kill): use kill(1).
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(Error::io("cannot run kill -TERM"))?;
        if !sent.success() && self.exit_status().is_none() {
            return Err(Error::Invalid(format!("kill -TERM {pid} failed: {sent}")));
        }
        let status = self.wait_exit(grace).await;
        if status.is_err() {
            let _ = self.kill9();
        }
        status
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let name = format!("{} to exit", self.spec.name);
        let status = wait::until(&name, timeout, || {
            let status = self.exit_status();
            async move { status.ok_or_else(|| "still running".to_owned()) }
        })
        .await?;
        self.note(&format!("exited: {status}"));
        Ok(status)
    }

    /// The `/metrics` text.
    pub async fn metrics_text(&self) -> Result<String> {
        let url = format!("http://{}/metrics", self.admin);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(Error::http(format!("GET {url}")))?;
        response
            .text()
            .await
            .map_err(Error::http(format!("reading {url}")))
    }

    /// The sum of every series of metric `name` on `/metrics` (0 when it has none).
    pub async fn metric(&self, name: &str) -> Result<f64> {
        Ok(series(&self.metrics_text().await?, name).values().sum())
    }

    /// The file holding the process' output (all runs).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// The whole log (empty when unreadable).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Appends a line of the test's own to the log, so it reads as a story.
    fn note(&self, line: &str) {
        use std::io::Write;
        // The log is for humans: a failed write only loses the note.
        if let Ok(mut file) = OpenOptions::new().create(true).append(true).open(&self.log) {
            let _ = writeln!(file, "---- e2e: {line}");
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "---- last {PANIC_TAIL_LINES} lines of {} ({}) ----\n{}\n---- end of {} ----",
                self.spec.name,
                self.log.display(),
                tail(&self.log, PANIC_TAIL_LINES),
                self.spec.name
            );
        }
    }
}

/// A loopback port that was free a moment ago.
pub fn free_loopback_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(Error::io("cannot bind a loopback port"))?;
    Ok(listener
        .local_addr()
        .map_err(Error::io("cannot read a bound address"))?
        .port())
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

fn tail(path: &Path, lines: usize) -> String {
    let Ok(file) = File::open(path) else {
        return String::new();
    };
    use std::io::BufRead;
    let all: Vec<String> = std::io::BufReader::new(file)
        .lines()
        .map_while(std::result::Result::ok)
        .collect();
    all[all.len().saturating_sub(lines)..].join("\n")
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
}
