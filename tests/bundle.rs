//! Batch and transaction Bundles over `POST /fhir`: a whole Synthea patient as one transaction
//! (with its conditional references resolved by the test), atomicity, per-entry batch
//! outcomes, reference rewriting between entries, processing order, limits, `Prefer`, GET
//! entries answered by the endpoints' own code (searches, reads, history, capabilities),
//! conditional update and delete entries, and conditional deletes of several resources.
mod common;

use common::fhir::{
    Fhir, assert_issue, assert_outcome, check_references, id_of, link, map_references, patient,
    references, truncated, version_of,
};
use common::synthea;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};

/// Every version in the system history, newest first, as `(fullUrl, etag)` pairs, which
/// identify each version.
fn versions(fhir: &Fhir) -> Vec<(String, String)> {
    fhir.system_history()
        .iter()
        .map(|entry| {
            (
                entry["fullUrl"].as_str().expect("fullUrl").to_string(),
                entry["response"]["etag"]
                    .as_str()
                    .expect("etag")
                    .to_string(),
            )
        })
        .collect()
}

/// POSTs `transaction` and asserts that it is refused as a whole with `status` and one of
/// `codes`, that its diagnostics name the entry at fault (`entry`, or some entry when None) and
/// that nothing was stored. Returns the OperationOutcome.
fn assert_refused(
    fhir: &Fhir,
    transaction: &Value,
    status: u16,
    codes: &[&str],
    entry: Option<usize>,
) -> Value {
    let before = versions(fhir);
    let outcome = assert_outcome(&fhir.bundle(transaction), status, codes);
    match entry {
        Some(index) => {
            assert!(
                diagnostics(&outcome).starts_with(&format!("Bundle.entry[{index}]: ")),
                "{outcome}"
            );
            assert!(
                expression(&outcome).starts_with(&format!("Bundle.entry[{index}]")),
                "{outcome}"
            );
        }
        None => assert!(
            diagnostics(&outcome).starts_with("Bundle.entry["),
            "{outcome}"
        ),
    }
    assert_eq!(versions(fhir), before, "the change log moved");
    outcome
}

/// Asserts that Patient/`id` is at `version`, with the family name `family`.
fn assert_patient(fhir: &Fhir, id: &str, version: &str, family: &str) {
    let current = fhir
        .get(&format!("Patient/{id}"))
        .expect(200, "read")
        .resource();
    assert_eq!(version_of(&current), version);
    assert_eq!(current["name"][0]["family"], family);
}

fn diagnostics(outcome: &Value) -> &str {
    outcome["issue"][0]["diagnostics"]
        .as_str()
        .unwrap_or_else(|| panic!("no diagnostics in {outcome}"))
}

fn expression(outcome: &Value) -> &str {
    outcome["issue"][0]["expression"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no expression in {outcome}"))
}

fn observation(subject: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2", "display": "Body Height"}]},
        "subject": {"reference": subject},
        "valueQuantity": {"value": 170.2, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"}
    })
}

fn entry(full_url: Option<&str>, resource: Option<Value>, request: Value) -> Value {
    let mut entry = json!({ "request": request });
    if let Some(full_url) = full_url {
        entry["fullUrl"] = json!(full_url);
    }
    if let Some(resource) = resource {
        entry["resource"] = resource;
    }
    entry
}

fn post_entry(full_url: &str, resource: Value) -> Value {
    let kind = resource["resourceType"].as_str().expect("type").to_string();
    entry(
        Some(full_url),
        Some(resource),
        json!({"method": "POST", "url": kind}),
    )
}

fn put_entry(resource: Value) -> Value {
    let url = format!(
        "{}/{}",
        resource["resourceType"].as_str().expect("type"),
        resource["id"].as_str().expect("id")
    );
    entry(None, Some(resource), json!({"method": "PUT", "url": url}))
}

fn bundle(kind: &str, entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": kind, "entry": entries})
}

/// The response entries of a batch-response or transaction-response, after checking the type
/// and that there is one per request entry.
fn response_entries(response: &Value, kind: &str, count: usize) -> Vec<Value> {
    assert_eq!(response["resourceType"], "Bundle", "{response}");
    assert_eq!(
        response["type"],
        kind,
        "{}",
        truncated(&response.to_string())
    );
    let entries = response["entry"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        entries.len(),
        count,
        "one response entry per request entry: {}",
        truncated(&response.to_string())
    );
    entries
}

fn status_of(entry: &Value) -> &str {
    entry["response"]["status"]
        .as_str()
        .unwrap_or_else(|| panic!("no response.status in {entry}"))
}

/// `Type/id` of a response entry's `location` (`Type/id/_history/vid`), checking its shape.
fn location_of(entry: &Value, kind: &str) -> String {
    let location = entry["response"]["location"]
        .as_str()
        .unwrap_or_else(|| panic!("no response.location in {entry}"));
    let parts: Vec<&str> = location.split('/').collect();
    assert!(
        parts.len() == 4 && parts[0] == kind && parts[2] == "_history" && !parts[1].is_empty(),
        "location {location:?} is not {kind}/id/_history/vid"
    );
    format!("{}/{}", parts[0], parts[1])
}

/// Synthea's patient bundle as it is, before its providers exist: its conditional references
/// match nothing, so the transaction is refused (404 naming the entry) and nothing is stored.
/// After the providers' own unchanged batch bundles (ifNoneExist), the same bundle loads.
#[test]
fn synthea_patient_transaction_resolves_conditional_references_once_providers_exist() {
    let fhir = Fhir::start();
    let patient_bundle = synthea::bundle("057aa36e");
    assert_eq!(patient_bundle["type"], "transaction");
    let request_entries = patient_bundle["entry"].as_array().expect("entries");
    let reply = fhir.bundle(&patient_bundle);
    let outcome = assert_outcome(&reply, 404, &["not-found"]);
    let index: usize = diagnostics(&outcome)
        .strip_prefix("Bundle.entry[")
        .and_then(|rest| rest.split_once("]: "))
        .and_then(|(index, _)| index.parse().ok())
        .unwrap_or_else(|| panic!("diagnostics do not name the entry: {outcome}"));
    assert!(
        references(&request_entries[index]["resource"])
            .iter()
            .any(|r| r.contains("?identifier=")),
        "entry {index} named by {outcome} has no conditional reference"
    );
    assert!(
        versions(&fhir).is_empty(),
        "a refused transaction stored something"
    );

    for prefix in ["0-hospitalInformation", "0-practitionerInformation"] {
        let batch = synthea::bundle(prefix);
        let response = fhir.bundle(&batch).expect(200, prefix).resource();
        let created = response["entry"].as_array().expect("entries").len();
        assert_eq!(created, batch["entry"].as_array().unwrap().len());
        // Posting it again creates nothing that has an ifNoneExist: each one matches.
        let again = fhir.bundle(&batch).expect(200, prefix).resource();
        let requests = batch["entry"].as_array().unwrap();
        let mut conditional = 0;
        for (entry, request) in again["entry"].as_array().unwrap().iter().zip(requests) {
            if request["request"].get("ifNoneExist").is_some() {
                assert_eq!(entry["response"]["status"], "200 OK", "{entry}");
                conditional += 1;
            }
        }
        assert!(
            conditional > 100,
            "{prefix}: {conditional} conditional creates"
        );
    }
    let stored_before = versions(&fhir).len();
    let response = fhir
        .bundle(&patient_bundle)
        .expect(200, "patient bundle")
        .resource();
    let entries = response_entries(&response, "transaction-response", request_entries.len());
    for entry in &entries {
        assert_eq!(status_of(entry), "201 Created");
    }
    assert_eq!(versions(&fhir).len(), stored_before + request_entries.len());
    // Every conditional reference now names a stored provider.
    for entry in entries.iter().take(50) {
        for reference in references(&entry["resource"]) {
            assert!(!reference.contains('?'), "{reference} left unresolved");
            if !reference.starts_with('#') {
                fhir.get(&reference).expect(200, &reference);
            }
        }
    }
}

