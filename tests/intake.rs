//! What a write takes in, over HTTP against the real binary: primitive values are checked
//! against their R4 definitions (regular expression and calendar) wherever they stand, empty
//! elements are dropped with a warning (policy rule `empty-elements`) and never stored,
//! duplicate JSON keys are refused, and a missing required element is reported where it is
//! missing. History is immutable, so what is refused here can never break a strict client.
mod common;

use common::fhir::{Fhir, assert_outcome, expressions, patient};
use serde_json::{Value, json};

fn nothing_stored(fhir: &Fhir, resource_type: &str) {
    let found = fhir
        .get(&format!("{resource_type}?_summary=count"))
        .expect(200, "count")
        .json();
    assert_eq!(found["total"], 0, "nothing may be stored: {found}");
}

/// `patient("Lux")` with a narrative, so that the only findings are the ones a test makes.
fn quiet_patient() -> Value {
    let mut patient = patient("Lux");
    patient["text"] = json!({"status": "generated",
        "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Lux</div>"});
    patient
}

/// Asserts that `resource` is refused with 422 by a create and reported by `$validate`, with
/// exactly one error, at `expression`.
fn refused_at(fhir: &Fhir, resource: &Value, expression: &str) {
    let resource_type = resource["resourceType"].as_str().unwrap();
    let outcome = assert_outcome(&fhir.post(resource_type, resource), 422, &["value"]);
    assert_eq!(expressions(&outcome, "error"), [expression], "{outcome}");
    let report = fhir
        .post(&format!("{resource_type}/$validate"), resource)
        .expect(200, "$validate")
        .json();
    assert_eq!(expressions(&report, "error"), [expression], "{report}");
}

#[test]
fn dates_that_break_their_format_or_the_calendar_are_refused() {
    let fhir = Fhir::start();
    for (member, value) in [
        ("birthDate", "2020-13-45"),
        ("birthDate", "1999-02-30"),
        ("birthDate", "2020-1-5"),
        ("birthDate", "2021-02-29"),
        ("birthDate", "1900-02-29"),
        ("birthDate", "0000"),
        ("birthDate", "2020-05-05T10:00:00Z"),
        ("deceasedDateTime", "2020-05-05T10:00:00"),
        ("deceasedDateTime", "2020-05-05T10:00Z"),
        ("deceasedDateTime", "2020-05-05T24:00:00Z"),
        ("deceasedDateTime", "2020-05-05T10:00:00+15:00"),
        ("deceasedDateTime", "2020-05-05 10:00:00Z"),
    ] {
        let mut resource = quiet_patient();
        resource[member] = json!(value);
        refused_at(&fhir, &resource, &format!("Patient.{member}"));
    }
    nothing_stored(&fhir, "Patient");
    // The calendar's edges are valid: leap days, a leap second, the widest offsets.
    for (member, value) in [
        ("birthDate", "2000-02-29"),
        ("birthDate", "2024-02-29"),
        ("birthDate", "1970"),
        ("birthDate", "1970-12"),
        ("deceasedDateTime", "2016-12-31T23:59:60Z"),
        ("deceasedDateTime", "2020-05-05T10:00:00.123456789+14:00"),
        ("deceasedDateTime", "2020-05-05T10:00:00-13:59"),
    ] {
        let mut resource = quiet_patient();
        resource[member] = json!(value);
        let reply = fhir.post("Patient", &resource);
        reply.expect(201, value);
        assert_eq!(reply.header("x-fhir-request-validation"), None, "{value}");
    }
}

