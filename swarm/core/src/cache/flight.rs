//! Single flight: identical calls in flight at the same time share one
//! upstream call.
//!
//! Each key in flight has one `OnceCell`; the first caller to reach it runs
//! the call and every other caller waits on the same cell. The cell holds the
//! call's whole outcome, so an error reaches every caller that was waiting for
//! it, and a caller that arrives after the flight ended starts a new one:
//! errors are shared, never kept. If the caller running the call goes away,
//! its call is dropped and the next waiter runs its own.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::OnceCell;

use super::CacheKey;

type Cell<V, E> = Arc<OnceCell<Result<V, E>>>;

/// The calls in flight, by key.
#[derive(Debug)]
pub(super) struct Flights<V, E> {
    // A std mutex, held for a lookup or an insert and never across `.await`.
    map: Mutex<HashMap<CacheKey, Cell<V, E>>>,
}

/// How a caller got to its value.
pub(super) enum Joined<'a, V, E> {
    /// Found before any flight was needed.
    Found(V),
    /// Started a new flight.
    Led(Flight<'a, V, E>),
    /// Joined a flight already in progress.
    Coalesced(Flight<'a, V, E>),
}

impl<V, E> Default for Flights<V, E> {
    fn default() -> Self {
        Self { map: Mutex::default() }
    }
}

impl<V: Clone, E: Clone> Flights<V, E> {
    /// Joins the flight for `key`, or starts one, unless `found` has the value.
    ///
    /// `found` runs under the lock, so a flight that ends (and stores its value)
    /// at the same moment is seen in one place or the other, never missed in both.
    pub(super) fn join(&self, key: CacheKey, found: impl FnOnce() -> Option<V>) -> Joined<'_, V, E> {
        let mut map = self.lock();
        if let Some(value) = found() {
            return Joined::Found(value);
        }
        if let Some(cell) = map.get(&key).filter(|cell| !cell.initialized()) {
            return Joined::Coalesced(Flight { flights: self, key, cell: Some(Arc::clone(cell)) });
        }
        // A finished flight left in the map (its waiters are still reading
        // it) is replaced: its outcome belongs to the callers that waited.
        let cell = Arc::new(OnceCell::new());
        map.insert(key, Arc::clone(&cell));
        Joined::Led(Flight { flights: self, key, cell: Some(cell) })
    }

    /// Keys in flight right now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<CacheKey, Cell<V, E>>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One caller's place in a flight; the flight is forgotten when its last caller leaves.
pub(super) struct Flight<'a, V, E> {
    flights: &'a Flights<V, E>,
    key: CacheKey,
    /// Always `Some` until dropped; cloned and dropped only under the lock,
    /// so the reference count read there is exact.
    cell: Option<Cell<V, E>>,
}

impl<V: Clone, E: Clone> Flight<'_, V, E> {
    /// The flight's outcome: `call`'s, if this caller is the one to run it.
    pub(super) async fn outcome<F, Fut>(&self, call: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let cell = self.cell.as_ref().expect("a flight holds its cell until dropped");
        cell.get_or_init(call).await.clone()
    }
}

impl<V, E> Drop for Flight<'_, V, E> {
    fn drop(&mut self) {
        let mut map = self.flights.map.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(cell) = self.cell.take() else { return };
        // Two references left: the map's and ours. Nobody else waits, so the
        // flight goes (an unfinished call was already dropped with its caller).
        if map.get(&self.key).is_some_and(|held| Arc::ptr_eq(held, &cell)) && Arc::strong_count(&cell) == 2 {
            map.remove(&self.key);
        }
        drop(cell);
        drop(map);
    }
}
