//! `_summary` and `_elements` (FHIR R4 search page, 3.1.1.5.7 and 3.1.1.5.8): a resource cut
//! down to part of its elements, on searches and on read and vread. A search cuts its matches
//! only; included resources come whole. A cut resource is parsed and serialized again: with
//! an XML answer, the only way a stored version is served other than as its stored bytes.
//!
//! Which elements are "summary" and which are mandatory comes from the R4 StructureDefinitions,
//! compiled into `fhir-profiles/summary-elements.json` (how: `fhir-profiles/README.md`).
//!
//! Invariants of every cut resource ([`subset`]):
//! - it keeps `resourceType`, `id` and `meta`, and only elements of the input: nothing is
//!   added but the SUBSETTED tag in `meta.tag` (once, even if the input had it already);
//! - a primitive's sibling `_name` (its id and extensions) is kept exactly when `name` is;
//! - the members keep the input's order (serde_json's `preserve_order` feature), and an
//!   element that is kept is kept whole, except a backbone element under `_summary=true`,
//!   which is cut to its summary elements.

use super::{FhirError, IssueCode};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

/// What part of a resource a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subset {
    /// `_summary=true`: the elements marked summary, recursively in backbone elements.
    Summary,
    /// `_summary=text`: `text`, `id`, `meta` and the top-level mandatory elements.
    Text,
    /// `_summary=data`: everything but `text`.
    Data,
    /// `_elements=a,b`: these top-level elements (each `name` or `Type.name`, as given), the
    /// mandatory ones, `id` and `meta`. A `Type.name` of another type selects nothing.
    Elements(Vec<String>),
}

impl Subset {
    /// Reads `_summary` (the last one counts) and `_elements` (every one, comma-separated)
    /// from the query parameters. `None` when whole resources are asked for: no parameter,
    /// `_summary=false` or `_summary=count` (which a search handles itself).
    ///
    /// Errors (400): an unknown `_summary` value, an element that is not `name` or
    /// `Type.name`, and `_elements` together with `_summary=true|text|data`.
    pub fn parse(params: &[(String, String)]) -> Result<Option<Subset>, FhirError> {
        let summary = params.iter().rev().find(|(name, _)| name == "_summary");
        let mut elements = Vec::new();
        for (_, value) in params.iter().filter(|(name, _)| name == "_elements") {
            for element in value.split(',').map(str::trim) {
                check_element(element)?;
                elements.push(element.to_string());
            }
        }
        let summary = match summary.map(|(_, value)| value.as_str()) {
            None | Some("false" | "count") => None,
            Some("true") => Some(Subset::Summary),
            Some("text") => Some(Subset::Text),
            Some("data") => Some(Subset::Data),
            Some(other) => {
                return Err(FhirError::bad_request(
                    IssueCode::Invalid,
                    format!("_summary={other}: expected true, text, data, count or false"),
                ));
            }
        };
        match (summary, elements.is_empty()) {
            (summary, true) => Ok(summary),
            (None, false) => Ok(Some(Subset::Elements(elements))),
            (Some(_), false) => Err(FhirError::bad_request(
                IssueCode::Invalid,
                "_elements cannot be combined with _summary=true, text or data",
            )),
        }
    }
}

/// An element of `_elements`: `name` or `Type.name`, a name being a letter then letters and
/// digits, and `Type` an R4 resource type.
fn check_element(element: &str) -> Result<(), FhirError> {
    let (resource_type, name) = match element.split_once('.') {
        Some((resource_type, name)) => (Some(resource_type), name),
        None => (None, element),
    };
    let is_name = name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric());
    if is_name && resource_type.is_none_or(fhirlake_model::is_resource_type) {
        return Ok(());
    }
    Err(FhirError::bad_request(
        IssueCode::Invalid,
        format!("_elements: '{element}' is not an element name, nor Type.name"),
    ))
}

/// The SUBSETTED coding every cut resource carries in `meta.tag`.
const SUBSETTED_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";
const SUBSETTED_CODE: &str = "SUBSETTED";

