//! Empty elements: `null`, `""`, `[]` and `{}`, which FHIR JSON forbids and real-world input
//! carries (a data generator's `"meta": {}` on every Patient). [`drop_empty`] takes them out
//! and says where they were, so that a write can store the rest and report what went.

use crate::shape::{item, member_path, root_path};
use serde_json::{Map, Value};

/// Drops every empty element of `resource`, a JSON object, and returns where each was, by the
/// FHIRPath-style location of the outermost element that went (`Patient.meta`, not also
/// `Patient.meta.tag`), in document order; contained and Bundle-entry resources are located as
/// [`crate::check_resource`] locates them (`Bundle.entry[0].resource.ofType(Patient).meta`).
///
/// An element is empty when it is `null`, `""`, `[]` or `{}`, or becomes `[]` or `{}` once its
/// own empty elements are dropped. A primitive array and its `_name` partner stay aligned: a
/// position goes from both when both are empty there, and when one side only is empty, that
/// side keeps `null` in its place (`null` is how FHIR JSON says "no value here").
///
/// Invariant: afterwards [`crate::check_resource`] finds nothing empty (the root itself is
/// never dropped), and a resource without empty elements is left untouched (and costs one
/// read-only walk).
pub fn drop_empty(resource: &mut Value) -> Vec<String> {
    let mut dropped = Vec::new();
    if !has_empty(resource) {
        return dropped;
    }
    let path = root_path(resource);
    if let Value::Object(members) = resource {
        clean_members(members, &path, &mut dropped);
    }
    dropped
}

/// Whether anything inside `value` (not `value` itself) is empty.
fn has_empty(value: &Value) -> bool {
    match value {
        Value::Object(members) => members.values().any(|v| is_empty(v) || has_empty(v)),
        // `null` inside an array may be a placeholder aligned with a partner: looked at by
        // [`clean_members`], which then decides.
        Value::Array(items) => items.iter().any(|v| is_empty(v) || has_empty(v)),
        _ => false,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(text) => text.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(members) => members.is_empty(),
        Value::Bool(_) | Value::Number(_) => false,
    }
}

/// Cleans `value` (at `path`), recording what goes inside it in `dropped`; returns whether
/// `value` is empty now, in which case nothing inside it is recorded: the caller records
/// `value` itself.
fn clean(value: &mut Value, path: &str, dropped: &mut Vec<String>) -> bool {
    match value {
        Value::Object(members) => {
            let path = match members.get("resourceType").and_then(Value::as_str) {
                Some(name) => format!("{path}.ofType({name})"),
                None => path.to_string(),
            };
            clean_members(members, &path, dropped)
        }
        Value::Array(items) => {
            let mut inside = Vec::new();
            let mut index = 0;
            items.retain_mut(|entry| {
                let at = item(path, index);
                index += 1;
                let mut own = Vec::new();
                if clean(entry, &at, &mut own) {
                    inside.push(at);
                    false
                } else {
                    inside.append(&mut own);
                    true
                }
            });
            if items.is_empty() {
                return true;
            }
            dropped.append(&mut inside);
            false
        }
        other => is_empty(other),
    }
}

/// Cleans the members of an object at `path`; returns whether none is left.
fn clean_members(members: &mut Map<String, Value>, path: &str, dropped: &mut Vec<String>) -> bool {
    let both_arrays = |members: &Map<String, Value>, key: &str, partner: &str| {
        matches!(
            (members.get(key), members.get(partner)),
            (Some(Value::Array(_)), Some(Value::Array(_)))
        )
    };
    let keys: Vec<String> = members.keys().cloned().collect();
    let mut aligned: Vec<&str> = Vec::new();
    for key in &keys {
        // A partner is cleaned with its primitive array.
        if let Some(base) = key.strip_prefix('_')
            && (aligned.contains(&base) || both_arrays(members, base, key))
        {
            continue;
        }
        let partner = format!("_{key}");
        if both_arrays(members, key, &partner) {
            clean_aligned(members, key, &partner, path, dropped);
            aligned.push(key);
            continue;
        }
        let Some(value) = members.get_mut(key) else {
            continue;
        };
        let at = member_path(path, key);
        let mut inside = Vec::new();
        if clean(value, &at, &mut inside) {
            members.shift_remove(key);
            dropped.push(at);
        } else {
            dropped.append(&mut inside);
        }
    }
    members.is_empty()
}

