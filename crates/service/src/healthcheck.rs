//! The `healthcheck` subcommand of both binaries, for container HEALTHCHECKs: a plain HTTP/1.1
//! `GET /healthz` to the service's own admin port, with no TLS or client library needed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use thiserror::Error;

/// Why the health check failed.
#[derive(Debug, Error)]
pub enum HealthcheckError {
    /// The address does not resolve.
    #[error("cannot resolve {0}")]
    Resolve(String),
    /// No connection or no complete answer.
    #[error("{addr}: {source}")]
    Io {
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// An answer other than 200.
    #[error("{addr}{path} answered {status_line:?}")]
    Status {
        /// Where.
        addr: SocketAddr,
        /// The path asked.
        path: String,
        /// The status line received.
        status_line: String,
    },
}

/// GETs `path` from `host:port` and succeeds on a 200 answer within `timeout`.
pub fn check(host: &str, port: u16, path: &str, timeout: Duration) -> Result<(), HealthcheckError> {
    let addr = (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| HealthcheckError::Resolve(format!("{host}:{port}")))?;
    let io = |source| HealthcheckError::Io { addr, source };
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let mut head = [0u8; 64];
    let mut n = 0;
    while n < head.len() {
        match stream.read(&mut head[n..]).map_err(io)? {
            0 => break,
            k => n += k,
        }
        if head[..n].contains(&b'\n') {
            break;
        }
    }
    let text = String::from_utf8_lossy(&head[..n]);
    let status_line = text.lines().next().unwrap_or_default().to_owned();
    if status_line.starts_with("HTTP/1.1 200") || status_line.starts_with("HTTP/1.0 200") {
        Ok(())
    } else {
        Err(HealthcheckError::Status {
            addr,
            path: path.to_owned(),
            status_line,
        })
    }
}
