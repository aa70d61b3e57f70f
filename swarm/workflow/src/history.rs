//! Runs kept, not lost: each run's record in `.skep/runs/<id>.json`, a line
//! per run in `.skep/history.jsonl`, and named baselines in
//! `.skep/baselines.json`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::WorkflowError;
use super::profile::{Analysis, StepOutcome, StepRecord};
use super::regress::{Regression, RegressionRule, judge};

/// How many earlier runs the moving average of a step's duration spans.
pub const PREDICTION_WINDOW: usize = 5;

/// A finished run: what was run, how each step went, and its analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    /// The run's id (a UTC timestamp and a random suffix).
    pub id: String,
    /// The workflow's name.
    pub workflow: String,
    /// The workflow file.
    pub file: String,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// Its wall time.
    pub wall_ms: f64,
    /// Whether every step succeeded.
    pub ok: bool,
    /// The `--jobs` bound it ran with.
    pub jobs: usize,
    /// Whether the cache was consulted.
    pub cache_used: bool,
    /// Every step, in file order.
    pub steps: Vec<StepRecord>,
    /// Where the time went.
    pub analysis: Analysis,
    /// Why the run was stopped before its end ("SIGTERM"), if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled: Option<String>,
}

/// One line of `history.jsonl`: a run in brief.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryLine {
    /// The run's id.
    pub id: String,
    /// The workflow's name.
    pub workflow: String,
    /// When it started (ms since the epoch).
    pub started_at_ms: u64,
    /// Its wall time.
    pub wall_ms: f64,
    /// Whether it succeeded.
    pub ok: bool,
    /// Durations of the steps that ran and succeeded (cache hits left out).
    pub durations: BTreeMap<String, f64>,
    /// Whether the cache was consulted (unknown in lines older than this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_used: Option<bool>,
    /// Estimated costs of the steps that ran and were priced.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub costs: BTreeMap<String, f64>,
}

impl HistoryLine {
    /// The brief of a record.
    pub fn of(r: &RunRecord) -> HistoryLine {
        HistoryLine::from_steps(&r.id, &r.workflow, r.started_at_ms, r.wall_ms, r.ok, r.cache_used, &r.steps)
    }

    /// The brief of a run from its parts (before its record exists).
    pub fn from_steps(
        id: &str,
        workflow: &str,
        started_at_ms: u64,
        wall_ms: f64,
        ok: bool,
        cache_used: bool,
        steps: &[StepRecord],
    ) -> HistoryLine {
        let ran = steps.iter().filter(|s| s.outcome == StepOutcome::Ok && !s.cache_hit);
        HistoryLine {
            id: id.to_owned(),
            workflow: workflow.to_owned(),
            started_at_ms,
            wall_ms,
            ok,
            durations: ran.clone().map(|s| (s.id.clone(), s.duration_ms)).collect(),
            cache_used: Some(cache_used),
            costs: ran.filter_map(|s| Some((s.id.clone(), s.cost?))).collect(),
        }
    }
}

/// The history under one state directory.
#[derive(Debug, Clone)]
pub struct History {
    dir: PathBuf,
}

fn state_err(path: &Path) -> impl FnOnce(std::io::Error) -> WorkflowError + '_ {
    move |source| WorkflowError::State { path: path.to_path_buf(), source }
}

impl History {
    /// The history kept in `state_dir` (usually `<workdir>/.skep`).
    pub fn new(state_dir: &Path) -> History {
        History { dir: state_dir.to_path_buf() }
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the record of run `id` is (or will be) written.
    pub fn record_path(&self, id: &str) -> PathBuf {
        self.dir.join("runs").join(format!("{id}.json"))
    }

    /// Writes a run's record (atomically) and appends its line to the history.
    pub fn save(&self, record: &RunRecord) -> Result<PathBuf, WorkflowError> {
        let runs = self.dir.join("runs");
        std::fs::create_dir_all(&runs).map_err(state_err(&runs))?;
        let path = self.record_path(&record.id);
        let temp = runs.join(format!(".{}.tmp", record.id));
        let text = serde_json::to_string_pretty(record).expect("records serialize");
        std::fs::write(&temp, text).and_then(|()| std::fs::rename(&temp, &path)).map_err(state_err(&path))?;
        let lines = self.dir.join("history.jsonl");
        let mut line = serde_json::to_string(&HistoryLine::of(record)).expect("lines serialize");
        line.push('\n');
        // One write of one line in append mode: concurrent runs do not interleave their lines.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&lines)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(state_err(&lines))?;
        Ok(path)
    }

    /// Every history line, oldest first; lines that do not parse are passed over.
    pub fn lines(&self) -> Result<Vec<HistoryLine>, WorkflowError> {
        let path = self.dir.join("history.jsonl");
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(state_err(&path)(e)),
        }
    }

    /// The record of run `id` (or the one run whose id starts with it).
    pub fn load(&self, id: &str) -> Result<RunRecord, WorkflowError> {
        let lines = self.lines()?;
        let matching: Vec<&HistoryLine> = lines.iter().filter(|l| l.id.starts_with(id)).collect();
        let full = match matching.as_slice() {
            [one] => one.id.clone(),
            _ if lines.iter().any(|l| l.id == id) => id.to_owned(),
            _ => return Err(WorkflowError::NoSuchRun { what: id.to_owned(), dir: self.dir.clone() }),
        };
        let path = self.dir.join("runs").join(format!("{full}.json"));
        let text = std::fs::read_to_string(&path).map_err(state_err(&path))?;
        serde_json::from_str(&text).map_err(|e| WorkflowError::Corrupt { path, reason: e.to_string() })
    }

