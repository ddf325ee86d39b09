//! Where the `producer` and `consumer` binaries under test are.
//!
//! An integration test of this package cannot use `CARGO_BIN_EXE_*` of other packages, so the
//! binaries are looked up next to the test executable (`target/<profile>/deps/<test>` →
//! `target/<profile>/<binary>`), where `cargo build --bins` and `cargo nextest run --workspace`
//! put them; `LOGPIPE_PRODUCER_BIN` / `LOGPIPE_CONSUMER_BIN` override the lookup.

use std::path::PathBuf;

use crate::error::Result;

/// A binary of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    /// `producer` (crates/producer).
    Producer,
    /// `consumer` (crates/consumer).
    Consumer,
}

impl Binary {
    /// The file name.
    pub fn name(self) -> &'static str {
        match self {
            Binary::Producer => "producer",
            Binary::Consumer => "consumer",
        }
    }

    /// The environment variable that overrides the lookup.
    pub fn env_var(self) -> &'static str {
        match self {
            Binary::Producer => "LOGPIPE_PRODUCER_BIN",
            Binary::Consumer => "LOGPIPE_CONSUMER_BIN",
        }
    }

    /// The binary's path: the override when set, else next to the test executable. Fails with
    /// the build step to run when the file is missing.
    pub fn path(self) -> Result<PathBuf> {
        Ok(testkit::binaries::workspace_binary(
            self.name(),
            self.env_var(),
        )?)
    }
}
