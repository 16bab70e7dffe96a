//! JSON Patch (RFC 6902, with JSON Pointer, RFC 6901) and JSON Merge Patch (RFC 7396) on a
//! resource's JSON.
//!
//! Written here rather than taken from the `json-patch` crate, which does not fit this build:
//! its `test` compares with `Value`'s `==`, and with serde_json's `arbitrary_precision` (on in
//! this build) that compares numbers as text, so `1` and `1.0` differ where RFC 6902 §4.6 says
//! numbers are equal when their values are; and its `copy` has no bound, so a few `copy`
//! operations of the whole document into itself double it each time (a request of some
//! hundred bytes asking for gigabytes). What remains (walking a pointer) is a few lines.
//!
//! Errors: a document that is not a JSON Patch is [`Failure::Malformed`]; an operation that
//! cannot be applied to this resource (a path that is not there, a failed `test`) is
//! [`Failure::Unapplicable`], with the operation's index.

use super::Failure;
use serde_json::{Map, Value};

/// One operation of a JSON Patch.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    Add { path: Pointer, value: Value },
    Remove { path: Pointer },
    Replace { path: Pointer, value: Value },
    Move { from: Pointer, path: Pointer },
    Copy { from: Pointer, path: Pointer },
    Test { path: Pointer, value: Value },
}

/// A JSON Pointer: its reference tokens, unescaped. Empty for the whole document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer(Vec<String>);

impl Pointer {
    /// Parses an RFC 6901 pointer: empty, or `/` tokens with `~1` for `/` and `~0` for `~`.
    pub fn parse(text: &str) -> Result<Pointer, String> {
        if text.is_empty() {
            return Ok(Pointer(Vec::new()));
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!(
                "'{text}' is not a JSON Pointer: it must start with '/'"
            ));
        };
        rest.split('/')
            .map(|token| {
                unescape(token).ok_or_else(|| format!("'{text}' has a '~' that is not ~0 or ~1"))
            })
            .collect::<Result<_, _>>()
            .map(Pointer)
    }

    /// Is `self` strictly inside `other`?
    fn is_inside(&self, other: &Pointer) -> bool {
        self.0.len() > other.0.len() && self.0.starts_with(&other.0)
    }

    fn split_last(&self) -> Option<(&[String], &str)> {
        self.0
            .split_last()
            .map(|(last, parent)| (parent, last.as_str()))
    }
}

impl std::fmt::Display for Pointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for token in &self.0 {
            write!(f, "/{}", token.replace('~', "~0").replace('/', "~1"))?;
        }
        Ok(())
    }
}

fn unescape(token: &str) -> Option<String> {
    if !token.contains('~') {
        return Some(token.to_string());
    }
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        match c {
            '~' => match chars.next()? {
                '0' => out.push('~'),
                '1' => out.push('/'),
                _ => return None,
            },
            c => out.push(c),
        }
    }
    Some(out)
}

/// Reads a JSON Patch document: an array of operation objects. Members an operation does not
/// use are ignored (RFC 6902 §4).
pub fn parse(document: Value) -> Result<Vec<Operation>, Failure> {
    let Value::Array(items) = document else {
        return Err(Failure::Malformed(
            "a JSON Patch is an array of operations".into(),
        ));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            operation(item).map_err(|why| Failure::Malformed(format!("operation {index}: {why}")))
        })
        .collect()
}

fn operation(item: Value) -> Result<Operation, String> {
    let Value::Object(mut members) = item else {
        return Err("an operation is an object".into());
    };
    let op = match members.get("op") {
        Some(Value::String(op)) => op.clone(),
        Some(_) => return Err("'op' must be a string".into()),
        None => return Err("'op' is missing".into()),
    };
    let path = pointer(&members, "path")?;
    let mut value = || {
        members
            .remove("value")
            .ok_or_else(|| format!("'{op}' needs a 'value'"))
    };
    Ok(match op.as_str() {
        "add" => Operation::Add {
            path,
            value: value()?,
        },
        "remove" => Operation::Remove { path },
        "replace" => Operation::Replace {
            path,
            value: value()?,
        },
        "move" => Operation::Move {
            from: pointer(&members, "from")?,
            path,
        },
        "copy" => Operation::Copy {
            from: pointer(&members, "from")?,
            path,
        },
        "test" => Operation::Test {
            path,
            value: value()?,
        },
        other => {
            return Err(format!(
                "'{other}' is not an operation: add, remove, replace, move, copy or test"
            ));
        }
    })
}

