//! The receiver's listeners and the handle tests drive it with: the API listener (closed by a
//! `refuse` outage and bound again on the same port on recovery), the control listener,
//! [`LokiReceiver::start`], [`run`] and [`LokiHandle`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tower::Service;

use super::config::{ConfigError, LokiConfig};
use super::control;
use super::faults::{Faults, FaultsError, Outage};
use super::logql::{LogqlError, Selector};
use super::metrics::Stats;
use super::push::{self, ConnectionKill};
use super::query;
use super::receiver::Receiver;
use super::store::StoredEntry;

/// How long to keep trying to bind the API port again after a `refuse` outage.
const REBIND_ATTEMPTS: u32 = 50;
const REBIND_PAUSE: Duration = Duration::from_millis(100);

/// Why the receiver did not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not be bound.
    #[error("cannot bind the {what} listener on {addr}")]
    Bind {
        /// `API` or `control`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The metrics could not be registered.
    #[error("cannot register metrics")]
    Metrics(#[from] prometheus::Error),
}

/// The Loki-compatible test receiver. See [`LokiReceiver::start`].
#[derive(Debug)]
pub struct LokiReceiver;

impl LokiReceiver {
    /// Validates `config`, binds both listeners (port 0 picks a free port) and serves until
    /// the returned handle is shut down or dropped.
    pub async fn start(config: LokiConfig) -> Result<LokiHandle, StartError> {
        config.validate()?;
        let bind = |what, addr| async move {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { what, addr, source })?;
            let local =
                listener
                    .local_addr()
                    .map_err(|source| StartError::Bind { what, addr, source })?;
            Ok::<_, StartError>((listener, local))
        };
        let (api_listener, addr) = bind("API", config.listen).await?;
        let (control_listener, control_addr) = bind("control", config.control_listen).await?;
        let refuse = config.faults.outage == Some(Outage::Refuse);
        let receiver = Arc::new(Receiver::new(config)?);
        let shutdown = CancellationToken::new();
        let running = if refuse {
            // The port is known now; recovery binds it again.
            drop(api_listener);
            None
        } else {
            Some(spawn_api(api_listener, receiver.clone(), &shutdown))
        };
        let server = Arc::new(Server {
            receiver,
            api: tokio::sync::Mutex::new(Api { addr, running }),
            shutdown: shutdown.clone(),
        });
        let control_router = control::router(server.clone());
        let stop = shutdown.clone();
        let control = tokio::spawn(async move {
            let serve = axum::serve(control_listener, control_router)
                .with_graceful_shutdown(stop.cancelled_owned());
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "control API stopped");
            }
        });
        let faults = server.receiver.faults();
        tracing::info!(
            api = %addr,
            control = %control_addr,
            auth_enabled = server.receiver.config.auth_enabled,
            count_only = server.receiver.config.count_only,
            ?faults,
            "Loki test receiver listening"
        );
        Ok(LokiHandle {
            server,
            url: format!("http://{addr}"),
            control_url: format!("http://{control_addr}"),
            addr,
            control_addr,
            control: Some(control),
        })
    }
}

/// Starts the receiver and serves until `shutdown` is cancelled.
pub async fn run(config: LokiConfig, shutdown: CancellationToken) -> Result<(), StartError> {
    let handle = LokiReceiver::start(config).await?;
    shutdown.cancelled().await;
    tracing::info!("Loki test receiver shutting down");
    handle.shutdown().await;
    Ok(())
}

/// What the control API and the handle share.
#[derive(Debug)]
pub(crate) struct Server {
    receiver: Arc<Receiver>,
    api: tokio::sync::Mutex<Api>,
    shutdown: CancellationToken,
}

/// The API listener: its address, and its accept task while it is open.
#[derive(Debug)]
struct Api {
    addr: SocketAddr,
    running: Option<Running>,
}

#[derive(Debug)]
struct Running {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Server {
    /// The receiver.
    pub(crate) fn receiver(&self) -> &Arc<Receiver> {
        &self.receiver
    }

    /// Puts `faults` in force. Returns once they are: for `refuse`, once the API listener and
    /// its connections are closed; when recovering from it, once the port is bound again.
    pub(crate) async fn set_faults(&self, faults: Faults) -> Result<(), FaultsError> {
        faults.validate()?;
        let mut api = self.api.lock().await;
        if self.shutdown.is_cancelled() {
            return Err(FaultsError::ShutDown);
        }
        if faults.outage == Some(Outage::Refuse) {
            self.receiver.set_faults(faults);
            close(api.running.take()).await;
        } else {
            if api.running.is_none() {
                let listener = bind_again(api.addr).await?;
                api.running = Some(spawn_api(listener, self.receiver.clone(), &self.shutdown));
            }
            self.receiver.set_faults(faults);
        }
        tracing::info!(?faults, "faults set");
        Ok(())
    }

    async fn shutdown(&self) {
        self.shutdown.cancel();
        let mut api = self.api.lock().await;
        close(api.running.take()).await;
    }
}

async fn close(running: Option<Running>) {
    if let Some(running) = running {
        running.stop.cancel();
        if let Err(e) = running.task.await {
            tracing::warn!(error = %e, "API accept task failed");
        }
    }
}

async fn bind_again(addr: SocketAddr) -> Result<TcpListener, FaultsError> {
    let mut attempt = 0;
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(e) if attempt < REBIND_ATTEMPTS && e.kind() == std::io::ErrorKind::AddrInUse => {
                attempt += 1;
                tokio::time::sleep(REBIND_PAUSE).await;
            }
            Err(source) => return Err(FaultsError::Rebind { addr, source }),
        }
    }
}

