//! SQL on FHIR views over HTTP: ViewDefinition as a resource, and `$run` on Synthea data in
//! every format against rows computed here by a plain scan of the same resources (serde_json,
//! not the evaluator); a `patient/` token's rows; bad and hostile views answered 400 with a
//! located OperationOutcome.

mod common;

use common::auth::{HS256, bearer, token};
use common::fhir::{Reply, assert_outcome};
use common::{TestServer, run_command, synthea, test_tool};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The patient bundles loaded (three small ones).
const PATIENTS: &[&str] = &["8a4c9c04", "6c8f3e83", "085e81c0"];

const SYNTHEA: &str = "https://github.com/synthetichealth/synthea";

/// A server with HS256 authorization over the Synthea providers and [`PATIENTS`], loaded by
/// `fhirlake import`.
fn server() -> (TestServer, tempfile::TempDir) {
    server_with(&[])
}

/// [`server`] with more settings.
fn server_with(settings: &[&str]) -> (TestServer, tempfile::TempDir) {
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
    (
        TestServer::start_on(&data, &[HS256, settings].concat()),
        dir,
    )
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
            {"name": "status", "path": "status", "type": "code"},
            {"name": "code", "path": "code.coding.first().code", "type": "code"},
            {"name": "effective", "path": "effective.ofType(dateTime)", "type": "dateTime"},
            {"name": "value", "path": "value.ofType(Quantity).value", "type": "decimal"},
            {"name": "unit", "path": "value.ofType(Quantity).unit", "type": "string"}
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

/// The body of an answer as bytes (a Parquet file), after checking its status and type.
fn bytes_of(reply: reqwest::blocking::Response, media: &str) -> Vec<u8> {
    let status = reply.status().as_u16();
    let kind = reply
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let body = reply.bytes().expect("the body").to_vec();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(kind.as_deref(), Some(media));
    body
}

/// The rows of a Parquet file as DuckDB reads them, as JSON objects (numbers as f64).
fn duckdb_rows(parquet: &[u8]) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rows.parquet");
    std::fs::write(&file, parquet).unwrap();
    duckdb_file_rows(&file)
}