/// The pointer in member `name` of an operation.
fn pointer(members: &Map<String, Value>, name: &str) -> Result<Pointer, String> {
    match members.get(name) {
        Some(Value::String(text)) => Pointer::parse(text),
        Some(_) => Err(format!("'{name}' must be a string")),
        None => Err(format!("'{name}' is missing")),
    }
}

/// Applies `operations` in order to `document`. The `copy` operations together may add at
/// most `limit` bytes (of serialized JSON); the others only add what the patch holds. On a
/// failure `document` is left part-way: apply to a copy.
pub fn apply(document: &mut Value, operations: &[Operation], limit: usize) -> Result<(), Failure> {
    let mut copied = 0usize;
    for (index, operation) in operations.iter().enumerate() {
        let unapplicable = |why: String| Failure::Unapplicable { index, why };
        match operation {
            Operation::Add { path, value } => add(document, path, value.clone()),
            Operation::Remove { path } => remove(document, path).map(drop),
            Operation::Replace { path, value } => match get_mut(document, &path.0) {
                Some(target) => {
                    *target = value.clone();
                    Ok(())
                }
                None => Err(format!("there is nothing at {path} to replace")),
            },
            Operation::Move { from, path } => {
                if path.is_inside(from) {
                    Err(format!("{from} cannot be moved inside itself, to {path}"))
                } else if from == path {
                    get(document, &from.0)
                        .map(drop)
                        .ok_or_else(|| format!("there is nothing at {from} to move"))
                } else {
                    remove(document, from)
                        .map_err(|_| format!("there is nothing at {from} to move"))
                        .and_then(|value| add(document, path, value))
                }
            }
            Operation::Copy { from, path } => match get(document, &from.0) {
                Some(value) => {
                    copied = copied.saturating_add(serialized_size(value));
                    if copied > limit {
                        return Err(Failure::TooLarge(format!(
                            "operation {index}: the copies would add more than {limit} bytes"
                        )));
                    }
                    let value = value.clone();
                    add(document, path, value)
                }
                None => Err(format!("there is nothing at {from} to copy")),
            },
            Operation::Test { path, value } => match get(document, &path.0) {
                Some(found) if equal(found, value) => Ok(()),
                Some(_) => Err(format!("the value at {path} is not the one tested")),
                None => Err(format!("there is nothing at {path} to test")),
            },
        }
        .map_err(unapplicable)?;
    }
    Ok(())
}

/// Applies a JSON Merge Patch (RFC 7396): members set to `null` are removed, objects are
/// merged member by member, anything else replaces what was there.
pub fn merge(document: &mut Value, patch: Value) {
    let Value::Object(patch) = patch else {
        *document = patch;
        return;
    };
    if !document.is_object() {
        *document = Value::Object(Map::new());
    }
    let Value::Object(target) = document else {
        unreachable!("made an object above")
    };
    for (name, value) in patch {
        if value.is_null() {
            target.shift_remove(&name);
        } else {
            merge(target.entry(name).or_insert(Value::Null), value);
        }
    }
}

fn get<'v>(document: &'v Value, tokens: &[String]) -> Option<&'v Value> {
    tokens.iter().try_fold(document, |node, token| match node {
        Value::Object(members) => members.get(token),
        Value::Array(items) => items.get(index(token, items.len())?),
        _ => None,
    })
}

fn get_mut<'v>(document: &'v mut Value, tokens: &[String]) -> Option<&'v mut Value> {
    tokens.iter().try_fold(document, |node, token| match node {
        Value::Object(members) => members.get_mut(token),
        Value::Array(items) => {
            let at = index(token, items.len())?;
            items.get_mut(at)
        }
        _ => None,
    })
}

/// An array index token below `len`: digits without a leading zero (RFC 6901 §4).
fn index(token: &str, len: usize) -> Option<usize> {
    let valid = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'));
    let at: usize = valid.then(|| token.parse().ok()).flatten()?;
    (at < len).then_some(at)
}

fn add(document: &mut Value, path: &Pointer, value: Value) -> Result<(), String> {
    let Some((parent, last)) = path.split_last() else {
        *document = value;
        return Ok(());
    };
    match get_mut(document, parent) {
        Some(Value::Object(members)) => {
            members.insert(last.to_string(), value);
            Ok(())
        }
        Some(Value::Array(items)) => {
            let at = if last == "-" {
                items.len()
            } else {
                index(last, items.len() + 1)
                    .ok_or_else(|| format!("{path}: '{last}' is not an index of the array"))?
            };
            items.insert(at, value);
            Ok(())
        }
        Some(_) => Err(format!("{path}: its parent is not an object or an array")),
        None => Err(format!("{path}: its parent does not exist")),
    }
}

