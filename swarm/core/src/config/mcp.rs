//! `[mcp]` and `[[roles.NAME.tools]]`: how the daemon's MCP gateway names and
//! serves the roles' tools (docs/mcp.md). Naming is checked here, at load, so
//! a collision or an invalid name is refused with the role named rather than
//! found by a client later.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};
use toml::Spanned;

use super::raw::Opt;
use super::units::{Dur, Size};

/// The default separator between a role's name and its tool's: `<role>__<tool>`.
pub const DEFAULT_SEPARATOR: &str = "__";

/// The default largest request body the HTTP front reads.
pub const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;

/// How long an HTTP session may go without a message before the gateway ends it.
pub const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(5 * 60);

/// `[mcp]`: the MCP gateway's own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpConfig {
    /// Where to serve Streamable HTTP (`/mcp`); `None`: no HTTP front.
    pub listen: Option<SocketAddr>,
    /// What joins a role's name and its tool's name.
    pub separator: String,
    /// The largest request body read over HTTP; past it, 413.
    pub max_body: usize,
    /// Browser origins allowed to call the HTTP front; a request with any
    /// other `Origin` header is refused (DNS-rebinding protection).
    pub allowed_origins: Vec<String>,
    /// An HTTP session with no message either way for this long is ended
    /// (its `share = "session"` agents stopped): clients that never DELETE.
    pub session_idle: Duration,
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig {
            listen: None,
            separator: DEFAULT_SEPARATOR.to_owned(),
            max_body: DEFAULT_MAX_BODY,
            allowed_origins: Vec::new(),
            session_idle: DEFAULT_SESSION_IDLE,
        }
    }
}

/// How the MCP gateway shares a role's agents between MCP sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Share {
    /// Every session's calls spread over the role's pool.
    #[default]
    Pool,
    /// Each session gets an agent of its own, from warm spares, stopped when the session ends.
    Session,
}

impl Share {
    pub(super) fn parse(text: &str) -> Option<Share> {
        match text {
            "pool" => Some(Share::Pool),
            "session" => Some(Share::Session),
            _ => None,
        }
    }
}

/// `[[roles.NAME.tools]]`: one method of a (non-MCP) role offered as an MCP tool.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolConfig {
    /// The tool's name within its role (the gateway prefixes the role's).
    pub name: String,
    /// What the tool does, for the model.
    pub description: String,
    /// The JSON Schema of the tool's arguments (an object schema).
    pub input_schema: Map<String, Value>,
    /// The role's method a call runs, with the tool's arguments as params.
    pub method: String,
}

/// `[mcp]` as serde reads it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table such as [mcp]")]
pub(super) struct RawMcp {
    pub listen: Opt<String>,
    pub separator: Opt<String>,
    pub max_body: Opt<Size>,
    pub allowed_origins: Opt<Vec<String>>,
    pub session_idle: Opt<Dur>,
}

/// `[[roles.NAME.tools]]` as serde reads it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table such as [[roles.worker.tools]]")]
pub(super) struct RawTool {
    pub name: Opt<String>,
    pub description: Opt<String>,
    pub input_schema: Opt<Value>,
    pub method: Opt<String>,
}

/// Whether `name` is a valid MCP tool name: 1 to 128 of `[A-Za-z0-9_.-]`.
pub fn is_valid_tool_name(name: &str) -> bool {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"_.-".contains(&b);
    (1..=128).contains(&name.len()) && name.bytes().all(allowed)
}

/// Why a piece of `[mcp]` or a tool is refused: the span, the key below its table, the problem.
pub(super) type Refusal = (std::ops::Range<usize>, &'static str, String);

impl RawMcp {
    pub(super) fn build(self) -> Result<McpConfig, Refusal> {
        let d = McpConfig::default();
        let listen = match self.listen {
            None => None,
            Some(l) => match l.get_ref().parse::<SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    let found = format!("expected an address such as \"127.0.0.1:8808\", found {:?}", l.get_ref());
                    return Err((l.span(), "listen", found));
                }
            },
        };
        let separator = match self.separator {
            None => d.separator,
            Some(s) if (1..=8).contains(&s.get_ref().len()) && is_valid_tool_name(s.get_ref()) => s.into_inner(),
            Some(s) => {
                let found = format!("expected 1 to 8 characters from [A-Za-z0-9_.-], found {:?}", s.get_ref());
                return Err((s.span(), "separator", found));
            }
        };
        let max_body = match self.max_body {
            None => d.max_body,
            Some(s) if (1024..=(256 << 20)).contains(&s.get_ref().0) => s.get_ref().0 as usize,
            Some(s) => {
                let found = format!("expected a size from \"1KiB\" to \"256MiB\", found {} bytes", s.get_ref().0);
                return Err((s.span(), "max_body", found));
            }
        };
        let allowed_origins = self.allowed_origins.map(Spanned::into_inner).unwrap_or_default();
        let session_idle = self.session_idle.map_or(d.session_idle, |v| v.into_inner().0);
        Ok(McpConfig { listen, separator, max_body, allowed_origins, session_idle })
    }
}

impl RawTool {
    pub(super) fn build(self, header: std::ops::Range<usize>) -> Result<ToolConfig, Refusal> {
        let name = match self.name {
            Some(n) if is_valid_tool_name(n.get_ref()) => n.into_inner(),
            Some(n) => {
                let found = format!("expected 1 to 128 characters from [A-Za-z0-9_.-], found {:?}", n.get_ref());
                return Err((n.span(), "name", found));
            }
            None => return Err((header, "name", "expected a tool name such as \"summarize\", found nothing".into())),
        };
        let method = match self.method {
            Some(m) if !m.get_ref().is_empty() => m.into_inner(),
            Some(m) => return Err((m.span(), "method", "expected a method name, found \"\"".into())),
            None => return Err((header, "method", "expected the method the tool calls, found nothing".into())),
        };
        let input_schema = match self.input_schema {
            None => Map::from_iter([("type".to_owned(), Value::from("object"))]),
            Some(s) => {
                let span = s.span();
                match s.into_inner() {
                    Value::Object(schema) if schema.get("type").is_some_and(|t| t == "object") => schema,
                    _ => {
                        let found = "expected a JSON Schema table with type = \"object\"".to_owned();
                        return Err((span, "input_schema", found));
                    }
                }
            }
        };
        let description = self.description.map(Spanned::into_inner).unwrap_or_default();
        Ok(ToolConfig { name, description, input_schema, method })
    }
}
