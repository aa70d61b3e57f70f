//! The MCP server one session talks to: rmcp's `ServerHandler` over the
//! swarm. `initialize` and `ping` never touch an agent, so a role that is
//! starting or failed cannot block a session's start; `tools/list` merges the
//! roles' lists (catalog.rs); `tools/call` runs on the role's pool with its
//! timeout, breaker and cache. A session's calls are cancelled when the client
//! cancels them or goes away (rmcp cancels the request's token).

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorCode, GetPromptRequestParams,
    GetPromptResponse, GetPromptResult, Implementation, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ProgressNotificationParam, ProgressToken,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, ServerCapabilities, ServerConfig,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ErrorData as McpError, Peer, RoleServer, ServerHandler};
use serde_json::value::RawValue;
use skep_swarm::{CallOptions, McpProgressWatch, RoleConfig, Swarm, SwarmError};

use super::catalog::{self, Listing, Target};
use super::notify::Listeners;
use super::registry::{Entry, Registered, Registry, Transport};
use super::resources::{self, Kind};
use super::spares::Spares;

/// What every session of one gateway shares: the swarm, the spares of
/// `share = "session"` roles, the naming settings.
#[derive(Debug)]
pub(crate) struct Shared {
    pub swarm: Swarm,
    pub spares: Spares,
    pub separator: Arc<str>,
    pub listeners: Listeners,
    pub registry: Arc<Registry>,
}

/// One MCP session's server. Clones (rmcp may make them) share the
/// session's own agents, which stop when the last clone goes, that is, when
/// the session ends.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    shared: Arc<Shared>,
    /// Its figures and its own agents, which the registry reads for the views.
    entry: Arc<Entry>,
    listening: Arc<std::sync::OnceLock<Listening>>,
}

/// A session's place among the list_changed listeners and in the registry,
/// left when the session's last clone goes.
#[derive(Debug)]
struct Listening {
    shared: Arc<Shared>,
    id: u64,
    _registered: Registered,
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.shared.listeners.remove(self.id);
    }
}

impl Session {
    pub(crate) fn new(shared: Arc<Shared>, transport: Transport) -> Session {
        Session { shared, entry: Arc::new(Entry::new(transport)), listening: Arc::default() }
    }

    /// Every role offering tools, from the shared swarm and the per-session ones.
    fn roles(&self) -> Vec<Arc<RoleConfig>> {
        let mut roles = catalog::offering(&self.shared.swarm);
        roles.extend(self.shared.spares.configs());
        roles
    }

    /// The swarm that serves `role` to this session: the shared one, or this
    /// session's own agent of a `share = "session"` role (taken on first use).
    async fn swarm_for(&self, role: &str) -> Result<Swarm, SwarmError> {
        if !self.shared.spares.serves(role) {
            return Ok(self.shared.swarm.clone());
        }
        // Held across the take, so two concurrent first calls take one agent, not two.
        let mut own = self.entry.own.lock().await;
        if let Some(held) = own.get(role) {
            return Ok(held.swarm().clone());
        }
        let held = Arc::new(self.shared.spares.take(role).await?);
        own.insert(role.to_owned(), Arc::clone(&held));
        Ok(held.swarm().clone())
    }

    /// Every MCP server role, on the swarm serving it to this session.
    async fn servers(&self) -> Vec<(Arc<RoleConfig>, Result<Swarm, SwarmError>)> {
        let mut servers = Vec::new();
        for role in self.roles().into_iter().filter(|r| r.handshake == skep_swarm::Handshake::Mcp) {
            let swarm = self.swarm_for(&role.name).await;
            servers.push((role, swarm));
        }
        servers
    }

    async fn aggregate<T: serde::de::DeserializeOwned>(&self, kind: Kind) -> Result<T, McpError> {
        resources::list(kind, self.servers().await, &self.shared.separator).await
    }

