//! What a run did: records read, rejected (by reason), sent, and not delivered (by reason),
//! with the one-line summary an operator reads and the process exit code.

use std::collections::BTreeMap;
use std::fmt;

/// Exit code when some records were rejected as invalid (`EX_DATAERR`).
pub const EXIT_INVALID: u8 = 65;
/// Exit code when some records could not be delivered to Kafka (`EX_TEMPFAIL`).
pub const EXIT_UNDELIVERED: u8 = 75;

/// Counts of one run (or one source of a run).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Records read, valid or not.
    pub read: u64,
    /// Records rejected by the reader or validation, by reason.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Records acknowledged by Kafka.
    pub sent: u64,
    /// Records Kafka did not take, by reason (`message_too_large`, `delivery_failed`).
    pub failed: BTreeMap<&'static str, u64>,
    /// Records handed to Kafka whose fate is unknown at exit (shutdown timeout).
    pub undelivered: u64,
    /// True when a shutdown signal stopped reading early.
    pub interrupted: bool,
    /// True when `--strict` stopped reading at the first invalid record.
    pub stopped_strict: bool,
}

impl Report {
    /// Adds one rejected record.
    pub fn reject(&mut self, reason: &'static str) {
        *self.rejected.entry(reason).or_default() += 1;
    }

    /// Adds `n` failed records.
    pub fn fail(&mut self, reason: &'static str, n: u64) {
        if n > 0 {
            *self.failed.entry(reason).or_default() += n;
        }
    }

    /// All rejected records.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// All failed records.
    pub fn failed_total(&self) -> u64 {
        self.failed.values().sum()
    }

    /// True when every record read was acknowledged by Kafka.
    pub fn all_delivered(&self) -> bool {
        self.rejected_total() == 0
            && self.failed_total() == 0
            && self.undelivered == 0
            && !self.stopped_strict
    }

    /// The exit code of `producer run --once`: 0 when every record read was acknowledged,
    /// [`EXIT_UNDELIVERED`] when some were not delivered, [`EXIT_INVALID`] when some were
    /// rejected.
    pub fn exit_code(&self) -> u8 {
        if self.failed_total() > 0 || self.undelivered > 0 {
            EXIT_UNDELIVERED
        } else if self.rejected_total() > 0 || self.stopped_strict {
            EXIT_INVALID
        } else {
            0
        }
    }
}

fn reasons(f: &mut fmt::Formatter<'_>, m: &BTreeMap<&'static str, u64>) -> fmt::Result {
    if m.is_empty() {
        return Ok(());
    }
    f.write_str(" (")?;
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{k}: {v}")?;
    }
    f.write_str(")")
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "read {}, sent {}, rejected {}",
            self.read,
            self.sent,
            self.rejected_total()
        )?;
        reasons(f, &self.rejected)?;
        write!(f, ", failed {}", self.failed_total())?;
        reasons(f, &self.failed)?;
        write!(f, ", undelivered {}", self.undelivered)?;
        if self.interrupted {
            f.write_str(", interrupted by shutdown")?;
        }
        if self.stopped_strict {
            f.write_str(", stopped at the first invalid record (--strict)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_run_exits_0_and_says_so() {
        let r = Report {
            read: 3,
            sent: 3,
            ..Report::default()
        };
        assert_eq!(r.exit_code(), 0);
        assert_eq!(
            r.to_string(),
            "read 3, sent 3, rejected 0, failed 0, undelivered 0"
        );
    }

    #[test]
    fn rejected_and_failed_records_give_distinct_exit_codes_and_reasons() {
        let mut r = Report {
            read: 5,
            sent: 2,
            ..Report::default()
        };
        r.reject("invalid_level");
        r.reject("invalid_level");
        assert_eq!(r.exit_code(), EXIT_INVALID);
        r.fail("message_too_large", 1);
        assert_eq!(r.exit_code(), EXIT_UNDELIVERED);
        assert_eq!(
            r.to_string(),
            "read 5, sent 2, rejected 2 (invalid_level: 2), failed 1 (message_too_large: 1), undelivered 0"
        );
    }
}
