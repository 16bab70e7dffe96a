//! Validation on the write path and `$validate`, over HTTP, with real Synthea resources made
//! invalid on purpose: the default policy refuses with 422 and every finding located by its
//! FHIRPath; warnings are stored and reported; a transaction reports every failing entry; a
//! policy file and `--validation off` change what is refused.
mod common;

use common::fhir::{Fhir, assert_outcome, expressions};
use serde_json::{Value, json};

/// A real Patient (the first of a Synthea bundle), without its id, its US Core profile (not
/// known here) and its narrative.
fn patient() -> Value {
    let mut patient = common::synthea::resources("057aa36e")
        .into_iter()
        .find(|r| r["resourceType"] == "Patient")
        .expect("a Patient");
    let object = patient.as_object_mut().unwrap();
    for key in ["id", "meta", "text"] {
        object.remove(key);
    }
    patient
}

/// A real Encounter with its references cut (they point into its Bundle).
fn encounter() -> Value {
    let mut encounter = common::synthea::resources("057aa36e")
        .into_iter()
        .find(|r| r["resourceType"] == "Encounter")
        .expect("an Encounter");
    let object = encounter.as_object_mut().unwrap();
    for key in [
        "id",
        "meta",
        "subject",
        "participant",
        "serviceProvider",
        "location",
    ] {
        object.remove(key);
    }
    encounter
}

/// What the validator finds in [`patient`] as Synthea writes it: no narrative (dom-6), a Social
/// Security number typed with a v2-0203 code outside the extensible identifier-type value
/// set, and two displays that are not the codes' names ("Driver's License", "M").
const PATIENT_WARNINGS: [&str; 4] = [
    "Patient",
    "Patient.identifier[2].type",
    "Patient.identifier[3].type.coding[0]",
    "Patient.maritalStatus.coding[0]",
];