/// Cleans the primitive array `key` and its partner `_key` (both arrays) position by position.
fn clean_aligned(
    members: &mut Map<String, Value>,
    key: &str,
    partner: &str,
    path: &str,
    dropped: &mut Vec<String>,
) {
    let at = member_path(path, key);
    let (Some(Value::Array(values)), Some(Value::Array(partners))) =
        (members.shift_remove(key), members.shift_remove(partner))
    else {
        unreachable!("both are arrays")
    };
    let mut inside = Vec::new();
    let mut kept = (Vec::new(), Vec::new());
    if values.len() != partners.len() {
        // Not aligned to begin with: each cleaned on its own, and the model says what is wrong.
        for (name, mut array) in [
            (key, Value::Array(values)),
            (partner, Value::Array(partners)),
        ] {
            if clean(&mut array, &at, &mut inside) {
                inside.push(at.clone());
            } else {
                members.insert(name.to_string(), array);
            }
        }
        dropped.append(&mut inside);
        return;
    }
    for (index, (mut value, mut extensions)) in values.into_iter().zip(partners).enumerate() {
        let here = item(&at, index);
        let was_null = (value.is_null(), extensions.is_null());
        let mut own = Vec::new();
        let no_value = clean(&mut value, &here, &mut own);
        let no_extensions = clean(&mut extensions, &here, &mut own);
        match (no_value, no_extensions) {
            (true, true) => inside.push(here),
            (no_value, no_extensions) => {
                // A side that is empty here keeps `null`; it is reported unless it was `null`.
                if (no_value && !was_null.0) || (no_extensions && !was_null.1) {
                    own.push(here);
                }
                inside.append(&mut own);
                kept.0.push(if no_value { Value::Null } else { value });
                kept.1.push(if no_extensions {
                    Value::Null
                } else {
                    extensions
                });
            }
        }
    }
    if kept.0.is_empty() {
        dropped.push(at);
        return;
    }
    dropped.append(&mut inside);
    // A side that is `null` everywhere says nothing: it goes (not reported, nothing is lost).
    for (name, side) in [(key, kept.0), (partner, kept.1)] {
        if !side.iter().all(Value::is_null) {
            members.insert(name.to_string(), Value::Array(side));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dropped(mut value: Value) -> (Value, Vec<String>) {
        let paths = drop_empty(&mut value);
        (value, paths)
    }

    #[test]
    fn empty_elements_go_and_are_reported_outermost_first() {
        let (value, paths) = dropped(json!({"resourceType": "Patient", "meta": {},
            "name": [{"family": "Lux", "given": ["", "Marie"], "prefix": []}, {"text": null}],
            "telecom": [], "address": [{}], "gender": null, "active": false, "birthDate": "",
            "identifier": [{"value": "1", "type": {"coding": [null, {}]}}]}));
        assert_eq!(
            value,
            json!({"resourceType": "Patient", "active": false,
                "name": [{"family": "Lux", "given": ["Marie"]}],
                "identifier": [{"value": "1"}]})
        );
        assert_eq!(
            paths,
            [
                "Patient.meta",
                "Patient.name[0].given[0]",
                "Patient.name[0].prefix",
                "Patient.name[1]",
                "Patient.telecom",
                "Patient.address",
                "Patient.gender",
                "Patient.birthDate",
                "Patient.identifier[0].type",
            ]
        );
        crate::shape::check_no_empty(&value).unwrap();
    }

    #[test]
    fn a_clean_resource_is_left_as_it_is() {
        let input = json!({"resourceType": "Patient", "name": [{"given": ["a", null]}],
            "_birthDate": {"extension": [{"url": "x", "valueCode": "unknown"}]}});
        let mut value = input.clone();
        // The null aligned with nothing is empty; nothing else is.
        assert_eq!(drop_empty(&mut value), ["Patient.name[0].given[1]"]);
        let mut clean = json!({"resourceType": "Patient", "name": [{"given": ["a", "b"],
            "_given": [null, {"extension": [{"url": "x", "valueCode": "y"}]}]}]});
        let before = clean.clone();
        assert!(drop_empty(&mut clean).is_empty());
        assert_eq!(clean, before);
    }

    #[test]
    fn primitive_arrays_stay_aligned_with_their_extensions() {
        let absent = json!({"extension": [{"url": "x", "valueCode": "unknown"}]});
        let (value, paths) = dropped(json!({"resourceType": "Patient", "name": [{
            "given": ["", "Marie", null, "Ada"], "_given": [absent, null, null, {}]}]}));
        assert_eq!(value["name"][0]["given"], json!([null, "Marie", "Ada"]));
        assert_eq!(value["name"][0]["_given"], json!([absent, null, null]));
        assert_eq!(
            paths,
            [
                "Patient.name[0].given[0]",
                "Patient.name[0].given[2]",
                "Patient.name[0].given[3]"
            ]
        );
        // Extensions that all go leave the values alone; values that all go, the extensions.
        let (value, _) = dropped(json!({"resourceType": "Patient", "name": [{
            "given": ["a", "b"], "_given": [{}, null]}]}));
        assert_eq!(value["name"][0], json!({"given": ["a", "b"]}));
        let (value, _) = dropped(json!({"resourceType": "Patient", "name": [{
            "given": ["", null], "_given": [absent, absent]}]}));
        assert_eq!(value["name"][0], json!({"_given": [absent, absent]}));
        let (value, paths) = dropped(json!({"resourceType": "Patient", "name": [{
            "family": "x", "given": ["", null], "_given": [null, {}]}]}));
        assert_eq!(value["name"][0], json!({"family": "x"}));
        assert_eq!(paths, ["Patient.name[0].given"]);
    }

    #[test]
    fn nested_resources_are_located_by_their_type() {
        let (value, paths) = dropped(json!({"resourceType": "Bundle", "type": "transaction",
            "entry": [{"resource": {"resourceType": "Patient", "meta": {}},
                "request": {"method": "POST", "url": "Patient", "ifNoneExist": ""}}]}));
        assert_eq!(
            paths,
            [
                "Bundle.entry[0].resource.ofType(Patient).meta",
                "Bundle.entry[0].request.ifNoneExist"
            ]
        );
        assert_eq!(
            value["entry"][0]["resource"],
            json!({"resourceType": "Patient"})
        );
    }
}
