//! A streaming reader of log records from any [`BufRead`]: detects a JSON array or NDJSON,
//! yields one record at a time with its [`Position`], and never holds more than one record
//! (capped, default 1 MiB) in memory.
//!
//! Errors carry the position of the record they concern. After a bad NDJSON line the reader
//! resumes at the next line; after a bad array element it resumes at the next element when the
//! array's structure allows it. Input that ends inside a record, bytes after the closing `]`, or
//! an I/O error end the stream.

use std::fmt;
use std::io::{self, BufRead};

use thiserror::Error;

use crate::record::LogRecord;
use crate::validate::{parse_record_bytes, Reason, RecordError};

/// Default cap on one record's size in bytes (1 MiB).
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1024 * 1024;

/// Where a record starts in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// 0-based index of the record among all records of the input (good and bad).
    pub index: u64,
    /// 1-based line on which the record starts.
    pub line: u64,
    /// Byte offset of the record's first byte from the start of the input.
    pub offset: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "record {} (line {}, byte {})",
            self.index, self.line, self.offset
        )
    }
}

/// The input layout, detected from its first non-blank byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON array of records: `[ {...}, {...} ]`.
    Array,
    /// One JSON record per line.
    Ndjson,
}

/// A problem found while reading, with its position.
#[derive(Debug, Error)]
pub enum ReadError {
    /// The record's bytes were read but it breaks the data contract.
    #[error("{position}: {source}")]
    Invalid {
        /// Where the record starts.
        position: Position,
        /// What is wrong with it.
        source: RecordError,
    },
    /// The record is over the size cap; it was skipped without being held in memory.
    #[error("{position}: record is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// Where the record starts.
        position: Position,
        /// Its size in bytes.
        size: u64,
        /// The cap.
        limit: usize,
    },
    /// The input ended inside a record or before the array was closed. Ends the stream.
    #[error("{position}: input ends inside {what}")]
    Truncated {
        /// Where the unfinished record (or the end of input) is.
        position: Position,
        /// What was left open.
        what: &'static str,
    },
    /// The array's structure is broken here (e.g. bytes after `]`). Ends the stream.
    #[error("{position}: {detail}")]
    Syntax {
        /// Where the unexpected byte is.
        position: Position,
        /// What was expected.
        detail: &'static str,
    },
    /// Reading failed. Ends the stream.
    #[error("{position}: read failed: {source}")]
    Io {
        /// How far reading got.
        position: Position,
        /// The I/O error.
        source: io::Error,
    },
}

impl ReadError {
    /// The reason code for metrics.
    pub fn reason(&self) -> Reason {
        match self {
            ReadError::Invalid { source, .. } => source.reason(),
            ReadError::TooLarge { .. } => Reason::RecordTooLarge,
            ReadError::Truncated { .. } => Reason::Truncated,
            ReadError::Syntax { .. } => Reason::InvalidJson,
            ReadError::Io { .. } => Reason::ReadFailed,
        }
    }

    /// Where the problem is.
    pub fn position(&self) -> Position {
        match self {
            ReadError::Invalid { position, .. }
            | ReadError::TooLarge { position, .. }
            | ReadError::Truncated { position, .. }
            | ReadError::Syntax { position, .. }
            | ReadError::Io { position, .. } => *position,
        }
    }

    /// True when the reader stops after this error.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            ReadError::Truncated { .. } | ReadError::Syntax { .. } | ReadError::Io { .. }
        )
    }
}

/// One record's raw bytes and where they start.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    /// Where the record starts.
    pub position: Position,
    /// The record's JSON text as read (not yet validated).
    pub bytes: &'a [u8],
    /// True when the record is the last one and no newline or `,`/`]` followed it.
    at_eof: bool,
}

/// One validated record, borrowed from the reader's buffer.
#[derive(Debug, Clone)]
pub struct ReadRecord<'a> {
    /// Where the record starts.
    pub position: Position,
    /// The validated, normalised record.
    pub record: LogRecord<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArrayState {
    /// Just after `[`.
    First,
    /// Just after `,`.
    AfterComma,
    /// Just after an element.
    AfterElement,
    /// After `]`.
    End,
}

