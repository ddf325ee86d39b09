//! The `--follow` checkpoint (DESIGN.md, "Delivery semantics"): which file (device, inode and a
//! fingerprint of its first bytes) and how far into it every record was acknowledged by Kafka.
//! Written atomically (temporary file, synced, renamed over the old one) so a crash leaves the old
//! or the new checkpoint, never a torn one.
//!
//! It never names an offset past a record Kafka did not acknowledge, so a restart skips nothing.
//! It may lag behind the acknowledgements, though: `--follow` writes it as they advance it, while
//! reading at most every 100 ms (or every 10,000 acknowledged records), while waiting for the
//! file to grow as soon as they come in, and at shutdown
//! ([`CHECKPOINT_INTERVAL`](super::committer::CHECKPOINT_INTERVAL)), never once per record. After a SIGKILL the records
//! after the last write are read again, and those Kafka already stored (found from the
//! partitions' offsets the checkpoint carries, [`resume`](super::resume)) are not sent again; after
//! SIGTERM/SIGINT nothing is read again.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Bytes at the start of a file that its fingerprint covers (fewer when the checkpointed offset
/// is smaller).
pub(crate) const FINGERPRINT_BYTES: u64 = 256;

/// A checkpoint that cannot be read or written.
#[derive(Debug, Error)]
pub enum CheckpointError {
    /// Reading or writing failed.
    #[error("checkpoint {path}: {source}")]
    Io {
        /// The checkpoint file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file is not a checkpoint.
    #[error("checkpoint {path} is not valid ({source}); remove it to start the input from the beginning")]
    Corrupt {
        /// The checkpoint file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
}

/// A file's identity: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub inode: u64,
}

impl FileId {
    /// The identity of an open file or a path's metadata.
    pub fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            dev: meta.dev(),
            inode: meta.ino(),
        }
    }
}

/// Where to resume: every record before `offset` of the file `id` was acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Device number of the file.
    pub dev: u64,
    /// Inode number of the file.
    pub inode: u64,
    /// Byte offset of the first record not yet acknowledged (the start of a line).
    pub offset: u64,
    /// 1-based line number at `offset`.
    pub line: u64,
    /// Index of the record at `offset` among the file's records.
    pub index: u64,
    /// Number of leading bytes the fingerprint covers.
    pub fingerprint_len: u64,
    /// FNV-1a 64 hash of the leading bytes, in hex.
    pub fingerprint: String,
    /// Per partition of the topic, an offset at or before the first message of any record
    /// after `offset`: where a restart after a crash looks for records Kafka stored after this
    /// checkpoint was written (`follow::resume`). Empty in checkpoints of earlier versions
    /// (which then resume at-least-once).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kafka_from: Vec<super::resume::PartitionOffset>,
}

impl Checkpoint {
    /// The checkpointed file's identity.
    pub fn file_id(&self) -> FileId {
        FileId {
            dev: self.dev,
            inode: self.inode,
        }
    }

    /// A checkpoint for `file` (identity `id`) at `offset`/`line`/`index`, fingerprinting the
    /// file's leading bytes.
    pub(crate) fn at(
        file: &File,
        id: FileId,
        offset: u64,
        line: u64,
        index: u64,
    ) -> io::Result<Self> {
        let len = offset.min(FINGERPRINT_BYTES);
        let fingerprint = fingerprint(file, len)?.unwrap_or_default();
        Ok(Self {
            dev: id.dev,
            inode: id.inode,
            offset,
            line,
            index,
            fingerprint_len: len,
            fingerprint,
            kafka_from: Vec::new(),
        })
    }

    /// The same checkpoint with the partitions' offsets of [`Checkpoint::kafka_from`].
    pub(crate) fn with_kafka_from(mut self, offsets: &[super::resume::PartitionOffset]) -> Self {
        self.kafka_from = offsets.to_vec();
        self
    }

    /// True when `file`'s leading bytes still match the fingerprint (it was not replaced by a
    /// file that reused the inode, nor truncated and rewritten).
    pub(crate) fn matches(&self, file: &File) -> bool {
        fingerprint(file, self.fingerprint_len)
            .ok()
            .flatten()
            .is_some_and(|f| f == self.fingerprint)
    }

    /// Reads the checkpoint at `path`; `None` when there is none.
    pub fn load(path: &Path) -> Result<Option<Self>, CheckpointError> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CheckpointError::Io {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|source| CheckpointError::Corrupt {
                path: path.to_owned(),
                source,
            })
    }

    /// Writes the checkpoint to `path` atomically: a temporary file next to it, synced, then
    /// renamed over it. One synced write: callers throttle how often they store.
    pub(crate) fn store(&self, path: &Path) -> Result<(), CheckpointError> {
        let io_err = |source| CheckpointError::Io {
            path: path.to_owned(),
            source,
        };
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut json = serde_json::to_vec(self).map_err(|e| io_err(io::Error::other(e)))?;
        json.push(b'\n');
        let mut f = File::create(&tmp).map_err(io_err)?;
        f.write_all(&json).map_err(io_err)?;
        f.sync_all().map_err(io_err)?;
        std::fs::rename(&tmp, path).map_err(io_err)
    }
}

/// FNV-1a 64 of the first `len` bytes of `file`, hex; `None` when the file is shorter.
fn fingerprint(file: &File, len: u64) -> io::Result<Option<String>> {
    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], got as u64) {
            Ok(0) => return Ok(None),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in &buf {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    Ok(Some(format!("{h:016x}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_checkpoint_loads_back_and_matches_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("app.log");
        std::fs::write(&data, "line one\nline two\n").unwrap();
        let f = File::open(&data).unwrap();
        let id = FileId::of(&f.metadata().unwrap());
        let c = Checkpoint::at(&f, id, 9, 2, 1).unwrap();
        let path = dir.path().join("ck");
        c.store(&path).unwrap();
        assert_eq!(Checkpoint::load(&path).unwrap(), Some(c.clone()));
        assert!(c.matches(&f));
        std::fs::write(&data, "other content\n").unwrap();
        assert!(!c.matches(&File::open(&data).unwrap()));
    }

    #[test]
    fn partition_offsets_round_trip_and_a_checkpoint_without_them_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("app.log");
        std::fs::write(&data, "line one\n").unwrap();
        let f = File::open(&data).unwrap();
        let id = FileId::of(&f.metadata().unwrap());
        let offsets = [super::super::resume::PartitionOffset {
            partition: 2,
            offset: 41,
        }];
        let c = Checkpoint::at(&f, id, 9, 2, 1)
            .unwrap()
            .with_kafka_from(&offsets);
        let path = dir.path().join("ck");
        c.store(&path).unwrap();
        assert_eq!(
            Checkpoint::load(&path).unwrap().unwrap().kafka_from,
            offsets
        );
        // Written by a version before the offsets: loads, with none (the restart re-sends).
        let old = r#"{"dev":1,"inode":2,"offset":9,"line":2,"index":1,"fingerprint_len":9,"fingerprint":"00"}"#;
        std::fs::write(&path, old).unwrap();
        assert!(Checkpoint::load(&path)
            .unwrap()
            .unwrap()
            .kafka_from
            .is_empty());
    }

    #[test]
    fn a_missing_checkpoint_is_none_and_a_corrupt_one_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ck");
        assert_eq!(Checkpoint::load(&path).unwrap(), None);
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(
            Checkpoint::load(&path),
            Err(CheckpointError::Corrupt { .. })
        ));
    }
}
