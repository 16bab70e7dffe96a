//! Resources as they enter and leave the store: checking a request body, ids, and the
//! server-set `id` and `meta` of a stored version.
//!
//! A version is stored as the exact JSON that is served: a write parses its body once, and
//! reads send the stored bytes (Bundles embed them, see [`super::bundle`]). The exceptions are
//! `_summary`/`_elements` ([`super::summary`]) and XML answers (`api/format.rs`).

use super::datetime::{Micros, format_instant};
use super::json::{JsonError, parse_strict};
use super::outcome::{FhirError, IssueCode};
use fhirlake_model::{ProblemKind, check_resource, drop_empty};
use serde_json::{Map, Value};

/// Is `id` a valid FHIR logical id: 1 to 64 of `A-Z a-z 0-9 - .`, but not `.` or `..`? Those
/// two match FHIR's pattern, but as a path segment they mean "here" and "up" (`Patient/..` is
/// the base), so no URL could name such a resource.
pub fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && id != "."
        && id != ".."
}

/// Checks that `id` is a valid logical id, or answers 400.
pub fn check_id(id: &str) -> Result<(), FhirError> {
    if is_valid_id(id) {
        Ok(())
    } else {
        Err(FhirError::bad_request(
            IssueCode::Value,
            format!(
                "'{id}' is not a valid resource id: use 1 to 64 of A-Z, a-z, 0-9, '-' and '.' \
                 (but not '.' or '..')"
            ),
        ))
    }
}

/// The one type fhirlake stores that R4 does not have: SQL on FHIR v2's ViewDefinition. The
/// typed R4 model does not know it; its structure is checked by `views::View::parse` (in
/// `Validator::check_write`, every write's path) instead.
pub const VIEW_DEFINITION: &str = "ViewDefinition";

/// Whether the server stores resources of type `name`: the R4 types and [`VIEW_DEFINITION`].
pub fn is_served_type(name: &str) -> bool {
    fhirlake_model::is_resource_type(name) || name == VIEW_DEFINITION
}

/// Is `name` a type the server stores ([`is_served_type`])? Answers 404 when it is not, as
/// for an unknown path.
pub fn check_type(name: &str) -> Result<(), FhirError> {
    if is_served_type(name) {
        Ok(())
    } else {
        Err(FhirError::not_found(format!(
            "'{name}' is not a FHIR R4 resource type"
        )))
    }
}

/// Parses a version ETag, `W/"3"`, `"3"` or `3` (`If-Match`, `ifMatch`), to a version id.
pub fn parse_etag(text: &str) -> Option<u64> {
    let text = text.trim();
    let text = text.strip_prefix("W/").unwrap_or(text);
    text.trim_matches('"').parse().ok()
}

/// Parses a request body as JSON, or answers 400: every JSON body a client sends is read
/// here (resources, Bundles, Parameters), and a member name given twice in one object is
/// refused, named with its place ([`super::json`]).
pub fn parse_json(body: &[u8]) -> Result<Value, FhirError> {
    parse_strict(body).map_err(|error| match error {
        JsonError::Syntax(message) => FhirError::bad_request(
            IssueCode::Structure,
            format!("the body is not valid JSON: {message}"),
        ),
        JsonError::Duplicate { key, path } => {
            let place = match path.rsplit_once('.') {
                Some((object, _)) => format!("in {object}"),
                None if path.contains('[') => format!("in {path}"),
                None => "at the top level".to_string(),
            };
            FhirError::bad_request(
                IssueCode::Structure,
                format!(
                    "the member '{key}' is given twice {place}: a JSON object must not repeat a \
                     name"
                ),
            )
            .at(path)
        }
    })
}

/// A resource as a write takes it in: checked by the typed R4 model, in canonical member
/// order, and without the empty elements the client sent, whose locations are in `dropped`
/// (for the validation policy to judge: they are never stored).
#[derive(Debug)]
pub struct Intake {
    pub resource: Value,
    pub dropped: Vec<String>,
}

/// Parses a request body as a resource of type `expected` (when given) and takes it in
/// ([`check_value`]).
pub fn parse_resource(body: &[u8], expected: Option<&str>) -> Result<Intake, FhirError> {
    check_value(parse_json(body)?, expected)
}

