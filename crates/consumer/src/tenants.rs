//! Tenants: one Loki for many teams. A record's tenant comes from a configurable field
//! (`LOKI_TENANT_FIELD`) or is the fixed `LOKI_TENANT_ID`, and is sent as `X-Scope-OrgID` with
//! every push (LOKI.md, "Request"). A batch holds one tenant's records only, and each tenant has
//! its own back-off gate and in-flight limit, so one tenant's 429s or errors never delay
//! another's pushes; offsets still wait for every tenant's records below them.
//!
//! Metrics name at most `MAX_TENANT_SERIES` tenants; the rest are counted as `other`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use reqwest::header::HeaderValue;
use rustc_hash::FxHashMap;
use schema::loki::tenant::{check_tenant_id, TenantIdError};
use schema::LogRecord;
use tokio::sync::Semaphore;

use crate::config::ConsumerConfig;
use crate::metrics::Metrics;
use crate::retry::Gate;

/// The metric label of tenants beyond the series cap.
pub(crate) const OTHER_TENANT: &str = "other";

/// The metric label of pushes sent without a tenant (no `LOKI_TENANT_ID`, no field value).
pub(crate) const NO_TENANT: &str = "";

/// One tenant and its delivery state.
#[derive(Debug)]
pub(crate) struct Tenant {
    /// A small number, for keys that combine tenant and stream.
    pub(crate) index: u32,
    /// `X-Scope-OrgID`, or none.
    pub(crate) header: Option<HeaderValue>,
    /// The tenant's name for logs.
    pub(crate) name: Arc<str>,
    /// Its name in metrics (`other` beyond the cap).
    pub(crate) label: Arc<str>,
    /// Back-off after this tenant's pushes got no answer or a 5xx.
    pub(crate) gate: Gate,
    /// This tenant's pushes in flight.
    pub(crate) permits: Semaphore,
    /// This tenant's pushes Loki accepted so far.
    accepted: AtomicU64,
}

impl Tenant {
    /// Loki accepted one of this tenant's pushes.
    pub(crate) fn push_accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// This tenant's pushes Loki accepted so far (compare two readings).
    pub(crate) fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

/// Why a record has no tenant Loki would accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TenantRefused {
    /// The field's value.
    pub(crate) value: String,
    /// Why Loki would refuse it.
    pub(crate) error: TenantIdError,
}

/// Finds each record's tenant.
#[derive(Debug)]
pub(crate) struct Tenants {
    field: Option<String>,
    default: Arc<Tenant>,
    by_name: FxHashMap<Box<str>, Arc<Tenant>>,
    max_series: usize,
    named_series: usize,
    in_flight: usize,
    backoff: (std::time::Duration, std::time::Duration),
    metrics: Metrics,
}

impl Tenants {
    /// Tenants for these settings (`loki_tenant_id` validated at load); each tenant's metric
    /// series start at 0 when it is first seen.
    pub(crate) fn new(config: &ConsumerConfig, metrics: Metrics) -> Self {
        let backoff = (config.retry_min_backoff, config.retry_max_backoff);
        let fixed = config.loki_tenant_id.trim();
        let default = Arc::new(Tenant {
            index: 0,
            header: HeaderValue::from_str(fixed)
                .ok()
                .filter(|_| !fixed.is_empty()),
            name: Arc::from(fixed),
            label: Arc::from(if fixed.is_empty() { NO_TENANT } else { fixed }),
            gate: Gate::new(backoff.0, backoff.1),
            permits: Semaphore::new(config.max_in_flight_pushes),
            accepted: AtomicU64::new(0),
        });
        metrics.tenant_seen(&default.label);
        Self {
            field: Some(config.loki_tenant_field.trim().to_owned()).filter(|f| !f.is_empty()),
            default,
            by_name: FxHashMap::default(),
            max_series: config.max_tenant_series,
            named_series: 0,
            in_flight: config.max_in_flight_pushes,
            backoff,
            metrics,
        }
    }

    /// The record field tenants come from, if any.
    pub(crate) fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// The tenant of records without a tenant field value (the fixed tenant).
    #[cfg(test)]
    pub(crate) fn default_tenant(&self) -> &Arc<Tenant> {
        &self.default
    }

