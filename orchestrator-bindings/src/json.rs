//! A call's params and answer cross between JavaScript and the agent as JSON
//! text, converted by V8's own `JSON.stringify` and `JSON.parse`: one
//! Node-API call each way, instead of walking every property through
//! Node-API into a `serde_json::Value` and building it again as text (and
//! back). The agent speaks text anyway.

use napi::bindgen_prelude::{Env, FromNapiValue, Function, JsObjectValue, Object, ToNapiValue, Unknown, ValueType};
use napi::{JsValue, sys};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::{Failure, invalid_arg};

/// A call's answer: JSON text from a local agent, or a value a daemon sent.
#[derive(Debug)]
pub enum Answer {
    /// Parsed by `JSON.parse` on Node's thread.
    Text(Box<RawValue>),
    /// Already decoded (the daemon's reply).
    Value(Value),
}

impl ToNapiValue for Answer {
    unsafe fn to_napi_value(env: sys::napi_env, answer: Self) -> napi::Result<sys::napi_value> {
        match answer {
            // SAFETY: the caller hands us its environment, on its thread.
            Answer::Value(value) => unsafe { Value::to_napi_value(env, value) },
            Answer::Text(text) => {
                let env = Env::from_raw(env);
                let text = env.create_string(text.get())?;
                let parsed: Unknown<'_> = json_function(&env, "parse")?.call(text.to_unknown())?;
                Ok(parsed.raw())
            }
        }
    }
}

/// `JSON[name]`, from this environment's global object.
fn json_function<'env>(env: &'env Env, name: &str) -> napi::Result<Function<'env, Unknown<'env>, Unknown<'env>>> {
    let json: Object<'_> = env.get_global()?.get_named_property("JSON")?;
    json.get_named_property(name)
}

const PARAMS_SHAPE: &str = "params must be an object or an array (JSON-RPC 2.0), such as { text: 'hi' } or [1, 2]";

/// JSON-RPC params as text, by `JSON.stringify`: an object or an array;
/// `undefined` and `null` mean none.
pub fn params(env: &Env, value: Option<Unknown<'_>>) -> Result<Option<Box<RawValue>>, Failure> {
    let Some(value) = value else { return Ok(None) };
    let kind = value.get_type().map_err(|e| invalid_arg(format!("params: {}", e.reason)))?;
    match kind {
        ValueType::Undefined | ValueType::Null => return Ok(None),
        ValueType::Object => {}
        other => return Err(invalid_arg(format!("{PARAMS_SHAPE}; got {}", kind_name(other)))),
    }
    let text = json_function(env, "stringify")
        .and_then(|stringify| stringify.call(value))
        .map_err(|e| invalid_arg(format!("params are not JSON: {}", e.reason)))?;
    // An object's `toJSON` may turn it into something else entirely.
    let text = match text.get_type() {
        Ok(ValueType::String) => {
            // SAFETY: a string value of this environment, just checked.
            unsafe { String::from_napi_value(env.raw(), text.raw()) }.map_err(|e| invalid_arg(e.reason))?
        }
        _ => return Err(invalid_arg(format!("{PARAMS_SHAPE}; its toJSON() gave nothing"))),
    };
    if !text.starts_with(['{', '[']) {
        return Err(invalid_arg(format!("{PARAMS_SHAPE}; its toJSON() gave {text}")));
    }
    RawValue::from_string(text).map(Some).map_err(|e| invalid_arg(format!("params: {e}")))
}

fn kind_name(kind: ValueType) -> &'static str {
    match kind {
        ValueType::Boolean => "a boolean",
        ValueType::Number => "a number",
        ValueType::String => "a string",
        ValueType::Symbol => "a symbol",
        ValueType::Function => "a function",
        ValueType::BigInt => "a bigint",
        _ => "something else",
    }
}