/// The top-level members every subset keeps.
const ALWAYS: &[&str] = &["resourceType", "id", "meta"];

/// Cuts the resource `body` (a JSON object with a `resourceType`) to `subset` and marks it
/// SUBSETTED; the invariants are in the module's documentation. A missing `meta` is added at
/// the end. A body that is not a resource of an R4 type is an internal error (500): stored
/// resources were checked when they were written.
pub fn subset(body: &[u8], subset: &Subset) -> Result<Vec<u8>, FhirError> {
    let not_a_resource = || FhirError::internal("a stored version is not a resource of R4");
    let resource: Map<String, Value> =
        serde_json::from_slice(body).map_err(|_| not_a_resource())?;
    let resource_type = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .ok_or_else(not_a_resource)?;
    let root = DEFINITIONS.get(resource_type).ok_or_else(not_a_resource)?;
    let mut cut = match subset {
        Subset::Summary => summary_of(resource, root, root, ALWAYS),
        Subset::Text => select(resource, |name| {
            name == "text" || ALWAYS.contains(&name) || root.mandatory.contains(name)
        }),
        Subset::Data => select(resource, |name| name != "text"),
        Subset::Elements(names) => {
            let chosen = root.chosen(resource_type, names);
            select(resource, |name| {
                chosen.contains(name) || ALWAYS.contains(&name) || root.mandatory.contains(name)
            })
        }
    };
    mark_subsetted(&mut cut).ok_or_else(not_a_resource)?;
    Ok(serde_json::to_vec(&cut).expect("serializes"))
}

/// The element a member stands for: `birthDate` for both `birthDate` and `_birthDate`.
fn element_name(key: &str) -> &str {
    key.strip_prefix('_').unwrap_or(key)
}

/// The members of `object` whose element `keep` accepts, in order.
fn select(object: Map<String, Value>, keep: impl Fn(&str) -> bool) -> Map<String, Value> {
    object
        .into_iter()
        .filter(|(key, _)| keep(element_name(key)))
        .collect()
}

/// The summary elements of `object` (and those of `always`), an instance of `node` in the
/// resource `root`; a backbone element is cut in turn to its own summary elements.
fn summary_of(
    object: Map<String, Value>,
    node: &Node,
    root: &Node,
    always: &[&str],
) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in object {
        let name = element_name(&key);
        if !(always.contains(&name) || node.summary.contains(name)) {
            continue;
        }
        let value = match root.backbone(node, &key) {
            Some(child) => each_object(value, &|o| summary_of(o, child, root, &[])),
            None => value,
        };
        out.insert(key, value);
    }
    out
}

/// `value` with `cut` applied to it when it is an object, or to each object of an array.
fn each_object(value: Value, cut: &dyn Fn(Map<String, Value>) -> Map<String, Value>) -> Value {
    match value {
        Value::Object(object) => Value::Object(cut(object)),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| each_object(item, cut))
                .collect(),
        ),
        other => other,
    }
}

/// Adds the SUBSETTED tag to `meta.tag` unless it is there; None when `meta` or `meta.tag`
/// has the wrong shape.
fn mark_subsetted(resource: &mut Map<String, Value>) -> Option<()> {
    let meta = resource.entry("meta").or_insert_with(|| json!({}));
    let tags = meta
        .as_object_mut()?
        .entry("tag")
        .or_insert_with(|| json!([]));
    let tags = tags.as_array_mut()?;
    if !tags
        .iter()
        .any(|tag| tag["system"] == SUBSETTED_SYSTEM && tag["code"] == SUBSETTED_CODE)
    {
        tags.push(json!({
            "system": SUBSETTED_SYSTEM,
            "code": SUBSETTED_CODE,
            "display": "Resource encoded in summary mode",
        }));
    }
    Some(())
}

