//! A stand-in Kafka broker that records SASL/PLAIN credentials. It speaks just enough of the
//! Kafka protocol for librdkafka's SASL start-up (ApiVersions v3, SaslHandshake v1,
//! SaslAuthenticate v0; <https://kafka.apache.org/protocol>), records the PLAIN message
//! (`authzid NUL user NUL password`, RFC 4616) and refuses it with
//! `SASL_AUTHENTICATION_FAILED`. Anything else closes the connection.
//!
//! tansu authenticates only SCRAM, which the workspace's librdkafka build cannot speak, so this
//! is how a test sees the password a client really sends.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::Error;

const API_SASL_HANDSHAKE: i16 = 17;
const API_VERSIONS: i16 = 18;
const API_SASL_AUTHENTICATE: i16 = 36;
const SASL_AUTHENTICATION_FAILED: i16 = 58;
/// The largest request frame read; a bigger one closes the connection.
const MAX_FRAME: usize = 1 << 20;

/// Credentials a client sent with SASL/PLAIN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainCredentials {
    /// The authorisation identity (usually empty).
    pub authzid: String,
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

type Seen = Arc<Mutex<Vec<PlainCredentials>>>;

/// A running stand-in broker on a loopback port; stopped when dropped.
#[derive(Debug)]
pub struct SaslCapture {
    addr: SocketAddr,
    seen: Seen,
    task: JoinHandle<()>,
}

impl SaslCapture {
    /// Starts listening on a free loopback port.
    pub async fn start() -> Result<Self, Error> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(Error::io("cannot bind the SASL capture"))?;
        let addr = listener
            .local_addr()
            .map_err(Error::io("cannot read the SASL capture's address"))?;
        let seen: Seen = Arc::default();
        let accepted = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&accepted)));
            }
        });
        Ok(Self { addr, seen, task })
    }

    /// `127.0.0.1:<port>`, for `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> String {
        self.addr.to_string()
    }

    /// Every credential sent so far.
    pub fn credentials(&self) -> Vec<PlainCredentials> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for SaslCapture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers one connection until the client closes it or says something unexpected.
async fn serve(mut stream: TcpStream, seen: Seen) {
    while let Some(frame) = read_frame(&mut stream).await {
        let Some(request) = Request::parse(&frame) else {
            return;
        };
        let body = match request.api_key {
            API_VERSIONS => api_versions_response(request.correlation_id),
            API_SASL_HANDSHAKE => handshake_response(request.correlation_id),
            API_SASL_AUTHENTICATE => {
                if let Some(credentials) = plain_credentials(request.body) {
                    if let Ok(mut s) = seen.lock() {
                        s.push(credentials);
                    }
                }
                authenticate_refusal(request.correlation_id)
            }
            _ => return,
        };
        let Ok(len) = u32::try_from(body.len()) else {
            return;
        };
        if stream.write_all(&len.to_be_bytes()).await.is_err()
            || stream.write_all(&body).await.is_err()
        {
            return;
        }
    }
}

async fn read_frame(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.ok()?;
    let len = usize::try_from(u32::from_be_bytes(len)).ok()?;
    if len > MAX_FRAME {
        return None;
    }
    let mut frame = vec![0u8; len];
    stream.read_exact(&mut frame).await.ok()?;
    Some(frame)
}

/// A request header (v1 or v2) and what follows it.
struct Request<'a> {
    api_key: i16,
    correlation_id: i32,
    /// The bytes after the client id (for v2 headers, the tagged fields come first).
    body: &'a [u8],
}

impl<'a> Request<'a> {
    fn parse(frame: &'a [u8]) -> Option<Self> {
        let api_key = i16::from_be_bytes(frame.get(0..2)?.try_into().ok()?);
        let correlation_id = i32::from_be_bytes(frame.get(4..8)?.try_into().ok()?);
        let client_id_len = i16::from_be_bytes(frame.get(8..10)?.try_into().ok()?);
        let body_start = 10 + usize::try_from(client_id_len.max(0)).ok()?;
        Some(Self {
            api_key,
            correlation_id,
            body: frame.get(body_start..)?,
        })
    }
}

