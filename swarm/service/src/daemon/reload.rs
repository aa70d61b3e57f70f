//! What a reload can change and what it cannot. Roles roll over in place
//! (`Swarm::reload`); `[daemon]`, `[mcp]` and `[cluster]` are read once, when
//! the daemon starts (its idle watch, its gateway's listeners, its NATS
//! connection), so a reload that finds them changed keeps the ones it runs
//! with and says which: they take effect at the next start.

use serde::Serialize;
use skep_swarm::{ClusterConfig, Config, DaemonConfig, McpConfig, ReloadReport};

/// The tables a daemon reads only at its start.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct StartOnly {
    daemon: DaemonConfig,
    mcp: McpConfig,
    cluster: Option<ClusterConfig>,
}

impl StartOnly {
    pub(super) fn of(config: &Config) -> StartOnly {
        StartOnly { daemon: config.daemon, mcp: config.mcp.clone(), cluster: config.cluster.clone() }
    }

    /// The tables `new` changes, by their names in skep.toml.
    pub(super) fn changed_in(&self, new: &StartOnly) -> Vec<&'static str> {
        let mut changed = Vec::new();
        if self.daemon != new.daemon {
            changed.push("[daemon]");
        }
        if self.mcp != new.mcp {
            changed.push("[mcp]");
        }
        if self.cluster != new.cluster {
            changed.push("[cluster]");
        }
        changed
    }
}

/// A reload's answer: what it did to each role, and the changed tables it
/// did not apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reloaded {
    /// Kept, replaced, added and removed roles.
    #[serde(flatten)]
    pub roles: ReloadReport,
    /// Tables that changed in the file but take effect only at the daemon's
    /// next start (`[daemon]`, `[mcp]`, `[cluster]`); empty when none did.
    #[serde(rename = "atNextStart")]
    pub at_next_start: Vec<&'static str>,
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::StartOnly;

    fn of(text: &str) -> StartOnly {
        let roles = "[roles.r]\ncommand = [\"agent\"]\n";
        StartOnly::of(
            &skep_swarm::Config::parse(&format!("{text}\n{roles}"), "<test>", Path::new("/")).expect("parses"),
        )
    }

    #[test]
    fn only_the_tables_that_changed_are_named() {
        let before = of("[cluster]\nnats = \"nats://a:4222\"\n");
        assert_eq!(before.changed_in(&before.clone()), Vec::<&str>::new());
        assert_eq!(before.changed_in(&of("[cluster]\nnats = \"nats://b:4222\"\n")), ["[cluster]"]);
        assert_eq!(before.changed_in(&of("")), ["[cluster]"]);
        let both =
            of("[daemon]\nidle_exit = \"5m\"\n[mcp]\nsession_idle = \"1m\"\n[cluster]\nnats = \"nats://a:4222\"\n");
        assert_eq!(before.changed_in(&both), ["[daemon]", "[mcp]"]);
    }
}
