//! Settling Promises from the runtime's thread: one threadsafe function per
//! JavaScript environment, woken once per batch of finished calls.
//!
//! napi's own future-to-Promise bridge builds, for every call, a threadsafe
//! function (a libuv handle plus an environment cleanup hook), an `Error`
//! object for a stack trace, and a second task that watches the first for a
//! panic. Here a finished call queues its outcome; only the one that finds
//! the queue empty wakes Node's thread, whose callback then settles every
//! queued Promise in one go. With many calls in flight that is one wake-up
//! for many answers.
//!
//! The threadsafe function is unreferenced while nothing is in flight, so an
//! idle swarm does not keep Node running, and referenced while a call is, as
//! a pending Promise must.

use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::ptr;
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use napi::bindgen_prelude::{Env, ToNapiValue};
use napi::sys;

/// How an outcome becomes JavaScript, on Node's thread: the value to resolve
/// with (`Ok`) or to reject with (`Err`).
pub type Settle = Box<dyn FnOnce(&Env) -> Result<sys::napi_value, sys::napi_value> + Send>;

/// The resolution of `outcome`: its value, or the `Error` its failure maps to.
pub fn settle_with<V: ToNapiValue>(
    env: &Env,
    outcome: Result<V, napi::Error>,
) -> Result<sys::napi_value, sys::napi_value> {
    let value = outcome.and_then(|value| {
        // SAFETY: called on the environment's own thread, inside its callback.
        unsafe { V::to_napi_value(env.raw(), value) }
    });
    value.map_err(|error| {
        // SAFETY: as above. A conversion that fails here leaves `undefined`,
        // which still rejects: a call must end once, whatever it carries.
        unsafe { napi::Error::to_napi_value(env.raw(), error) }.unwrap_or(ptr::null_mut())
    })
}

/// A promise's resolver, only ever used on the thread that made it.
struct Deferred(sys::napi_deferred);

// SAFETY: other threads only move the handle through the queue; it is
// resolved or rejected on the environment's own thread.
unsafe impl Send for Deferred {}

impl Deferred {
    /// Resolves or rejects the promise; on the environment's thread only.
    fn settle(self, env: &Env, how: Settle) {
        // A failure here means the environment is going away; nothing is left to tell.
        let _ = match how(env) {
            // SAFETY: `self.0` came from napi_create_promise on this environment and is used once.
            Ok(value) => unsafe { sys::napi_resolve_deferred(env.raw(), self.0, value) },
            Err(error) => unsafe { sys::napi_reject_deferred(env.raw(), self.0, undefined_if_null(env, error)) },
        };
    }
}

fn undefined_if_null(env: &Env, value: sys::napi_value) -> sys::napi_value {
    if !value.is_null() {
        return value;
    }
    let mut undefined = ptr::null_mut();
    // SAFETY: a plain getter on the environment's thread.
    unsafe { sys::napi_get_undefined(env.raw(), &mut undefined) };
    undefined
}

/// The threadsafe function, shared with the threads that queue outcomes.
struct Tsfn(sys::napi_threadsafe_function);

// SAFETY: Node-API allows napi_call_threadsafe_function from any thread; it
// is only called under `Shared::tsfn`'s lock, which the environment's
// cleanup takes before releasing the function.
unsafe impl Send for Tsfn {}

/// What the runtime's thread and Node's thread share.
struct Shared {
    /// The environment, as an address: outcomes known on its own thread
    /// during [`inline`] are settled at once.
    env: usize,
    done: Mutex<Vec<(Deferred, Settle)>>,
    /// `None` once the environment is going away. A lock of its own: the
    /// thread that wakes Node does not hold the queue while it does, or Node's
    /// thread, woken at once, would wait for it.
    tsfn: Mutex<Option<Tsfn>>,
}

impl Shared {
    fn done(&self) -> MutexGuard<'_, Vec<(Deferred, Settle)>> {
        self.done.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn tsfn(&self) -> MutexGuard<'_, Option<Tsfn>> {
        self.tsfn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where a call's outcome goes once it is known, from any thread. Dropped
/// without an outcome (its task panicked or was dropped), it rejects: every
/// call ends once, and a pending Promise would keep Node running for ever.
pub struct Completion {
    to: Option<(Arc<Shared>, Deferred)>,
}

impl std::fmt::Debug for Completion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Completion")
    }
}