/// [`patient`] with each warning fixed: a narrative, the displays the code systems give, and
/// no Social Security number.
fn clean_patient() -> Value {
    let mut patient = patient();
    patient["text"] = json!({"status": "generated",
        "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">A patient</div>"});
    patient["identifier"][3]["type"]["coding"][0]["display"] = json!("Driver's license number");
    patient["maritalStatus"]["coding"][0]["display"] = json!("Married");
    patient["identifier"].as_array_mut().unwrap().remove(2);
    patient
}

/// `patient` broken twice: a contact with nothing but a gender (pat-1) and a name whose
/// period ends before it starts (per-1).
fn broken_patient() -> Value {
    let mut patient = patient();
    patient["contact"] = json!([{"gender": "female"}]);
    patient["name"][0]["period"] = json!({"start": "2020-02-01", "end": "2020-01-01"});
    patient
}

fn nothing_stored(fhir: &Fhir, resource_type: &str) {
    let found = fhir
        .get(&format!("{resource_type}?_summary=count"))
        .expect(200, "count")
        .json();
    assert_eq!(found["total"], 0, "nothing may be stored: {found}");
}

#[test]
fn an_invalid_resource_is_refused_with_every_finding_located() {
    let fhir = Fhir::start();
    let reply = fhir.post("Patient", &broken_patient());
    let outcome = assert_outcome(&reply, 422, &["invariant"]);
    let errors = expressions(&outcome, "error");
    assert!(
        errors.contains(&"Patient.contact[0]".to_string()),
        "{outcome}"
    );
    assert!(
        errors.contains(&"Patient.name[0].period".to_string()),
        "{outcome}"
    );
    assert!(outcome.to_string().contains("pat-1"), "{outcome}");
    assert!(outcome.to_string().contains("per-1"), "{outcome}");
    // The warning about the missing narrative comes along.
    assert!(
        expressions(&outcome, "warning").contains(&"Patient".to_string()),
        "{outcome}"
    );
    nothing_stored(&fhir, "Patient");

    // A code outside a required value set is refused where it stands.
    let mut patient_mal = patient();
    patient_mal["gender"] = json!("mal");
    let outcome = assert_outcome(&fhir.post("Patient", &patient_mal), 422, &["code-invalid"]);
    assert_eq!(
        expressions(&outcome, "error"),
        ["Patient.gender"],
        "{outcome}"
    );
    nothing_stored(&fhir, "Patient");

    // An update and a conditional update are refused the same way, and change nothing.
    let mut valid = patient();
    valid["id"] = json!("p1");
    fhir.put("Patient/p1", &valid)
        .expect(201, "valid update-create");
    let mut broken = broken_patient();
    broken["id"] = json!("p1");
    assert_outcome(&fhir.put("Patient/p1", &broken), 422, &["invariant"]);
    assert_outcome(&fhir.put("Patient?_id=p1", &broken), 422, &["invariant"]);
    let current = fhir.get("Patient/p1").expect(200, "read").json();
    assert_eq!(current["meta"]["versionId"], "1", "{current}");
}

#[test]
fn warnings_are_stored_and_reported() {
    let fhir = Fhir::start();
    // A valid resource without narrative: stored, and dom-6 is reported in a header.
    let reply = fhir.post("Patient", &patient());
    reply.expect(201, "create");
    let header = reply
        .header("x-fhir-request-validation")
        .expect("a validation warning header");
    assert!(header.starts_with("warning Patient: dom-6"), "{header}");
    // The same in the OperationOutcome asked for with Prefer.
    let reply = fhir.post_with(
        "Patient",
        &patient(),
        &[("Prefer", "return=OperationOutcome")],
    );
    reply.expect(201, "create");
    let outcome = reply.json();
    assert_eq!(outcome["issue"][0]["severity"], "information", "{outcome}");
    assert_eq!(
        expressions(&outcome, "warning"),
        PATIENT_WARNINGS,
        "{outcome}"
    );
    // With the warnings fixed there is nothing to report.
    let reply = fhir.post("Patient", &clean_patient());
    reply.expect(201, "create");
    assert_eq!(reply.header("x-fhir-request-validation"), None);
}

#[test]
fn a_transaction_reports_every_failing_entry_and_writes_nothing() {
    let fhir = Fhir::start();
    let entry = |resource: Value| {
        let resource_type = resource["resourceType"].as_str().unwrap().to_string();
        json!({"resource": resource, "request": {"method": "POST", "url": resource_type}})
    };
    let mut bad_encounter = encounter();
    bad_encounter["period"] =
        json!({"start": "2021-05-02T10:00:00Z", "end": "2021-05-01T10:00:00Z"});
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        entry(broken_patient()),
        entry(patient()),
        entry(bad_encounter),
    ]});
    let outcome = assert_outcome(&fhir.bundle(&bundle), 422, &["invariant"]);
    let errors = expressions(&outcome, "error");
    for expected in [
        "Bundle.entry[0].resource.ofType(Patient).contact[0]",
        "Bundle.entry[0].resource.ofType(Patient).name[0].period",
        "Bundle.entry[2].resource.ofType(Encounter).period",
    ] {
        assert!(
            errors.contains(&expected.to_string()),
            "{expected}: {outcome}"
        );
    }
    assert!(
        !errors.iter().any(|e| e.starts_with("Bundle.entry[1]")),
        "the valid entry has no error: {outcome}"
    );
    nothing_stored(&fhir, "Patient");
    nothing_stored(&fhir, "Encounter");

    // In a batch only the invalid entries fail; the others carry their warnings.
    let mut batch = bundle.clone();
    batch["type"] = json!("batch");
    let reply = fhir.bundle(&batch).expect(200, "batch").json();
    let statuses: Vec<&str> = reply["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "422 Unprocessable Entity",
            "201 Created",
            "422 Unprocessable Entity"
        ]
    );
    let warned = &reply["entry"][1]["response"]["outcome"];
    assert_eq!(
        expressions(warned, "warning"),
        PATIENT_WARNINGS.map(|path| path.replacen(
            "Patient",
            "Bundle.entry[1].resource.ofType(Patient)",
            1
        )),
        "{reply}"
    );
}

