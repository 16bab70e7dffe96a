//! Rewriting references between the entries of a batch or transaction Bundle to the ids the
//! server assigned, as the FHIR RESTful API page requires.

use crate::fhir::{FhirError, IssueCode};
use serde_json::Value;
use std::collections::HashMap;

/// From what a resource in the Bundle may write (`urn:uuid:...`, an absolute `fullUrl`, or the
/// relative `Type/id` of a created entry's `fullUrl`) to the reference it must store
/// (`Type/id`).
#[derive(Debug, Default)]
pub struct Rewrites {
    map: HashMap<String, String>,
}

impl Rewrites {
    /// Records that the entry with `full_url` is stored as `resource_type/id`; a relative
    /// reference to the `Type/id` an absolute `full_url` names is rewritten too.
    pub fn add(&mut self, full_url: &str, resource_type: &str, id: &str) {
        let target = format!("{resource_type}/{id}");
        if !full_url.starts_with("urn:")
            && let Some(relative) = crate::fhir::reference::local(full_url)
            && relative != target
        {
            self.map.insert(relative.to_string(), target.clone());
        }
        if full_url != target {
            self.map.insert(full_url.to_string(), target);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Rewrites every reference in `resource`, in nested elements, contained resources and the
    /// narrative. Fails with 501 on a conditional reference (`Type?criteria`), which needs
    /// search; `path` names the resource in the error.
    pub fn apply(
        &self,
        resource: &mut Value,
        path: &str,
        conditional: &Conditional<'_>,
    ) -> Result<(), FhirError> {
        self.walk(resource, path, conditional)
    }

    fn walk(
        &self,
        value: &mut Value,
        path: &str,
        conditional: &Conditional<'_>,
    ) -> Result<(), FhirError> {
        match value {
            Value::Object(object) => {
                for (key, member) in object.iter_mut() {
                    let member_path = format!("{path}.{key}");
                    match (key.as_str(), member) {
                        ("reference", Value::String(text)) => {
                            if is_conditional(text) {
                                *text = conditional(text).map_err(|e| e.at(member_path))?;
                            } else {
                                self.replace(text);
                            }
                        }
                        ("div", Value::String(xhtml)) => self.replace_in_narrative(xhtml),
                        // Identifier.value and ContactPoint.value are strings, not links: a
                        // document's `urn:uuid:` identifier stays what it is.
                        ("value", Value::String(_)) => {}
                        (_, member) => self.walk(member, &member_path, conditional)?,
                    }
                }
                Ok(())
            }
            Value::Array(items) => {
                for (index, item) in items.iter_mut().enumerate() {
                    self.walk(item, &format!("{path}[{index}]"), conditional)?;
                }
                Ok(())
            }
            // uri and url elements may name another entry by its fullUrl too.
            Value::String(text)
                if text.starts_with("urn:uuid:") || text.starts_with("urn:oid:") =>
            {
                self.replace(text);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn replace(&self, text: &mut String) {
        if self.map.is_empty() {
            return;
        }
        // A reference may carry a fragment into the target (`urn:uuid:...#x`).
        let (base, fragment) = match text.split_once('#') {
            Some((base, fragment)) if !base.is_empty() => (base, Some(fragment)),
            _ => (text.as_str(), None),
        };
        if let Some(target) = self.map.get(base) {
            *text = match fragment {
                Some(fragment) => format!("{target}#{fragment}"),
                None => target.clone(),
            };
        }
    }

    /// Rewrites `urn:uuid:` and `urn:oid:` links in the narrative XHTML.
    fn replace_in_narrative(&self, xhtml: &mut String) {
        if self.map.is_empty() || !xhtml.contains("urn:") {
            return;
        }
        let mut out = String::with_capacity(xhtml.len());
        let mut rest = xhtml.as_str();
        while let Some(start) = rest.find("urn:") {
            out.push_str(&rest[..start]);
            let candidate = &rest[start..];
            let end = candidate
                .find(|c: char| c == '"' || c == '\'' || c == '<' || c.is_whitespace())
                .unwrap_or(candidate.len());
            let urn = &candidate[..end];
            out.push_str(self.map.get(urn).map_or(urn, String::as_str));
            rest = &candidate[end..];
        }
        out.push_str(rest);
        *xhtml = out;
    }
}

/// Resolves a conditional reference (`Type?criteria`) to the `Type/id` it names.
pub type Conditional<'a> = dyn Fn(&str) -> Result<String, FhirError> + 'a;

/// Is this reference a conditional one, `Type?criteria`?
pub fn is_conditional(reference: &str) -> bool {
    match reference.split_once('?') {
        Some((target, _)) => {
            !target.contains("://") && !target.starts_with("urn:") && !target.starts_with('#')
        }
        None => false,
    }
}

/// The error of one entry, prefixed with the entry it is about; so are the expressions of its
/// further issues.
pub fn at_entry(error: FhirError, index: usize) -> FhirError {
    let diagnostics = format!("Bundle.entry[{index}]: {}", error.diagnostics);
    let expression = match error.expression.as_deref() {
        None => format!("Bundle.entry[{index}]"),
        Some(path) => entry_expression(index, path),
    };
    let more = error
        .more
        .into_iter()
        .map(|mut issue| {
            if let Some(Value::String(path)) = issue.pointer_mut("/expression/0") {
                *path = entry_expression(index, path);
            }
            issue
        })
        .collect();
    FhirError {
        diagnostics,
        expression: Some(expression),
        more,
        ..error
    }
}

/// `Patient.name[0]` of the resource of entry `index`, as a FHIRPath in the Bundle:
/// `Bundle.entry[3].resource.ofType(Patient).name[0]`. A path already in the Bundle stays.
pub fn entry_expression(index: usize, path: &str) -> String {
    if path.starts_with("Bundle.entry") {
        return path.to_string();
    }
    let (resource_type, rest) = path.split_once('.').unwrap_or((path, ""));
    let rest = if rest.is_empty() {
        String::new()
    } else {
        format!(".{rest}")
    };
    format!("Bundle.entry[{index}].resource.ofType({resource_type}){rest}")
}

/// 400 for an entry whose request cannot be understood.
pub fn bad_entry(message: impl Into<String>) -> FhirError {
    FhirError::bad_request(IssueCode::Invalid, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn unsupported(_: &str) -> Result<String, FhirError> {
        Err(FhirError::not_supported("no search"))
    }

    #[test]
    fn rewrites_urns_full_urls_and_relative_references_everywhere() {
        let mut rewrites = Rewrites::default();
        rewrites.add("urn:uuid:aaa", "Patient", "new1");
        rewrites.add(
            "http://example.org/fhir/Practitioner/old",
            "Practitioner",
            "new2",
        );
        let mut resource = json!({
            "resourceType": "Observation",
            "subject": {"reference": "urn:uuid:aaa"},
            "performer": [{"reference": "Practitioner/old"}, {"reference": "http://example.org/fhir/Practitioner/old"}],
            "contained": [{"resourceType": "Provenance", "target": [{"reference": "urn:uuid:aaa#x"}]}],
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><a href=\"urn:uuid:aaa\">p</a></div>"},
            "focus": [{"reference": "urn:uuid:unknown"}],
            "identifier": [{"system": "urn:ietf:rfc:3986", "value": "urn:uuid:aaa"}]
        });
        rewrites
            .apply(&mut resource, "Observation", &unsupported)
            .unwrap();
        assert_eq!(resource["subject"]["reference"], "Patient/new1");
        assert_eq!(resource["performer"][0]["reference"], "Practitioner/new2");
        assert_eq!(resource["performer"][1]["reference"], "Practitioner/new2");
        assert_eq!(
            resource["contained"][0]["target"][0]["reference"],
            "Patient/new1#x"
        );
        assert!(
            resource["text"]["div"]
                .as_str()
                .unwrap()
                .contains("href=\"Patient/new1\"")
        );
        assert_eq!(resource["focus"][0]["reference"], "urn:uuid:unknown");
        assert_eq!(resource["identifier"][0]["value"], "urn:uuid:aaa");
    }

    #[test]
    fn conditional_references_go_to_the_resolver_with_their_path() {
        let mut resource = json!({"resourceType": "Encounter", "serviceProvider": {
            "reference": "Organization?identifier=https://github.com/synthetichealth/synthea|x"}});
        let error = Rewrites::default()
            .apply(&mut resource, "Encounter", &unsupported)
            .unwrap_err();
        assert_eq!(error.status, 501);
        Rewrites::default()
            .apply(
                &mut resource,
                "Encounter",
                &|_| Ok("Organization/o1".into()),
            )
            .unwrap();
        assert_eq!(resource["serviceProvider"]["reference"], "Organization/o1");
        assert_eq!(
            error.expression.as_deref(),
            Some("Encounter.serviceProvider.reference")
        );
        assert!(!is_conditional("http://x/fhir/Patient?x=1"));
        assert!(is_conditional(
            "Patient?identifier=http://example.org/mrn|12345"
        ));
        assert!(!is_conditional("urn:uuid:1?x"));
        assert!(!is_conditional("Patient/1"));
    }

    #[test]
    fn entry_errors_name_the_entry_and_the_element() {
        let error = at_entry(bad_entry("x").at("Patient.name[0].given"), 3);
        assert_eq!(
            error.expression.as_deref(),
            Some("Bundle.entry[3].resource.ofType(Patient).name[0].given")
        );
        assert!(error.diagnostics.starts_with("Bundle.entry[3]: "));
        let error = at_entry(bad_entry("x"), 2);
        assert_eq!(error.expression.as_deref(), Some("Bundle.entry[2]"));
    }
}
