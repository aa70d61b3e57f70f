//! The idempotent-call cache: results of calls declared idempotent, keyed by
//! SHA-256 of (scope, method, canonical params), bounded by TTL, entries and bytes.
//! Concurrent identical calls share one upstream call; errors are never cached.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared, WeakShared};
use lru::LruCache;
use serde_json::Value;
use serde_json::value::RawValue;
use sha2::{Digest as _, Sha256};

/// Bytes charged per entry on top of its JSON text: the 32-byte key plus the
/// insertion time, weight, value `Arc` and LRU links, rounded up.
const ENTRY_OVERHEAD: usize = 64;

/// Limits of an idempotent-call cache.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    /// How long a result stays valid after it was stored.
    pub ttl: Duration,
    /// Most entries kept at once.
    pub max_entries: usize,
    /// Most bytes kept at once, counted as JSON length plus a fixed overhead per entry.
    pub max_bytes: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self { ttl: Duration::from_secs(600), max_entries: 10_000, max_bytes: 64 << 20 }
    }
}

/// SHA-256 of (scope, method, canonical params).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// `scope` separates callers sharing one cache (a role name, or "").
    ///
    /// `null` params get a key of their own, distinct from absent ones: an agent
    /// may answer them differently, so the cache must not conflate them.
    pub fn new(scope: &str, method: &str, params: Option<&RawValue>) -> Result<Self, serde_json::Error> {
        let mut hash = Sha256::new();
        // Length prefixes keep ("ab", "c") and ("a", "bc") apart.
        for part in [scope, method] {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part.as_bytes());
        }
        match params {
            None => hash.update([0]),
            Some(params) => {
                hash.update([1]);
                hash.update(canonical_json(params)?);
            }
        }
        Ok(Self(hash.finalize().into()))
    }
}

/// Writes `value` as canonical JSON: object keys sorted by their UTF-8 bytes, no
/// insignificant whitespace, strings re-escaped uniformly, numbers as serde_json
/// prints them. Equal JSON values (up to key order and whitespace) give equal bytes.
pub fn canonical_json(value: &RawValue) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(value.get().len());
    write_canonical(&serde_json::from_str(value.get())?, &mut out)?;
    Ok(out)
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    match value {
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
        Value::Object(map) => {
            // Sorted here rather than trusting Map's order: `preserve_order`
            // anywhere in the build would make it insertion-ordered.
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key)?;
                out.push(b':');
                write_canonical(item, out)?;
            }
            out.push(b'}');
        }
        scalar => serde_json::to_writer(&mut *out, scalar)?,
    }
    Ok(())
}

/// Counters of one cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheStats {
    /// Lookups answered from a live entry.
    pub hits: u64,
    /// Callers that led a new upstream call.
    pub misses: u64,
    /// Callers that joined an upstream call already in flight.
    pub coalesced: u64,
    /// Live entries removed to make room.
    pub evictions: u64,
    /// Entries removed because their TTL had passed.
    pub expirations: u64,
    /// Entries held now.
    pub entries: u64,
    /// Bytes held now, as charged by the byte cap.
    pub bytes: u64,
}

#[derive(Debug)]
struct Entry {
    value: Arc<RawValue>,
    stored_at: Instant,
    weight: usize,
}

/// The synchronous store: LRU + TTL + byte cap. Plain code, time passed in.
#[derive(Debug)]
pub struct ResultStore {
    config: CacheConfig,
    // Unbounded: both caps are enforced by `insert`, so every removal is counted.
    lru: LruCache<CacheKey, Entry>,
    bytes: usize,
    hits: u64,
    evictions: u64,
    expirations: u64,
}

impl ResultStore {
    /// An empty store with the given limits.
    pub fn new(config: CacheConfig) -> Self {
        Self { config, lru: LruCache::unbounded(), bytes: 0, hits: 0, evictions: 0, expirations: 0 }
    }