/// An NDJSON line read up to the end of the input without its newline, held by a reader that
/// [holds partial lines](RecordReader::hold_partial_lines) until the rest arrives. Its bytes
/// so far are in the reader's buffer (none once it is over the size cap).
#[derive(Debug, Clone, Copy)]
struct PartialLine {
    /// Where the line starts.
    position: Position,
    /// Its length so far.
    len: u64,
    /// Over the size cap already: its bytes are dropped up to its newline.
    too_large: bool,
}

/// The streaming record reader. Call [`RecordReader::next_record`] until it returns `None`.
pub struct RecordReader<R> {
    inner: R,
    max_record_bytes: usize,
    format: Option<Format>,
    array: ArrayState,
    buf: Vec<u8>,
    line: u64,
    offset: u64,
    index: u64,
    finished: bool,
    /// Keep a last line without newline for later instead of reading it as the last record.
    hold_partial: bool,
    partial: Option<PartialLine>,
}

impl<R: BufRead> RecordReader<R> {
    /// A reader with the default 1 MiB record cap.
    pub fn new(inner: R) -> Self {
        Self::with_max_record_bytes(inner, DEFAULT_MAX_RECORD_BYTES)
    }

    /// A reader with a custom record cap in bytes.
    pub fn with_max_record_bytes(inner: R, max_record_bytes: usize) -> Self {
        Self {
            inner,
            max_record_bytes,
            format: None,
            array: ArrayState::First,
            buf: Vec::with_capacity(4096),
            line: 1,
            offset: 0,
            index: 0,
            finished: false,
            hold_partial: false,
            partial: None,
        }
    }

    /// The detected format (`None` before the first read or for empty input).
    pub fn format(&self) -> Option<Format> {
        self.format
    }

    /// Bytes consumed from the input so far: the offset just past the last record returned, or
    /// past a held partial line ([`RecordReader::hold_partial_lines`]).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Where the next record starts (index, line and byte offset): just past the last record
    /// returned and any blank lines after it, or at the start of a held partial line.
    pub fn position(&self) -> Position {
        match &self.partial {
            Some(p) => p.position,
            None => self.position_now(),
        }
    }

    /// For input that grows while it is read (a file being appended to, NDJSON only): when
    /// `hold` is true, a last line without its newline is not read as a record; the reader keeps
    /// it (at most the size cap in memory), returns `None` without finishing, and goes on with
    /// it when called again after more input arrived. When `hold` is false again (the input
    /// will not grow any more), the next call reads a held line as the last record.
    pub fn hold_partial_lines(&mut self, hold: bool) {
        self.hold_partial = hold;
    }

    /// Starts counting from a known point of the input, e.g. when resuming at a checkpoint
    /// (NDJSON only: the reader must sit at the start of a line).
    pub fn resume_at(&mut self, offset: u64, line: u64, index: u64) {
        self.offset = offset;
        self.line = line;
        self.index = index;
        self.format = Some(Format::Ndjson);
    }

