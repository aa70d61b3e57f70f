//! A call's reply on the wire: `{"result": ...}` or `{"error": {code,
//! message, data}}`, the JSON-RPC shapes without the envelope (the request
//! and its reply are already paired by NATS). The request needs no body of
//! its own: its payload is the params' text, its method a header.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use skep_bridge::{ErrorObjectOwned, code};
use skep_swarm::SwarmError;

/// The reply's bytes for a call's result.
pub(crate) fn encode(result: &Result<Box<RawValue>, SwarmError>) -> Bytes {
    match result {
        Ok(value) => Bytes::from(format!(r#"{{"result":{}}}"#, value.get())),
        Err(e) => encode_error(&e.to_error_object()),
    }
}

/// The reply's bytes for an error.
pub(crate) fn encode_error(error: &ErrorObjectOwned) -> Bytes {
    let text = serde_json::json!({ "error": error }).to_string();
    Bytes::from(text)
}

#[derive(Deserialize)]
struct Reply<'a> {
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    error: Option<WireError>,
}

/// An error object as it crossed the wire.
#[derive(Deserialize)]
pub(crate) struct WireError {
    code: i32,
    message: String,
    data: Option<Value>,
}

impl From<WireError> for ErrorObjectOwned {
    fn from(e: WireError) -> Self {
        ErrorObjectOwned::owned(e.code, e.message, e.data)
    }
}

/// A reply's result, or the error it carries; a reply that is neither is an internal error.
pub(crate) fn decode(payload: &[u8]) -> Result<Box<RawValue>, ErrorObjectOwned> {
    match serde_json::from_slice::<Reply<'_>>(payload) {
        Ok(Reply { result: Some(result), error: None }) => Ok(result.to_owned()),
        Ok(Reply { error: Some(e), .. }) => Err(e.into()),
        Ok(_) => Err(internal("a worker's reply has neither result nor error")),
        Err(e) => Err(internal(&format!("a worker's reply is not valid: {e}"))),
    }
}

pub(crate) fn internal(message: &str) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code::INTERNAL_ERROR, message.to_owned(), None::<()>)
}

/// Codes that say the call never ran on the worker (over capacity, shutting
/// down), so trying another worker is safe whatever the method.
pub(crate) fn not_run(code: i32) -> bool {
    code == code::OVERLOADED || code == code::SHUTTING_DOWN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_and_errors_cross_the_wire_unchanged() {
        let value = RawValue::from_string(r#"{"n":1e400,"s":"\u00e9"}"#.to_owned()).expect("valid");
        let bytes = encode(&Ok(value));
        assert_eq!(decode(&bytes).expect("a result").get(), r#"{"n":1e400,"s":"\u00e9"}"#);
        let failed = encode(&Err(SwarmError::NoWorkers { role: "r".into() }));
        let e = decode(&failed).expect_err("an error");
        assert_eq!((e.code(), e.message()), (code::AGENT_CRASHED, "no worker serves role r: the call was not run"));
        assert_eq!(e.data().map(|d| d.get().contains("skep worker")), Some(true));
        assert_eq!(decode(b"{}").expect_err("neither").code(), code::INTERNAL_ERROR);
    }
}
