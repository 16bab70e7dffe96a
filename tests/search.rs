//! FHIR search over HTTP on real Synthea data. Every expectation is computed by a plain scan
//! of the loaded resources (read back through history, not through the index).

mod common;

use common::fhir::{Fhir, assert_outcome, id_of, link, patient, version_of};
use common::synthea;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A server with the Synthea providers and a few patients loaded from their unchanged
/// bundles (conditional references and ifNoneExist resolved by the server).
fn loaded(patients: usize) -> Fhir {
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
fn all(fhir: &Fhir, resource_type: &str) -> Vec<Value> {
    fhir.whole_history(&format!("{resource_type}/_history"))
        .into_iter()
        .filter_map(|entry| entry.get("resource").cloned())
        .collect()
}

/// The ids a search matches, following every `next` link.
fn search(fhir: &Fhir, query: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut bundle = fhir.get(query).expect(200, query).resource();
    loop {
        assert_eq!(bundle["type"], "searchset");
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            if entry["search"]["mode"] == "match" {
                assert!(
                    ids.insert(id_of(&entry["resource"])),
                    "{query}: a match repeats"
                );
            }
        }
        match link(&bundle, "next") {
            Some(next) => bundle = fhir.new_client().get_absolute(&next),
            None => return ids,
        }
    }
}

fn ids(resources: &[Value], keep: impl Fn(&Value) -> bool) -> BTreeSet<String> {
    resources.iter().filter(|r| keep(r)).map(id_of).collect()
}

