//! The idempotent-call cache: results of calls declared idempotent, keyed by
//! SHA-256 of (scope, method, canonical params), with a TTL, an entry cap and a
//! byte cap. Identical calls in flight share one upstream call; errors are
//! passed to everyone waiting on that call but never stored.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt as _, Shared, WeakShared};
use lru::LruCache;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

/// What an entry weighs beyond its value: key, timestamps, list links.
const ENTRY_OVERHEAD: usize = 64;

/// Limits of an idempotent-call cache.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    /// How long a result stays fresh.
    pub ttl: Duration,
    /// Most entries kept.
    pub max_entries: usize,
    /// Most bytes kept (values plus a fixed overhead per entry).
    pub max_bytes: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig { ttl: Duration::from_secs(600), max_entries: 10_000, max_bytes: 64 * 1024 * 1024 }
    }
}

/// SHA-256 of (scope, method, canonical params).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// `scope` separates callers that share one cache (a role name, or "").
    /// Absent params and `null` params give the same key.
    pub fn new(scope: &str, method: &str, params: Option<&RawValue>) -> Result<Self, serde_json::Error> {
        let mut hash = Sha256::new();
        // Lengths first, so ("ab", "c") and ("a", "bc") cannot collide.
        hash.update((scope.len() as u64).to_le_bytes());
        hash.update(scope);
        hash.update((method.len() as u64).to_le_bytes());
        hash.update(method);
        if let Some(params) = params.filter(|p| p.get() != "null") {
            hash.update(canonical_json(params)?);
        }
        Ok(CacheKey(hash.finalize().into()))
    }
}

/// Writes `value` as canonical JSON: object keys sorted by their UTF-8 bytes,
/// no insignificant whitespace, strings escaped uniformly. JSON values that
/// differ only in key order or whitespace give equal bytes.
pub fn canonical_json(value: &RawValue) -> Result<Vec<u8>, serde_json::Error> {
    let value: serde_json::Value = serde_json::from_str(value.get())?;
    let mut out = Vec::with_capacity(value.to_string().len());
    write_canonical(&value, &mut out)?;
    Ok(out)
}

fn write_canonical(value: &serde_json::Value, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            // serde_json's map may keep insertion order (feature preserve_order): sort here.
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key)?;
                out.push(b':');
                write_canonical(value, out)?;
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out)?;
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar)?,
    }
    Ok(())
}

/// Counters of one cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheStats {
    /// Calls answered from a stored result.
    pub hits: u64,
    /// Calls that had to go upstream.
    pub misses: u64,
    /// Calls that joined an identical call already in flight.
    pub coalesced: u64,
    /// Entries pushed out by a cap.
    pub evictions: u64,
    /// Entries found stale.
    pub expirations: u64,
    /// Entries stored now.
    pub entries: u64,
    /// Bytes stored now.
    pub bytes: u64,
}

struct Entry {
    value: Arc<RawValue>,
    stored_at: Instant,
}

/// The synchronous store: LRU with a TTL and a byte cap; time is passed in.
pub struct ResultStore {
    config: CacheConfig,
    entries: LruCache<CacheKey, Entry>,
    bytes: usize,
    evictions: u64,
    expirations: u64,
}

impl std::fmt::Debug for ResultStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultStore").field("entries", &self.entries.len()).field("bytes", &self.bytes).finish()
    }
}

impl ResultStore {
    /// An empty store with these limits.
    pub fn new(config: CacheConfig) -> Self {
        ResultStore { entries: LruCache::unbounded(), config, bytes: 0, evictions: 0, expirations: 0 }
    }

    /// A live entry, refreshed as most recently used; a stale one is removed.
    pub fn get(&mut self, key: &CacheKey, now: Instant) -> Option<Arc<RawValue>> {
        let entry = self.entries.get(key)?;
        if now.saturating_duration_since(entry.stored_at) < self.config.ttl {
            return Some(Arc::clone(&entry.value));
        }
        let stale = self.entries.pop(key).expect("the entry was just found");
        self.bytes -= weight(&stale.value);
        self.expirations += 1;
        None
    }

