//! SQL on FHIR views over HTTP: ViewDefinition as a resource, and `$run` on Synthea data in
//! every format against rows computed here by a plain scan of the same resources (serde_json,
//! not the evaluator); a `patient/` token's rows; bad and hostile views answered 400 with a
//! located OperationOutcome.

mod common;

use common::auth::{HS256, bearer, token};
use common::fhir::{Reply, assert_outcome};
use common::{TestServer, run_command, synthea};
use serde_json::{Value, json};
use std::path::PathBuf;

/// The patient bundles loaded (three small ones).
const PATIENTS: &[&str] = &["8a4c9c04", "6c8f3e83", "085e81c0"];

const SYNTHEA: &str = "https://github.com/synthetichealth/synthea";

/// A server with HS256 authorization over the Synthea providers and [`PATIENTS`], loaded by
/// `fhirlake import`.
fn server() -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data: PathBuf = dir.path().join("data");
    let files: Vec<String> = ["0-hospitalInformation", "0-practitionerInformation"]
        .iter()
        .chain(PATIENTS)
        .map(|prefix| synthea::path(prefix).display().to_string())
        .collect();
    let mut args = vec!["import", "--quiet"];
    args.extend(files.iter().map(String::as_str));
    run_command(&args, &data);
    (TestServer::start_on(&data, HS256), dir)
}

/// The resources of type `kind` in [`PATIENTS`]' bundles.
fn scanned(kind: &str) -> Vec<Value> {
    PATIENTS
        .iter()
        .flat_map(|prefix| synthea::resources(prefix))
        .filter(|r| r["resourceType"] == kind)
        .collect()
}

fn patient_view() -> Value {
    json!({
        "resourceType": "ViewDefinition",
        "name": "patient_demographics",
        "status": "active",
        "resource": "Patient",
        "select": [
            {"column": [
                {"name": "mrn", "path": format!("identifier.where(system = '{SYNTHEA}').value.first()")},
                {"name": "gender", "path": "gender"},
                {"name": "birth_date", "path": "birthDate"}
            ]},
            {"forEachOrNull": "name.where(use = 'official').first()", "column": [
                {"name": "family", "path": "family"},
                {"name": "given", "path": "given.join(' ')"}
            ]}
        ]
    })
}

/// The rows of [`patient_view`], by a plain scan.
fn patient_rows(patients: &[Value]) -> Vec<Value> {
    patients
        .iter()
        .map(|p| {
            let mrn = p["identifier"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|i| i["system"] == SYNTHEA)
                .map_or(Value::Null, |i| i["value"].clone());
            let official = p["name"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|n| n["use"] == "official");
            let given = official.and_then(|n| n["given"].as_array()).map(|given| {
                let parts: Vec<&str> = given.iter().filter_map(Value::as_str).collect();
                json!(parts.join(" "))
            });
            json!({
                "mrn": mrn,
                "gender": p["gender"],
                "birth_date": p["birthDate"],
                "family": official.map_or(Value::Null, |n| n["family"].clone()),
                "given": given.unwrap_or(Value::Null),
            })
        })
        .collect()
}

fn observation_view() -> Value {
    json!({
        "resourceType": "ViewDefinition",
        "name": "observation_flat",
        "status": "active",
        "resource": "Observation",
        "select": [{"column": [
            {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
            {"name": "status", "path": "status"},
            {"name": "code", "path": "code.coding.first().code"},
            {"name": "effective", "path": "effective.ofType(dateTime)"},
            {"name": "value", "path": "value.ofType(Quantity).value"},
            {"name": "unit", "path": "value.ofType(Quantity).unit"}
        ]}]
    })
}

/// The rows of [`observation_view`], by a plain scan, without `patient` (a server id).
fn observation_rows(observations: &[Value]) -> Vec<Value> {
    observations
        .iter()
        .map(|o| {
            json!({
                "status": o["status"],
                "code": o["code"]["coding"][0]["code"],
                "effective": o["effectiveDateTime"],
                "value": o["valueQuantity"]["value"],
                "unit": o["valueQuantity"]["unit"],
            })
        })
        .collect()
}

/// A `$run` of the inline `view` in `format`.
fn run(client: &common::fhir::FhirClient, view: &Value, format: &str) -> Reply {
    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "viewResource", "resource": view},
        {"name": "_format", "valueCode": format}
    ]});
    client.post("/ViewDefinition/$run", &body)
}

/// The rows of a `$run` answer in `format`, as JSON objects (CSV fields as text).
fn rows_of(reply: &Reply, format: &str) -> Vec<Value> {
    reply.expect(200, format);
    match format {
        "json" => reply.json().as_array().expect("an array").clone(),
        "ndjson" => reply
            .text
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect(),
        _ => {
            let mut reader = csv::Reader::from_reader(reply.text.as_bytes());
            let names: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
            reader
                .records()
                .map(|record| {
                    let record = record.unwrap();
                    Value::Object(
                        names
                            .iter()
                            .cloned()
                            .zip(record.iter().map(|f| json!(f)))
                            .collect(),
                    )
                })
                .collect()
        }
    }
}

