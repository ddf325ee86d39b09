//! The file `--follow` reads: opened where the checkpoint says (finishing a rotated-away file
//! first), read by a [`RecordReader`] that holds a partial last line until its newline arrives
//! ([`RecordReader::hold_partial_lines`]), and the [`Mark`]s of how far it got.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use schema::reader::Format;
use schema::{ReadError, RecordReader};

use super::checkpoint::{Checkpoint, FileId};
use super::resume::PartitionOffset;
use super::FollowError;
use crate::batch::Batch;

/// Read buffer: bytes read per system call at most.
const READ_BUFFER: usize = 1024 * 1024;

/// A point in a followed file: the file and the position of the next unread line.
#[derive(Debug, Clone)]
pub(super) struct Mark {
    /// The file.
    pub(super) file: Arc<File>,
    /// Its identity.
    pub(super) id: FileId,
    /// Byte offset of the next unread line.
    pub(super) offset: u64,
    /// Its line number.
    pub(super) line: u64,
    /// Its record index.
    pub(super) index: u64,
    /// The topic's high watermarks read before the mark was made: at or before the first
    /// message of any record after it.
    pub(super) kafka_from: Arc<Vec<PartitionOffset>>,
}

/// An open file read through a shared handle (the marks keep it open for the checkpoint's
/// fingerprint).
#[derive(Debug)]
struct SharedFile(Arc<File>);

impl Read for SharedFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.0).read(buf)
    }
}

/// The file being read.
pub(super) struct Tail {
    /// The path it was opened by.
    pub(super) path: PathBuf,
    file: Arc<File>,
    /// Its identity.
    pub(super) id: FileId,
    reader: RecordReader<BufReader<SharedFile>>,
    /// A rotated-away file to finish, then switch to the followed path.
    pub(super) rotated: bool,
}

/// What [`Tail::read`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reading {
    /// It moved on (records, rejected records or blank lines).
    Advanced,
    /// Nothing new: at the end of the file, or inside a line whose newline is still missing.
    AtEnd,
}

impl Tail {
    /// Opens `path` at `offset`, the start of line `line` and record `index`; records over
    /// `max_record_bytes` are rejected without being held.
    pub(super) fn open(
        path: &Path,
        offset: u64,
        line: u64,
        index: u64,
        max_record_bytes: usize,
    ) -> io::Result<Self> {
        let mut file = File::open(path)?;
        let id = FileId::of(&file.metadata()?);
        file.seek(SeekFrom::Start(offset))?;
        let file = Arc::new(file);
        let input = BufReader::with_capacity(READ_BUFFER, SharedFile(Arc::clone(&file)));
        let mut reader = RecordReader::with_max_record_bytes(input, max_record_bytes);
        reader.resume_at(offset, line, index);
        reader.hold_partial_lines(true);
        Ok(Self {
            path: path.to_owned(),
            file,
            id,
            reader,
            rotated: false,
        })
    }

    /// Where the next unread line starts.
    pub(super) fn offset(&self) -> u64 {
        self.reader.position().offset
    }

    /// Bytes read from the file so far: past [`Tail::offset`] by a partial line held.
    pub(super) fn read_to(&self) -> u64 {
        self.reader.offset()
    }

    /// The mark of the next unread line.
    pub(super) fn mark(&self, kafka_from: Arc<Vec<PartitionOffset>>) -> Mark {
        let p = self.reader.position();
        Mark {
            file: Arc::clone(&self.file),
            id: self.id,
            offset: p.offset,
            line: p.line,
            index: p.index,
            kafka_from,
        }
    }

    /// Reads records into `batch` (cleared first) until it is full or nothing more can be read
    /// now. A read error of the file ends following it.
    pub(super) fn read(&mut self, batch: &mut Batch) -> Result<Reading, FollowError> {
        batch.clear();
        let before = self.reader.position();
        while !batch.is_full() {
            match self.reader.next_record() {
                None => break,
                Some(Err(ReadError::Io { source, .. })) => {
                    return Err(FollowError::Io {
                        path: self.path.clone(),
                        source,
                    })
                }
                Some(item) => batch.push(item),
            }
        }
        Ok(if self.reader.position() == before {
            Reading::AtEnd
        } else {
            Reading::Advanced
        })
    }

    /// Stops holding a partial last line: the file will not grow any more (it was rotated
    /// away), so the next [`Tail::read`] reads it as the last record.
    pub(super) fn finish(&mut self) {
        self.reader.hold_partial_lines(false);
    }
}

