//! Where the product binaries are. An integration test of this package cannot use Cargo's
//! `CARGO_BIN_EXE_*` of other packages, so the binaries are taken from the test executable's
//! profile folder (`target/<profile>/deps/<test>` → `target/<profile>/<name>`), where
//! `cargo build --bins` puts them, unless a variable names them.

use std::path::{Path, PathBuf};

use crate::Error;

/// Names the `producer` binary to test instead of the one next to the test executable.
pub const PRODUCER_BIN_ENV: &str = "LOGPIPE_PRODUCER_BIN";
/// Names the `consumer` binary to test instead of the one next to the test executable.
pub const CONSUMER_BIN_ENV: &str = "LOGPIPE_CONSUMER_BIN";

/// The `producer` binary.
pub fn producer() -> Result<PathBuf, Error> {
    locate("producer", PRODUCER_BIN_ENV)
}

/// The `consumer` binary.
pub fn consumer() -> Result<PathBuf, Error> {
    locate("consumer", CONSUMER_BIN_ENV)
}

/// The binary `name`: the path in `env` when set, else the file `name` in the profile folder of
/// the running test executable. Fails, saying to run `cargo build --bins`, when it is missing.
pub fn locate(name: &str, env: &str) -> Result<PathBuf, Error> {
    if let Some(path) = std::env::var_os(env) {
        return existing(name, PathBuf::from(path), format!("from {env}"), env);
    }
    let exe = std::env::current_exe().map_err(Error::io("cannot find the test executable"))?;
    let path = beside_test_executable(&exe, name).unwrap_or_else(|| PathBuf::from(name));
    existing(name, path, format!("next to {}", exe.display()), env)
}

/// `<profile>/<name>` for a test executable at `<profile>/deps/<test>`.
pub fn beside_test_executable(exe: &Path, name: &str) -> Option<PathBuf> {
    let deps = exe.parent()?;
    let profile = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent()?
    } else {
        deps
    };
    Some(profile.join(name))
}

fn existing(name: &str, path: PathBuf, how: String, env: &str) -> Result<PathBuf, Error> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::BinaryMissing {
            name: name.to_owned(),
            path,
            how,
            env: env.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binary_is_looked_for_in_the_profile_folder_of_the_test() {
        let exe = Path::new("/t/debug/deps/ingest-0123abcd");
        assert_eq!(
            beside_test_executable(exe, "producer"),
            Some(PathBuf::from("/t/debug/producer"))
        );
        let exe = Path::new("/t/release/ingest");
        assert_eq!(
            beside_test_executable(exe, "consumer"),
            Some(PathBuf::from("/t/release/consumer"))
        );
    }

    #[test]
    fn a_missing_binary_error_says_how_to_build_it() {
        let e = existing(
            "producer",
            PathBuf::from("/nonexistent/producer"),
            "x".into(),
            "V",
        )
        .expect_err("missing");
        let text = e.to_string();
        assert!(
            text.contains("cargo build --bins") && text.contains('V'),
            "{text}"
        );
    }
}
