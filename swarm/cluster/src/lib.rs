//! skep's remote warm pools: a role's agents on other hosts, reached over
//! NATS. A `skep worker` serves its local pools on one queue group per role;
//! an orchestrator calls a `remote = true` role through [`RemoteClient`],
//! which the core's `Swarm` takes as its [`skep_swarm::RemoteCalls`].
//! docs/cluster.md explains the topology, the subjects and what is retried.
//!
//! # Layout
//! - `subjects.rs`: the subjects and headers of the wire, in one place.
//! - `connect.rs`: connecting with `[cluster]`'s URL, credentials (config or environment) and TLS.
//! - `wire.rs`: a call's reply on the wire, and its mapping to and from `SwarmError`.
//! - `client.rs`: the orchestrator's side: one remote call, its retry rule and its cancellation.
//! - `broadcast.rs`: broadcast over a remote role: every worker's agents, gathered by the heartbeats' list.
//! - `inbox.rs`: the orchestrator's one reply inbox, routing each message to its call.
//! - `orchestrator.rs`: starting a swarm whose remote roles reach its config's cluster.
//! - `worker.rs`: the worker's side: serving local pools by role, capacity, cancellation, drain.
//! - `heartbeat.rs`: what a worker says about itself every interval, and the table of workers seen.
//! - `error.rs`: `ClusterError`, what can go wrong connecting and serving.

mod broadcast;
mod client;
mod connect;
mod error;
mod heartbeat;
mod inbox;
mod orchestrator;
mod requests;
mod subjects;
mod wire;
mod worker;

pub use client::RemoteClient;
pub use connect::{ENV_CREDS, ENV_PASSWORD, ENV_TOKEN, ENV_USER, connect, redact_url};
pub use error::ClusterError;
pub use heartbeat::{Heartbeat, Workers};
pub use orchestrator::{StartError, start_swarm};
pub use skep_swarm::{RemoteAgent, RemoteWorker, RoleLoad};
pub use subjects::Subjects;
pub use worker::{DrainReport, Worker, WorkerOptions};