impl Completion {
    /// Queues the outcome; the first in an empty queue wakes Node's thread.
    pub fn complete(mut self, how: Settle) {
        self.queue(how);
    }

    fn queue(&mut self, how: Settle) {
        let Some((shared, deferred)) = self.to.take() else { return };
        let here = INLINE.try_with(Cell::get).unwrap_or(ptr::null_mut());
        if !here.is_null() && here as usize == shared.env {
            let env = Env::from_raw(here);
            deferred.settle(&env, how);
            finished(&env, 1);
            return;
        }
        let first = {
            let mut done = shared.done();
            done.push((deferred, how));
            done.len() == 1
        };
        if first && let Some(tsfn) = shared.tsfn().as_ref() {
            // SAFETY: the function is live while it is in `shared.tsfn` (we hold its lock).
            unsafe {
                sys::napi_call_threadsafe_function(
                    tsfn.0,
                    ptr::null_mut(),
                    sys::ThreadsafeFunctionCallMode::nonblocking,
                )
            };
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        self.queue(Box::new(|env| {
            let error = napi::Error::from_reason("skep: the call ended without an outcome (its task panicked)");
            Err(settle_with::<()>(env, Err(error)).unwrap_or_else(|rejection| rejection))
        }));
    }
}

/// An environment's side: its threadsafe function and how many calls are in flight.
struct Hub {
    env: sys::napi_env,
    shared: Arc<Shared>,
    tsfn: sys::napi_threadsafe_function,
    in_flight: Cell<usize>,
}

thread_local! {
    /// The hub of the environment running on this thread (one per thread: Node's main thread, or a worker's).
    static HUB: RefCell<Option<Rc<Hub>>> = const { RefCell::new(None) };
    /// The environment whose method is running [`inline`] on this thread, else null.
    static INLINE: Cell<sys::napi_env> = const { Cell::new(ptr::null_mut()) };
}

/// Runs `f` (inside a method of `env`, on its thread) with every outcome
/// known meanwhile settled at once, not queued for a later turn of the loop.
pub fn inline<R>(env: &Env, f: impl FnOnce() -> R) -> R {
    let outer = INLINE.replace(env.raw());
    let result = f();
    INLINE.set(outer);
    result
}

/// A new promise and where its outcome goes; the promise keeps Node alive until settled.
pub fn promise(env: &Env) -> napi::Result<(sys::napi_value, Completion)> {
    let hub = hub(env)?;
    let (mut deferred, mut promise) = (ptr::null_mut(), ptr::null_mut());
    // SAFETY: on the environment's thread, with out-pointers to locals.
    napi::check_status!(unsafe { sys::napi_create_promise(env.raw(), &mut deferred, &mut promise) })?;
    if hub.in_flight.get() == 0 {
        // SAFETY: on the environment's thread; the function is live while the hub is.
        unsafe { sys::napi_ref_threadsafe_function(env.raw(), hub.tsfn) };
    }
    hub.in_flight.set(hub.in_flight.get() + 1);
    Ok((promise, Completion { to: Some((Arc::clone(&hub.shared), Deferred(deferred))) }))
}

fn hub(env: &Env) -> napi::Result<Rc<Hub>> {
    HUB.with_borrow_mut(|slot| {
        if let Some(hub) = slot.as_ref().filter(|hub| hub.env == env.raw()) {
            return Ok(Rc::clone(hub));
        }
        let hub = Rc::new(Hub::new(env)?);
        *slot = Some(Rc::clone(&hub));
        Ok(hub)
    })
}

impl Hub {
    fn new(env: &Env) -> napi::Result<Hub> {
        let shared = Arc::new(Shared { env: env.raw() as usize, done: Mutex::new(Vec::new()), tsfn: Mutex::new(None) });
        let name = env.create_string("skep")?;
        let mut tsfn = ptr::null_mut();
        let finalize_data = Arc::into_raw(Arc::clone(&shared)).cast_mut().cast::<c_void>();
        // SAFETY: no JavaScript function (the callback does the work); the
        // context is `shared`, kept alive by the reference handed to the
        // finalizer, which Node calls once the function is gone.
        let status = unsafe {
            sys::napi_create_threadsafe_function(
                env.raw(),
                ptr::null_mut(),
                ptr::null_mut(),
                napi::JsValue::raw(&name),
                0,
                1,
                finalize_data,
                Some(release_shared),
                finalize_data,
                Some(drain),
                &mut tsfn,
            )
        };
        if let Err(e) = napi::check_status!(status) {
            // SAFETY: Node took nothing, so the reference is still ours.
            drop(unsafe { Arc::from_raw(finalize_data.cast::<Shared>()) });
            return Err(e);
        }
        // SAFETY: on the environment's thread, with the function just made.
        unsafe { sys::napi_unref_threadsafe_function(env.raw(), tsfn) };
        *shared.tsfn() = Some(Tsfn(tsfn));
        let hook_data = Arc::into_raw(Arc::clone(&shared)).cast_mut().cast::<c_void>();
        // SAFETY: `closing` takes back the reference in `hook_data`. Hooks run
        // in reverse order of registration, so this runs before Node tears
        // the threadsafe function down.
        let status = unsafe { sys::napi_add_env_cleanup_hook(env.raw(), Some(closing), hook_data) };
        if let Err(e) = napi::check_status!(status) {
            // SAFETY: the hook was not registered; run it ourselves.
            unsafe { closing(hook_data) };
            return Err(e);
        }
        Ok(Hub { env: env.raw(), shared, tsfn, in_flight: Cell::new(0) })
    }
}

/// The threadsafe function's callback, on Node's thread: settles every queued outcome.
unsafe extern "C" fn drain(env: sys::napi_env, _: sys::napi_value, context: *mut c_void, _: *mut c_void) {
    if env.is_null() || context.is_null() {
        return; // the function is being torn down
    }
    // SAFETY: `context` is the `Shared` the finalizer's reference keeps alive.
    let shared = unsafe { &*context.cast::<Shared>() };
    let done = std::mem::take(&mut *shared.done());
    let env = Env::from_raw(env);
    let settled = done.len();
    for (deferred, how) in done {
        deferred.settle(&env, how);
    }
    finished(&env, settled);
}

/// `settled` calls of `env` are over: once none is in flight, the hub no longer keeps Node running.
fn finished(env: &Env, settled: usize) {
    let _ = HUB.try_with(|slot| {
        if let Some(hub) = slot.borrow().as_ref().filter(|hub| hub.env == env.raw()) {
            let left = hub.in_flight.get().saturating_sub(settled);
            hub.in_flight.set(left);
            if left == 0 {
                // SAFETY: on the environment's thread, with its live function.
                unsafe { sys::napi_unref_threadsafe_function(env.raw(), hub.tsfn) };
            }
        }
    });
}

/// The environment is going away: no more wake-ups, queued outcomes dropped.
unsafe extern "C" fn closing(data: *mut c_void) {
    // SAFETY: `data` is the reference `Hub::new` gave the hook.
    let shared = unsafe { Arc::from_raw(data.cast::<Shared>()) };
    if let Some(tsfn) = shared.tsfn().take() {
        // SAFETY: released once, under the lock every caller takes, after
        // which none calls it (`shared.tsfn` says `None`).
        unsafe { sys::napi_release_threadsafe_function(tsfn.0, sys::ThreadsafeFunctionReleaseMode::abort) };
    }
    drop(std::mem::take(&mut *shared.done()));
    let _ = HUB.try_with(|slot| slot.borrow_mut().take());
}

/// The threadsafe function's finalizer: drops its reference to `Shared`.
unsafe extern "C" fn release_shared(_: sys::napi_env, data: *mut c_void, _: *mut c_void) {
    // SAFETY: `data` is the reference `Hub::new` handed to Node for this.
    drop(unsafe { Arc::from_raw(data.cast::<Shared>()) });
}
