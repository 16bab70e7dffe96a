//! `_text` and `_content` over HTTP on Synthea data. Every expectation comes from a plain scan
//! of the loaded resources' JSON: the narrative's words, or the words of every string but
//! those the server documents as no text (ids, references, URIs, binary data, dates).

mod common;

use common::fhir::{Fhir, assert_outcome, link, patient, type_and_id};
use common::search::{all, ids, loaded, ordered, search};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// The members whose strings `_content` leaves out.
const NOT_TEXT: &[&str] = &[
    "resourceType",
    "id",
    "versionId",
    "lastUpdated",
    "reference",
    "system",
    "url",
    "profile",
    "data",
    "hash",
    "valueBase64Binary",
];

/// The words of `text`: runs of letters and digits, lower case, without the accents the test
/// writes (Synthea's texts are ASCII).
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            w.to_lowercase()
                .replace('ü', "u")
                .replace('ë', "e")
                .replace('ó', "o")
        })
        .collect()
}

/// The text of a narrative: its `div` without tags.
fn narrative_of(narrative: &Value) -> String {
    let div = narrative["div"].as_str().unwrap_or("");
    let mut text = String::new();
    let mut in_tag = false;
    for c in div.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text
}

/// The resource's narrative, as one text (none without one).
fn narrative(resource: &Value) -> Vec<String> {
    resource.get("text").map(narrative_of).into_iter().collect()
}

