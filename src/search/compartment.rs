//! Compartments: the official R4 CompartmentDefinitions (Patient, Encounter, RelatedPerson,
//! Practitioner, Device), from `fhir-profiles/compartments.json`.
//!
//! A resource is in the compartment of `Patient/123` when one of the parameters the definition
//! names for its type refers to `Patient/123`. The focal resource itself is in its own
//! compartment too (the `{def}` of four of the five definitions, and what R5 says of all).
//!
//! A compartment search (`GET /fhir/Patient/123/Observation`) adds to its plan "one of
//! Observation's membership parameters (`subject`, `performer`) refers to `Patient/123`";
//! `Patient/123/*` is the union over every member type.

use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::LazyLock;

const COMPARTMENTS: &str = include_str!("../../fhir-profiles/compartments.json");

/// Compartment type -> member resource type -> the parameters that make it a member.
type Definitions = BTreeMap<String, BTreeMap<String, Vec<String>>>;

static DEFINITIONS: LazyLock<Definitions> = LazyLock::new(|| {
    let value: Value = serde_json::from_str(COMPARTMENTS).expect("the shipped compartments");
    serde_json::from_value(value).expect("compartment -> type -> parameters")
});

/// The compartment types, such as `Patient`.
pub fn types() -> impl Iterator<Item = &'static str> {
    DEFINITIONS.keys().map(String::as_str)
}

/// Whether `compartment` is a compartment type.
pub fn is_compartment(compartment: &str) -> bool {
    DEFINITIONS.contains_key(compartment)
}

/// The parameters of `resource_type` that put a resource in a `compartment`; empty when
/// resources of that type are never members (other than the focal resource itself).
pub fn params(compartment: &str, resource_type: &str) -> &'static [String] {
    DEFINITIONS
        .get(compartment)
        .and_then(|members| members.get(resource_type))
        .map_or(&[], Vec::as_slice)
}

/// The resource types that can be in a `compartment`, the compartment's own type included.
pub fn member_types(compartment: &str) -> Vec<String> {
    let mut types: Vec<String> = DEFINITIONS
        .get(compartment)
        .into_iter()
        .flat_map(|members| members.keys().cloned())
        .collect();
    if !types.iter().any(|t| t == compartment) {
        types.push(compartment.to_string());
    }
    types
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::registry::{ParamType, Registry};

    #[test]
    fn the_five_compartments_of_r4() {
        let all: Vec<&str> = types().collect();
        assert_eq!(
            all,
            [
                "Device",
                "Encounter",
                "Patient",
                "Practitioner",
                "RelatedPerson"
            ]
        );
        assert_eq!(params("Patient", "Observation"), ["subject", "performer"]);
        assert!(params("Patient", "Organization").is_empty());
        assert!(member_types("Encounter").contains(&"Encounter".to_string()));
        assert!(!is_compartment("Observation"));
    }

    /// Every parameter a definition names is a reference parameter the registry knows, so a
    /// compartment search never silently drops a membership rule.
    #[test]
    fn every_membership_parameter_is_a_known_reference() {
        let registry = Registry::r4_shared();
        for compartment in types() {
            for resource_type in member_types(compartment) {
                for code in params(compartment, &resource_type) {
                    let param = registry.get(&resource_type, code);
                    assert!(
                        param.is_some_and(|p| p.kind == ParamType::Reference),
                        "{compartment}: {resource_type}.{code}"
                    );
                }
            }
        }
    }
}