#[test]
fn a_policy_file_and_off_change_what_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let policy = temp.path().join("policy.json");
    std::fs::write(
        &policy,
        json!({"default": {"structure": "reject"},
               "types": {"Patient": {"structure": "warn"}}})
        .to_string(),
    )
    .unwrap();
    let fhir = Fhir::with(common::TestServer::start_with(&[
        "--validation",
        policy.to_str().unwrap(),
    ]));
    // Patient's errors are only warnings under this policy...
    let reply = fhir.post_with(
        "Patient",
        &broken_patient(),
        &[("Prefer", "return=OperationOutcome")],
    );
    reply.expect(201, "a warned Patient is stored");
    let outcome = reply.json();
    assert!(
        expressions(&outcome, "warning").contains(&"Patient.contact[0]".to_string()),
        "{outcome}"
    );
    assert!(expressions(&outcome, "error").is_empty(), "{outcome}");
    // ...while an Encounter's still refuse.
    let mut bad_encounter = encounter();
    bad_encounter["period"] = json!({"start": "2021-05-02", "end": "2021-05-01"});
    assert_outcome(&fhir.post("Encounter", &bad_encounter), 422, &["invariant"]);

    // An unknown SNOMED CT code (a wrong check digit) is a warning by default...
    let mut miscoded = encounter();
    miscoded["type"][0]["coding"][0]["code"] = json!("185347002");
    let reply = fhir.post_with(
        "Encounter",
        &miscoded,
        &[("Prefer", "return=OperationOutcome")],
    );
    reply.expect(201, "an unknown code warns by default");
    assert!(
        expressions(&reply.json(), "warning").contains(&"Encounter.type[0].coding[0]".to_string()),
        "{}",
        reply.json()
    );
    // ...and refused by a policy that rejects SNOMED CT codes of Encounters.
    let strict = temp.path().join("strict.json");
    std::fs::write(
        &strict,
        json!({"types": {"Encounter": {"systems": {"http://snomed.info/sct": "reject"}}}})
            .to_string(),
    )
    .unwrap();
    let strict = Fhir::with(common::TestServer::start_with(&[
        "--validation",
        strict.to_str().unwrap(),
    ]));
    let outcome = assert_outcome(&strict.post("Encounter", &miscoded), 422, &["code-invalid"]);
    assert_eq!(
        expressions(&outcome, "error"),
        ["Encounter.type[0].coding[0]"],
        "{outcome}"
    );

    // With validation off, everything the model accepts is stored, without warnings.
    let off = Fhir::with(common::TestServer::start_with(&["--validation", "off"]));
    let reply = off.post("Encounter", &bad_encounter);
    reply.expect(201, "validation off");
    assert_eq!(reply.header("x-fhir-request-validation"), None);

    // A policy file with a misspelt setting stops the server at its start.
    std::fs::write(&policy, r#"{"default": {"structures": "warn"}}"#).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fhirlake"))
        .args(["serve", "--listen", "127.0.0.1:0", "--validation"])
        .arg(&policy)
        .arg("--data")
        .arg(temp.path().join("data"))
        .env("FHIRLAKE_AUTH", "none")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("structures"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn validate_reports_without_storing() {
    let fhir = Fhir::start();
    // Type level: the resource as the body, graded as a write would meet it.
    let outcome = fhir
        .post("Patient/$validate", &broken_patient())
        .expect(200, "$validate")
        .json();
    let errors = expressions(&outcome, "error");
    assert!(
        errors.contains(&"Patient.contact[0]".to_string()),
        "{outcome}"
    );
    assert!(expressions(&outcome, "warning").contains(&"Patient".to_string()));
    nothing_stored(&fhir, "Patient");

    // A Parameters body with mode; a valid resource has only its warning.
    let parameters = json!({"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": patient()},
        {"name": "mode", "valueCode": "create"}]});
    let outcome = fhir
        .post("Patient/$validate", &parameters)
        .expect(200, "$validate with Parameters")
        .json();
    assert!(expressions(&outcome, "error").is_empty(), "{outcome}");

    // A shape the model refuses is a finding too, at its path.
    let mut wrong = patient();
    wrong["birthDate"] = json!(["1990-01-01"]);
    let outcome = fhir
        .post("Patient/$validate", &wrong)
        .expect(200, "$validate of a wrong shape")
        .json();
    assert_eq!(outcome["issue"][0]["severity"], "error", "{outcome}");
    assert_eq!(
        outcome["issue"][0]["expression"][0], "Patient.birthDate",
        "{outcome}"
    );

    // Instance level: the stored version, an update of it, its delete.
    let mut clean = clean_patient();
    clean["id"] = json!("p1");
    fhir.put("Patient/p1", &clean).expect(201, "create p1");
    let outcome = fhir
        .get("Patient/p1/$validate")
        .expect(200, "stored")
        .json();
    assert_eq!(outcome["issue"][0]["severity"], "information", "{outcome}");
    assert_eq!(outcome["issue"].as_array().unwrap().len(), 1, "{outcome}");
    let mut broken = broken_patient();
    broken["id"] = json!("p1");
    let outcome = fhir
        .post("Patient/p1/$validate?mode=update", &broken)
        .expect(200, "update mode")
        .json();
    assert!(!expressions(&outcome, "error").is_empty(), "{outcome}");
    let outcome = fhir
        .post("Patient/p1/$validate?mode=delete", Vec::new())
        .expect(200, "delete mode")
        .json();
    assert!(outcome.to_string().contains("may be deleted"), "{outcome}");
    assert_eq!(
        fhir.get("Patient/p1").expect(200, "still there").json()["meta"]["versionId"],
        "1"
    );

    // Wrong requests are 400 and 404.
    assert_outcome(
        &fhir.post("Patient/$validate?mode=replace", &patient()),
        400,
        &["value"],
    );
    assert_outcome(
        &fhir.post("Patient/$validate", Vec::new()),
        400,
        &["required"],
    );
    assert_outcome(
        &fhir.post("Patient/p1/$validate", &{
            let mut other = patient();
            other["id"] = json!("p2");
            other
        }),
        400,
        &["invalid"],
    );
    assert_outcome(&fhir.get("Patient/p9/$validate"), 404, &["not-found"]);
    assert_outcome(
        &fhir.post("Nothing/$validate", &patient()),
        404,
        &["not-found"],
    );
}

