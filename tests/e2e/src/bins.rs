//! Where the `producer` and `consumer` binaries under test are.
//!
//! An integration test of this package cannot use `CARGO_BIN_EXE_*` of other packages, so the
//! binaries are looked up next to the test executable (`target/<profile>/deps/<test>` →
//! `target/<profile>/<binary>`), where `cargo build --bins` and `cargo nextest run --workspace`
//! put them; `LOGPIPE_PRODUCER_BIN` / `LOGPIPE_CONSUMER_BIN` override the lookup.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

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
        let exe = std::env::current_exe().map_err(Error::io("cannot find the test executable"))?;
        locate(
            self,
            std::env::var_os(self.env_var()).map(PathBuf::from),
            &exe,
        )
    }
}

/// The lookup itself, with its inputs passed in (unit-testable).
fn locate(binary: Binary, override_path: Option<PathBuf>, test_exe: &Path) -> Result<PathBuf> {
    let (path, how) = match override_path {
        Some(path) => (path, "from the environment"),
        None => {
            // target/<profile>/deps/<test binary> → target/<profile>/<binary>
            let profile_dir = test_exe.parent().and_then(Path::parent).ok_or_else(|| {
                Error::Invalid(format!(
                    "test executable {} is not in a target/<profile>/deps folder",
                    test_exe.display()
                ))
            })?;
            (
                profile_dir.join(binary.name()),
                "next to the test executable",
            )
        }
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::BinaryNotFound {
            binary: binary.name(),
            path: path.display().to_string(),
            how,
            env: binary.env_var(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_binary_two_levels_above_the_test_executable() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("deps")).expect("deps dir");
        std::fs::write(dir.path().join("consumer"), b"").expect("fake binary");
        let exe = dir.path().join("deps").join("chaos-0123");
        let found = locate(Binary::Consumer, None, &exe).expect("found");
        assert_eq!(found, dir.path().join("consumer"));
    }

    #[test]
    fn a_missing_binary_names_the_build_step_and_the_override() {
        let dir = tempfile::tempdir().expect("temp dir");
        let exe = dir.path().join("deps").join("pipeline-0123");
        let message = locate(Binary::Producer, None, &exe)
            .expect_err("missing")
            .to_string();
        assert!(message.contains("cargo build --bins"), "{message}");
        assert!(message.contains("LOGPIPE_PRODUCER_BIN"), "{message}");
    }

    #[test]
    fn the_environment_override_wins() {
        let dir = tempfile::tempdir().expect("temp dir");
        let custom = dir.path().join("my-producer");
        std::fs::write(&custom, b"").expect("fake binary");
        let exe = Path::new("/nonexistent/deps/test");
        let found = locate(Binary::Producer, Some(custom.clone()), exe).expect("found");
        assert_eq!(found, custom);
        let message = locate(Binary::Producer, Some(dir.path().join("absent")), exe)
            .expect_err("missing override")
            .to_string();
        assert!(message.contains("from the environment"), "{message}");
    }
}
