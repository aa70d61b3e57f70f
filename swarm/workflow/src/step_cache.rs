//! The smart-skip cache: content-addressed results of successful steps on
//! disk, one file per key, written atomically (temp file + rename), bounded
//! by a TTL and a total size.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::why::KeyParts;

/// The cache's directory under the state directory (`.skep/cache/`).
pub const STEP_CACHE_DIR: &str = "cache";
/// Under the cache, each step's latest key parts (for "why did it miss").
const PARTS_DIR: &str = "parts";

/// How long entries live and how much they may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepCacheLimits {
    /// Entries older than this are misses and are pruned.
    pub ttl: Duration,
    /// Past this total, the oldest entries are pruned.
    pub max_bytes: u64,
}

impl Default for StepCacheLimits {
    fn default() -> Self {
        StepCacheLimits { ttl: Duration::from_secs(7 * 24 * 3600), max_bytes: 256 << 20 }
    }
}

/// The cache of one state directory.
#[derive(Debug, Clone)]
pub struct StepCache {
    dir: PathBuf,
    limits: StepCacheLimits,
}

impl StepCache {
    /// The cache under `state_dir` (created on first write).
    pub fn new(state_dir: &Path, limits: StepCacheLimits) -> StepCache {
        StepCache { dir: state_dir.join(STEP_CACHE_DIR), limits }
    }

    /// A step's key: the hash of its definition, its resolved params, the
    /// content hashes of its inputs and its upstream steps' results.
    pub fn key(
        definition: &Value,
        resolved: &Value,
        inputs: &[(String, String)],
        upstream: &[(&str, &Value)],
    ) -> String {
        let material = json!({
            "v": 1,
            "definition": definition,
            "resolved": resolved,
            "inputs": inputs,
            "upstream": upstream,
        });
        hex(&Sha256::digest(material.to_string().as_bytes()))
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    /// The cached result for `key`, unless missing, unreadable or older than the TTL.
    pub fn get(&self, key: &str, now: SystemTime) -> Option<Value> {
        self.get_with_run(key, now).map(|(result, _)| result)
    }

    /// The cached result for `key` and the run that stored it (if recorded).
    pub fn get_with_run(&self, key: &str, now: SystemTime) -> Option<(Value, Option<String>)> {
        let text = std::fs::read_to_string(self.path(key)).ok()?;
        let mut entry: Value = serde_json::from_str(&text).ok()?;
        let stored = entry.get("storedAtMs")?.as_u64()?;
        let age = unix_ms(now).saturating_sub(stored);
        if age > self.limits.ttl.as_millis() as u64 {
            return None;
        }
        let run = entry.get("run").and_then(Value::as_str).map(str::to_owned);
        Some((entry.get_mut("result")?.take(), run))
    }

    fn parts_path(&self, workflow: &str, step: &str) -> PathBuf {
        // Workflow names are free text: hashed into the file name.
        let workflow = hex(&Sha256::digest(workflow.as_bytes()));
        self.dir.join(PARTS_DIR).join(format!("{}-{step}.json", &workflow[..16]))
    }

    /// The key parts of the latest entry stored for `step` of `workflow`.
    pub fn latest_parts(&self, workflow: &str, step: &str) -> Option<KeyParts> {
        let text = std::fs::read_to_string(self.parts_path(workflow, step)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Remembers the parts of the entry just stored for `step`, so a later miss can say what changed.
    pub fn remember_parts(&self, workflow: &str, step: &str, parts: &KeyParts) -> std::io::Result<()> {
        let path = self.parts_path(workflow, step);
        let dir = path.parent().expect("the parts file sits in a directory");
        std::fs::create_dir_all(dir)?;
        let temp = dir.join(format!(".{step}.{}.tmp", std::process::id()));
        std::fs::write(&temp, serde_json::to_string(parts).expect("parts serialize"))?;
        std::fs::rename(&temp, path)
    }

    /// Stores a success of run `run`, then prunes expired entries and, past the size cap, the oldest.
    pub fn put(&self, key: &str, step: &str, run: &str, result: &Value, now: SystemTime) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let entry = json!({ "step": step, "run": run, "storedAtMs": unix_ms(now), "result": result });
        // A reader never sees half an entry: it is written aside and renamed into place.
        let temp = self.dir.join(format!(".{key}.{}.tmp", std::process::id()));
        std::fs::write(&temp, entry.to_string())?;
        std::fs::rename(&temp, self.path(key))?;
        self.prune(now)
    }

    fn prune(&self, now: SystemTime) -> std::io::Result<()> {
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            let name = entry.file_name();
            if !meta.is_file() || !name.to_string_lossy().ends_with(".json") {
                continue;
            }
            let modified = meta.modified().unwrap_or(UNIX_EPOCH);
            entries.push((modified, meta.len(), entry.path()));
        }
        entries.sort();
        let mut total: u64 = entries.iter().map(|e| e.1).sum();
        for (modified, len, path) in entries {
            let expired = now.duration_since(modified).is_ok_and(|age| age > self.limits.ttl);
            if expired || total > self.limits.max_bytes {
                // Another run may have pruned it first: that is fine.
                let _ = std::fs::remove_file(path);
                total -= len;
            }
        }
        Ok(())
    }
}

/// The SHA-256 of a value's compact JSON, in hex.
pub(crate) fn hash_value(value: &Value) -> String {
    hex(&Sha256::digest(value.to_string().as_bytes()))
}

/// The SHA-256 of a file's contents, in hex.
pub(crate) fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new().prefix(&format!("skep-cache-{name}-")).tempdir().unwrap()
    }

    #[test]
    fn a_stored_result_comes_back_until_its_ttl() {
        let dir = temp_dir("ttl");
        let cache = StepCache::new(dir.path(), StepCacheLimits { ttl: Duration::from_secs(60), max_bytes: 1 << 20 });
        let now = SystemTime::now();
        let key = StepCache::key(&json!({"id": "a"}), &json!(null), &[], &[]);
        assert_eq!(cache.get(&key, now), None);
        cache.put(&key, "a", "R1", &json!({"exitCode": 0}), now).unwrap();
        assert_eq!(cache.get_with_run(&key, now).unwrap().1.as_deref(), Some("R1"));
        assert_eq!(cache.get(&key, now + Duration::from_secs(59)), Some(json!({"exitCode": 0})));
        assert_eq!(cache.get(&key, now + Duration::from_secs(61)), None);
    }

    #[test]
    fn keys_change_with_any_part() {
        let base = StepCache::key(&json!(1), &json!(2), &[("f".into(), "h".into())], &[("u", &json!(3))]);
        assert_ne!(base, StepCache::key(&json!(1), &json!(2), &[("f".into(), "h2".into())], &[("u", &json!(3))]));
        assert_ne!(base, StepCache::key(&json!(1), &json!(2), &[("f".into(), "h".into())], &[("u", &json!(4))]));
        assert_eq!(base.len(), 64);
    }

    #[test]
    fn past_the_size_cap_the_oldest_go() {
        let dir = temp_dir("cap");
        let cache = StepCache::new(dir.path(), StepCacheLimits { ttl: Duration::from_secs(3600), max_bytes: 300 });
        let big = json!("x".repeat(100));
        let now = SystemTime::now();
        for i in 0..5 {
            cache.put(&format!("k{i}"), "s", "R", &big, now).unwrap();
        }
        let left = std::fs::read_dir(dir.path().join(STEP_CACHE_DIR))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().is_file())
            .count();
        assert!((1..5).contains(&left), "{left} entries left");
        assert!(cache.get("k4", now).is_some(), "the newest survives");
    }
}
