//! Aggregation and naming: the tools every role offers, merged into one list
//! as `<role><separator><tool>`, and a tool name mapped back to the role and
//! what to call on it. Role names offering tools never contain the separator
//! (refused at config load), so the first separator splits a name unambiguously.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{JsonObject, Tool};
use skep_swarm::{CallOptions, Handshake, RoleConfig, Swarm, SwarmError, is_valid_tool_name};

/// How long one role's `tools/list` may take before the list is served without it.
const LIST_TIMEOUT: Duration = Duration::from_secs(5);

/// What a gateway tool name resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A tool of an MCP server role: `tools/call` with the tool's own name.
    Upstream {
        /// The role.
        role: String,
        /// The tool's name on its server.
        tool: String,
    },
    /// A `[[roles.X.tools]]` entry: the role's method, the arguments as params.
    Method {
        /// The role.
        role: String,
        /// The method called.
        method: String,
    },
}

impl Target {
    /// The role that serves it.
    pub(crate) fn role(&self) -> &str {
        match self {
            Target::Upstream { role, .. } | Target::Method { role, .. } => role,
        }
    }
}

/// Why a tool name does not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Unknown {
    /// No role by the name's prefix offers tools.
    #[error("no server offers the tool {0:?}")]
    Tool(String),
}

/// Joins a role's and a tool's name.
pub(crate) fn gateway_name(role: &str, separator: &str, tool: &str) -> String {
    format!("{role}{separator}{tool}")
}

/// Maps a gateway tool name back to its role and what to call.
pub(crate) fn resolve(roles: &[Arc<RoleConfig>], separator: &str, name: &str) -> Result<Target, Unknown> {
    let unknown = || Unknown::Tool(name.to_owned());
    let (role, tool) = name.split_once(separator).ok_or_else(unknown)?;
    let config = roles.iter().find(|r| r.name == role).ok_or_else(unknown)?;
    match config.handshake {
        Handshake::Mcp => Ok(Target::Upstream { role: role.to_owned(), tool: tool.to_owned() }),
        _ => config
            .tools
            .iter()
            .find(|t| t.name == tool)
            .map(|t| Target::Method { role: role.to_owned(), method: t.method.clone() })
            .ok_or_else(unknown),
    }
}

/// The roles of `swarm` whose tools the gateway offers.
pub(crate) fn offering(swarm: &Swarm) -> Vec<Arc<RoleConfig>> {
    let config = swarm.config();
    (config.roles.into_values())
        .filter(|r| r.handshake == Handshake::Mcp || !r.tools.is_empty())
        .map(Arc::new)
        .collect()
}

/// One role to list, on the swarm that serves it to this session; `fresh`
/// asks the server rather than the cache.
pub(crate) struct Listing {
    pub role: Arc<RoleConfig>,
    pub swarm: Result<Swarm, SwarmError>,
    pub fresh: bool,
}

/// Every offered tool, renamed, and the roles left out: a role that fails
/// or is slow to list is left out (and logged) rather than failing the whole
/// list: one broken server must not hide the others.
pub(crate) async fn list_tools(roles: Vec<Listing>, separator: &str) -> (Vec<Tool>, Vec<String>) {
    let lists = futures::future::join_all(roles.iter().map(|listing| async move {
        let role = &listing.role;
        match &listing.swarm {
            Ok(swarm) => role_tools(swarm, role, separator, listing.fresh).await.ok_or_else(|| role.name.clone()),
            Err(e) => {
                tracing::warn!(role = %role.name, "no agent to list its tools; they are left out: {e}");
                Err(role.name.clone())
            }
        }
    }))
    .await;
    let (mut tools, mut left_out) = (Vec::new(), Vec::new());
    for list in lists {
        match list {
            Ok(list) => tools.extend(list),
            Err(role) => left_out.push(role),
        }
    }
    (tools, left_out)
}

