//! The ingest router through `tower::ServiceExt::oneshot`, on librdkafka's mock cluster.

use std::io::Write;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use producer::{ingest_router, IngestState, Metrics, ProducerConfig, Sink};
use testkit::mock::MockKafka;
use tower::ServiceExt;

use super::config;

/// An ingest router on librdkafka's mock cluster (topic `logs`, 3 partitions), with its sink
/// and metrics.
pub(crate) struct Fixture {
    pub mock: MockKafka,
    pub app: Router,
    pub sink: Arc<Sink>,
    pub registry: prometheus::Registry,
}

impl Fixture {
    /// The value of a series in the fixture's registry (0 when absent).
    pub(crate) fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.registry
            .gather()
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric())
            .find(|m| {
                labels.iter().all(|(k, v)| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == *k && l.value() == *v)
                })
            })
            .map_or(0.0, |m| m.get_counter().value())
    }
}

/// A fixture whose config (64 KiB body cap) `f` may change first.
pub(crate) fn fixture_with(f: impl FnOnce(&mut ProducerConfig)) -> Fixture {
    let mock = MockKafka::new(1).unwrap();
    mock.create_topic("logs", 3).unwrap();
    let mut c = config(mock.bootstrap_servers(), "logs");
    c.ingest_max_body_bytes = 64 * 1024;
    f(&mut c);
    let sink = Arc::new(Sink::new(&c).unwrap());
    let registry = prometheus::Registry::new();
    let metrics = Arc::new(Metrics::register(&registry, false).unwrap());
    let state = IngestState::new(&c, Arc::clone(&sink), metrics);
    Fixture {
        mock,
        app: ingest_router(state),
        sink,
        registry,
    }
}

/// A fixture with the test config.
pub(crate) fn fixture() -> Fixture {
    fixture_with(|_| {})
}

/// Posts `body` to `/v1/logs` with `headers`; returns the status, the answer's headers and
/// its body.
pub(crate) async fn post_raw(
    app: &Router,
    body: impl Into<Body>,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Bytes) {
    let mut req = Request::post("/v1/logs");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app
        .clone()
        .oneshot(req.body(body.into()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, bytes)
}

/// [`post_raw`] with a JSON answer: the status, the answer (`Null` when not JSON) and its
/// `Retry-After`.
pub(crate) async fn post(
    app: &Router,
    body: impl Into<Body>,
    headers: &[(&str, &str)],
) -> (StatusCode, serde_json::Value, Option<String>) {
    let (status, headers, bytes) = post_raw(app, body, headers).await;
    let retry = headers
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, json, retry)
}

/// `data` gzip-compressed.
pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}
