//! The official FHIRPath test suite (`r4/fhirpath/tests-fhir-r4.xml` of FHIR's test cases in
//! `../shared`), run against this evaluator: what it passes is a floor that must not fall.
//!
//! Skipped: tests whose input exists only as XML, `mode="strict"` tests (they check paths
//! against the FHIR model, which this evaluator does not know) and outputs of types it does
//! not produce (Quantity, date and time values as typed literals).

use super::{evaluate, parse};
use crate::fhir::test_data::test_cases;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// What the suite's files are, by base name: the test XML and the example inputs.
fn suite() -> HashMap<String, String> {
    test_cases(|name| name.starts_with("r4/fhirpath/") || name.starts_with("r4/examples/"))
        .into_iter()
        .map(|(name, text)| (name.rsplit('/').next().unwrap_or(&name).to_string(), text))
        .collect()
}

/// How one test went.
#[derive(Debug, PartialEq)]
enum Outcome {
    Passed,
    Failed(String),
    Skipped,
}

fn run(test: roxmltree::Node<'_, '_>, inputs: &HashMap<String, Value>) -> Outcome {
    let Some(expression) = test.children().find(|n| n.has_tag_name("expression")) else {
        return Outcome::Skipped;
    };
    let input_name = test
        .attribute("inputfile")
        .unwrap_or("")
        .replace(".xml", ".json");
    let Some(input) = inputs.get(&input_name) else {
        return Outcome::Skipped;
    };
    if test.attribute("mode") == Some("strict") {
        return Outcome::Skipped;
    }
    let outputs: Vec<(&str, &str)> = test
        .children()
        .filter(|n| n.has_tag_name("output"))
        .map(|n| (n.attribute("type").unwrap_or(""), n.text().unwrap_or("")))
        .collect();
    if outputs.iter().any(|(ty, _)| {
        !matches!(
            *ty,
            "boolean" | "integer" | "decimal" | "string" | "code" | "id"
        )
    }) {
        return Outcome::Skipped;
    }
    let text = expression.text().unwrap_or("");
    let invalid = expression.attribute("invalid").is_some();
    let result = parse(text)
        .map_err(|e| e.to_string())
        .and_then(|expr| evaluate(&expr, input).map_err(|e| e.to_string()));
    let got = match result {
        Err(_) if invalid => return Outcome::Passed,
        Err(error) => return Outcome::Failed(format!("{text}: {error}")),
        Ok(_) if invalid => return Outcome::Failed(format!("{text}: expected an error")),
        Ok(items) => items,
    };
    let rendered: Vec<String> = got
        .iter()
        .map(|item| match super::operators::string(item) {
            Some(text) => text,
            None => format!("{item:?}"),
        })
        .collect();
    let expected: Vec<String> = outputs.iter().map(|(_, v)| v.to_string()).collect();
    if rendered == expected {
        Outcome::Passed
    } else {
        Outcome::Failed(format!("{text}: got {rendered:?}, expected {expected:?}"))
    }
}

#[test]
fn the_official_fhirpath_suite_passes_at_least_its_floor() {
    let files = suite();
    let inputs: HashMap<String, Value> = files
        .iter()
        .filter(|(name, _)| name.ends_with(".json"))
        .filter_map(|(name, text)| Some((name.clone(), serde_json::from_str(text).ok()?)))
        .collect();
    let xml = &files["tests-fhir-r4.xml"];
    let document = roxmltree::Document::parse(xml).expect("the suite's XML");
    let mut by_group: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let (mut passed, mut failed, mut skipped) = (0, Vec::new(), 0);
    for group in document.descendants().filter(|n| n.has_tag_name("group")) {
        let name = group.attribute("name").unwrap_or("").to_string();
        for test in group.children().filter(|n| n.has_tag_name("test")) {
            let counts = by_group.entry(name.clone()).or_default();
            match run(test, &inputs) {
                Outcome::Passed => {
                    passed += 1;
                    counts.0 += 1;
                }
                Outcome::Failed(why) => {
                    failed.push(format!("{name}: {why}"));
                    counts.1 += 1;
                }
                Outcome::Skipped => skipped += 1,
            }
        }
    }
    for line in &failed {
        println!("{line}");
    }
    println!(
        "passed {passed}, failed {}, skipped {skipped}",
        failed.len()
    );
    assert!(
        passed >= FLOOR,
        "passed {passed}, below the floor of {FLOOR}"
    );
}

/// The number of tests passed when this floor was last raised.
const FLOOR: usize = 450;