/// Synthea's providers, then the patient with its conditional references resolved by the
/// test: everything is stored and every reference points at a stored resource.
#[test]
fn synthea_patient_transaction_stores_everything_with_resolved_references() {
    let fhir = Fhir::start();
    let patient_bundle = synthea::bundle("057aa36e");
    let request_entries = patient_bundle["entry"].as_array().expect("entries").clone();
    assert!(request_entries.len() > 1000, "a big patient");

    // The providers, as a transaction of PUTs with their own ids.
    let synthea::Providers {
        transaction: providers,
        targets,
    } = synthea::referenced_providers();
    let provider_count = providers["entry"].as_array().unwrap().len();
    let response = fhir
        .bundle(&providers)
        .expect(200, "providers transaction")
        .resource();
    let entries = response_entries(&response, "transaction-response", provider_count);
    for (sent, got) in providers["entry"].as_array().unwrap().iter().zip(&entries) {
        assert_eq!(status_of(got), "201 Created", "{got}");
        let kind = sent["resource"]["resourceType"].as_str().unwrap();
        assert_eq!(
            location_of(got, kind),
            sent["request"]["url"].as_str().unwrap(),
            "PUT keeps the id"
        );
        assert_eq!(got["response"]["etag"], "W/\"1\"");
    }

    // The patient with its conditional references resolved by the test.
    let mut resolved = patient_bundle.clone();
    synthea::resolve(&mut resolved, &targets);
    assert!(
        !resolved.to_string().contains("?identifier="),
        "a conditional reference is left"
    );
    let request_entries = resolved["entry"].as_array().expect("entries").clone();
    let response = fhir
        .bundle(&resolved)
        .expect(200, "patient transaction")
        .resource();
    let entries = response_entries(&response, "transaction-response", request_entries.len());
    // fullUrl -> stored Type/id, from the response locations.
    let mut stored_as: HashMap<String, String> = HashMap::new();
    for (sent, got) in request_entries.iter().zip(&entries) {
        assert_eq!(status_of(got), "201 Created", "{got}");
        let kind = sent["resource"]["resourceType"].as_str().unwrap();
        let location = location_of(got, kind);
        assert!(
            got["response"]["location"]
                .as_str()
                .unwrap()
                .ends_with("/_history/1")
        );
        assert_eq!(got["response"]["etag"], "W/\"1\"");
        assert!(
            got["response"]["lastModified"].is_string(),
            "no lastModified: {}",
            got["response"]
        );
        let previous = stored_as.insert(
            sent["fullUrl"].as_str().expect("fullUrl").to_string(),
            location,
        );
        assert!(
            previous.is_none(),
            "duplicate fullUrl in the Synthea bundle"
        );
    }
    let distinct: HashSet<&String> = stored_as.values().collect();
    assert_eq!(
        distinct.len(),
        stored_as.len(),
        "every create has its own id"
    );

    // Read everything back; every reference must be the rewritten one and must resolve.
    let mut resolvable: HashMap<String, bool> = HashMap::new();
    let mut checked_references = 0;
    for (sent, got) in request_entries.iter().zip(&entries) {
        let target = &stored_as[sent["fullUrl"].as_str().unwrap()];
        let stored = fhir.get(target).expect(200, target).resource();
        assert_eq!(
            format!(
                "{}/{}",
                stored["resourceType"].as_str().unwrap(),
                stored["id"].as_str().unwrap()
            ),
            *target
        );
        assert_eq!(version_of(&stored), "1");
        for identifier in stored["identifier"].as_array().into_iter().flatten() {
            let sent_identifiers = sent["resource"]["identifier"].as_array().unwrap();
            assert!(
                sent_identifiers.contains(identifier),
                "{target}: identifier changed"
            );
        }
        // The representation returned in the transaction-response is what is stored.
        if got["resource"].is_object() {
            assert_eq!(got["resource"], stored, "response resource of {target}");
        }
        // The references the test sent, mapped to where their targets were stored.
        let mut expected = sent["resource"].clone();
        map_references(&mut expected, &mut |reference| {
            stored_as.get(reference).cloned()
        });
        assert_eq!(
            references(&stored),
            references(&expected),
            "references of {target}"
        );
        // No reference points at a urn any more, and every one resolves.
        checked_references += check_references(&stored, target, |reference| {
            let parts: Vec<&str> = reference.split('/').collect();
            assert!(
                parts.len() == 2 && !parts[1].is_empty() && !reference.contains(':'),
                "{target}: reference {reference:?} is not a relative Type/id"
            );
            let found = *resolvable
                .entry(reference.to_string())
                .or_insert_with(|| fhir.get(reference).status == 200);
            assert!(found, "{target}: reference {reference} does not resolve");
        });
    }
    assert!(checked_references > 5000, "{checked_references} references");
    // The providers' references were used, and the Patient is referenced by its new id.
    let patient_target = &stored_as[request_entries[0]["fullUrl"].as_str().unwrap()];
    assert!(patient_target.starts_with("Patient/"));
    assert!(resolvable.contains_key(patient_target));
    assert!(resolvable.keys().any(|r| r.starts_with("Practitioner/")));
    assert!(resolvable.keys().any(|r| r.starts_with("Organization/")));
    assert!(resolvable.keys().any(|r| r.starts_with("Location/")));
    assert_eq!(
        versions(&fhir).len(),
        provider_count + request_entries.len(),
        "one version per entry"
    );
}

#[test]
fn transaction_with_an_invalid_entry_stores_nothing() {
    let fhir = Fhir::start();
    let existing = fhir.create(&patient("Existing"));
    let existing_id = id_of(&existing);

    let mut changed = existing.clone();
    changed["name"][0]["family"] = json!("Changed");
    let mut bad = patient("Bad");
    bad["name"][0]["nickname"] = json!("x");
    let transaction = bundle(
        "transaction",
        vec![
            post_entry(
                "urn:uuid:6f0d7c36-54f5-4bb3-9d0e-7f0e2c9b7b01",
                patient("Good"),
            ),
            post_entry(
                "urn:uuid:6f0d7c36-54f5-4bb3-9d0e-7f0e2c9b7b02",
                observation("urn:uuid:6f0d7c36-54f5-4bb3-9d0e-7f0e2c9b7b01"),
            ),
            post_entry("urn:uuid:6f0d7c36-54f5-4bb3-9d0e-7f0e2c9b7b03", bad),
            put_entry(changed),
            entry(
                None,
                None,
                json!({"method": "DELETE", "url": format!("Patient/{existing_id}")}),
            ),
        ],
    );
    let outcome = assert_refused(
        &fhir,
        &transaction,
        400,
        &["structure", "invalid", "value"],
        Some(2),
    );
    assert!(
        expression(&outcome).starts_with("Bundle.entry[2].resource"),
        "{outcome}"
    );
    assert_eq!(
        expression(&outcome),
        "Bundle.entry[2].resource.ofType(Patient).name[0].nickname"
    );
    assert_patient(&fhir, &existing_id, "1", "Existing");
}

