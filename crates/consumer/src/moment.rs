//! A moment given on the command line (`--since`, `--until`): an RFC 3339 time
//! (`2026-12-05T14:00:00Z`), a date (`2026-12-05`, midnight UTC), or a duration before now in
//! humantime's syntax (`90m`, `2h`, `7days`).

use std::time::Duration;

use schema::Timestamp;

/// A moment, absolute or relative to when the command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// A fixed time.
    At(Timestamp),
    /// This long before now.
    Ago(Duration),
}

impl Moment {
    /// Parses the command-line form; the error says what is accepted.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let full = if t.len() == 10 && t.as_bytes().get(4) == Some(&b'-') {
            format!("{t}T00:00:00Z")
        } else {
            t.to_owned()
        };
        if let Ok(at) = Timestamp::parse_rfc3339(&full) {
            return Ok(Moment::At(at));
        }
        humantime::parse_duration(t).map(Moment::Ago).map_err(|_| {
            format!(
                "{t:?} is neither an RFC 3339 time (2026-12-05T14:00:00Z), a date (2026-12-05) \
                 nor a duration before now (90m, 2h, 7days)"
            )
        })
    }

    /// The moment in nanoseconds since the epoch, relative ones counted back from `now`.
    pub fn resolve(self, now: Timestamp) -> i64 {
        match self {
            Moment::At(t) => t.as_nanos(),
            Moment::Ago(d) => now
                .as_nanos()
                .saturating_sub(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
        }
    }
}

/// Nanoseconds since the epoch as RFC 3339 (or the number when out of range).
pub(crate) fn rfc3339(nanos: i64) -> String {
    Timestamp::from_nanos(nanos).map_or_else(|_| nanos.to_string(), Timestamp::to_rfc3339)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_times_dates_and_durations_before_now() {
        let now = Timestamp::parse_rfc3339("2026-12-05T12:00:00Z").unwrap();
        let at = |s: &str| rfc3339(Moment::parse(s).unwrap().resolve(now));
        assert_eq!(
            at("2026-12-05T10:30:00+01:00"),
            "2026-12-05T09:30:00.000000000Z"
        );
        assert_eq!(at("2026-12-04"), "2026-12-04T00:00:00.000000000Z");
        assert_eq!(at("90m"), "2026-12-05T10:30:00.000000000Z");
        assert_eq!(at("2days"), "2026-12-03T12:00:00.000000000Z");
    }

    #[test]
    fn refuses_anything_else_saying_what_is_accepted() {
        let e = Moment::parse("yesterday").unwrap_err();
        assert!(e.contains("\"yesterday\"") && e.contains("RFC 3339"), "{e}");
        assert!(Moment::parse("2026-13-45").is_err());
    }
}
