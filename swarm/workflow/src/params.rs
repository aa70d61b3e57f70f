//! References from a step's params (or argv) to earlier results.
//!
//! Syntax, inside any JSON string:
//! - `${steps.ID.result}`: the whole result of step ID;
//! - `${steps.ID.result.a.0.b}`: a dotted path into it (numbers index arrays);
//! - `${steps.ID.result/a/0/b}`: the same as a JSON pointer (RFC 6901), for
//!   keys that hold dots;
//! - `$${` is a literal `${`.
//!
//! A string that is exactly one reference becomes the referenced value with
//! its type; a reference inside a longer string is spliced in as text
//! (strings as they are, anything else as compact JSON).

use serde_json::Value;

/// One `${steps...}` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The step whose result is referenced.
    pub step: String,
    /// A JSON pointer into that result; empty for the whole result.
    pub pointer: String,
}

/// A piece of a string: literal text or a reference.
enum Piece<'a> {
    Text(&'a str),
    Ref(Reference),
}

/// Every reference in `value`, or why one is malformed.
pub fn find_references(value: &Value) -> Result<Vec<Reference>, String> {
    let mut found = Vec::new();
    visit_strings(value, &mut |s| {
        for piece in split(s)? {
            if let Piece::Ref(r) = piece {
                found.push(r);
            }
        }
        Ok(())
    })?;
    Ok(found)
}

/// `value` with every reference replaced by what `result_of(step)` holds.
pub fn resolve(value: &Value, result_of: &dyn Fn(&str) -> Option<Value>) -> Result<Value, String> {
    Ok(match value {
        Value::String(s) => resolve_string(s, result_of)?,
        Value::Array(items) => Value::Array(items.iter().map(|v| resolve(v, result_of)).collect::<Result<_, _>>()?),
        Value::Object(map) => Value::Object(
            map.iter().map(|(k, v)| Ok((k.clone(), resolve(v, result_of)?))).collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

fn resolve_string(s: &str, result_of: &dyn Fn(&str) -> Option<Value>) -> Result<Value, String> {
    let pieces = split(s)?;
    let lookup = |r: &Reference| -> Result<Value, String> {
        let result = result_of(&r.step).ok_or_else(|| format!("step {} has no result", r.step))?;
        result.pointer(&r.pointer).cloned().ok_or_else(|| {
            format!("the result of step {} has nothing at {:?} (it is {})", r.step, r.pointer, preview(&result))
        })
    };
    if let [Piece::Ref(r)] = pieces.as_slice() {
        return lookup(r);
    }
    let mut out = String::with_capacity(s.len());
    for piece in &pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Ref(r) => match lookup(r)? {
                Value::String(text) => out.push_str(&text),
                other => out.push_str(&other.to_string()),
            },
        }
    }
    Ok(Value::String(out))
}

fn preview(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

fn visit_strings(value: &Value, f: &mut dyn FnMut(&str) -> Result<(), String>) -> Result<(), String> {
    match value {
        Value::String(s) => f(s),
        Value::Array(items) => items.iter().try_for_each(|v| visit_strings(v, f)),
        Value::Object(map) => map.values().try_for_each(|v| visit_strings(v, f)),
        _ => Ok(()),
    }
}

fn split(s: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = s;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('$') {
            // `$${`: keep one `${` as text.
            pieces.push(Piece::Text(&rest[..at - 1]));
            pieces.push(Piece::Text("${"));
            rest = &rest[at + 2..];
            continue;
        }
        pieces.push(Piece::Text(&rest[..at]));
        let body_and_more = &rest[at + 2..];
        let end = body_and_more.find('}').ok_or_else(|| format!("unclosed reference in {s:?}: add the closing }}"))?;
        pieces.push(Piece::Ref(parse_reference(&body_and_more[..end])?));
        rest = &body_and_more[end + 1..];
    }
    pieces.push(Piece::Text(rest));
    pieces.retain(|p| !matches!(p, Piece::Text("")));
    Ok(pieces)
}

fn parse_reference(body: &str) -> Result<Reference, String> {
    let hint = "expected ${steps.ID.result}, ${steps.ID.result.field} or ${steps.ID.result/json/pointer}";
    let bad = || format!("bad reference ${{{body}}}: {hint}");
    let rest = body.strip_prefix("steps.").ok_or_else(bad)?;
    // Step ids may hold dots, so the id ends at the first `.result` that ends a segment.
    let at = rest
        .match_indices(".result")
        .map(|(i, _)| i)
        .find(|&i| matches!(rest.as_bytes().get(i + 7), None | Some(b'.' | b'/')))
        .ok_or_else(bad)?;
    let (step, path) = (&rest[..at], &rest[at + 7..]);
    if step.is_empty() {
        return Err(bad());
    }
    let pointer = match path.as_bytes().first() {
        None => String::new(),
        Some(b'/') => path.to_owned(),
        _ => {
            let segments = path[1..].split('.');
            if segments.clone().any(str::is_empty) {
                return Err(bad());
            }
            segments.map(|seg| format!("/{}", seg.replace('~', "~0").replace('/', "~1"))).collect()
        }
    };
    Ok(Reference { step: step.to_owned(), pointer })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn results(step: &str) -> Option<Value> {
        match step {
            "test" => Some(json!({ "exitCode": 0, "stdout": "ok\n", "list": [1, {"a.b": 2}] })),
            "lint.v2" => Some(json!("clean")),
            _ => None,
        }
    }

    #[test]
    fn whole_references_keep_their_type() {
        let params = json!({ "code": "${steps.test.result.exitCode}", "all": "${steps.lint.v2.result}" });
        let out = resolve(&params, &results).unwrap();
        assert_eq!(out, json!({ "code": 0, "all": "clean" }));
    }

    #[test]
    fn pointers_paths_and_splices() {
        let v = json!([
            "${steps.test.result/list/1/a.b}",
            "${steps.test.result.list.0}",
            "code=${steps.test.result.exitCode}!"
        ]);
        assert_eq!(resolve(&v, &results).unwrap(), json!([2, 1, "code=0!"]));
    }

    #[test]
    fn a_doubled_dollar_is_literal() {
        let v = json!("cost $${HOME} and ${steps.lint.v2.result}");
        assert_eq!(resolve(&v, &results).unwrap(), json!("cost ${HOME} and clean"));
        assert_eq!(find_references(&json!("$${steps.x.result}")).unwrap(), vec![]);
    }

    #[test]
    fn references_are_found_with_their_step() {
        let refs = find_references(&json!({ "a": ["${steps.lint.v2.result/x}"] })).unwrap();
        assert_eq!(refs, vec![Reference { step: "lint.v2".into(), pointer: "/x".into() }]);
    }

    #[test]
    fn malformed_references_say_what_is_expected() {
        let err = find_references(&json!("${steps.x}")).unwrap_err();
        assert!(err.contains("bad reference ${steps.x}: expected ${steps.ID.result}"), "{err}");
        let err = find_references(&json!("${steps.x.result")).unwrap_err();
        assert!(err.contains("unclosed reference"), "{err}");
    }

    #[test]
    fn a_missing_field_names_the_step() {
        let err = resolve(&json!("${steps.test.result.nope}"), &results).unwrap_err();
        assert!(err.starts_with("the result of step test has nothing at \"/nope\""), "{err}");
    }
}
