//! Single flight and expiry through `IdempotentCache`, on a paused clock.

use super::*;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use tokio::time::{advance, sleep, timeout};

fn value(json: &str) -> Arc<RawValue> {
    Arc::from(RawValue::from_string(json.to_owned()).expect("test JSON is valid"))
}

fn key(scope: &str, method: &str, params: Option<&str>) -> CacheKey {
    let params = params.map(|p| RawValue::from_string(p.to_owned()).expect("test JSON is valid"));
    CacheKey::new(scope, method, params.as_deref()).expect("key")
}

fn config(ttl_secs: u64, max_entries: usize, max_bytes: usize) -> CacheConfig {
    CacheConfig { ttl: Duration::from_secs(ttl_secs), max_entries, max_bytes }
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
    assert_eq!(cache.flights.len(), 0);
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
    assert_eq!(cache.flights.len(), 0);

    let second = cache.get_or_call(k, upstream(&calls, Duration::ZERO, Ok("2"))).await;
    assert_eq!(second.expect("new flight").get(), "2");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    advance(Duration::from_secs(20)).await;
    assert!(!finished.load(Ordering::SeqCst));
    assert_eq!((cache.stats().misses, cache.stats().coalesced), (2, 0));
}

#[tokio::test(start_paused = true)]
async fn a_waiter_runs_its_own_call_when_its_leader_is_dropped() {
    let cache = IdempotentCache::new(CacheConfig::default());
    let calls = Arc::new(AtomicUsize::new(0));
    let k = key("", "m", None);
    let leader =
        timeout(Duration::from_secs(1), cache.get_or_call(k, upstream(&calls, Duration::from_secs(5), Ok("7"))));
    let joiner = cache.get_or_call(k, upstream(&calls, Duration::ZERO, Ok("\"other\"")));
    let (leader, joiner) = tokio::join!(leader, joiner);
    assert!(leader.is_err());
    // The leader's call was dropped with it; the joiner's own call answered.
    assert_eq!(joiner.expect("joined flight").get(), "\"other\"");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(cache.get(&k).map(|v| v.get().to_owned()), Some("\"other\"".into()));
    assert_eq!((cache.stats().misses, cache.stats().coalesced), (1, 1));
    assert_eq!(cache.flights.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_error_goes_to_its_waiters_only_and_the_next_caller_leads() {
    let cache = IdempotentCache::new(CacheConfig::default());
    let calls = Arc::new(AtomicUsize::new(0));
    let k = key("", "m", None);
    let failing = cache.get_or_call(k, upstream(&calls, Duration::from_secs(1), Err("boom")));
    let waiter = cache.get_or_call(k, upstream(&calls, Duration::ZERO, Ok("1")));
    let (failing, waiter) = tokio::join!(failing, waiter);
    assert_eq!((failing.expect_err("led"), waiter.expect_err("waited")), ("boom".into(), "boom".into()));
    let after = cache.get_or_call(k, upstream(&calls, Duration::ZERO, Ok("1"))).await;
    assert_eq!(after.expect("a new flight").get(), "1");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
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
    assert_eq!(cache.flights.len(), 0);
}