/// The summary and mandatory elements of every R4 resource type, read once.
static DEFINITIONS: LazyLock<HashMap<String, Node>> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../../fhir-profiles/summary-elements.json"))
        .expect("fhir-profiles/summary-elements.json is valid")
});

/// A resource or one of its backbone elements. Element names are JSON names: a choice
/// element `value[x]` is listed as `valueQuantity`, `valueString`, ...
#[derive(Debug, Deserialize)]
struct Node {
    /// The elements marked `isSummary`.
    #[serde(default)]
    summary: HashSet<String>,
    /// The elements with `min > 0`.
    #[serde(default)]
    mandatory: HashSet<String>,
    /// Each choice element (`value`) -> its JSON names (`valueQuantity`, ...).
    #[serde(default)]
    choices: HashMap<String, Vec<String>>,
    /// The backbone elements (elements with children of their own), by name.
    #[serde(default)]
    children: HashMap<String, Child>,
}

/// A backbone element: defined in place, or the same as another one of the resource
/// (`Observation.component.referenceRange` is `referenceRange`), named by its path below the
/// resource; that path always leads to a [`Child::Defined`].
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Child {
    Defined(Node),
    Reused(String),
}

impl Node {
    /// The backbone element `name` of `parent`, an element of this resource.
    fn backbone<'a>(&'a self, parent: &'a Node, name: &str) -> Option<&'a Node> {
        match parent.children.get(name)? {
            Child::Defined(node) => Some(node),
            Child::Reused(path) => {
                path.split('.')
                    .try_fold(self, |node, step| match node.children.get(step)? {
                        Child::Defined(child) => Some(child),
                        Child::Reused(_) => None,
                    })
            }
        }
    }

    /// The JSON names `_elements` selects in a resource of this type, `resource_type`: each
    /// name (a choice element's standing for all its JSON names), those of another type left
    /// out.
    fn chosen<'a>(&'a self, resource_type: &str, names: &'a [String]) -> HashSet<&'a str> {
        let mut chosen = HashSet::new();
        for element in names {
            let name = match element.split_once('.') {
                Some((of, name)) if of == resource_type => name,
                Some(_) => continue,
                None => element,
            };
            match self.choices.get(name) {
                Some(names) => chosen.extend(names.iter().map(String::as_str)),
                None => {
                    chosen.insert(name);
                }
            }
        }
        chosen
    }
}

#[cfg(test)]
mod tests {
    //! The expected elements are written out from the R4 StructureDefinitions (the "Σ" flags
    //! and the cardinalities on the spec's pages), not read from the data file.
    use super::*;
    use crate::fhir::test_data::examples;
    use proptest::prelude::*;

    static EXAMPLES: LazyLock<Vec<Value>> = LazyLock::new(examples);

