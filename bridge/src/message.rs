//! JSON-RPC 2.0 messages: classifying what arrives and writing what leaves.
//!
//! Incoming payloads are classified without decoding `params` or `result`
//! (they stay borrowed [`RawValue`]s), so a large payload is scanned once and
//! copied at most once on its way through.

use std::borrow::Cow;
use std::io::Write as _;

use jsonrpsee::types::ErrorObjectOwned;
use serde::Deserialize;
use serde::de::Deserializer;
use serde_json::value::RawValue;

use crate::code;

/// One classified incoming message; everything borrows the frame.
#[derive(Debug)]
pub enum Incoming<'a> {
    /// A call that expects an answer.
    Request { id: &'a RawValue, method: Cow<'a, str>, params: Option<&'a RawValue> },
    /// A call that expects no answer.
    Notification { method: Cow<'a, str>, params: Option<&'a RawValue> },
    /// An answer to one of our calls.
    Response { id: &'a RawValue, outcome: Result<&'a RawValue, &'a RawValue> },
    /// Valid JSON that is not a JSON-RPC 2.0 message; `id` is kept when it was usable.
    Invalid { id: Option<&'a RawValue>, reason: &'static str },
}

/// Why a payload could not be read as JSON at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The bytes are not UTF-8.
    #[error("invalid UTF-8 at byte {0}")]
    Utf8(usize),
    /// The text is not JSON (or nests deeper than serde_json's limit of 128).
    #[error("invalid JSON: {0}")]
    Json(String),
}

impl ParseError {
    /// The wire error for this failure (-32700).
    pub fn to_error_object(&self) -> ErrorObjectOwned {
        ErrorObjectOwned::owned(code::PARSE_ERROR, format!("parse error: {self}"), None::<()>)
    }
}

/// A payload: one message, or a batch of raw entries.
#[derive(Debug)]
pub enum Payload<'a> {
    /// A single message object (or any non-array JSON value).
    Single(Incoming<'a>),
    /// A JSON array; each entry is classified with [`classify`].
    Batch(Vec<&'a RawValue>),
}

/// Reads a frame's bytes as UTF-8 JSON and classifies it.
pub fn parse(bytes: &[u8]) -> Result<Payload<'_>, ParseError> {
    let text = std::str::from_utf8(bytes).map_err(|e| ParseError::Utf8(e.valid_up_to()))?;
    if text.trim_start().starts_with('[') {
        return serde_json::from_str::<Vec<&RawValue>>(text)
            .map(Payload::Batch)
            .map_err(|e| ParseError::Json(e.to_string()));
    }
    let raw: &RawValue = serde_json::from_str(text).map_err(|e| ParseError::Json(e.to_string()))?;
    Ok(Payload::Single(classify(raw)))
}

/// Classifies one JSON value already known to be well-formed.
pub fn classify(raw: &RawValue) -> Incoming<'_> {
    let Ok(env) = serde_json::from_str::<Envelope<'_>>(raw.get()) else {
        // Valid JSON but not an object of the expected shape (a number, a
        // duplicate key, a non-string `jsonrpc`, ...).
        return Incoming::Invalid { id: None, reason: "not a JSON-RPC 2.0 message object" };
    };
    let id = env.id.filter(|id| is_valid_id(id));
    if env.id.is_some() && id.is_none() {
        return Incoming::Invalid { id: None, reason: "id must be a string, a number or null" };
    }
    if env.jsonrpc.map(RawValue::get) != Some("\"2.0\"") {
        return Incoming::Invalid { id, reason: "jsonrpc must be exactly \"2.0\"" };
    }
    match (env.method, env.result, env.error) {
        (Some(method), None, None) => {
            let Some(method) = json_str(method) else {
                return Incoming::Invalid { id, reason: "method must be a string" };
            };
            if env.params.is_some_and(|p| !is_structured(p)) {
                return Incoming::Invalid { id, reason: "params must be an array or an object" };
            }
            match id {
                Some(id) => Incoming::Request { id, method, params: env.params },
                None => Incoming::Notification { method, params: env.params },
            }
        }
        (None, Some(result), None) => match id {
            Some(id) => Incoming::Response { id, outcome: Ok(result) },
            None => Incoming::Invalid { id, reason: "a response needs an id" },
        },
        (None, None, Some(error)) => match id {
            Some(id) => Incoming::Response { id, outcome: Err(error) },
            None => Incoming::Invalid { id, reason: "a response needs an id" },
        },
        (None, None, None) => Incoming::Invalid { id, reason: "no method, result or error" },
        _ => Incoming::Invalid { id, reason: "method, result and error are mutually exclusive" },
    }
}