/// Takes in a resource that is already a JSON value (a body, a Bundle entry): its type is
/// `expected` (when given), its empty elements are dropped, and the rest must be what the typed
/// R4 model takes, with a valid id; or 400.
pub fn check_value(mut value: Value, expected: Option<&str>) -> Result<Intake, FhirError> {
    if let (Some(expected), Some(found)) =
        (expected, value.get("resourceType").and_then(Value::as_str))
        && found != expected
    {
        return Err(FhirError::bad_request(
            IssueCode::Invalid,
            format!("the resource is a {found}, but this URL takes a {expected}"),
        )
        .at(format!("{found}.resourceType")));
    }
    let dropped = drop_empty(&mut value);
    let view = value.get("resourceType").and_then(Value::as_str) == Some(VIEW_DEFINITION);
    let checked = match view {
        // Not an R4 type: its structure is the validator's to check (see VIEW_DEFINITION).
        true if value.is_object() => Ok(value),
        _ => check_resource(&value),
    };
    let canonical = checked.map_err(|problem| {
        let code = match problem.kind {
            ProblemKind::ResourceType => IssueCode::Invalid,
            ProblemKind::Structure => IssueCode::Structure,
        };
        FhirError::bad_request(code, problem.to_string()).at(problem.path)
    })?;
    if let Some(id) = canonical.get("id").and_then(Value::as_str)
        && !is_valid_id(id)
    {
        let kind = canonical["resourceType"].as_str().unwrap_or("Resource");
        return Err(check_id(id).unwrap_err().at(format!("{kind}.id")));
    }
    Ok(Intake {
        resource: canonical,
        dropped,
    })
}

/// The `id` element of a resource, if it has one.
pub fn id_of(resource: &Value) -> Option<&str> {
    resource.get("id").and_then(Value::as_str)
}

/// Sets the server-owned elements of a version, `id`, `meta.versionId` and `meta.lastUpdated`,
/// keeping the rest of `meta` (profiles, tags, security labels, source) as the client sent it,
/// and returns the stored JSON. `resourceType`, `id` and `meta` come first.
pub fn stamp(resource: Value, id: &str, version: u64, last_updated: Micros) -> Vec<u8> {
    let Value::Object(members) = resource else {
        unreachable!("a checked resource is an object")
    };
    let mut stamped = Map::with_capacity(members.len() + 2);
    let mut meta = Map::new();
    let mut rest = Vec::with_capacity(members.len());
    for (key, value) in members {
        match (key.as_str(), value) {
            ("resourceType", value) => {
                stamped.insert(key, value);
            }
            ("id", _) => {}
            ("meta", Value::Object(m)) => meta = m,
            (_, value) => rest.push((key, value)),
        }
    }
    stamped.insert("id".into(), Value::String(id.into()));
    meta.insert("versionId".into(), Value::String(version.to_string()));
    meta.insert(
        "lastUpdated".into(),
        Value::String(format_instant(last_updated)),
    );
    stamped.insert("meta".into(), Value::Object(meta));
    stamped.extend(rest);
    serde_json::to_vec(&Value::Object(stamped)).expect("a JSON value serializes")
}

