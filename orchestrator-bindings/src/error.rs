//! The one mapping from what can fail to JavaScript `Error` objects.
//!
//! Every rejection carries `code` (a stable string such as `SKEP_TIMEOUT`),
//! `rpcCode` (the JSON-RPC code the sidecar would answer with) and `data`
//! (what to look at), as documented in the package README.

use napi::JsValue;
use napi::bindgen_prelude::{Env, JsObjectValue, Object, Status};
use serde_json::Value;
use skep_bridge::{ErrorObjectOwned, code};
use skep_service::ObserveError;
use skep_swarm::SwarmError;
use skep_workflow::WorkflowError;

/// Why a call from JavaScript failed.
#[derive(Debug)]
pub enum Failure {
    /// The swarm answered with an error.
    Swarm(SwarmError),
    /// The caller's `AbortSignal` fired first.
    Aborted,
    /// An argument was not what the method takes.
    InvalidArg(String),
    /// The swarm could not be built (config file, TOML).
    Config(String),
    /// A workflow could not be loaded or run.
    Workflow(WorkflowError),
    /// The observe socket could not be served.
    Observe(ObserveError),
    /// A daemon answered with an error (`Swarm.connect`).
    Remote(ErrorObjectOwned),
    /// The daemon could not be reached, started, or went away.
    Daemon(String),
    /// The config's `[cluster]` could not be joined (a wrong token, no server).
    Cluster(skep_cluster::ClusterError),
}

impl From<SwarmError> for Failure {
    fn from(e: SwarmError) -> Self {
        Failure::Swarm(e)
    }
}

impl From<skep_cluster::StartError> for Failure {
    fn from(e: skep_cluster::StartError) -> Self {
        match e {
            skep_cluster::StartError::Cluster(e) => Failure::Cluster(e),
            skep_cluster::StartError::Swarm(e) => Failure::Swarm(e),
        }
    }
}

impl Failure {
    /// The stable string in `err.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Failure::Aborted => "SKEP_CANCELLED",
            Failure::InvalidArg(_) => "SKEP_INVALID_ARG",
            Failure::Config(_) => "SKEP_CONFIG",
            Failure::Workflow(_) => "SKEP_WORKFLOW",
            Failure::Observe(_) => "SKEP_OBSERVE",
            Failure::Cluster(_) => "SKEP_CLUSTER",
            Failure::Daemon(_) => "SKEP_CLOSED",
            Failure::Remote(e) => match e.code() {
                code::TIMEOUT => "SKEP_TIMEOUT",
                code::CIRCUIT_OPEN => "SKEP_CIRCUIT_OPEN",
                code::AGENT_CRASHED => "SKEP_AGENT_CRASHED",
                code::OVERLOADED => "SKEP_OVERLOADED",
                code::SHUTTING_DOWN => "SKEP_CLOSED",
                code::REQUEST_CANCELLED => "SKEP_CANCELLED",
                code::METHOD_NOT_FOUND => "SKEP_METHOD_NOT_FOUND",
                // The sidecar answers an unknown role as invalid params; say which it was.
                code::INVALID_PARAMS if e.message().starts_with("unknown role") => "SKEP_UNKNOWN_ROLE",
                code::INVALID_PARAMS => "SKEP_INVALID_PARAMS",
                -32000 => "SKEP_ALL_FAILED",
                _ => "SKEP_AGENT_ERROR",
            },
            Failure::Swarm(e) => match e {
                SwarmError::Timeout { .. } => "SKEP_TIMEOUT",
                SwarmError::CircuitOpen { .. } => "SKEP_CIRCUIT_OPEN",
                SwarmError::AgentCrashed { .. } => "SKEP_AGENT_CRASHED",
                SwarmError::RoleFailed { .. } => "SKEP_ROLE_FAILED",
                SwarmError::Start { .. } => "SKEP_AGENT_START",
                SwarmError::Overloaded { .. } => "SKEP_OVERLOADED",
                SwarmError::ShuttingDown => "SKEP_CLOSED",
                SwarmError::UnknownRole { .. } => "SKEP_UNKNOWN_ROLE",
                SwarmError::NoRoute { .. } => "SKEP_NO_ROUTE",
                SwarmError::AllFailed { .. } => "SKEP_ALL_FAILED",
                SwarmError::Agent(e) if e.code() == code::REQUEST_CANCELLED => "SKEP_CANCELLED",
                SwarmError::Agent(e) if e.code() == code::METHOD_NOT_FOUND => "SKEP_METHOD_NOT_FOUND",
                SwarmError::Agent(e) if e.code() == code::INVALID_PARAMS => "SKEP_INVALID_PARAMS",
                SwarmError::Agent(_) => "SKEP_AGENT_ERROR",
                _ => "SKEP_ERROR",
            },
        }
    }

    /// The JSON-RPC code the sidecar answers the same failure with.
    fn rpc_code(&self) -> i32 {
        match self {
            Failure::Swarm(e) => e.code(),
            Failure::Aborted => code::REQUEST_CANCELLED,
            Failure::InvalidArg(_) | Failure::Config(_) => code::INVALID_PARAMS,
            Failure::Workflow(WorkflowError::File(_)) => code::INVALID_PARAMS,
            Failure::Workflow(_) | Failure::Observe(_) | Failure::Cluster(_) => code::INTERNAL_ERROR,
            Failure::Remote(e) => e.code(),
            Failure::Daemon(_) => code::SHUTTING_DOWN,
        }
    }

    fn message_and_data(&self) -> (String, Option<Value>) {
        match self {
            Failure::Swarm(e) => {
                let object = e.to_error_object();
                let data = object.data().and_then(|raw| serde_json::from_str(raw.get()).ok());
                (object.message().to_owned(), data)
            }
            Failure::Aborted => ("the call was aborted by its AbortSignal; the agent was told to cancel".into(), None),
            Failure::InvalidArg(message) | Failure::Config(message) => (message.clone(), None),
            Failure::Workflow(e) => (chain(e), None),
            Failure::Observe(e) => (chain(e), None),
            Failure::Cluster(e) => (chain(e), None),
            Failure::Remote(e) => {
                (e.message().to_owned(), e.data().and_then(|raw| serde_json::from_str(raw.get()).ok()))
            }
            Failure::Daemon(message) => (message.clone(), None),
        }
    }

    /// The JavaScript `Error` a Promise rejects with.
    pub fn into_js(self, env: &Env) -> napi::Error {
        match self.build(env) {
            Ok(object) => napi::Error::from(object.to_unknown()),
            // Building the object failed (the environment is going away): a plain error still says what happened.
            Err(_) => {
                napi::Error::new(Status::GenericFailure, format!("{}: {}", self.code(), self.message_and_data().0))
            }
        }
    }

    fn build<'env>(&self, env: &'env Env) -> napi::Result<Object<'env>> {
        let (message, data) = self.message_and_data();
        let mut object = env.create_error(napi::Error::new(Status::GenericFailure, message))?;
        object.set_named_property("code", self.code())?;
        object.set_named_property("rpcCode", self.rpc_code())?;
        object.set_named_property("data", data)?;
        Ok(object)
    }
}

/// An error and its sources, as one line.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        line = format!("{line}: {cause}");
        source = cause.source();
    }
    line
}

/// An argument refused, with a message that names it.
pub fn invalid_arg(message: impl Into<String>) -> Failure {
    Failure::InvalidArg(message.into())
}