    /// The swarm serving an MCP server `role` this session knows, or `-32602` naming `what`.
    async fn server(&self, role: &str, what: &str) -> Result<Swarm, McpError> {
        let known = self.roles().iter().any(|r| r.name == role && r.handshake == skep_swarm::Handshake::Mcp);
        if !known {
            return Err(McpError::invalid_params(format!("no server offers {what}"), None));
        }
        self.swarm_for(role)
            .await
            .map_err(|e| McpError::internal_error(format!("server {role} could not answer: {e}"), None))
    }

    /// Runs a tool call; `progress` is the token the upstream request carries, if the client asked for progress.
    async fn call(&self, request: CallToolRequestParams, progress: Option<&str>) -> Result<CallToolResult, McpError> {
        let target = catalog::resolve(&self.roles(), &self.shared.separator, &request.name)
            .map_err(|unknown| McpError::invalid_params(unknown.to_string(), None))?;
        let arguments = serde_json::Value::Object(request.arguments.unwrap_or_default());
        let (method, params) = match &target {
            Target::Upstream { tool, .. } => {
                let mut params = serde_json::json!({ "name": tool, "arguments": arguments });
                if let Some(token) = progress {
                    params["_meta"] = serde_json::json!({ "progressToken": token });
                }
                ("tools/call", params)
            }
            Target::Method { method, .. } => (method.as_str(), arguments),
        };
        let params = serde_json::value::to_raw_value(&params)
            .map_err(|e| McpError::internal_error(format!("cannot encode the arguments ({e})"), None))?;
        let answer = match self.swarm_for(target.role()).await {
            Ok(swarm) => swarm.call(target.role(), method, Some(&params), CallOptions::default()).await,
            Err(e) => Err(e),
        };
        match (answer, &target) {
            (Ok(raw), Target::Upstream { .. }) => upstream_result(&raw, target.role()),
            (Ok(raw), Target::Method { .. }) => Ok(method_result(&raw)),
            // The server itself refused the request (an unknown tool, bad
            // arguments): a protocol error, relayed as the server said it.
            (Err(SwarmError::Agent(e)), _) => {
                Err(McpError::new(ErrorCode(e.code()), e.message().to_owned(), e.data().and_then(raw_json)))
            }
            // The server could not run it: a tool error naming it and why, so
            // the model sees it and the other servers keep working.
            (Err(e), _) => Ok(tool_error(target.role(), &e)),
        }
    }
}