/// Opens where the checkpoint says, or the followed path from its start.
pub(super) fn start(
    path: &Path,
    checkpoint_path: &Path,
    max_record_bytes: usize,
) -> Result<Tail, FollowError> {
    let io_err = |source| FollowError::Io {
        path: path.to_owned(),
        source,
    };
    let open = |p: &Path, offset, line, index| {
        Tail::open(p, offset, line, index, max_record_bytes).map_err(io_err)
    };
    let current = File::open(path).map_err(io_err)?;
    refuse_json_array(&current, path)?;
    let current_id = FileId::of(&current.metadata().map_err(io_err)?);
    let Some(ck) = Checkpoint::load(checkpoint_path)? else {
        return open(path, 0, 1, 0);
    };
    let len = current.metadata().map_err(io_err)?.len();
    if ck.file_id() == current_id && ck.matches(&current) && len >= ck.offset {
        return open(path, ck.offset, ck.line, ck.index);
    }
    // The checkpointed file was rotated away: finish it first when it is still next to the path.
    if let Some(old) = find_by_id(path, ck.file_id()) {
        if let Ok(f) = File::open(&old) {
            if ck.matches(&f) {
                tracing::info!(file = %old.display(), offset = ck.offset, "finishing the rotated file of the checkpoint first");
                let mut t = open(&old, ck.offset, ck.line, ck.index)?;
                t.rotated = true;
                return Ok(t);
            }
        }
    }
    tracing::warn!(
        file = %path.display(),
        "the checkpointed file is gone or was replaced; reading the file from the start"
    );
    open(path, 0, 1, 0)
}

/// Bytes at the start of a followed file whose layout [`refuse_json_array`] looks at.
const HEAD_BYTES: usize = 512;

/// Refuses a file the reader takes for a JSON array ([`RecordReader::format`] of its first
/// [`HEAD_BYTES`]: a byte-order mark and blank space, then `[`): it cannot grow by appending.
fn refuse_json_array(file: &File, path: &Path) -> Result<(), FollowError> {
    use std::os::unix::fs::FileExt;
    let mut head = [0u8; HEAD_BYTES];
    let n = file
        .read_at(&mut head, 0)
        .map_err(|source| FollowError::Io {
            path: path.to_owned(),
            source,
        })?;
    let mut reader = RecordReader::new(&head[..n]);
    // Detecting the layout takes the first read; the record itself does not matter.
    let _ = reader.next_raw();
    if reader.format() == Some(Format::Array) {
        return Err(FollowError::NotNdjson(path.to_owned()));
    }
    Ok(())
}

