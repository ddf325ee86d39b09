//! Child processes the harness starts (tansu, Prometheus, the pipeline's own services): binary
//! lookup, free loopback ports, a log file per service, termination, and the log tail a failed
//! test shows.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Every process the harness starts carries this in its command line, so leftovers can be found
/// with `pgrep -af logpipe-test-` (what `scripts/test.sh` checks after the suites).
pub const MARKER: &str = "logpipe-test-";

/// How often readiness and exit are polled.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// How many log lines a test that panics shows from each service it started.
const PANIC_TAIL_LINES: usize = 100;

/// A suffix that no other call in any process on this machine returns: the process id, a
/// per-process counter and the sub-second clock.
pub(crate) fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default();
    format!("{}-{n}-{nanos:08x}", std::process::id())
}

/// The first executable called `name` in the directories of `path_env` (a `PATH` value).
pub(crate) fn find_on_path(name: &str, path_env: Option<&OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path_env?)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// Whether `path` is a regular file with an execute bit.
pub(crate) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A loopback port that was free a moment ago: bound on `127.0.0.1:0`, then released. Another
/// process may take it before the service binds it, so callers retry on a bind failure.
pub(crate) fn free_loopback_port() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// The log file a service writes its stdout and stderr to; restarts append to it.
#[derive(Debug, Clone)]
pub(crate) struct ServiceLog {
    path: PathBuf,
}

impl ServiceLog {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a line of our own (start attempts, restarts), so the log reads as a story.
    pub(crate) fn note(&self, line: &str) -> io::Result<()> {
        let mut file = self.open_append()?;
        writeln!(file, "---- {line}")
    }

    fn open_append(&self) -> io::Result<File> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
    }

    /// The log's current size in bytes (0 when it does not exist yet).
    pub(crate) fn len(&self) -> u64 {
        self.path.metadata().map(|meta| meta.len()).unwrap_or(0)
    }

    /// What was written after byte `offset` (lossy UTF-8; empty when unreadable).
    pub(crate) fn read_from(&self, offset: u64) -> String {
        use std::io::{Read, Seek, SeekFrom};
        let mut text = Vec::new();
        let read = File::open(&self.path).and_then(|mut file| {
            file.seek(SeekFrom::Start(offset))?;
            file.read_to_end(&mut text)
        });
        match read {
            Ok(_) => String::from_utf8_lossy(&text).into_owned(),
            Err(_) => String::new(),
        }
    }

    /// The last `lines` lines of the log (fewer when it is shorter; empty when unreadable).
    pub(crate) fn tail(&self, lines: usize) -> String {
        let Ok(file) = File::open(&self.path) else {
            return String::new();
        };
        let all: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
        let start = all.len().saturating_sub(lines);
        all[start..].join("\n")
    }

    /// When the current thread is unwinding from a panic (a failed test), prints the log's tail
    /// to stderr, where the test runner shows it beside the failure.
    pub(crate) fn print_tail_if_panicking(&self, service: &str) {
        if std::thread::panicking() {
            eprintln!(
                "---- last {PANIC_TAIL_LINES} lines of the {service} log ({}) ----\n{}\n---- end of \
                 the {service} log ----",
                self.path.display(),
                self.tail(PANIC_TAIL_LINES)
            );
        }
    }
}

/// A started child process, killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub(crate) struct ChildProcess {
    child: Child,
}

impl ChildProcess {
    /// Starts `command` with stdin closed and stdout and stderr appended to `log`.
    pub(crate) fn spawn(command: &mut Command, log: &ServiceLog) -> io::Result<Self> {
        let stdout = log.open_append()?;
        let stderr = stdout.try_clone()?;
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()?;
        Ok(Self { child })
    }

    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }

    /// The exit status when the process has exited, without waiting.
    pub(crate) fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Asks the process to exit (SIGTERM) and waits up to `grace` for it; then kills it.
    pub(crate) async fn terminate(mut self, grace: Duration) -> io::Result<ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        if self.sigterm().is_ok() {
            if let Some(status) = self.wait_exit(grace).await? {
                return Ok(status);
            }
        }
        self.kill()
    }

    /// Sends SIGTERM; an error when it could not be sent (the process is gone, or kill(1) failed).
    pub(crate) fn sigterm(&self) -> io::Result<()> {
        // std has no SIGTERM and this workspace forbids `unsafe` (libc::kill): use kill(1).
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "kill -TERM {} failed: {status}",
                self.child.id()
            )))
        }
    }

    /// Waits up to `within` for the process to exit; `None` when it still runs then.
    pub(crate) async fn wait_exit(&mut self, within: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Kills the process (SIGKILL) and reaps it, so its pid is gone when this returns.
    pub(crate) fn kill(mut self) -> io::Result<ExitStatus> {
        self.kill_and_reap()
    }

    /// Kills the process (SIGKILL) unless it exited, and reaps it; its exit status either way.
    pub(crate) fn kill_and_reap(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        match self.child.kill() {
            Ok(()) => {}
            // Exited between try_wait and kill: reaping below still works.
            Err(error) if error.kind() == io::ErrorKind::InvalidInput => {}
            Err(error) => return Err(error),
        }
        self.child.wait()
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        // Nothing useful to do with an error in drop; the pid is then left for the OS.
        let _ = self.kill_and_reap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_an_executable_on_a_path_list() {
        let path = std::env::join_paths(["/nonexistent", "/bin", "/usr/bin"]).unwrap();
        let found = find_on_path("sh", Some(&path)).unwrap();
        assert!(found.ends_with("sh"));
    }

    #[test]
    fn finds_nothing_without_a_path() {
        assert_eq!(find_on_path("sh", None), None);
        let path = std::env::join_paths(["/nonexistent"]).unwrap();
        assert_eq!(find_on_path("sh", Some(&path)), None);
    }

    #[test]
    fn unique_suffixes_differ_within_a_process() {
        assert_ne!(unique_suffix(), unique_suffix());
    }

    #[test]
    fn tail_returns_the_last_lines_of_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = ServiceLog::new(dir.path().join("service.log"));
        assert_eq!(log.tail(3), "");
        for n in 0..10 {
            log.note(&format!("line {n}")).unwrap();
        }
        assert_eq!(log.tail(2), "---- line 8\n---- line 9");
        assert_eq!(log.tail(100).lines().count(), 10);
    }

    #[tokio::test]
    async fn terminate_ends_a_process_that_honours_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        let log = ServiceLog::new(dir.path().join("sleep.log"));
        let child = ChildProcess::spawn(Command::new("sleep").arg("30"), &log).unwrap();
        let pid = child.id();
        let status = child.terminate(Duration::from_secs(5)).await.unwrap();
        assert!(!status.success());
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn dropping_a_child_kills_and_reaps_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = ServiceLog::new(dir.path().join("sleep.log"));
        let child = ChildProcess::spawn(Command::new("sleep").arg("30"), &log).unwrap();
        let pid = child.id();
        drop(child);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }
}
