//! The admin HTTP surface both services expose (DESIGN.md, "HTTP surface"): `GET /metrics`
//! (Prometheus text), `GET /healthz` (liveness: JSON with version and active feature flags) and
//! `GET /readyz` (200 only while every readiness check passes). A service merges its own routes
//! into [`router`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus::{Encoder, IntGaugeVec, Opts, Registry, TextEncoder};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Named readiness checks; the service is ready when at least one is registered and all pass,
/// and it is not draining.
#[derive(Debug, Default)]
pub struct Readiness {
    checks: Mutex<BTreeMap<&'static str, Check>>,
    draining: std::sync::atomic::AtomicBool,
}

/// The state of one readiness check.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Check {
    /// Whether it passes.
    pub ok: bool,
    /// What was seen (an error text when failing).
    pub detail: String,
}

impl Readiness {
    /// A new, not-ready state.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Sets a check, logging transitions once (so a flapping dependency is visible in logs).
    pub fn set(&self, name: &'static str, ok: bool, detail: impl Into<String>) {
        let detail = detail.into();
        let Ok(mut checks) = self.checks.lock() else {
            return;
        };
        let previous = checks.insert(
            name,
            Check {
                ok,
                detail: detail.clone(),
            },
        );
        let was_ok = previous.map(|c| c.ok);
        if was_ok != Some(ok) {
            if ok {
                tracing::info!(check = name, detail = %detail, "readiness check passes");
            } else {
                tracing::warn!(check = name, detail = %detail, "readiness check fails");
            }
        }
    }

    /// Marks the service as draining: not ready from now on.
    pub fn set_draining(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the service is ready, and the checks.
    pub fn snapshot(&self) -> (bool, BTreeMap<&'static str, Check>) {
        let checks = self.checks.lock().map(|c| c.clone()).unwrap_or_default();
        let draining = self.draining.load(std::sync::atomic::Ordering::SeqCst);
        let ready = !draining && !checks.is_empty() && checks.values().all(|c| c.ok);
        (ready, checks)
    }
}

/// What the admin routes serve.
#[derive(Clone)]
pub struct AdminState {
    /// Service name (`producer`, `consumer`).
    pub service: &'static str,
    /// Build version.
    pub version: &'static str,
    /// Active feature flags, by name.
    pub flags: Vec<String>,
    /// The service's metrics registry.
    pub registry: Registry,
    /// Readiness checks.
    pub readiness: Arc<Readiness>,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("service", &self.service)
            .field("version", &self.version)
            .field("flags", &self.flags)
            .finish_non_exhaustive()
    }
}

/// Registers the metrics every service has: `build_info{service,version}`,
/// `feature_flag{name}` (every flag in `known`: 1 when it is in `active`, else 0, so a panel
/// or alert sees the flag before anyone turns it on) and the process collector (CPU, memory,
/// fds).
pub fn register_common_metrics(
    registry: &Registry,
    service: &str,
    version: &str,
    known: &[&str],
    active: &[String],
) -> Result<(), prometheus::Error> {
    let build = IntGaugeVec::new(
        Opts::new("build_info", "Build information; always 1."),
        &["service", "version"],
    )?;
    build.with_label_values(&[service, version]).set(1);
    registry.register(Box::new(build))?;
    let flag = IntGaugeVec::new(
        Opts::new("feature_flag", "Feature flags: 1 when on, 0 when off."),
        &["name"],
    )?;
    for f in known {
        flag.with_label_values(&[*f]).set(0);
    }
    for f in active {
        flag.with_label_values(&[f.as_str()]).set(1);
    }
    registry.register(Box::new(flag))?;
    #[cfg(target_os = "linux")]
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    Ok(())
}

/// The admin routes: `/metrics`, `/healthz`, `/readyz`.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let mut buf = Vec::with_capacity(16 * 1024);
    let encoder = TextEncoder::new();
    match encoder.encode(&state.registry.gather(), &mut buf) {
        Ok(()) => (
            [(header::CONTENT_TYPE, encoder.format_type().to_owned())],
            buf,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[derive(Serialize)]
struct Health<'a> {
    status: &'static str,
    service: &'a str,
    version: &'a str,
    feature_flags: &'a [String],
}

async fn healthz(State(state): State<AdminState>) -> Json<serde_json::Value> {
    Json(
        serde_json::to_value(Health {
            status: "ok",
            service: state.service,
            version: state.version,
            feature_flags: &state.flags,
        })
        .unwrap_or_default(),
    )
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let (ready, checks) = state.readiness.snapshot();
    let body = serde_json::json!({
        "ready": ready,
        "checks": checks,
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// Binds `addr` (fails before anything else starts when the port is taken).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `app` on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn state() -> AdminState {
        let registry = Registry::new();
        register_common_metrics(
            &registry,
            "producer",
            "1.2.3",
            &["enhanced_metrics", "other_flag"],
            &["enhanced_metrics".into()],
        )
        .unwrap();
        AdminState {
            service: "producer",
            version: "1.2.3",
            flags: vec!["enhanced_metrics".into()],
            registry,
            readiness: Readiness::new(),
        }
    }

    async fn get(app: Router, path: &str) -> (StatusCode, String) {
        let resp = app
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn healthz_reports_version_and_flags() {
        let (code, body) = get(router(state()), "/healthz").await;
        assert_eq!(code, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["version"], "1.2.3");
        assert_eq!(v["feature_flags"][0], "enhanced_metrics");
    }

    #[tokio::test]
    async fn readyz_is_503_until_every_check_passes_and_again_when_draining() {
        let s = state();
        let app = router(s.clone());
        assert_eq!(
            get(app.clone(), "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        s.readiness.set("kafka", true, "connected");
        s.readiness.set("loki", false, "connection refused");
        let (code, body) = get(app.clone(), "/readyz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("connection refused"));
        s.readiness.set("loki", true, "ready");
        assert_eq!(get(app.clone(), "/readyz").await.0, StatusCode::OK);
        s.readiness.set_draining();
        assert_eq!(get(app, "/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn metrics_expose_build_info_and_flags() {
        let (code, body) = get(router(state()), "/metrics").await;
        assert_eq!(code, StatusCode::OK);
        assert!(body.contains(r#"build_info{service="producer",version="1.2.3"} 1"#));
        assert!(body.contains(r#"feature_flag{name="enhanced_metrics"} 1"#));
        assert!(
            body.contains(r#"feature_flag{name="other_flag"} 0"#),
            "a known flag that is off is exported as 0"
        );
    }

    #[tokio::test]
    async fn healthcheck_client_accepts_200_and_refuses_others() {
        let s = state();
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let token = CancellationToken::new();
        let server = tokio::spawn(serve(listener, router(s), token.clone()));
        let ok = tokio::task::spawn_blocking(move || {
            (
                crate::healthcheck::check(
                    "127.0.0.1",
                    port,
                    "/healthz",
                    std::time::Duration::from_secs(2),
                )
                .is_ok(),
                crate::healthcheck::check(
                    "127.0.0.1",
                    port,
                    "/readyz",
                    std::time::Duration::from_secs(2),
                )
                .is_ok(),
            )
        })
        .await
        .unwrap();
        assert_eq!(ok, (true, false));
        token.cancel();
        server.await.unwrap().unwrap();
        assert!(crate::healthcheck::check(
            "127.0.0.1",
            port,
            "/healthz",
            std::time::Duration::from_millis(500)
        )
        .is_err());
    }
}