#[test]
fn transaction_with_a_stale_if_match_is_412_and_stores_nothing() {
    let fhir = Fhir::start();
    let created = fhir.create(&patient("V1"));
    let id = id_of(&created);
    let mut v2 = created.clone();
    v2["name"][0]["family"] = json!("V2");
    let reply = fhir.put(&format!("Patient/{id}"), &v2);
    assert!(
        reply.status == 200 || reply.status == 201,
        "PUT Patient/{id}: {} {}",
        reply.status,
        reply.text
    );
    assert_eq!(version_of(&reply.resource()), "2");

    let mut v3 = v2.clone();
    v3["name"][0]["family"] = json!("V3");
    let mut stale = put_entry(v3.clone());
    stale["request"]["ifMatch"] = json!("W/\"1\"");
    let transaction = bundle(
        "transaction",
        vec![
            post_entry(
                "urn:uuid:0b9e1d7a-1f43-4c1e-9a55-0d1b1a0c0001",
                patient("New"),
            ),
            stale,
        ],
    );
    assert_refused(&fhir, &transaction, 412, &["conflict"], Some(1));
    assert_patient(&fhir, &id, "2", "V2");

    // The same transaction with the current version goes through.
    let mut fresh = put_entry(v3);
    fresh["request"]["ifMatch"] = json!("W/\"2\"");
    let response = fhir
        .bundle(&bundle("transaction", vec![fresh]))
        .expect(200, "matching ifMatch")
        .resource();
    let entries = response_entries(&response, "transaction-response", 1);
    assert_eq!(status_of(&entries[0]), "200 OK");
    assert_eq!(entries[0]["response"]["etag"], "W/\"3\"");
}

#[test]
fn transaction_touching_one_resource_twice_is_400_and_stores_nothing() {
    let fhir = Fhir::start();
    let created = fhir.create(&patient("Twice"));
    let id = id_of(&created);

    let mut first = created.clone();
    first["name"][0]["family"] = json!("First");
    let mut second = created.clone();
    second["name"][0]["family"] = json!("Second");
    let twice_put = bundle(
        "transaction",
        vec![
            post_entry(
                "urn:uuid:3c1f7d0e-8d2b-4c39-9b71-2a1e5d000001",
                patient("Other"),
            ),
            put_entry(first),
            put_entry(second),
        ],
    );
    assert_refused(
        &fhir,
        &twice_put,
        400,
        &["invalid", "conflict", "processing"],
        None,
    );

    let put_and_delete = bundle(
        "transaction",
        vec![
            put_entry(created.clone()),
            entry(
                None,
                None,
                json!({"method": "DELETE", "url": format!("Patient/{id}")}),
            ),
        ],
    );
    assert_refused(
        &fhir,
        &put_and_delete,
        400,
        &["invalid", "conflict", "processing"],
        None,
    );
    assert_patient(&fhir, &id, "1", "Twice");
}

#[test]
fn batch_stores_the_good_entries_and_reports_the_bad_one() {
    let fhir = Fhir::start();
    let mut bad = patient("Bad");
    bad["active"] = json!("true");
    let mut with_id = patient("WithId");
    with_id["id"] = json!("batch-put-1");
    let batch = bundle(
        "batch",
        vec![
            post_entry(
                "urn:uuid:5e7f1c2a-0d9b-4a3e-8c61-000000000001",
                patient("One"),
            ),
            post_entry("urn:uuid:5e7f1c2a-0d9b-4a3e-8c61-000000000002", bad),
            put_entry(with_id),
            post_entry(
                "urn:uuid:5e7f1c2a-0d9b-4a3e-8c61-000000000004",
                observation("Patient/batch-put-1"),
            ),
        ],
    );
    let response = fhir.bundle(&batch).expect(200, "batch").resource();
    let entries = response_entries(&response, "batch-response", 4);

    let bad_entry = &entries[1];
    let status = status_of(bad_entry);
    assert!(status.starts_with("400 "), "bad entry status {status}");
    assert!(bad_entry["response"]["location"].is_null(), "{bad_entry}");
    let outcome = &bad_entry["response"]["outcome"];
    assert_issue(outcome, &["structure", "invalid", "value"], "batch entry");
    assert!(
        outcome["issue"][0]["expression"][0]
            .as_str()
            .is_some_and(|e| e.contains("active")),
        "{outcome}"
    );

    let expected = [(0, "Patient", "One"), (2, "Patient", "WithId")];
    for (index, kind, family) in expected {
        let entry = &entries[index];
        assert_eq!(status_of(entry), "201 Created", "{entry}");
        let location = location_of(entry, kind);
        let stored = fhir.get(&location).expect(200, &location).resource();
        assert_eq!(stored["name"][0]["family"], family);
    }
    assert_eq!(location_of(&entries[2], "Patient"), "Patient/batch-put-1");
    assert_eq!(status_of(&entries[3]), "201 Created");
    let observation_at = location_of(&entries[3], "Observation");
    let stored = fhir
        .get(&observation_at)
        .expect(200, &observation_at)
        .resource();
    assert_eq!(stored["subject"]["reference"], "Patient/batch-put-1");
    assert_eq!(versions(&fhir).len(), 3, "three entries stored");
}

#[test]
fn references_between_entries_resolve_in_any_order() {
    let fhir = Fhir::start();
    let patient_urn = "urn:uuid:9a1b2c3d-4e5f-4a6b-8c7d-0123456789ab";
    let observation_urn = "urn:uuid:9a1b2c3d-4e5f-4a6b-8c7d-0123456789ac";
    let absolute = "http://example.org/fhir/Patient/abc";
    let mut obs = observation(patient_urn);
    obs["text"] = json!({
        "status": "generated",
        "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">Height of <a href=\"{patient_urn}\">the patient</a></div>")
    });
    obs["contained"] = json!([{
        "resourceType": "Specimen",
        "id": "spec1",
        "subject": {"reference": patient_urn}
    }]);
    obs["specimen"] = json!({"reference": "#spec1"});
    obs["extension"] = json!([{
        "url": "http://example.org/fhir/StructureDefinition/about",
        "valueReference": {"reference": patient_urn}
    }]);
    obs["focus"] = json!([
        {"reference": "Patient/abc"},
        {"reference": format!("{patient_urn}#frag")}
    ]);
    let encounter = json!({
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": absolute},
        "participant": [{"individual": {"reference": "urn:uuid:9a1b2c3d-4e5f-4a6b-8c7d-0123456789ad"}}]
    });
    let practitioner = json!({
        "resourceType": "Practitioner",
        "name": [{"family": "Doc"}]
    });
    let mut abc = patient("Absolute");
    abc["id"] = json!("abc");
    let transaction = bundle(
        "transaction",
        vec![
            post_entry(observation_urn, obs),
            post_entry("urn:uuid:9a1b2c3d-4e5f-4a6b-8c7d-0123456789ae", encounter),
            post_entry(patient_urn, patient("Urn")),
            post_entry(absolute, abc),
            post_entry(
                "urn:uuid:9a1b2c3d-4e5f-4a6b-8c7d-0123456789ad",
                practitioner,
            ),
        ],
    );
    let response = fhir
        .bundle(&transaction)
        .expect(200, "transaction")
        .resource();
    let entries = response_entries(&response, "transaction-response", 5);
    for entry in &entries {
        assert_eq!(status_of(entry), "201 Created", "{entry}");
    }
    let obs_at = location_of(&entries[0], "Observation");
    let encounter_at = location_of(&entries[1], "Encounter");
    let patient_at = location_of(&entries[2], "Patient");
    let abc_at = location_of(&entries[3], "Patient");
    let practitioner_at = location_of(&entries[4], "Practitioner");
    assert_ne!(abc_at, "Patient/abc", "POST ignores the resource's own id");
    assert_eq!(fhir.get("Patient/abc").status, 404);

    let stored = fhir.get(&obs_at).expect(200, "observation").resource();
    assert_eq!(stored["subject"]["reference"], json!(patient_at));
    assert_eq!(
        stored["contained"][0]["subject"]["reference"],
        json!(patient_at)
    );
    assert_eq!(stored["specimen"]["reference"], "#spec1");
    assert_eq!(
        stored["extension"][0]["valueReference"]["reference"],
        json!(patient_at)
    );
    assert_eq!(stored["focus"][0]["reference"], json!(abc_at));
    assert_eq!(
        stored["focus"][1]["reference"],
        json!(format!("{patient_at}#frag"))
    );
    let div = stored["text"]["div"].as_str().expect("div");
    assert!(
        div.contains(&format!("href=\"{patient_at}\"")),
        "narrative link not rewritten: {div}"
    );
    assert!(!stored.to_string().contains("urn:uuid:"), "{stored}");

    let stored = fhir.get(&encounter_at).expect(200, "encounter").resource();
    assert_eq!(stored["subject"]["reference"], json!(abc_at));
    assert_eq!(
        stored["participant"][0]["individual"]["reference"],
        json!(practitioner_at)
    );
    // The references point at what the server returns.
    for target in [&patient_at, &abc_at, &practitioner_at] {
        fhir.get(target).expect(200, target).resource();
    }
    assert_eq!(
        fhir.get(&abc_at).expect(200, "abc").resource()["name"][0]["family"],
        "Absolute"
    );
}

