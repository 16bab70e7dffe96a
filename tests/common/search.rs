//! What the search tests share: a server loaded with Synthea patients, plain scans of what it
//! holds (the expectations), and the results of a search across its pages.

use super::fhir::{Fhir, id_of, link, type_and_id};
use super::synthea;
use serde_json::Value;
use std::collections::BTreeSet;

/// A server with the Synthea providers and a few patients loaded from their unchanged
/// bundles (conditional references and ifNoneExist resolved by the server).
pub fn loaded(patients: usize) -> Fhir {
    let fhir = Fhir::start();
    for prefix in ["0-hospitalInformation", "0-practitionerInformation"] {
        fhir.bundle(&synthea::bundle(prefix)).expect(200, prefix);
    }
    let names = [
        "057aa36e", "0696ac49", "085e81c0", "098fc002", "0ef7a3b5", "0f2074a0",
    ];
    for name in names.iter().take(patients) {
        fhir.bundle(&synthea::bundle(name)).expect(200, name);
    }
    fhir
}

/// Every current resource of a type, by a plain scan of its history.
pub fn all(fhir: &Fhir, resource_type: &str) -> Vec<Value> {
    fhir.whole_history(&format!("{resource_type}/_history"))
        .into_iter()
        .filter_map(|entry| entry.get("resource").cloned())
        .collect()
}

/// The resources a search matches, in order, following every `next` link.
pub fn ordered(fhir: &Fhir, query: &str) -> Vec<Value> {
    let mut matches = Vec::new();
    let mut bundle = fhir.get(query).expect(200, query).resource();
    loop {
        assert_eq!(bundle["type"], "searchset");
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            if entry["search"]["mode"] == "match" {
                matches.push(entry["resource"].clone());
            }
        }
        match link(&bundle, "next") {
            Some(next) => bundle = fhir.new_client().get_absolute(&next),
            None => return matches,
        }
    }
}

/// The ids a search matches, following every `next` link.
pub fn search(fhir: &Fhir, query: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for resource in ordered(fhir, query) {
        assert!(ids.insert(id_of(&resource)), "{query}: a match repeats");
    }
    ids
}

/// The ids of the `resources` that `keep` accepts.
pub fn ids(resources: &[Value], keep: impl Fn(&Value) -> bool) -> BTreeSet<String> {
    resources.iter().filter(|r| keep(r)).map(id_of).collect()
}

/// The `(system, code)` of each coding of a CodeableConcept.
pub fn codings(concept: &Value) -> Vec<(String, String)> {
    concept["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["system"].as_str().unwrap_or("").to_string(),
                c["code"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The `Type/id`s of the matches and of the includes of the first page of a search.
pub fn page_modes(fhir: &Fhir, query: &str) -> (Vec<String>, Vec<String>) {
    let bundle = fhir.get(query).expect(200, query).resource();
    let (mut matches, mut includes) = (Vec::new(), Vec::new());
    for entry in bundle["entry"].as_array().into_iter().flatten() {
        let key = type_and_id(&entry["resource"]);
        match entry["search"]["mode"].as_str() {
            Some("match") => matches.push(key),
            Some("include") => includes.push(key),
            _ => {}
        }
    }
    (matches, includes)
}

/// `keys` as a set, asserting that none repeats.
pub fn set(keys: &[String]) -> BTreeSet<String> {
    let unique: BTreeSet<String> = keys.iter().cloned().collect();
    assert_eq!(unique.len(), keys.len(), "no resource twice: {keys:?}");
    unique
}
