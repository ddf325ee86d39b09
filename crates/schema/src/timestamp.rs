//! Record timestamps: parsing RFC 3339 strings and epoch numbers, formatting as RFC 3339 UTC
//! with nanoseconds (the normalised form of DESIGN.md's data contract).
//!
//! Parsing is hand-written rather than delegated to a date library because it sits on the
//! producer's hot path (one call per record) and the accepted grammar is small.

use std::fmt;

use thiserror::Error;

/// Nanoseconds since the Unix epoch, UTC. Always within `1970-01-01T00:00:00Z ..= 2262-04-11`
/// (the range of an `i64` of nanoseconds, which is also what Loki stores).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// Why a timestamp was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TimestampError {
    /// The string is not RFC 3339 (`YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`).
    #[error("not an RFC 3339 timestamp: {0}")]
    Syntax(&'static str),
    /// The value parses but lies before 1970 or after 2262-04-11.
    #[error("timestamp outside 1970-01-01..2262-04-11")]
    OutOfRange,
}

impl TimestampError {
    /// A reason code for metrics and error reports.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Syntax(_) => "invalid_timestamp",
            Self::OutOfRange => "timestamp_out_of_range",
        }
    }
}

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// The form [`Timestamp::write_rfc3339`] fills in: a `0` stands for a digit.
const RFC3339_FORM: &[u8; Timestamp::RFC3339_LEN] = b"0000-00-00T00:00:00.000000000Z";

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Self = Self(0);

    /// Length in bytes of the RFC 3339 form [`Timestamp::write_rfc3339`] writes (always the
    /// same: every representable timestamp falls in years 1970 to 2262).
    pub const RFC3339_LEN: usize = 30;

    /// A timestamp from nanoseconds since the epoch; negative values are out of range.
    pub fn from_nanos(nanos: i64) -> Result<Self, TimestampError> {
        if nanos < 0 {
            return Err(TimestampError::OutOfRange);
        }
        Ok(Self(nanos))
    }

    /// The current wall-clock time.
    pub fn now() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Self(nanos)
    }

    /// Nanoseconds since the epoch.
    pub fn as_nanos(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch.
    pub fn seconds(self) -> i64 {
        self.0 / NANOS_PER_SEC
    }

    /// The sub-second part in nanoseconds (`0..1e9`).
    pub fn subsec_nanos(self) -> i32 {
        // The remainder of a non-negative value by 1e9 always fits.
        (self.0 % NANOS_PER_SEC) as i32
    }

    /// This timestamp shifted by `delta` nanoseconds, clamped to the valid range.
    pub fn saturating_add_nanos(self, delta: i64) -> Self {
        Self(self.0.saturating_add(delta).max(0))
    }

    /// Interprets an epoch number by magnitude: seconds below 1e11 (up to year 5138), then
    /// milliseconds below 1e14, microseconds below 1e17, nanoseconds above.
    pub fn from_epoch_f64(value: f64) -> Result<Self, TimestampError> {
        if !value.is_finite() || value < 0.0 {
            return Err(TimestampError::OutOfRange);
        }
        let scale = if value < 1e11 {
            1e9
        } else if value < 1e14 {
            1e6
        } else if value < 1e17 {
            1e3
        } else {
            1.0
        };
        let nanos = (value * scale).round();
        if nanos >= i64::MAX as f64 {
            return Err(TimestampError::OutOfRange);
        }
        Ok(Self(nanos as i64))
    }

    /// Like [`Timestamp::from_epoch_f64`] for integers, exact (no float rounding).
    pub fn from_epoch_u64(value: u64) -> Result<Self, TimestampError> {
        Self::from_epoch_decimal(value, "")
    }

    /// Like [`Timestamp::from_epoch_f64`] for a decimal `int.frac` (`frac` = the digits after
    /// the point), exact: fraction digits below a nanosecond are dropped.
    pub fn from_epoch_decimal(int: u64, frac: &str) -> Result<Self, TimestampError> {
        let (unit, frac_digits) = if int < 100_000_000_000 {
            (1_000_000_000_u64, 9)
        } else if int < 100_000_000_000_000 {
            (1_000_000, 6)
        } else if int < 100_000_000_000_000_000 {
            (1_000, 3)
        } else {
            (1, 0)
        };
        let mut sub: u64 = 0;
        let mut n = 0;
        for c in frac.bytes().take(frac_digits) {
            if !c.is_ascii_digit() {
                return Err(TimestampError::Syntax("number"));
            }
            sub = sub * 10 + u64::from(c - b'0');
            n += 1;
        }
        for _ in n..frac_digits {
            sub *= 10;
        }
        int.checked_mul(unit)
            .and_then(|v| v.checked_add(sub))
            .and_then(|n| i64::try_from(n).ok())
            .map(Self)
            .ok_or(TimestampError::OutOfRange)
    }

    /// Parses RFC 3339: `YYYY-MM-DD(T|t| )HH:MM:SS[.1-9 digits](Z|z|±HH:MM)`. Leap seconds
    /// (`:60`) are folded into the next second.
    pub fn parse_rfc3339(s: &str) -> Result<Self, TimestampError> {
        use TimestampError::Syntax;
        let b = s.as_bytes();
        if b.len() < 20 {
            return Err(Syntax("too short"));
        }
        let year = digits(b, 0, 4).ok_or(Syntax("year"))?;
        let month = digits(b, 5, 2).ok_or(Syntax("month"))?;
        let day = digits(b, 8, 2).ok_or(Syntax("day"))?;
        let hour = digits(b, 11, 2).ok_or(Syntax("hour"))?;
        let minute = digits(b, 14, 2).ok_or(Syntax("minute"))?;
        let second = digits(b, 17, 2).ok_or(Syntax("second"))?;
        if b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
            return Err(Syntax("separator"));
        }
        if !matches!(b[10], b'T' | b't' | b' ') {
            return Err(Syntax("date-time separator"));
        }
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return Err(Syntax("no such date"));
        }
        if hour > 23 || minute > 59 || second > 60 {
            return Err(Syntax("no such time"));
        }
        let mut i = 19;
        let mut frac_nanos: i64 = 0;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                if i - start < 9 {
                    frac_nanos = frac_nanos * 10 + i64::from(b[i] - b'0');
                }
                i += 1;
            }
            let n = i - start;
            if n == 0 {
                return Err(Syntax("empty fraction"));
            }
            for _ in n..9 {
                frac_nanos *= 10;
            }
        }
        let offset_secs: i64 = match b.get(i) {
            Some(b'Z' | b'z') => {
                i += 1;
                0
            }
            Some(&sign @ (b'+' | b'-')) => {
                let oh = digits(b, i + 1, 2).ok_or(Syntax("offset hour"))?;
                if b.get(i + 3) != Some(&b':') {
                    return Err(Syntax("offset separator"));
                }
                let om = digits(b, i + 4, 2).ok_or(Syntax("offset minute"))?;
                if oh > 23 || om > 59 {
                    return Err(Syntax("offset range"));
                }
                i += 6;
                let off = i64::from(oh) * 3600 + i64::from(om) * 60;
                if sign == b'+' {
                    off
                } else {
                    -off
                }
            }
            _ => return Err(Syntax("missing offset")),
        };
        if i != b.len() {
            return Err(Syntax("trailing characters"));
        }
        let days = days_from_civil(i64::from(year), month, day);
        let secs =
            days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)
                - offset_secs;
        if secs < 0 {
            return Err(TimestampError::OutOfRange);
        }
        secs.checked_mul(NANOS_PER_SEC)
            .and_then(|n| n.checked_add(frac_nanos))
            .map(Self)
            .ok_or(TimestampError::OutOfRange)
    }

    /// Appends the RFC 3339 UTC form with nine fraction digits, e.g.
    /// `2026-11-26T06:16:18.123456789Z`, to `out`.
    pub fn write_rfc3339(self, out: &mut Vec<u8>) {
        let mut buf = [0u8; Self::RFC3339_LEN];
        self.write_rfc3339_into(&mut buf);
        out.extend_from_slice(&buf);
    }

    /// Writes the form of [`Timestamp::write_rfc3339`] into `buf`; it always takes exactly
    /// [`Timestamp::RFC3339_LEN`] bytes.
    pub fn write_rfc3339_into(self, buf: &mut [u8; Self::RFC3339_LEN]) {
        let secs = self.0.div_euclid(NANOS_PER_SEC);
        let nanos = self.0.rem_euclid(NANOS_PER_SEC);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        *buf = *RFC3339_FORM;
        put(&mut buf[0..4], y as u64);
        put(&mut buf[5..7], u64::from(m));
        put(&mut buf[8..10], u64::from(d));
        put(&mut buf[11..13], (sod / 3600) as u64);
        put(&mut buf[14..16], ((sod / 60) % 60) as u64);
        put(&mut buf[17..19], (sod % 60) as u64);
        put(&mut buf[20..29], nanos as u64);
    }

    /// True when `bytes` have the shape [`Timestamp::write_rfc3339`] writes
    /// (`YYYY-MM-DDTHH:MM:SS.NNNNNNNNNZ`, digits where digits go).
    pub fn is_rfc3339_form(bytes: &[u8]) -> bool {
        bytes.len() == RFC3339_FORM.len()
            && bytes.iter().zip(RFC3339_FORM).all(|(&b, &f)| match f {
                b'0' => b.is_ascii_digit(),
                _ => b == f,
            })
    }

    /// The RFC 3339 UTC form as a `String`.
    pub fn to_rfc3339(self) -> String {
        let mut v = Vec::with_capacity(30);
        self.write_rfc3339(&mut v);
        // write_rfc3339 only writes ASCII digits and separators.
        String::from_utf8(v).unwrap_or_default()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// "00" to "99", for writing two digits at a time.
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

fn put(dst: &mut [u8], mut v: u64) {
    let mut i = dst.len();
    while i >= 2 {
        let d = (v % 100) as usize * 2;
        dst[i - 2..i].copy_from_slice(&PAIRS[d..d + 2]);
        v /= 100;
        i -= 2;
    }
    if i == 1 {
        dst[0] = b'0' + (v % 10) as u8;
    }
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let s = b.get(at..at + n)?;
    let mut v = 0u32;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

fn is_leap(y: u32) -> bool {
    (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400)
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The UTC calendar date and time of `nanos` (which may be negative): year, month, day, hour,
/// minute, second and nanosecond.
pub(crate) fn civil_from_nanos(nanos: i64) -> (i64, u32, u32, u32, u32, u32, u32) {
    let secs = nanos.div_euclid(NANOS_PER_SEC);
    let sub = nanos.rem_euclid(NANOS_PER_SEC) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let (y, m, d) = civil_from_days(days);
    (y, m, d, sod / 3600, (sod / 60) % 60, sod % 60, sub)
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> i64 {
        Timestamp::parse_rfc3339(s).unwrap().as_nanos()
    }

    #[test]
    fn parses_utc_with_nanoseconds() {
        assert_eq!(ts("1970-01-01T00:00:01.000000001Z"), 1_000_000_001);
        assert_eq!(ts("2026-11-26T06:16:18Z"), 1_795_673_778 * NANOS_PER_SEC);
    }

    #[test]
    fn parses_offsets_into_utc() {
        assert_eq!(ts("2026-11-26T07:16:18+01:00"), ts("2026-11-26T06:16:18Z"));
        assert_eq!(ts("2026-11-26T01:46:18-04:30"), ts("2026-11-26T06:16:18Z"));
    }

    #[test]
    fn accepts_short_fractions_lowercase_and_space_separator() {
        assert_eq!(
            ts("2026-01-02 03:04:05.5z"),
            ts("2026-01-02T03:04:05.500000000Z")
        );
    }

    #[test]
    fn truncates_fractions_beyond_nanoseconds() {
        assert_eq!(ts("1970-01-01T00:00:00.1234567891Z"), 123_456_789);
    }

    #[test]
    fn rejects_impossible_dates() {
        for bad in [
            "2026-02-30T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2025-02-29T00:00:00Z",
        ] {
            assert!(matches!(
                Timestamp::parse_rfc3339(bad),
                Err(TimestampError::Syntax(_))
            ));
        }
        assert!(Timestamp::parse_rfc3339("2024-02-29T00:00:00Z").is_ok());
    }

    #[test]
    fn rejects_missing_offset_and_trailing_text() {
        assert!(Timestamp::parse_rfc3339("2026-01-01T00:00:00").is_err());
        assert!(Timestamp::parse_rfc3339("2026-01-01T00:00:00Zjunk").is_err());
        assert!(Timestamp::parse_rfc3339("2026-01-01T00:00:00.Z").is_err());
    }

    #[test]
    fn rejects_dates_before_the_epoch_and_after_2262() {
        assert_eq!(
            Timestamp::parse_rfc3339("1969-12-31T23:59:59Z"),
            Err(TimestampError::OutOfRange)
        );
        assert_eq!(
            Timestamp::parse_rfc3339("2300-01-01T00:00:00Z"),
            Err(TimestampError::OutOfRange)
        );
    }

    #[test]
    fn epoch_magnitude_selects_the_unit() {
        let s = 1_700_000_000_u64;
        let want = 1_700_000_000 * NANOS_PER_SEC;
        assert_eq!(Timestamp::from_epoch_u64(s).unwrap().as_nanos(), want);
        assert_eq!(
            Timestamp::from_epoch_u64(s * 1000).unwrap().as_nanos(),
            want
        );
        assert_eq!(
            Timestamp::from_epoch_u64(s * 1_000_000).unwrap().as_nanos(),
            want
        );
        assert_eq!(
            Timestamp::from_epoch_u64(s * 1_000_000_000)
                .unwrap()
                .as_nanos(),
            want
        );
        assert_eq!(
            Timestamp::from_epoch_decimal(s, "25").unwrap().as_nanos(),
            want + 250_000_000
        );
        assert_eq!(
            Timestamp::from_epoch_decimal(s * 1000, "5")
                .unwrap()
                .as_nanos(),
            want + 500_000
        );
        assert_eq!(Timestamp::from_epoch_f64(1.7e9).unwrap().as_nanos(), want);
    }

    #[test]
    fn negative_epochs_are_out_of_range() {
        assert_eq!(
            Timestamp::from_epoch_f64(-1.0),
            Err(TimestampError::OutOfRange)
        );
        assert_eq!(Timestamp::from_nanos(-1), Err(TimestampError::OutOfRange));
    }

    #[test]
    fn formats_with_nine_fraction_digits() {
        let t = Timestamp::from_nanos(1_795_673_778_000_000_042).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-26T06:16:18.000000042Z");
        assert_eq!(
            Timestamp::EPOCH.to_rfc3339(),
            "1970-01-01T00:00:00.000000000Z"
        );
    }

    #[test]
    fn format_then_parse_round_trips() {
        for n in [0_i64, 1, 951_782_400_123_456_789, i64::MAX] {
            let t = Timestamp::from_nanos(n).unwrap();
            assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()).unwrap(), t);
        }
    }
}