/// A role's tools, renamed; `None` when it could not list them.
async fn role_tools(swarm: &Swarm, role: &RoleConfig, separator: &str, fresh: bool) -> Option<Vec<Tool>> {
    if role.handshake != Handshake::Mcp {
        return Some(role.tools.iter().map(|t| declared_tool(&role.name, separator, t)).collect());
    }
    let listed = tokio::time::timeout(LIST_TIMEOUT, upstream_list(swarm, &role.name, fresh)).await;
    let tools = match listed {
        Ok(Ok(tools)) => tools,
        Ok(Err(e)) => {
            tracing::warn!(role = %role.name, "tools/list failed; its tools are left out: {e}");
            return None;
        }
        Err(_) => {
            tracing::warn!(role = %role.name, "tools/list took over {LIST_TIMEOUT:?}; its tools are left out");
            return None;
        }
    };
    let tools = (tools.into_iter())
        .filter_map(|mut tool| {
            let name = gateway_name(&role.name, separator, &tool.name);
            if !is_valid_tool_name(&name) {
                tracing::warn!(role = %role.name, tool = %tool.name, "a tool name that is not valid in MCP is left out");
                return None;
            }
            tool.name = name.into();
            Some(tool)
        })
        .collect();
    Some(tools)
}

/// One MCP server role's own tool list, every page of it (from skep's cache unless `fresh`).
async fn upstream_list(swarm: &Swarm, role: &str, fresh: bool) -> Result<Vec<Tool>, SwarmError> {
    let options = CallOptions { bypass_cache: fresh, ..CallOptions::default() };
    let tools = super::pages::all_items(swarm, role, "tools/list", "tools", options).await?;
    serde_json::from_value(serde_json::Value::Array(tools)).map_err(|e| {
        let message = format!("its tools/list answer is not an MCP tool list ({e})");
        SwarmError::Agent(skep_bridge::ErrorObjectOwned::owned(skep_bridge::code::INTERNAL_ERROR, message, None::<()>))
    })
}

fn declared_tool(role: &str, separator: &str, tool: &skep_swarm::ToolConfig) -> Tool {
    let schema: JsonObject = tool.input_schema.clone();
    let mut out = Tool::default();
    out.name = gateway_name(role, separator, &tool.name).into();
    out.description = (!tool.description.is_empty()).then(|| tool.description.clone().into());
    out.input_schema = Arc::new(schema);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles() -> Vec<Arc<RoleConfig>> {
        let mut fs = RoleConfig::with_command("fs", vec!["x".into()]);
        fs.handshake = Handshake::Mcp;
        let mut words = RoleConfig::with_command("words", vec!["x".into()]);
        words.tools = vec![skep_swarm::ToolConfig {
            name: "count".into(),
            description: String::new(),
            input_schema: serde_json::Map::new(),
            method: "wordcount".into(),
        }];
        let plain = RoleConfig::with_command("plain", vec!["x".into()]);
        vec![Arc::new(fs), Arc::new(words), Arc::new(plain)]
    }

    #[test]
    fn names_map_back_to_their_role_at_the_first_separator() {
        let roles = roles();
        let up = |role: &str, tool: &str| Target::Upstream { role: role.into(), tool: tool.into() };
        assert_eq!(resolve(&roles, "__", "fs__read_file"), Ok(up("fs", "read_file")));
        // A server's own tool name may contain the separator: only the first one splits.
        assert_eq!(resolve(&roles, "__", "fs__a__b"), Ok(up("fs", "a__b")));
        let method = Target::Method { role: "words".into(), method: "wordcount".into() };
        assert_eq!(resolve(&roles, "__", "words__count"), Ok(method));
        for unknown in ["words__other", "plain__echo", "nobody__x", "fs", "fs-read"] {
            assert_eq!(resolve(&roles, "__", unknown), Err(Unknown::Tool(unknown.into())), "{unknown}");
        }
        assert_eq!(resolve(&roles, "-", "fs-read"), Ok(up("fs", "read")));
    }
}