/// The rows of the Parquet file `file` as DuckDB reads them.
fn duckdb_file_rows(file: &Path) -> Vec<Value> {
    let script = "import duckdb, json, sys\n\
        r = duckdb.execute('SELECT * FROM read_parquet(?)', [sys.argv[1]])\n\
        names = [d[0] for d in r.description]\n\
        for row in r.fetchall():\n    print(json.dumps(dict(zip(names, row)), default=str))\n";
    let output = Command::new(test_tool("venv/bin/python"))
        .args(["-c", script])
        .arg(file)
        .output()
        .expect("run python with duckdb");
    assert!(
        output.status.success(),
        "duckdb: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| numbers_as_f64(serde_json::from_str(line).expect("a JSON line")))
        .collect()
}

/// A row with its numbers as f64 (the Parquet files hold `decimal` as a double).
fn numbers_as_f64(row: Value) -> Value {
    match row {
        Value::Object(object) => Value::Object(
            object
                .into_iter()
                .map(|(k, v)| (k, numbers_as_f64(v)))
                .collect(),
        ),
        Value::Number(n) => json!(n.as_f64().unwrap()),
        other => other,
    }
}

#[test]
fn parquet_read_back_by_duckdb_gives_the_rows_of_a_plain_scan() {
    let (server, _dir) = server();
    let client = bearer(&server, &token("system/*.*", None));
    for (view, expected, without) in [
        (patient_view(), patient_rows(&scanned("Patient")), None),
        (
            observation_view(),
            observation_rows(&scanned("Observation")),
            Some("patient"),
        ),
    ] {
        let body = json!({"resourceType": "Parameters", "parameter": [
            {"name": "viewResource", "resource": view}]});
        let reply = client
            .http
            .post(format!(
                "{}/ViewDefinition/$run?_format=parquet",
                client.base
            ))
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .unwrap();
        let parquet = bytes_of(reply, "application/vnd.apache.parquet");
        let rows = duckdb_rows(&parquet);
        let expected: Vec<Value> = expected.into_iter().map(numbers_as_f64).collect();
        assert_eq!(sorted(&rows, without), sorted(&expected, None));
    }
    // A typed column whose path gives another type is the view's fault, located.
    let mut wrong = patient_view();
    wrong["select"][0]["column"][1]["type"] = json!("boolean");
    let reply = run(&client, &wrong, "parquet");
    assert!(located(&reply, 400).starts_with("ViewDefinition"));
    assert!(reply.text.contains("gender"), "{}", reply.text);
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
    let patient = server_id(&admin, &mrn);
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
    // An unknown format is a 400.
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

/// The server's id of the Synthea patient whose bundle id (its Synthea identifier) is `mrn`.
fn server_id(client: &common::fhir::FhirClient, mrn: &str) -> String {
    let found = client.get(&format!("/Patient?identifier={SYNTHEA}|{mrn}"));
    found.json()["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A `$sql` of `query` answered in `format`.
fn sql(client: &common::fhir::FhirClient, query: &str, format: &str) -> Reply {
    client.post(
        "/$sql",
        &json!({"resourceType": "Parameters", "parameter": [
            {"name": "query", "valueString": query},
            {"name": "_format", "valueCode": format}
        ]}),
    )
}

/// Observations per LOINC code per year, by a plain scan: (code, year, count) rows.
fn observations_per_code_and_year(observations: &[Value]) -> Vec<Value> {
    let mut counts: std::collections::BTreeMap<(String, String), u64> = Default::default();
    for o in observations {
        let coding = &o["code"]["coding"][0];
        assert_eq!(
            coding["system"], "http://loinc.org",
            "Synthea's codes are LOINC"
        );
        let code = coding["code"].as_str().unwrap().to_string();
        let year = o["effectiveDateTime"].as_str().expect("effectiveDateTime")[..4].to_string();
        *counts.entry((code, year)).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|((code, year), n)| json!({"code": code, "year": year, "n": n}))
        .collect()
}

const PER_CODE_AND_YEAR: &str = "SELECT code, substr(effective, 1, 4) AS year, count(*) AS n \
    FROM observation_flat GROUP BY code, substr(effective, 1, 4) ORDER BY code, year";

#[test]
fn sql_over_stored_views_equals_a_plain_scan() {
    let (server, _dir) = server_with(&["--sql-memory", "16"]);
    let admin = bearer(&server, &token("system/*.*", None));
    for view in [patient_view(), observation_view()] {
        admin
            .post("/ViewDefinition", &view)
            .expect(201, "store a view");
    }
    let expected = observations_per_code_and_year(&scanned("Observation"));
    assert!(expected.len() > 10);
    let made = sql(&admin, PER_CODE_AND_YEAR, "json");
    assert_eq!(rows_of(&made, "json"), expected);
    // The same in CSV, and in Parquet as DuckDB reads it.
    let csv: Vec<Value> = expected.iter().map(as_csv).collect();
    assert_eq!(rows_of(&sql(&admin, PER_CODE_AND_YEAR, "csv"), "csv"), csv);
    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "query", "valueString": PER_CODE_AND_YEAR}]});
    let reply = admin
        .http
        .post(format!("{}/$sql?_format=parquet", admin.base))
        .header("content-type", "application/fhir+json")
        .body(body.to_string())
        .send()
        .unwrap();
    let parquet = duckdb_rows(&bytes_of(reply, "application/vnd.apache.parquet"));
    let as_f64: Vec<Value> = expected.iter().cloned().map(numbers_as_f64).collect();
    assert_eq!(parquet, as_f64);
    // A join of two views, by a GET with the query in the URL.
    let joined = admin.get(
        "/$sql?_format=json&query=SELECT%20p.gender%2C%20count(*)%20AS%20n%20FROM%20observation_flat%20o%20JOIN%20patient_demographics%20p%20ON%20true%20GROUP%20BY%20p.gender%20ORDER%20BY%20p.gender",
    );
    let joined = rows_of(&joined, "json");
    let total: u64 = joined.iter().map(|r| r["n"].as_u64().unwrap()).sum();
    let observations = scanned("Observation").len() as u64;
    assert_eq!(total, observations * PATIENTS.len() as u64);

    // A patient token queries its own compartment's rows only.
    let bundle = synthea::resources(PATIENTS[0]);
    let patient = server_id(&admin, bundle[0]["id"].as_str().unwrap());
    // (ViewDefinitions are in no compartment: a `patient/` scope alone sees none of them.)
    let hidden = bearer(&server, &token("patient/*.read", Some(&patient)));
    assert_outcome(
        &sql(&hidden, PER_CODE_AND_YEAR, "json"),
        400,
        &["not-found"],
    );
    let own = bearer(
        &server,
        &token("patient/*.read user/ViewDefinition.read", Some(&patient)),
    );
    let mine: Vec<Value> = bundle
        .iter()
        .filter(|r| r["resourceType"] == "Observation")
        .cloned()
        .collect();
    let own_rows = rows_of(&sql(&own, PER_CODE_AND_YEAR, "json"), "json");
    assert_eq!(own_rows, observations_per_code_and_year(&mine));
    // Without read access to a view's type: 403.
    let patients_only = bearer(
        &server,
        &token("system/Patient.read system/ViewDefinition.read", None),
    );
    assert_outcome(
        &sql(&patients_only, PER_CODE_AND_YEAR, "json"),
        403,
        &["forbidden"],
    );

    // Faults of the query: 400, located, never a 500; the server goes on.
    let fault = |query: &str, codes: &[&str]| {
        let reply = sql(&admin, query, "json");
        let outcome = assert_outcome(&reply, 400, codes);
        assert_eq!(
            outcome["issue"][0]["expression"][0], "query",
            "{query}: {outcome}"
        );
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(fault("SELEC code FROM observation_flat", &["invalid"]).contains("Line: 1"));
    assert!(fault("SELECT nope FROM observation_flat", &["invalid"]).contains("nope"));
    fault("SELECT * FROM no_such_view", &["not-found"]);
    fault("SELECT * FROM other.observation_flat", &["invalid"]);
    for write in [
        "DROP TABLE observation_flat",
        "CREATE TABLE t AS SELECT 1",
        "INSERT INTO observation_flat SELECT * FROM observation_flat",
        "COPY observation_flat TO 'copy.csv'",
        "SET datafusion.execution.target_partitions = 64",
        "SELECT 1; SELECT 2",
    ] {
        fault(write, &["invalid"]);
    }
    fault(
        &format!("SELECT {}1{}", "(".repeat(3000), ")".repeat(3000)),
        &["invalid"],
    );
    // Past the memory limit (16 MiB, spilling off): a sort of a cross product.
    fault(
        "SELECT a.code, b.code, c.unit FROM observation_flat a, observation_flat b, \
         observation_flat c ORDER BY a.value, b.unit, c.effective",
        &["too-costly"],
    );
    assert_outcome(
        &admin.post("/$sql", &json!({"resourceType": "Parameters"})),
        400,
        &["invalid"],
    );
    assert_eq!(
        rows_of(&sql(&admin, PER_CODE_AND_YEAR, "json"), "json"),
        expected
    );
}

#[test]
fn fhirlake_sql_answers_from_the_data_directory() {
    let (server, dir) = server();
    let admin = bearer(&server, &token("system/*.*", None));
    admin
        .post("/ViewDefinition", &observation_view())
        .expect(201, "store a view");
    drop(server);
    let output = Command::new(env!("CARGO_BIN_EXE_fhirlake"))
        .args(["sql", "--format", "ndjson", "--data"])
        .arg(dir.path().join("data"))
        .arg(PER_CODE_AND_YEAR)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(
        rows,
        observations_per_code_and_year(&scanned("Observation"))
    );
    let bad = Command::new(env!("CARGO_BIN_EXE_fhirlake"))
        .args(["sql", "--data"])
        .arg(dir.path().join("data"))
        .arg("SELECT * FROM nothing")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("nothing"));
}