    /// A live entry, refreshed as most recently used.
    ///
    /// An expired entry is removed (counted as an expiration) and gives None.
    pub fn get(&mut self, key: &CacheKey, now: Instant) -> Option<Arc<RawValue>> {
        let stored_at = self.lru.peek(key)?.stored_at;
        if self.is_expired(stored_at, now) {
            self.remove(key);
            self.expirations += 1;
            return None;
        }
        self.hits += 1;
        self.lru.get(key).map(|entry| Arc::clone(&entry.value))
    }

    /// Stores a value, evicting least recently used entries until both caps hold.
    ///
    /// Evicted live entries count as evictions, evicted expired ones as expirations. A value whose
    /// weight alone exceeds `max_bytes` is not stored. Returns whether it was stored.
    pub fn insert(&mut self, key: CacheKey, value: Arc<RawValue>, now: Instant) -> bool {
        let weight = value.get().len() + ENTRY_OVERHEAD;
        if weight > self.config.max_bytes || self.config.max_entries == 0 {
            tracing::debug!(
                weight,
                max_bytes = self.config.max_bytes,
                "result exceeds the cache's capacity, not stored"
            );
            return false;
        }
        // Replacing a value is neither an eviction nor an expiration.
        self.remove(&key);
        while self.lru.len() >= self.config.max_entries || self.bytes + weight > self.config.max_bytes {
            let Some((_, old)) = self.lru.pop_lru() else {
                break;
            };
            self.bytes -= old.weight;
            if self.is_expired(old.stored_at, now) {
                self.expirations += 1;
            } else {
                self.evictions += 1;
            }
        }
        self.bytes += weight;
        self.lru.put(key, Entry { value, stored_at: now, weight });
        true
    }

    /// Number of entries held, expired or not.
    pub fn len(&self) -> usize {
        self.lru.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.lru.is_empty()
    }

    /// Bytes held, as charged by the byte cap.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Drops every entry; counters are kept and the drops are not counted as evictions.
    pub fn clear(&mut self) {
        self.lru.clear();
        self.bytes = 0;
    }

    /// Counters of this store; misses and coalesced stay zero (they belong to single flight).
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits,
            evictions: self.evictions,
            expirations: self.expirations,
            entries: self.lru.len() as u64,
            bytes: self.bytes as u64,
            ..CacheStats::default()
        }
    }

    fn is_expired(&self, stored_at: Instant, now: Instant) -> bool {
        // Measured from the start so a huge TTL cannot overflow an Instant.
        now.saturating_duration_since(stored_at) >= self.config.ttl
    }

    fn remove(&mut self, key: &CacheKey) {
        if let Some(old) = self.lru.pop(key) {
            self.bytes -= old.weight;
        }
    }
}

/// The error of a flight, erased so one map serves every error type.
type AnyError = Arc<dyn Any + Send + Sync>;
type FlightFuture = BoxFuture<'static, Result<Arc<RawValue>, AnyError>>;
type Flight = Shared<FlightFuture>;
/// Flights are per error type too, so a waiter can always downcast the error it gets.
type FlightKey = (CacheKey, TypeId);

#[derive(Debug, Default)]
struct Flights {
    next_id: u64,
    // Weak so that when every waiter is gone the upstream call is dropped too.
    map: HashMap<FlightKey, (u64, WeakShared<FlightFuture>)>,
}

#[derive(Debug)]
struct Inner {
    config: CacheConfig,
    store: Mutex<ResultStore>,
    // Lock order: `flights` before `store`; never held across `.await`.
    flights: Mutex<Flights>,
    misses: AtomicU64,
    coalesced: AtomicU64,
}

