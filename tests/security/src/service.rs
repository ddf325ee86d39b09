//! A product service (`producer run`, `consumer run`) as a child process on a free loopback
//! port: started with exactly the environment a test gives (nothing is inherited), its stdout
//! and stderr kept in files for the leak checks, stopped with SIGTERM or killed when dropped.

use std::fs::OpenOptions;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::Error;

/// How often readiness and exit are polled.
const POLL: Duration = Duration::from_millis(50);

/// How many fresh ports a start tries when another process took the one picked.
const PORT_ATTEMPTS: usize = 3;

/// Lines of the log a failing test shows.
const TAIL_LINES: usize = 60;

/// What to start.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// Name used in messages and log file names (`producer`, `consumer`).
    pub name: String,
    /// The binary.
    pub bin: PathBuf,
    /// Its arguments (`run`).
    pub args: Vec<String>,
    /// The whole environment of the child; `HTTP_LISTEN` is added with the port picked.
    pub env: Vec<(String, String)>,
    /// Folder the `<name>.stdout` and `<name>.stderr` files are written to.
    pub log_dir: PathBuf,
}

impl ServiceSpec {
    /// A spec running `bin run` with `env`, logging into `log_dir`.
    pub fn run(name: &str, bin: PathBuf, env: Vec<(String, String)>, log_dir: &Path) -> Self {
        Self {
            name: name.to_owned(),
            bin,
            args: vec!["run".to_owned()],
            env,
            log_dir: log_dir.to_owned(),
        }
    }
}

/// A running service; killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct Service {
    name: String,
    child: Option<Child>,
    port: u16,
    stdout: PathBuf,
    stderr: PathBuf,
    http: reqwest::Client,
}

