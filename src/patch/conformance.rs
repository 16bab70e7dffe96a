//! FHIR's own FHIRPath Patch cases (`r4/patch/fhir-patch-tests.xml` of the FHIR test cases in
//! `../shared`), run on [`Patch`]: every case passes, none is skipped.
//!
//! The cases are FHIR XML; they are read into FHIR JSON here with the R4 definitions (which
//! elements repeat, which values are numbers or booleans) that the patch itself uses. XHTML
//! narrative is compared by its elements and text, not its serialization.

use super::elements::{JsonKind, Place, json_kind};
use super::fhirpath::{Slot, put_slot};
use super::{Format, Patch};
use crate::fhir::test_data::test_case;
use roxmltree::Node;
use serde_json::{Map, Value, json};

/// The test file's text.
fn cases() -> String {
    test_case("r4/patch/fhir-patch-tests.xml")
}

fn elements<'a, 'i>(node: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children().filter(Node::is_element)
}

/// A resource in FHIR XML as FHIR JSON.
fn resource(node: Node<'_, '_>) -> Value {
    let resource_type = node.tag_name().name();
    let place = Place::of_resource(resource_type)
        .unwrap_or_else(|| panic!("{resource_type} is not an R4 resource"));
    let mut object = Map::new();
    object.insert("resourceType".into(), json!(resource_type));
    children(&mut object, node, &place);
    Value::Object(object)
}

/// The child elements of `node` (defined at `place`) as members of `object`.
fn children(object: &mut Map<String, Value>, node: Node<'_, '_>, place: &Place) {
    let mut slots: Vec<(String, Slot)> = Vec::new();
    for element in elements(node) {
        let name = element.tag_name().name();
        let child = place
            .child(name)
            .unwrap_or_else(|| panic!("'{name}' is not an element of {:?}", node.tag_name()));
        let entry = if name == "div" {
            let source = &node.document().input_text()[element.range()];
            (Some(json!(source)), None)
        } else if child.is_primitive() {
            let value = element.attribute("value").map(|text| {
                match json_kind(child.type_code.as_deref().unwrap_or("string")) {
                    JsonKind::Bool => json!(text == "true"),
                    JsonKind::Number => serde_json::from_str(text).expect("a number"),
                    JsonKind::String => json!(text),
                }
            });
            let mut companion = Map::new();
            attributes(&mut companion, element);
            children(&mut companion, element, &Place::of_primitive());
            (
                value,
                (!companion.is_empty()).then_some(Value::Object(companion)),
            )
        } else if child.holds_resources() {
            let inner = elements(element).next().expect("a resource inside");
            (Some(resource(inner)), None)
        } else {
            let mut inner = Map::new();
            attributes(&mut inner, element);
            let place = child.place(None).expect("a complex element");
            children(&mut inner, element, &place);
            (Some(Value::Object(inner)), None)
        };
        match slots.iter_mut().find(|(member, _)| member == name) {
            Some((_, slot)) => slot.entries.push(entry),
            None => slots.push((
                name.to_string(),
                Slot {
                    entries: vec![entry],
                    array: child.repeats(),
                },
            )),
        }
    }
    for (name, slot) in slots {
        put_slot(object, &name, slot);
    }
}

/// `id` and `url` (of an Extension), which XML gives as attributes.
fn attributes(object: &mut Map<String, Value>, element: Node<'_, '_>) {
    for name in ["id", "url"] {
        if let Some(value) = element.attribute(name) {
            object.insert(name.into(), json!(value));
        }
    }
}

/// `value` with every narrative `div` reduced to its elements and words.
fn comparable(value: &Value) -> Value {
    match value {
        Value::Object(members) => Value::Object(
            members
                .iter()
                .map(|(name, value)| match (name.as_str(), value) {
                    ("div", Value::String(xhtml)) => (name.clone(), json!(xhtml_outline(xhtml))),
                    _ => (name.clone(), comparable(value)),
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(comparable).collect()),
        other => other.clone(),
    }
}

fn xhtml_outline(xhtml: &str) -> String {
    let document = roxmltree::Document::parse(xhtml).expect("XHTML");
    document
        .root_element()
        .descendants()
        .filter_map(|node| {
            if node.is_element() {
                Some(format!("<{}>", node.tag_name().name()))
            } else {
                let words = node
                    .text()?
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                (!words.is_empty()).then_some(words)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn the_official_fhirpath_patch_cases_pass() {
    let text = cases();
    let document = roxmltree::Document::parse(&text).expect("the cases' XML");
    let (mut passed, mut failed) = (0, Vec::new());
    for case in document.descendants().filter(|n| n.has_tag_name("case")) {
        let name = case.attribute("name").unwrap_or("?");
        let part = |tag: &str| {
            case.children()
                .find(|n| n.has_tag_name(tag))
                .and_then(|n| elements(n).next())
        };
        let input = resource(part("input").expect("an input"));
        let diff = resource(part("diff").expect("a diff"));
        let expected = part("output").map(resource);
        let result = Patch::parse(Format::Fhir, diff.to_string().as_bytes())
            .and_then(|patch| patch.apply(&input, 1 << 20))
            .map(|intake| intake.resource);
        let outcome = match (result, expected) {
            (Ok(got), Some(expected)) if comparable(&got) == comparable(&expected) => Ok(()),
            (Ok(got), Some(expected)) => Err(format!("got {got}, expected {expected}")),
            (Ok(got), None) => Err(format!("expected an error, got {got}")),
            (Err(error), None) if error.status == 422 => Ok(()),
            (Err(error), _) => Err(format!("failed: {error:?}")),
        };
        match outcome {
            Ok(()) => passed += 1,
            Err(why) => failed.push(format!("{name}: {why}")),
        }
    }
    println!(
        "FHIRPath Patch cases: {passed} passed, {} failed",
        failed.len()
    );
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    assert_eq!(passed, 33);
}
