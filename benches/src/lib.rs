//! Benchmarks for skep.
//!
//! The criterion benches live in `benches/`; `docs/benchmarks.md` has the
//! figures. The binaries: `bridge-echo` (a bridge `Server` with one raw
//! `echo` method), `raw-echo` (stdin copied to stdout, the floor),
//! `jsonrpsee-echo` (jsonrpsee's own method dispatch on a pipe, a peer) and
//! `compare` (the side-by-side runner, `docs/benchmarks.md`) and
//! `cluster-figures` (remote roles over NATS against a local pool and bare NATS). This library
//! holds what the runner computes without I/O (`summary`) and the raw
//! pipelined floor both the criterion bench and the runner use (`raw`).

pub mod raw;
pub mod summary;
