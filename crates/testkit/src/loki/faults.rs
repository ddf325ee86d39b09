//! Injected faults: an outage (connections refused, or 503 on every push and on `/ready`), a
//! storm of error statuses, added latency and dropped connections. They make the failure modes
//! of a real Loki (LOKI.md, "Answers": 429, 5xx) reproducible in tests.
//!
//! Faults apply to pushes, and `unavailable` to `/ready` as well; queries, `/metrics` and the
//! control API are not affected, except by `refuse`, which closes the whole API port.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// How the receiver is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Outage {
    /// The API listener is closed, so connecting is refused; on recovery it is bound again on
    /// the same port.
    Refuse,
    /// The API answers 503 to every push and to `/ready`.
    Unavailable,
}

impl fmt::Display for Outage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outage::Refuse => "refuse",
            Outage::Unavailable => "unavailable",
        })
    }
}

/// A share of pushes answered with an error status instead of being processed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusStorm {
    /// The status, 400 to 599 (typically 429, 500, 502 or 503).
    pub code: u16,
    /// Share of pushes hit, 0 to 1.
    pub rate: f64,
    /// Value of the `Retry-After` header in seconds; no header when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

impl FromStr for StatusStorm {
    type Err = FaultsError;

    /// Parses `CODE:RATE[:RETRY_AFTER_SECS]`, e.g. `429:0.5:2` or `503:1`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || FaultsError::StormSyntax(s.to_owned());
        let mut parts = s.split(':');
        let code = parts
            .next()
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(syntax)?;
        let rate = parts
            .next()
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(syntax)?;
        let retry_after_secs = match parts.next() {
            Some(p) => Some(p.trim().parse().map_err(|_| syntax())?),
            None => None,
        };
        if parts.next().is_some() {
            return Err(syntax());
        }
        let storm = StatusStorm {
            code,
            rate,
            retry_after_secs,
        };
        storm.validate()?;
        Ok(storm)
    }
}

impl StatusStorm {
    fn validate(&self) -> Result<(), FaultsError> {
        if !(400..=599).contains(&self.code) {
            return Err(FaultsError::StormCode(self.code));
        }
        check_rate("status_storm.rate", self.rate)
    }
}

/// The faults in force. The default is none. As JSON (control API):
/// `{"outage":"unavailable","status_storm":{"code":429,"rate":0.5,"retry_after_secs":2},
/// "latency_ms":100,"drop_rate":0.1}`, every field optional.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// An outage, if any.
    pub outage: Option<Outage>,
    /// A status storm, if any.
    pub status_storm: Option<StatusStorm>,
    /// Latency added to every push before it is answered, in milliseconds. Default 0.
    pub latency_ms: u64,
    /// Share of pushes whose connection is closed without an answer, 0 to 1. Default 0.
    pub drop_rate: f64,
}

impl Faults {
    /// True when no fault is set.
    pub fn is_none(&self) -> bool {
        *self == Faults::default()
    }

    /// Checks codes and rates.
    pub fn validate(&self) -> Result<(), FaultsError> {
        if let Some(storm) = &self.status_storm {
            storm.validate()?;
        }
        check_rate("drop_rate", self.drop_rate)
    }
}

fn check_rate(what: &'static str, value: f64) -> Result<(), FaultsError> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(FaultsError::Rate { what, value })
    }
}

/// Faults that cannot be set.
#[derive(Debug, Error)]
pub enum FaultsError {
    /// A storm status outside 400..=599.
    #[error("status storm code {0} is not an error status (400 to 599)")]
    StormCode(u16),
    /// A share outside 0..=1.
    #[error("{what} must be between 0 and 1, got {value}")]
    Rate {
        /// The setting.
        what: &'static str,
        /// Its value.
        value: f64,
    },
    /// A `--status-storm` value that does not read as `CODE:RATE[:RETRY_AFTER]`.
    #[error("status storm {0:?} is not CODE:RATE[:RETRY_AFTER_SECS], e.g. 429:0.5:2")]
    StormSyntax(String),
    /// The API listener could not be bound again after a `refuse` outage.
    #[error("cannot bind the API listener again on {addr}")]
    Rebind {
        /// The address.
        addr: SocketAddr,
        /// Why binding failed.
        source: std::io::Error,
    },
    /// The receiver was shut down.
    #[error("the receiver is shut down")]
    ShutDown,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_storms() {
        assert_eq!(
            "429:0.5:2".parse::<StatusStorm>().unwrap(),
            StatusStorm {
                code: 429,
                rate: 0.5,
                retry_after_secs: Some(2)
            }
        );
        assert_eq!(
            "503:1".parse::<StatusStorm>().unwrap(),
            StatusStorm {
                code: 503,
                rate: 1.0,
                retry_after_secs: None
            }
        );
        for bad in [
            "",
            "429",
            "429:x",
            "200:1",
            "500:1.5",
            "500:1:2:3",
            "500:1:-2",
        ] {
            assert!(bad.parse::<StatusStorm>().is_err(), "{bad}");
        }
    }

    #[test]
    fn faults_read_from_partial_json_and_refuse_unknown_fields() {
        let f: Faults = serde_json::from_str(r#"{"outage":"refuse","latency_ms":5}"#).unwrap();
        assert_eq!(f.outage, Some(Outage::Refuse));
        assert_eq!(f.latency_ms, 5);
        assert_eq!(f.drop_rate, 0.0);
        assert!(serde_json::from_str::<Faults>(r#"{"outrage":"refuse"}"#).is_err());
        assert!(serde_json::from_str::<Faults>("{}").unwrap().is_none());
    }

    #[test]
    fn rejects_rates_outside_zero_to_one() {
        let f = Faults {
            drop_rate: 1.5,
            ..Faults::default()
        };
        assert!(f.validate().is_err());
        let f = Faults {
            drop_rate: f64::NAN,
            ..Faults::default()
        };
        assert!(f.validate().is_err());
    }
}
