//! The R4 base StructureDefinitions (resources and complex data types), compiled into
//! `fhir-profiles/structure-definitions.json.gz` (how: `fhir-profiles/README.md`) and indexed
//! for the validator: each definition's elements by path, with their children, and every
//! invariant parsed once.
//!
//! Invariant: every definition has its root element first, and every element path but the
//! root's starts with the root's path and a dot, as snapshots do.

use crate::fhirpath::{Expr, parse};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::io::Read;
use std::sync::LazyLock;

const COMPILED: &[u8] = include_bytes!("../../fhir-profiles/structure-definitions.json.gz");

/// One element of a snapshot.
#[derive(Debug, Deserialize)]
pub struct ElementDef {
    pub path: String,
    pub min: u32,
    /// A number, or `*`.
    pub max: String,
    #[serde(default)]
    pub types: Vec<TypeRef>,
    pub fixed: Option<Value>,
    pub pattern: Option<Value>,
    /// The path of the element whose definition this one reuses (`Questionnaire.item.item`).
    #[serde(rename = "contentReference")]
    pub content_reference: Option<String>,
    pub binding: Option<Binding>,
    /// Indexes into [`Definitions::constraints`].
    #[serde(default)]
    pub constraints: Vec<usize>,
}

impl ElementDef {
    /// The element's name: the last segment of its path (`value[x]` for a choice).
    pub fn name(&self) -> &str {
        self.path.rsplit('.').next().unwrap_or(&self.path)
    }

    /// The most values the element may have; None for `*`.
    pub fn max(&self) -> Option<usize> {
        self.max.parse().ok()
    }
}

#[derive(Debug, Deserialize)]
pub struct TypeRef {
    pub code: String,
    #[serde(default, rename = "targetProfile")]
    pub target_profile: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct Binding {
    pub strength: String,
    #[serde(rename = "valueSet")]
    pub value_set: String,
}

/// An invariant of an element.
#[derive(Debug)]
pub struct Constraint {
    pub key: String,
    /// `error` or `warning`.
    pub severity: String,
    pub human: String,
    pub expression: Expr,
}

#[derive(Debug, Deserialize)]
struct RawConstraint {
    key: String,
    severity: String,
    human: String,
    expression: String,
}

/// One StructureDefinition.
#[derive(Debug, Deserialize)]
pub struct Definition {
    pub url: String,
    /// `resource` or `complex-type`.
    pub kind: String,
    pub elements: Vec<ElementDef>,
    /// Element path -> the indexes of its child elements.
    #[serde(skip)]
    children: HashMap<String, Vec<usize>>,
    /// Element path -> its index.
    #[serde(skip)]
    by_path: HashMap<String, usize>,
}

impl Definition {
    fn index(&mut self) {
        for (n, element) in self.elements.iter().enumerate() {
            self.by_path.insert(element.path.clone(), n);
            if let Some((parent, _)) = element.path.rsplit_once('.') {
                self.children.entry(parent.to_string()).or_default().push(n);
            }
        }
    }

    /// The root element (the type itself).
    pub fn root(&self) -> &ElementDef {
        &self.elements[0]
    }

    /// The child elements of the element at `path`.
    pub fn children(&self, path: &str) -> impl Iterator<Item = &ElementDef> {
        self.children
            .get(path)
            .into_iter()
            .flatten()
            .map(|n| &self.elements[*n])
    }

    pub fn has_children(&self, path: &str) -> bool {
        self.children.contains_key(path)
    }

    pub fn element(&self, path: &str) -> Option<&ElementDef> {
        self.by_path.get(path).map(|n| &self.elements[*n])
    }
}

/// Every base definition, by type name, and the invariants they share.
pub struct Definitions {
    pub by_type: HashMap<String, Definition>,
    pub constraints: Vec<Constraint>,
}

#[derive(Deserialize)]
struct Compiled {
    constraints: Vec<RawConstraint>,
    definitions: HashMap<String, Definition>,
}

impl Definitions {
    /// The shipped R4 definitions, read once per process.
    pub fn r4() -> &'static Definitions {
        static R4: LazyLock<Definitions> = LazyLock::new(|| {
            let mut text = String::new();
            flate2::read::GzDecoder::new(COMPILED)
                .read_to_string(&mut text)
                .expect("the shipped definitions are gzipped UTF-8");
            let compiled: Compiled = serde_json::from_str(&text).expect("the shipped definitions");
            let constraints = compiled
                .constraints
                .into_iter()
                .map(|c| Constraint {
                    expression: parse(&c.expression)
                        .unwrap_or_else(|e| panic!("invariant {} does not parse: {e}", c.key)),
                    key: c.key,
                    severity: c.severity,
                    human: c.human,
                })
                .collect();
            let mut by_type = compiled.definitions;
            by_type.values_mut().for_each(Definition::index);
            Definitions {
                by_type,
                constraints,
            }
        });
        &R4
    }

    pub fn get(&self, type_name: &str) -> Option<&Definition> {
        self.by_type.get(type_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resource_type_and_its_invariants_are_there() {
        let definitions = Definitions::r4();
        for resource_type in fhirlake_model::RESOURCE_TYPES {
            let definition = definitions.get(resource_type).expect(resource_type);
            assert_eq!(definition.root().path, *resource_type);
            assert_eq!(definition.kind, "resource");
        }
        let observation = definitions.get("Observation").unwrap();
        let status = observation.element("Observation.status").unwrap();
        assert_eq!((status.min, status.max()), (1, Some(1)));
        assert_eq!(status.binding.as_ref().unwrap().strength, "required");
        assert!(
            observation
                .children("Observation")
                .any(|e| e.name() == "value[x]")
        );
        let keys: Vec<&str> = observation
            .root()
            .constraints
            .iter()
            .map(|n| definitions.constraints[*n].key.as_str())
            .collect();
        assert!(
            keys.contains(&"obs-6") && keys.contains(&"dom-2"),
            "{keys:?}"
        );
        assert!(
            definitions
                .get("HumanName")
                .is_some_and(|d| d.kind == "complex-type")
        );
    }
}