#[test]
fn every_primitive_type_is_checked_wherever_it_stands() {
    let fhir = Fhir::start();
    let with_extension = |kind: &str, value: Value| {
        let mut extension = serde_json::Map::new();
        extension.insert("url".into(), json!("http://example.org/x"));
        extension.insert(format!("value{kind}"), value);
        let mut resource = quiet_patient();
        resource["extension"] = json!([extension]);
        resource
    };
    // One wrong value of each primitive type, in an extension of the Patient.
    for (kind, value) in [
        ("Date", json!("2020-02-30")),
        ("DateTime", json!("2020-02-01T10:00:00")),
        ("Instant", json!("2020-02-01T10:00:00")),
        ("Instant", json!("2020-02-01")),
        ("Time", json!("25:00:00")),
        ("Time", json!("10:00")),
        ("Id", json!("a_b")),
        ("Id", json!("x".repeat(65))),
        ("Oid", json!("urn:oid:1.02")),
        (
            "Uuid",
            json!("urn:uuid:C2A5E0D3-0B9B-4E6B-9F0A-6A3C2F1D4E5A"),
        ),
        ("Uri", json!("http://example.org/a b")),
        ("Url", json!("http://example.org/\ta")),
        ("Canonical", json!("http://example.org/a |1.0")),
        ("Code", json!("two  spaces")),
        ("Code", json!(" leading")),
        ("UnsignedInt", json!(2147483648u64)),
        ("PositiveInt", json!(0)),
        ("Decimal", serde_json::from_str::<Value>("1e400").unwrap()),
        ("Base64Binary", json!("abc")),
        ("Base64Binary", json!("ab$=")),
        ("String", json!("x".repeat(1024 * 1024 + 1))),
        ("Markdown", json!("x".repeat(1024 * 1024 + 1))),
    ] {
        let resource = with_extension(kind, value.clone());
        let expression = format!("Patient.extension[0].value{kind}");
        let reply = fhir.post("Patient", &resource);
        let outcome = assert_outcome(&reply, 422, &["value"]);
        assert_eq!(
            expressions(&outcome, "error"),
            [expression.as_str()],
            "{kind} {value}: {outcome}"
        );
    }
    // An integer past 32 bits the model itself refuses.
    let resource = with_extension("Integer", json!(2147483648u64));
    assert_outcome(&fhir.post("Patient", &resource), 400, &["structure"]);
    // A primitive's own extensions (`_birthDate`), a contained resource, a data type deep
    // inside, and a resource's own elements.
    let mut resource = quiet_patient();
    resource["_birthDate"] = json!({"extension": [{"url": "http://example.org/x",
        "valueDateTime": "2020-05-05T10:00"}]});
    refused_at(
        &fhir,
        &resource,
        "Patient.birthDate.extension[0].valueDateTime",
    );
    let mut resource = quiet_patient();
    resource["name"][0]["given"] = json!(["Ada", "Marie"]);
    resource["name"][0]["_given"] = json!([null, {"extension": [{"url": "http://example.org/x",
        "valueCode": "a\tb  c"}]}]);
    refused_at(
        &fhir,
        &resource,
        "Patient.name[0].given[1].extension[0].valueCode",
    );
    let observation = json!({"resourceType": "Observation", "status": "final",
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},
        "code": {"text": "x"}, "subject": {"reference": "#p"},
        "contained": [{"resourceType": "Patient", "id": "p", "birthDate": "1999-02-30"}]});
    refused_at(&fhir, &observation, "Observation.contained[0].birthDate");
    let mut resource = quiet_patient();
    resource["photo"] = json!([{"contentType": "image/png", "size": 4294967295u64}]);
    refused_at(&fhir, &resource, "Patient.photo[0].size");
    let mut resource = quiet_patient();
    resource["contained"] = json!([{"resourceType": "Organization", "id": "a b", "name": "x"}]);
    resource["managingOrganization"] = json!({"reference": "#a b"});
    refused_at(&fhir, &resource, "Patient.contained[0].id");
    let mut resource = quiet_patient();
    resource["implicitRules"] = json!("http://example.org/rules v2");
    refused_at(&fhir, &resource, "Patient.implicitRules");

    // In a transaction the failing entry is named.
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": quiet_patient(), "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "birthDate": "2020-1-5"},
         "request": {"method": "POST", "url": "Patient"}}]});
    let outcome = assert_outcome(&fhir.bundle(&bundle), 422, &["value"]);
    assert!(
        expressions(&outcome, "error")
            .contains(&"Bundle.entry[1].resource.ofType(Patient).birthDate".to_string()),
        "{outcome}"
    );
    nothing_stored(&fhir, "Patient");
    nothing_stored(&fhir, "Observation");
}

