//! Where the product binaries are. An integration test of this package cannot use Cargo's
//! `CARGO_BIN_EXE_*` of other packages, so the binaries are taken from the test executable's
//! profile folder (`target/<profile>/deps/<test>` → `target/<profile>/<name>`), where
//! `cargo build --bins` puts them, unless a variable names them.

use std::path::PathBuf;

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
    Ok(testkit::binaries::workspace_binary(name, env)?)
}
