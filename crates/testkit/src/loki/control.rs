//! The control API, on its own listener so that it stays reachable during an outage:
//! `GET`/`PUT`/`DELETE /control/faults` (JSON [`Faults`]; `PUT` replaces every fault, fields
//! left out are cleared, and answers once the faults are in force), `POST /control/reset`
//! (clears the store and the counters, faults stay), `POST /control/delete` (removes entries,
//! as if Loki had lost them: JSON `{"tenant": "fake", "entries": [{"timestamp": "<ns>",
//! "line": "…"}]}`, `tenant` defaulting to `fake`; answers `{"removed": n}`), `GET
//! /control/stats` (JSON [`Stats`](super::Stats)) and `GET /metrics`.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::faults::{Faults, FaultsError};
use super::server::{metrics, Server};
use super::tenant::FAKE_TENANT;

/// The control API's routes.
pub(crate) fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route(
            "/control/faults",
            get(get_faults).put(put_faults).delete(delete_faults),
        )
        .route("/control/reset", post(reset))
        .route("/control/delete", post(delete_entries))
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

/// The body of `POST /control/delete`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteRequest {
    /// The tenant (`fake` when auth is off, the default).
    #[serde(default = "fake_tenant")]
    tenant: String,
    /// The entries to remove.
    entries: Vec<DeleteEntry>,
}

/// One entry to remove: its timestamp (ns since the epoch, as a string as in Loki's JSON, or a
/// number) and its line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteEntry {
    timestamp: NanosText,
    line: String,
}

/// Nanoseconds, written as a string or as a number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum NanosText {
    Text(String),
    Number(i64),
}

#[derive(Debug, Serialize)]
struct Removed {
    removed: usize,
}

fn fake_tenant() -> String {
    FAKE_TENANT.to_owned()
}

async fn delete_entries(
    State(server): State<Arc<Server>>,
    body: Result<Json<DeleteRequest>, JsonRejection>,
) -> Response {
    let request = match body {
        Ok(Json(request)) => request,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{}\n", e.body_text())).into_response(),
    };
    let mut entries = Vec::with_capacity(request.entries.len());
    for (i, e) in request.entries.into_iter().enumerate() {
        let ts = match e.timestamp {
            NanosText::Number(n) => n,
            NanosText::Text(t) => match t.parse::<i64>() {
                Ok(n) => n,
                Err(_) => {
                    return (
                        StatusCode::BAD_REQUEST,
                        format!(
                            "entries[{i}].timestamp {t:?} is not nanoseconds since the epoch\n"
                        ),
                    )
                        .into_response()
                }
            },
        };
        entries.push((ts, e.line));
    }
    let removed = server.receiver().remove_entries(&request.tenant, &entries);
    tracing::info!(tenant = %request.tenant, asked = entries.len(), removed, "entries removed");
    Json(Removed { removed }).into_response()
}

async fn stats(State(server): State<Arc<Server>>) -> Response {
    Json(server.receiver().metrics.stats()).into_response()
}