#[test]
fn view_export_writes_every_view_from_one_snapshot() {
    let (server, _dir) = server_with(&["--job-poll-interval", "100ms"]);
    let admin = bearer(&server, &token("system/*.*", None));
    let stored = admin.post("/ViewDefinition", &patient_view());
    stored.expect(201, "store a view");
    let id = stored.json()["id"].as_str().unwrap().to_string();
    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "view", "part": [
            {"name": "viewReference", "valueReference": {"reference": format!("ViewDefinition/{id}")}}]},
        {"name": "view", "part": [
            {"name": "name", "valueString": "obs"},
            {"name": "viewResource", "resource": observation_view()}]},
        {"name": "clientTrackingId", "valueString": "t-1"}
    ]});
    let async_ = [("Prefer", "respond-async")];
    let status = common::bulk::accepted(
        &admin.post_with("/ViewDefinition/$viewdefinition-export", &body, &async_),
        "kick-off",
    );
    // Written after the kick-off: not in the export, whenever the job runs.
    let later = json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "after-kick-off"}]},
        "effectiveDateTime": "2020-01-01"});
    admin
        .post("/Observation", &later)
        .expect(201, "a later write");
    let done = common::bulk::wait_for_end(&admin, &status);
    done.expect(200, "a completed view export");
    let result = done.json();
    assert_eq!(result["resourceType"], "Parameters");
    let parameter = |name: &str| -> Vec<Value> {
        result["parameter"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["name"] == name)
            .cloned()
            .collect()
    };
    assert_eq!(parameter("clientTrackingId")[0]["valueString"], "t-1");
    assert_eq!(parameter("_format")[0]["valueCode"], "parquet");
    let outputs = parameter("output");
    assert_eq!(outputs.len(), 2);
    for (output, expected, without) in [
        (&outputs[0], patient_rows(&scanned("Patient")), None),
        (
            &outputs[1],
            observation_rows(&scanned("Observation")),
            Some("patient"),
        ),
    ] {
        let name = output["part"][0]["valueString"].as_str().unwrap();
        let location = output["part"][1]["valueUri"].as_str().unwrap();
        assert!(
            location.ends_with(&format!("/{name}.parquet")),
            "{location}"
        );
        let reply = admin.http.get(location).send().unwrap();
        let rows = duckdb_rows(&bytes_of(reply, "application/vnd.apache.parquet"));
        let expected: Vec<Value> = expected.into_iter().map(numbers_as_f64).collect();
        assert_eq!(sorted(&rows, without), sorted(&expected, None), "{name}");
    }
    assert_eq!(outputs[0]["part"][0]["valueString"], "patient_demographics");

    // CSV, and a cancel: the job is gone.
    let csv = json!({"resourceType": "Parameters", "parameter": [
        {"name": "_format", "valueCode": "csv"}]});
    let status = common::bulk::accepted(
        &admin.post_with(
            &format!("/ViewDefinition/{id}/$viewdefinition-export"),
            &csv,
            &async_,
        ),
        "instance kick-off",
    );
    let done = common::bulk::wait_for_end(&admin, &status);
    let location = done.json()["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "output")
        .unwrap()["part"][1]["valueUri"]
        .as_str()
        .unwrap()
        .to_string();
    let file = admin.http.get(&location).send().unwrap();
    let text = String::from_utf8(bytes_of(file, "text/csv; charset=utf-8")).unwrap();
    assert_eq!(text.lines().count(), PATIENTS.len() + 1);
    admin.http.delete(&status).send().unwrap();
    assert_eq!(admin.http.get(&status).send().unwrap().status(), 404);

    // Refused kick-offs: 400 with an OperationOutcome, no job.
    let export = |body: &Value, prefer: bool| {
        let headers: &[(&str, &str)] = if prefer { &async_ } else { &[] };
        admin.post_with("/$viewdefinition-export", body, headers)
    };
    let one_view = |extra: Value| {
        let mut parameters = vec![json!({"name": "view", "part": [
            {"name": "viewResource", "resource": patient_view()}]})];
        parameters.push(extra);
        json!({"resourceType": "Parameters", "parameter": parameters})
    };
    let plain = one_view(json!({"name": "_format", "valueCode": "parquet"}));
    assert_outcome(&export(&plain, false), 400, &["invalid"]);
    let source = one_view(json!({"name": "source", "valueString": "s3://elsewhere"}));
    assert_outcome(&export(&source, true), 400, &["not-supported"]);
    let format = one_view(json!({"name": "_format", "valueCode": "xlsx"}));
    assert_outcome(&export(&format, true), 400, &["not-supported"]);
    let mut broken = patient_view();
    broken["select"][0]["column"][0]["path"] = json!("name.(");
    let bad_view = json!({"resourceType": "Parameters", "parameter": [
        {"name": "view", "part": [{"name": "viewResource", "resource": broken}]}]});
    let outcome = assert_outcome(&export(&bad_view, true), 400, &["invalid"]);
    assert!(
        outcome.to_string().contains("select[0].column[0].path"),
        "{outcome}"
    );
    let unnamed = json!({"resourceType": "Parameters", "parameter": [
        {"name": "view", "part": [{"name": "name", "valueString": "../x"},
            {"name": "viewResource", "resource": patient_view()}]}]});
    assert_outcome(&export(&unnamed, true), 400, &["invalid"]);
    let missing = json!({"resourceType": "Parameters", "parameter": [
        {"name": "view", "part": [{"name": "viewReference", "valueReference": {"reference": "ViewDefinition/nope"}}]}]});
    assert_outcome(&export(&missing, true), 404, &["not-found"]);
    // A token that may not read a view's type: 403.
    let patients_only = bearer(
        &server,
        &token("system/Patient.read system/ViewDefinition.read", None),
    );
    let obs = json!({"resourceType": "Parameters", "parameter": [
        {"name": "view", "part": [{"name": "viewResource", "resource": observation_view()}]}]});
    assert_outcome(
        &patients_only.post_with("/$viewdefinition-export", &obs, &async_),
        403,
        &["forbidden"],
    );
}

