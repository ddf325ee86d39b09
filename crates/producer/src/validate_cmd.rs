//! `producer validate PATH`: reads a file (JSON array or NDJSON) without Kafka and prints the
//! counts per reason and the first errors with their positions, as `PATH:LINE: record N:
//! reason: message`. Exit 0 when every record is valid, 65 when some are not, 66 when the file
//! cannot be read.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Write};
use std::path::Path;

use schema::{ReadError, RecordReader};

/// Every record is valid.
pub(crate) const EXIT_VALID: u8 = 0;
/// Some records are invalid (`EX_DATAERR`).
pub(crate) const EXIT_INVALID: u8 = 65;
/// The file cannot be read (`EX_NOINPUT`).
pub(crate) const EXIT_UNREADABLE: u8 = 66;

/// The error's message without its position (printed separately).
fn message(e: &ReadError) -> String {
    match e {
        ReadError::Invalid { source, .. } => source.to_string(),
        ReadError::TooLarge { size, limit, .. } => {
            format!("record is {size} bytes, over the {limit}-byte limit")
        }
        ReadError::Truncated { what, .. } => format!("input ends inside {what}"),
        ReadError::Syntax { detail, .. } => (*detail).to_owned(),
        ReadError::Io { source, .. } => format!("read failed: {source}"),
    }
}

/// Validates `path`, printing the report to `out` and problems opening it to `err`; returns the
/// exit code.
pub fn run(
    path: &Path,
    max_record_bytes: usize,
    max_listed: usize,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<u8> {
    let name = path.display();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            writeln!(err, "{name}: cannot read: {e}")?;
            return Ok(EXIT_UNREADABLE);
        }
    };
    let mut reader = RecordReader::with_max_record_bytes(
        BufReader::with_capacity(256 * 1024, file),
        max_record_bytes,
    );
    let mut valid = 0u64;
    let mut invalid = 0u64;
    let mut reasons: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut unreadable = false;
    while let Some(item) = reader.next_record() {
        match item {
            Ok(_) => valid += 1,
            Err(e) => {
                if matches!(e, ReadError::Io { .. }) {
                    unreadable = true;
                }
                invalid += 1;
                let reason = e.reason().as_str();
                *reasons.entry(reason).or_default() += 1;
                if invalid as usize <= max_listed {
                    let p = e.position();
                    writeln!(
                        out,
                        "{name}:{}: record {}: {reason}: {}",
                        p.line,
                        p.index,
                        message(&e)
                    )?;
                }
            }
        }
    }
    if invalid as usize > max_listed {
        writeln!(
            out,
            "... {} more invalid records",
            invalid as usize - max_listed
        )?;
    }
    writeln!(
        out,
        "{name}: {} records, {valid} valid, {invalid} invalid",
        valid + invalid
    )?;
    for (reason, n) in &reasons {
        writeln!(out, "  {reason}: {n}")?;
    }
    Ok(if unreadable {
        EXIT_UNREADABLE
    } else if invalid > 0 {
        EXIT_INVALID
    } else {
        EXIT_VALID
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str =
        r#"{"timestamp":"2026-01-01T00:00:00Z","level":"info","service":"a","message":"m"}"#;

    fn validate(content: &str) -> (u8, String) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in.json");
        std::fs::write(&p, content).unwrap();
        let mut out = Vec::new();
        let code = run(&p, 1 << 20, 10, &mut out, &mut io::sink()).unwrap();
        (code, String::from_utf8(out).unwrap())
    }

    #[test]
    fn a_valid_file_exits_0() {
        let (code, out) = validate(&format!("{GOOD}\n{GOOD}\n"));
        assert_eq!(code, EXIT_VALID);
        assert!(out.contains("2 records, 2 valid, 0 invalid"), "{out}");
    }

    #[test]
    fn invalid_records_are_listed_with_positions_and_exit_65() {
        let bad = GOOD.replace("info", "loud");
        let (code, out) = validate(&format!("{GOOD}\n{bad}\n"));
        assert_eq!(code, EXIT_INVALID);
        assert!(out.contains(":2: record 1: invalid_level: "), "{out}");
        assert!(out.contains("  invalid_level: 1"), "{out}");
    }

    #[test]
    fn a_missing_file_exits_66() {
        let mut err = Vec::new();
        let code = run(
            Path::new("/nonexistent/x.json"),
            1 << 20,
            10,
            &mut io::sink(),
            &mut err,
        )
        .unwrap();
        assert_eq!(code, EXIT_UNREADABLE);
        assert!(String::from_utf8(err).unwrap().contains("cannot read"));
    }
}
