//! Test harness of the log pipeline.

pub mod binaries;
pub mod broker;
pub mod gen;
pub mod loki;
pub mod mock;
mod process;
pub mod prometheus;