/// A row as CSV gives it: every field its text, a null empty.
fn as_csv(row: &Value) -> Value {
    let object = row.as_object().unwrap();
    Value::Object(
        object
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::Null => String::new(),
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), json!(text))
            })
            .collect(),
    )
}

/// Rows without `column`, sorted by their JSON text: a multiset to compare.
fn sorted(rows: &[Value], without: Option<&str>) -> Vec<String> {
    let mut texts: Vec<String> = rows
        .iter()
        .map(|row| {
            let mut row = row.clone();
            if let Some(column) = without {
                row.as_object_mut().unwrap().shift_remove(column);
            }
            row.to_string()
        })
        .collect();
    texts.sort();
    texts
}

#[test]
fn run_makes_the_rows_of_a_plain_scan_in_every_format() {
    let (server, _dir) = server();
    let client = bearer(&server, &token("system/*.*", None));
    let patients = patient_rows(&scanned("Patient"));
    let observations = observation_rows(&scanned("Observation"));
    assert_eq!(patients.len(), PATIENTS.len());
    assert!(observations.len() > 100, "the bundles have Observations");
    for format in ["json", "ndjson", "csv"] {
        let made = rows_of(&run(&client, &patient_view(), format), format);
        let made_observations = rows_of(&run(&client, &observation_view(), format), format);
        let (expected, expected_observations): (Vec<Value>, Vec<Value>) = match format {
            "csv" => (
                patients.iter().map(as_csv).collect(),
                observations.iter().map(as_csv).collect(),
            ),
            _ => (patients.clone(), observations.clone()),
        };
        assert_eq!(sorted(&made, None), sorted(&expected, None), "{format}");
        assert_eq!(
            sorted(&made_observations, Some("patient")),
            sorted(&expected_observations, None),
            "{format}"
        );
    }
    // `_limit` cuts the rows; `header=false` leaves out CSV's names.
    let limited = client.post(
        "/ViewDefinition/$run?_limit=7&_format=ndjson",
        &json!({"resourceType": "Parameters", "parameter": [
            {"name": "viewResource", "resource": observation_view()}]}),
    );
    assert_eq!(rows_of(&limited, "ndjson").len(), 7);
    let bare = client.post(
        "/ViewDefinition/$run?_format=csv&header=false",
        &json!({"resourceType": "Parameters", "parameter": [
            {"name": "viewResource", "resource": patient_view()}]}),
    );
    bare.expect(200, "csv without header");
    assert_eq!(bare.text.lines().count(), PATIENTS.len());
    assert!(!bare.text.contains("birth_date"));
}

#[test]
fn stored_views_are_versioned_searchable_and_run() {
    let (server, _dir) = server();
    let client = bearer(&server, &token("system/*.*", None));
    let created = client.post("/ViewDefinition", &patient_view());
    created.expect(201, "create a ViewDefinition");
    let id = created.json()["id"].as_str().unwrap().to_string();
    let mut changed = created.json();
    changed["status"] = json!("retired");
    client
        .put(&format!("/ViewDefinition/{id}"), &changed)
        .expect(200, "update");
    let read = client.get(&format!("/ViewDefinition/{id}"));
    read.expect(200, "read");
    assert_eq!(read.json()["meta"]["versionId"], "2");
    for query in [
        "name=patient_demographics",
        "resource=Patient",
        "status=retired",
    ] {
        let found = client.get(&format!("/ViewDefinition?{query}"));
        found.expect(200, query);
        assert_eq!(found.json()["total"], 1, "{query}");
    }
    let none = client.get("/ViewDefinition?status=active");
    assert_eq!(none.json()["total"], 0);
    let made = rows_of(
        &client.get(&format!("/ViewDefinition/{id}/$run?_format=json")),
        "json",
    );
    assert_eq!(
        sorted(&made, None),
        sorted(&patient_rows(&scanned("Patient")), None)
    );
    let metadata = client.get("/metadata").json();
    let resources = metadata["rest"][0]["resource"].as_array().unwrap();
    let views = resources
        .iter()
        .find(|r| r["type"] == "ViewDefinition")
        .expect("ViewDefinition in the CapabilityStatement");
    assert!(
        views["operation"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["name"] == "run")
    );
}