#[test]
fn strings_without_content_are_stored_with_a_warning() {
    let fhir = Fhir::start();
    let mut resource = quiet_patient();
    resource["name"][0]["family"] = json!("   ");
    resource["name"][0]["text"] = json!("Ada\u{1}Lux");
    let reply = fhir.post_with(
        "Patient",
        &resource,
        &[("Prefer", "return=OperationOutcome")],
    );
    reply.expect(201, "a SHOULD of the string type only warns");
    assert_eq!(
        expressions(&reply.json(), "warning"),
        ["Patient.name[0].text", "Patient.name[0].family"],
        "{}",
        reply.json()
    );
}

/// A transaction as a data generator writes it: every Patient with `"meta": {}`, and a few more
/// empty elements (an empty array, an empty object, an empty string, `null`) that HAPI and
/// Helios take.
fn generated_transaction() -> Value {
    let patient = |family: &str| {
        json!({"resourceType": "Patient", "meta": {},
            "text": {"status": "generated",
                "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{family}</div>")},
            "name": [{"family": family, "given": ["", "Marie"], "prefix": []}],
            "telecom": [], "address": [{}], "gender": null, "birthDate": "1970-01-01",
            "identifier": [{"system": "http://example.org/ids", "value": family,
                "type": {"coding": [null]}}]})
    };
    json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:1f2c6a0e-4f7b-4c63-9a0e-0c1d2e3f4a5b",
         "resource": patient("Lux"), "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d",
         "resource": patient("Curie"), "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:3b4c5d6e-7f8a-4b9c-8d0e-2f3a4b5c6d7e",
         "resource": {"resourceType": "Encounter", "meta": {}, "status": "finished",
            "text": {"status": "generated",
                "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">visit</div>"},
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": "AMB"},
            "subject": {"reference": "urn:uuid:1f2c6a0e-4f7b-4c63-9a0e-0c1d2e3f4a5b",
                "display": ""}},
         "request": {"method": "POST", "url": "Encounter"}}]})
}

/// The empty elements of [`generated_transaction`]'s first Patient, as reported.
const DROPPED: [&str; 7] = [
    "Patient.meta",
    "Patient.name[0].given[0]",
    "Patient.name[0].prefix",
    "Patient.telecom",
    "Patient.address",
    "Patient.gender",
    "Patient.identifier[0].type",
];

/// What the first Patient of [`generated_transaction`] is stored as.
fn assert_cleaned(stored: &Value) {
    let mut expected = generated_transaction()["entry"][0]["resource"].clone();
    let object = expected.as_object_mut().unwrap();
    for key in ["meta", "telecom", "address", "gender"] {
        object.remove(key);
    }
    expected["name"] = json!([{"family": "Lux", "given": ["Marie"]}]);
    expected["identifier"] = json!([{"system": "http://example.org/ids", "value": "Lux"}]);
    assert_eq!(common::fhir::without_server_meta(stored), {
        let mut with_id = expected;
        with_id["id"] = stored["id"].clone();
        with_id
    });
}

