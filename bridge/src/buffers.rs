//! Reusable encode buffers (crate `object-pool`).
//!
//! Each outgoing request is encoded into a buffer that travels to the writer
//! task and comes back to the pool when written. A pool round trip costs more
//! than a small fresh allocation but saves the allocator and page-fault cost
//! of large payloads; `benches/benches/bridge.rs` measures both.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use object_pool::{Pool, ReusableOwned};

/// Capacity of a fresh buffer: one small message and its framing.
const INITIAL: usize = 4 * 1024;
/// A returned buffer larger than this is shrunk before reuse, so one huge
/// message does not pin its memory for the life of the connection.
const KEEP_AT_MOST: usize = 1024 * 1024;

/// A pool of byte buffers shared by one connection's callers.
#[derive(Clone)]
pub struct BufferPool {
    pool: Arc<Pool<Vec<u8>>>,
}

impl std::fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferPool").field("idle", &self.pool.len()).finish()
    }
}

impl Default for BufferPool {
    fn default() -> Self {
        BufferPool::new(16)
    }
}

impl BufferPool {
    /// A pool that starts with `warm` buffers and grows on demand.
    pub fn new(warm: usize) -> Self {
        BufferPool { pool: Arc::new(Pool::new(warm, || Vec::with_capacity(INITIAL))) }
    }

    /// An empty buffer, from the pool when one is idle.
    pub fn take(&self) -> PooledBuf {
        let mut buf = self.pool.pull_owned(|| Vec::with_capacity(INITIAL));
        buf.clear();
        if buf.capacity() > KEEP_AT_MOST {
            buf.shrink_to(INITIAL);
        }
        PooledBuf(buf)
    }
}

/// A buffer on loan from a [`BufferPool`]; it returns there when dropped.
pub struct PooledBuf(ReusableOwned<Vec<u8>>);

impl std::fmt::Debug for PooledBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBuf").field("len", &self.0.len()).finish()
    }
}

impl Deref for PooledBuf {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for PooledBuf {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl AsRef<[u8]> for PooledBuf {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_clean_and_bounded() {
        let pool = BufferPool::new(1);
        let mut big = pool.take();
        big.extend(std::iter::repeat_n(7u8, 4 * KEEP_AT_MOST));
        drop(big);
        let again = pool.take();
        assert!(again.is_empty());
        assert!(again.capacity() <= KEEP_AT_MOST, "capacity {}", again.capacity());
    }
}