#[test]
fn a_patient_token_gets_only_its_compartments_rows() {
    let (server, _dir) = server();
    let admin = bearer(&server, &token("system/*.*", None));
    let bundle = synthea::resources(PATIENTS[0]);
    let mrn = bundle[0]["id"].as_str().unwrap().to_string();
    let found = admin.get(&format!("/Patient?identifier={SYNTHEA}|{mrn}"));
    let patient = found.json()["entry"][0]["resource"]["id"]
        .as_str()
        .expect("the patient")
        .to_string();
    let own = bearer(&server, &token("patient/*.read", Some(&patient)));
    let rows = rows_of(&run(&own, &observation_view(), "json"), "json");
    let expected: Vec<Value> = bundle
        .iter()
        .filter(|r| r["resourceType"] == "Observation")
        .cloned()
        .collect();
    assert_eq!(
        sorted(&rows, Some("patient")),
        sorted(&observation_rows(&expected), None)
    );
    assert!(rows.iter().all(|row| row["patient"] == patient.as_str()));
    let patients = rows_of(&run(&own, &patient_view(), "json"), "json");
    assert_eq!(patients.len(), 1);
    assert_eq!(patients[0]["mrn"], mrn.as_str());
    // A token that cannot read Observations cannot run a view of them.
    let other = bearer(&server, &token("patient/Patient.read", Some(&patient)));
    assert_outcome(
        &run(&other, &observation_view(), "json"),
        403,
        &["forbidden"],
    );
}

/// The first issue's location.
fn located(reply: &Reply, status: u16) -> String {
    let outcome = assert_outcome(
        reply,
        status,
        &["invalid", "processing", "too-costly", "not-supported"],
    );
    outcome["issue"][0]["expression"][0]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn bad_and_hostile_views_are_located_400s() {
    let (server, _dir) = server();
    let client = bearer(&server, &token("system/*.*", None));
    let mut wrong_column = patient_view();
    wrong_column["select"][0]["column"][1]["path"] = json!("gender.(");
    assert_eq!(
        located(&client.post("/ViewDefinition", &wrong_column), 400),
        "ViewDefinition.select[0].column[1].path"
    );
    assert_eq!(
        located(&run(&client, &wrong_column, "json"), 400),
        "ViewDefinition.select[0].column[1].path"
    );
    let mut no_resource = patient_view();
    no_resource.as_object_mut().unwrap().remove("resource");
    assert_eq!(
        located(&client.post("/ViewDefinition", &no_resource), 400),
        "ViewDefinition.resource"
    );
    let mut unknown_member = patient_view();
    unknown_member["select"][1]["forEvery"] = json!("name");
    unknown_member["id"] = json!("x");
    assert_eq!(
        located(&client.put("/ViewDefinition/x", &unknown_member), 400),
        "ViewDefinition.select[1].forEvery"
    );
    // An unknown function fails on the first resource: a 400 before any row.
    let mut unknown_function = observation_view();
    unknown_function["select"][0]["column"][0]["path"] = json!("subject.frobnicate()");
    assert_eq!(
        located(&run(&client, &unknown_function, "json"), 400),
        "ViewDefinition.select[0].column[0].path"
    );
    // A column with many values that is not a collection.
    let mut many = patient_view();
    many["select"][0]["column"][0]["path"] = json!("identifier.value");
    assert_eq!(
        located(&run(&client, &many, "csv"), 400),
        "ViewDefinition.select[0].column[0].path"
    );
    // Selects nested deeper than allowed (and within the body's JSON nesting limit).
    let mut deep = json!({"column": [{"name": "id", "path": "id"}]});
    for _ in 0..40 {
        deep = json!({"select": [deep]});
    }
    let deep_view =
        json!({"resourceType": "ViewDefinition", "resource": "Patient", "select": [deep]});
    assert!(
        located(&run(&client, &deep_view, "json"), 400).starts_with("ViewDefinition.select[0]")
    );
    // A very long path.
    let long = vec!["name"; 10_000].join(".");
    let mut long_view = patient_view();
    long_view["select"][0]["column"][0]["path"] = json!(long);
    assert_eq!(
        located(&run(&client, &long_view, "json"), 400),
        "ViewDefinition.select[0].column[0].path"
    );
    // A repeat that never ends, and products that explode.
    let endless = json!({"resourceType": "ViewDefinition", "resource": "Patient", "select": [
        {"repeat": ["%resource"], "column": [{"name": "id", "path": "id"}]}]});
    located(&run(&client, &endless, "json"), 400);
    let explode = json!({"resourceType": "ViewDefinition", "resource": "Patient", "select": [
        {"forEach": "%resource.descendants()", "select": [{"forEach": "%resource.descendants()", "select": [
            {"forEach": "%resource.descendants()", "column": [{"name": "id", "path": "%rowIndex"}]}]}]}]});
    located(&run(&client, &explode, "json"), 400);
    // Parquet is not made yet; an unknown format is a 400.
    assert_eq!(run(&client, &patient_view(), "parquet").status, 501);
    located(&run(&client, &patient_view(), "xlsx"), 400);
    // Not a view at all.
    located(
        &client.post(
            "/ViewDefinition/$run",
            &json!({"resourceType": "Parameters"}),
        ),
        400,
    );
    // The server still answers.
    rows_of(&run(&client, &patient_view(), "json"), "json");
}
