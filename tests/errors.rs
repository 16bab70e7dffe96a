//! Every error answer of the contract: status code, an OperationOutcome body with the right
//! issue code and, for resources that fail parsing, the path of the bad element. Ends with a
//! property test: arbitrary JSON-ish Patients are answered 201, 400 or (when valid JSON breaks
//! a rule of R4 the model does not check, such as an invariant) 422, never anything else.
mod common;

use common::FHIR_JSON;
use common::fhir::{Fhir, assert_outcome_for, send, strip_server_fields};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use std::cell::Cell;

/// Issue codes for a body that cannot be parsed or has a bad structure.
const STRUCTURE: &[&str] = &["structure", "invalid"];

/// Asserts that no version at all has been written.
fn assert_nothing_stored(fhir: &Fhir) {
    let history = fhir.get("_history").expect(200, "system history").json();
    assert!(
        history["entry"].as_array().is_none_or(Vec::is_empty),
        "nothing may have been stored: {history}"
    );
}

fn patient() -> Value {
    json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Shape"}]})
}

#[test]
fn malformed_json_is_400() {
    let fhir = Fhir::start();
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", br#"{"resourceType": "Patient","#.to_vec()),
        ("not json", b"resourceType=Patient".to_vec()),
        ("empty", Vec::new()),
        ("trailing", br#"{"resourceType": "Patient"} x"#.to_vec()),
        ("single quotes", b"{'resourceType': 'Patient'}".to_vec()),
        (
            "invalid UTF-8",
            b"{\"resourceType\": \"Patient\", \"gender\": \"\xff\"}".to_vec(),
        ),
    ];
    for (what, body) in bodies {
        assert_outcome_for(
            &fhir.post("Patient", body.clone()),
            400,
            STRUCTURE,
            &format!("POST {what}"),
        );
        assert_outcome_for(
            &fhir.put("Patient/p1", body),
            400,
            STRUCTURE,
            &format!("PUT {what}"),
        );
    }
    assert_nothing_stored(&fhir);
}

#[test]
fn body_that_is_not_a_resource_object_is_400() {
    let fhir = Fhir::start();
    for body in [
        json!([{"resourceType": "Patient"}]),
        json!([]),
        json!("Patient"),
        json!(42),
        json!(null),
        json!({"name": [{"family": "NoType"}]}),
        json!({"resourceType": 5}),
        json!({"resourceType": "Patientx"}),
        json!({"resourceType": "patient"}),
        json!({"resourceType": "DomainResource"}),
    ] {
        let what = format!("POST {body}");
        assert_outcome_for(
            &fhir.post("Patient", body.to_string()),
            400,
            STRUCTURE,
            &what,
        );
        assert_outcome_for(
            &fhir.put("Patient/p1", body.to_string()),
            400,
            STRUCTURE,
            &format!("PUT {body}"),
        );
    }
    assert_nothing_stored(&fhir);
}

#[test]
fn resource_type_differing_from_the_url_is_400() {
    let fhir = Fhir::start();
    let observation = json!({
        "resourceType": "Observation",
        "id": "x1",
        "status": "final",
        "code": {"text": "weight"}
    });
    let codes = &["invalid", "structure", "value", "processing"];
    assert_outcome_for(
        &fhir.post("Patient", observation.to_string()),
        400,
        codes,
        "POST Observation to Patient",
    );
    assert_outcome_for(
        &fhir.put("Patient/x1", observation.to_string()),
        400,
        codes,
        "PUT Observation to Patient/x1",
    );
    assert_outcome_for(&fhir.get("Patient/x1"), 404, &["not-found"], "read");
    assert_outcome_for(&fhir.get("Observation/x1"), 404, &["not-found"], "read");
    assert_nothing_stored(&fhir);
    // The same body is fine where it belongs.
    fhir.put("Observation/x1", observation.to_string())
        .expect(201, "PUT Observation to Observation/x1");
}

#[test]
fn bad_elements_are_400_with_their_path() {
    let fhir = Fhir::start();
    let cases = [
        (
            json!({"name": [{"family": "x", "nickname": "y"}]}),
            "Patient.name[0].nickname",
        ),
        (
            json!({"contact": [{"name": {"family": "x", "nickname": "y"}}]}),
            "Patient.contact[0].name.nickname",
        ),
        (
            json!({"favouriteColour": "blue"}),
            "Patient.favouriteColour",
        ),
        (json!({"gender": ["male"]}), "Patient.gender"),
        (json!({"active": "true"}), "Patient.active"),
        (
            json!({"multipleBirthInteger": "3"}),
            "Patient.multipleBirthInteger",
        ),
        // (Empty elements are dropped with a warning instead: tests/intake.rs.)
        (json!({"name": {"family": "x"}}), "Patient.name"),
        (json!({"name": [{"family": 7}]}), "Patient.name[0].family"),
    ];
    for (members, expression) in cases {
        let mut body = json!({"resourceType": "Patient", "id": "p1"});
        for (key, value) in members.as_object().expect("members") {
            body[key] = value.clone();
        }
        for (method, reply) in [
            ("POST", fhir.post("Patient", body.to_string())),
            ("PUT", fhir.put("Patient/p1", body.to_string())),
        ] {
            let what = format!("{method} {body}");
            let outcome = assert_outcome_for(&reply, 400, STRUCTURE, &what);
            let issue = &outcome["issue"][0];
            assert_eq!(
                issue["expression"][0], expression,
                "{what}: expression of {issue}"
            );
        }
    }
    // A missing required element (Observation.status).
    let observation = json!({"resourceType": "Observation", "code": {"text": "x"}});
    assert_outcome_for(
        &fhir.post("Observation", observation.to_string()),
        400,
        &["structure", "invalid", "required"],
        "Observation without status",
    );
    assert_nothing_stored(&fhir);
    // The same Patient without the problems is accepted.
    fhir.post("Patient", patient().to_string())
        .expect(201, "valid Patient");
}

#[test]
fn invalid_id_in_url_is_400() {
    let fhir = Fhir::start();
    let long = "a".repeat(65);
    let ids = ["a_b", "a%20b", "a:b", "%C3%A9t%C3%A9", long.as_str()];
    let codes = &["invalid", "value"];
    for id in ids {
        for path in [
            format!("Patient/{id}"),
            format!("Patient/{id}/_history/1"),
            format!("Patient/{id}/_history"),
        ] {
            assert_outcome_for(&fhir.get(&path), 400, codes, &format!("GET {path}"));
        }
        let decoded = match id {
            "a%20b" => "a b".to_string(),
            "%C3%A9t%C3%A9" => "été".to_string(),
            other => other.to_string(),
        };
        let body = json!({"resourceType": "Patient", "id": decoded});
        assert_outcome_for(
            &fhir.put(&format!("Patient/{id}"), body.to_string()),
            400,
            codes,
            &format!("PUT Patient/{id}"),
        );
        assert_outcome_for(
            &fhir.delete(&format!("Patient/{id}")),
            400,
            codes,
            &format!("DELETE Patient/{id}"),
        );
    }
    assert_nothing_stored(&fhir);
}

#[test]
fn unknown_resource_type_in_url_is_404() {
    let fhir = Fhir::start();
    let codes = &["not-found", "not-supported"];
    for path in [
        "Foo/1",
        "patient/1",
        "Resource/1",
        "DomainResource/1",
        "Foo/1/_history/1",
        "Foo/1/_history",
        "Foo/_history",
        "Foo",
    ] {
        assert_outcome_for(&fhir.get(path), 404, codes, &format!("GET {path}"));
    }
    let body = json!({"resourceType": "Patient", "id": "1"});
    assert_outcome_for(&fhir.post("Foo", body.to_string()), 404, codes, "POST Foo");
    assert_outcome_for(
        &fhir.put("Foo/1", body.to_string()),
        404,
        codes,
        "PUT Foo/1",
    );
    assert_outcome_for(&fhir.delete("Foo/1"), 404, codes, "DELETE Foo/1");
    assert_nothing_stored(&fhir);
}

#[test]
fn an_accept_or_format_that_is_neither_fhir_json_nor_xml_is_406() {
    let fhir = Fhir::start();
    let created = fhir
        .post("Patient", &patient())
        .expect(201, "create")
        .json();
    let path = format!("Patient/{}", created["id"].as_str().expect("id"));
    for accept in [
        "text/html",
        "application/pdf",
        "application/fhir+json;q=0, image/png",
    ] {
        assert_outcome_for(
            &fhir.get_with(&path, &[("accept", accept)]),
            406,
            &["not-supported"],
            &format!("Accept: {accept}"),
        );
    }
    assert_outcome_for(
        &fhir.get(&format!("{path}?_format=turtle")),
        406,
        &["not-supported"],
        "_format=turtle",
    );
    assert_outcome_for(
        &fhir.post_with("Patient", &patient(), &[("accept", "text/html")]),
        406,
        &["not-supported"],
        "POST with Accept: text/html",
    );
    // JSON, anything, or something else with JSON as an alternative: 200.
    for accept in [
        "application/fhir+json",
        "application/json",
        "*/*",
        "application/fhir+json; charset=utf-8",
        "text/html, application/fhir+json;q=0.9",
    ] {
        fhir.get_with(&path, &[("accept", accept)])
            .expect(200, &format!("Accept: {accept}"));
    }
    for format in ["json", "application/fhir+json", "application/json"] {
        fhir.get_query(&path, &[("_format", format)])
            .expect(200, &format!("_format={format}"));
    }
}

#[test]
fn a_content_type_that_is_neither_fhir_json_nor_xml_is_415() {
    let fhir = Fhir::start();
    let json_body = patient().to_string();
    for content_type in [
        "text/plain",
        "text/plain; charset=utf-8",
        "application/pdf",
        "application/x-www-form-urlencoded",
    ] {
        for (method, request) in [
            ("POST", fhir.http.post(fhir.url("Patient"))),
            ("PUT", fhir.http.put(fhir.url("Patient/p1"))),
        ] {
            assert_outcome_for(
                &send(
                    request
                        .header("content-type", content_type)
                        .body(json_body.clone()),
                ),
                415,
                &["not-supported"],
                &format!("{method} with Content-Type: {content_type}"),
            );
        }
    }
    assert_nothing_stored(&fhir);
    // Missing, application/json and application/fhir+json (with or without charset) are fine.
    send(fhir.http.post(fhir.url("Patient")).body(json_body.clone()))
        .expect(201, "no Content-Type");
    for content_type in [
        "application/json",
        "application/fhir+json",
        "application/fhir+json; charset=utf-8",
        "application/json;charset=UTF-8",
    ] {
        send(
            fhir.http
                .post(fhir.url("Patient"))
                .header("content-type", content_type)
                .body(json_body.clone()),
        )
        .expect(201, &format!("Content-Type: {content_type}"));
    }
}

#[test]
fn body_over_max_body_is_413() {
    let temp = tempfile::tempdir().expect("temp dir");
    let fhir = Fhir::on(&temp.path().join("data"), &["--max-body", "1000"]);
    let sized = |size: usize| {
        let mut body = json!({"resourceType": "Patient", "id": "big", "name": [{"family": ""}]});
        let filler = size - body.to_string().len();
        body["name"][0]["family"] = json!("x".repeat(filler));
        let text = body.to_string();
        assert_eq!(text.len(), size);
        text
    };
    let big = sized(2000);
    assert_outcome_for(
        &fhir.post("Patient", big.clone()),
        413,
        &["too-long"],
        "POST of 2000 bytes",
    );
    assert_outcome_for(
        &fhir.put("Patient/big", big.clone()),
        413,
        &["too-long"],
        "PUT of 2000 bytes",
    );
    // Just over and just under the limit.
    assert_outcome_for(
        &fhir.post("Patient", sized(1001)),
        413,
        &["too-long"],
        "POST of 1001 bytes",
    );
    let stored = |expected: usize| {
        let history = fhir.get("_history").expect(200, "history").json();
        let count = history["entry"].as_array().map_or(0, Vec::len);
        assert_eq!(count, expected, "versions stored: {history}");
    };
    stored(0);
    fhir.post("Patient", sized(1000))
        .expect(201, "POST of 1000 bytes");
    fhir.put("Patient/big", sized(900))
        .expect(201, "PUT of 900 bytes");
    // Without Content-Length (chunked transfer encoding).
    let chunked = reqwest::blocking::Body::new(std::io::Cursor::new(big.into_bytes()));
    assert_outcome_for(
        &fhir.post("Patient", chunked),
        413,
        &["too-long"],
        "chunked POST of 2000 bytes",
    );
    stored(2);
}

#[test]
fn unsupported_method_is_405() {
    let fhir = Fhir::start();
    let cases = [
        (reqwest::Method::DELETE, "metadata"),
        (reqwest::Method::POST, "metadata"),
        (reqwest::Method::PUT, "_history"),
        (reqwest::Method::POST, "Patient/p1/_history/1"),
        (reqwest::Method::PUT, "Patient/p1/_history"),
        (reqwest::Method::POST, "Patient/p1"),
    ];
    for (method, path) in cases {
        assert_outcome_for(
            &fhir.submit(method.clone(), path, patient().to_string(), &[]),
            405,
            &["not-supported", "processing"],
            &format!("{method} {path}"),
        );
    }
    assert_nothing_stored(&fhir);
}

#[test]
fn unknown_path_is_404() {
    let fhir = Fhir::start();
    for url in [
        fhir.url("Patient/p1/_history/1/extra"),
        fhir.url("Patient/p1/something"),
        format!("{}/nothing/here", fhir.server.origin),
        format!("{}/fhirx/Patient/p1", fhir.server.origin),
    ] {
        assert_outcome_for(
            &send(fhir.http.get(&url)),
            404,
            &["not-found"],
            &format!("GET {url}"),
        );
    }
}

#[test]
fn not_found_gone_and_version_conflict() {
    let fhir = Fhir::start();
    assert_outcome_for(&fhir.get("Patient/p1"), 404, &["not-found"], "read");
    assert_outcome_for(
        &fhir.get("Patient/p1/_history/1"),
        404,
        &["not-found"],
        "vread",
    );
    fhir.put("Patient/p1", patient().to_string())
        .expect(201, "create");
    let reply = fhir.put_with("Patient/p1", &patient(), &[("if-match", "W/\"5\"")]);
    assert_outcome_for(&reply, 412, &["conflict"], "stale If-Match");
    fhir.delete("Patient/p1").expect(204, "delete");
    assert_outcome_for(&fhir.get("Patient/p1"), 410, &["deleted"], "read deleted");
    assert_outcome_for(
        &fhir.get("Patient/p1/_history/2"),
        410,
        &["deleted"],
        "vread of the delete",
    );
}

// ---- property test -------------------------------------------------------------------------

fn member_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "name", "given", "family", "use", "text", "extension", "url", "valueString",
            "valueInteger", "valueBoolean", "gender", "active", "telecom", "system", "value",
            "identifier", "address", "line", "id", "_given", "_gender", "contained",
            "resourceType", "birthDate", "period", "start", "meta", "versionId", "deceasedBoolean",
            "deceasedDateTime", "multipleBirthInteger", "contact", "link", "other",
        ])
        .prop_map(String::from),
        1 => "[a-zA-Z_]{1,8}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(Value::from),
        (-1.0e6..1.0e6f64).prop_map(Value::from),
        "[a-zA-Z0-9 _-]{0,6}".prop_map(Value::String),
        prop::sample::select(vec![
            "male",
            "female",
            "2020-01-02",
            "1999",
            "http://example.org",
            "true",
            "1",
            "Patient",
        ])
        .prop_map(Value::from),
        Just(Value::Null),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((member_name(), inner), 0..4)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// Members of a valid Patient, so that a fair share of the cases is accepted.
