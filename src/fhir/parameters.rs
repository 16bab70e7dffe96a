//! Reading the `Parameters` of an operation's POST body.

use super::outcome::{FhirError, IssueCode};
use serde_json::Value;
use std::fmt::Display;

/// A 400 `invalid` about the parameter (or element) `name`.
pub fn invalid(name: &str, why: impl Display) -> FhirError {
    FhirError::bad_request(IssueCode::Invalid, format!("{name}: {why}"))
}

/// The parameters of the `Parameters` body of `operation` (`$run`), each with its location
/// (`Parameters.parameter[n]`) and name: 400 for a body of another resource type, or a
/// parameter without a name.
pub fn named<'a>(
    body: &'a Value,
    operation: &str,
) -> Result<Vec<(String, &'a str, &'a Value)>, FhirError> {
    if body["resourceType"] != "Parameters" {
        return Err(FhirError::bad_request(
            IssueCode::Invalid,
            format!("the body of {operation} is a Parameters resource"),
        ));
    }
    let mut named = Vec::new();
    for (n, parameter) in body["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = format!("Parameters.parameter[{n}]");
        let name = parameter["name"]
            .as_str()
            .ok_or_else(|| invalid(&at, "a parameter needs a name"))?;
        named.push((at, name, parameter));
    }
    Ok(named)
}

/// The value of a `Parameters.parameter` as text: its `value[x]` when a string, boolean or
/// number; a Reference's `reference` or a Coding's `code` when an object; `None` when it has no
/// such value (a `resource`, `part`s, or nothing). The one reading of parameter values that the
/// operations (`$export`, `$import`, `$run`) share.
pub fn value_text(parameter: &Value) -> Option<String> {
    let (_, value) = parameter
        .as_object()?
        .iter()
        .find(|(key, _)| key.starts_with("value"))?;
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Bool(_) | Value::Number(_) => Some(value.to_string()),
        Value::Object(object) => object
            .get("reference")
            .or_else(|| object.get("code"))
            .and_then(Value::as_str)
            .map(String::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_read_as_text() {
        for (parameter, text) in [
            (json!({"name": "a", "valueString": "x"}), Some("x")),
            (json!({"name": "a", "valueBoolean": true}), Some("true")),
            (json!({"name": "a", "valueInteger": 3}), Some("3")),
            (
                json!({"name": "a", "valueReference": {"reference": "Patient/p"}}),
                Some("Patient/p"),
            ),
            (
                json!({"name": "a", "valueCoding": {"code": "c"}}),
                Some("c"),
            ),
            (json!({"name": "a", "resource": {}}), None),
            (json!({"name": "a", "valueCoding": {"display": "d"}}), None),
            (json!("not a parameter"), None),
        ] {
            assert_eq!(value_text(&parameter).as_deref(), text, "{parameter}");
        }
    }
}