fn codings(concept: &Value) -> Vec<(String, String)> {
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

#[test]
fn search_matches_a_plain_scan_for_every_parameter_type() {
    let fhir = loaded(3);
    let observations = all(&fhir, "Observation");
    let patients = all(&fhir, "Patient");
    assert!(observations.len() > 500, "{}", observations.len());

    // token: system|code, code alone, and on a code element
    let heart_rate = ("http://loinc.org".to_string(), "8867-4".to_string());
    let expected = ids(&observations, |o| codings(&o["code"]).contains(&heart_rate));
    assert!(!expected.is_empty());
    assert_eq!(
        search(&fhir, "Observation?code=http://loinc.org|8867-4&_count=7"),
        expected
    );
    assert_eq!(search(&fhir, "Observation?code=8867-4"), expected);
    assert!(search(&fhir, "Observation?code=http://snomed.info/sct|8867-4").is_empty());
    for gender in ["male", "female"] {
        let expected = ids(&patients, |p| p["gender"] == gender);
        assert_eq!(search(&fhir, &format!("Patient?gender={gender}")), expected);
    }
    // OR across commas, AND across repeats, :not
    let vitals = ids(&observations, |o| {
        codings(&o["code"])
            .iter()
            .any(|(_, c)| c == "8867-4" || c == "9279-1")
    });
    assert_eq!(search(&fhir, "Observation?code=8867-4,9279-1"), vitals);
    let not_heart_rate = ids(&observations, |o| {
        !codings(&o["code"]).contains(&heart_rate)
    });
    assert_eq!(
        search(&fhir, "Observation?code:not=http://loinc.org|8867-4"),
        not_heart_rate
    );

    // string: case- and accent-insensitive prefix, :exact, :contains
    let family = patients[0]["name"][0]["family"]
        .as_str()
        .unwrap()
        .to_string();
    let start = family[..3].to_lowercase();
    let expected = ids(&patients, |p| {
        p["name"].as_array().unwrap().iter().any(|n| {
            let parts = n["given"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(std::iter::once(&n["family"]));
            parts
                .filter_map(Value::as_str)
                .any(|s| s.to_lowercase().starts_with(&start))
        })
    });
    assert_eq!(search(&fhir, &format!("Patient?name={start}")), expected);
    assert!(
        search(
            &fhir,
            &format!("Patient?family:exact={}", family.to_lowercase())
        )
        .is_empty()
            || family == family.to_lowercase()
    );
    assert!(
        search(&fhir, &format!("Patient?family:exact={family}")).contains(&id_of(&patients[0]))
    );
    let middle = &family[1..family.len() - 1];
    assert!(
        search(&fhir, &format!("Patient?family:contains={middle}")).contains(&id_of(&patients[0]))
    );

    // reference: Type/id, id alone, a param of one target type
    let subject = id_of(&patients[1]);
    let expected = ids(&observations, |o| {
        o["subject"]["reference"] == format!("Patient/{subject}")
    });
    assert!(!expected.is_empty());
    assert_eq!(
        search(&fhir, &format!("Observation?subject=Patient/{subject}")),
        expected
    );
    assert_eq!(
        search(&fhir, &format!("Observation?patient={subject}")),
        expected
    );
    assert_eq!(
        search(&fhir, &format!("Observation?subject:Patient={subject}")),
        expected
    );

    // date with prefixes (Synthea writes effectiveDateTime to the second, with an offset)
    let effective = |o: &Value| {
        OffsetDateTime::parse(o["effectiveDateTime"].as_str().unwrap(), &Rfc3339).unwrap()
    };
    let day = time::macros::datetime!(2015-06-01 00:00 UTC);
    let next_day = day + time::Duration::days(1);
    let expected = ids(&observations, |o| effective(o) >= day);
    assert_eq!(search(&fhir, "Observation?date=ge2015-06-01"), expected);
    let expected = ids(&observations, |o| effective(o) < day);
    assert_eq!(search(&fhir, "Observation?date=lt2015-06-01"), expected);
    let expected = ids(&observations, |o| {
        effective(o) >= day && effective(o) < next_day
    });
    assert_eq!(search(&fhir, "Observation?date=2015-06-01"), expected);
    let expected = ids(&observations, |o| effective(o).year() == 2015);
    assert_eq!(
        search(&fhir, "Observation?date=ge2015&date=lt2016"),
        expected
    );

    // quantity with a prefix, with and without units
    let value = |o: &Value| o["valueQuantity"]["value"].as_f64();
    let expected = ids(&observations, |o| value(o).is_some_and(|v| v > 100.0));
    assert_eq!(search(&fhir, "Observation?value-quantity=gt100"), expected);
    let expected = ids(&observations, |o| {
        value(o).is_some_and(|v| v > 100.0) && o["valueQuantity"]["code"] == "mg/dL"
    });
    assert_eq!(
        search(
            &fhir,
            "Observation?value-quantity=gt100|http://unitsofmeasure.org|mg/dL"
        ),
        expected
    );

    // :missing and _id
    let without_value = ids(&observations, |o| {
        o.get("valueQuantity").is_none()
            && o.get("valueCodeableConcept").is_none()
            && o.get("valueString").is_none()
    });
    assert_eq!(
        search(
            &fhir,
            "Observation?value-quantity:missing=true&value-concept:missing=true&value-string:missing=true"
        ),
        without_value
    );
    let one = id_of(&observations[0]);
    assert_eq!(
        search(&fhir, &format!("Observation?_id={one}")),
        BTreeSet::from([one])
    );
}

#[test]
fn totals_paging_post_search_and_unknown_parameters() {
    let fhir = loaded(1);
    let encounters = all(&fhir, "Encounter");
    let count = fhir
        .get("Encounter?_summary=count")
        .expect(200, "count")
        .resource();
    assert_eq!(count["total"], encounters.len());
    assert!(count.get("entry").is_none());
    let none = fhir
        .get("Encounter?_total=none&_count=5")
        .expect(200, "no total")
        .resource();
    assert!(none.get("total").is_none());
    assert_eq!(none["entry"].as_array().unwrap().len(), 5);
    // Pages stay stable while resources are added between them.
    let first = fhir
        .get("Encounter?_count=10")
        .expect(200, "page 1")
        .resource();
    fhir.create(&json!({"resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}}));
    let mut seen = BTreeSet::new();
    let mut bundle = first;
    loop {
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            assert!(seen.insert(id_of(&entry["resource"])));
        }
        match link(&bundle, "next") {
            Some(next) => bundle = fhir.new_client().get_absolute(&next),
            None => break,
        }
    }
    assert_eq!(
        seen.len(),
        encounters.len(),
        "the snapshot of page 1 holds for every page"
    );

    // POST _search with a form body
    let by_post = fhir
        .new_client()
        .post_form("Encounter/_search", &[("_summary", "count")])
        .json();
    assert_eq!(by_post["total"], encounters.len() + 1);

    // An unknown parameter: ignored and reported (lenient), 400 under handling=strict.
    let lenient = fhir
        .get("Encounter?unknown=1&_count=1")
        .expect(200, "lenient")
        .resource();
    let outcome = lenient["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["search"]["mode"] == "outcome")
        .expect("an outcome entry");
    assert!(
        outcome["resource"]["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("unknown")
    );
    assert!(!link(&lenient, "self").unwrap().contains("unknown"));
    assert_outcome(
        &fhir.get_with("Encounter?unknown=1", &[("Prefer", "handling=strict")]),
        400,
        &["not-supported"],
    );
    assert_outcome(&fhir.get("Encounter?_count=x"), 400, &["invalid"]);
}

#[test]
fn searches_read_their_own_writes_and_drive_conditional_interactions() {
    let fhir = Fhir::start();
    // Read your writes: a search right after a create finds it.
    for n in 0..20 {
        let mut body = patient(&format!("Writer{n}"));
        body["identifier"] =
            json!([{"system": "http://example.org/mrn", "value": format!("w{n}")}]);
        let created = fhir.create(&body);
        let found = search(
            &fhir,
            &format!("Patient?identifier=http://example.org/mrn|w{n}"),
        );
        assert_eq!(found, BTreeSet::from([id_of(&created)]));
    }
    // Conditional create: a match is returned instead of a new resource.
    let mut body = patient("Writer0");
    body["identifier"] = json!([{"system": "http://example.org/mrn", "value": "w0"}]);
    let existing = fhir
        .post_with(
            "Patient",
            &body,
            &[("If-None-Exist", "identifier=http://example.org/mrn|w0")],
        )
        .expect(200, "conditional create with a match")
        .resource();
    assert_eq!(version_of(&existing), "1");
    body["identifier"][0]["value"] = json!("new");
    fhir.post_with(
        "Patient",
        &body,
        &[("If-None-Exist", "identifier=http://example.org/mrn|new")],
    )
    .expect(201, "conditional create without a match");
    assert_outcome(
        &fhir.post_with(
            "Patient",
            &patient("x"),
            &[("If-None-Exist", "family=Writer")],
        ),
        412,
        &["conflict"],
    );
    // Conditional update and delete follow their one match.
    let mut update = patient("Updated");
    update["identifier"] = json!([{"system": "http://example.org/mrn", "value": "w1"}]);
    let updated = fhir
        .put("Patient?identifier=http://example.org/mrn|w1", &update)
        .expect(200, "conditional update")
        .resource();
    assert_eq!(version_of(&updated), "2");
    fhir.delete("Patient?identifier=http://example.org/mrn|w1")
        .expect(204, "conditional delete");
    fhir.get(&format!("Patient/{}", id_of(&updated)))
        .expect(410, "deleted");
    assert!(search(&fhir, "Patient?identifier=http://example.org/mrn|w1").is_empty());
}