/// The Loki API's routes.
pub(crate) fn api_router(receiver: Arc<Receiver>) -> Router {
    Router::new()
        .route("/loki/api/v1/push", post(push::push))
        .route("/ready", get(query::ready))
        .route("/loki/api/v1/query_range", get(query::query_range))
        .route("/loki/api/v1/series", get(query::series))
        .route("/loki/api/v1/labels", get(query::labels))
        .route("/loki/api/v1/label/{name}/values", get(query::label_values))
        .route("/metrics", get(metrics))
        .with_state(receiver)
}

/// `GET /metrics`: the Prometheus text exposition.
pub(crate) async fn metrics(State(receiver): State<Arc<Receiver>>) -> Response {
    match receiver.metrics.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

fn spawn_api(
    listener: TcpListener,
    receiver: Arc<Receiver>,
    parent: &CancellationToken,
) -> Running {
    let stop = parent.child_token();
    let task = tokio::spawn(accept(listener, api_router(receiver), stop.clone()));
    Running { stop, task }
}

/// Accepts connections until `stop`, then closes the listener and every connection.
async fn accept(listener: TcpListener, router: Router, stop: CancellationToken) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve(stream, router.clone(), stop.child_token()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}

/// Serves one HTTP/1 connection until it ends or `kill` (outage, dropped-connection fault,
/// shutdown) closes it without an answer.
async fn serve(stream: TcpStream, router: Router, kill: CancellationToken) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let token = kill.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request
            .extensions_mut()
            .insert(ConnectionKill(token.clone()));
        router.clone().call(request.map(Body::new))
    });
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        result = connection => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        () = kill.cancelled() => {}
    }
}

/// A running receiver. Dropping it stops the receiver (in the background); prefer
/// [`LokiHandle::shutdown`] to wait for the listeners to close.
#[derive(Debug)]
pub struct LokiHandle {
    server: Arc<Server>,
    url: String,
    control_url: String,
    addr: SocketAddr,
    control_addr: SocketAddr,
    control: Option<JoinHandle<()>>,
}

impl LokiHandle {
    /// Base URL of the Loki API, e.g. `http://127.0.0.1:3100`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// URL of the push endpoint (`…/loki/api/v1/push`).
    pub fn push_url(&self) -> String {
        format!("{}/loki/api/v1/push", self.url)
    }

    /// Base URL of the control API.
    pub fn control_url(&self) -> &str {
        &self.control_url
    }

    /// Address of the Loki API.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Address of the control API.
    pub fn control_addr(&self) -> SocketAddr {
        self.control_addr
    }

    /// The configuration it runs with (faults as at start).
    pub fn config(&self) -> &LokiConfig {
        &self.server.receiver.config
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.server.receiver.faults()
    }

    /// Puts `faults` in force, replacing the previous ones; returns once they are (for
    /// `refuse`: the API port is closed; on recovery: it is bound again).
    pub async fn set_faults(&self, faults: Faults) -> Result<(), FaultsError> {
        self.server.set_faults(faults).await
    }

    /// Clears every fault.
    pub async fn clear_faults(&self) -> Result<(), FaultsError> {
        self.server.set_faults(Faults::default()).await
    }

    /// Every stored entry of `tenant` (`fake` when auth is off): streams in label order,
    /// entries by timestamp then arrival.
    pub fn entries(&self, tenant: &str) -> Vec<StoredEntry> {
        self.server.receiver.entries(tenant, None)
    }

    /// The stored entries of `tenant` in streams matched by a LogQL stream selector, e.g.
    /// `{service="api"}`.
    pub fn query(&self, tenant: &str, selector: &str) -> Result<Vec<StoredEntry>, LogqlError> {
        let selector = Selector::parse(selector)?;
        Ok(self.server.receiver.entries(tenant, Some(&selector)))
    }

    /// Removes `tenant`'s entries with these (timestamp in ns, line) pairs from every stream, as
    /// if Loki had lost them (the control API's `POST /control/delete`); returns how many
    /// entries were removed.
    pub fn remove_entries(&self, tenant: &str, entries: &[(i64, String)]) -> usize {
        self.server.receiver.remove_entries(tenant, entries)
    }

    /// Counters since start or the last reset.
    pub fn stats(&self) -> Stats {
        self.server.receiver.metrics.stats()
    }

    /// The `/metrics` text.
    pub fn metrics_text(&self) -> String {
        self.server
            .receiver
            .metrics
            .encode()
            .unwrap_or_else(|e| format!("# error: {e}\n"))
    }

    /// Forgets every entry and zeroes the counters (faults stay).
    pub fn reset(&self) {
        self.server.receiver.reset();
    }

    /// Stops accepting, closes every connection and waits for the listeners to close.
    pub async fn shutdown(mut self) {
        self.server.shutdown().await;
        if let Some(control) = self.control.take() {
            if let Err(e) = control.await {
                tracing::warn!(error = %e, "control API task failed");
            }
        }
    }
}

impl Drop for LokiHandle {
    fn drop(&mut self) {
        self.server.shutdown.cancel();
    }
}