    /// A record's tenant: its field's value when a field is configured and the record has it,
    /// the fixed tenant otherwise.
    pub(crate) fn of(&mut self, record: &LogRecord<'_>) -> Result<&Arc<Tenant>, TenantRefused> {
        let Some(field) = &self.field else {
            return Ok(&self.default);
        };
        let Some(value) = record.field_str(field).filter(|v| !v.is_empty()) else {
            return Ok(&self.default);
        };
        if !self.by_name.contains_key(value.as_ref()) {
            if let Err(error) = check_tenant_id(&value) {
                return Err(TenantRefused {
                    value: value.into_owned(),
                    error,
                });
            }
            let label: Arc<str> = if self.named_series < self.max_series {
                self.named_series += 1;
                Arc::from(value.as_ref())
            } else {
                Arc::from(OTHER_TENANT)
            };
            self.metrics.tenant_seen(&label);
            let index = u32::try_from(self.by_name.len() + 1).unwrap_or(u32::MAX);
            let tenant = Arc::new(Tenant {
                index,
                // A valid tenant ID is a valid header value (ASCII, no control characters).
                header: HeaderValue::from_str(&value).ok(),
                name: Arc::from(value.as_ref()),
                label,
                gate: Gate::new(self.backoff.0, self.backoff.1),
                permits: Semaphore::new(self.in_flight),
                accepted: AtomicU64::new(0),
            });
            self.by_name.insert(value.as_ref().into(), tenant);
        }
        Ok(self.by_name.get(value.as_ref()).unwrap_or(&self.default))
    }

    /// Distinct tenants seen (the fixed one included).
    pub(crate) fn count(&self) -> usize {
        self.by_name.len() + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(extra: &str) -> String {
        format!(r#"{{"timestamp":1,"level":"info","service":"a","message":"m"{extra}}}"#)
    }

    fn tenants(config: &ConsumerConfig) -> Tenants {
        let metrics =
            Metrics::new(&prometheus::Registry::new(), "g", "t", false).expect("metrics register");
        Tenants::new(config, metrics)
    }

    fn config(field: &str, fixed: &str, max_series: usize) -> ConsumerConfig {
        ConsumerConfig {
            loki_tenant_field: field.into(),
            loki_tenant_id: fixed.into(),
            max_tenant_series: max_series,
            ..ConsumerConfig::default()
        }
    }

    #[test]
    fn without_a_field_every_record_has_the_fixed_tenant() {
        let mut t = tenants(&config("", "team-a", 10));
        let r = rec(r#","team":"team-b""#);
        let tenant = t.of(&schema::parse_record(&r).unwrap()).unwrap();
        assert_eq!(&*tenant.name, "team-a");
        assert_eq!(
            tenant.header.as_ref().map(|h| h.to_str().unwrap()),
            Some("team-a")
        );
        let none = tenants(&config("", "", 10));
        assert!(none.default_tenant().header.is_none(), "no header at all");
    }

    #[test]
    fn the_field_names_the_tenant_and_records_without_it_get_the_fixed_one() {
        let mut t = tenants(&config("team", "shared", 10));
        let b = rec(r#","team":"team-b""#);
        let tb = t.of(&schema::parse_record(&b).unwrap()).unwrap().clone();
        assert_eq!(&*tb.name, "team-b");
        assert_ne!(tb.index, 0);
        let again = t.of(&schema::parse_record(&b).unwrap()).unwrap().clone();
        assert!(Arc::ptr_eq(&tb, &again), "one state per tenant");
        let plain = rec("");
        assert_eq!(
            &*t.of(&schema::parse_record(&plain).unwrap()).unwrap().name,
            "shared"
        );
        assert_eq!(t.count(), 2);
    }

    #[test]
    fn a_value_loki_would_refuse_is_reported_not_sent() {
        let mut t = tenants(&config("team", "", 10));
        let bad = rec(r#","team":"a|b""#);
        let refused = t.of(&schema::parse_record(&bad).unwrap()).unwrap_err();
        assert_eq!(refused.error, TenantIdError::Multiple);
        assert_eq!(refused.value, "a|b");
    }

    #[test]
    fn tenants_beyond_the_series_cap_are_counted_as_other() {
        let mut t = tenants(&config("team", "", 2));
        let labels: Vec<String> = ["t1", "t2", "t3", "t4"]
            .iter()
            .map(|name| {
                let r = rec(&format!(r#","team":"{name}""#));
                t.of(&schema::parse_record(&r).unwrap())
                    .unwrap()
                    .label
                    .to_string()
            })
            .collect();
        assert_eq!(labels, ["t1", "t2", OTHER_TENANT, OTHER_TENANT]);
    }
}
