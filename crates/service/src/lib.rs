//! What the producer and the consumer share, and nothing else: layered [`config`] loading,
//! [`telemetry`] (logging), the [`admin`] HTTP server (`/metrics`, `/healthz`, `/readyz`),
//! [`shutdown`] signals and the container [`healthcheck`].

pub mod admin;
pub mod config;
pub mod healthcheck;
pub mod shutdown;
pub mod telemetry;