impl ServerHandler for Session {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_resources()
            .enable_resources_list_changed()
            .enable_prompts()
            .enable_prompts_list_changed()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("skep", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "skep's MCP gateway: the tools of every server skep keeps warm, each named <server>__<tool>.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let mut roles = Vec::new();
        for role in self.roles() {
            let swarm = self.swarm_for(&role.name).await;
            // A session's own agent's list is not worth caching, and its cache
            // is not the one a list change clears.
            let fresh = self.shared.spares.serves(&role.name);
            roles.push(Listing { role, swarm, fresh });
        }
        let (tools, left_out) = catalog::list_tools(roles, &self.shared.separator).await;
        for role in left_out {
            self.shared.listeners.left_out(&role);
        }
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        self.aggregate(Kind::Resources).await
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        self.aggregate(Kind::Templates).await
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let _in_flight = self.entry.call();
        let unknown = || McpError::invalid_params(format!("no server offers the resource {:?}", request.uri), None);
        let (role, uri) = resources::resolve_uri(&request.uri).ok_or_else(unknown)?;
        let swarm = self.server(role, &format!("the resource {:?}", request.uri)).await?;
        let answer: serde_json::Value =
            resources::call(&swarm, role, "resources/read", serde_json::json!({ "uri": uri })).await?;
        let result: ReadResourceResult =
            serde_json::from_value(resources::prefix_contents(role, answer)).map_err(|e| {
                McpError::internal_error(format!("server {role} answered resources/read oddly ({e})"), None)
            })?;
        Ok(result.into())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        self.aggregate(Kind::Prompts).await
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let _in_flight = self.entry.call();
        let what = format!("the prompt {:?}", request.name);
        let (role, name) = (request.name.split_once(&*self.shared.separator))
            .ok_or_else(|| McpError::invalid_params(format!("no server offers {what}"), None))?;
        let swarm = self.server(role, &what).await?;
        let mut params = serde_json::json!({ "name": name });
        if let Some(arguments) = request.arguments {
            params["arguments"] = serde_json::Value::Object(arguments);
        }
        let result: GetPromptResult = resources::call(&swarm, role, "prompts/get", params).await?;
        Ok(result.into())
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        // Over HTTP the session id is the one rmcp gave the client, so the views name it as the client knows it.
        let session_id = (context.extensions.get::<axum::http::request::Parts>())
            .and_then(|parts| parts.headers.get("mcp-session-id")?.to_str().ok().map(str::to_owned));
        let registered = self.shared.registry.enter(&self.entry, session_id.as_deref());
        let id = self.shared.listeners.add(context.peer);
        let listening = Listening { shared: Arc::clone(&self.shared), id, _registered: registered };
        // A second initialized on one session (a client's mistake) keeps the first registration.
        let _ = self.listening.set(listening);
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let name = request.name.clone();
        let _in_flight = self.entry.call();
        // The client asked for progress: relay the upstream server's, renamed to the client's token.
        let asked = context.meta.get_progress_token().or_else(|| request.meta.as_ref()?.get_progress_token());
        let relay = asked.map(|token| progress_relay(token, context.peer.clone()));
        let upstream_token = relay.as_ref().map(|(watch, _)| watch.token().to_owned());
        let result = tokio::select! {
            result = self.call(request, upstream_token.as_deref()) => result.map(CallToolResponse::from),
            // Dropping the call cancels it on the wire to the agent (the bridge's cancel).
            () = context.ct.cancelled() => {
                tracing::debug!(tool = %name, "tool call cancelled by the client");
                Err(McpError::new(ErrorCode(skep_bridge::code::REQUEST_CANCELLED), "cancelled by the client", None))
            }
        };
        if let Some((watch, forwarder)) = relay {
            // Every notification already received is sent before the answer.
            drop(watch);
            let _ = forwarder.await;
        }
        result
    }
}

/// Watches an upstream progress token and forwards what comes to `peer`
/// under the client's own `token`, in order; ends when the watch is dropped.
fn progress_relay(token: ProgressToken, peer: Peer<RoleServer>) -> (McpProgressWatch, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
    let watch = McpProgressWatch::new(move |params| {
        let _ = tx.send(params);
    });
    let forwarder = tokio::spawn(async move {
        while let Some(mut params) = rx.recv().await {
            params["progressToken"] = serde_json::to_value(&token).unwrap_or_default();
            match serde_json::from_value::<ProgressNotificationParam>(params) {
                Ok(progress) => {
                    if peer.notify_progress(progress).await.is_err() {
                        return;
                    }
                }
                Err(e) => tracing::debug!(%e, "an upstream progress notification that is not MCP's shape is dropped"),
            }
        }
    });
    (watch, forwarder)
}

/// An MCP server's `tools/call` result, as it gave it.
fn upstream_result(raw: &RawValue, role: &str) -> Result<CallToolResult, McpError> {
    serde_json::from_str(raw.get()).map_err(|e| {
        McpError::internal_error(
            format!("server {role} answered tools/call with something that is not a tool result ({e})"),
            None,
        )
    })
}

/// A plain method's result as a tool result: the JSON as text, and as
/// structured content when it is an object.
fn method_result(raw: &RawValue) -> CallToolResult {
    let value: serde_json::Value = serde_json::from_str(raw.get()).unwrap_or(serde_json::Value::Null);
    let mut result = CallToolResult::success(vec![ContentBlock::text(raw.get().to_owned())]);
    if value.is_object() {
        result.structured_content = Some(value);
    }
    result
}

/// A call the role could not run, as a tool error that names the server and why.
pub(crate) fn tool_error(role: &str, error: &SwarmError) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(format!("server {role} could not run the tool: {error}"))])
}

fn raw_json(raw: &RawValue) -> Option<serde_json::Value> {
    serde_json::from_str(raw.get()).ok()
}
