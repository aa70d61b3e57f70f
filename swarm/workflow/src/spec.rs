//! Loading and validating a workflow file: its steps, their needs, stages
//! and references. Every error names the step and the file's line.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use toml::Spanned;

use super::error::WorkflowError;
use super::graph::Graph;
use super::inputs::input_glob;
use super::params::find_references;
use skep_swarm::{Config, Cost, Invalid, Location, from_toml, is_valid_name, parse_duration, read_source};

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A call through the swarm to an agent of `role`.
    Call {
        /// The role whose agent answers.
        role: String,
        /// The agent's method.
        method: String,
        /// The params, possibly holding `${steps...}` references.
        params: Option<Value>,
    },
    /// A command run as a fresh process (argv; through `/bin/sh -c` only with `shell`).
    Command {
        /// The argv, possibly holding `${steps...}` references.
        argv: Vec<String>,
        /// Whether the argv is joined and run by `/bin/sh -c`.
        shell: bool,
    },
}

/// One validated step.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Its id, unique in the workflow (the role name rule).
    pub id: String,
    /// The ids of the steps it waits for, as written.
    pub needs: Vec<String>,
    /// What it does.
    pub action: Action,
    /// Its own time limit (an agent call otherwise takes the role's).
    pub timeout: Option<Duration>,
    /// Extra attempts after a failure; only for idempotent calls.
    pub retries: u32,
    /// Whether a cached success may stand in for running it.
    pub cache: bool,
    /// Glob patterns (relative to the workdir) of files in its cache key.
    pub inputs: Vec<String>,
    /// Its stage, if any.
    pub stage: Option<String>,
    /// Variables passed to a command from skep's environment, besides PATH, HOME and LANG.
    pub env: Vec<String>,
    /// A command step's price list, for the profiler's cost estimate (an agent call's is its role's).
    pub cost: Option<Cost>,
    /// The 1-based line of its `[[steps]]` table.
    pub line: usize,
}

impl Step {
    /// The step's definition as it enters its cache key (everything but `needs`
    /// order and the line it sits on).
    pub fn definition(&self) -> Value {
        let action = match &self.action {
            Action::Call { role, method, params } => json!({ "role": role, "method": method, "params": params }),
            Action::Command { argv, shell } => json!({ "run": argv, "shell": shell }),
        };
        let mut definition = json!({
            "id": self.id,
            "action": action,
            "timeoutMs": self.timeout.map(|t| t.as_millis() as u64),
            "inputs": self.inputs,
        });
        // Only when set, so that steps without it keep their cached results.
        if !self.env.is_empty() {
            definition["env"] = json!(self.env);
        }
        definition
    }

    /// The role, for an agent call.
    pub fn role(&self) -> Option<&str> {
        match &self.action {
            Action::Call { role, .. } => Some(role),
            Action::Command { .. } => None,
        }
    }
}

