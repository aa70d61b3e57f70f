//! Resources, resource templates and prompts of the MCP server roles,
//! aggregated as tools are (docs/mcp.md):
//! - a resource's (or template's) URI is offered as `skep://<role>/<its URI>`
//!   (`file:///a` of role fs is `skep://fs/file:///a`), so any URI a client
//!   reads, listed or expanded from a template, names its role, and no map
//!   has to be kept (or lost on a restart); the prefix is taken off on the
//!   way to the server and put back on the contents it answers;
//! - a prompt is named `<role><separator><name>`, as tools are.
//!
//! Every page of each server's list is taken (`pages.rs`). A server without
//! the capability (or that fails, or is slow) adds nothing to a list.

use std::sync::Arc;
use std::time::Duration;

use rmcp::ErrorData as McpError;
use rmcp::model::ErrorCode;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use skep_swarm::{CallOptions, Handshake, RoleConfig, Swarm, SwarmError};

/// The scheme of the URIs the gateway offers resources under.
const SCHEME: &str = "skep://";
/// How long one role's list may take before the list is served without it.
const LIST_TIMEOUT: Duration = Duration::from_secs(5);

/// Which aggregated list, and how its items are renamed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// `resources/list`: `uri` prefixed.
    Resources,
    /// `resources/templates/list`: `uriTemplate` prefixed.
    Templates,
    /// `prompts/list`: `name` prefixed with the role.
    Prompts,
}

impl Kind {
    fn method(self) -> &'static str {
        match self {
            Kind::Resources => "resources/list",
            Kind::Templates => "resources/templates/list",
            Kind::Prompts => "prompts/list",
        }
    }

    /// The answer's field holding the items.
    fn items(self) -> &'static str {
        match self {
            Kind::Resources => "resources",
            Kind::Templates => "resourceTemplates",
            Kind::Prompts => "prompts",
        }
    }
}

/// A role's URI as the gateway offers it.
pub(crate) fn offered_uri(role: &str, uri: &str) -> String {
    format!("{SCHEME}{role}/{uri}")
}

/// Maps an offered URI back to its role and the server's own URI.
pub(crate) fn resolve_uri(uri: &str) -> Option<(&str, &str)> {
    uri.strip_prefix(SCHEME)?.split_once('/').filter(|(role, rest)| !role.is_empty() && !rest.is_empty())
}

/// The merged list of `kind` over `roles` (the MCP server roles, each on the
/// swarm serving it to this session), as rmcp's result type `T`.
pub(crate) async fn list<T: DeserializeOwned>(
    kind: Kind,
    roles: Vec<(Arc<RoleConfig>, Result<Swarm, SwarmError>)>,
    separator: &str,
) -> Result<T, McpError> {
    let lists = futures::future::join_all(roles.iter().filter(|(role, _)| role.handshake == Handshake::Mcp).map(
        |(role, swarm)| async move {
            let Ok(swarm) = swarm else { return Vec::new() };
            let called =
                super::pages::all_items(swarm, &role.name, kind.method(), kind.items(), CallOptions::default());
            let items = match tokio::time::timeout(LIST_TIMEOUT, called).await {
                Ok(Ok(items)) => items,
                Ok(Err(e)) => {
                    // Most servers offer only some of the three: that is not worth a warning.
                    tracing::debug!(role = %role.name, method = kind.method(), "left out of the list: {e}");
                    return Vec::new();
                }
                Err(_) => {
                    tracing::warn!(role = %role.name, method = kind.method(), "took over {LIST_TIMEOUT:?}; left out");
                    return Vec::new();
                }
            };
            items.into_iter().filter_map(|item| rename(kind, &role.name, separator, item)).collect()
        },
    ))
    .await;
    let items: Vec<Value> = lists.into_iter().flatten().collect();
    serde_json::from_value(json!({ kind.items(): items }))
        .map_err(|e| McpError::internal_error(format!("cannot merge the servers' {} ({e})", kind.items()), None))
}

fn rename(kind: Kind, role: &str, separator: &str, mut item: Value) -> Option<Value> {
    let (field, renamed) = match kind {
        Kind::Resources => ("uri", offered_uri(role, item.get("uri")?.as_str()?)),
        Kind::Templates => ("uriTemplate", offered_uri(role, item.get("uriTemplate")?.as_str()?)),
        Kind::Prompts => ("name", super::catalog::gateway_name(role, separator, item.get("name")?.as_str()?)),
    };
    item[field] = Value::String(renamed);
    Some(item)
}

/// Calls `method` on `role` and reads the answer as `T`; the server's own
/// refusal is relayed as it said it, anything else names the server.
pub(crate) async fn call<T: DeserializeOwned>(
    swarm: &Swarm,
    role: &str,
    method: &str,
    params: Value,
) -> Result<T, McpError> {
    let params = serde_json::value::to_raw_value(&params)
        .map_err(|e| McpError::internal_error(format!("cannot encode the params ({e})"), None))?;
    match swarm.call(role, method, Some(&params), CallOptions::default()).await {
        Ok(raw) => serde_json::from_str(raw.get()).map_err(|e| {
            McpError::internal_error(format!("server {role} answered {method} with something else ({e})"), None)
        }),
        Err(SwarmError::Agent(e)) => Err(McpError::new(
            ErrorCode(e.code()),
            e.message().to_owned(),
            e.data().and_then(|d| serde_json::from_str(d.get()).ok()),
        )),
        Err(e) => Err(McpError::internal_error(format!("server {role} could not answer {method}: {e}"), None)),
    }
}

/// Puts the offered prefix back on every `uri` of a `resources/read` answer.
pub(crate) fn prefix_contents(role: &str, mut answer: Value) -> Value {
    if let Some(contents) = answer.get_mut("contents").and_then(Value::as_array_mut) {
        for content in contents {
            if let Some(uri) = content.get("uri").and_then(Value::as_str) {
                content["uri"] = Value::String(offered_uri(role, uri));
            }
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offered_uri_maps_back_to_its_role_and_the_servers_uri() {
        let uri = offered_uri("fs", "file:///a/b.txt");
        assert_eq!(uri, "skep://fs/file:///a/b.txt");
        assert_eq!(resolve_uri(&uri), Some(("fs", "file:///a/b.txt")));
        for foreign in ["file:///a", "skep://fs", "skep:///x", "skep://fs/"] {
            assert_eq!(resolve_uri(foreign), None, "{foreign}");
        }
    }
}
