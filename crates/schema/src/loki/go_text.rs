//! Times and sizes printed the way Loki (Go) prints them in its error texts, so that the test
//! receiver's answers and the pre-flight's reasons carry Loki's exact words:
//! `time.RFC3339` (`2026-12-05T07:05:41Z`), `time.Time.String()`
//! (`2026-12-05 05:53:41.357469 +0000 UTC`), Prometheus' `model.Time` (seconds with the
//! milliseconds as a fraction) and Loki's `flagext.ByteSize` (`64KB`, `6000B`).

use crate::timestamp::civil_from_nanos;

/// `time.Unix(0, nanos).UTC().Format(time.RFC3339)`: whole seconds, `Z`.
pub fn rfc3339_seconds(nanos: i64) -> String {
    let (y, mo, d, h, mi, s, _) = civil_from_nanos(nanos);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `time.Unix(0, nanos).UTC().String()`: the fraction without trailing zeros (none when zero),
/// then ` +0000 UTC`.
pub fn time_string(nanos: i64) -> String {
    let (y, mo, d, h, mi, s, ns) = civil_from_nanos(nanos);
    let mut out = format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}");
    if ns > 0 {
        let frac = format!("{ns:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push_str(" +0000 UTC");
    out
}

/// Milliseconds since the epoch of `nanos` as Prometheus' `model.TimeFromUnixNano` computes
/// them (truncated toward zero, so -1 ns is 0 ms).
pub fn model_time_millis(nanos: i64) -> i64 {
    nanos / 1_000_000
}

/// A `model.Time` (milliseconds) as it prints: seconds, with the milliseconds as a fraction
/// without trailing zeros (`0`, `1567296000`, `1567296000.123`, `-5`).
pub fn model_time(millis: i64) -> String {
    let secs = millis / 1000;
    let ms = (millis % 1000).unsigned_abs();
    let sign = if millis < 0 && secs == 0 { "-" } else { "" };
    if ms == 0 {
        return format!("{sign}{secs}");
    }
    let frac = format!("{ms:03}");
    format!("{sign}{secs}.{}", frac.trim_end_matches('0'))
}

/// A byte count as Loki's `flagext.ByteSize` prints it (the `datasize` package): in the largest
/// binary unit that divides it exactly, with `KB`, `MB`… meaning powers of 1024 (`64KB`,
/// `3MB`, `6000B`).
pub fn byte_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 6] = [
        ("EB", 1 << 60),
        ("PB", 1 << 50),
        ("TB", 1 << 40),
        ("GB", 1 << 30),
        ("MB", 1 << 20),
        ("KB", 1 << 10),
    ];
    if bytes == 0 {
        return "0B".to_owned();
    }
    for (suffix, unit) in UNITS {
        if bytes.is_multiple_of(unit) {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    format!("{bytes}B")
}

/// Parses a size as Loki's `flagext.ByteSize` does: a number with an optional unit `B`, `KB`,
/// `MB`, `GB`, `TB`, `PB` or `EB` (powers of 1024; `K`, `KIB`… accepted too), case-insensitive.
pub fn parse_byte_size(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_uppercase();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..digits].parse().ok()?;
    let unit = t[digits..].trim();
    let shift = match unit {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        "P" | "PB" | "PIB" => 50,
        "E" | "EB" | "EIB" => 60,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_796_450_021_357_469_000;

    #[test]
    fn prints_times_as_go() {
        assert_eq!(rfc3339_seconds(T), "2026-12-05T05:53:41Z");
        assert_eq!(time_string(T), "2026-12-05 05:53:41.357469 +0000 UTC");
        assert_eq!(
            time_string(T + 1),
            "2026-12-05 05:53:41.357469001 +0000 UTC"
        );
        assert_eq!(time_string(1_000_000_000), "1970-01-01 00:00:01 +0000 UTC");
        assert_eq!(rfc3339_seconds(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn prints_model_times_as_prometheus() {
        assert_eq!(model_time(model_time_millis(0)), "0");
        assert_eq!(model_time(model_time_millis(-1)), "0");
        assert_eq!(model_time(1_567_296_000_000), "1567296000");
        assert_eq!(model_time(1_567_296_000_120), "1567296000.12");
        assert_eq!(model_time(-5_000), "-5");
        assert_eq!(model_time(-500), "-0.5");
    }

    #[test]
    fn prints_and_parses_sizes_as_loki() {
        assert_eq!(byte_size(65_536), "64KB");
        assert_eq!(byte_size(6000), "6000B");
        assert_eq!(byte_size(3 << 20), "3MB");
        assert_eq!(byte_size(1536), "1536B");
        assert_eq!(parse_byte_size("64KB"), Some(65_536));
        assert_eq!(parse_byte_size("128MB"), Some(128 << 20));
        assert_eq!(parse_byte_size("1048576"), Some(1_048_576));
        assert_eq!(parse_byte_size("3 mb"), Some(3 << 20));
        assert_eq!(parse_byte_size("lots"), None);
    }
}