    /// Stores a value, evicting least recently used entries until both caps
    /// hold. A value larger than the byte cap on its own is not stored.
    pub fn insert(&mut self, key: CacheKey, value: Arc<RawValue>, now: Instant) -> bool {
        let size = weight(&value);
        if size > self.config.max_bytes || self.config.max_entries == 0 {
            return false;
        }
        if let Some(old) = self.entries.put(key, Entry { value, stored_at: now }) {
            self.bytes -= weight(&old.value);
        }
        self.bytes += size;
        while self.bytes > self.config.max_bytes || self.entries.len() > self.config.max_entries {
            let (_, evicted) = self.entries.pop_lru().expect("over a cap means not empty");
            self.bytes -= weight(&evicted.value);
            self.evictions += 1;
        }
        true
    }

    /// Entries stored.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes stored, by the weight used for the cap.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Drops every entry.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
}

fn weight(value: &RawValue) -> usize {
    value.get().len() + ENTRY_OVERHEAD
}

/// An upstream call shared by every identical caller; its error type is
/// erased so one cache serves any caller.
type Upstream = BoxFuture<'static, Result<Arc<RawValue>, ErasedError>>;
type Flight = Shared<Upstream>;
type ErasedError = Arc<dyn std::any::Any + Send + Sync>;

/// A thread-safe cache with single flight.
pub struct IdempotentCache {
    config: CacheConfig,
    store: Mutex<ResultStore>,
    /// Weak, so a flight whose every waiter gave up is dropped (and its
    /// upstream call cancelled) instead of running on for nobody.
    flights: Mutex<HashMap<CacheKey, WeakShared<Upstream>>>,
    hits: AtomicU64,
    misses: AtomicU64,
    coalesced: AtomicU64,
}

impl std::fmt::Debug for IdempotentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotentCache").field("stats", &self.stats()).finish()
    }
}

impl IdempotentCache {
    /// An empty cache with these limits.
    pub fn new(config: CacheConfig) -> Self {
        IdempotentCache {
            store: Mutex::new(ResultStore::new(config.clone())),
            config,
            flights: Mutex::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
        }
    }

    /// The limits it was made with.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// A stored live value (counted as a hit), without calling upstream.
    pub fn get(&self, key: &CacheKey) -> Option<Arc<RawValue>> {
        let value = self.lock_store().get(key, now())?;
        self.hits.fetch_add(1, Relaxed);
        Some(value)
    }

