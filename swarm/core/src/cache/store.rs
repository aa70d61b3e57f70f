//! The synchronous store behind the cache: LRU order, a TTL and two caps
//! (entries and bytes). Plain code with time passed in, so it is tested
//! without a runtime.

use std::sync::Arc;
use std::time::Instant;

use lru::LruCache;
use serde_json::value::RawValue;

use super::{CacheConfig, CacheKey, CacheStats};

/// Bytes charged per entry on top of its JSON text: the 32-byte key plus the
/// insertion time, weight, value `Arc` and LRU links, rounded up.
const ENTRY_OVERHEAD: usize = 64;

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn value(json: &str) -> Arc<RawValue> {
        Arc::from(RawValue::from_string(json.to_owned()).expect("test JSON is valid"))
    }

    fn key(method: &str) -> CacheKey {
        CacheKey::new("", method, None).expect("key")
    }

    fn config(ttl_secs: u64, max_entries: usize, max_bytes: usize) -> CacheConfig {
        CacheConfig { ttl: Duration::from_secs(ttl_secs), max_entries, max_bytes }
    }

    #[test]
    fn store_expires_after_ttl() {
        let mut store = ResultStore::new(config(60, 10, 1 << 20));
        let t = Instant::now();
        let k = key("m");
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
        let [a, b, c] = ["a", "b", "c"].map(key);
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
            assert!(store.insert(key(&i.to_string()), Arc::clone(&kib), t));
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
        let k = key("m");
        store.insert(k, value("1"), t);
        store.insert(k, value("[22]"), t);
        assert_eq!((store.len(), store.bytes()), (1, 4 + ENTRY_OVERHEAD));
        assert_eq!(store.stats().evictions, 0);
    }

    #[test]
    fn store_refuses_oversize_value() {
        let mut store = ResultStore::new(config(60, 10, 100));
        let t = Instant::now();
        let small = key("small");
        store.insert(small, value("1"), t);
        assert!(!store.insert(key("big"), value(&format!("\"{}\"", "x".repeat(100))), t));
        assert_eq!(store.len(), 1);
        assert!(store.get(&small, t).is_some());
        assert_eq!(store.stats().evictions, 0);
    }
}
