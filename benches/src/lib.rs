//! Benchmarks for skep.