impl Service {
    /// Starts the service on a free loopback port and returns once `GET /healthz` answers 200
    /// (within `within`). A start that loses its port to another process is retried on another.
    pub async fn start(spec: &ServiceSpec, within: Duration) -> Result<Self, Error> {
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            let mut service = Self::spawn(spec)?;
            match service.wait_healthy(within).await {
                Ok(()) => return Ok(service),
                Err(e @ Error::Exited { .. }) if service.lost_its_port() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::StillRunning {
            name: spec.name.clone(),
            within,
        }))
    }

    /// Starts the service on a free loopback port without waiting for it (for services that
    /// are expected to fail, or to be watched from outside).
    pub fn spawn(spec: &ServiceSpec) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(Error::http("cannot build an HTTP client"))?;
        let stdout = spec.log_dir.join(format!("{}.stdout", spec.name));
        let stderr = spec.log_dir.join(format!("{}.stderr", spec.name));
        let port = free_port()?;
        let child = spawn(spec, port, &stdout, &stderr)?;
        Ok(Self {
            name: spec.name.clone(),
            child: Some(child),
            port,
            stdout,
            stderr,
            http,
        })
    }

    /// The loopback port of the service's HTTP server.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The process id while the service runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `GET path`: the status and the body.
    pub async fn get(&self, path: &str) -> Result<(u16, String), Error> {
        let response = self
            .http
            .get(self.url(path))
            .send()
            .await
            .map_err(Error::http(format!("GET {path} of {}", self.name)))?;
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .map_err(Error::http(format!("body of GET {path} of {}", self.name)))?;
        Ok((status, body))
    }

    /// Polls `GET path` until it answers `status`, or fails after `within` with the last answer.
    pub async fn wait_for_status(
        &mut self,
        path: &str,
        status: u16,
        within: Duration,
    ) -> Result<String, Error> {
        let deadline = Instant::now() + within;
        let mut last: String;
        loop {
            if self.exit_status()?.is_some() {
                return Err(self.exited_error());
            }
            match self.get(path).await {
                Ok((s, body)) if s == status => return Ok(body),
                Ok((s, body)) => last = format!("{s} {body}"),
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                return Err(Error::NotReady {
                    name: format!("{} (GET {path} wanted {status}, last: {last})", self.name),
                    within,
                    log_tail: self.log_tail(TAIL_LINES),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Everything the service wrote to stdout so far.
    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout)
    }

    /// Everything the service wrote to stderr so far.
    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr)
    }

    /// Stdout followed by stderr.
    pub fn output(&self) -> String {
        format!("{}\n{}", self.stdout(), self.stderr())
    }

    /// The last `lines` lines of stdout and stderr.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.output();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The exit status when the process has exited, without waiting.
    pub fn exit_status(&mut self) -> Result<Option<ExitStatus>, Error> {
        match self.child.as_mut() {
            Some(child) => child
                .try_wait()
                .map_err(Error::io(format!("cannot check {}", self.name))),
            None => Ok(None),
        }
    }

    /// Waits up to `within` for the process to exit by itself; kills it after that.
    pub async fn wait_exit(&mut self, within: Duration) -> Result<ExitStatus, Error> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.exit_status()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(Error::StillRunning {
                    name: self.name.clone(),
                    within,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Asks the service to stop (SIGTERM) and waits up to `grace` for it to exit; kills it and
    /// fails after that.
    pub async fn stop(&mut self, grace: Duration) -> Result<ExitStatus, Error> {
        if let Some(pid) = self.pid() {
            // std has no SIGTERM and the workspace forbids `unsafe` (libc::kill): use kill(1).
            let sent = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_err(Error::io("cannot run kill"))?;
            if !sent.success() {
                self.kill();
                return Err(Error::Exited {
                    name: self.name.clone(),
                    status: "gone before SIGTERM".to_owned(),
                    log_tail: self.log_tail(TAIL_LINES),
                });
            }
        }
        self.wait_exit(grace).await
    }

    /// Kills the process (SIGKILL) and reaps it; no-op when it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Errors mean the process is already gone; reaping below is all that is left.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn wait_healthy(&mut self, within: Duration) -> Result<(), Error> {
        self.wait_for_status("/healthz", 200, within)
            .await
            .map(|_| ())
    }

    fn lost_its_port(&self) -> bool {
        let text = self.output();
        text.contains("Address already in use") || text.contains("cannot listen")
    }

    fn exited_error(&mut self) -> Error {
        let status = match self.exit_status() {
            Ok(Some(s)) => s.to_string(),
            Ok(None) => "still running".to_owned(),
            Err(e) => e.to_string(),
        };
        self.child = None;
        Error::Exited {
            name: self.name.clone(),
            status,
            log_tail: self.log_tail(TAIL_LINES),
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- last {TAIL_LINES} lines of {} ({} and {}) ----\n{}\n---- end of {} ----",
                self.name,
                self.stdout.display(),
                self.stderr.display(),
                self.log_tail(TAIL_LINES),
                self.name
            );
        }
    }
}

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

/// Runs `bin args` with exactly `env` until it exits (killed after `within`).
pub async fn run_to_exit(
    bin: &Path,
    args: &[&str],
    env: &[(String, String)],
    within: Duration,
) -> Result<Finished, Error> {
    let mut command = tokio::process::Command::new(bin);
    command
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(within, command.output())
        .await
        .map_err(|_| Error::StillRunning {
            name: bin.display().to_string(),
            within,
        })?
        .map_err(Error::io(format!("cannot run {}", bin.display())))?;
    Ok(Finished {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(Error::io("cannot bind a loopback port"))?;
    Ok(listener
        .local_addr()
        .map_err(Error::io("cannot read a bound address"))?
        .port())
}

fn spawn(spec: &ServiceSpec, port: u16, stdout: &Path, stderr: &Path) -> Result<Child, Error> {
    let open = |path: &Path| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(Error::io(format!("cannot open {}", path.display())))
    };
    Command::new(&spec.bin)
        .args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("HTTP_LISTEN", format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(open(stdout)?)
        .stderr(open(stderr)?)
        .spawn()
        .map_err(Error::io(format!("cannot start {}", spec.bin.display())))
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}