impl Inner {
    fn store(&self) -> MutexGuard<'_, ResultStore> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn flights(&self) -> MutexGuard<'_, Flights> {
        self.flights.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Unregisters a flight when its future ends, completed or abandoned.
struct FlightGuard {
    inner: Arc<Inner>,
    key: FlightKey,
    id: u64,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let mut flights = self.inner.flights();
        // A newer flight may already have replaced an abandoned one.
        if flights.map.get(&self.key).is_some_and(|(id, _)| *id == self.id) {
            flights.map.remove(&self.key);
        }
    }
}

enum Lookup {
    Hit(Arc<RawValue>),
    Wait(Flight),
}

fn now() -> Instant {
    // tokio's clock, so that tests on a paused clock control expiry.
    tokio::time::Instant::now().into_std()
}

/// A thread-safe cache with single flight; share it by reference or Arc.
#[derive(Debug)]
pub struct IdempotentCache {
    inner: Arc<Inner>,
}

impl IdempotentCache {
    /// An empty cache with the given limits.
    pub fn new(config: CacheConfig) -> Self {
        let inner = Inner {
            store: Mutex::new(ResultStore::new(config.clone())),
            config,
            flights: Mutex::default(),
            misses: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
        };
        Self { inner: Arc::new(inner) }
    }

    /// The limits this cache was built with.
    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    /// Returns the cached value for `key`, or runs `call` once for all concurrent callers of the key.
    ///
    /// A success is stored; an error goes to every caller waiting on that call and is not stored.
    ///
    /// `call` runs under the in-flight lock: it should only build the future.
    /// Callers with different error types for one key do not share a flight.
    pub async fn get_or_call<F, Fut, E>(&self, key: CacheKey, call: F) -> Result<Arc<RawValue>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Arc<RawValue>, E>> + Send + 'static,
        E: Clone + Send + Sync + 'static,
    {
        let flight = match self.lookup_or_lead(key, call) {
            Lookup::Hit(value) => return Ok(value),
            Lookup::Wait(flight) => flight,
        };
        flight.await.map_err(|error| error.downcast_ref::<E>().expect("flights are keyed by their error type").clone())
    }

    fn lookup_or_lead<F, Fut, E>(&self, key: CacheKey, call: F) -> Lookup
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Arc<RawValue>, E>> + Send + 'static,
        E: Clone + Send + Sync + 'static,
    {
        // Held while checking the store too, so a flight finishing in between
        // cannot be missed in both places and led twice.
        let mut flights = self.inner.flights();
        if let Some(value) = self.inner.store().get(&key, now()) {
            return Lookup::Hit(value);
        }
        let flight_key = (key, TypeId::of::<E>());
        // A live flight is moved out, never dropped under the lock: dropping the
        // last clone would run `FlightGuard`, which takes this lock.
        if let Some(flight) = flights.map.get(&flight_key).and_then(|(_, weak)| weak.upgrade()) {
            self.inner.coalesced.fetch_add(1, Ordering::Relaxed);
            return Lookup::Wait(flight);
        }
        self.inner.misses.fetch_add(1, Ordering::Relaxed);
        flights.next_id += 1;
        let id = flights.next_id;
        let upstream = call();
        // Made after `call()`: a panic there must not drop a guard under the lock.
        let guard = FlightGuard { inner: Arc::clone(&self.inner), key: flight_key, id };
        let flight = async move {
            // Bound here so the future always owns the guard: dropped under the
            // lock in this function, it would deadlock.
            let guard = guard;
            match upstream.await {
                Ok(value) => {
                    // Stored before the guard unregisters the flight, so a
                    // caller always finds one or the other.
                    guard.inner.store().insert(key, Arc::clone(&value), now());
                    Ok(value)
                }
                Err(error) => Err(Arc::new(error) as AnyError),
            }
        }
        .boxed()
        .shared();
        let weak = flight.downgrade().expect("a new flight has not completed");
        flights.map.insert(flight_key, (id, weak));
        Lookup::Wait(flight)
    }

    /// Like get_or_call's lookup alone (counts a hit or nothing).
    pub fn get(&self, key: &CacheKey) -> Option<Arc<RawValue>> {
        self.inner.store().get(key, now())
    }

