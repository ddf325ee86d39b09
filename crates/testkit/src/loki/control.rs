//! The control API, on its own listener so that it stays reachable during an outage:
//! `GET`/`PUT`/`DELETE /control/faults` (JSON [`Faults`]; `PUT` replaces every fault, fields
//! left out are cleared, and answers once the faults are in force), `POST /control/reset`
//! (clears the store and the counters, faults stay), `GET /control/stats` (JSON
//! [`Stats`](super::Stats)) and `GET /metrics`.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::faults::{Faults, FaultsError};
use super::server::{metrics, Server};

/// The control API's routes.
pub(crate) fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route(
            "/control/faults",
            get(get_faults).put(put_faults).delete(delete_faults),
        )
        .route("/control/reset", post(reset))
        .route("/control/stats", get(stats))
        .route(
            "/metrics",
            get(|State(server): State<Arc<Server>>| async move {
                metrics(State(server.receiver().clone())).await
            }),
        )
        .with_state(server)
}

async fn get_faults(State(server): State<Arc<Server>>) -> Json<Faults> {
    Json(server.receiver().faults())
}

async fn put_faults(
    State(server): State<Arc<Server>>,
    body: Result<Json<Faults>, JsonRejection>,
) -> Response {
    match body {
        Ok(Json(faults)) => apply(&server, faults).await,
        Err(e) => (StatusCode::BAD_REQUEST, format!("{}\n", e.body_text())).into_response(),
    }
}

async fn delete_faults(State(server): State<Arc<Server>>) -> Response {
    apply(&server, Faults::default()).await
}

async fn apply(server: &Server, faults: Faults) -> Response {
    match server.set_faults(faults).await {
        Ok(()) => Json(server.receiver().faults()).into_response(),
        Err(e) => {
            let status = match e {
                FaultsError::Rebind { .. } | FaultsError::ShutDown => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
                _ => StatusCode::BAD_REQUEST,
            };
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                text.push_str(": ");
                text.push_str(&c.to_string());
                cause = c.source();
            }
            (status, format!("{text}\n")).into_response()
        }
    }
}

async fn reset(State(server): State<Arc<Server>>) -> StatusCode {
    server.receiver().reset();
    tracing::info!("store and counters reset");
    StatusCode::NO_CONTENT
}

async fn stats(State(server): State<Arc<Server>>) -> Response {
    Json(server.receiver().metrics.stats()).into_response()
}
