//! External services: when `E2E_KAFKA_BOOTSTRAP_SERVERS` or `E2E_LOKI_URL` is set, the suites
//! use that Kafka or that Loki instead of starting their own tansu or receiver. GitLab's `e2e`
//! job sets both to its job services, a real Kafka and a real Loki; `scripts/test.sh --only
//! e2e-external` sets them to a tansu and a receiver it starts apart.
//!
//! Each test still gets fresh topics, a fresh group and an `environment` label of its own, so
//! tests share the services without seeing each other's records, and every record is still
//! checked one by one, through Loki's query API (`/loki/api/v1/query_range`).
//!
//! A scenario that needs what only the harness can do (restart the broker, inject faults into
//! the receiver) cannot run against a service it does not own: it asks [`skipped`], which
//! prints why it does not run and tells the test to end there. Only then: in the default mode,
//! where every service is the harness's, nothing is skipped.

/// Names the Kafka bootstrap servers to use instead of a tansu of the harness.
pub const KAFKA_ENV: &str = "E2E_KAFKA_BOOTSTRAP_SERVERS";

/// Names the base URL of the Loki to use instead of a receiver of the harness.
pub const LOKI_ENV: &str = "E2E_LOKI_URL";

/// A service the suites can use from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Kafka ([`KAFKA_ENV`]).
    Kafka,
    /// Loki ([`LOKI_ENV`]).
    Loki,
}

impl Service {
    /// The variable that makes this service external.
    pub fn env_var(self) -> &'static str {
        match self {
            Service::Kafka => KAFKA_ENV,
            Service::Loki => LOKI_ENV,
        }
    }

    /// The external service's address (bootstrap servers, or a URL without a trailing `/`),
    /// when its variable is set and not empty.
    pub fn external(self) -> Option<String> {
        std::env::var(self.env_var())
            .ok()
            .map(|value| value.trim().trim_end_matches('/').to_owned())
            .filter(|value| !value.is_empty())
    }
}

/// Whether a scenario that needs the harness's own `service` (for the reason `why`) must be
/// skipped: `true` when that service is external, after printing the scenario, the reason and
/// the variable that made it so (the e2e nextest profile shows every test's output).
pub fn skipped(service: Service, scenario: &str, why: &str) -> bool {
    match service.external() {
        None => false,
        Some(address) => {
            eprintln!(
                "e2e: SKIPPED in external mode: {scenario}: {why}; {} is set ({address}), so \
                 this run has no {service:?} of its own",
                service.env_var()
            );
            true
        }
    }
}