/// The vendored IPS profiles and examples (`tests/data/profiles/ips`).
fn ips(file: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/profiles/ips")
        .join(file);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

const IPS_PATIENT: &str = "http://hl7.org/fhir/uv/ips/StructureDefinition/Patient-uv-ips";

#[test]
fn profiles_from_a_folder_and_from_written_structure_definitions_are_enforced() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/profiles/ips");
    let fhir = Fhir::with(common::TestServer::start_with(&[
        "--profiles",
        dir.to_str().unwrap(),
    ]));
    // The IPS example Patient conforms; without its birthDate it does not (1.. in IPS only).
    let example = ips("examples/Patient-66033.json");
    fhir.put("Patient/66033", &example)
        .expect(201, "the IPS example");
    let mut no_birth_date = example.clone();
    no_birth_date.as_object_mut().unwrap().remove("birthDate");
    let outcome = assert_outcome(
        &fhir.put("Patient/66033", &no_birth_date),
        422,
        &["required"],
    );
    assert_eq!(
        expressions(&outcome, "error"),
        ["Patient.birthDate"],
        "{outcome}"
    );
    assert!(outcome.to_string().contains(IPS_PATIENT), "{outcome}");
    // The base definition alone does not require it.
    let mut unclaimed = no_birth_date.clone();
    unclaimed.as_object_mut().unwrap().remove("meta");
    fhir.put("Patient/66033", &unclaimed)
        .expect(200, "no profile claimed");
    // $validate against a profile the resource does not claim, and one not known here.
    let outcome = fhir
        .post(
            &format!("Patient/$validate?profile={IPS_PATIENT}"),
            &unclaimed,
        )
        .expect(200, "$validate?profile")
        .json();
    assert_eq!(
        expressions(&outcome, "error"),
        ["Patient.birthDate"],
        "{outcome}"
    );
    let outcome = fhir
        .post(
            "Patient/$validate?profile=http://example.org/nothing",
            &unclaimed,
        )
        .expect(200, "$validate with an unknown profile")
        .json();
    assert_eq!(outcome["issue"][0]["code"], "not-found", "{outcome}");
    // A claimed profile the server does not know is a warning only.
    let mut elsewhere = example.clone();
    elsewhere["meta"]["profile"] = json!(["http://example.org/StructureDefinition/other"]);
    let reply = fhir.post_with(
        "Patient",
        &elsewhere,
        &[("Prefer", "return=OperationOutcome")],
    );
    reply.expect(201, "an unknown profile");
    assert_eq!(
        expressions(&reply.json(), "warning"),
        ["Patient.meta.profile[0]"]
    );

    // A StructureDefinition written to a server without the folder is a profile from the
    // next request on, and still after a restart.
    let data = tempfile::tempdir().unwrap();
    let lab = "http://hl7.org/fhir/uv/ips/StructureDefinition/Observation-results-laboratory-pathology-uv-ips";
    let observation = ips("examples/Observation-serum-creatinine-adult.json");
    let mut no_category = observation.clone();
    no_category.as_object_mut().unwrap().remove("category");
    let check = |fhir: &Fhir| {
        let reply = fhir.put("Observation/serum-creatinine-adult", &observation);
        assert!(
            [200, 201].contains(&reply.status),
            "the IPS lab example: {}",
            reply.text
        );
        let outcome = assert_outcome(
            &fhir.put("Observation/serum-creatinine-adult", &no_category),
            422,
            &["required"],
        );
        assert!(outcome.to_string().contains(lab), "{outcome}");
    };
    {
        let fhir = Fhir::on(data.path(), &[]);
        let mut definition =
            ips("StructureDefinition-Observation-results-laboratory-pathology-uv-ips.json");
        definition["id"] = json!("ips-lab");
        fhir.put("StructureDefinition/ips-lab", &definition)
            .expect(201, "a profile written");
        check(&fhir);
        // One without a snapshot is stored, with a warning that it is no profile.
        let mut bare = definition.clone();
        bare["id"] = json!("bare");
        bare["url"] = json!("http://example.org/StructureDefinition/bare");
        bare.as_object_mut().unwrap().remove("snapshot");
        let reply = fhir.put_with(
            "StructureDefinition/bare",
            &bare,
            &[("Prefer", "return=OperationOutcome")],
        );
        reply.expect(201, "a StructureDefinition without snapshot");
        assert!(
            reply.json().to_string().contains("snapshot"),
            "{}",
            reply.json()
        );
    }
    let restarted = Fhir::on(data.path(), &[]);
    check(&restarted);
}