    fn example(resource_type: &str, id: &str) -> &'static Value {
        EXAMPLES
            .iter()
            .find(|r| r["resourceType"] == resource_type && r["id"] == id)
            .unwrap_or_else(|| panic!("no example {resource_type}/{id}"))
    }

    fn cut(resource: &Value, how: &Subset) -> Value {
        let body = serde_json::to_vec(resource).unwrap();
        serde_json::from_slice(&subset(&body, how).unwrap()).unwrap()
    }

    fn keys(value: &Value) -> Vec<&str> {
        value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect()
    }

    fn elements(names: &[&str]) -> Subset {
        Subset::Elements(names.iter().map(|n| n.to_string()).collect())
    }

    fn subsetted_tags(resource: &Value) -> usize {
        resource["meta"]["tag"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["system"] == SUBSETTED_SYSTEM && t["code"] == SUBSETTED_CODE)
            .count()
    }

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn summary_of_a_patient_keeps_its_summary_elements_in_order() {
        let patient = example("Patient", "example");
        let summary = cut(patient, &Subset::Summary);
        // Not summary: text, contact (and maritalStatus, multipleBirth, photo, communication,
        // generalPractitioner, absent here). `_birthDate` goes with `birthDate`; the input has
        // no meta, so it comes last.
        assert_eq!(
            keys(&summary),
            [
                "resourceType",
                "id",
                "identifier",
                "active",
                "name",
                "telecom",
                "gender",
                "birthDate",
                "_birthDate",
                "deceasedBoolean",
                "address",
                "managingOrganization",
                "meta"
            ]
        );
        assert_eq!(
            summary["name"], patient["name"],
            "a data type is kept whole"
        );
        assert_eq!(summary["_birthDate"], patient["_birthDate"]);
        assert_eq!(subsetted_tags(&summary), 1);
    }

    #[test]
    fn summary_of_an_observation_cuts_its_components() {
        let observation = example("Observation", "f205");
        let summary = cut(observation, &Subset::Summary);
        // Not summary: text, interpretation, note, method; in a component: interpretation,
        // referenceRange (the same element as Observation.referenceRange).
        assert_eq!(
            keys(&summary),
            [
                "resourceType",
                "id",
                "identifier",
                "status",
                "code",
                "subject",
                "issued",
                "performer",
                "component",
                "meta"
            ]
        );
        let components = summary["component"].as_array().unwrap();
        assert_eq!(components.len(), 2);
        for (component, original) in components
            .iter()
            .zip(observation["component"].as_array().unwrap())
        {
            assert_eq!(keys(component), ["code", "valueQuantity"]);
            assert_eq!(component["valueQuantity"], original["valueQuantity"]);
        }
        let pressure = cut(example("Observation", "blood-pressure"), &Subset::Summary);
        for component in pressure["component"].as_array().unwrap() {
            assert_eq!(keys(component), ["code", "valueQuantity"]);
        }
    }

    #[test]
    fn a_reused_backbone_element_is_cut_as_the_one_it_reuses() {
        // Parameters.parameter.part is Parameters.parameter: its extension is not summary.
        let extension = json!([{"url": "http://example.org/x", "valueString": "x"}]);
        let parameters = json!({"resourceType": "Parameters", "id": "p", "parameter": [{
            "name": "a", "extension": extension,
            "part": [{"name": "b", "extension": extension, "valueString": "v"}]}]});
        let summary = cut(&parameters, &Subset::Summary);
        assert_eq!(
            summary["parameter"],
            json!([{"name": "a", "part": [{"name": "b", "valueString": "v"}]}])
        );
    }

    #[test]
    fn text_keeps_the_narrative_and_the_mandatory_elements() {
        let observation = example("Observation", "blood-pressure");
        let text = cut(observation, &Subset::Text);
        // Observation's mandatory elements: status and code.
        assert_eq!(
            keys(&text),
            ["resourceType", "id", "meta", "text", "status", "code"]
        );
        assert_eq!(text["text"], observation["text"]);
        assert_eq!(text["meta"]["profile"], observation["meta"]["profile"]);
        assert_eq!(subsetted_tags(&text), 1);
    }

    #[test]
    fn data_keeps_everything_but_the_narrative() {
        let patient = example("Patient", "example");
        let data = cut(patient, &Subset::Data);
        let mut expected: Vec<&str> = keys(patient).into_iter().filter(|k| *k != "text").collect();
        for key in &expected {
            assert_eq!(data[key], patient[key]);
        }
        expected.push("meta");
        assert_eq!(keys(&data), expected);
        assert_eq!(subsetted_tags(&data), 1);
    }

    #[test]
    fn elements_keep_those_named_and_the_mandatory_ones() {
        let patient = example("Patient", "example");
        let chosen = cut(
            patient,
            &elements(&["Patient.birthDate", "gender", "Observation.code"]),
        );
        assert_eq!(
            keys(&chosen),
            [
                "resourceType",
                "id",
                "gender",
                "birthDate",
                "_birthDate",
                "meta"
            ]
        );
        // A choice element by its name: value[x] is valueQuantity here; status and code are
        // mandatory.
        let bmi = example("Observation", "bmi");
        let chosen = cut(bmi, &elements(&["value"]));
        assert_eq!(
            keys(&chosen),
            [
                "resourceType",
                "id",
                "meta",
                "status",
                "code",
                "valueQuantity"
            ]
        );
        assert_eq!(chosen["valueQuantity"], bmi["valueQuantity"]);
        // Encounter.class does not select classHistory.
        let encounter = json!({"resourceType": "Encounter", "id": "e", "status": "finished",
            "class": {"code": "AMB"}, "classHistory": [{"class": {"code": "AMB"},
            "period": {"start": "2020"}}]});
        assert_eq!(
            keys(&cut(&encounter, &elements(&["class"]))),
            ["resourceType", "id", "status", "class", "meta"]
        );
    }

    #[test]
    fn the_subsetted_tag_is_added_once() {
        let bmi = example("Observation", "bmi");
        let once = cut(bmi, &Subset::Data);
        let twice = cut(&once, &Subset::Data);
        assert_eq!(once, twice);
        assert_eq!(
            once["meta"]["tag"],
            json!([{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                "code": "SUBSETTED", "display": "Resource encoded in summary mode"}])
        );
    }

    #[test]
    fn parses_summary_and_elements() {
        let parse = |pairs: &[(&str, &str)]| Subset::parse(&params(pairs));
        assert_eq!(parse(&[]), Ok(None));
        assert_eq!(parse(&[("_summary", "false")]), Ok(None));
        assert_eq!(parse(&[("_summary", "count")]), Ok(None));
        assert_eq!(parse(&[("_summary", "true")]), Ok(Some(Subset::Summary)));
        assert_eq!(parse(&[("_summary", "text")]), Ok(Some(Subset::Text)));
        assert_eq!(
            parse(&[("_summary", "true"), ("_summary", "data")]),
            Ok(Some(Subset::Data))
        );
        assert_eq!(
            parse(&[
                ("_elements", "gender, Patient.birthDate"),
                ("_summary", "false"),
                ("_elements", "name")
            ]),
            Ok(Some(elements(&["gender", "Patient.birthDate", "name"])))
        );
        for refused in [
            &[("_summary", "bogus")][..],
            &[("_summary", "TRUE")],
            &[("_elements", "")],
            &[("_elements", "gender,")],
            &[("_elements", "Patient.name.given")],
            &[("_elements", "Nothing.name")],
            &[("_elements", "_birthDate")],
            &[("_summary", "true"), ("_elements", "gender")],
        ] {
            let error = parse(refused).unwrap_err();
            assert_eq!(error.status, 400, "{refused:?}");
        }
    }

    #[test]
    fn every_r4_resource_type_is_defined() {
        assert_eq!(DEFINITIONS.len(), fhirlake_model::RESOURCE_TYPES.len());
        for resource_type in fhirlake_model::RESOURCE_TYPES {
            let root = &DEFINITIONS[*resource_type];
            for name in ["id", "meta", "implicitRules"] {
                assert!(root.summary.contains(name), "{resource_type}.{name}");
            }
            assert!(!root.summary.contains("text"), "{resource_type}.text");
            check_children(resource_type, root, root);
        }
    }

    /// Every reused backbone element of `node` (in `root`) names one that is defined.
    fn check_children(path: &str, root: &Node, node: &Node) {
        for (name, child) in &node.children {
            let resolved = root.backbone(node, name);
            assert!(resolved.is_some(), "{path}.{name}: {child:?}");
            if let Child::Defined(child) = child {
                check_children(&format!("{path}.{name}"), root, child);
            }
        }
    }

    /// An example of every type cut by `_summary=text|data` or `_elements` is still a valid
    /// R4 resource: the mandatory elements stay. (Not so `_summary=true`: some mandatory
    /// elements are not summary, such as AuditEvent.agent and AuditEvent.source.)
    #[test]
    fn an_example_of_every_type_stays_a_valid_resource() {
        let ways = [Subset::Text, Subset::Data, elements(&["identifier"])];
        let mut types = HashSet::new();
        for resource in EXAMPLES.iter() {
            // One valid example per type: checking them all takes minutes.
            if types.contains(&resource["resourceType"])
                || fhirlake_model::check_resource(resource).is_err()
            {
                continue;
            }
            types.insert(&resource["resourceType"]);
            for how in &ways {
                let cut = cut(resource, how);
                if let Err(problem) = fhirlake_model::check_resource(&cut) {
                    panic!(
                        "{}/{} {how:?}: {problem:?}",
                        resource["resourceType"], resource["id"]
                    );
                }
            }
        }
        assert!(types.len() > 130, "examples of only {} types", types.len());
    }

    /// A resource of a few types made of element names from a pool (summary or not,
    /// `_`-prefixed, choice and backbone elements, unknown names) and arbitrary values.
    fn arbitrary_resource() -> impl Strategy<Value = Value> {
        const NAMES: &[&str] = &[
            "text",
            "identifier",
            "name",
            "birthDate",
            "_birthDate",
            "gender",
            "status",
            "code",
            "valueQuantity",
            "valueString",
            "_valueString",
            "component",
            "contact",
            "parameter",
            "part",
            "entry",
            "link",
            "class",
            "classHistory",
            "extension",
            "contained",
            "modifierExtension",
            "unknown",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z]{0,5}".prop_map(Value::from),
        ];
        let value = leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 1..4).prop_map(Value::Array),
                prop::collection::vec((prop::sample::select(NAMES), inner), 1..4).prop_map(
                    |members| Value::Object(
                        members
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v))
                            .collect()
                    )
                ),
            ]
        });
        let types = prop::sample::select(
            &[
                "Patient",
                "Observation",
                "Encounter",
                "Parameters",
                "Bundle",
            ][..],
        );
        let meta = prop::option::of(any::<bool>().prop_map(|subsetted| {
            let tag = json!({"system": SUBSETTED_SYSTEM, "code": SUBSETTED_CODE});
            let tags = if subsetted { vec![tag] } else { vec![] };
            json!({"versionId": "1", "tag": tags})
        }));
        let members = prop::collection::vec((prop::sample::select(NAMES), value), 0..10);
        (types, "[a-z0-9]{1,8}", meta, members).prop_map(|(resource_type, id, meta, members)| {
            let mut resource = Map::new();
            resource.insert("resourceType".into(), json!(resource_type));
            resource.insert("id".into(), json!(id));
            if let Some(meta) = meta {
                resource.insert("meta".into(), meta);
            }
            for (name, value) in members {
                resource.insert(name.to_string(), value);
            }
            Value::Object(resource)
        })
    }

    fn arbitrary_subset() -> impl Strategy<Value = Subset> {
        let names = prop::sample::select(
            &[
                "gender",
                "value",
                "component",
                "Patient.name",
                "Observation.code",
                "class",
            ][..],
        );
        prop_oneof![
            Just(Subset::Summary),
            Just(Subset::Text),
            Just(Subset::Data),
            prop::collection::vec(names.prop_map(String::from), 1..4).prop_map(Subset::Elements),
        ]
    }

    proptest! {
        #[test]
        fn a_subset_is_a_tagged_part_of_the_resource_in_its_order(
            resource in arbitrary_resource(),
            how in arbitrary_subset(),
        ) {
            let out = cut(&resource, &how);
            prop_assert_eq!(&out["resourceType"], &resource["resourceType"]);
            prop_assert_eq!(&out["id"], &resource["id"]);
            prop_assert_eq!(subsetted_tags(&out), 1);
            // The input's members, in the input's order; a meta that was missing comes last.
            let input = keys(&resource);
            let mut output = keys(&out);
            if !input.contains(&"meta") {
                prop_assert_eq!(output.pop(), Some("meta"));
            }
            let mut rest = input.iter();
            for key in &output {
                prop_assert!(rest.any(|k| k == key), "{} out of order in {:?}", key, output);
            }
            prop_assert_eq!(cut(&out, &how), out);
        }
    }
}