fn remove(document: &mut Value, path: &Pointer) -> Result<Value, String> {
    let Some((parent, last)) = path.split_last() else {
        return Err("the whole document cannot be removed".into());
    };
    let missing = || format!("there is nothing at {path} to remove");
    match get_mut(document, parent) {
        Some(Value::Object(members)) => members.shift_remove(last).ok_or_else(missing),
        Some(Value::Array(items)) => {
            let at = index(last, items.len()).ok_or_else(missing)?;
            Ok(items.remove(at))
        }
        _ => Err(missing()),
    }
}

/// JSON equality as RFC 6902 §4.6 defines it for `test`: numbers by their value, objects
/// regardless of member order, arrays item by item.
fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => decimal(&x.to_string()) == decimal(&y.to_string()),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(name, a)| y.get(name).is_some_and(|b| equal(a, b)))
        }
        _ => a == b,
    }
}

/// A JSON number's value, exactly: sign, significant digits and the power of ten of the last
/// one (`-1.50e2` is `(true, "15", 1)`); zero is `(false, "", 0)` whatever its sign.
fn decimal(text: &str) -> (bool, String, i64) {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, exponent.parse::<i64>().unwrap_or(0)),
        None => (text, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{whole}{fraction}");
    let trimmed = digits.trim_start_matches('0');
    let significant = trimmed.trim_end_matches('0');
    if significant.is_empty() {
        return (false, String::new(), 0);
    }
    let trailing = (trimmed.len() - significant.len()) as i64;
    let power = exponent
        .saturating_sub(fraction.len() as i64)
        .saturating_add(trailing);
    (negative, significant.to_string(), power)
}

