//! Why a step ran or came from the cache: the decision, and for a miss what
//! differed from the step's latest cached entry. Pure code over the key's
//! parts; the step cache keeps the parts of each step's latest entry.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What went into a step's cache key, kept beside the cache so that a later
/// miss can say what changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyParts {
    /// The key these parts hash to.
    pub key: String,
    /// The step's definition (action, params as written, timeout, input patterns).
    pub definition: Value,
    /// Each input file (relative path) and the SHA-256 of its contents.
    pub inputs: Vec<(String, String)>,
    /// Each upstream step and the SHA-256 of its result.
    pub upstream: Vec<(String, String)>,
}

/// The cache decision of one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "camelCase")]
pub enum Why {
    /// The result came from the cache.
    Hit {
        /// The run that stored it (unknown for entries older than this field).
        run: Option<String>,
    },
    /// The step ran.
    Miss {
        /// What differed, most telling first.
        because: Vec<Change>,
    },
}

/// One reason a step ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Change {
    /// No entry of this step was ever stored here.
    NeverRan,
    /// `--no-cache`.
    NoCache,
    /// The step says `cache = false`.
    CacheOff,
    /// Same key as the latest entry, but the entry is gone (past its TTL or pruned).
    Expired,
    /// A param (an agent call's, as written) changed; `at` is its JSON pointer.
    Param {
        /// Where in the params, as a JSON pointer (`/text`).
        at: String,
    },
    /// Another part of the definition changed (`run`, `timeout`, `inputs`, `role`...).
    Definition {
        /// Which part.
        what: String,
    },
    /// An input file changed, appeared or went.
    Input {
        /// Its path, relative to the workdir.
        path: String,
        /// Its hash in the latest entry (none: new file).
        old: Option<String>,
        /// Its hash now (none: gone).
        new: Option<String>,
    },
    /// An upstream step's result changed.
    Upstream {
        /// The upstream step.
        step: String,
    },
    /// `--explain` only: an upstream step will run, so this one's key is not
    /// known until it has; it runs unless that result comes out the same.
    UpstreamRuns {
        /// The upstream step that will run.
        step: String,
    },
}

impl Why {
    /// Whether the result came from the cache.
    pub fn is_hit(&self) -> bool {
        matches!(self, Why::Hit { .. })
    }

    /// One line for people: `hit from run R`, `miss: input src/a.rs changed (1a2b3c4d → 5e6f7a8b)`.
    pub fn describe(&self) -> String {
        match self {
            Why::Hit { run: Some(run) } => format!("hit from run {run}"),
            Why::Hit { run: None } => "hit".into(),
            Why::Miss { because } => {
                let first = because.first().map_or_else(|| "unknown".into(), Change::describe);
                match because.len() {
                    0 | 1 => format!("miss: {first}"),
                    n => format!("miss: {first} (+{} more)", n - 1),
                }
            }
        }
    }
}

fn short(hash: &str) -> &str {
    hash.get(..8).unwrap_or(hash)
}

impl Change {
    /// The change in a few words.
    pub fn describe(&self) -> String {
        match self {
            Change::NeverRan => "never ran".into(),
            Change::NoCache => "--no-cache".into(),
            Change::CacheOff => "cache = false".into(),
            Change::Expired => "its cached result expired or was pruned".into(),
            Change::Param { at } => format!("param {at} changed"),
            Change::Definition { what } => format!("definition changed ({what})"),
            Change::Input { path, old: Some(old), new: Some(new) } => {
                format!("input {path} changed ({} → {})", short(old), short(new))
            }
            Change::Input { path, old: None, .. } => format!("input {path} is new"),
            Change::Input { path, new: None, .. } => format!("input {path} is gone"),
            Change::Upstream { step } => format!("the result of upstream {step} changed"),
            Change::UpstreamRuns { step } => format!("upstream {step} runs (cached if its result comes out the same)"),
        }
    }
}

/// What differs between the latest entry's parts and today's, most telling
/// first: params, the rest of the definition, input files, upstream results.
/// Empty when the parts are equal.
pub fn diff(old: &KeyParts, new: &KeyParts) -> Vec<Change> {
    let mut out = Vec::new();
    if old.definition != new.definition {
        let fields = |v: &Value| v.as_object().cloned().unwrap_or_default();
        let (a, b) = (fields(&old.definition), fields(&new.definition));
        let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
        keys.sort();
        keys.dedup();
        for key in keys.into_iter().filter(|k| a.get(*k) != b.get(*k)) {
            match (key.as_str(), a.get(key), b.get(key)) {
                ("action", Some(x), Some(y)) => action_changes(x, y, &mut out),
                (other, ..) => out.push(Change::Definition { what: other.to_owned() }),
            }
        }
    }
    let old_inputs: std::collections::BTreeMap<&str, &str> =
        old.inputs.iter().map(|(p, h)| (p.as_str(), h.as_str())).collect();
    let new_inputs: std::collections::BTreeMap<&str, &str> =
        new.inputs.iter().map(|(p, h)| (p.as_str(), h.as_str())).collect();
    let mut paths: Vec<&str> = old_inputs.keys().chain(new_inputs.keys()).copied().collect();
    paths.sort_unstable();
    paths.dedup();
    for path in paths {
        let (o, n) = (old_inputs.get(path), new_inputs.get(path));
        if o != n {
            out.push(Change::Input {
                path: path.to_owned(),
                old: o.map(|h| (*h).to_owned()),
                new: n.map(|h| (*h).to_owned()),
            });
        }
    }
    for (step, hash) in &new.upstream {
        let before = old.upstream.iter().find(|(s, _)| s == step).map(|(_, h)| h);
        if before != Some(hash) {
            out.push(Change::Upstream { step: step.clone() });
        }
    }
    out
}

