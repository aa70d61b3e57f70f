//! Benchmarks for skep.
//!
//! The benches live in `benches/`; `docs/benchmarks.md` has the figures.
//! The two binaries are the child processes they talk to over pipes:
//! `bridge-echo` (a bridge `Server` with one raw `echo` method) and
//! `raw-echo` (stdin copied to stdout, the floor).