    /// The latest run, of `workflow` if given.
    pub fn latest(&self, workflow: Option<&str>) -> Result<Option<RunRecord>, WorkflowError> {
        let lines = self.lines()?;
        let last = lines.iter().rev().find(|l| workflow.is_none_or(|w| l.workflow == w));
        last.map(|l| self.load(&l.id)).transpose()
    }

    /// Each step's predicted duration: the mean over its last runs of `workflow`.
    pub fn predictions(&self, workflow: &str) -> Result<HashMap<String, f64>, WorkflowError> {
        let mut seen: HashMap<String, Vec<f64>> = HashMap::new();
        for line in self.lines()?.iter().rev().filter(|l| l.workflow == workflow) {
            for (id, ms) in &line.durations {
                let past = seen.entry(id.clone()).or_default();
                if past.len() < PREDICTION_WINDOW {
                    past.push(*ms);
                }
            }
        }
        Ok(seen.into_iter().map(|(id, v)| (id, v.iter().sum::<f64>() / v.len() as f64)).collect())
    }

    /// Each step's estimated cost the last time it ran and was priced: what a
    /// cache hit of it saves.
    pub fn last_costs(&self, workflow: &str) -> Result<HashMap<String, f64>, WorkflowError> {
        let mut seen: HashMap<String, f64> = HashMap::new();
        for line in self.lines()?.iter().filter(|l| l.workflow == workflow) {
            seen.extend(line.costs.iter().map(|(k, v)| (k.clone(), *v)));
        }
        Ok(seen)
    }

    /// The history lines a run is judged against: `baseline`'s run alone, or
    /// every line of its workflow before it.
    pub fn yardstick(&self, record: &RunRecord, baseline: Option<&str>) -> Result<Vec<HistoryLine>, WorkflowError> {
        if let Some(name) = baseline {
            return Ok(vec![HistoryLine::of(&self.baseline(name)?)]);
        }
        let lines = self.lines()?;
        let before = lines.iter().position(|l| l.id == record.id).unwrap_or(lines.len());
        Ok(lines[..before].iter().filter(|l| l.workflow == record.workflow).cloned().collect())
    }

    /// The CI gate: what of `record` regressed under `rule` against
    /// `baseline`'s run, or against the earlier runs of its workflow.
    pub fn gate(
        &self,
        record: &RunRecord,
        baseline: Option<&str>,
        rule: RegressionRule,
    ) -> Result<Vec<Regression>, WorkflowError> {
        Ok(judge(&HistoryLine::of(record), &self.yardstick(record, baseline)?, rule))
    }

    /// Pins run `id` as baseline `name`.
    pub fn pin(&self, name: &str, id: &str) -> Result<(), WorkflowError> {
        let path = self.dir.join("baselines.json");
        let mut pins = self.baselines()?;
        pins.insert(name.to_owned(), id.to_owned());
        std::fs::create_dir_all(&self.dir).map_err(state_err(&self.dir))?;
        let temp = self.dir.join(".baselines.json.tmp");
        let text = serde_json::to_string_pretty(&pins).expect("a map serializes");
        std::fs::write(&temp, text).and_then(|()| std::fs::rename(&temp, &path)).map_err(state_err(&path))
    }

    /// The pinned baselines: name → run id.
    pub fn baselines(&self) -> Result<BTreeMap<String, String>, WorkflowError> {
        let path = self.dir.join("baselines.json");
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| WorkflowError::Corrupt { path, reason: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(state_err(&path)(e)),
        }
    }

    /// The run pinned as baseline `name`.
    pub fn baseline(&self, name: &str) -> Result<RunRecord, WorkflowError> {
        let id = self.baselines()?.remove(name);
        let id =
            id.ok_or_else(|| WorkflowError::NoSuchRun { what: format!("baseline {name}"), dir: self.dir.clone() })?;
        self.load(&id)
    }
}

/// A run id for a run started at `unix_ms`: `20250102T030405Z-1a2b`.
pub fn run_id(unix_ms: u64) -> String {
    // Past jiff's range (year 9999) the id would not sort anyway; the epoch keeps it well-formed.
    let at = i64::try_from(unix_ms).ok().and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok());
    let stamp = at.unwrap_or(jiff::Timestamp::UNIX_EPOCH).strftime("%Y%m%dT%H%M%SZ");
    format!("{stamp}-{:04x}", fastrand::u16(..))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_read_as_utc_time() {
        // 2021-03-04 05:06:07 UTC.
        let id = run_id(1_614_834_367_000);
        assert!(id.starts_with("20210304T050607Z-"), "{id}");
        // A leap day and the last second of a year.
        assert!(run_id(1_709_208_000_000).starts_with("20240229T120000Z-"));
        assert!(run_id(1_704_067_199_999).starts_with("20231231T235959Z-"));
        assert_eq!(run_id(u64::MAX).len(), "19700101T000000Z-0000".len());
    }
}