/// A loaded, validated workflow.
#[derive(Debug, Clone)]
pub struct Workflow {
    /// Its `name` (the file stem if unset).
    pub name: String,
    /// The file (or `<inline>`), for messages.
    pub origin: String,
    /// Where commands run and `inputs` and `.skep/` are resolved.
    pub workdir: PathBuf,
    /// The steps in file order.
    pub steps: Vec<Step>,
    /// Stages in the order they first appear.
    pub stages: Vec<String>,
    /// Step `i` waits for its needs and for every step of the stage before its own.
    pub graph: Graph,
    /// A topological order of `graph`.
    pub order: Vec<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkflow {
    name: Option<String>,
    workdir: Option<String>,
    steps: Option<Vec<Spanned<RawStep>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    id: Option<String>,
    #[serde(default)]
    needs: Vec<String>,
    role: Option<String>,
    method: Option<String>,
    params: Option<toml::Value>,
    run: Option<Vec<String>>,
    shell: Option<bool>,
    timeout: Option<String>,
    retries: Option<u32>,
    cache: Option<bool>,
    #[serde(default)]
    inputs: Vec<String>,
    stage: Option<String>,
    #[serde(default)]
    env: Vec<String>,
    cost: Option<RawStepCost>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStepCost {
    per_second: Option<f64>,
    per_call: Option<f64>,
}

impl Workflow {
    /// Where its cache and run history live by default: `<workdir>/.skep`.
    pub fn state_dir(&self) -> PathBuf {
        self.workdir.join(".skep")
    }

    /// Reads and validates a workflow file; agent steps are checked against `config`'s roles.
    pub fn load(path: &Path, config: &Config) -> Result<Workflow, WorkflowError> {
        let text = read_source(path)?;
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let base = absolute.parent().unwrap_or(Path::new("."));
        let mut workflow = Workflow::parse(&text, &path.display().to_string(), base, config)?;
        if workflow.name.is_empty() {
            workflow.name = path.file_stem().map_or_else(|| "workflow".into(), |s| s.to_string_lossy().into_owned());
        }
        Ok(workflow)
    }

    /// Parses and validates text; `origin` names it in errors; `workdir` resolves against `base_dir`.
    pub fn parse(text: &str, origin: &str, base_dir: &Path, config: &Config) -> Result<Workflow, WorkflowError> {
        let at = |offset: usize, message: String| WorkflowError::from(Invalid::at(origin, text, offset, message));
        let raw: RawWorkflow = from_toml(origin, text)?;
        let raw_steps = raw.steps.unwrap_or_default();
        if raw_steps.is_empty() {
            return Err(at(0, "no steps: add at least one [[steps]] table with an id".into()));
        }
        let mut steps = Vec::with_capacity(raw_steps.len());
        // Where each step's table starts, for errors found after all steps are read.
        let mut places: Vec<Location> = Vec::with_capacity(raw_steps.len());
        let mut index: HashMap<String, usize> = HashMap::new();
        for raw_step in raw_steps {
            let offset = raw_step.span().start;
            let step = build_step(raw_step.into_inner(), config).map_err(|m| at(offset, m))?;
            let place = Location::at(origin, text, offset);
            if let Some(&first) = index.get(&step.id) {
                let first_line = places[first].line;
                return Err(at(offset, format!("step {}: the id is already used at line {first_line}", step.id)));
            }
            index.insert(step.id.clone(), steps.len());
            steps.push(Step { line: place.line, ..step });
            places.push(place);
        }
        let fail = |i: usize, problem: String| {
            WorkflowError::from(Invalid { location: places[i].clone(), problem, help: None })
        };
        let mut edges = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            for need in &step.needs {
                match index.get(need) {
                    Some(&d) => edges.push((d, i)),
                    None => return Err(fail(i, unknown_need(step, need, &index))),
                }
            }
        }
        let mut stages: Vec<String> = Vec::new();
        let mut by_stage: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, step) in steps.iter().enumerate() {
            if let Some(stage) = &step.stage {
                let k = stages.iter().position(|s| s == stage).unwrap_or_else(|| {
                    stages.push(stage.clone());
                    stages.len() - 1
                });
                by_stage.entry(k).or_default().push(i);
            }
        }
        let need_edges = edges.len();
        // Stage order: every step of a stage waits for every step of the one before.
        for k in 1..stages.len() {
            for &before in &by_stage[&(k - 1)] {
                edges.extend(by_stage[&k].iter().map(|&after| (before, after)));
            }
        }
        let stage_edge = |a: usize, b: usize| !edges[..need_edges].contains(&(a, b));
        let graph = Graph::new(steps.len(), edges.iter().copied());
        let order = match graph.topo_order() {
            Ok(order) => order,
            Err(cycle) => {
                let mut names = steps[cycle[0]].id.clone();
                for pair in cycle.windows(2) {
                    let arrow = if stage_edge(pair[0], pair[1]) { " -(stage order)-> " } else { " -> " };
                    names.push_str(arrow);
                    names.push_str(&steps[pair[1]].id);
                }
                let message = format!(
                    "step {}: needs form a cycle: {names}; remove one of these needs so the steps can run in order",
                    steps[cycle[0]].id
                );
                return Err(fail(cycle[0], message));
            }
        };
        for (i, step) in steps.iter().enumerate() {
            let refs = match &step.action {
                Action::Call { params: Some(p), .. } => find_references(p),
                Action::Call { params: None, .. } => Ok(Vec::new()),
                Action::Command { argv, .. } => find_references(&json!(argv)),
            }
            .map_err(|m| fail(i, format!("step {}: {m}", step.id)))?;
            let upstream = graph.ancestors(i);
            for r in refs {
                match index.get(&r.step) {
                    None => {
                        return Err(fail(
                            i,
                            format!(
                                "step {} refers to the result of {}, but there is no step {}",
                                step.id, r.step, r.step
                            ),
                        ));
                    }
                    Some(&d) if !upstream[d] => {
                        let message = format!(
                            "step {} refers to the result of {}, which is not upstream of it: add \"{}\" to its needs",
                            step.id, r.step, r.step
                        );
                        return Err(fail(i, message));
                    }
                    Some(_) => {}
                }
            }
        }
        let workdir = match raw.workdir {
            Some(dir) => base_dir.join(dir),
            None => base_dir.to_path_buf(),
        };
        // `..` spelled out in every path printed later helps nobody.
        let workdir = std::fs::canonicalize(&workdir).unwrap_or(workdir);
        let name = raw.name.unwrap_or_default();
        Ok(Workflow { name, origin: origin.to_owned(), workdir, steps, stages, graph, order })
    }