/// The length of `value` serialized, without building the text.
fn serialized_size(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, value).expect("JSON serializes");
    counter.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::test_data::test_case;
    use serde_json::json;

    fn patched(document: Value, patch: Value) -> Result<Value, Failure> {
        let operations = parse(patch)?;
        let mut document = document;
        apply(&mut document, &operations, 1 << 20)?;
        Ok(document)
    }

    /// RFC 6902's own examples and error cases, as FHIR's test cases carry them
    /// (`r4/patch/json-patch-tests.json`): every one passes.
    #[test]
    fn the_official_json_patch_cases_pass() {
        let text = test_case("r4/patch/json-patch-tests.json");
        let cases: Vec<Value> = serde_json::from_str(&text).expect("the JSON Patch cases");
        assert_eq!(cases.len(), 16);
        for case in &cases {
            let name = case["comment"].as_str().unwrap_or("?");
            let result = patched(case["doc"].clone(), case["patch"].clone());
            match (case.get("expected"), result) {
                (Some(expected), Ok(got)) => assert_eq!(&got, expected, "{name}"),
                (Some(_), Err(failure)) => panic!("{name}: failed with {failure:?}"),
                (None, Ok(got)) => panic!("{name}: expected an error, got {got}"),
                (None, Err(_)) => assert!(case.get("error").is_some(), "{name}"),
            }
        }
    }

    #[test]
    fn pointers_escape_and_arrays_append() {
        let document = json!({"a/b": {"m~n": [1, 2]}});
        let got = patched(
            document,
            json!([
                {"op": "add", "path": "/a~1b/m~0n/-", "value": 3},
                {"op": "add", "path": "/a~1b/m~0n/0", "value": 0},
                {"op": "test", "path": "/a~1b/m~0n", "value": [0, 1, 2, 3]}
            ]),
        )
        .unwrap();
        assert_eq!(got, json!({"a/b": {"m~n": [0, 1, 2, 3]}}));
        for bad in ["a", "/~2", "/x~"] {
            assert!(Pointer::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Pointer::parse("/a~1b/m~0n").unwrap().to_string(),
            "/a~1b/m~0n"
        );
    }

    #[test]
    fn indexes_follow_rfc_6901() {
        let document = || json!({"a": [1, 2]});
        for path in ["/a/01", "/a/+1", "/a/-1", "/a/2", "/a/-", "/a/x"] {
            let result = patched(document(), json!([{"op": "remove", "path": path}]));
            assert!(
                matches!(result, Err(Failure::Unapplicable { index: 0, .. })),
                "{path}: {result:?}"
            );
        }
        let appended = patched(
            document(),
            json!([{"op": "add", "path": "/a/2", "value": 3}]),
        );
        assert_eq!(appended.unwrap(), json!({"a": [1, 2, 3]}));
        let beyond = patched(
            document(),
            json!([{"op": "add", "path": "/a/3", "value": 3}]),
        );
        assert!(beyond.is_err());
    }

    #[test]
    fn test_compares_numbers_by_value_and_objects_regardless_of_order() {
        let document: Value = serde_json::from_str(
            r#"{"n": 1.50, "big": 12345678901234567890, "o": {"a": 1, "b": [2.0]}}"#,
        )
        .unwrap();
        let ok = patched(
            document.clone(),
            json!([
                {"op": "test", "path": "/n", "value": 1.5},
                {"op": "test", "path": "/n", "value": 15e-1},
                {"op": "test", "path": "/big", "value": 12345678901234567890u64},
                {"op": "test", "path": "/o", "value": {"b": [2], "a": 1.0}}
            ]),
        );
        assert!(ok.is_ok(), "{ok:?}");
        for (path, value) in [
            ("/n", json!(1.51)),
            ("/n", json!("1.5")),
            ("/big", json!(12345678901234567891u64)),
        ] {
            let failed = patched(
                document.clone(),
                json!([{"op": "test", "path": path, "value": value}]),
            );
            assert!(
                matches!(failed, Err(Failure::Unapplicable { .. })),
                "{path} {value}: {failed:?}"
            );
        }
        assert_eq!(decimal("0.000"), decimal("-0"));
        assert_eq!(decimal("100"), decimal("1e2"));
        assert_eq!(decimal("100"), (false, "1".into(), 2));
    }

    #[test]
    fn move_and_copy_follow_the_rfc_and_copies_are_bounded() {
        let document = json!({"a": {"b": 1}, "c": [1]});
        let inside = patched(
            document.clone(),
            json!([{"op": "move", "from": "/a", "path": "/a/b/c"}]),
        );
        assert!(inside.is_err());
        let same = patched(
            document.clone(),
            json!([{"op": "move", "from": "/a", "path": "/a"}]),
        );
        assert_eq!(same.unwrap(), document);
        let copied = patched(
            document.clone(),
            json!([{"op": "copy", "from": "/a", "path": "/c/-"}]),
        );
        assert_eq!(copied.unwrap(), json!({"a": {"b": 1}, "c": [1, {"b": 1}]}));
        // Each copy of the whole document into itself doubles it: the limit stops it.
        let doubling: Vec<Value> = (0..64)
            .map(|n| json!({"op": "copy", "from": "", "path": format!("/x{n}")}))
            .collect();
        let mut big = document.clone();
        let result = apply(&mut big, &parse(Value::Array(doubling)).unwrap(), 1 << 16);
        assert!(matches!(result, Err(Failure::TooLarge(_))), "{result:?}");
        assert!(serialized_size(&big) < 1 << 18);
    }

    #[test]
    fn malformed_documents_are_told_apart_from_unapplicable_ones() {
        for bad in [
            json!({"op": "add"}),
            json!([{"op": "frobnicate", "path": "/a"}]),
            json!([{"op": "add", "path": "/a"}]),
            json!([{"op": "move", "path": "/a"}]),
            json!([{"path": "/a"}]),
            json!([{"op": "remove", "path": 1}]),
            json!([1]),
        ] {
            assert!(
                matches!(parse(bad.clone()), Err(Failure::Malformed(_))),
                "{bad}"
            );
        }
        let removed_root = patched(json!({}), json!([{"op": "remove", "path": ""}]));
        assert!(matches!(removed_root, Err(Failure::Unapplicable { .. })));
    }

    #[test]
    fn merge_patches_follow_rfc_7396() {
        let mut document = json!({"a": "b", "c": {"d": "e", "f": "g"}, "h": [1]});
        merge(
            &mut document,
            json!({"a": "z", "c": {"f": null, "x": 1}, "h": [2], "n": {"m": null}}),
        );
        assert_eq!(
            document,
            json!({"a": "z", "c": {"d": "e", "x": 1}, "h": [2], "n": {}})
        );
        let keys: Vec<&String> = document.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["a", "c", "h", "n"]);
    }
}