/// Expressions the FHIRPath engine must survive: each, as an invariant of a profile, once
/// crashed the server on the write and again at every start.
fn hostile_invariants() -> Vec<(&'static str, String)> {
    let nested = |open: &str, inner: &str, close: &str, n: usize| {
        format!("{}{inner}{}", open.repeat(n), close.repeat(n))
    };
    vec![
        ("escape", "'\\é'.exists()".to_string()),
        ("parens", nested("(", "true", ")", 20_000)),
        ("minus", format!("{}1 = 1", "-".repeat(50_000))),
        ("where", nested("name.where(", "true", ")", 1_000)),
        ("chain", vec!["1"; 5_000].join("+")),
        ("repeat", "1.repeat($this + 1).exists()".to_string()),
        (
            "replace",
            format!("'a'{}.exists()", ".replace('a', 'aaaaaaaaaa')".repeat(10)),
        ),
        ("regex", "''.matches('a{1000}{1000}')".to_string()),
    ]
}

/// The IPS Patient profile at a url of its own (`http://fhirlake.test/{id}`), with `expression`
/// as one more invariant of its root.
fn profile_with_invariant(id: &str, expression: &str) -> Value {
    let mut definition = ips("StructureDefinition-Patient-uv-ips.json");
    definition["id"] = json!(id);
    definition["url"] = json!(format!("http://fhirlake.test/{id}"));
    definition["snapshot"]["element"][0]["constraint"]
        .as_array_mut()
        .unwrap()
        .push(
            json!({"key": "hostile-1", "severity": "error", "human": "hostile",
            "expression": expression}),
        );
    definition
}