    /// Reads and validates the next record.
    pub fn next_record(&mut self) -> Option<Result<ReadRecord<'_>, ReadError>> {
        let raw = match self.next_raw()? {
            Ok(raw) => raw,
            Err(e) => return Some(Err(e)),
        };
        let position = raw.position;
        let at_eof = raw.at_eof;
        Some(match parse_record_bytes(raw.bytes) {
            Ok(record) => Ok(ReadRecord { position, record }),
            Err(RecordError::InvalidJson { eof: true, .. }) if at_eof => {
                Err(ReadError::Truncated {
                    position,
                    what: "a record",
                })
            }
            Err(source) => Err(ReadError::Invalid { position, source }),
        })
    }

    /// Reads the next record's bytes without validating them.
    pub fn next_raw(&mut self) -> Option<Result<RawRecord<'_>, ReadError>> {
        if self.finished {
            return None;
        }
        if self.format.is_none() {
            match self.detect() {
                Ok(Some(f)) => self.format = Some(f),
                Ok(None) => {
                    // Growing input may still bring its first record.
                    self.finished = !self.hold_partial;
                    return None;
                }
                Err(e) => return Some(Err(self.fatal_io(e))),
            }
        }
        match self.format {
            Some(Format::Array) => self.next_array_element(),
            _ => self.next_line(),
        }
    }

    fn position_now(&self) -> Position {
        Position {
            index: self.index,
            line: self.line,
            offset: self.offset,
        }
    }

    fn fatal_io(&mut self, source: io::Error) -> ReadError {
        self.finished = true;
        ReadError::Io {
            position: self.position_now(),
            source,
        }
    }

    fn fatal(&mut self, e: ReadError) -> Option<Result<RawRecord<'_>, ReadError>> {
        self.finished = true;
        Some(Err(e))
    }

    /// Skips a UTF-8 byte-order mark and whitespace, then looks at the first byte.
    fn detect(&mut self) -> io::Result<Option<Format>> {
        let bom = b"\xEF\xBB\xBF";
        let head = fill(&mut self.inner)?;
        if head.starts_with(bom) {
            self.inner.consume(3);
            self.offset += 3;
        }
        Ok(match self.skip_ws()? {
            None => None,
            Some(b'[') => {
                self.inner.consume(1);
                self.offset += 1;
                Some(Format::Array)
            }
            Some(_) => Some(Format::Ndjson),
        })
    }

    /// Consumes whitespace and returns the next byte without consuming it.
    fn skip_ws(&mut self) -> io::Result<Option<u8>> {
        loop {
            let avail = fill(&mut self.inner)?;
            if avail.is_empty() {
                return Ok(None);
            }
            let mut n = 0;
            let mut found = None;
            for &c in avail {
                match c {
                    b'\n' => self.line += 1,
                    b' ' | b'\t' | b'\r' => {}
                    _ => {
                        found = Some(c);
                        break;
                    }
                }
                n += 1;
            }
            self.inner.consume(n);
            self.offset += n as u64;
            if found.is_some() {
                return Ok(found);
            }
        }
    }

    fn next_line(&mut self) -> Option<Result<RawRecord<'_>, ReadError>> {
        loop {
            let (position, mut len, mut too_large) = match self.partial.take() {
                Some(p) => (p.position, p.len, p.too_large),
                None => {
                    self.buf.clear();
                    (self.position_now(), 0, false)
                }
            };
            let mut newline = false;
            loop {
                let avail = match fill(&mut self.inner) {
                    Ok(a) => a,
                    Err(e) => return Some(Err(self.fatal_io(e))),
                };
                if avail.is_empty() {
                    break;
                }
                let (n, found) = match memchr::memchr(b'\n', avail) {
                    Some(i) => (i, true),
                    None => (avail.len(), false),
                };
                len += n as u64;
                if !too_large {
                    if self.buf.len() + n > self.max_record_bytes {
                        too_large = true;
                        self.buf.clear();
                    } else {
                        self.buf.extend_from_slice(&avail[..n]);
                    }
                }
                let consumed = n + usize::from(found);
                self.inner.consume(consumed);
                self.offset += consumed as u64;
                if found {
                    newline = true;
                    break;
                }
            }
            if !newline && self.hold_partial {
                if len > 0 {
                    self.partial = Some(PartialLine {
                        position,
                        len,
                        too_large,
                    });
                }
                return None;
            }
            if !newline && len == 0 {
                self.finished = true;
                return None;
            }
            if newline {
                self.line += 1;
            }
            if too_large {
                self.index += 1;
                return Some(Err(ReadError::TooLarge {
                    position,
                    size: len,
                    limit: self.max_record_bytes,
                }));
            }
            let blank = match self.buf.first() {
                Some(b'{') => false,
                _ => self.buf.iter().all(u8::is_ascii_whitespace),
            };
            if blank {
                if !newline {
                    self.finished = true;
                    return None;
                }
                continue;
            }
            self.index += 1;
            return Some(Ok(RawRecord {
                position,
                bytes: &self.buf,
                at_eof: !newline,
            }));
        }
    }

    fn next_array_element(&mut self) -> Option<Result<RawRecord<'_>, ReadError>> {
        loop {
            let next = match self.skip_ws() {
                Ok(n) => n,
                Err(e) => return Some(Err(self.fatal_io(e))),
            };
            let position = self.position_now();
            match (self.array, next) {
                (ArrayState::End, None) => {
                    self.finished = true;
                    return None;
                }
                (ArrayState::End, Some(_)) => {
                    return self.fatal(ReadError::Syntax {
                        position,
                        detail: "unexpected data after the closing `]` of the array",
                    });
                }
                (_, None) => {
                    return self.fatal(ReadError::Truncated {
                        position,
                        what: "the JSON array (no closing `]`)",
                    });
                }
                (ArrayState::AfterElement, Some(b',')) => {
                    self.consume_one();
                    self.array = ArrayState::AfterComma;
                }
                (ArrayState::AfterElement | ArrayState::First, Some(b']')) => {
                    self.consume_one();
                    self.array = ArrayState::End;
                }
                (ArrayState::AfterElement, Some(_)) => {
                    return self.fatal(ReadError::Syntax {
                        position,
                        detail: "expected `,` or `]` after an array element",
                    });
                }
                (ArrayState::AfterComma, Some(b']')) => {
                    self.consume_one();
                    self.array = ArrayState::End;
                    return Some(Err(ReadError::Syntax {
                        position,
                        detail: "trailing `,` before `]`",
                    }));
                }
                (ArrayState::First | ArrayState::AfterComma, Some(first)) => {
                    return self.scan_element(position, first);
                }
            }
        }
    }

    fn consume_one(&mut self) {
        self.inner.consume(1);
        self.offset += 1;
    }

    /// Copies one array element into `buf`, finding its end from the JSON structure.
    fn scan_element(
        &mut self,
        position: Position,
        first: u8,
    ) -> Option<Result<RawRecord<'_>, ReadError>> {
        self.buf.clear();
        self.index += 1;
        let container = matches!(first, b'{' | b'[');
        let mut depth: u32 = 0;
        let mut in_str = false;
        let mut esc = false;
        let mut len: u64 = 0;
        let mut too_large = false;
        loop {
            let avail = match fill(&mut self.inner) {
                Ok(a) => a,
                Err(e) => return Some(Err(self.fatal_io(e))),
            };
            if avail.is_empty() {
                return self.fatal(ReadError::Truncated {
                    position,
                    what: "a record",
                });
            }
            let mut end = None;
            let mut i = 0;
            while i < avail.len() {
                if in_str {
                    if esc {
                        esc = false;
                        i += 1;
                        continue;
                    }
                    // Skip the string's body to its next quote or backslash in one scan.
                    match memchr::memchr2(b'"', b'\\', &avail[i..]) {
                        None => i = avail.len(),
                        Some(k) => {
                            i += k;
                            if avail[i] == b'\\' {
                                esc = true;
                            } else {
                                in_str = false;
                            }
                            i += 1;
                        }
                    }
                    continue;
                }
                match avail[i] {
                    b'"' => in_str = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' if container => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            end = Some(i + 1);
                            break;
                        }
                    }
                    b'\n' => self.line += 1,
                    b',' | b']' | b' ' | b'\t' | b'\r' if !container && depth == 0 => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
                i += 1;
            }
            let n = end.unwrap_or(avail.len());
            len += n as u64;
            if !too_large {
                if self.buf.len() + n > self.max_record_bytes {
                    too_large = true;
                    self.buf.clear();
                } else {
                    self.buf.extend_from_slice(&avail[..n]);
                }
            }
            self.inner.consume(n);
            self.offset += n as u64;
            if end.is_some() {
                break;
            }
        }
        self.array = ArrayState::AfterElement;
        if too_large {
            return Some(Err(ReadError::TooLarge {
                position,
                size: len,
                limit: self.max_record_bytes,
            }));
        }
        Some(Ok(RawRecord {
            position,
            bytes: &self.buf,
            at_eof: false,
        }))
    }
}