/// Do two versions of a resource say the same thing? Equal as JSON values (member order does
/// not count; numbers compare as written, since a decimal's precision is part of its value), but
/// for `meta.versionId` and `meta.lastUpdated`, which the server sets on every version.
pub fn same_content(a: &Value, b: &Value) -> bool {
    let (Value::Object(a), Value::Object(b)) = (a, b) else {
        return a == b;
    };
    let members =
        |object: &Map<String, Value>| object.iter().filter(|(name, _)| *name != "meta").count();
    let meta = |object: &Map<String, Value>| -> Map<String, Value> {
        object
            .get("meta")
            .and_then(Value::as_object)
            .map(|meta| {
                meta.iter()
                    .filter(|(name, _)| !matches!(name.as_str(), "versionId" | "lastUpdated"))
                    .map(|(name, value)| (name.clone(), value.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    members(a) == members(b)
        && a.iter()
            .filter(|(name, _)| *name != "meta")
            .all(|(name, value)| b.get(name) == Some(value))
        && meta(a) == meta(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn same_content_ignores_member_order_and_the_server_meta() {
        let stored: Value = serde_json::from_str(
            r#"{"resourceType": "Observation", "id": "o", "meta": {"versionId": "3",
                "lastUpdated": "2024-01-01T00:00:00.000000Z", "tag": [{"code": "t"}]},
                "status": "final", "valueQuantity": {"value": 1.50, "unit": "mg"}}"#,
        )
        .unwrap();
        let sent: Value = serde_json::from_str(
            r#"{"valueQuantity": {"unit": "mg", "value": 1.50}, "status": "final",
                "meta": {"tag": [{"code": "t"}], "versionId": "1"},
                "id": "o", "resourceType": "Observation"}"#,
        )
        .unwrap();
        assert!(same_content(&stored, &sent));
        let mut other = sent.clone();
        other["valueQuantity"]["value"] = serde_json::from_str("1.5").unwrap();
        assert!(
            !same_content(&stored, &other),
            "a decimal's precision counts"
        );
        let mut untagged = sent.clone();
        untagged.as_object_mut().unwrap().remove("meta");
        assert!(!same_content(&stored, &untagged), "meta.tag counts");
        let bare = json!({"resourceType": "Patient", "id": "p", "active": true});
        let stamped = json!({"resourceType": "Patient", "id": "p", "active": true,
                             "meta": {"versionId": "1", "lastUpdated": "x"}});
        assert!(same_content(&stamped, &bare));
        assert!(!same_content(
            &stamped,
            &json!({"resourceType": "Patient", "id": "p"})
        ));
        let names = |given: Value| json!({"resourceType": "Patient", "name": [{"given": given}]});
        assert!(!same_content(
            &names(json!(["a", "b"])),
            &names(json!(["b", "a"]))
        ));
    }

    #[test]
    fn ids_follow_the_fhir_id_rule() {
        assert!(is_valid_id("a"));
        assert!(is_valid_id("069176529-fd1f-3b3f.abce"));
        assert!(is_valid_id(&"x".repeat(64)));
        assert!(!is_valid_id(&"x".repeat(65)));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("a_b"));
        assert!(!is_valid_id("a/b"));
        assert!(!is_valid_id("ä"));
        assert!(!is_valid_id("."));
        assert!(!is_valid_id(".."));
        assert!(is_valid_id("..."));
        assert!(is_valid_id(".a"));
    }

    #[test]
    fn stamp_sets_server_elements_and_keeps_the_clients_meta() {
        let resource = json!({
            "resourceType": "Patient",
            "active": true,
            "id": "old",
            "meta": {"versionId": "99", "profile": ["http://example.org/p"]}
        });
        let stored: Value = serde_json::from_slice(&stamp(resource, "p1", 3, 0)).unwrap();
        assert_eq!(stored["id"], "p1");
        assert_eq!(stored["meta"]["versionId"], "3");
        assert_eq!(stored["meta"]["lastUpdated"], "1970-01-01T00:00:00.000000Z");
        assert_eq!(stored["meta"]["profile"][0], "http://example.org/p");
        assert_eq!(stored["active"], true);
        let keys: Vec<&String> = stored.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["resourceType", "id", "meta", "active"]);
    }

    #[test]
    fn a_body_of_another_type_is_refused_with_its_path() {
        let error =
            parse_resource(br#"{"resourceType":"Observation"}"#, Some("Patient")).unwrap_err();
        assert_eq!(error.status, 400);
        assert_eq!(
            error.expression.as_deref(),
            Some("Observation.resourceType")
        );
        let error = parse_resource(br#"{"resourceType":"Patient","id":"a_b"}"#, None).unwrap_err();
        assert_eq!(error.expression.as_deref(), Some("Patient.id"));
        assert_eq!(parse_resource(b"{", None).unwrap_err().status, 400);
    }

    #[test]
    fn empty_elements_are_taken_out_and_told() {
        let intake = parse_resource(
            br#"{"resourceType":"Patient","meta":{},"name":[{"family":"Lux","given":[""]}]}"#,
            Some("Patient"),
        )
        .unwrap();
        assert_eq!(
            intake.resource,
            json!({"resourceType": "Patient", "name": [{"family": "Lux"}]})
        );
        assert_eq!(intake.dropped, ["Patient.meta", "Patient.name[0].given"]);
        // A resource that is nothing but empty elements is no resource.
        let error = parse_resource(br#"{"resourceType":"","meta":{}}"#, None).unwrap_err();
        assert_eq!(error.status, 400);
    }

    #[test]
    fn a_duplicate_member_is_refused_with_its_place() {
        let error =
            parse_json(br#"{"resourceType":"Patient","gender":"male","gender":"x"}"#).unwrap_err();
        assert_eq!(error.status, 400);
        assert_eq!(error.expression.as_deref(), Some("Patient.gender"));
        assert!(
            error
                .diagnostics
                .contains("'gender' is given twice in Patient"),
            "{}",
            error.diagnostics
        );
        let error = parse_json(br#"{"a":1,"a":2}"#).unwrap_err();
        assert!(
            error.diagnostics.contains("at the top level"),
            "{}",
            error.diagnostics
        );
    }

    proptest! {
        #[test]
        fn generated_valid_ids_pass_and_any_other_byte_fails(
            id in "[A-Za-z0-9.-]{1,64}".prop_filter("dot segments", |id| id != "." && id != ".."),
            bad in "[^A-Za-z0-9.-]",
        ) {
            prop_assert!(is_valid_id(&id));
            let with_bad = format!("{}{}", &id[..id.len().min(63)], bad);
            prop_assert!(!is_valid_id(&with_bad));
        }
    }
}
