//! The API explorer in a real browser: headless Debian chromium, driven by
//! `tests/explorer/explorer.cjs` (playwright-core), loads `/docs`, lists the Patient endpoints,
//! and runs GET /fhir/metadata and GET /fhir/Patient/{id} through "Try it out" + "Execute".
//!
//! `FHIRLAKE_UPDATE_SCREENSHOT=1 cargo test --test explorer` also saves the page to
//! `openapi/explorer.png`, the screenshot the README shows.

mod common;

use common::fhir::FhirClient;
use common::{TestServer, test_tool};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::process::Command;

const SCREENSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/explorer.png");

#[test]
fn the_explorer_lists_the_patient_endpoints_and_runs_calls() {
    let node_modules = test_tool("node/node_modules");
    let server = TestServer::start();
    let patient = FhirClient::new(&server).create(&json!({
        "resourceType": "Patient",
        "name": [{"family": "Chalmers", "given": ["Peter"]}],
        "gender": "male",
        "birthDate": "1974-12-25"
    }));
    let id = patient["id"].as_str().unwrap();

    let mut driver = Command::new("node");
    driver
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/explorer/explorer.cjs"
        ))
        .args([&server.origin, id])
        .env("NODE_PATH", &node_modules);
    if std::env::var_os("FHIRLAKE_UPDATE_SCREENSHOT").is_some_and(|v| v == "1") {
        driver.arg(SCREENSHOT);
    }
    let output = driver.output().expect("run node (is Node.js installed?)");
    assert!(
        output.status.success(),
        "the browser driver failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_slice(&output.stdout).expect("the driver's JSON");

    assert_eq!(seen["url"], format!("{}/docs/", server.origin));
    assert!(
        seen["title"]
            .as_str()
            .unwrap()
            .starts_with("fhirlake FHIR R4 API"),
        "{seen}"
    );
    assert_eq!(seen["authorize"], 1, "the Authorize button");
    let requests = seen["requests"].as_array().unwrap();
    for url in requests {
        assert!(
            url.as_str().unwrap().starts_with(&server.origin),
            "the page fetched {url} from elsewhere"
        );
    }

    let listed: BTreeSet<&str> = seen["patientOperations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|operation| operation.as_str().unwrap())
        .collect();
    let expected = BTreeSet::from([
        "POST /fhir/Patient",
        "GET /fhir/Patient/{id}",
        "PUT /fhir/Patient/{id}",
        "PATCH /fhir/Patient/{id}",
        "DELETE /fhir/Patient/{id}",
        "GET /fhir/Patient/{id}/_history/{vid}",
        "GET /fhir/Patient/{id}/_history",
        "GET /fhir/Patient/_history",
        "GET /fhir/Patient",
        "GET /fhir/Patient/{id}/{type}",
        "GET /fhir/Patient/{id}/$everything",
        "POST /fhir/Patient/$validate",
        "GET /fhir/Patient/{id}/$validate",
        "POST /fhir/Patient/{id}/$validate",
    ]);
    assert_eq!(listed, expected);

    assert_eq!(seen["metadata"]["status"], 200, "{}", seen["metadata"]);
    assert!(
        seen["metadata"]["body"]
            .as_str()
            .unwrap()
            .contains("\"CapabilityStatement\"")
    );
    assert_eq!(seen["read"]["status"], 200, "{}", seen["read"]);
    let read: Value = serde_json::from_str(seen["read"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(read, patient);
    // GET /fhir/Patient through the page: a searchset holding the Patient created above.
    assert_eq!(seen["search"]["status"], 200, "{}", seen["search"]);
    let searchset: Value = serde_json::from_str(seen["search"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(searchset["type"], "searchset");
    assert_eq!(searchset["entry"][0]["resource"], patient);
}
