//! Reading references: `Patient/1`, `http://example.org/fhir/Patient/1`,
//! `Patient/1/_history/2`, with or without a query or fragment.

/// The `Type/id` a reference ends with, as a slice of it; None for `urn:`, `#contained` and
/// anything whose second-to-last segment is not an R4 resource type.
pub fn local(reference: &str) -> Option<&str> {
    let path = reference.split(['?', '#']).next()?;
    let path = path.split("/_history/").next()?;
    let mut segments = path.rsplitn(3, '/');
    let id = segments.next()?;
    let resource_type = segments.next()?;
    let start = path.len() - id.len() - resource_type.len() - 1;
    (!id.is_empty() && fhirlake_model::is_resource_type(resource_type)).then(|| &path[start..])
}

/// The resource type a reference names.
pub fn resource_type(reference: &str) -> Option<&str> {
    local(reference)?.split_once('/').map(|(ty, _)| ty)
}

/// Calls `visit` with every `reference` string anywhere in `value` (contained resources'
/// included).
pub fn each_in(value: &serde_json::Value, visit: &mut impl FnMut(&str)) {
    match value {
        serde_json::Value::Object(object) => {
            for (key, member) in object {
                match (key.as_str(), member) {
                    ("reference", serde_json::Value::String(reference)) => visit(reference),
                    (_, member) => each_in(member, visit),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| each_in(item, visit)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_of_every_form() {
        assert_eq!(local("Patient/1"), Some("Patient/1"));
        assert_eq!(
            local("http://x/fhir/Patient/1/_history/2"),
            Some("Patient/1")
        );
        assert_eq!(local("Patient/1#c"), Some("Patient/1"));
        assert_eq!(
            resource_type("http://x/fhir/Observation/o"),
            Some("Observation")
        );
        assert_eq!(local("urn:uuid:1"), None);
        assert_eq!(local("Patients/1"), None);
        assert_eq!(local("Patient/"), None);
    }
}