    /// The index of the step with this id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.id == id)
    }
}

fn unknown_need(step: &Step, need: &str, index: &HashMap<String, usize>) -> String {
    let mut known: Vec<&str> = index.keys().map(String::as_str).collect();
    known.sort_unstable();
    format!("step {} needs {need:?}, but there is no step {need:?} (steps: {})", step.id, known.join(", "))
}

fn build_step(raw: RawStep, config: &Config) -> Result<Step, String> {
    let id = raw.id.ok_or("a step has no id: add id = \"...\" to its [[steps]] table")?;
    if !is_valid_name(&id) {
        return Err(format!("step id {id:?}: expected 1 to 64 characters from [A-Za-z0-9._-]"));
    }
    let action = match (raw.role, raw.run) {
        (Some(_), Some(_)) => {
            return Err(format!("step {id}: has both role and run; a step is an agent call or a command"));
        }
        (None, None) => return Err(format!("step {id}: has neither role (an agent call) nor run (a command)")),
        (Some(role), None) => {
            let Some(role_config) = config.roles.get(&role) else {
                let known: Vec<&str> = config.roles.keys().map(String::as_str).collect();
                return Err(format!(
                    "step {id}: unknown role {role:?}; known roles: {} (declare it in skep.toml and pass --config)",
                    known.join(", ")
                ));
            };
            let method = raw.method.ok_or_else(|| format!("step {id}: role {role} needs a method = \"...\""))?;
            if let Some(n) = raw.retries.filter(|&n| n > 0)
                && !role_config.idempotent.contains(&method)
            {
                return Err(format!(
                    "step {id}: retries = {n} needs an idempotent method, but role {role} does not list {method:?} in \
                     idempotent (a retried call with side effects could repeat them)"
                ));
            }
            if raw.shell.is_some() {
                return Err(format!("step {id}: shell applies to run commands, not to agent calls"));
            }
            if !raw.env.is_empty() {
                return Err(format!(
                    "step {id}: env applies to run commands; a role's environment is set in skep.toml"
                ));
            }
            if raw.cost.is_some() {
                return Err(format!(
                    "step {id}: cost applies to run commands; an agent call is priced by its role's [roles.{role}.cost] in skep.toml"
                ));
            }
            let params = raw.params.map(|p| serde_json::to_value(p).map_err(|e| format!("step {id}: params: {e}")));
            Action::Call { role, method, params: params.transpose()? }
        }
        (None, Some(argv)) => {
            if argv.first().is_none_or(String::is_empty) {
                return Err(format!("step {id}: run must be a non-empty argv such as [\"cargo\", \"test\"]"));
            }
            if raw.retries.is_some_and(|n| n > 0) {
                return Err(format!("step {id}: retries is only for idempotent agent calls, not commands"));
            }
            if raw.method.is_some() || raw.params.is_some() {
                return Err(format!("step {id}: method and params belong to agent calls (role = ...), not run"));
            }
            Action::Command { argv, shell: raw.shell.unwrap_or(false) }
        }
    };
    let timeout = match raw.timeout {
        None => None,
        Some(t) => Some(parse_duration(&t).map_err(|e| format!("step {id}: timeout: {e}"))?),
    };
    for pattern in &raw.inputs {
        if let Err(e) = input_glob(pattern) {
            let reason = e.kind();
            return Err(format!(
                "step {id}: inputs: {pattern:?} is not a glob pattern ({reason}); a literal [ or {{ is written [[] or [{{]"
            ));
        }
    }
    let price = |v: Option<f64>, key: &str| match v {
        Some(n) if !(n.is_finite() && n >= 0.0) => {
            Err(format!("step {id}: cost.{key}: expected a price of at least 0, found {n}"))
        }
        v => Ok(v.unwrap_or(0.0)),
    };
    let cost = match raw.cost {
        None => None,
        Some(c) => Some(Cost {
            per_second: price(c.per_second, "per_second")?,
            per_call: price(c.per_call, "per_call")?,
            ..Cost::default()
        }),
    };
    if let Some(stage) = raw.stage.as_ref().filter(|s| !is_valid_name(s)) {
        return Err(format!("step {id}: stage {stage:?}: expected 1 to 64 characters from [A-Za-z0-9._-]"));
    }
    Ok(Step {
        id,
        needs: raw.needs,
        action,
        timeout,
        retries: raw.retries.unwrap_or(0),
        cache: raw.cache.unwrap_or(true),
        inputs: raw.inputs,
        stage: raw.stage,
        env: raw.env,
        cost,
        line: 0,
    })
}