    /// The cached value for `key`, or the result of `call`, run once for all
    /// concurrent callers of the same key; a success is stored.
    pub async fn get_or_call<F, Fut, E>(self: &Arc<Self>, key: CacheKey, call: F) -> Result<Arc<RawValue>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Arc<RawValue>, E>> + Send + 'static,
        E: Clone + Send + Sync + 'static,
    {
        if let Some(value) = self.get(&key) {
            return Ok(value);
        }
        let flight = {
            let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
            match flights.get(&key).and_then(WeakShared::upgrade) {
                Some(flight) => {
                    self.coalesced.fetch_add(1, Relaxed);
                    flight
                }
                None => {
                    self.misses.fetch_add(1, Relaxed);
                    let upstream = call();
                    let cache = Arc::clone(self);
                    let flight: Flight = async move {
                        let result = upstream.await;
                        if let Ok(value) = &result {
                            cache.lock_store().insert(key, Arc::clone(value), now());
                        }
                        cache.flights.lock().unwrap_or_else(PoisonError::into_inner).remove(&key);
                        result.map_err(|e| Arc::new(e) as ErasedError)
                    }
                    .boxed()
                    .shared();
                    flights.insert(key, flight.downgrade().expect("the flight was not polled yet"));
                    flight
                }
            }
        };
        flight.await.map_err(|e| e.downcast_ref::<E>().cloned().expect("one key, one error type"))
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> CacheStats {
        let store = self.lock_store();
        CacheStats {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            coalesced: self.coalesced.load(Relaxed),
            evictions: store.evictions,
            expirations: store.expirations,
            entries: store.len() as u64,
            bytes: store.bytes() as u64,
        }
    }

    /// Drops every stored value (flights in progress carry on).
    pub fn clear(&self) {
        self.lock_store().clear();
    }

    fn lock_store(&self) -> std::sync::MutexGuard<'_, ResultStore> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Tokio's clock, so tests on a paused runtime control expiry.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).expect("valid JSON")
    }

    fn value(text: &str) -> Arc<RawValue> {
        Arc::from(raw(text))
    }

    fn key(n: u32) -> CacheKey {
        CacheKey::new("", "m", Some(&raw(&n.to_string()))).expect("key")
    }

    #[test]
    fn canonical_json_ignores_key_order_and_whitespace() {
        let a = canonical_json(&raw(r#"{"b": [ {"z":1,"a":2} ], "a": "x\u0041"}"#)).expect("json");
        let b = canonical_json(&raw(r#"{"a":"xA","b":[{"a":2,"z":1}]}"#)).expect("json");
        assert_eq!(a, b);
        assert_eq!(a, br#"{"a":"xA","b":[{"a":2,"z":1}]}"#);
        let k = |scope, method, params: Option<&str>| {
            CacheKey::new(scope, method, params.map(raw).as_deref()).expect("key")
        };
        assert_eq!(k("", "m", Some(r#"{"a":1,"b":2}"#)), k("", "m", Some(r#"{ "b":2, "a":1 }"#)));
        assert_ne!(k("", "m", Some("[1]")), k("", "m", Some("[2]")));
        assert_ne!(k("r1", "m", None), k("r2", "m", None));
        assert_ne!(k("", "m1", None), k("", "m2", None));
        assert_ne!(k("ab", "c", None), k("a", "bc", None));
        assert_eq!(k("", "m", None), k("", "m", Some("null")));
        assert_ne!(k("", "m", None), k("", "m", Some("[]")));
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        let mut store = ResultStore::new(CacheConfig { ttl, ..CacheConfig::default() });
        assert!(store.insert(key(1), value("1"), t0));
        assert!(store.get(&key(1), t0 + ttl - Duration::from_millis(1)).is_some());
        assert!(store.get(&key(1), t0 + ttl).is_none());
        assert_eq!((store.expirations, store.len(), store.bytes()), (1, 0, 0));
    }

    #[test]
    fn entry_cap_evicts_least_recently_used() {
        let t0 = Instant::now();
        let mut store = ResultStore::new(CacheConfig { max_entries: 2, ..CacheConfig::default() });
        store.insert(key(1), value("1"), t0);
        store.insert(key(2), value("2"), t0);
        assert!(store.get(&key(1), t0).is_some()); // 1 is now the most recent
        store.insert(key(3), value("3"), t0);
        assert!(store.get(&key(2), t0).is_none());
        assert!(store.get(&key(1), t0).is_some() && store.get(&key(3), t0).is_some());
        assert_eq!(store.evictions, 1);
    }

    #[test]
    fn byte_cap_holds() {
        let t0 = Instant::now();
        let max_bytes = 10 * 1024;
        let mut store = ResultStore::new(CacheConfig { max_bytes, ..CacheConfig::default() });
        let kib = value(&format!("\"{}\"", "k".repeat(1022)));
        for n in 0..100 {
            assert!(store.insert(key(n), Arc::clone(&kib), t0));
            assert!(store.bytes() <= max_bytes, "{} bytes after {n}", store.bytes());
        }
        assert_eq!(store.len(), max_bytes / (1024 + ENTRY_OVERHEAD));
        assert_eq!(store.evictions, 100 - store.len() as u64);
        assert!(!store.insert(key(1000), value(&format!("\"{}\"", "k".repeat(max_bytes))), t0));
    }

    fn counted(
        calls: &Arc<AtomicUsize>,
        result: Result<&'static str, &'static str>,
        wait: Duration,
    ) -> impl FnOnce() -> BoxFuture<'static, Result<Arc<RawValue>, String>> {
        let calls = Arc::clone(calls);
        move || {
            async move {
                calls.fetch_add(1, Relaxed);
                tokio::time::sleep(wait).await;
                result.map(value).map_err(str::to_owned)
            }
            .boxed()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_identical_calls_share_one_upstream_call() {
        let cache = Arc::new(IdempotentCache::new(CacheConfig::default()));
        let calls = Arc::new(AtomicUsize::new(0));
        let all = futures::future::join_all(
            (0..50).map(|_| cache.get_or_call(key(1), counted(&calls, Ok("7"), Duration::from_millis(100)))),
        )
        .await;
        assert!(all.iter().all(|r| r.as_ref().map(|v| v.get()) == Ok("7")));
        assert_eq!(calls.load(Relaxed), 1);
        let stats = cache.stats();
        assert_eq!((stats.misses, stats.coalesced, stats.entries), (1, 49, 1));
        cache.get_or_call(key(1), counted(&calls, Ok("8"), Duration::ZERO)).await.expect("hit");
        assert_eq!((calls.load(Relaxed), cache.stats().hits), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn errors_reach_every_waiter_and_are_not_stored() {
        let cache = Arc::new(IdempotentCache::new(CacheConfig::default()));
        let calls = Arc::new(AtomicUsize::new(0));
        let all = futures::future::join_all(
            (0..5).map(|_| cache.get_or_call(key(1), counted(&calls, Err("boom"), Duration::from_millis(10)))),
        )
        .await;
        assert!(all.iter().all(|r| r.as_ref().err().map(String::as_str) == Some("boom")));
        assert_eq!(calls.load(Relaxed), 1);
        let ok = cache.get_or_call(key(1), counted(&calls, Ok("1"), Duration::ZERO)).await;
        assert_eq!(ok.map(|v| v.get().to_owned()), Ok("1".to_owned()));
        assert_eq!(calls.load(Relaxed), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn ttl_expiry_on_the_runtime_clock() {
        let cache =
            Arc::new(IdempotentCache::new(CacheConfig { ttl: Duration::from_secs(5), ..CacheConfig::default() }));
        let calls = Arc::new(AtomicUsize::new(0));
        cache.get_or_call(key(1), counted(&calls, Ok("1"), Duration::ZERO)).await.expect("ok");
        tokio::time::advance(Duration::from_secs(4)).await;
        cache.get_or_call(key(1), counted(&calls, Ok("1"), Duration::ZERO)).await.expect("ok");
        assert_eq!(calls.load(Relaxed), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        cache.get_or_call(key(1), counted(&calls, Ok("1"), Duration::ZERO)).await.expect("ok");
        assert_eq!((calls.load(Relaxed), cache.stats().expirations), (2, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_flight_is_dropped_and_replaced() {
        struct Flag(Arc<AtomicUsize>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.fetch_add(1, Relaxed);
            }
        }
        let cache = Arc::new(IdempotentCache::new(CacheConfig::default()));
        let dropped = Arc::new(AtomicUsize::new(0));
        let flag = Flag(Arc::clone(&dropped));
        let slow = cache.get_or_call(key(1), move || async move {
            let _flag = flag;
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<_, String>(value("1"))
        });
        assert!(tokio::time::timeout(Duration::from_millis(10), slow).await.is_err());
        assert_eq!(dropped.load(Relaxed), 1, "the upstream call was dropped with its last waiter");
        let calls = Arc::new(AtomicUsize::new(0));
        let fresh = cache.get_or_call(key(1), counted(&calls, Ok("2"), Duration::ZERO)).await;
        assert_eq!((fresh.map(|v| v.get().to_owned()), calls.load(Relaxed)), (Ok("2".to_owned()), 1));
    }
}
