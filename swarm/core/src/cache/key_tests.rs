//! The key's contract: a pure function of the params' exact text, up to
//! whitespace and member order; examples first, then properties over random JSON.

use super::*;
use proptest::prelude::*;

fn raw(json: &str) -> Box<RawValue> {
    RawValue::from_string(json.to_owned()).expect("test JSON is valid")
}

fn canon(json: &str) -> String {
    String::from_utf8(canonical_json(json).expect("canonical")).expect("UTF-8")
}

fn key(scope: &str, method: &str, params: Option<&str>) -> CacheKey {
    CacheKey::new(scope, method, params.map(raw).as_deref()).expect("key")
}

#[test]
fn canonical_json_ignores_key_order_and_whitespace() {
    let a = canon(r#"{"b": 1, "a": [ {"d": 2, "c": [3, {"z": 0, "y": 1}]} ], "é": "x", "Z": null}"#);
    let b = canon("{\"Z\":null,\"é\":\"x\",\"a\":[{\"c\":[3,{\"y\":1,\"z\":0}],\r\n\t\"d\":2}],\"b\":1}");
    assert_eq!(a, b);
    assert_eq!(a, r#"{"Z":null,"a":[{"c":[3,{"y":1,"z":0}],"d":2}],"b":1,"é":"x"}"#);
    assert_ne!(canon("[1, 2]"), canon("[2, 1]"));
    assert_eq!(canon(" [ ] "), "[]");
    assert_eq!(canon("{ }"), "{}");
}

#[test]
fn numbers_and_strings_stay_exactly_as_written() {
    let distinct = [
        // Issue 19: integers past 64 bits collided when rounded to f64.
        ("123456789012345678901234567890", "123456789012345678901234567891"),
        ("18446744073709551616", "18446744073709551617"),
        ("-9223372036854775809", "-9223372036854775810"),
        ("-0.0", "-0"),
        ("1.0", "1"),
        ("1e2", "100"),
        ("1E2", "1e2"),
        (r#""\u0041""#, r#""A""#),
        (r#""\/""#, r#""/""#),
        (r#""\ud800""#, r#""\ud801""#),
    ];
    for (a, b) in distinct {
        let (pa, pb) = (format!(r#"{{"n":{a}}}"#), format!(r#"{{"n":{b}}}"#));
        assert_eq!(canon(&pa), pa, "copied as written");
        assert_ne!(key("r", "echo", Some(&pa)), key("r", "echo", Some(&pb)), "{a} vs {b}");
    }
    // A lone surrogate is no error: the text is never decoded.
    assert_eq!(canon(r#"[ "\ud800", "a\"b\\" ]"#), r#"["\ud800","a\"b\\"]"#);
}

#[test]
fn duplicate_keys_keep_their_order() {
    assert_eq!(canon(r#"{"b":0,"a":1,"a":2}"#), r#"{"a":1,"a":2,"b":0}"#);
    assert_ne!(canon(r#"{"a":1,"a":2}"#), canon(r#"{"a":2,"a":1}"#));
}

#[test]
fn keys_differ_by_value_scope_and_method() {
    let base = key("role", "m", Some(r#"{"a":1,"b":2}"#));
    assert_eq!(base, key("role", "m", Some(r#"{ "b": 2, "a": 1 }"#)));
    assert_ne!(base, key("role", "m", Some(r#"{"a":1,"b":3}"#)));
    assert_ne!(base, key("other", "m", Some(r#"{"a":1,"b":2}"#)));
    assert_ne!(base, key("role", "n", Some(r#"{"a":1,"b":2}"#)));
    assert_ne!(key("ab", "c", None), key("a", "bc", None));
}

#[test]
fn absent_null_and_empty_params_are_distinct_and_stable() {
    assert_eq!(key("", "m", None), key("", "m", None));
    assert_eq!(key("", "m", Some("[]")), key("", "m", Some("[ ]")));
    let keys = [key("", "m", None), key("", "m", Some("null")), key("", "m", Some("[]")), key("", "m", Some("{}"))];
    for (i, a) in keys.iter().enumerate() {
        for b in &keys[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[test]
fn deep_nesting_is_refused_without_exhausting_the_stack() {
    let nested = |depth: usize, open: &str, close: &str| format!("{}0{}", open.repeat(depth), close.repeat(depth));
    assert!(canonical_json(&nested(MAX_DEPTH, "[", "]")).is_ok());
    assert_eq!(canonical_json(&nested(MAX_DEPTH + 1, "[", "]")), Err(KeyError::TooDeep));
    assert!(canonical_json(&nested(MAX_DEPTH, r#"{"k":"#, "}")).is_ok());
    assert_eq!(canonical_json(&nested(1_000_000, r#"{"k":["#, "]}")), Err(KeyError::TooDeep));
}

#[test]
fn malformed_text_has_no_key() {
    for text in ["", "[1,", r#"{"a" 1}"#, r#"{1:2}"#, "[1 2]", r#""open"#, "[]]", "[,]", r#"{"a":1,}"#] {
        assert!(matches!(canonical_json(text), Err(KeyError::Malformed(_))), "{text:?}");
    }
}

/// A JSON value whose numbers and strings are kept as the text to write.
#[derive(Debug, Clone)]
enum Json {
    Literal(&'static str),
    Number(String),
    /// A string's contents between the quotes, escapes as written.
    Str(String),
    Array(Vec<Json>),
    /// Members with distinct keys, so any order of them means the same params.
    Object(Vec<(String, Json)>),
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        "-?(0|[1-9][0-9]{0,40})(\\.[0-9]{1,12})?([eE][+-]?[0-9]{1,3})?",
        prop::sample::select(vec!["-0", "-0.0", "0.0", "18446744073709551616", "-9223372036854775809", "1e400"])
            .prop_map(str::to_owned),
    ]
}

fn string_contents() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-zA-Z0-9 é€😀]",
        prop::sample::select(vec![r#"\""#, r"\\", r"\/", r"\b", r"\f", r"\n", r"\r", r"\t"]).prop_map(str::to_owned),
        "\\\\u[0-9a-fA-F]{4}",
        // Lone surrogates, high and low.
        "\\\\u[dD][89a-fA-F][0-9a-fA-F]{2}",
    ];
    prop::collection::vec(piece, 0..6).prop_map(|pieces| pieces.concat())
}

fn json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        prop::sample::select(vec!["true", "false", "null"]).prop_map(Json::Literal),
        number().prop_map(Json::Number),
        string_contents().prop_map(Json::Str),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            prop::collection::vec((string_contents(), inner), 0..6).prop_map(|mut members| {
                let mut seen = std::collections::HashSet::new();
                members.retain(|(key, _)| seen.insert(key.clone()));
                Json::Object(members)
            }),
        ]
    })
}

/// Writes `json`: in the model's canonical form with no `rng`, otherwise with
/// random whitespace and members in random order.
fn write(json: &Json, out: &mut String, rng: &mut Option<fastrand::Rng>) {
    space(out, rng);
    match json {
        Json::Literal(text) => out.push_str(text),
        Json::Number(text) => out.push_str(text),
        Json::Str(contents) => {
            out.push('"');
            out.push_str(contents);
            out.push('"');
        }
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out, rng);
            }
            space(out, rng);
            out.push(']');
        }
        Json::Object(members) => {
            let mut order: Vec<_> = members.iter().collect();
            match rng.as_mut() {
                Some(rng) => rng.shuffle(&mut order),
                None => order.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes())),
            }
            out.push('{');
            for (i, (key, value)) in order.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(&Json::Str(key.clone()), out, rng);
                out.push(':');
                write(value, out, rng);
            }
            out.push('}');
        }
    }
}

fn space(out: &mut String, rng: &mut Option<fastrand::Rng>) {
    if let Some(rng) = rng.as_mut() {
        out.push_str(["", "", " ", "\n", "\t", "\r\n  "][rng.usize(..6)]);
    }
}

fn canonical_model(json: &Json) -> String {
    let mut out = String::new();
    write(json, &mut out, &mut None);
    out
}

fn shuffled(json: &Json, seed: u64) -> String {
    let mut out = String::new();
    write(json, &mut out, &mut Some(fastrand::Rng::with_seed(seed)));
    out
}

fn params_key(text: &str) -> CacheKey {
    key("role", "echo", Some(text))
}

/// Changes the text of the `n`-th number, string or literal (counted depth first, modulo their count).
fn mutate(json: &mut Json, n: usize) {
    fn leaves<'a>(json: &'a mut Json, out: &mut Vec<&'a mut Json>) {
        match json {
            Json::Array(items) => items.iter_mut().for_each(|item| leaves(item, out)),
            Json::Object(members) => members.iter_mut().for_each(|(_, value)| leaves(value, out)),
            leaf => out.push(leaf),
        }
    }
    let mut found = Vec::new();
    leaves(json, &mut found);
    let count = found.len();
    let Some(leaf) = found.into_iter().nth(n % count.max(1)) else {
        // No leaf at all (empty containers): change the shape instead.
        *json = Json::Array(vec![std::mem::replace(json, Json::Literal("null"))]);
        return;
    };
    match leaf {
        Json::Number(text) => match text.strip_prefix('-') {
            Some(positive) => *text = positive.to_owned(),
            None => text.insert(0, '-'),
        },
        Json::Str(contents) => contents.push('x'),
        Json::Literal(text) => *text = if *text == "null" { "false" } else { "null" },
        Json::Array(_) | Json::Object(_) => unreachable!("containers are not leaves"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_rendering_canonicalises_to_the_model(json in json(), seed in any::<u64>()) {
        let text = shuffled(&json, seed);
        prop_assert!(RawValue::from_string(text.clone()).is_ok(), "the generator writes JSON: {text}");
        let canonical = canonical_json(&text).expect("canonical");
        prop_assert_eq!(String::from_utf8(canonical.clone()).expect("UTF-8"), canonical_model(&json));
        prop_assert_eq!(canonical_json(std::str::from_utf8(&canonical).expect("UTF-8")).expect("idempotent"), canonical);
    }

    #[test]
    fn reshuffled_params_share_a_key(json in json(), a in any::<u64>(), b in any::<u64>()) {
        prop_assert_eq!(params_key(&shuffled(&json, a)), params_key(&shuffled(&json, b)));
    }

    #[test]
    fn keys_are_equal_exactly_when_canonical_forms_are(
        x in json(), y in json(), a in any::<u64>(), b in any::<u64>()
    ) {
        let same_form = canonical_model(&x) == canonical_model(&y);
        prop_assert_eq!(params_key(&shuffled(&x, a)) == params_key(&shuffled(&y, b)), same_form);
    }

    #[test]
    fn changing_a_number_or_string_changes_the_key(json in json(), n in any::<usize>(), a in any::<u64>(), b in any::<u64>()) {
        let mut changed = json.clone();
        mutate(&mut changed, n);
        prop_assert_ne!(params_key(&shuffled(&json, a)), params_key(&shuffled(&changed, b)));
    }
}