#[test]
fn transaction_processes_delete_post_put_then_get() {
    let fhir = Fhir::start();
    let doomed = fhir.create(&patient("Doomed"));
    let doomed_id = id_of(&doomed);
    let updated = fhir.create(&patient("Before"));
    let updated_id = id_of(&updated);
    let mut after = updated.clone();
    after["name"][0]["family"] = json!("After");

    // Request order: GET first, DELETE last; the server runs DELETE, POST, PUT, GET.
    let transaction = bundle(
        "transaction",
        vec![
            entry(
                None,
                None,
                json!({"method": "GET", "url": format!("Patient/{updated_id}")}),
            ),
            put_entry(after),
            post_entry(
                "urn:uuid:1d2e3f40-5a6b-4c7d-8e9f-000000000001",
                patient("Posted"),
            ),
            entry(
                None,
                None,
                json!({"method": "DELETE", "url": format!("Patient/{doomed_id}")}),
            ),
        ],
    );
    let response = fhir
        .bundle(&transaction)
        .expect(200, "transaction")
        .resource();
    let entries = response_entries(&response, "transaction-response", 4);
    assert_eq!(status_of(&entries[0]), "200 OK", "{}", entries[0]);
    assert_eq!(entries[0]["resource"]["name"][0]["family"], "After");
    assert_eq!(version_of(&entries[0]["resource"]), "2");
    assert_eq!(entries[0]["response"]["etag"], "W/\"2\"");
    assert_eq!(status_of(&entries[1]), "200 OK");
    assert_eq!(entries[1]["response"]["etag"], "W/\"2\"");
    assert_eq!(
        entries[1]["response"]["location"],
        json!(format!("Patient/{updated_id}/_history/2"))
    );
    assert_eq!(status_of(&entries[2]), "201 Created");
    let posted = location_of(&entries[2], "Patient");
    assert_eq!(status_of(&entries[3]), "204 No Content");

    assert_eq!(fhir.get(&format!("Patient/{doomed_id}")).status, 410);
    assert_eq!(
        fhir.get(&posted).expect(200, "posted").resource()["name"][0]["family"],
        "Posted"
    );
    let current = fhir
        .get(&format!("Patient/{updated_id}"))
        .expect(200, "updated")
        .resource();
    assert_eq!(current["name"][0]["family"], "After");

    // A vread of a version written by the same transaction, and ifNoneMatch -> 304.
    let mut again = current.clone();
    again["name"][0]["family"] = json!("Again");
    let not_modified = entry(
        None,
        None,
        json!({"method": "GET", "url": posted, "ifNoneMatch": "W/\"1\""}),
    );
    let response = fhir
        .bundle(&bundle(
            "transaction",
            vec![
                entry(
                    None,
                    None,
                    json!({"method": "GET", "url": format!("Patient/{updated_id}/_history/3")}),
                ),
                put_entry(again),
                not_modified,
            ],
        ))
        .expect(200, "vread transaction")
        .resource();
    let entries = response_entries(&response, "transaction-response", 3);
    assert_eq!(status_of(&entries[0]), "200 OK", "{}", entries[0]);
    assert_eq!(entries[0]["resource"]["name"][0]["family"], "Again");
    assert_eq!(status_of(&entries[2]), "304 Not Modified", "{}", entries[2]);
    assert!(entries[2]["resource"].is_null());
}

#[test]
fn over_the_entry_limit_is_413() {
    let temp = tempfile::tempdir().expect("temp dir");
    let fhir = Fhir::on(&temp.path().join("data"), &["--max-bundle-entries", "3"]);
    let entries = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| {
                post_entry(
                    &format!("urn:uuid:7a7a7a7a-0000-4000-8000-00000000000{i}"),
                    patient(&format!("P{i}")),
                )
            })
            .collect()
    };
    for kind in ["transaction", "batch"] {
        let outcome = assert_outcome(&fhir.bundle(&bundle(kind, entries(4))), 413, &["too-long"]);
        assert!(diagnostics(&outcome).contains('3'), "{outcome}");
    }
    assert!(versions(&fhir).is_empty());
    let response = fhir
        .bundle(&bundle("transaction", entries(3)))
        .expect(200, "at the limit")
        .resource();
    response_entries(&response, "transaction-response", 3);
    assert_eq!(versions(&fhir).len(), 3);
}

#[test]
fn only_batch_and_transaction_bundles_are_processed() {
    let fhir = Fhir::start();
    let mut collection = bundle("collection", vec![]);
    collection["entry"] = json!([{"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000001", "resource": patient("C")}]);
    assert_outcome(
        &fhir.bundle(&collection),
        400,
        &["invalid", "value", "structure"],
    );
    let searchset = bundle("searchset", vec![]);
    assert_outcome(
        &fhir.bundle(&searchset),
        400,
        &["invalid", "value", "structure"],
    );
    assert_outcome(
        &fhir.bundle(&patient("NotABundle")),
        400,
        &["invalid", "value", "structure"],
    );
    assert!(versions(&fhir).is_empty());

    // A transaction without entries is fine, also on /fhir/.
    let response = fhir
        .post(
            "/",
            &json!({"resourceType": "Bundle", "type": "transaction"}),
        )
        .expect(200, "empty transaction on /fhir/")
        .resource();
    assert_eq!(response["type"], "transaction-response");
    assert!(response["entry"].as_array().is_none_or(|e| e.is_empty()));
    // One on /fhir/ is processed like one on /fhir.
    let response = fhir
        .post(
            "/",
            &bundle(
                "batch",
                vec![post_entry(
                    "urn:uuid:00000000-0000-4000-8000-000000000002",
                    patient("S"),
                )],
            ),
        )
        .expect(200, "batch on /fhir/")
        .resource();
    let entries = response_entries(&response, "batch-response", 1);
    assert_eq!(status_of(&entries[0]), "201 Created");
    assert_eq!(versions(&fhir).len(), 1);
}

#[test]
fn prefer_return_minimal_omits_the_resources() {
    let fhir = Fhir::start();
    let two = || {
        bundle(
            "transaction",
            vec![
                post_entry(
                    "urn:uuid:2b2b2b2b-0000-4000-8000-000000000001",
                    patient("A"),
                ),
                post_entry(
                    "urn:uuid:2b2b2b2b-0000-4000-8000-000000000002",
                    observation("urn:uuid:2b2b2b2b-0000-4000-8000-000000000001"),
                ),
            ],
        )
    };
    let minimal = fhir
        .post_with("", &two(), &[("prefer", "return=minimal")])
        .expect(200, "minimal")
        .resource();
    for entry in response_entries(&minimal, "transaction-response", 2) {
        assert!(entry["resource"].is_null(), "{entry}");
        assert_eq!(status_of(&entry), "201 Created");
        assert!(entry["response"]["location"].is_string());
        assert_eq!(entry["response"]["etag"], "W/\"1\"");
    }
    let minimal_batch = {
        let mut b = two();
        b["type"] = json!("batch");
        fhir.post_with("", &b, &[("prefer", "return=minimal")])
            .expect(200, "minimal batch")
            .resource()
    };
    for entry in response_entries(&minimal_batch, "batch-response", 2) {
        assert!(entry["resource"].is_null(), "{entry}");
        assert_eq!(status_of(&entry), "201 Created");
    }

    // Default: representation, which is the stored resource.
    let full = fhir.bundle(&two()).expect(200, "representation").resource();
    let entries = response_entries(&full, "transaction-response", 2);
    let patient_at = location_of(&entries[0], "Patient");
    for (entry, kind) in entries.iter().zip(["Patient", "Observation"]) {
        let location = location_of(entry, kind);
        let stored = fhir.get(&location).expect(200, &location).resource();
        assert_eq!(entry["resource"], stored);
    }
    assert_eq!(
        entries[1]["resource"]["subject"]["reference"],
        json!(patient_at)
    );
}