#[test]
fn a_profile_with_a_hostile_invariant_is_stored_unused_and_never_stops_the_server() {
    let data = tempfile::tempdir().unwrap();
    let invariants = hostile_invariants();
    {
        let fhir = Fhir::on(data.path(), &[]);
        for (id, expression) in &invariants {
            let reply = fhir.put_with(
                &format!("StructureDefinition/{id}"),
                &profile_with_invariant(id, expression),
                &[("Prefer", "return=OperationOutcome")],
            );
            reply.expect(201, id);
            let outcome = reply.json();
            let told = outcome["issue"].as_array().unwrap().iter().any(|issue| {
                let said = issue["diagnostics"].as_str().unwrap_or_default();
                issue["severity"] == "warning"
                    && said.contains("not usable as a profile")
                    && said.contains("hostile-1")
            });
            assert!(told, "{id}: {outcome}");
        }
        // Not enforced: a Patient that claims one is stored, told the profile is not known.
        let mut patient = clean_patient();
        patient["meta"] = json!({"profile": ["http://fhirlake.test/repeat"]});
        let reply = fhir.post_with(
            "Patient",
            &patient,
            &[("Prefer", "return=OperationOutcome")],
        );
        reply.expect(201, "a Patient claiming a refused profile");
        assert_eq!(
            expressions(&reply.json(), "warning"),
            ["Patient.meta.profile[0]"]
        );
    }
    // The server starts again on the same data, skips each, and says so.
    // The index may first replay the changes of its last second in memory (503 meanwhile).
    let restarted = Fhir::on(data.path(), &[]);
    let started = std::time::Instant::now();
    let ready = loop {
        let ready = restarted.get("../ready");
        if ready.status != 503 || started.elapsed() > std::time::Duration::from_secs(60) {
            break ready;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    ready.expect(200, "ready with skipped profiles");
    let ready = ready.json();
    assert_eq!(ready["status"], "warn", "{ready}");
    assert_eq!(ready["checks"]["profiles"], "warn", "{ready}");
    let warnings = ready["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), invariants.len(), "{ready}");
    for (id, _) in &invariants {
        let named = format!("http://fhirlake.test/{id} (StructureDefinition/{id})");
        assert!(
            warnings
                .iter()
                .any(|w| w.as_str().unwrap().contains(&named)),
            "{named}: {ready}"
        );
        restarted
            .get(&format!("StructureDefinition/{id}"))
            .expect(200, "still stored");
    }
    // A fixed version of one is a profile again, and no longer a warning.
    restarted
        .put(
            "StructureDefinition/repeat",
            &profile_with_invariant("repeat", "name.exists()"),
        )
        .expect(200, "the fixed profile");
    let ready = restarted.get("../ready").json();
    assert_eq!(
        ready["warnings"].as_array().unwrap().len(),
        invariants.len() - 1,
        "{ready}"
    );
    let mut patient = clean_patient();
    patient["meta"] = json!({"profile": ["http://fhirlake.test/repeat"]});
    patient.as_object_mut().unwrap().remove("birthDate");
    let outcome = assert_outcome(&restarted.post("Patient", &patient), 422, &["required"]);
    assert_eq!(
        expressions(&outcome, "error"),
        ["Patient.birthDate"],
        "{outcome}"
    );
}

#[test]
fn narrative_with_scripts_is_refused_at_its_div() {
    let fhir = Fhir::start();
    let div = |inner: &str| format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{inner}</div>");
    for inner in [
        "<script>alert(1)</script>Marie",
        "<img src=\"x\" onerror=\"alert(1)\"/>Marie",
        "<a href=\"javascript:alert(1)\">Marie</a>",
        "<p>unclosed",
    ] {
        let mut patient = clean_patient();
        patient["text"]["div"] = json!(div(inner));
        let outcome = assert_outcome(&fhir.post("Patient", &patient), 422, &["invariant"]);
        // txt-1 and txt-2 are both `htmlChecks()` in R4: both fail.
        assert_eq!(
            expressions(&outcome, "error"),
            ["Patient.text.div", "Patient.text.div"],
            "{inner}: {outcome}"
        );
        assert!(outcome.to_string().contains("txt-1"), "{outcome}");
    }
    // Whitespace only is no narrative (txt-2).
    let mut patient = clean_patient();
    patient["text"]["div"] = json!(div(" "));
    let outcome = assert_outcome(&fhir.post("Patient", &patient), 422, &["invariant"]);
    assert!(outcome.to_string().contains("txt-2"), "{outcome}");
    nothing_stored(&fhir, "Patient");
    // Formatting, a link and an image are narrative.
    let mut patient = clean_patient();
    patient["text"]["div"] = json!(div(
        "<p><b>Marie</b> <a href=\"https://example.org\">Lux</a><img src=\"#photo\" alt=\"\"/></p>"
    ));
    fhir.post("Patient", &patient)
        .expect(201, "a narrative with formatting");
}