/// Decodes an `error` member into an error object; a malformed one becomes -32603.
pub fn decode_error(raw: &RawValue) -> ErrorObjectOwned {
    serde_json::from_str::<ErrorObjectOwned>(raw.get()).unwrap_or_else(|_| {
        ErrorObjectOwned::owned(code::INTERNAL_ERROR, "peer sent a malformed error object", Some(raw.get()))
    })
}

/// The fields that decide what a message is; everything else is ignored.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    jsonrpc: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    method: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    params: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    error: Option<&'a RawValue>,
}

/// Keeps a member that is present even when it is `null` (`"result": null` is
/// a success, `"id": null` an id), which `Option`'s own impl would erase.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// A JSON string's value, borrowed unless it holds escapes (a method name
/// almost never does, so the hot path allocates nothing).
fn json_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    match serde_json::from_str::<&str>(raw.get()) {
        Ok(plain) => Some(Cow::Borrowed(plain)),
        Err(_) => serde_json::from_str::<String>(raw.get()).ok().map(Cow::Owned),
    }
}

fn is_valid_id(id: &RawValue) -> bool {
    matches!(id.get().as_bytes().first(), Some(b'"' | b'-' | b'0'..=b'9' | b'n'))
}

fn is_structured(params: &RawValue) -> bool {
    matches!(params.get().as_bytes().first(), Some(b'[' | b'{'))
}

/// Writes a request (or, without `id`, a notification) as one JSON text.
pub fn write_request(out: &mut Vec<u8>, id: Option<u64>, method: &str, params: Option<&RawValue>) {
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",");
    if let Some(id) = id {
        write!(out, "\"id\":{id},").expect("writing to a Vec cannot fail");
    }
    out.extend_from_slice(b"\"method\":");
    write_json_string(out, method);
    if let Some(params) = params {
        out.extend_from_slice(b",\"params\":");
        out.extend_from_slice(params.get().as_bytes());
    }
    out.push(b'}');
}

/// Writes an error response; `id` is the raw id text, `None` for `null`.
pub fn write_error(out: &mut Vec<u8>, id: Option<&str>, error: &ErrorObjectOwned) {
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.extend_from_slice(id.unwrap_or("null").as_bytes());
    out.extend_from_slice(b",\"error\":");
    serde_json::to_writer(&mut *out, error).expect("an error object always serializes");
    out.push(b'}');
}

