//! Helpers shared by the security suites in `tests/`.