/// The changes inside an action: each param leaf by its JSON pointer, or the
/// part (`run`, `role`, `method`, `shell`) that changed.
fn action_changes(old: &Value, new: &Value, out: &mut Vec<Change>) {
    let (Some(a), Some(b)) = (old.as_object(), new.as_object()) else {
        out.push(Change::Definition { what: "action".into() });
        return;
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys.into_iter().filter(|k| a.get(*k) != b.get(*k)) {
        if key == "params" {
            let null = Value::Null;
            leaf_changes(a.get(key).unwrap_or(&null), b.get(key).unwrap_or(&null), String::new(), out);
        } else {
            out.push(Change::Definition { what: key.clone() });
        }
    }
}

fn leaf_changes(a: &Value, b: &Value, at: String, out: &mut Vec<Change>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            let null = Value::Null;
            for k in keys {
                let escaped = k.replace('~', "~0").replace('/', "~1");
                leaf_changes(x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null), format!("{at}/{escaped}"), out);
            }
        }
        _ if a != b => out.push(Change::Param { at: if at.is_empty() { "/".into() } else { at } }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parts(params: Value, inputs: &[(&str, &str)], upstream: &[(&str, &str)]) -> KeyParts {
        KeyParts {
            key: "k".into(),
            definition: json!({
                "id": "s",
                "action": { "role": "r", "method": "m", "params": params },
                "timeoutMs": null,
                "inputs": ["src/*"],
            }),
            inputs: inputs.iter().map(|(p, h)| ((*p).into(), (*h).into())).collect(),
            upstream: upstream.iter().map(|(s, h)| ((*s).into(), (*h).into())).collect(),
        }
    }

    #[test]
    fn each_kind_of_change_is_named_with_its_figures() {
        let base = parts(json!({"text": "a", "n": 1}), &[("src/a", "aaaaaaaaaa"), ("src/b", "bb")], &[("up", "h1")]);
        assert_eq!(diff(&base, &base), vec![]);

        let param = parts(json!({"text": "b", "n": 1}), &[("src/a", "aaaaaaaaaa"), ("src/b", "bb")], &[("up", "h1")]);
        assert_eq!(diff(&base, &param), vec![Change::Param { at: "/text".into() }]);
        assert_eq!(Why::Miss { because: diff(&base, &param) }.describe(), "miss: param /text changed");

        let input = parts(json!({"text": "a", "n": 1}), &[("src/a", "cccccccccc"), ("src/b", "bb")], &[("up", "h1")]);
        let changes = diff(&base, &input);
        assert_eq!(
            changes,
            vec![Change::Input {
                path: "src/a".into(),
                old: Some("aaaaaaaaaa".into()),
                new: Some("cccccccccc".into())
            }]
        );
        assert_eq!(changes[0].describe(), "input src/a changed (aaaaaaaa → cccccccc)");

        let gone_and_new =
            parts(json!({"text": "a", "n": 1}), &[("src/a", "aaaaaaaaaa"), ("src/c", "cc")], &[("up", "h1")]);
        assert_eq!(
            diff(&base, &gone_and_new).iter().map(Change::describe).collect::<Vec<_>>(),
            ["input src/b is gone", "input src/c is new"]
        );

        let upstream =
            parts(json!({"text": "a", "n": 1}), &[("src/a", "aaaaaaaaaa"), ("src/b", "bb")], &[("up", "h2")]);
        assert_eq!(diff(&base, &upstream), vec![Change::Upstream { step: "up".into() }]);

        let mut definition = base.clone();
        definition.definition["timeoutMs"] = json!(5000);
        definition.definition["action"]["method"] = json!("other");
        assert_eq!(
            diff(&base, &definition),
            vec![Change::Definition { what: "method".into() }, Change::Definition { what: "timeoutMs".into() }]
        );
        assert_eq!(
            Why::Miss { because: diff(&base, &definition) }.describe(),
            "miss: definition changed (method) (+1 more)"
        );
    }

    #[test]
    fn decisions_read_as_sentences() {
        assert_eq!(Why::Hit { run: Some("R1".into()) }.describe(), "hit from run R1");
        assert_eq!(Why::Miss { because: vec![Change::NoCache] }.describe(), "miss: --no-cache");
        assert_eq!(Why::Miss { because: vec![Change::CacheOff] }.describe(), "miss: cache = false");
        assert_eq!(Why::Miss { because: vec![Change::NeverRan] }.describe(), "miss: never ran");
        let json = serde_json::to_value(Why::Miss { because: vec![Change::Upstream { step: "a".into() }] }).unwrap();
        assert_eq!(json, json!({"decision": "miss", "because": [{"kind": "upstream", "step": "a"}]}));
    }
}
