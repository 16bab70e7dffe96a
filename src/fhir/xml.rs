//! FHIR XML bodies (`application/fhir+xml`): converted to the JSON form on the way in, so
//! that an XML write takes exactly the JSON path (checks, validation, storage: the store keeps
//! JSON), and from it on the way out. The model crate does the conversions; its documentation
//! says what XML is refused (DOCTYPEs and entities among it) and how narratives are kept.

use super::{FhirError, IssueCode};
use serde_json::Value;

/// The JSON form of the FHIR XML request body `xml`; 400 when it is not FHIR XML.
pub fn to_json(xml: &[u8]) -> Result<Vec<u8>, FhirError> {
    let value = fhirlake_model::xml_to_json(xml).map_err(|message| {
        FhirError::bad_request(
            IssueCode::Structure,
            format!("the body is not valid FHIR XML: {message}"),
        )
    })?;
    serde_json::to_vec(&value).map_err(|e| FhirError::internal(e.to_string()))
}

/// The FHIR XML form of the JSON response body `json` (a resource, a Bundle, an
/// OperationOutcome). A body that is not a resource is a server defect: 500.
pub fn from_json(json: &[u8]) -> Result<Vec<u8>, FhirError> {
    let value: Value = serde_json::from_slice(json)
        .map_err(|e| FhirError::internal(format!("a response is not JSON: {e}")))?;
    fhirlake_model::json_to_xml(value)
        .map_err(|message| FhirError::internal(format!("a response cannot be XML: {message}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::test_data::examples;

    /// The official examples, written as XML and read back, are what they were: the first 12
    /// of each resource type in the package (623 of its 5,306 resources, of 140 types; all
    /// 5,306 pass too, but take three minutes of a debug build).
    #[test]
    fn the_official_examples_round_trip_through_xml() {
        let mut per_type = std::collections::HashMap::new();
        let chosen: Vec<Value> = examples()
            .into_iter()
            .filter(|example| {
                let seen = per_type
                    .entry(example["resourceType"].as_str().unwrap_or("").to_string())
                    .or_insert(0);
                *seen += 1;
                *seen <= 12
            })
            .collect();
        assert!(per_type.len() >= 140, "{}", per_type.len());
        let mut failing = Vec::new();
        for example in &chosen {
            let json = serde_json::to_vec(example).unwrap();
            let back = from_json(&json).and_then(|xml| to_json(&xml));
            let back = back.and_then(|b| {
                serde_json::from_slice::<Value>(&b).map_err(|e| FhirError::internal(e.to_string()))
            });
            let difference = match &back {
                Ok(back) => first_difference(example, back, ""),
                Err(error) => Some(error.to_string()),
            };
            if let Some(difference) = difference {
                failing.push(format!(
                    "{}/{}: {difference}",
                    example["resourceType"].as_str().unwrap_or(""),
                    example["id"].as_str().unwrap_or("")
                ));
            }
        }
        assert!(failing.is_empty(), "{} differ: {failing:?}", failing.len());
    }

    /// Where `a` and `b` first differ, with both values there.
    fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => x
                .iter()
                .find_map(|(key, value)| match y.get(key) {
                    Some(other) => first_difference(value, other, &format!("{path}.{key}")),
                    None => Some(format!("{path}.{key} lost")),
                })
                .or_else(|| {
                    y.keys()
                        .find(|key| !x.contains_key(*key))
                        .map(|key| format!("{path}.{key} added"))
                }),
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
                .iter()
                .zip(y)
                .enumerate()
                .find_map(|(n, (a, b))| first_difference(a, b, &format!("{path}[{n}]"))),
            (a, b) if a == b => None,
            (a, b) => Some(format!("{path}: {a} became {b}")),
        }
    }

    #[test]
    fn malformed_xml_is_a_structure_error() {
        let error = to_json(b"<Patient xmlns=\"http://hl7.org/fhir\">").unwrap_err();
        assert_eq!((error.status, error.code), (400, IssueCode::Structure));
    }
}