/// Runs `failing` (an entry that needs search) as entry 1 of a batch, after a good entry,
/// then as entry 1 of a transaction: 501 for that entry in the batch (the good one stored),
/// 501 for the whole transaction (nothing stored).
fn assert_entry_is_501(fhir: &Fhir, failing: &Value) {
    let good = || {
        post_entry(
            "urn:uuid:4c4c4c4c-0000-4000-8000-000000000001",
            patient("Good"),
        )
    };
    let before = versions(fhir);
    let response = fhir
        .bundle(&bundle("batch", vec![good(), failing.clone()]))
        .expect(200, "batch")
        .resource();
    let entries = response_entries(&response, "batch-response", 2);
    assert_eq!(status_of(&entries[0]), "201 Created");
    let good_at = location_of(&entries[0], "Patient");
    fhir.get(&good_at).expect(200, "good entry").resource();
    assert_eq!(
        status_of(&entries[1]),
        "501 Not Implemented",
        "batch entry {failing} answered {}",
        entries[1]
    );
    assert_issue(
        &entries[1]["response"]["outcome"],
        &["not-supported"],
        "batch entry",
    );
    assert!(entries[1]["response"]["location"].is_null());
    assert_eq!(
        versions(fhir).len(),
        before.len() + 1,
        "only the good batch entry is stored"
    );

    let transaction = bundle("transaction", vec![good(), failing.clone()]);
    assert_refused(fhir, &transaction, 501, &["not-supported"], Some(1));
}

#[test]
fn if_none_match_on_put_entries_is_501() {
    let fhir = Fhir::start();
    let existing = fhir.create(&patient("Patchme"));
    let id = id_of(&existing);
    let mut if_none_match = patient("IfNoneMatch");
    if_none_match["id"] = json!("inm");
    let if_none_match = entry(
        None,
        Some(if_none_match),
        json!({"method": "PUT", "url": "Patient/inm", "ifNoneMatch": "*"}),
    );
    assert_entry_is_501(&fhir, &if_none_match);
    fhir.get(&format!("Patient/{id}"))
        .expect(200, "still there")
        .resource();
}

/// A conditional reference (`Type?criteria`) resolves to the one resource it matches, whether
/// or not the criteria hold a URL; matching nothing is a 404 for its entry.
#[test]
fn conditional_references_resolve_to_their_one_match() {
    let fhir = Fhir::start();
    let mut target = patient("Target");
    target["identifier"] = json!([{"system": "http://example.org/mrn", "value": "12345"}]);
    let target = fhir.create(&target);
    let transaction = bundle(
        "transaction",
        vec![post_entry(
            "urn:uuid:4c4c4c4c-0000-4000-8000-000000000005",
            observation("Patient?identifier=http://example.org/mrn|12345"),
        )],
    );
    let response = fhir
        .bundle(&transaction)
        .expect(200, "transaction")
        .resource();
    let stored = fhir
        .get(&location_of(
            &response_entries(&response, "transaction-response", 1)[0],
            "Observation",
        ))
        .expect(200, "observation")
        .resource();
    assert_eq!(
        stored["subject"]["reference"],
        format!("Patient/{}", id_of(&target))
    );
    let nothing = bundle(
        "transaction",
        vec![post_entry(
            "urn:uuid:4c4c4c4c-0000-4000-8000-000000000006",
            observation("Patient?identifier=http://example.org/mrn|99999"),
        )],
    );
    assert_refused(&fhir, &nothing, 404, &["not-found"], Some(0));
}

fn get_entry(method: &str, url: &str) -> Value {
    entry(None, None, json!({"method": method, "url": url}))
}

/// A Patient with the family name `family` and the identifier `http://example.org/mrn|value`.
fn identified(family: &str, value: &str) -> Value {
    let mut resource = patient(family);
    resource["identifier"] = json!([{"system": "http://example.org/mrn", "value": value}]);
    resource
}

/// `url` without its `_snapshot` parameter (which names the search snapshot of one request).
fn without_snapshot(url: &str) -> String {
    match url.split_once('?') {
        None => url.to_string(),
        Some((path, query)) => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|pair| !pair.starts_with("_snapshot="))
                .collect();
            format!("{path}?{}", kept.join("&"))
        }
    }
}

/// An answer without what differs from one request to the next: a Bundle's id, a
/// CapabilityStatement's date, the search snapshot in links.
fn comparable(mut answer: Value) -> Value {
    if let Some(object) = answer.as_object_mut() {
        match object.get("resourceType").and_then(Value::as_str) {
            Some("Bundle") => object.remove("id"),
            Some("CapabilityStatement") => object.remove("date"),
            _ => None,
        };
    }
    for link in answer["link"].as_array_mut().into_iter().flatten() {
        let url = without_snapshot(link["url"].as_str().expect("link url"));
        link["url"] = json!(url);
    }
    answer
}

