//! Criterion benchmarks of the producer's and consumer's hot paths in the schema crate.
#![allow(missing_docs)]

fn main() {}