/// `view` marked for materialization.
fn materialized(mut view: Value) -> Value {
    view["extension"] = json!([{
        "url": "https://fhirlake.dev/fhir/StructureDefinition/materialize",
        "valueBoolean": true
    }]);
    view
}

/// The rows `/metrics` gives materialized view `name`, once it has them (None: it is not
/// materialized).
fn view_rows(server: &TestServer, name: &str) -> Option<u64> {
    let metrics = reqwest::blocking::get(format!("{}/metrics", server.origin))
        .unwrap()
        .text()
        .unwrap();
    let prefix = format!("fhirlake_view_rows{{view=\"{name}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .map(|rows| rows.parse().unwrap())
}

/// Waits until `/metrics` gives materialized view `name` `rows` rows (the view follows the
/// change log on its own thread); fails after a generous while.
fn await_view_rows(server: &TestServer, name: &str, rows: Option<u64>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let now = view_rows(server, name);
        if now == rows {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "view {name}: {now:?} rows, waited for {rows:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The `mrn`s `$sql` gives of `patient_demographics`, sorted.
fn mrns(client: &common::fhir::FhirClient) -> Vec<String> {
    let reply = sql(
        client,
        "SELECT mrn FROM patient_demographics ORDER BY mrn",
        "json",
    );
    rows_of(&reply, "json")
        .iter()
        .map(|row| row["mrn"].as_str().unwrap_or("(none)").to_string())
        .collect()
}

/// A materialized view holds the rows of the current resources through creates, updates,
/// deletes, erasures and changes of its definition, and `$sql` sees each write as soon as it
/// is acknowledged; a confined token still gets its own rows only.
#[test]
fn materialized_views_follow_every_change() {
    let (server, _dir) = server();
    let admin = bearer(&server, &token("system/*.cruds fhirlake/erase", None));
    let created = admin
        .post("/ViewDefinition", &materialized(patient_view()))
        .expect(201, "store a materialized view")
        .json();
    let view_id = created["id"].as_str().unwrap().to_string();
    admin
        .post("/ViewDefinition", &materialized(observation_view()))
        .expect(201, "store a materialized view");
    let observations = scanned("Observation");
    await_view_rows(&server, "patient_demographics", Some(PATIENTS.len() as u64));
    await_view_rows(&server, "observation_flat", Some(observations.len() as u64));
    let mut expected: Vec<String> = PATIENTS
        .iter()
        .map(|prefix| {
            synthea::resources(prefix)[0]["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    expected.sort();
    assert_eq!(mrns(&admin), expected);
    assert_eq!(
        rows_of(&sql(&admin, PER_CODE_AND_YEAR, "json"), "json"),
        observations_per_code_and_year(&observations)
    );

    // A create is in the very next query, and so are an update and a delete.
    let mut patient = json!({"resourceType": "Patient", "gender": "other",
        "identifier": [{"system": SYNTHEA, "value": "000-new"}]});
    let new = admin
        .post("/Patient", &patient)
        .expect(201, "create")
        .json();
    let new_id = new["id"].as_str().unwrap().to_string();
    let mut with_new = vec!["000-new".to_string()];
    with_new.extend(expected.iter().cloned());
    assert_eq!(mrns(&admin), with_new);
    patient["id"] = json!(new_id);
    patient["identifier"][0]["value"] = json!("001-changed");
    admin
        .put(&format!("/Patient/{new_id}"), &patient)
        .expect(200, "update");
    with_new[0] = "001-changed".into();
    assert_eq!(mrns(&admin), with_new);
    admin
        .delete(&format!("/Patient/{new_id}"))
        .expect(204, "delete");
    assert_eq!(mrns(&admin), expected);
    await_view_rows(&server, "patient_demographics", Some(PATIENTS.len() as u64));

    // An erased patient's rows go.
    let mrn = synthea::resources(PATIENTS[0])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let patient_id = server_id(&admin, &mrn);
    admin
        .post(&format!("/Patient/{patient_id}/$erase"), String::new())
        .expect(200, "erase");
    let left: Vec<String> = expected.iter().filter(|m| **m != mrn).cloned().collect();
    assert_eq!(mrns(&admin), left);
    await_view_rows(&server, "patient_demographics", Some(left.len() as u64));

    // A confined token is never given the materialized rows: only its own.
    let other = synthea::resources(PATIENTS[1])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let other_id = server_id(&admin, &other);
    let own = bearer(
        &server,
        &token("patient/*.read user/ViewDefinition.read", Some(&other_id)),
    );
    assert_eq!(mrns(&own), vec![other]);

    // A changed definition is built anew: a column added is there.
    let mut changed = materialized(patient_view());
    changed["id"] = json!(view_id);
    changed["select"][0]["column"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "deceased", "path": "deceased.exists()"}));
    admin
        .put(&format!("/ViewDefinition/{view_id}"), &changed)
        .expect(200, "change the view");
    let deceased = sql(
        &admin,
        "SELECT count(deceased) AS n FROM patient_demographics",
        "json",
    );
    assert_eq!(rows_of(&deceased, "json")[0]["n"], json!(left.len()));
    // Unmarked, it is no longer kept, and still answers (from the store).
    admin
        .put(&format!("/ViewDefinition/{view_id}"), &{
            let mut plain = patient_view();
            plain["id"] = json!(view_id);
            plain
        })
        .expect(200, "unmark the view");
    await_view_rows(&server, "patient_demographics", None);
    assert_eq!(mrns(&admin), left);
}
