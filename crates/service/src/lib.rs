//! What the producer and the consumer share, and nothing else: layered [`config`] loading and
//! the settings both have, [`telemetry`] (logging), the [`admin`] HTTP server (`/metrics`, `/healthz`, `/readyz`),
//! [`shutdown`] signals, the container [`healthcheck`] and the [`redact`]ion of credentials
//! inside values that are logged.

pub mod admin;
pub mod config;
pub mod healthcheck;
pub mod redact;
pub mod shutdown;
pub mod telemetry;