#[test]
fn a_generated_transaction_with_empty_elements_is_stored_without_them() {
    let fhir = Fhir::start();
    let reply = fhir.post_with(
        "",
        &generated_transaction(),
        &[("Prefer", "return=OperationOutcome")],
    );
    reply.expect(200, "the transaction is taken");
    let response = reply.json();
    let entries = response["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 3, "{response}");
    for entry in entries {
        assert_eq!(entry["response"]["status"], "201 Created", "{response}");
    }
    let located: Vec<String> = DROPPED
        .iter()
        .map(|path| path.replacen("Patient", "Bundle.entry[0].resource.ofType(Patient)", 1))
        .collect();
    assert_eq!(
        expressions(&entries[0]["response"]["outcome"], "warning"),
        located,
        "{response}"
    );
    assert_eq!(
        expressions(&entries[2]["response"]["outcome"], "warning"),
        [
            "Bundle.entry[2].resource.ofType(Encounter).meta",
            "Bundle.entry[2].resource.ofType(Encounter).subject.display"
        ],
        "{response}"
    );
    // What is stored has none of them, in the current version and in the history.
    let location = entries[0]["response"]["location"].as_str().unwrap();
    let id = location.split('/').nth(1).unwrap();
    let stored = fhir
        .get(&format!("Patient/{id}"))
        .expect(200, "read")
        .json();
    assert_cleaned(&stored);
    let version = fhir
        .get(&format!("Patient/{id}/_history/1"))
        .expect(200, "vread")
        .json();
    assert_eq!(version, stored);
    // The reference to the Patient was rewritten as usual.
    let encounter = entries[2]["response"]["location"].as_str().unwrap();
    let encounter = fhir
        .get(encounter.split("/_history").next().unwrap())
        .expect(200, "read")
        .json();
    assert_eq!(
        encounter["subject"],
        json!({"reference": format!("Patient/{id}")}),
        "{encounter}"
    );
}

#[test]
fn empty_elements_warn_by_default_and_the_policy_may_refuse_or_drop_them_silently() {
    let patient = || generated_transaction()["entry"][0]["resource"].clone();
    let fhir = Fhir::start();
    let reply = fhir.post("Patient", &patient());
    reply.expect(201, "empty elements are dropped");
    let headers: Vec<String> = reply
        .headers
        .get_all("x-fhir-request-validation")
        .iter()
        .map(|h| h.to_str().unwrap().to_string())
        .collect();
    assert_eq!(headers.len(), DROPPED.len(), "{headers:?}");
    assert!(
        headers[0].starts_with("warning Patient.meta: "),
        "{headers:?}"
    );
    assert_cleaned(&reply.json());
    // An update alike; `$validate` tells them as warnings.
    let mut update = patient();
    update["id"] = json!("p1");
    fhir.put("Patient/p1", &update).expect(201, "update");
    let report = fhir
        .post("Patient/$validate", &patient())
        .expect(200, "$validate")
        .json();
    assert_eq!(expressions(&report, "warning"), DROPPED, "{report}");

    let temp = tempfile::tempdir().unwrap();
    let policy = |name: &str, action: &str| {
        let path = temp.path().join(name);
        std::fs::write(
            &path,
            json!({"default": {"empty-elements": action}}).to_string(),
        )
        .unwrap();
        path
    };
    let strict = policy("strict.json", "reject");
    let strict = Fhir::with(common::TestServer::start_with(&[
        "--validation",
        strict.to_str().unwrap(),
    ]));
    let outcome = assert_outcome(&strict.post("Patient", &patient()), 422, &["structure"]);
    assert_eq!(expressions(&outcome, "error"), DROPPED, "{outcome}");
    assert_outcome(
        &strict.bundle(&generated_transaction()),
        422,
        &["structure"],
    );
    nothing_stored(&strict, "Patient");

    let silent = policy("silent.json", "off");
    let silent = Fhir::with(common::TestServer::start_with(&[
        "--validation",
        silent.to_str().unwrap(),
    ]));
    let reply = silent.post("Patient", &patient());
    reply.expect(201, "dropped silently");
    assert_eq!(reply.header("x-fhir-request-validation"), None);
    assert_cleaned(&reply.json());
    // With validation off altogether, they are still never stored.
    let off = Fhir::with(common::TestServer::start_with(&["--validation", "off"]));
    let reply = off.post("Patient", &patient());
    reply.expect(201, "validation off");
    assert_cleaned(&reply.json());
}

#[test]
fn a_primitive_array_keeps_its_extensions_aligned_when_values_are_dropped() {
    let fhir = Fhir::start();
    let mut resource = quiet_patient();
    let absent = json!({"extension": [{"url":
        "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}]});
    resource["name"][0]["given"] = json!(["", "Marie", null, "Ada"]);
    resource["name"][0]["_given"] = json!([absent, null, null, {}]);
    let stored = fhir.post("Patient", &resource).expect(201, "create").json();
    assert_eq!(stored["name"][0]["given"], json!([null, "Marie", "Ada"]));
    assert_eq!(stored["name"][0]["_given"], json!([absent, null, null]));
}

#[test]
fn duplicate_json_keys_are_refused_with_the_key_and_its_place() {
    let fhir = Fhir::start();
    let refused = |path: &str, body: &str, expression: &str, key: &str| {
        let reply = fhir.post(path, body.to_string());
        let outcome = assert_outcome(&reply, 400, &["structure"]);
        assert_eq!(expressions(&outcome, "error"), [expression], "{outcome}");
        let diagnostics = outcome["issue"][0]["diagnostics"].as_str().unwrap();
        assert!(diagnostics.contains(&format!("'{key}'")), "{diagnostics}");
    };
    refused(
        "Patient",
        r#"{"resourceType":"Patient","gender":"male","gender":"female"}"#,
        "Patient.gender",
        "gender",
    );
    refused(
        "Patient",
        r#"{"resourceType":"Patient","name":[{"family":"A"},{"given":["B"],"family":"C","family":"D"}]}"#,
        "Patient.name[1].family",
        "family",
    );
    // Before `resourceType` is read, the place is told from the root.
    refused(
        "Patient",
        r#"{"id":"a","id":"b","resourceType":"Patient"}"#,
        "id",
        "id",
    );
    refused(
        "",
        r#"{"resourceType":"Bundle","type":"transaction","entry":[{"resource":
            {"resourceType":"Patient","active":true,"active":false},
            "request":{"method":"POST","url":"Patient"}}]}"#,
        "Bundle.entry[0].resource.active",
        "active",
    );
    refused(
        "Patient/$validate",
        r#"{"resourceType":"Parameters","parameter":[{"name":"mode","valueCode":"create",
            "valueCode":"update"}]}"#,
        "Parameters.parameter[0].valueCode",
        "valueCode",
    );
    let reply = fhir.put(
        "Patient/p1",
        r#"{"resourceType":"Patient","id":"p1","id":"p2"}"#.to_string(),
    );
    assert_outcome(&reply, 400, &["structure"]);
    nothing_stored(&fhir, "Patient");
    // Equal keys in different objects are no duplicates; escapes are compared decoded.
    fhir.post(
        "Patient",
        r#"{"resourceType":"Patient","name":[{"family":"A"},{"family":"B"}]}"#.to_string(),
    )
    .expect(201, "no duplicate");
    refused(
        "Patient",
        r#"{"resourceType":"Patient","gender":"male","gend\u0065r":"female"}"#,
        "Patient.gender",
        "gender",
    );
}