fn valid_member() -> impl Strategy<Value = (String, Value)> {
    prop::sample::select(vec![
        ("gender", json!("male")),
        ("active", json!(false)),
        ("birthDate", json!("1980-07-01")),
        ("name", json!([{"family": "Prop", "given": ["A", "B"]}])),
        ("telecom", json!([{"system": "phone", "value": "555"}])),
        (
            "extension",
            json!([{"url": "http://example.org/x", "valueInteger": 3}]),
        ),
        ("multipleBirthInteger", json!(2)),
        ("deceasedBoolean", json!(false)),
    ])
    .prop_map(|(k, v)| (k.to_string(), v))
}

/// A Patient with random members, and maybe a position where its text is cut off.
fn patient_text() -> impl Strategy<Value = (Value, Option<prop::sample::Index>)> {
    let member = prop_oneof![
        2 => (member_name(), json_value()),
        1 => valid_member(),
    ];
    (
        prop::collection::vec(member, 0..5),
        prop::option::weighted(0.1, any::<prop::sample::Index>()),
    )
        .prop_map(|(members, cut)| {
            let mut body = serde_json::Map::new();
            for (key, value) in members {
                body.insert(key, value);
            }
            body.insert("resourceType".into(), json!("Patient"));
            (Value::Object(body), cut)
        })
}