/// A file next to `path` (same directory) with identity `id`.
fn find_by_id(path: &Path, id: FileId) -> Option<PathBuf> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::read_dir(dir).ok()?.flatten().find_map(|e| {
        let meta = e.metadata().ok()?;
        (meta.is_file() && FileId::of(&meta) == id).then(|| e.path())
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::batch::Item;

    fn record(seq: u64) -> String {
        format!(
            r#"{{"timestamp":"2026-01-02T03:04:05Z","level":"info","service":"api","message":"m","seq":{seq}}}"#
        )
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    /// (records, rejected reasons) of one read.
    fn read(tail: &mut Tail, batch: &mut Batch) -> (Reading, usize, Vec<&'static str>) {
        let reading = tail.read(batch).unwrap();
        let records = batch
            .items()
            .iter()
            .filter(|i| matches!(i, Item::Record(_)))
            .count();
        let rejected = batch
            .items()
            .iter()
            .filter_map(|i| match i {
                Item::Rejected(e) => Some(e.reason().as_str()),
                Item::Record(_) => None,
            })
            .collect();
        (reading, records, rejected)
    }

    /// What [`start`] makes of a followed file holding `content` (no checkpoint).
    fn start_on(content: &[u8]) -> (PathBuf, Result<Tail, FollowError>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        std::fs::write(&path, content).unwrap();
        let started = start(&path, &dir.path().join("ck.json"), 1 << 20);
        (path, started)
    }

    #[test]
    fn a_json_array_is_refused_naming_the_file() {
        let array = format!("[\n  {},\n  {}\n]\n", record(0), record(1));
        let (path, started) = start_on(array.as_bytes());
        match started {
            Err(e @ FollowError::NotNdjson(_)) => {
                assert!(matches!(&e, FollowError::NotNdjson(p) if *p == path));
                assert_eq!(
                    e.to_string(),
                    format!(
                        "{}: --follow needs NDJSON (one record per line), this file is a JSON array",
                        path.display()
                    )
                );
            }
            other => panic!("{:?}", other.map(|t| t.path)),
        }
    }

    #[test]
    fn a_json_array_after_a_byte_order_mark_and_blank_space_is_refused() {
        let array = format!("\u{feff}\r\n \t\n[{}]", record(0));
        let (path, started) = start_on(array.as_bytes());
        assert!(
            matches!(&started, Err(FollowError::NotNdjson(p)) if *p == path),
            "{:?}",
            started.map(|t| t.path)
        );
    }

    #[test]
    fn the_file_is_refused_exactly_when_the_reader_takes_it_for_an_array() {
        let r = record(0);
        let cases: [(&[u8], bool); 9] = [
            (b"", false),
            (b" \n\t\r\n", false),
            (b"[]", true),
            (b"\xEF\xBB\xBF[", true),
            (b"\n\n  [", true),
            (r.as_bytes(), false),
            // Not what the reader skips before the first record: the lines are NDJSON (invalid).
            (b"\n\xEF\xBB\xBF[", false),
            (b"\x0C[", false),
            (b"x[", false),
        ];
        for (content, array) in cases {
            let mut reader = RecordReader::new(content);
            let _ = reader.next_raw();
            assert_eq!(reader.format() == Some(Format::Array), array, "{content:?}");
            let (_, started) = start_on(content);
            assert_eq!(
                matches!(started, Err(FollowError::NotNdjson(_))),
                array,
                "{content:?}"
            );
            if !array {
                let tail = started.unwrap();
                assert_eq!((tail.offset(), tail.rotated), (0, false), "{content:?}");
            }
        }
    }

    #[test]
    fn a_partial_line_is_read_once_its_newline_arrives_and_marks_stop_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let (r0, r1) = (record(0), record(1));
        std::fs::write(&path, format!("{r0}\n\n{}", &r1[..20])).unwrap();
        let mut tail = Tail::open(&path, 0, 1, 0, 1 << 20).unwrap();
        let mut batch = Batch::new();
        assert_eq!(read(&mut tail, &mut batch), (Reading::Advanced, 1, vec![]));
        assert_eq!(read(&mut tail, &mut batch), (Reading::AtEnd, 0, vec![]));
        let mark = tail.mark(Arc::new(Vec::new()));
        assert_eq!(
            (mark.offset, mark.line, mark.index),
            (r0.len() as u64 + 2, 3, 1)
        );
        assert_eq!(
            tail.read_to(),
            r0.len() as u64 + 2 + 20,
            "the partial line was read"
        );
        append(&path, &format!("{}\n", &r1[20..]));
        assert_eq!(read(&mut tail, &mut batch), (Reading::Advanced, 1, vec![]));
        let mark = tail.mark(Arc::new(Vec::new()));
        let len = std::fs::metadata(&path).unwrap().len();
        assert_eq!((mark.offset, mark.line, mark.index), (len, 4, 2));
    }

    #[test]
    fn an_over_long_line_is_rejected_once_complete_and_the_next_one_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        std::fs::write(&path, "x".repeat(300)).unwrap();
        let mut tail = Tail::open(&path, 0, 1, 0, 200).unwrap();
        let mut batch = Batch::new();
        assert_eq!(read(&mut tail, &mut batch), (Reading::AtEnd, 0, vec![]));
        append(&path, &format!("{}\n{}\n", "x".repeat(300), record(0)));
        assert_eq!(
            read(&mut tail, &mut batch),
            (Reading::Advanced, 1, vec!["record_too_large"])
        );
    }

    #[test]
    fn a_finished_file_gives_its_last_line_without_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        std::fs::write(&path, format!("{}\n{}", record(0), record(1))).unwrap();
        let mut tail = Tail::open(&path, 0, 1, 0, 1 << 20).unwrap();
        let mut batch = Batch::new();
        assert_eq!(read(&mut tail, &mut batch), (Reading::Advanced, 1, vec![]));
        assert_eq!(read(&mut tail, &mut batch), (Reading::AtEnd, 0, vec![]));
        tail.finish();
        assert_eq!(read(&mut tail, &mut batch), (Reading::Advanced, 1, vec![]));
        assert_eq!(tail.offset(), std::fs::metadata(&path).unwrap().len());
    }
}