#[test]
fn a_missing_required_element_is_reported_where_it_is_missing() {
    let fhir = Fhir::start();
    let refused = |resource: Value, expression: &str| {
        let resource_type = resource["resourceType"].as_str().unwrap().to_string();
        let outcome = assert_outcome(&fhir.post(&resource_type, &resource), 400, &["structure"]);
        assert_eq!(
            outcome["issue"][0]["expression"],
            json!([expression]),
            "{outcome}"
        );
    };
    refused(
        json!({"resourceType": "DocumentReference",
            "identifier": [{"system": "urn:ietf:rfc:3986", "value": "urn:uuid:1"}],
            "content": [{"attachment": {"contentType": "text/plain", "data": "aGk="}}]}),
        "DocumentReference.status",
    );
    refused(
        json!({"resourceType": "Observation", "identifier": [{"value": "1"}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}}),
        "Observation.status",
    );
    refused(
        json!({"resourceType": "Encounter", "status": "finished",
            "identifier": [{"value": "1"}], "type": [{"text": "visit"}]}),
        "Encounter.class",
    );
    refused(
        json!({"resourceType": "DocumentReference", "status": "current",
            "content": [{"format": {"code": "x"}}]}),
        "DocumentReference.content[0].attachment",
    );
}

#[test]
fn import_drops_empty_elements_and_counts_them_as_warnings() {
    let temp = tempfile::tempdir().unwrap();
    let patient = generated_transaction()["entry"][0]["resource"].clone();
    let file = temp.path().join("patients.ndjson");
    std::fs::write(&file, format!("{patient}\n")).unwrap();
    let data = temp.path().join("data");
    let summary = common::run_command(&["import", "--quiet", file.to_str().unwrap()], &data);
    assert!(
        summary.starts_with("imported 1 resources from 1 files in")
            && summary.ends_with(&format!(
                "0 rejected resources, 0 rejected files; {} validation warnings",
                DROPPED.len()
            )),
        "{summary}"
    );
    let fhir = Fhir::on(&data, &[]);
    let found = fhir.get("Patient").expect(200, "search").json();
    assert_eq!(found["entry"].as_array().unwrap().len(), 1, "{found}");
    assert_cleaned(&found["entry"][0]["resource"]);
}