/// ApiVersions v3 (flexible body, v0 response header): the three APIs the SASL start-up needs.
fn api_versions_response(correlation_id: i32) -> Vec<u8> {
    let apis: [(i16, i16, i16); 3] = [
        (API_VERSIONS, 0, 3),
        (API_SASL_HANDSHAKE, 0, 1),
        (API_SASL_AUTHENTICATE, 0, 0),
    ];
    let mut out = Vec::new();
    out.extend_from_slice(&correlation_id.to_be_bytes());
    out.extend_from_slice(&0i16.to_be_bytes()); // error_code
    out.push(apis.len() as u8 + 1); // compact array length + 1 (unsigned varint < 128)
    for (key, min, max) in apis {
        out.extend_from_slice(&key.to_be_bytes());
        out.extend_from_slice(&min.to_be_bytes());
        out.extend_from_slice(&max.to_be_bytes());
        out.push(0); // tagged fields
    }
    out.extend_from_slice(&0i32.to_be_bytes()); // throttle_time_ms
    out.push(0); // tagged fields
    out
}

/// SaslHandshake v1: no error, mechanisms `[PLAIN]`.
fn handshake_response(correlation_id: i32) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&correlation_id.to_be_bytes());
    out.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&5i16.to_be_bytes());
    out.extend_from_slice(b"PLAIN");
    out
}

/// SaslAuthenticate v0: `SASL_AUTHENTICATION_FAILED`, a message, no auth bytes.
fn authenticate_refusal(correlation_id: i32) -> Vec<u8> {
    let message = b"refused by the test broker";
    let mut out = Vec::new();
    out.extend_from_slice(&correlation_id.to_be_bytes());
    out.extend_from_slice(&SASL_AUTHENTICATION_FAILED.to_be_bytes());
    out.extend_from_slice(&(message.len() as i16).to_be_bytes());
    out.extend_from_slice(message);
    out.extend_from_slice(&0i32.to_be_bytes());
    out
}

/// The PLAIN message inside a SaslAuthenticate v0 body (`auth_bytes`: int32 length + bytes).
fn plain_credentials(body: &[u8]) -> Option<PlainCredentials> {
    let len = usize::try_from(i32::from_be_bytes(body.get(0..4)?.try_into().ok()?)).ok()?;
    let message = body.get(4..4 + len)?;
    let mut parts = message.split(|b| *b == 0);
    let text = |p: Option<&[u8]>| p.map(|b| String::from_utf8_lossy(b).into_owned());
    Some(PlainCredentials {
        authzid: text(parts.next())?,
        username: text(parts.next())?,
        password: text(parts.next())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_message_splits_into_its_three_parts() {
        let mut body = 17i32.to_be_bytes().to_vec();
        body.extend_from_slice(b"\0alice\0pa55-word!");
        assert_eq!(
            plain_credentials(&body),
            Some(PlainCredentials {
                authzid: String::new(),
                username: "alice".into(),
                password: "pa55-word!".into(),
            })
        );
        assert_eq!(plain_credentials(&body[..6]), None);
    }

    #[test]
    fn a_request_header_is_read_past_the_client_id() {
        let mut frame = Vec::new();
        frame.extend_from_slice(&36i16.to_be_bytes());
        frame.extend_from_slice(&0i16.to_be_bytes());
        frame.extend_from_slice(&7i32.to_be_bytes());
        frame.extend_from_slice(&3i16.to_be_bytes());
        frame.extend_from_slice(b"abcBODY");
        let r = Request::parse(&frame).expect("parses");
        assert_eq!((r.api_key, r.correlation_id, r.body), (36, 7, &b"BODY"[..]));
    }
}
