//! Helpers shared by the end-to-end suites in `tests/`: the real `producer` and `consumer`
//! binaries run as processes against a real tansu broker, the Loki-compatible receiver and a
//! real Prometheus (all from `testkit`), or against an external Kafka and Loki
//! ([`external`]), and the checks of what arrives.
//!
//! - [`pipeline::Pipeline`]: Kafka, fresh topics and group, Loki, service environments;
//! - [`loki::Loki`]: the records a test finds in Loki, through its query API;
//! - [`testkit::service::ServiceProcess`]: one `producer` or `consumer` process (SIGKILL,
//!   SIGTERM, restart, `/metrics`), never left running; [`testkit::topic`] reads a topic back;
//! - [`scraped::ScrapedPipeline`]: the whole pipeline scraped by Prometheus;
//! - [`records`]: inputs and the exactly-once and field-by-field checks;
//! - [`audit::CommitAudit`]: committed offsets never ahead of delivered records;
//! - [`promql`], [`grafana`], [`queries`]: the PromQL of deploy/ run against real data.

pub mod audit;
pub mod bins;
pub mod error;
pub mod external;
pub mod grafana;
pub mod kafka;
pub mod loki;
pub mod pipeline;
pub mod promql;
pub mod queries;
pub mod records;
pub mod scraped;
pub mod wait;

pub use error::{Error, Result};
