//! Request ids jsonrpsee cannot carry.
//!
//! JSON-RPC 2.0 lets a request id be any string, any number or null, and the
//! response must carry the same value. jsonrpsee's `Id` holds only strings,
//! null and integers from 0 to `u64::MAX`, so a request whose id is any other
//! number (`-1`, `1.5`, `1e3`, `18446744073709551616`) is dispatched under a
//! stand-in string id, and its response gets the caller's id back, byte for
//! byte as the caller wrote it.

use jsonrpsee::types::Id;
use serde_json::value::RawValue;

/// The id such a request is dispatched under.
const STAND_IN: &str = "skep:stand-in-id";
/// How the stand-in appears in jsonrpsee's response.
const STAND_IN_FIELD: &str = "\"id\":\"skep:stand-in-id\"";

/// The id to dispatch a request under: its own, or the stand-in when
/// jsonrpsee cannot carry it. The flag says which.
pub(crate) fn dispatch_id(id: &RawValue) -> (Id<'_>, bool) {
    match serde_json::from_str::<Id<'_>>(id.get()) {
        Ok(id) => (id, false),
        Err(_) => (Id::Str(STAND_IN.into()), true),
    }
}

/// The request as jsonrpsee can take it, when its id needs the stand-in.
pub(crate) fn rewrite(id: &RawValue, method: &str, params: Option<&RawValue>) -> Option<String> {
    if !dispatch_id(id).1 {
        return None;
    }
    let method = serde_json::to_string(method).expect("a string always serializes");
    Some(match params {
        Some(params) => {
            format!(r#"{{"jsonrpc":"2.0","id":"{STAND_IN}","method":{method},"params":{}}}"#, params.get())
        }
        None => format!(r#"{{"jsonrpc":"2.0","id":"{STAND_IN}","method":{method}}}"#),
    })
}

/// The response with the caller's own id in place of the stand-in.
///
/// jsonrpsee writes `id` before `result` or `error`, so the first occurrence
/// of the stand-in field is the response's id, whatever the result holds.
pub(crate) fn restore(response: Box<RawValue>, id: &RawValue) -> Box<RawValue> {
    let text = response.get();
    let Some(at) = text.find(STAND_IN_FIELD) else { return response };
    let mut out = String::with_capacity(text.len() + id.get().len());
    out.push_str(&text[..at]);
    out.push_str("\"id\":");
    out.push_str(id.get());
    out.push_str(&text[at + STAND_IN_FIELD.len()..]);
    RawValue::from_string(out).expect("one JSON value swapped for another")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).expect("valid JSON")
    }

    #[test]
    fn only_numbers_jsonrpsee_cannot_hold_take_the_stand_in() {
        for own in ["0", "18446744073709551615", "\"-1\"", "null"] {
            assert!(!dispatch_id(&raw(own)).1, "{own}");
            assert_eq!(rewrite(&raw(own), "m", None), None);
        }
        for stand_in in ["-1", "1.5", "1e3", "18446744073709551616", "-9223372036854775809", "-0"] {
            assert!(dispatch_id(&raw(stand_in)).1, "{stand_in}");
        }
    }

    #[test]
    fn the_callers_id_comes_back_as_written_and_results_are_untouched() {
        let request = rewrite(&raw("-1.50"), "a\"b", Some(&raw("[1]"))).expect("rewritten");
        assert_eq!(request, r#"{"jsonrpc":"2.0","id":"skep:stand-in-id","method":"a\"b","params":[1]}"#);
        let response = raw(r#"{"jsonrpc":"2.0","id":"skep:stand-in-id","result":{"id":"skep:stand-in-id"}}"#);
        assert_eq!(
            restore(response, &raw("-1.50")).get(),
            r#"{"jsonrpc":"2.0","id":-1.50,"result":{"id":"skep:stand-in-id"}}"#
        );
    }
}
