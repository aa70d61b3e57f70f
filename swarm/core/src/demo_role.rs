//! The built-in demo: a role whose agents are skep itself in agent mode, so
//! the sidecar works out of the box with nothing else installed.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;
use skep_bridge::{ErrorObjectOwned, RpcModule};

use crate::config::{Config, RoleConfig};

/// The demo role's name.
pub const DEMO_ROLE: &str = "demo";

/// A config with one role, `demo`, whose agents run `agent_command`
/// (the manager passes its own executable and `agent demo`).
pub fn demo_config(agent_command: Vec<String>) -> Config {
    let mut role = RoleConfig::with_command(DEMO_ROLE, agent_command);
    role.min_warm = 2;
    role.max_agents = 8;
    Config { roles: BTreeMap::from([(DEMO_ROLE.to_owned(), role)]), ..Config::default() }
}

/// The demo agent's methods: `echo`, `sleep {"ms"}`, `wordcount {"text"}`,
/// `fail {"message"}`.
pub fn demo_agent_module() -> RpcModule<()> {
    #[derive(Deserialize)]
    struct Sleep {
        ms: u64,
    }
    #[derive(Deserialize)]
    struct Text {
        text: String,
    }
    #[derive(Deserialize)]
    struct Fail {
        message: String,
    }
    let mut module = RpcModule::new(());
    module
        .register_method("echo", |params, _, _| {
            params.as_str().map(|raw| RawValue::from_string(raw.to_owned()).expect("params arrive as valid JSON"))
        })
        .expect("fresh name");
    module
        .register_async_method("sleep", |params, _, _| async move {
            let Sleep { ms } = params.parse()?;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, ErrorObjectOwned>(serde_json::json!({ "slept": ms }))
        })
        .expect("fresh name");
    module
        .register_method("wordcount", |params, _, _| {
            let Text { text } = params.parse()?;
            Ok::<_, ErrorObjectOwned>(serde_json::json!({ "words": text.split_whitespace().count() }))
        })
        .expect("fresh name");
    module
        .register_method("fail", |params, _, _| {
            let Fail { message } = params.parse()?;
            Err::<(), _>(ErrorObjectOwned::owned(-32050, message, None::<()>))
        })
        .expect("fresh name");
    module
}
