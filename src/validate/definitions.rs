//! The R4 base StructureDefinitions (resources and complex data types), compiled into
//! `fhir-profiles/structure-definitions.json.gz` (how: `fhir-profiles/README.md`), and the
//! profiles made from a StructureDefinition's snapshot at run time
//! ([`Definition::from_structure_definition`]), both indexed the same way for the validator:
//! each definition's elements by id, with their children and their slices, and every invariant
//! parsed once.
//!
//! Invariant: every definition has its root element first, and every element id but the
//! root's starts with the root's id and a dot, as snapshots do. An element's id is its path
//! but for slices and what is inside them (`Patient.extension:race.url`); the compiled base
//! definitions have no slices, so their elements carry no id and their path is their id.

use crate::fhirpath::eval::truth;
use crate::fhirpath::{
    EvalError, Expr, Limits, ParseError, evaluate_on, evaluate_within, has_value_or_children, parse,
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::sync::{Arc, LazyLock};

const COMPILED: &[u8] = include_bytes!("../../fhir-profiles/structure-definitions.json.gz");

/// One element of a snapshot.
#[derive(Debug, Deserialize)]
pub struct ElementDef {
    /// Set where it differs from the path: in slices (`Observation.category:laboratory`).
    pub id: Option<String>,
    pub path: String,
    #[serde(rename = "sliceName")]
    pub slice_name: Option<String>,
    /// Set on the element whose values its slices (the elements that follow it with the same
    /// path and a `sliceName`) share out.
    pub slicing: Option<Slicing>,
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
    /// Indexes into the compiled invariants, turned into [`ElementDef::constraints`] when
    /// loaded (then empty).
    #[serde(default, rename = "constraints")]
    numbers: Vec<usize>,
    /// The invariants of the element, parsed; shared by every element that has the same one.
    #[serde(skip)]
    pub constraints: Vec<Arc<Constraint>>,
}

impl ElementDef {
    /// What the element is known by in its definition: its id, or its path when it has none.
    pub fn key(&self) -> &str {
        self.id.as_deref().unwrap_or(&self.path)
    }

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
    /// The profiles a value of this type must conform to (any of them).
    #[serde(default)]
    pub profile: Vec<String>,
    #[serde(default, rename = "targetProfile")]
    pub target_profile: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct Binding {
    pub strength: String,
    #[serde(rename = "valueSet")]
    pub value_set: String,
}

/// How the values of an element are shared out among its slices.
#[derive(Debug, Deserialize)]
pub struct Slicing {
    #[serde(default)]
    pub discriminator: Vec<Discriminator>,
    /// The values come in the order of the slices.
    #[serde(default)]
    pub ordered: bool,
    /// `closed` (every value is in a slice), `open` or `openAtEnd`.
    pub rules: String,
}

/// What tells which slice a value is in.
#[derive(Debug, Deserialize)]
pub struct Discriminator {
    /// `value`, `pattern`, `exists`, `type` or `profile`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A FHIRPath of the value: `$this`, `url`, `coding.code`, `resolve()`, ...
    pub path: String,
}

/// An invariant of an element.
#[derive(Debug)]
pub struct Constraint {
    pub key: String,
    /// `error` or `warning`.
    pub severity: String,
    pub human: String,
    pub expression: Expr,
    /// Whether `expression` is [`ELE_1`], which [`Constraint::holds`] checks without the
    /// evaluator.
    ele_1: bool,
}

/// ele-1's expression, the invariant of every element (so checked on every value of every
/// resource): a value or children.
const ELE_1: &str = "hasValue() or (children().count() > id.count())";

impl Constraint {
    fn new(
        key: String,
        severity: String,
        human: String,
        expression: &str,
    ) -> Result<Self, ParseError> {
        Ok(Constraint {
            key,
            severity,
            human,
            expression: parse(expression)?,
            ele_1: expression.trim() == ELE_1,
        })
    }

    /// Whether the invariant holds on `item` (of FHIR type `ty` when known) within the
    /// default limits; `resources` are `%resource` and `%rootResource`. A result that is
    /// empty or not a single boolean does not make it fail.
    pub fn holds(
        &self,
        item: &Value,
        ty: Option<&str>,
        resources: [&Value; 2],
    ) -> Result<bool, EvalError> {
        if self.ele_1 {
            return Ok(has_value_or_children(item));
        }
        Ok(
            match evaluate_on(&self.expression, item, ty, resources)?.as_slice() {
                [only] => truth(only) != Some(false),
                _ => true,
            },
        )
    }
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
    /// Set for profiles that have one.
    #[serde(default)]
    pub version: Option<String>,
    /// `resource` or `complex-type`.
    pub kind: String,
    pub elements: Vec<ElementDef>,
    /// Element key -> the indexes of its child elements (not its slices).
    #[serde(skip)]
    children: HashMap<String, Vec<usize>>,
    /// Element key -> the indexes of its slices, in order.
    #[serde(skip)]
    slices: HashMap<String, Vec<usize>>,
    /// Element key -> its index.
    #[serde(skip)]
    by_key: HashMap<String, usize>,
}

impl Definition {
    fn index(&mut self) {
        for (n, element) in self.elements.iter().enumerate() {
            let key = element.key();
            self.by_key.insert(key.to_string(), n);
            let Some((parent, name)) = key.rsplit_once('.') else {
                continue;
            };
            // A slice's last segment is `name:slice` (or `name:slice/reslice`): it belongs
            // to the element before the last `/` or `:`.
            match name.rfind(['/', ':']) {
                Some(at) => {
                    let sliced = &key[..parent.len() + 1 + at];
                    self.slices.entry(sliced.to_string()).or_default().push(n)
                }
                None => self.children.entry(parent.to_string()).or_default().push(n),
            }
        }
    }

    /// The root element (the type itself).
    pub fn root(&self) -> &ElementDef {
        &self.elements[0]
    }

    /// The child elements of the element known by `key`.
    pub fn children(&self, key: &str) -> impl Iterator<Item = &ElementDef> {
        self.children
            .get(key)
            .into_iter()
            .flatten()
            .map(|n| &self.elements[*n])
    }

    pub fn has_children(&self, key: &str) -> bool {
        self.children.contains_key(key)
    }

    /// The slices of the element known by `key`, in the order the definition gives them.
    pub fn slices(&self, key: &str) -> impl Iterator<Item = &ElementDef> {
        self.slices
            .get(key)
            .into_iter()
            .flatten()
            .map(|n| &self.elements[*n])
    }

    /// The element known by `key` (its id; its path where it has no id).
    pub fn element(&self, key: &str) -> Option<&ElementDef> {
        self.by_key.get(key).map(|n| &self.elements[*n])
    }

    /// A profile from a StructureDefinition (derivation `constraint`, kind `resource` or
    /// `complex-type`, with a snapshot), or why it cannot be one. Every invariant must parse
    /// and evaluate within a hundredth of the FHIRPath engine's default limits on an empty
    /// instance of the profiled type: one that does not is refused with the whole profile,
    /// since checking a resource with it could not be done (or not safely).
    pub fn from_structure_definition(sd: &Value) -> Result<Definition, Refusal> {
        let no = |why: String| Err(Refusal::NotAProfile(why));
        if sd["resourceType"] != "StructureDefinition" {
            return no("not a StructureDefinition".into());
        }
        let Some(url) = sd["url"].as_str() else {
            return no("a StructureDefinition without a url".into());
        };
        let kind = sd["kind"].as_str().unwrap_or_default();
        if !matches!(kind, "resource" | "complex-type") {
            return no(format!(
                "{url} is of kind '{kind}': only profiles of resources and complex types are checked"
            ));
        }
        if sd["derivation"] != "constraint" {
            return no(format!(
                "{url} is not a profile (derivation 'constraint'): new types cannot be defined"
            ));
        }
        if let Some(version) = sd["fhirVersion"].as_str()
            && !version.starts_with("4.0")
        {
            return no(format!(
                "{url} is for FHIR {version}: only R4 (4.0) profiles are checked"
            ));
        }
        let type_name = sd["type"].as_str().unwrap_or_default();
        if Definitions::r4().get(type_name).is_none() {
            return no(format!("{url} constrains '{type_name}', not an R4 type"));
        }
        let Some(snapshot) = sd["snapshot"]["element"].as_array() else {
            return no(format!(
                "{url} has no snapshot: register it with its snapshot (as IG packages ship \
                 them); generating a snapshot from a differential is not supported"
            ));
        };
        let mut parsed: HashMap<String, Arc<Constraint>> = HashMap::new();
        let mut elements = Vec::with_capacity(snapshot.len());
        for element in snapshot {
            elements.push(
                snapshot_element(element, &mut parsed)
                    .map_err(|refusal| refusal.map(|why| format!("{url}: {why}")))?,
            );
        }
        if elements.first().map(|e| e.path.as_str()) != Some(type_name) {
            return no(format!(
                "{url}: the snapshot does not begin with '{type_name}'"
            ));
        }
        if parsed.len() > MAX_INVARIANTS {
            return Err(Refusal::Invariant(format!(
                "{url} has {} invariants; a profile may have at most {MAX_INVARIANTS}",
                parsed.len()
            )));
        }
        // On an empty instance, within a hundredth of the limits: what needs more there would
        // spend that on every value before it looked at it, and goes beyond the limits on
        // some (and a check of the profile at every start stays quick).
        let sample = match kind {
            "resource" => json!({ "resourceType": type_name }),
            _ => json!({}),
        };
        let limits = Limits {
            steps: Limits::DEFAULT.steps / 100,
            ..Limits::DEFAULT
        };
        for constraint in parsed.values() {
            let evaluated = evaluate_within(
                &limits,
                &constraint.expression,
                &sample,
                Some(type_name),
                [&sample; 2],
            );
            if let Err(EvalError::Exceeded(why)) = evaluated {
                return Err(Refusal::Invariant(format!(
                    "{url}: the invariant {} cannot be evaluated within the limits: {why}",
                    constraint.key
                )));
            }
        }
        let mut definition = Definition {
            url: url.to_string(),
            version: sd["version"].as_str().map(str::to_string),
            kind: kind.to_string(),
            elements,
            children: HashMap::new(),
            slices: HashMap::new(),
            by_key: HashMap::new(),
        };
        definition.index();
        Ok(definition)
    }
}

/// The most distinct invariants a profile may have: each is evaluated on every value of its
/// element, each evaluation within the engine's limits. A large R4 profile has a few dozen.
const MAX_INVARIANTS: usize = 1000;

/// Why a StructureDefinition is not made a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// It is no profile fhirlake checks: no snapshot, a logical model, a new type, not R4...
    NotAProfile(String),
    /// A profile that cannot be checked: an invariant does not parse, or goes beyond the
    /// FHIRPath engine's limits.
    Invariant(String),
}

impl Refusal {
    fn map(self, f: impl FnOnce(String) -> String) -> Refusal {
        match self {
            Refusal::NotAProfile(why) => Refusal::NotAProfile(f(why)),
            Refusal::Invariant(why) => Refusal::Invariant(f(why)),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotAProfile(why) | Refusal::Invariant(why) => f.write_str(why),
        }
    }
}

/// The element of a snapshot as FHIR writes it, cut to what the validator checks.
#[derive(Deserialize)]
struct SnapshotElement {
    id: Option<String>,
    path: String,
    #[serde(rename = "sliceName")]
    slice_name: Option<String>,
    slicing: Option<Slicing>,
    #[serde(default)]
    min: u32,
    max: Option<String>,
    #[serde(default, rename = "type")]
    types: Vec<TypeRef>,
    #[serde(rename = "contentReference")]
    content_reference: Option<String>,
    binding: Option<SnapshotBinding>,
    #[serde(default)]
    constraint: Vec<SnapshotConstraint>,
}

#[derive(Deserialize)]
struct SnapshotBinding {
    strength: String,
    #[serde(rename = "valueSet")]
    value_set: Option<String>,
}

#[derive(Deserialize)]
struct SnapshotConstraint {
    key: String,
    severity: String,
    human: String,
    /// Absent in constraints written for XPath only.
    expression: Option<String>,
}

/// One element of a snapshot, its invariants parsed once per profile (`parsed`, by key and
/// expression).
fn snapshot_element(
    e: &Value,
    parsed: &mut HashMap<String, Arc<Constraint>>,
) -> Result<ElementDef, Refusal> {
    let raw = SnapshotElement::deserialize(e)
        .map_err(|err| Refusal::NotAProfile(format!("an element: {err}")))?;
    // fixed[x] and pattern[x] are one member each, named by their type.
    let member = |prefix: &str| {
        e.as_object()?
            .iter()
            .find(|(key, _)| key.starts_with(prefix))
            .map(|(_, value)| value.clone())
    };
    let mut constraints = Vec::new();
    for c in raw.constraint {
        let Some(expression) = c.expression else {
            continue;
        };
        let cache_key = format!("{}\u{0}{expression}", c.key);
        if let Some(known) = parsed.get(&cache_key) {
            constraints.push(known.clone());
            continue;
        }
        let constraint =
            Constraint::new(c.key.clone(), c.severity, c.human, &expression).map_err(|error| {
                Refusal::Invariant(format!(
                    "the invariant {} of {} does not parse: {error}",
                    c.key, raw.path
                ))
            })?;
        let constraint = Arc::new(constraint);
        parsed.insert(cache_key, constraint.clone());
        constraints.push(constraint);
    }
    Ok(ElementDef {
        id: raw.id.filter(|id| *id != raw.path),
        slice_name: raw.slice_name,
        slicing: raw.slicing,
        min: raw.min,
        max: raw.max.unwrap_or_else(|| "*".into()),
        types: raw.types,
        fixed: member("fixed"),
        pattern: member("pattern"),
        // `#Observation.referenceRange`, or with the definition's url before the `#`.
        content_reference: raw.content_reference.map(|r| {
            r.rsplit_once('#')
                .map_or(r.as_str(), |(_, id)| id)
                .to_string()
        }),
        binding: raw.binding.and_then(|b| {
            Some(Binding {
                strength: b.strength,
                value_set: b.value_set?,
            })
        }),
        numbers: Vec::new(),
        constraints,
        path: raw.path,
    })
}

/// Every base definition, by type name.
pub struct Definitions {
    pub by_type: HashMap<String, Definition>,
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
            let constraints: Vec<Arc<Constraint>> = compiled
                .constraints
                .into_iter()
                .map(|c| {
                    let key = c.key.clone();
                    Arc::new(
                        Constraint::new(c.key, c.severity, c.human, &c.expression)
                            .unwrap_or_else(|e| panic!("invariant {key} does not parse: {e}")),
                    )
                })
                .collect();
            let mut by_type = compiled.definitions;
            for definition in by_type.values_mut() {
                for element in &mut definition.elements {
                    element.constraints = std::mem::take(&mut element.numbers)
                        .into_iter()
                        .map(|n| constraints[n].clone())
                        .collect();
                }
                definition.index();
            }
            Definitions { by_type }
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
            .map(|c| c.key.as_str())
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

    /// The profiles R4 itself defines (vital signs, the extensions...) pass the checks of
    /// their invariants: every one parses and evaluates within the limits.
    #[test]
    fn every_profile_of_r4_is_usable() {
        let mut registered = 0;
        for sd in crate::fhir::test_data::examples() {
            let is_profile = sd["resourceType"] == "StructureDefinition"
                && sd["derivation"] == "constraint"
                && sd["snapshot"].is_object()
                && matches!(sd["kind"].as_str(), Some("resource" | "complex-type"));
            if is_profile {
                let made = Definition::from_structure_definition(&sd);
                assert!(made.is_ok(), "{}: {made:?}", sd["url"]);
                registered += 1;
            }
        }
        assert!(registered > 400, "{registered}");
    }

    #[test]
    fn a_snapshot_is_indexed_by_id_with_its_slices_apart() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/profiles/ips/StructureDefinition-Observation-results-laboratory-pathology-uv-ips.json"
        );
        let sd: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let profile = Definition::from_structure_definition(&sd).unwrap();
        assert_eq!(profile.version.as_deref(), Some("2.0.0"));
        let slices: Vec<&str> = profile
            .slices("Observation.value[x]")
            .map(|e| e.key())
            .collect();
        assert_eq!(
            slices,
            [
                "Observation.value[x]:valueString",
                "Observation.value[x]:valueQuantity",
                "Observation.value[x]:valueCodeableConcept"
            ]
        );
        // Slices are not children; what a profile details of a data type is.
        assert!(
            profile
                .children("Observation")
                .all(|e| e.slice_name.is_none())
        );
        assert!(
            profile
                .children("Observation.subject")
                .any(|e| e.name() == "reference")
        );
        let laboratory = profile.element("Observation.category:laboratory").unwrap();
        assert_eq!((laboratory.min, laboratory.max()), (1, Some(1)));
        assert!(laboratory.pattern.is_some());
        let category = profile.element("Observation.category").unwrap();
        let slicing = category.slicing.as_ref().unwrap();
        assert_eq!(
            (
                slicing.discriminator[0].kind.as_str(),
                slicing.discriminator[0].path.as_str()
            ),
            ("value", "$this")
        );
        // The invariants are parsed, and shared where repeated.
        let root = profile.root();
        assert!(root.constraints.iter().any(|c| c.key == "ips-2"));
        let ele1 = |key: &str| {
            profile
                .element(key)
                .unwrap()
                .constraints
                .iter()
                .find(|c| c.key == "ele-1")
                .unwrap()
                .clone()
        };
        assert!(Arc::ptr_eq(
            &ele1("Observation.status"),
            &ele1("Observation.code")
        ));
    }
}