/// An error response as a string, for tests and one-off replies.
pub fn error_response(id: Option<&str>, error: &ErrorObjectOwned) -> String {
    let mut out = Vec::with_capacity(96);
    write_error(&mut out, id, error);
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

fn write_json_string(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(out, s).expect("a str always serializes");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(text: &str) -> Incoming<'_> {
        match parse(text.as_bytes()).expect("valid JSON") {
            Payload::Single(m) => m,
            Payload::Batch(_) => panic!("unexpected batch"),
        }
    }

    #[test]
    fn requests_and_notifications() {
        let m = single(r#"{"jsonrpc":"2.0","method":"subtract","params":[42,23],"id":1}"#);
        assert!(matches!(m, Incoming::Request { id, ref method, params: Some(p) }
            if id.get() == "1" && method == "subtract" && p.get() == "[42,23]"));
        let m = single(r#"{"jsonrpc":"2.0","method":"update","params":[1,2,3,4,5]}"#);
        assert!(matches!(m, Incoming::Notification { ref method, .. } if method == "update"));
        let m = single(r#"{"jsonrpc":"2.0","method":"a\"b","id":null}"#);
        assert!(matches!(m, Incoming::Request { id, ref method, params: None }
            if id.get() == "null" && method == "a\"b"));
    }

    #[test]
    fn responses_keep_null_results() {
        let m = single(r#"{"jsonrpc":"2.0","id":7,"result":null}"#);
        assert!(matches!(m, Incoming::Response { id, outcome: Ok(r) } if id.get() == "7" && r.get() == "null"));
        let m = single(r#"{"jsonrpc":"2.0","id":"x","error":{"code":-1,"message":"m"}}"#);
        let Incoming::Response { outcome: Err(e), .. } = m else { panic!("not an error response") };
        assert_eq!(decode_error(e).code(), -1);
    }

    #[test]
    fn invalid_shapes_keep_usable_ids() {
        for (text, want_id) in [
            (r#"{"jsonrpc":"2.0","method":1,"params":"bar"}"#, None),
            (r#"{"jsonrpc":"1.0","method":"m","id":3}"#, Some("3")),
            (r#"{"method":"m","id":3}"#, Some("3")),
            (r#"{"jsonrpc":"2.0","method":"m","params":5,"id":"a"}"#, Some("\"a\"")),
            (r#"{"jsonrpc":"2.0","method":"m","id":{}}"#, None),
            (r#"{"jsonrpc":"2.0","id":1}"#, Some("1")),
            (r#"{"jsonrpc":"2.0","id":1,"result":1,"error":{}}"#, Some("1")),
            ("1", None),
            (r#""text""#, None),
        ] {
            let Incoming::Invalid { id, .. } = single(text) else { panic!("{text} was accepted") };
            assert_eq!(id.map(RawValue::get), want_id, "{text}");
        }
    }

    #[test]
    fn parse_errors() {
        assert_eq!(parse(b"\xff{}").unwrap_err(), ParseError::Utf8(0));
        assert!(matches!(parse(br#"{"jsonrpc":"2.0","method":"foobar,"#), Err(ParseError::Json(_))));
        // Raw capture does not recurse, so depth never reaches the stack: a
        // deep array is a one-entry batch whose entry is not a message, and
        // deep params stay opaque until a handler decodes them (with limits).
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        let Ok(Payload::Batch(items)) = parse(deep.as_bytes()) else { panic!("not a batch") };
        assert!(matches!(classify(items[0]), Incoming::Invalid { id: None, .. }));
        let deep_object = "{\"a\":".repeat(100_000) + "1" + &"}".repeat(100_000);
        assert!(matches!(single(&deep_object), Incoming::Invalid { id: None, .. }));
        let deep_params = format!(
            r#"{{"jsonrpc":"2.0","method":"m","id":1,"params":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(matches!(single(&deep_params), Incoming::Request { .. }));
    }

    #[test]
    fn batches_split_into_raw_entries() {
        let Ok(Payload::Batch(items)) = parse(b" [1, {\"a\":2}]") else { panic!("not a batch") };
        assert_eq!(items.iter().map(|r| r.get()).collect::<Vec<_>>(), ["1", "{\"a\":2}"]);
    }

    #[test]
    fn writes_exact_json() {
        let mut out = Vec::new();
        let params = RawValue::from_string("{\"b\":1}".into()).expect("valid");
        write_request(&mut out, Some(9), "m\n", Some(&params));
        assert_eq!(out, br#"{"jsonrpc":"2.0","id":9,"method":"m\n","params":{"b":1}}"#);
        out.clear();
        write_request(&mut out, None, "n", None);
        assert_eq!(out, br#"{"jsonrpc":"2.0","method":"n"}"#);
        let err = ErrorObjectOwned::owned(-32601, "Method not found", None::<()>);
        assert_eq!(
            error_response(None, &err),
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32601,"message":"Method not found"}}"#
        );
    }
}
