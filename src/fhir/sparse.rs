//! A stored resource parsed with only some of its top-level members: the others are read past
//! by serde_json without being built. For judgements that read a few elements of many large
//! resources (a Patient export judges every resource by its compartment references), where
//! building the whole `Value` would be most of the work.
//!
//! Invariant: the members kept are exactly those of a full parse (same values, same order);
//! a body that is not a JSON object is an error, as for a full parse.

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;

/// Parses the JSON object `body`, keeping the members whose names `keep` accepts.
pub fn parse_members(body: &[u8], keep: &dyn Fn(&str) -> bool) -> serde_json::Result<Value> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = Members { keep }.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

struct Members<'k> {
    keep: &'k dyn Fn(&str) -> bool,
}

impl<'de> DeserializeSeed<'de> for Members<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Members<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(Name(name)) = map.next_key::<Name>()? {
            if (self.keep)(&name) {
                members.insert(name.into_owned(), map.next_value::<Value>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Value::Object(members))
    }
}

/// A member name, borrowed from the body when it has no escapes.
struct Name<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl<'de> Visitor<'de> for NameVisitor {
            type Value = Name<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name")
            }

            fn visit_borrowed_str<E: de::Error>(self, name: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(name)))
            }

            fn visit_str<E: de::Error>(self, name: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(name.to_string())))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kept_members_are_those_of_a_full_parse() {
        let body = br#"{"resourceType":"Observation","id":"o","text":{"div":"<div>\"x\"</div>"},
            "subject":{"reference":"Patient/p"},"valu\u0065Quantity":{"value":1},
            "component":[{"code":{"text":"a"}},{"code":{"text":"b"}}]}"#;
        let keep = |name: &str| name != "text" && name != "component";
        let parsed = parse_members(body, &keep).unwrap();
        assert_eq!(
            parsed,
            json!({"resourceType": "Observation", "id": "o",
                   "subject": {"reference": "Patient/p"}, "valueQuantity": {"value": 1}})
        );
        let full: Value = serde_json::from_slice(body).unwrap();
        let everything = parse_members(body, &|_| true).unwrap();
        assert_eq!(everything, full);
        let order: Vec<&String> = everything.as_object().unwrap().keys().collect();
        assert_eq!(order, full.as_object().unwrap().keys().collect::<Vec<_>>());
    }

    #[test]
    fn what_is_not_an_object_is_an_error() {
        for body in [
            &b"[1]"[..],
            b"{\"a\":",
            b"{\"a\":1} x",
            b"\"s\"",
            b"{\"a\":[}",
        ] {
            assert!(parse_members(body, &|_| false).is_err(), "{body:?}");
        }
    }
}
