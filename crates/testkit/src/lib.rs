//! Test harness of the log pipeline.

pub mod gen;
