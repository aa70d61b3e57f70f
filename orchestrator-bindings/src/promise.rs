//! Turning swarm futures into Promises: results become plain JavaScript
//! values, failures become `Error`s with `code` (on the JavaScript thread,
//! where such objects can be built, in batches: `completions.rs`), and an
//! `AbortSignal` drops the future, which cancels the call on the wire to the
//! agent.

use std::future::Future;

use napi::bindgen_prelude::{Env, FnArgs, Function, JsObjectValue, Object, PromiseRaw, ToNapiValue};
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::completions::{self, settle_with};
use crate::error::Failure;
use crate::runtime;

/// What a method hands to [`settle`]: the signal to watch and the work, or
/// why its arguments were refused (which rejects the Promise, not throws).
pub type Prepared<'env, F> = Result<(Option<Object<'env>>, F), Failure>;

/// Runs the prepared work on the addon's runtime and returns a Promise of its result.
pub fn settle<'env, V, F>(env: &'env Env, prepared: Prepared<'env, F>) -> napi::Result<PromiseRaw<'env, V>>
where
    V: ToNapiValue + Send + 'static,
    F: Future<Output = Result<V, Failure>> + Send + 'static,
{
    promised(env, prepared, false)
}

/// As [`settle`], with the work's first steps taken on this thread (`handoff.rs`):
/// for a call, whose first steps are short and never block.
pub fn settle_here<'env, V, F>(env: &'env Env, prepared: Prepared<'env, F>) -> napi::Result<PromiseRaw<'env, V>>
where
    V: ToNapiValue + Send + 'static,
    F: Future<Output = Result<V, Failure>> + Send + 'static,
{
    promised(env, prepared, true)
}

fn promised<'env, V, F>(env: &'env Env, prepared: Prepared<'env, F>, here: bool) -> napi::Result<PromiseRaw<'env, V>>
where
    V: ToNapiValue + Send + 'static,
    F: Future<Output = Result<V, Failure>> + Send + 'static,
{
    let (aborted, work) = match prepared {
        Ok((Some(signal), work)) => match watch(env, signal) {
            Ok(aborted) => (Some(aborted), Ok(work)),
            Err(e) => (None, Err(Failure::InvalidArg(format!("options.signal: {}", e.reason)))),
        },
        Ok((None, work)) => (None, Ok(work)),
        Err(failure) => (None, Err(failure)),
    };
    let run = async move {
        match (work, aborted) {
            (Err(failure), _) => Err(failure),
            (Ok(work), None) => work.await,
            (Ok(work), Some(aborted)) => tokio::select! {
                biased;
                () = aborted.cancelled() => Err(Failure::Aborted),
                outcome = work => outcome,
            },
        }
    };
    let (promise, completion) = completions::promise(env)?;
    let work = async move {
        let outcome = run.await;
        completion.complete(Box::new(move |env| settle_with(env, outcome.map_err(|failure| failure.into_js(env)))));
    };
    if here {
        runtime::start_here(env, work);
    } else {
        runtime::spawn(work);
    }
    Ok(PromiseRaw::new(env.raw(), promise))
}

/// A swarm answer as a plain JavaScript value.
pub fn json(value: impl Serialize) -> Result<Value, Failure> {
    serde_json::to_value(value).map_err(|e| Failure::InvalidArg(format!("the result is not JSON: {e}")))
}

/// `EventTarget.addEventListener(type, listener, options)`.
type AddEventListener<'env> = Function<'env, FnArgs<(&'static str, Function<'env, (), ()>, Object<'env>)>, ()>;

/// A token cancelled when `signal` aborts (at once if it already has).
fn watch(env: &Env, signal: Object<'_>) -> napi::Result<CancellationToken> {
    let token = CancellationToken::new();
    if signal.get_named_property::<Option<bool>>("aborted")?.unwrap_or(false) {
        token.cancel();
        return Ok(token);
    }
    let on_abort = {
        let token = token.clone();
        env.create_function_from_closure::<(), (), _>("skepAbort", move |_| {
            token.cancel();
            Ok(())
        })?
    };
    let add: AddEventListener<'_> = signal
        .get_named_property("addEventListener")
        .map_err(|_| napi::Error::from_reason("signal must be an AbortSignal (it has no addEventListener)"))?;
    let mut once = Object::new(env)?;
    once.set_named_property("once", true)?;
    add.apply(signal, FnArgs::from(("abort", on_abort, once)))?;
    Ok(token)
}
