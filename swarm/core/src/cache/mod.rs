//! The idempotent-call cache of a role: results of the methods it declares
//! idempotent, keyed by SHA-256 of (role, method, canonical params), bounded
//! by TTL, entries and bytes. Identical calls in flight share one agent call;
//! errors are never stored.
//!
//! - `key.rs`: the canonical params text and the key.
//! - `store.rs`: the LRU store with its TTL and caps (time passed in).
//! - `flight.rs`: single flight over `tokio::sync::OnceCell`.

mod flight;
mod key;
mod store;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;

use flight::{Flights, Joined};
pub use key::{CacheKey, KeyError, MAX_DEPTH, canonical_json};
pub use store::ResultStore;

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

/// A thread-safe cache with single flight, generic over the calls' error type.
#[derive(Debug)]
pub struct IdempotentCache<E> {
    config: CacheConfig,
    // Lock order: the flights' lock before `store`; neither is held across `.await`.
    store: Mutex<ResultStore>,
    flights: Flights<Arc<RawValue>, E>,
    misses: AtomicU64,
    coalesced: AtomicU64,
}

fn now() -> Instant {
    // tokio's clock, so that tests on a paused clock control expiry.
    tokio::time::Instant::now().into_std()
}

impl<E: Clone> IdempotentCache<E> {
    /// An empty cache with the given limits.
    pub fn new(config: CacheConfig) -> Self {
        Self {
            store: Mutex::new(ResultStore::new(config.clone())),
            config,
            flights: Flights::default(),
            misses: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
        }
    }

    /// The limits this cache was built with.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// Returns the cached value for `key`, or runs `call` once for all concurrent callers of the key.
    ///
    /// A success is stored; an error goes to every caller waiting on that call and is not stored.
    /// If the caller running `call` is dropped, a waiting caller runs its own `call` instead.
    pub async fn get_or_call<F, Fut>(&self, key: CacheKey, call: F) -> Result<Arc<RawValue>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Arc<RawValue>, E>>,
    {
        // Most lookups are hits: answer them under the store's lock alone.
        if let Some(value) = self.get(&key) {
            return Ok(value);
        }
        let flight = match self.flights.join(key, || self.get(&key)) {
            Joined::Found(value) => return Ok(value),
            Joined::Led(flight) => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                flight
            }
            Joined::Coalesced(flight) => {
                self.coalesced.fetch_add(1, Ordering::Relaxed);
                flight
            }
        };
        flight
            .outcome(|| async {
                let outcome = call().await;
                if let Ok(value) = &outcome {
                    // Stored before the flight ends, so a caller always finds one or the other.
                    self.store().insert(key, Arc::clone(value), now());
                }
                outcome
            })
            .await
    }

    /// A live stored value (counts a hit when found).
    pub fn get(&self, key: &CacheKey) -> Option<Arc<RawValue>> {
        self.store().get(key, now())
    }

    /// Counters of this cache.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            misses: self.misses.load(Ordering::Relaxed),
            coalesced: self.coalesced.load(Ordering::Relaxed),
            ..self.store().stats()
        }
    }

    /// Drops every stored result; calls in flight still store theirs when they finish.
    pub fn clear(&self) {
        self.store().clear();
    }

    fn store(&self) -> MutexGuard<'_, ResultStore> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests;
