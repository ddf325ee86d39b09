//! A stand-in for Loki that records what authenticates each request: it answers `GET /ready`
//! with 200 and `POST /loki/api/v1/push` with 204 (without decoding the body), and keeps the
//! method, path and `Authorization` header of every request. (The testkit receiver checks
//! pushes as Loki does but does not look at credentials.)

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::Error;

/// The largest body the stub reads.
const MAX_BODY_BYTES: usize = 64 << 20;

/// The path of Loki's push API.
pub const PUSH_PATH: &str = "/loki/api/v1/push";

/// One request the stub answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    /// The method.
    pub method: String,
    /// The path (without the query).
    pub path: String,
    /// The `Authorization` header, when there was one.
    pub authorization: Option<String>,
}

type Seen = Arc<Mutex<Vec<SeenRequest>>>;

/// A running stub on a loopback port; stopped when dropped.
#[derive(Debug)]
pub struct LokiStub {
    addr: SocketAddr,
    seen: Seen,
    task: JoinHandle<()>,
}

impl LokiStub {
    /// Starts the stub on a free loopback port.
    pub async fn start() -> Result<Self, Error> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(Error::io("cannot bind the Loki stub"))?;
        let addr = listener
            .local_addr()
            .map_err(Error::io("cannot read the Loki stub's address"))?;
        let seen: Seen = Arc::default();
        let app = Router::new().fallback(answer).with_state(Arc::clone(&seen));
        let task = tokio::spawn(async move {
            // The server ends only when the task is aborted (drop); an error ends it early and
            // the test then sees no requests.
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, seen, task })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the stub listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The push requests answered so far.
    pub fn pushes(&self) -> Vec<SeenRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path == PUSH_PATH)
            .collect()
    }
}

impl Drop for LokiStub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(State(seen): State<Seen>, request: Request) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    if let Ok(mut s) = seen.lock() {
        s.push(SeenRequest {
            method: method.to_string(),
            path: path.clone(),
            authorization,
        });
    }
    // Read the body to its end so the connection stays usable for the next push.
    let _ = axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES).await;
    match (method, path.as_str()) {
        (Method::GET, "/ready") => (StatusCode::OK, "ready").into_response(),
        (Method::POST, PUSH_PATH) => StatusCode::NO_CONTENT.into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}