    /// Counters of this cache.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            misses: self.inner.misses.load(Ordering::Relaxed),
            coalesced: self.inner.coalesced.load(Ordering::Relaxed),
            ..self.inner.store().stats()
        }
    }

    /// Drops every stored result; calls in flight still store theirs when they finish.
    pub fn clear(&self) {
        self.inner.store().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use tokio::time::{advance, sleep, timeout};

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).expect("test JSON is valid")
    }

    fn value(json: &str) -> Arc<RawValue> {
        Arc::from(raw(json))
    }

    fn canon(json: &str) -> String {
        String::from_utf8(canonical_json(&raw(json)).expect("canonical")).expect("UTF-8")
    }

    fn key(scope: &str, method: &str, params: Option<&str>) -> CacheKey {
        CacheKey::new(scope, method, params.map(raw).as_deref()).expect("key")
    }

    fn config(ttl_secs: u64, max_entries: usize, max_bytes: usize) -> CacheConfig {
        CacheConfig { ttl: Duration::from_secs(ttl_secs), max_entries, max_bytes }
    }

    #[test]
    fn canonical_json_ignores_key_order_and_whitespace() {
        let a = canon(r#"{"b": 1, "a": [ {"d": 2, "c": [3, {"z": 0, "y": 1}]} ], "é": "x", "Z": null}"#);
        let b = canon(r#"{"Z":null,"é":"x","a":[{"c":[3,{"y":1,"z":0}],"d":2}],"b":1}"#);
        assert_eq!(a, b);
        assert_eq!(a, r#"{"Z":null,"a":[{"c":[3,{"y":1,"z":0}],"d":2}],"b":1,"é":"x"}"#);
        assert_eq!(canon(r#""\u0041\/""#), canon(r#""A/""#));
        assert_ne!(canon("[1, 2]"), canon("[2, 1]"));
        assert!(canonical_json(&raw("[1, 2]")).is_ok());
    }

    #[test]
    fn keys_differ_by_value_scope_and_method() {
        let base = key("role", "m", Some(r#"{"a":1,"b":2}"#));
        assert_eq!(base, key("role", "m", Some(r#"{ "b": 2, "a": 1 }"#)));
        assert_ne!(base, key("role", "m", Some(r#"{"a":1,"b":3}"#)));
        assert_ne!(base, key("other", "m", Some(r#"{"a":1,"b":2}"#)));
        assert_ne!(base, key("role", "n", Some(r#"{"a":1,"b":2}"#)));
        assert_ne!(key("ab", "c", None), key("a", "bc", None));
    }

    #[test]
    fn absent_null_and_empty_params_are_distinct_and_stable() {
        assert_eq!(key("", "m", None), key("", "m", None));
        assert_eq!(key("", "m", Some("[]")), key("", "m", Some("[ ]")));
        let keys = [key("", "m", None), key("", "m", Some("null")), key("", "m", Some("[]")), key("", "m", Some("{}"))];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn store_expires_after_ttl() {
        let mut store = ResultStore::new(config(60, 10, 1 << 20));
        let t = Instant::now();
        let k = key("", "m", None);
        assert!(store.insert(k, value("1"), t));
        let ttl = Duration::from_secs(60);
        assert_eq!(store.get(&k, t + ttl - Duration::from_millis(1)).map(|v| v.get().to_owned()), Some("1".into()));
        assert!(store.get(&k, t + ttl).is_none());
        assert!(store.is_empty());
        assert_eq!(store.bytes(), 0);
        let stats = store.stats();
        assert_eq!((stats.hits, stats.expirations, stats.evictions), (1, 1, 0));
    }

    #[test]
    fn store_entry_cap_evicts_least_recently_used() {
        let mut store = ResultStore::new(config(60, 2, 1 << 20));
        let t = Instant::now();
        let [a, b, c] = ["a", "b", "c"].map(|m| key("", m, None));
        store.insert(a, value("1"), t);
        store.insert(b, value("2"), t);
        assert!(store.get(&a, t).is_some());
        store.insert(c, value("3"), t);
        assert_eq!(store.len(), 2);
        assert!(store.get(&b, t).is_none());
        assert!(store.get(&a, t).is_some() && store.get(&c, t).is_some());
        assert_eq!(store.stats().evictions, 1);
    }

    #[test]
    fn store_byte_cap_holds() {
        let max_bytes = 10 * 1024;
        let mut store = ResultStore::new(config(60, 1000, max_bytes));
        let t = Instant::now();
        let kib = value(&format!("\"{}\"", "x".repeat(1022)));
        for i in 0..100 {
            assert!(store.insert(key("", &i.to_string(), None), Arc::clone(&kib), t));
            assert!(store.bytes() <= max_bytes);
        }
        let per_entry = 1024 + ENTRY_OVERHEAD;
        assert_eq!(store.len(), max_bytes / per_entry);
        assert_eq!(store.bytes(), store.len() * per_entry);
        assert_eq!(store.stats().evictions, 100 - store.len() as u64);
    }

    #[test]
    fn store_replaces_a_key_without_counting_an_eviction() {
        let mut store = ResultStore::new(config(60, 10, 1 << 20));
        let t = Instant::now();
        let k = key("", "m", None);
        store.insert(k, value("1"), t);
        store.insert(k, value("[22]"), t);
        assert_eq!((store.len(), store.bytes()), (1, 4 + ENTRY_OVERHEAD));
        assert_eq!(store.stats().evictions, 0);
    }

    #[test]
    fn store_refuses_oversize_value() {
        let mut store = ResultStore::new(config(60, 10, 100));
        let t = Instant::now();
        let small = key("", "small", None);
        store.insert(small, value("1"), t);
        assert!(!store.insert(key("", "big", None), value(&format!("\"{}\"", "x".repeat(100))), t));
        assert_eq!(store.len(), 1);
        assert!(store.get(&small, t).is_some());
        assert_eq!(store.stats().evictions, 0);
    }

    /// Counts upstream calls; each answers `result` after `delay`.
    fn upstream(
        calls: &Arc<AtomicUsize>,
        delay: Duration,
        result: Result<&str, &str>,
    ) -> impl FnOnce() -> BoxFuture<'static, Result<Arc<RawValue>, String>> + use<> {
        let calls = Arc::clone(calls);
        let result = result.map(value).map_err(str::to_owned);
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                sleep(delay).await;
                result
            }
            .boxed()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn get_or_call_expires_after_ttl() {
        let cache = IdempotentCache::new(config(60, 10, 1 << 20));
        let calls = Arc::new(AtomicUsize::new(0));
        let k = key("", "m", None);
        let ok = || upstream(&calls, Duration::ZERO, Ok("1"));
        cache.get_or_call(k, ok()).await.expect("first call");
        advance(Duration::from_secs(59)).await;
        cache.get_or_call(k, ok()).await.expect("hit");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        advance(Duration::from_secs(1)).await;
        cache.get_or_call(k, ok()).await.expect("after expiry");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.expirations, stats.entries), (1, 2, 1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_identical_calls_share_one_upstream_call() {
        let cache = Arc::new(IdempotentCache::new(CacheConfig::default()));
        let calls = Arc::new(AtomicUsize::new(0));
        let k = key("role", "m", Some("[1]"));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (cache, call) = (Arc::clone(&cache), upstream(&calls, Duration::from_secs(1), Ok("42")));
                tokio::spawn(async move { cache.get_or_call(k, call).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.expect("task").expect("value").get(), "42");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let stats = cache.stats();
        assert_eq!((stats.misses, stats.coalesced, stats.hits), (1, 49, 0));
        assert!(cache.inner.flights().map.is_empty());
        assert_eq!(cache.get(&k).map(|v| v.get().to_owned()), Some("42".into()));
    }

    #[tokio::test(start_paused = true)]
    async fn errors_are_not_cached() {
        let cache = IdempotentCache::new(CacheConfig::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let k = key("", "m", None);
        let failed = cache.get_or_call(k, upstream(&calls, Duration::ZERO, Err("boom"))).await;
        assert_eq!(failed.expect_err("upstream failed"), "boom");
        assert!(cache.get(&k).is_none());
        let ok = cache.get_or_call(k, upstream(&calls, Duration::ZERO, Ok("1"))).await;
        assert_eq!(ok.expect("second call succeeds").get(), "1");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(cache.stats().misses, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn every_waiter_of_a_failing_flight_gets_the_error() {
        let cache = IdempotentCache::new(CacheConfig::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let k = key("", "m", None);
        let waiters = (0..5).map(|_| cache.get_or_call(k, upstream(&calls, Duration::from_secs(1), Err("boom"))));
        for result in futures::future::join_all(waiters).await {
            assert_eq!(result.expect_err("flight failed"), "boom");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!((cache.stats().coalesced, cache.stats().entries), (4, 0));
    }

    struct SetOnDrop(Arc<AtomicBool>);

    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn abandoned_flight_is_dropped_and_the_next_caller_leads() {
        let cache = IdempotentCache::new(CacheConfig::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let (dropped, finished) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let k = key("", "m", None);
        let slow = {
            let (calls, dropped, finished) = (Arc::clone(&calls), Arc::clone(&dropped), Arc::clone(&finished));
            move || {
                calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    let _drop_flag = SetOnDrop(dropped);
                    sleep(Duration::from_secs(10)).await;
                    finished.store(true, Ordering::SeqCst);
                    Ok::<_, String>(value("1"))
                }
            }
        };
        assert!(timeout(Duration::from_secs(1), cache.get_or_call(k, slow)).await.is_err());
        assert!(dropped.load(Ordering::SeqCst));
        assert!(cache.inner.flights().map.is_empty());

        let second = cache.get_or_call(k, upstream(&calls, Duration::ZERO, Ok("2"))).await;
        assert_eq!(second.expect("new flight").get(), "2");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        advance(Duration::from_secs(20)).await;
        assert!(!finished.load(Ordering::SeqCst));
        assert_eq!((cache.stats().misses, cache.stats().coalesced), (2, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn flight_outlives_its_leader_while_others_wait() {
        let cache = IdempotentCache::new(CacheConfig::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let k = key("", "m", None);
        let leader =
            timeout(Duration::from_secs(1), cache.get_or_call(k, upstream(&calls, Duration::from_secs(5), Ok("7"))));
        let joiner = cache.get_or_call(k, upstream(&calls, Duration::ZERO, Ok("\"other\"")));
        let (leader, joiner) = tokio::join!(leader, joiner);
        assert!(leader.is_err());
        assert_eq!(joiner.expect("joined flight").get(), "7");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(cache.get(&k).map(|v| v.get().to_owned()), Some("7".into()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn coalesces_across_worker_threads() {
        let cache = Arc::new(IdempotentCache::new(CacheConfig::default()));
        let (calls, release) = (Arc::new(AtomicUsize::new(0)), Arc::new(tokio::sync::Notify::new()));
        let k = key("", "m", None);
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let (cache, calls, release) = (Arc::clone(&cache), Arc::clone(&calls), Arc::clone(&release));
                tokio::spawn(async move {
                    let call = move || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        release.notified().await;
                        Ok::<_, String>(value("1"))
                    };
                    cache.get_or_call(k, call).await
                })
            })
            .collect();
        let everyone_waits = async {
            while cache.stats().coalesced < 99 {
                tokio::task::yield_now().await;
            }
        };
        timeout(Duration::from_secs(10), everyone_waits).await.expect("all callers joined");
        release.notify_one();
        for task in tasks {
            assert_eq!(task.await.expect("task").expect("value").get(), "1");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(cache.inner.flights().map.is_empty());
    }
}
