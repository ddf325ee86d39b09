//! Where the workspace's own binaries are, for integration tests of another package (which
//! cannot use Cargo's `CARGO_BIN_EXE_*`): the path in an override variable when set, else the
//! test executable's profile folder (`target/<profile>/deps/<test>` → `target/<profile>/<name>`),
//! where `cargo build --bins` (or `cargo nextest run --workspace`) puts them.

use std::path::{Path, PathBuf};

/// A binary is not where it was looked for.
#[derive(Debug, thiserror::Error)]
#[error(
    "the `{name}` binary is not at {path} ({how}): run `cargo build --bins` first \
     (scripts/test.sh runs `cargo nextest run --workspace`, which builds it), or set {env}"
)]
pub struct BinaryNotFound {
    /// The binary's name.
    pub name: String,
    /// Where it was looked for.
    pub path: PathBuf,
    /// How that place was chosen.
    pub how: String,
    /// The variable that overrides the place.
    pub env: String,
}

/// The binary `name`: the path in the variable `env` when set, else `name` in the profile
/// folder of the running test executable.
pub fn workspace_binary(name: &str, env: &str) -> Result<PathBuf, BinaryNotFound> {
    let overridden = std::env::var_os(env).map(PathBuf::from);
    match std::env::current_exe() {
        Ok(exe) => locate(name, env, overridden, &exe),
        Err(e) => Err(BinaryNotFound {
            name: name.to_owned(),
            path: PathBuf::from(name),
            how: format!("cannot find the test executable: {e}"),
            env: env.to_owned(),
        }),
    }
}

/// [`workspace_binary`] with the override and the test executable given.
pub fn locate(
    name: &str,
    env: &str,
    overridden: Option<PathBuf>,
    test_exe: &Path,
) -> Result<PathBuf, BinaryNotFound> {
    let (path, how) = match overridden {
        Some(path) => (path, format!("from {env}")),
        None => (
            beside_test_executable(test_exe, name),
            format!("next to {}", test_exe.display()),
        ),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(BinaryNotFound {
            name: name.to_owned(),
            path,
            how,
            env: env.to_owned(),
        })
    }
}

/// `<profile>/<name>` for a test executable at `<profile>/deps/<test>` (or `<profile>/<test>`).
fn beside_test_executable(exe: &Path, name: &str) -> PathBuf {
    let Some(dir) = exe.parent() else {
        return PathBuf::from(name);
    };
    let profile = if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    profile.join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binary_is_looked_for_in_the_profile_folder_of_the_test() {
        assert_eq!(
            beside_test_executable(Path::new("/t/debug/deps/ingest-0123abcd"), "producer"),
            PathBuf::from("/t/debug/producer")
        );
        assert_eq!(
            beside_test_executable(Path::new("/t/release/ingest"), "consumer"),
            PathBuf::from("/t/release/consumer")
        );
    }

    #[test]
    fn finds_a_binary_two_levels_above_the_test_executable() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("deps")).expect("deps dir");
        std::fs::write(dir.path().join("consumer"), b"").expect("fake binary");
        let exe = dir.path().join("deps").join("chaos-0123");
        let found = locate("consumer", "LOGPIPE_CONSUMER_BIN", None, &exe).expect("found");
        assert_eq!(found, dir.path().join("consumer"));
    }

    #[test]
    fn a_missing_binary_names_the_build_step_and_the_override() {
        let dir = tempfile::tempdir().expect("temp dir");
        let exe = dir.path().join("deps").join("pipeline-0123");
        let message = locate("producer", "LOGPIPE_PRODUCER_BIN", None, &exe)
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
        let found = locate("producer", "V", Some(custom.clone()), exe).expect("found");
        assert_eq!(found, custom);
        let message = locate("producer", "V", Some(dir.path().join("absent")), exe)
            .expect_err("missing override")
            .to_string();
        assert!(message.contains("from V"), "{message}");
    }
}
