//! Request bodies parsed as JSON, strictly: a member name given twice in one object is an
//! error (RFC 8259 leaves it to the parser; serde_json keeps the last, so a client and the
//! server could read one body two ways), reported with the name and where it is.
//!
//! The parse builds the `serde_json::Value` itself, in one pass, with serde_json's own parser
//! (and its nesting limit): the only extra work is the lookup that inserting a member costs
//! anyway. Where the duplicate is, is put together only when there is one, as the error
//! unwinds.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::cell::RefCell;
use std::fmt;

/// Why a body is not the JSON fhirlake takes.
#[derive(Debug, PartialEq, Eq)]
pub enum JsonError {
    /// Not JSON at all (serde_json's message).
    Syntax(String),
    /// The member `key` is given twice in the object at `path` (`name[1]`; `""` for the root).
    Duplicate { key: String, path: String },
}

/// Parses `body` as JSON, refusing duplicate member names.
pub fn parse_strict(body: &[u8]) -> Result<Value, JsonError> {
    let duplicate = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed = Strict {
        duplicate: &duplicate,
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value));
    match (parsed, duplicate.into_inner()) {
        (Ok(value), _) => Ok(value),
        (Err(_), Some(found)) => Err(found.into_error()),
        (Err(error), None) => Err(JsonError::Syntax(error.to_string())),
    }
}

/// A duplicate as it unwinds: its key, and the steps from its object up to the root (the
/// innermost first), and the root's `resourceType` once known.
struct Found {
    key: String,
    steps: Vec<Step>,
    root_type: Option<String>,
}

enum Step {
    Member(String),
    Item(usize),
}

impl Found {
    fn into_error(self) -> JsonError {
        let mut path = self.root_type.unwrap_or_default();
        for step in self.steps.iter().rev() {
            match step {
                Step::Member(name) if path.is_empty() => path.push_str(name),
                Step::Member(name) => {
                    path.push('.');
                    path.push_str(name);
                }
                Step::Item(index) => path.push_str(&format!("[{index}]")),
            }
        }
        JsonError::Duplicate {
            key: self.key,
            path,
        }
    }
}

/// The seed (and visitor) of one JSON value; `duplicate` is where a duplicate is told.
#[derive(Clone, Copy)]
struct Strict<'a> {
    duplicate: &'a RefCell<Option<Found>>,
}

impl Strict<'_> {
    /// Adds `step` to the place of a duplicate found below it (none when the error is another).
    fn unwinding(self, step: impl FnOnce() -> Step) {
        if let Some(found) = self.duplicate.borrow_mut().as_mut() {
            found.steps.push(step());
        }
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// serde_json hands a number to a visitor as a one-member map under this name when it keeps
/// numbers as written (`arbitrary_precision`, which fhirlake needs for exact decimals): its
/// text is the member's value. A test below fails should serde_json ever change it.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_string()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        loop {
            match seq.next_element_seed(self) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => return Ok(Value::Array(items)),
                Err(error) => {
                    let index = items.len();
                    self.unwinding(|| Step::Item(index));
                    // An array has no resourceType: if it is the root, the place has none.
                    return Err(self.with_root_type(&Map::new(), error));
                }
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if members.is_empty() && key == NUMBER_TOKEN {
                let text: String = map.next_value()?;
                return text
                    .parse::<Number>()
                    .map(Value::Number)
                    .map_err(de::Error::custom);
            }
            let value = match map.next_value_seed(self) {
                Ok(value) => value,
                Err(error) => {
                    self.unwinding(|| Step::Member(key));
                    return Err(self.with_root_type(&members, error));
                }
            };
            match members.entry(key) {
                serde_json::map::Entry::Vacant(vacant) => {
                    vacant.insert(value);
                }
                serde_json::map::Entry::Occupied(occupied) => {
                    let key = occupied.key().clone();
                    *self.duplicate.borrow_mut() = Some(Found {
                        key: key.clone(),
                        steps: vec![Step::Member(key.clone())],
                        root_type: None,
                    });
                    let error = de::Error::custom(format!("duplicate member '{key}'"));
                    return Err(self.with_root_type(&members, error));
                }
            }
        }
        Ok(Value::Object(members))
    }
}

impl Strict<'_> {
    /// Notes the `resourceType` of the object being read (`members` so far) for the place of a
    /// duplicate inside it: as the error unwinds, the last object to note it is the root.
    fn with_root_type<E>(self, members: &Map<String, Value>, error: E) -> E {
        if let Some(found) = self.duplicate.borrow_mut().as_mut() {
            found.root_type = members
                .get("resourceType")
                .and_then(Value::as_str)
                .map(String::from);
        }
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn duplicate(body: &str) -> (String, String) {
        match parse_strict(body.as_bytes()) {
            Err(JsonError::Duplicate { key, path }) => (key, path),
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn a_member_given_twice_is_refused_with_its_place() {
        assert_eq!(
            duplicate(r#"{"resourceType":"Patient","gender":"male","gender":"female"}"#),
            ("gender".into(), "Patient.gender".into())
        );
        assert_eq!(
            duplicate(
                r#"{"resourceType":"Patient","name":[{"family":"a"},{"family":"b","family":"c"}]}"#
            ),
            ("family".into(), "Patient.name[1].family".into())
        );
        assert_eq!(duplicate(r#"{"a":1,"a":1}"#), ("a".into(), "a".into()));
        assert_eq!(
            duplicate(
                r#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","id":"a","id":"b"}}]}"#
            ),
            ("id".into(), "Bundle.entry[0].resource.id".into())
        );
        // Escaped names are compared as they read.
        assert_eq!(
            duplicate(r#"{"resourceType":"Patient","a":1,"\u0061":2}"#),
            ("a".into(), "Patient.a".into())
        );
    }

    #[test]
    fn what_is_no_duplicate_parses_as_serde_json_does() {
        for body in [
            r#"{"resourceType":"Patient","name":[{"family":"a"},{"family":"b"}],"n":[1.50,-0,1e400,12345678901234567890123,true,null,"x"]}"#,
            r#"[{"a":{"a":{"a":1}}},{"a":2}]"#,
            r#""text""#,
            r#"{}"#,
        ] {
            let expected: Value = serde_json::from_str(body).unwrap();
            let parsed = parse_strict(body.as_bytes()).unwrap();
            assert_eq!(parsed, expected, "{body}");
            // Numbers keep the text they were written with (exact decimals).
            assert_eq!(parsed.to_string(), expected.to_string());
        }
        assert_eq!(
            parse_strict(b"{\"value\":1.50}").unwrap().to_string(),
            "{\"value\":1.50}"
        );
    }

    #[test]
    fn what_is_not_json_is_a_syntax_error() {
        for body in ["{", "{\"a\":1}x", "", "{\"a\":}", "[1,]"] {
            assert!(
                matches!(parse_strict(body.as_bytes()), Err(JsonError::Syntax(_))),
                "{body}"
            );
        }
        // The nesting limit of serde_json holds.
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert!(matches!(
            parse_strict(deep.as_bytes()),
            Err(JsonError::Syntax(_))
        ));
    }

    proptest! {
        #[test]
        fn any_json_without_duplicates_parses_to_the_same_value(
            value in proptest::collection::vec(("[a-c]{1,2}", any::<i32>()), 0..8)
        ) {
            let object: Map<String, Value> =
                value.into_iter().map(|(k, v)| (k, Value::from(v))).collect();
            let text = Value::Object(object).to_string();
            prop_assert_eq!(
                parse_strict(text.as_bytes()).unwrap(),
                serde_json::from_str::<Value>(&text).unwrap()
            );
        }
    }
}