/// `fill_buf`, retrying on `Interrupted`.
fn fill<R: BufRead>(r: &mut R) -> io::Result<&[u8]> {
    loop {
        match r.fill_buf() {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    r.fill_buf()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Cursor};

    const R1: &str =
        r#"{"timestamp":"2026-01-02T03:04:05Z","level":"info","service":"a","message":"one"}"#;
    const R2: &str =
        r#"{"timestamp":"2026-01-02T03:04:06Z","level":"warn","service":"b","message":"two"}"#;

    type Item = Result<(Position, String), (Position, Reason, bool)>;

    fn read_all_with(input: &[u8], cap: usize, chunk: usize) -> Vec<Item> {
        let r = BufReader::with_capacity(chunk, Cursor::new(input.to_vec()));
        let mut reader = RecordReader::with_max_record_bytes(r, cap);
        let mut out = Vec::new();
        while let Some(item) = reader.next_record() {
            out.push(match item {
                Ok(rec) => Ok((rec.position, rec.record.message.to_string())),
                Err(e) => Err((e.position(), e.reason(), e.is_fatal())),
            });
        }
        out
    }

    fn read_all(input: &str) -> Vec<Item> {
        read_all_with(input.as_bytes(), DEFAULT_MAX_RECORD_BYTES, 8192)
    }

    fn pos(index: u64, line: u64, offset: u64) -> Position {
        Position {
            index,
            line,
            offset,
        }
    }

    #[test]
    fn reads_ndjson_with_positions() {
        let input = format!("{R1}\n\n{R2}\n");
        let got = read_all(&input);
        assert_eq!(
            got,
            vec![
                Ok((pos(0, 1, 0), "one".into())),
                Ok((pos(1, 3, R1.len() as u64 + 2), "two".into())),
            ]
        );
    }

    #[test]
    fn reads_ndjson_without_final_newline_and_with_crlf() {
        let input = format!("{R1}\r\n{R2}");
        let got = read_all(&input);
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(Result::is_ok));
    }

    #[test]
    fn reads_a_pretty_printed_array_with_positions() {
        let input = format!("[\n  {R1},\n  {R2}\n]\n");
        let got = read_all(&input);
        assert_eq!(
            got,
            vec![
                Ok((pos(0, 2, 4), "one".into())),
                Ok((pos(1, 3, 4 + R1.len() as u64 + 4), "two".into())),
            ]
        );
    }

    #[test]
    fn reads_an_array_split_across_tiny_buffers() {
        let input = format!("\u{feff}[{R1},{R2}]");
        let got = read_all_with(input.as_bytes(), 1 << 20, 3);
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(Result::is_ok), "{got:?}");
    }

    #[test]
    fn resumes_at_the_next_line_after_a_bad_ndjson_line() {
        let input = format!("{R1}\nnot json\n{R2}\n");
        let got = read_all(&input);
        assert_eq!(got[0].as_ref().unwrap().1, "one");
        assert_eq!(
            got[1],
            Err((pos(1, 2, R1.len() as u64 + 1), Reason::InvalidJson, false))
        );
        assert_eq!(got[2].as_ref().unwrap().1, "two");
    }

    #[test]
    fn continues_after_an_invalid_array_element() {
        let bad = r#"{"timestamp":"x","level":"info","service":"a","message":"m"}"#;
        let input = format!("[{R1},{bad},{R2}]");
        let got = read_all(&input);
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[1],
            Err((
                pos(1, 1, R1.len() as u64 + 2),
                Reason::InvalidTimestamp,
                false
            ))
        );
        assert!(got[2].is_ok());
    }

    #[test]
    fn reports_non_object_array_elements() {
        let got = read_all(&format!("[1, \"s\", {R1}]"));
        assert_eq!(got[0], Err((pos(0, 1, 1), Reason::NotAnObject, false)));
        assert_eq!(got[1], Err((pos(1, 1, 4), Reason::NotAnObject, false)));
        assert!(got[2].is_ok());
    }

    #[test]
    fn reports_truncated_array_element_with_its_position() {
        let input = format!("[{R1},\n{{\"timestamp\":1,\"level\"");
        let got = read_all(&input);
        assert_eq!(
            got[1],
            Err((pos(1, 2, R1.len() as u64 + 3), Reason::Truncated, true))
        );
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn reports_unclosed_array() {
        let input = format!("[{R1}");
        let got = read_all(&input);
        assert_eq!(
            got[1],
            Err((pos(1, 1, R1.len() as u64 + 1), Reason::Truncated, true))
        );
    }

    #[test]
    fn reports_truncated_last_ndjson_line() {
        let input = format!("{R1}\n{{\"timestamp\":1,");
        let got = read_all(&input);
        assert_eq!(
            got[1],
            Err((pos(1, 2, R1.len() as u64 + 1), Reason::Truncated, true))
        );
    }

    #[test]
    fn reports_data_after_the_array() {
        let got = read_all(&format!("[{R1}] x"));
        assert!(got[0].is_ok());
        assert_eq!(
            got[1],
            Err((pos(1, 1, R1.len() as u64 + 3), Reason::InvalidJson, true))
        );
    }

    #[test]
    fn reports_missing_comma_between_elements() {
        let got = read_all(&format!("[{R1} {R2}]"));
        assert_eq!(got[1].as_ref().unwrap_err().1, Reason::InvalidJson);
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn reports_trailing_comma() {
        let got = read_all(&format!("[{R1},]"));
        assert!(got[0].is_ok());
        assert_eq!(got[1].as_ref().unwrap_err().1, Reason::InvalidJson);
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn skips_oversized_ndjson_line_and_continues() {
        let big = format!(
            r#"{{"timestamp":1,"level":"info","service":"a","message":"{}"}}"#,
            "x".repeat(300)
        );
        let input = format!("{R1}\n{big}\n{R2}\n");
        let got = read_all_with(input.as_bytes(), 200, 64);
        assert_eq!(
            got[1],
            Err((
                pos(1, 2, R1.len() as u64 + 1),
                Reason::RecordTooLarge,
                false
            ))
        );
        assert_eq!(got[2].as_ref().unwrap().1, "two");
    }

    #[test]
    fn skips_oversized_array_element_and_continues() {
        let big = format!(
            r#"{{"timestamp":1,"level":"info","service":"a","message":"{}"}}"#,
            "x".repeat(300)
        );
        let input = format!("[{R1},{big},{R2}]");
        let got = read_all_with(input.as_bytes(), 200, 64);
        assert_eq!(got[1].as_ref().unwrap_err().1, Reason::RecordTooLarge);
        assert_eq!(got[2].as_ref().unwrap().1, "two");
    }

    #[test]
    fn reports_invalid_utf8_with_position() {
        let mut input = format!("{R1}\n{R2}\n").into_bytes();
        let at = R1.len() + 1 + 70;
        input[at] = 0xC3;
        input[at + 1] = 0x28;
        let got = read_all_with(&input, 1 << 20, 8192);
        assert_eq!(
            got[1],
            Err((pos(1, 2, R1.len() as u64 + 1), Reason::InvalidUtf8, false))
        );
    }

    #[test]
    fn empty_and_blank_input_yield_nothing() {
        assert!(read_all("").is_empty());
        assert!(read_all(" \n\n ").is_empty());
        assert!(read_all("[]").is_empty());
        assert!(read_all(" [ \n ] \n").is_empty());
    }

    #[test]
    fn detects_the_format() {
        let mut r = RecordReader::new(Cursor::new(b"  [".to_vec()));
        let _ = r.next_raw();
        assert_eq!(r.format(), Some(Format::Array));
        let mut r = RecordReader::new(Cursor::new(R1.as_bytes().to_vec()));
        let _ = r.next_raw();
        assert_eq!(r.format(), Some(Format::Ndjson));
    }

    #[test]
    fn strings_containing_brackets_do_not_confuse_the_scanner() {
        let tricky = r#"{"timestamp":1,"level":"info","service":"a","message":"}]\",[{ \"x"}"#;
        let got = read_all(&format!("[{tricky},{R2}]"));
        assert_eq!(got[0].as_ref().unwrap().1, "}]\",[{ \"x");
        assert!(got[1].is_ok());
    }

    /// Input that grows while it is read, like a file being appended to.
    #[derive(Clone, Default)]
    struct Growing {
        data: std::rc::Rc<std::cell::RefCell<Vec<u8>>>,
        read: usize,
    }

    impl Growing {
        fn append(&self, bytes: &str) {
            self.data.borrow_mut().extend_from_slice(bytes.as_bytes());
        }
    }

    impl io::Read for Growing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let data = self.data.borrow();
            let n = buf.len().min(data.len() - self.read);
            buf[..n].copy_from_slice(&data[self.read..self.read + n]);
            self.read += n;
            Ok(n)
        }
    }

    fn tailing(input: &Growing, cap: usize) -> RecordReader<BufReader<Growing>> {
        let mut r =
            RecordReader::with_max_record_bytes(BufReader::with_capacity(16, input.clone()), cap);
        r.resume_at(0, 1, 0);
        r.hold_partial_lines(true);
        r
    }

    fn message(item: Option<Result<ReadRecord<'_>, ReadError>>) -> String {
        match item {
            Some(Ok(r)) => r.record.message.to_string(),
            Some(Err(e)) => panic!("{e}"),
            None => panic!("no record"),
        }
    }

    #[test]
    fn a_held_partial_line_is_read_once_its_newline_arrives() {
        let input = Growing::default();
        input.append(&format!("{R1}\n\n{}", &R2[..30]));
        let mut r = tailing(&input, 1 << 20);
        assert_eq!(message(r.next_record()), "one");
        assert!(r.next_record().is_none(), "the partial line is held");
        let second = pos(1, 3, R1.len() as u64 + 2);
        assert_eq!(
            r.position(),
            second,
            "the next record starts at the held line"
        );
        assert_eq!(
            r.offset(),
            R1.len() as u64 + 2 + 30,
            "its bytes are consumed"
        );
        assert!(r.next_record().is_none(), "still no newline");
        input.append(&format!("{}\n", &R2[30..]));
        match r.next_record() {
            Some(Ok(rec)) => {
                assert_eq!(rec.position, second);
                assert_eq!(rec.record.message, "two");
            }
            other => panic!("{other:?}"),
        }
        assert!(r.next_record().is_none());
        assert_eq!(r.position(), pos(2, 4, (R1.len() + R2.len()) as u64 + 3));
        input.append(&format!("{R1}\n"));
        assert_eq!(
            message(r.next_record()),
            "one",
            "reading goes on as the input grows"
        );
    }

    #[test]
    fn an_over_long_partial_line_is_reported_when_its_newline_arrives_without_being_kept() {
        let input = Growing::default();
        input.append(&"x".repeat(150));
        let mut r = tailing(&input, 100);
        assert!(r.next_record().is_none());
        assert!(r.buf.is_empty(), "the over-long bytes are not kept");
        input.append(&format!("{}\n{R1}\n", "y".repeat(100)));
        match r.next_record() {
            Some(Err(ReadError::TooLarge { position, size, .. })) => {
                assert_eq!(position, pos(0, 1, 0));
                assert_eq!(size, 250);
            }
            other => panic!("{other:?}"),
        }
        match r.next_record() {
            Some(Ok(rec)) => assert_eq!(rec.position, pos(1, 2, 251)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn once_holding_stops_a_held_line_is_read_as_the_last_record() {
        let input = Growing::default();
        input.append(R1);
        let mut r = tailing(&input, 1 << 20);
        assert!(r.next_record().is_none());
        r.hold_partial_lines(false);
        assert_eq!(message(r.next_record()), "one");
        assert!(r.next_record().is_none());

        let input = Growing::default();
        input.append(&R2[..30]);
        let mut r = tailing(&input, 1 << 20);
        assert!(r.next_record().is_none());
        r.hold_partial_lines(false);
        match r.next_record() {
            Some(Err(e)) => assert!(e.is_fatal() && e.position() == pos(0, 1, 0), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_holding_reader_of_empty_input_waits_for_its_first_record() {
        let input = Growing::default();
        let mut r = RecordReader::new(BufReader::new(input.clone()));
        r.hold_partial_lines(true);
        assert!(r.next_record().is_none());
        input.append(&format!("{R1}\n"));
        assert_eq!(message(r.next_record()), "one");
    }
}