/// GET entries of every kind answer what their endpoints answer: searches (paging links,
/// `_include`, `_summary=count`), system and compartment searches, `$everything`, read, vread,
/// the three histories, the CapabilityStatement and `$versions`; a HEAD entry the same without
/// the resource. Failing ones fail with the endpoint's status, alone.
#[test]
fn batch_get_entries_answer_as_their_endpoints_do() {
    let fhir = Fhir::start();
    let ids: Vec<String> = (0..3)
        .map(|_| id_of(&fhir.create(&patient("Batchsearch"))))
        .collect();
    let id = &ids[0];
    let mut changed = fhir
        .get(&format!("Patient/{id}"))
        .expect(200, "read")
        .resource();
    changed["active"] = json!(false);
    fhir.update(&changed).expect(200, "update");
    let observed = fhir.create(&observation(&format!("Patient/{id}")));

    let urls = [
        "Patient?family=Batchsearch&_count=2".to_string(),
        format!("Observation?subject=Patient/{id}&_include=Observation:subject"),
        "Patient?family=Batchsearch&_summary=count".into(),
        "?_type=Patient&family=Batchsearch".into(),
        format!("Patient/{id}/Observation"),
        format!("Patient/{id}/$everything"),
        format!("Patient/{id}"),
        format!("Patient/{id}/_history/1"),
        format!("Patient/{id}/_history"),
        "Patient/_history?_count=2".into(),
        "_history".into(),
        "metadata".into(),
        "$versions".into(),
    ];
    let failing = [
        "Patient?_count=many".to_string(),
        "Patient/nobody".into(),
        format!("Patient/{id}/_history/9"),
        format!("Patient/{id}/_history?_count=-1"),
        "NoSuchType/1".into(),
    ];
    let mut entries: Vec<Value> = urls.iter().map(|url| get_entry("GET", url)).collect();
    entries.push(get_entry("HEAD", &format!("Patient/{id}")));
    entries.extend(failing.iter().map(|url| get_entry("GET", url)));
    let count = entries.len();
    let response = fhir
        .bundle(&bundle("batch", entries))
        .expect(200, "batch")
        .resource();
    let answers = response_entries(&response, "batch-response", count);
    for (url, answer) in urls.iter().zip(&answers) {
        assert_eq!(status_of(answer), "200 OK", "GET {url}: {answer}");
        let direct = fhir.get(url).expect(200, url).resource();
        assert_eq!(
            comparable(answer["resource"].clone()),
            comparable(direct),
            "GET {url} in a batch"
        );
    }
    for (url, answer) in failing.iter().zip(&answers[urls.len() + 1..]) {
        let direct = fhir.get(url);
        assert!(direct.status >= 400, "GET {url}: {}", direct.status);
        assert_eq!(
            status_of(answer)[..3],
            direct.status.to_string(),
            "GET {url}: {answer}"
        );
        let code = direct.json()["issue"][0]["code"].clone();
        assert_eq!(answer["response"]["outcome"]["issue"][0]["code"], code);
        assert!(answer["resource"].is_null(), "{answer}");
    }

    // Reads carry their version's ETag and lastModified; HEAD the same without the resource.
    let read = &answers[6];
    assert_eq!(read["response"]["etag"], "W/\"2\"");
    assert_eq!(
        read["response"]["lastModified"],
        read["resource"]["meta"]["lastUpdated"]
    );
    assert_eq!(answers[7]["response"]["etag"], "W/\"1\"");
    let head = &answers[urls.len()];
    assert_eq!(status_of(head), "200 OK", "{head}");
    assert_eq!(head["response"]["etag"], "W/\"2\"");
    assert!(head["resource"].is_null(), "{head}");

    // The searchset's paging links lead on; _include adds the subject.
    let first = &answers[0]["resource"];
    assert_eq!(first["type"], "searchset");
    assert_eq!(first["total"], 3);
    let next = link(first, "next").expect("a next link");
    let second = fhir.get_absolute(&next);
    let mut seen: Vec<String> = [first, &second]
        .iter()
        .flat_map(|page| page["entry"].as_array().cloned().unwrap_or_default())
        .map(|entry| id_of(&entry["resource"]))
        .collect();
    seen.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(seen, expected);
    let included = answers[1]["resource"]["entry"].as_array().expect("entries");
    let modes: Vec<(&str, String)> = included
        .iter()
        .map(|e| {
            (
                e["search"]["mode"].as_str().expect("mode"),
                id_of(&e["resource"]),
            )
        })
        .collect();
    assert_eq!(
        modes,
        [("match", id_of(&observed)), ("include", id.clone())]
    );
    assert_eq!(answers[2]["resource"]["total"], 3);
    let versions = &answers[12]["resource"];
    assert_eq!(versions["resourceType"], "Parameters");
}