#[test]
fn arbitrary_patients_are_answered_201_400_or_422() {
    let fhir = Fhir::start();
    let accepted = Cell::new(0);
    let rejected = Cell::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 200,
        failure_persistence: None,
        max_shrink_iters: 200,
        ..Config::default()
    });
    let result = runner.run(&patient_text(), |(body, cut)| {
        let mut text = body.to_string();
        if let Some(cut) = cut {
            let mut at = cut.index(text.len());
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            text.truncate(at);
        }
        let response = fhir
            .http
            .post(fhir.url("Patient"))
            .header("content-type", FHIR_JSON)
            .body(text.clone())
            .send();
        let response = match response {
            Ok(response) => response,
            Err(error) => return Err(TestCaseError::fail(format!("no answer: {error}"))),
        };
        let status = response.status().as_u16();
        let answer = response
            .text()
            .map_err(|e| TestCaseError::fail(format!("body: {e}")))?;
        prop_assert!(
            status == 201 || status == 400 || (status == 422 && cut.is_none()),
            "status {} for {}: {}",
            status,
            text,
            answer
        );
        let answer: Value = serde_json::from_str(&answer)
            .map_err(|e| TestCaseError::fail(format!("answer is not JSON: {e}: {answer}")))?;
        if status == 400 || status == 422 {
            rejected.set(rejected.get() + 1);
            prop_assert_eq!(&answer["resourceType"], "OperationOutcome");
            prop_assert_eq!(&answer["issue"][0]["severity"], "error");
        } else {
            accepted.set(accepted.get() + 1);
            prop_assert!(cut.is_none(), "truncated JSON was accepted: {}", text);
            prop_assert_eq!(&answer["meta"]["versionId"], "1");
            // What is stored is what was sent, but for the empty elements it had.
            let mut sent = body.clone();
            fhirlake_model::drop_empty(&mut sent);
            prop_assert_eq!(
                strip_server_fields(&answer),
                strip_server_fields(&sent),
                "the stored Patient differs from the one sent"
            );
        }
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
    assert!(accepted.get() > 0, "no case was accepted");
    assert!(rejected.get() > 0, "no case was rejected");
    // Still alive and answering.
    let metadata = fhir.get("metadata");
    metadata.expect(200, "metadata after the property test");
    assert_eq!(metadata.json()["resourceType"], "CapabilityStatement");
}