/// Every text of the resource that `_content` searches, one per JSON string.
fn content(resource: &Value) -> Vec<String> {
    fn walk(name: &str, value: &Value, out: &mut Vec<String>) {
        match value {
            _ if NOT_TEXT.contains(&name) => {}
            Value::String(text) if !is_date(text) => out.push(text.clone()),
            Value::Object(_) if name == "text" => out.push(narrative_of(value)),
            Value::Object(members) => members.iter().for_each(|(n, v)| walk(n, v, out)),
            Value::Array(items) => items.iter().for_each(|item| walk(name, item, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", resource, &mut out);
    out
}

/// Whether `text` is a date to the month or day, a dateTime or an instant.
fn is_date(text: &str) -> bool {
    let digits = |part: Option<&str>| part.is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
    let (date, time) = text.split_once('T').unwrap_or((text, ""));
    let parts: Vec<&str> = date.split('-').collect();
    (2..=3).contains(&parts.len())
        && parts
            .iter()
            .map(|p| p.len())
            .eq([4, 2, 2].into_iter().take(parts.len()))
        && parts.iter().all(|p| digits(Some(p)))
        && (time.is_empty()
            || parts.len() == 3 && time.chars().all(|c| "0123456789:.+-Z".contains(c)))
}

/// Whether one of `texts` has the words of `phrase` one right after another.
fn has(texts: &[String], phrase: &str) -> bool {
    let phrase = words(phrase);
    texts
        .iter()
        .any(|text| words(text).windows(phrase.len()).any(|w| w == phrase))
}

/// The ids of a search of `resource_type` (all types when empty) with `params`, encoded.
fn find(fhir: &Fhir, resource_type: &str, params: &[(&str, &str)]) -> BTreeSet<String> {
    search(fhir, &query(resource_type, params))
}

fn query(resource_type: &str, params: &[(&str, &str)]) -> String {
    let encoded = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    format!("{resource_type}?{encoded}")
}

#[test]
fn words_phrases_and_or_match_a_plain_scan() {
    let fhir = loaded(3);
    let conditions = all(&fhir, "Condition");
    let with = |keep: &dyn Fn(&[String]) -> bool| ids(&conditions, |c| keep(&content(c)));
    let content_of = |value: &str| find(&fhir, "Condition", &[("_content", value)]);

    // One word, in any case and with accents.
    let hypertension = with(&|t| has(t, "hypertension"));
    assert!(!hypertension.is_empty());
    for value in ["hypertension", "HyperTension", "hypertensión"] {
        assert_eq!(content_of(value), hypertension, "{value}");
    }
    // A phrase: its words one after another in one text.
    let acute_bronchitis = with(&|t| has(t, "acute bronchitis"));
    assert!(!acute_bronchitis.is_empty());
    assert_eq!(content_of("\"Acute bronchitis\""), acute_bronchitis);
    assert!(content_of("\"bronchitis acute\"").is_empty());
    // Two words anywhere, with or without AND.
    let acute_viral = with(&|t| has(t, "acute") && has(t, "viral"));
    assert!(!acute_viral.is_empty() && acute_viral.len() < with(&|t| has(t, "acute")).len());
    assert_eq!(content_of("viral acute"), acute_viral);
    assert_eq!(content_of("viral AND acute"), acute_viral);
    // OR, commas (OR too), parentheses, repeated parameters (AND).
    let either = with(&|t| has(t, "hypertension") || has(t, "prediabetes"));
    assert!(either.len() > hypertension.len());
    assert_eq!(content_of("hypertension OR prediabetes"), either);
    assert_eq!(content_of("hypertension,prediabetes"), either);
    let viral = with(&|t| (has(t, "sinusitis") || has(t, "pharyngitis")) && has(t, "viral"));
    assert!(!viral.is_empty());
    assert_eq!(content_of("(sinusitis OR pharyngitis) viral"), viral);
    assert_eq!(
        find(
            &fhir,
            "Condition",
            &[("_content", "acute"), ("_content", "viral")]
        ),
        acute_viral
    );
    // Codes are text, their systems are not.
    assert!(conditions.iter().all(|c| c.to_string().contains("snomed")));
    assert!(content_of("snomed").is_empty());
    let code = conditions[0]["code"]["coding"][0]["code"].as_str().unwrap();
    assert!(content_of(code).contains(conditions[0]["id"].as_str().unwrap()));
}

#[test]
fn text_searches_the_narrative_and_content_everything() {
    let fhir = loaded(3);
    let care_plans = all(&fhir, "CarePlan");
    let patients = all(&fhir, "Patient");
    let expect = |resources: &[Value], param: &str, value: &str| {
        let texts: fn(&Value) -> Vec<String> = match param {
            "_text" => narrative,
            _ => content,
        };
        let expected = ids(resources, |r| has(&texts(r), value));
        let resource_type = resources[0]["resourceType"].as_str().unwrap();
        assert_eq!(
            find(&fhir, resource_type, &[(param, value)]),
            expected,
            "{resource_type}?{param}={value}"
        );
        expected
    };
    // A word of the activities' codings only: found by _content, not by _text.
    let in_content = expect(&care_plans, "_content", "exercise");
    let in_narrative = expect(&care_plans, "_text", "exercise");
    assert!(in_narrative.len() < in_content.len());
    // Words of the narrative: found by both.
    let treat = expect(&care_plans, "_text", "\"meant to treat\"");
    assert!(!treat.is_empty());
    assert_eq!(expect(&care_plans, "_content", "\"meant to treat\""), treat);
    // A patient's narrative says Synthea made it; its name is not in it.
    assert_eq!(expect(&patients, "_text", "synthea").len(), patients.len());
    let family = patients[0]["name"][0]["family"].as_str().unwrap();
    assert!(expect(&patients, "_text", family).is_empty());
    assert!(expect(&patients, "_content", family).contains(patients[0]["id"].as_str().unwrap()));

    // Accents and case, also written as combining marks.
    let mut muller = patient("Müller");
    muller["name"][0]["given"] = json!(["Zoë"]);
    let muller = fhir.create(&muller);
    let decomposed = fhir.create(&patient("Mu\u{308}ller"));
    let id = |p: &Value| p["id"].as_str().unwrap().to_string();
    let find_patients = |value: &str| find(&fhir, "Patient", &[("_content", value)]);
    let both: BTreeSet<String> = [id(&muller), id(&decomposed)].into();
    for value in ["MULLER", "müller", "Mu\u{308}ller"] {
        assert_eq!(find_patients(value), both, "{value}");
    }
    assert_eq!(find_patients("zoe muller"), [id(&muller)].into());
}

#[test]
fn every_type_is_searched_and_malformed_values_are_refused() {
    let fhir = loaded(1);
    // All types: `GET /fhir?_content=...`
    // Nothing was updated: every version in the history is current.
    let expected: BTreeSet<String> = fhir
        .system_history()
        .iter()
        .filter_map(|entry| entry.get("resource"))
        .filter(|r| has(&content(r), "prediabetes"))
        .map(type_and_id)
        .collect();
    let types: BTreeSet<&str> = expected
        .iter()
        .map(|k| k.split('/').next().unwrap())
        .collect();
    assert!(types.len() > 1, "{types:?}");
    let found: BTreeSet<String> = ordered(&fhir, &query("", &[("_content", "prediabetes")]))
        .iter()
        .map(type_and_id)
        .collect();
    assert_eq!(found, expected);
    // Bundle has no narrative, so no _text.
    let strict = [("Prefer", "handling=strict")];
    assert_outcome(
        &fhir.get_with(&query("Bundle", &[("_text", "x")]), &strict),
        400,
        &["not-supported"],
    );

    // Malformed values: 400 in either handling.
    for (param, value) in [
        ("_content", "\"acute"),
        ("_content", "(acute OR"),
        ("_content", "+++"),
        ("_text", "acute AND"),
    ] {
        let path = query("Condition", &[(param, value)]);
        for headers in [&strict[..], &[]] {
            let outcome = assert_outcome(&fhir.get_with(&path, headers), 400, &["invalid"]);
            let reason = outcome["issue"][0]["diagnostics"].as_str().unwrap();
            assert!(reason.starts_with(param), "{path}: {reason}");
        }
    }
    // An empty value is ignored.
    let conditions = all(&fhir, "Condition");
    let empty = query("Condition", &[("_content", "")]);
    assert_eq!(search(&fhir, &empty).len(), conditions.len());
    // Modifiers and sorts full text does not have: 400 under handling=strict, else ignored and
    // reported.
    for (param, value) in [
        ("_content:not", "acute"),
        ("_text:exact", "acute"),
        ("_sort", "_content"),
    ] {
        let path = query("Condition", &[(param, value)]);
        let outcome = assert_outcome(&fhir.get_with(&path, &strict), 400, &["not-supported"]);
        let reason = outcome["issue"][0]["diagnostics"].as_str().unwrap();
        assert!(reason.starts_with(param), "{path}: {reason}");
        let lenient = fhir.get(&path).expect(200, &path).resource();
        let reported = lenient["entry"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["search"]["mode"] == "outcome");
        assert!(reported, "{path}: no outcome entry");
        assert!(!link(&lenient, "self").unwrap().contains(param), "{path}");
        assert_eq!(search(&fhir, &path).len(), conditions.len(), "{path}");
    }
}

#[test]
fn the_capability_statement_lists_text_and_content() {
    let fhir = Fhir::start();
    let statement = fhir.get("metadata").expect(200, "metadata").resource();
    let params = |resource_type: &str| -> BTreeSet<String> {
        let resource = statement["rest"][0]["resource"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == resource_type)
            .unwrap();
        resource["searchParam"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(params("Patient").contains("_text") && params("Patient").contains("_content"));
    assert!(!params("Bundle").contains("_text") && params("Bundle").contains("_content"));
}