/// In a transaction, GET and HEAD entries run after the writes (DELETE, POST, PUT) whatever
/// their place, and see them: the search finds what the transaction created and not what it
/// deleted, the history lists the transaction's changes.
#[test]
fn transaction_get_entries_run_after_the_writes_and_see_them() {
    let fhir = Fhir::start();
    let doomed = id_of(&fhir.create(&patient("Ordered")));
    let transaction = bundle(
        "transaction",
        vec![
            get_entry("GET", "Patient?family=Ordered"),
            get_entry("GET", "Patient/_history"),
            get_entry("HEAD", &format!("Patient/{doomed}")),
            post_entry(
                "urn:uuid:6d6d6d6d-0000-4000-8000-000000000001",
                patient("Ordered"),
            ),
            get_entry("DELETE", &format!("Patient/{doomed}")),
        ],
    );
    let response = fhir
        .bundle(&transaction)
        .expect(200, "transaction")
        .resource();
    let entries = response_entries(&response, "transaction-response", 5);
    let created = location_of(&entries[3], "Patient");
    assert_eq!(status_of(&entries[4]), "204 No Content");

    let found = &entries[0]["resource"];
    assert_eq!(status_of(&entries[0]), "200 OK", "{}", entries[0]);
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(
        found["entry"][0]["fullUrl"],
        json!(format!("{}/{created}", fhir.base))
    );
    let history = &entries[1]["resource"];
    assert_eq!(history["total"], 3, "{history}");
    let methods: Vec<&str> = history["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["request"]["method"].as_str().expect("method"))
        .collect();
    assert_eq!(methods, ["POST", "DELETE", "POST"]);
    assert_eq!(status_of(&entries[2]), "410 Gone", "{}", entries[2]);
}

/// Conditional update and delete entries behave as `PUT|DELETE [base]/Type?criteria` do: 0
/// matches creates (update) or does nothing (delete), 1 updates or deletes it, more is 412
/// for an update. In a transaction the criteria are matched against the state before it, all
/// its writes land in one commit, and two entries resolving to one resource are refused.
#[test]
fn conditional_update_and_delete_entries() {
    let fhir = Fhir::start();
    let one = id_of(&fhir.create(&identified("One", "c1")));
    fhir.create(&identified("TwinA", "twin"));
    fhir.create(&identified("TwinB", "twin"));
    let gone = id_of(&fhir.create(&identified("Gone", "c3")));
    let criteria = |value: &str| format!("Patient?identifier=http://example.org/mrn|{value}");
    let put = |value: &str, resource: Value| {
        entry(
            None,
            Some(resource),
            json!({"method": "PUT", "url": criteria(value)}),
        )
    };
    let delete = |value: &str| get_entry("DELETE", &criteria(value));

    let batch = bundle(
        "batch",
        vec![
            put("c1", identified("OneUpdated", "c1")),
            put("new", identified("New", "new")),
            put("twin", identified("Twin", "twin")),
            delete("c3"),
            delete("nothing"),
        ],
    );
    let response = fhir.bundle(&batch).expect(200, "batch").resource();
    let entries = response_entries(&response, "batch-response", 5);
    assert_eq!(status_of(&entries[0]), "200 OK", "{}", entries[0]);
    assert_eq!(
        entries[0]["response"]["location"],
        json!(format!("Patient/{one}/_history/2"))
    );
    assert_patient(&fhir, &one, "2", "OneUpdated");
    assert_eq!(status_of(&entries[1]), "201 Created", "{}", entries[1]);
    let created = location_of(&entries[1], "Patient");
    assert_ne!(created, format!("Patient/{one}"));
    assert_eq!(status_of(&entries[2]), "412 Precondition Failed");
    assert_issue(
        &entries[2]["response"]["outcome"],
        &["conflict", "multiple-matches"],
        "several matches",
    );
    assert_eq!(status_of(&entries[3]), "204 No Content", "{}", entries[3]);
    assert_eq!(fhir.get(&format!("Patient/{gone}")).status, 410);
    assert_eq!(status_of(&entries[4]), "204 No Content", "{}", entries[4]);

    // A stale ifMatch fails the conditional update; the resource's own id must be the match's.
    let mut stale = put("c1", identified("Stale", "c1"));
    stale["request"]["ifMatch"] = json!("W/\"1\"");
    let mut wrong_id = identified("WrongId", "c1");
    wrong_id["id"] = json!("not-the-match");
    let response = fhir
        .bundle(&bundle("batch", vec![stale, put("c1", wrong_id)]))
        .expect(200, "batch")
        .resource();
    let entries = response_entries(&response, "batch-response", 2);
    assert_eq!(status_of(&entries[0]), "412 Precondition Failed");
    assert_eq!(status_of(&entries[1]), "400 Bad Request", "{}", entries[1]);
    assert_patient(&fhir, &one, "2", "OneUpdated");

    // Transactions: several matches, or two entries on one resource, refuse the whole.
    let twin = bundle(
        "transaction",
        vec![
            post_entry(
                "urn:uuid:7e7e7e7e-0000-4000-8000-000000000001",
                patient("NotStored"),
            ),
            put("twin", identified("Twin", "twin")),
        ],
    );
    assert_refused(
        &fhir,
        &twin,
        412,
        &["conflict", "multiple-matches"],
        Some(1),
    );
    let overlap = bundle(
        "transaction",
        vec![delete("c1"), put("c1", identified("Overlap", "c1"))],
    );
    assert_refused(&fhir, &overlap, 400, &["invalid"], None);

    // The criteria see the state before the transaction, and references to a conditional
    // entry's fullUrl point at the resource it resolved to.
    let updated_urn = "urn:uuid:7e7e7e7e-0000-4000-8000-000000000002";
    let created_urn = "urn:uuid:7e7e7e7e-0000-4000-8000-000000000003";
    let mut update = put("c1", identified("OneAgain", "c1"));
    update["fullUrl"] = json!(updated_urn);
    let mut create = put("fresh", identified("Fresh", "fresh"));
    create["fullUrl"] = json!(created_urn);
    let transaction = bundle(
        "transaction",
        vec![
            post_entry(
                "urn:uuid:7e7e7e7e-0000-4000-8000-000000000004",
                observation(updated_urn),
            ),
            update,
            post_entry(
                "urn:uuid:7e7e7e7e-0000-4000-8000-000000000005",
                observation(created_urn),
            ),
            create,
            delete("new"),
            // Created by this transaction: not there before it, so nothing to delete.
            delete("fresh"),
        ],
    );
    let response = fhir
        .bundle(&transaction)
        .expect(200, "transaction")
        .resource();
    let entries = response_entries(&response, "transaction-response", 6);
    assert_eq!(status_of(&entries[1]), "200 OK");
    assert_patient(&fhir, &one, "3", "OneAgain");
    assert_eq!(status_of(&entries[3]), "201 Created");
    let fresh = location_of(&entries[3], "Patient");
    for (index, target) in [(0, format!("Patient/{one}")), (2, fresh.clone())] {
        let stored = fhir
            .get(&location_of(&entries[index], "Observation"))
            .expect(200, "observation")
            .resource();
        assert_eq!(stored["subject"]["reference"], json!(target));
    }
    assert_eq!(status_of(&entries[4]), "204 No Content");
    assert_eq!(fhir.get(&created).status, 410);
    assert_eq!(status_of(&entries[5]), "204 No Content");
    fhir.get(&fresh).expect(200, "created by the transaction");
}

/// The deletion entries of the system history, as (`Type/id`, lastModified).
fn deletions(fhir: &Fhir) -> Vec<(String, String)> {
    fhir.system_history()
        .iter()
        .filter(|e| e["request"]["method"] == "DELETE")
        .map(|e| {
            (
                e["request"]["url"].as_str().expect("url").to_string(),
                e["response"]["lastModified"]
                    .as_str()
                    .expect("lastModified")
                    .to_string(),
            )
        })
        .collect()
}

/// `DELETE [base]/Type?criteria` matching several resources deletes them all in one commit
/// (`conditionalDelete: multiple`, the default), over REST and in a transaction; more than
/// `--conditional-delete-limit` matches, or any several under `--conditional-delete single`,
/// is 412 and deletes nothing.
#[test]
fn conditional_delete_of_several_deletes_them_all_in_one_commit() {
    let temp = tempfile::tempdir().expect("temp dir");
    let fhir = Fhir::on(
        &temp.path().join("data"),
        &["--conditional-delete-limit", "3"],
    );
    let capability = fhir.get("metadata").expect(200, "metadata").resource();
    assert_eq!(
        capability["rest"][0]["resource"][0]["conditionalDelete"],
        "multiple"
    );
    let many: Vec<String> = (0..3)
        .map(|_| id_of(&fhir.create(&patient("Many"))))
        .collect();
    let kept = id_of(&fhir.create(&patient("Kept")));
    fhir.delete("Patient?family=Many")
        .expect(204, "conditional delete of three");
    for id in &many {
        assert_eq!(fhir.get(&format!("Patient/{id}")).status, 410, "{id}");
    }
    fhir.get(&format!("Patient/{kept}")).expect(200, "kept");
    let deleted = deletions(&fhir);
    assert_eq!(deleted.len(), 3);
    assert!(
        deleted.iter().all(|(_, at)| *at == deleted[0].1),
        "one commit: {deleted:?}"
    );

    // Over the limit: 412, nothing deleted.
    for _ in 0..4 {
        fhir.create(&patient("TooMany"));
    }
    assert_outcome(
        &fhir.delete("Patient?family=TooMany"),
        412,
        &["conflict", "too-costly", "multiple-matches"],
    );
    let transaction = bundle(
        "transaction",
        vec![get_entry("DELETE", "Patient?family=TooMany")],
    );
    assert_refused(
        &fhir,
        &transaction,
        412,
        &["conflict", "too-costly", "multiple-matches"],
        Some(0),
    );
    assert_eq!(deletions(&fhir).len(), 3);

    // In a transaction, beside other writes, in its one commit.
    let two: Vec<String> = (0..2)
        .map(|_| id_of(&fhir.create(&patient("ManyTx"))))
        .collect();
    let transaction = bundle(
        "transaction",
        vec![
            post_entry(
                "urn:uuid:8f8f8f8f-0000-4000-8000-000000000001",
                patient("Beside"),
            ),
            get_entry("DELETE", "Patient?family=ManyTx"),
        ],
    );
    let response = fhir
        .bundle(&transaction)
        .expect(200, "transaction")
        .resource();
    let entries = response_entries(&response, "transaction-response", 2);
    assert_eq!(status_of(&entries[1]), "204 No Content");
    let posted = fhir
        .get(&location_of(&entries[0], "Patient"))
        .expect(200, "posted")
        .resource();
    for id in &two {
        assert_eq!(fhir.get(&format!("Patient/{id}")).status, 410);
    }
    let deleted = deletions(&fhir);
    assert_eq!(deleted.len(), 5);
    assert!(deleted[..2].iter().all(|(_, at)| *at == deleted[0].1));
    assert_eq!(posted["meta"]["lastUpdated"], json!(deleted[0].1));

    // Under `single`, several matches are 412.
    let temp = tempfile::tempdir().expect("temp dir");
    let single = Fhir::on(
        &temp.path().join("data"),
        &["--conditional-delete", "single"],
    );
    let capability = single.get("metadata").expect(200, "metadata").resource();
    assert_eq!(
        capability["rest"][0]["resource"][0]["conditionalDelete"],
        "single"
    );
    let pair: Vec<String> = (0..2)
        .map(|_| id_of(&single.create(&patient("Pair"))))
        .collect();
    assert_outcome(
        &single.delete("Patient?family=Pair"),
        412,
        &["conflict", "multiple-matches"],
    );
    for id in &pair {
        single
            .get(&format!("Patient/{id}"))
            .expect(200, "not deleted");
    }
}

/// What real clients put in Bundles: absolute `request.url`s and `fullUrl`s of this server,
/// `ifModifiedSince` and `ifNoneMatch` on GET entries, and `Prefer: return=...` for every
/// entry; each response entry carries its location, ETag and lastModified.
#[test]
fn real_client_bundles_absolute_urls_conditions_and_prefer() {
    let fhir = Fhir::start();
    let base = fhir.base.clone();
    let existing = fhir.create(&identified("Existing", "e1"));
    let existing_id = id_of(&existing);

    // Absolute URLs of this server, in request.url and fullUrl.
    let mut put = identified("PutAbsolute", "abs");
    put["id"] = json!("abs-1");
    let transaction = bundle(
        "transaction",
        vec![
            entry(
                Some(&format!("{base}/Patient/abs-1")),
                Some(put),
                json!({"method": "PUT", "url": format!("{base}/Patient/abs-1")}),
            ),
            entry(
                Some("urn:uuid:9b9b9b9b-0000-4000-8000-000000000001"),
                Some(observation(&format!("{base}/Patient/abs-1"))),
                json!({"method": "POST", "url": format!("{base}/Observation")}),
            ),
            get_entry("GET", &format!("{base}/Patient/{existing_id}")),
            get_entry("GET", &format!("{base}/metadata")),
        ],
    );
    let response = fhir
        .bundle(&transaction)
        .expect(200, "absolute URLs")
        .resource();
    let entries = response_entries(&response, "transaction-response", 4);
    assert_eq!(location_of(&entries[0], "Patient"), "Patient/abs-1");
    let stored = fhir
        .get(&location_of(&entries[1], "Observation"))
        .expect(200, "observation")
        .resource();
    assert_eq!(stored["subject"]["reference"], "Patient/abs-1");
    assert_eq!(status_of(&entries[2]), "200 OK", "{}", entries[2]);
    assert_eq!(
        entries[3]["resource"]["resourceType"],
        "CapabilityStatement"
    );

    // Every written entry: location, ETag and lastModified of its version.
    for entry in &entries[..2] {
        let resource = &entry["resource"];
        assert_eq!(
            entry["response"]["etag"],
            json!(format!("W/\"{}\"", version_of(resource)))
        );
        assert_eq!(
            entry["response"]["lastModified"],
            resource["meta"]["lastUpdated"]
        );
    }

    // GET conditions: ifNoneMatch and ifModifiedSince give 304 without the resource; a bad
    // one is 400.
    let last_modified = existing["meta"]["lastUpdated"].as_str().expect("instant");
    let conditional = |name: &str, value: &str| {
        entry(
            None,
            None,
            json!({"method": "GET", "url": format!("Patient/{existing_id}"), name: value}),
        )
    };
    let response = fhir
        .bundle(&bundle(
            "batch",
            vec![
                conditional("ifNoneMatch", "W/\"1\""),
                conditional("ifNoneMatch", "W/\"7\""),
                conditional("ifModifiedSince", last_modified),
                conditional("ifModifiedSince", "2001-01-01T00:00:00Z"),
                conditional("ifModifiedSince", "yesterday"),
            ],
        ))
        .expect(200, "conditional reads")
        .resource();
    let entries = response_entries(&response, "batch-response", 5);
    let statuses: Vec<&str> = entries.iter().map(|e| &status_of(e)[..3]).collect();
    assert_eq!(statuses, ["304", "200", "304", "200", "400"]);
    assert!(entries[0]["resource"].is_null());
    assert_eq!(entries[0]["response"]["etag"], "W/\"1\"");

    // A condition the entry's method does not take is refused, not ignored.
    let mut misplaced = vec![
        post_entry(
            "urn:uuid:9b9b9b9b-0000-4000-8000-000000000004",
            patient("IfMatchOnPost"),
        ),
        get_entry("GET", &format!("Patient/{existing_id}")),
        put_entry({
            let mut resource = existing.clone();
            resource["active"] = json!(false);
            resource
        }),
    ];
    misplaced[0]["request"]["ifMatch"] = json!("W/\"1\"");
    misplaced[1]["request"]["ifMatch"] = json!("W/\"1\"");
    misplaced[2]["request"]["ifNoneExist"] = json!("identifier=http://example.org/mrn|e1");
    let response = fhir
        .bundle(&bundle("batch", misplaced))
        .expect(200, "misplaced conditions")
        .resource();
    for entry in response_entries(&response, "batch-response", 3) {
        assert_eq!(status_of(&entry), "501 Not Implemented", "{entry}");
    }

    // A matched ifNoneExist says where the match is.
    let mut matched = post_entry(
        "urn:uuid:9b9b9b9b-0000-4000-8000-000000000002",
        identified("Again", "e1"),
    );
    matched["request"]["ifNoneExist"] = json!("identifier=http://example.org/mrn|e1");
    let response = fhir
        .bundle(&bundle("batch", vec![matched.clone()]))
        .expect(200, "ifNoneExist")
        .resource();
    let entries = response_entries(&response, "batch-response", 1);
    assert_eq!(status_of(&entries[0]), "200 OK");
    assert_eq!(
        entries[0]["response"]["location"],
        json!(format!("Patient/{existing_id}/_history/1"))
    );
    assert_eq!(entries[0]["response"]["etag"], "W/\"1\"");

    // Prefer: return=OperationOutcome gives every written entry an outcome and no resource;
    // return=minimal neither (but the validator's warnings, which are always reported).
    let writes = || {
        bundle(
            "batch",
            vec![
                post_entry(
                    "urn:uuid:9b9b9b9b-0000-4000-8000-000000000003",
                    patient("Preferred"),
                ),
                matched.clone(),
                get_entry("DELETE", "Patient/abs-1"),
                get_entry("GET", &format!("Patient/{existing_id}")),
            ],
        )
    };
    let response = fhir
        .post_with("", &writes(), &[("prefer", "return=OperationOutcome")])
        .expect(200, "return=OperationOutcome")
        .resource();
    let entries = response_entries(&response, "batch-response", 4);
    for entry in &entries[..3] {
        assert!(entry["resource"].is_null(), "{entry}");
        let outcome = &entry["response"]["outcome"];
        assert_eq!(outcome["resourceType"], "OperationOutcome", "{entry}");
        assert_eq!(outcome["issue"][0]["severity"], "information", "{entry}");
    }
    assert_eq!(entries[3]["resource"]["id"], json!(existing_id));
    let response = fhir
        .post_with("", &writes(), &[("prefer", "return=minimal")])
        .expect(200, "return=minimal")
        .resource();
    let entries = response_entries(&response, "batch-response", 4);
    for entry in &entries[..3] {
        assert!(entry["resource"].is_null(), "{entry}");
        let issues = entry["response"]["outcome"]["issue"].as_array().cloned();
        assert!(
            issues
                .unwrap_or_default()
                .iter()
                .all(|issue| issue["severity"] == "warning"),
            "{entry}"
        );
    }
    assert_eq!(entries[3]["resource"]["id"], json!(existing_id));
}

/// `GET [base]/$versions`: the FHIR versions this server speaks, without a token like
/// `metadata`, and listed in the CapabilityStatement.
#[test]
fn versions_operation_names_r4() {
    let fhir = Fhir::start();
    let versions = fhir.get("$versions").expect(200, "$versions").resource();
    assert_eq!(
        versions,
        json!({"resourceType": "Parameters", "parameter": [
            {"name": "version", "valueCode": "4.0"},
            {"name": "default", "valueCode": "4.0"}
        ]})
    );
    let capability = fhir.get("metadata").expect(200, "metadata").resource();
    let operations = capability["rest"][0]["operation"]
        .as_array()
        .expect("system operations");
    assert!(
        operations.iter().any(|o| o["name"] == "versions"),
        "{operations:?}"
    );
}

/// The GET entries of one Bundle answer about `--max-body` bytes together: once their answers
/// pass it, the ones left are refused (422 `too-costly`) without being run.
#[test]
fn get_entries_answer_a_bounded_response() {
    let temp = tempfile::tempdir().expect("temp dir");
    let limit = 3_000_000;
    let fhir = Fhir::on(&temp.path().join("data"), &["--max-body", "3000000"]);
    let statement = fhir.get("metadata").expect(200, "metadata").text.len();
    assert!(statement < limit / 2, "the test needs a smaller statement");
    let count = 8;
    let batch = bundle(
        "batch",
        (0..count).map(|_| get_entry("GET", "metadata")).collect(),
    );
    let response = fhir.bundle(&batch).expect(200, "batch").resource();
    let entries = response_entries(&response, "batch-response", count);
    let answered = limit / statement + 1;
    for (index, entry) in entries.iter().enumerate() {
        if index < answered {
            assert_eq!(status_of(entry), "200 OK", "entry {index}");
        } else {
            assert_eq!(
                status_of(entry),
                "422 Unprocessable Entity",
                "entry {index}"
            );
            assert_issue(
                &entry["response"]["outcome"],
                &["too-costly"],
                "past the limit",
            );
        }
    }
}
