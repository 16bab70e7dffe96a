//! The terminology over HTTP against the real server (`$lookup`, `$subsumes`,
//! `$validate-code`, `$expand`), the release commands (`fhirlake terminology load-snomed` and
//! `load-loinc`, on tiny synthetic RF2 and LOINC files written here), and the report of the
//! Synthea codes the shipped terminology does not know
//! (`synthea_codes_unknown_to_the_shipped_terminology`, printed with `--nocapture`).

mod common;

use common::TestServer;
use common::fhir::{Fhir, Reply, assert_outcome};
use fhirlake::terminology::{
    Content, ExpandRequest, LOINC, Membership, PropertyValue, SNOMED, Subsumption, Terminology,
    TerminologyError, ValueSet, Verdict, read_loinc_table, read_snomed_snapshot, release,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;

const ICD10CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";
const GENDER_VS: &str = "http://hl7.org/fhir/ValueSet/administrative-gender";
const GENDER: &str = "http://hl7.org/fhir/administrative-gender";
const CLINICAL_FINDINGS: &str = "http://hl7.org/fhir/ValueSet/clinical-findings";

/// A Parameters resource's parameters by name (the first of each name).
fn params(parameters: &Value) -> BTreeMap<String, Value> {
    assert_eq!(parameters["resourceType"], "Parameters", "{parameters}");
    let mut out = BTreeMap::new();
    for p in parameters["parameter"].as_array().expect("parameters") {
        out.entry(p["name"].as_str().unwrap().to_string())
            .or_insert_with(|| p.clone());
    }
    out
}

/// The `property` parts of a `$lookup` answer: (code, value as text).
fn properties(parameters: &Value) -> Vec<(String, String)> {
    parameters["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "property")
        .map(|p| {
            let parts = p["part"].as_array().unwrap();
            let value = parts[1]
                .as_object()
                .unwrap()
                .iter()
                .find(|(k, _)| k.starts_with("value"))
                .map(|(_, v)| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .unwrap();
            (parts[0]["valueCode"].as_str().unwrap().to_string(), value)
        })
        .collect()
}

fn post_parameters(fhir: &Fhir, path: &str, parameter: Value) -> Reply {
    fhir.post(
        path,
        &json!({"resourceType": "Parameters", "parameter": parameter}),
    )
}

fn valid_r4(resource: &Value) {
    fhirlake_model::check_resource(resource)
        .unwrap_or_else(|e| panic!("not valid R4 ({e:?}): {resource}"));
}

#[test]
fn lookup_reports_display_designations_and_properties() {
    let fhir = Fhir::start();
    let reply = fhir.get(&format!("CodeSystem/$lookup?system={ICD10CM}&code=E11.9"));
    let answer = reply.expect(200, "lookup").resource();
    valid_r4(&answer);
    let p = params(&answer);
    assert_eq!(p["name"]["valueString"], "ICD-10-CM");
    assert_eq!(p["version"]["valueString"], "2026-04");
    assert_eq!(
        p["display"]["valueString"],
        "Type 2 diabetes mellitus without complications"
    );
    let props = properties(&answer);
    assert!(
        props.contains(&("parent".into(), "E11".into())),
        "{props:?}"
    );
    assert!(
        props.contains(&("billable".into(), "true".into())),
        "{props:?}"
    );
    // Children of a category; POST with a coding.
    let reply = post_parameters(
        &fhir,
        "CodeSystem/$lookup",
        json!([{"name": "coding", "valueCoding": {"system": ICD10CM, "code": "E11"}}]),
    );
    let props = properties(&reply.expect(200, "lookup by POST").resource());
    assert!(
        props.contains(&("child".into(), "E11.9".into())),
        "{props:?}"
    );
    assert!(
        props.contains(&("billable".into(), "false".into())),
        "{props:?}"
    );
    // Designations of an HL7 code system.
    let reply = fhir
        .get("CodeSystem/$lookup?system=http://terminology.hl7.org/CodeSystem/v3-ActCode&code=AMB");
    let answer = reply.expect(200, "lookup AMB").resource();
    valid_r4(&answer);
    assert_eq!(params(&answer)["display"]["valueString"], "ambulatory");
}

#[test]
fn lookup_errors_are_operation_outcomes() {
    let fhir = Fhir::start();
    let unknown_system = fhir.get("CodeSystem/$lookup?system=http://example.org/x&code=1");
    assert_outcome(&unknown_system, 404, &["not-found"]);
    let unknown_code = fhir.get(&format!("CodeSystem/$lookup?system={ICD10CM}&code=E11.99"));
    let outcome = assert_outcome(&unknown_code, 404, &["not-found"]);
    assert!(
        outcome.to_string().contains("not a code of ICD-10-CM"),
        "{outcome}"
    );
    // Not in the SNOMED CT subset: said so, not "invalid".
    let missing = fhir.get(&format!(
        "CodeSystem/$lookup?system={SNOMED}&code=399144008"
    ));
    let outcome = assert_outcome(&missing, 404, &["not-found"]);
    assert!(outcome.to_string().contains("may be valid"), "{outcome}");
    assert_outcome(
        &fhir.get("CodeSystem/$lookup?code=E11.9"),
        400,
        &["invalid"],
    );
    assert_outcome(
        &fhir.get(&format!("CodeSystem/$lookup?system={ICD10CM}")),
        400,
        &["invalid"],
    );
    assert_outcome(
        &fhir.get(&format!(
            "CodeSystem/$lookup?system={ICD10CM}&code=E11&code=E12"
        )),
        400,
        &["invalid"],
    );
    assert_outcome(
        &fhir.post("CodeSystem/$lookup", &json!({"resourceType": "Patient"})),
        400,
        &["invalid"],
    );
    // A body that is no JSON is a structure error, as for every other body.
    assert_outcome(
        &fhir.post("CodeSystem/$lookup", "not json".to_string()),
        400,
        &["structure"],
    );
    assert_outcome(
        &post_parameters(
            &fhir,
            "CodeSystem/$lookup",
            json!([{"name": "coding", "valueCoding": {"code": "x"}}]),
        ),
        400,
        &["invalid"],
    );
    assert_outcome(
        &post_parameters(&fhir, "CodeSystem/$lookup", json!([{"valueCode": "x"}])),
        400,
        &["invalid"],
    );
    assert_outcome(&fhir.delete("CodeSystem/$lookup"), 405, &["not-supported"]);
}

#[test]
fn subsumes_answers_from_hierarchies_it_holds() {
    let fhir = Fhir::start();
    let outcome = |query: &str| {
        let reply = fhir.get(&format!("CodeSystem/$subsumes?{query}"));
        let answer = reply.expect(200, query).resource();
        valid_r4(&answer);
        params(&answer)["outcome"]["valueCode"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        outcome(&format!("system={ICD10CM}&codeA=E11&codeB=E11.9")),
        "subsumes"
    );
    assert_eq!(
        outcome(&format!("system={ICD10CM}&codeA=E11.9&codeB=E11")),
        "subsumed-by"
    );
    assert_eq!(
        outcome(&format!("system={ICD10CM}&codeA=E11&codeB=E11")),
        "equivalent"
    );
    assert_eq!(
        outcome(&format!("system={ICD10CM}&codeA=E11&codeB=A00")),
        "not-subsumed"
    );
    let reply = post_parameters(
        &fhir,
        "CodeSystem/$subsumes",
        json!([
            {"name": "codingA", "valueCoding": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "_ActEncounterCode"}},
            {"name": "codingB", "valueCoding": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}},
        ]),
    );
    assert_eq!(
        params(&reply.expect(200, "POST").resource())["outcome"]["valueCode"],
        "subsumes"
    );
    // Without a SNOMED CT release there is no hierarchy to answer from.
    let undecided = fhir.get(&format!(
        "CodeSystem/$subsumes?system={SNOMED}&codeA=404684003&codeB=195967001"
    ));
    let outcome = assert_outcome(&undecided, 422, &["not-supported"]);
    assert!(
        outcome.to_string().contains("cannot be decided"),
        "{outcome}"
    );
    assert_outcome(
        &fhir.get(&format!(
            "CodeSystem/$subsumes?system={ICD10CM}&codeA=E11&codeB=nope"
        )),
        404,
        &["not-found"],
    );
    assert_outcome(
        &fhir.get(&format!("CodeSystem/$subsumes?system={ICD10CM}&codeA=E11")),
        400,
        &["invalid"],
    );
}

/// `$validate-code` by GET: (result, message, display).
fn validate(fhir: &Fhir, query: &str) -> (bool, Option<String>, Option<String>) {
    let reply = fhir.get(&format!("ValueSet/$validate-code?{query}"));
    let answer = reply.expect(200, query).resource();
    valid_r4(&answer);
    let p = params(&answer);
    let text = |name: &str| {
        p.get(name)
            .and_then(|v| v["valueString"].as_str())
            .map(String::from)
    };
    (
        p["result"]["valueBoolean"].as_bool().unwrap(),
        text("message"),
        text("display"),
    )
}

#[test]
fn validate_code_in_value_sets_and_code_systems() {
    let fhir = Fhir::start();
    let (result, message, display) = validate(
        &fhir,
        &format!("url={GENDER_VS}&system={GENDER}&code=female"),
    );
    assert!(result);
    assert_eq!((message, display.as_deref()), (None, Some("Female")));
    // A wrong display: valid, with a warning.
    let (result, message, _) = validate(
        &fhir,
        &format!("url={GENDER_VS}&system={GENDER}&code=female&display=Woman"),
    );
    assert!(result);
    assert!(message.unwrap().contains("\"Woman\" is not a name"));
    // The same warning as an OperationOutcome in `issues`.
    let answer = fhir
        .get(&format!(
            "ValueSet/$validate-code?url={GENDER_VS}&system={GENDER}&code=female&display=Woman"
        ))
        .resource();
    let issue = &params(&answer)["issues"]["resource"]["issue"][0];
    assert_eq!(
        (&issue["severity"], &issue["code"]),
        (&json!("warning"), &json!("invalid"))
    );
    // Not in the value set.
    let (result, message, _) = validate(
        &fhir,
        &format!("url={GENDER_VS}&system={GENDER}&code=woman"),
    );
    assert!(!result);
    assert!(message.unwrap().contains("not in the value set"));
    // Without a value set: the code in its system.
    assert!(validate(&fhir, &format!("system={ICD10CM}&code=E11.9")).0);
    let (result, message, _) = validate(&fhir, &format!("system={ICD10CM}&code=E11.99"));
    assert!(!result);
    assert!(message.unwrap().contains("not a code of ICD-10-CM"));
    // A SNOMED CT id with a wrong check digit is invalid, release or not.
    let (result, message, _) = validate(
        &fhir,
        &format!("url={CLINICAL_FINDINGS}&system={SNOMED}&code=195967002"),
    );
    assert!(!result);
    assert!(message.unwrap().contains("Verhoeff"));
    // A code outside the shipped SNOMED CT subset, in a value set over all clinical
    // findings: cannot be decided, which is not false.
    let undecided = fhir.get(&format!(
        "ValueSet/$validate-code?url={CLINICAL_FINDINGS}&system={SNOMED}&code=399144008"
    ));
    let outcome = assert_outcome(&undecided, 422, &["not-supported"]);
    assert!(
        outcome.to_string().contains("cannot be decided"),
        "{outcome}"
    );
    let undecided = fhir.get(&format!(
        "ValueSet/$validate-code?system={SNOMED}&code=399144008"
    ));
    assert_outcome(&undecided, 422, &["not-supported"]);
    // Unknown value set, unknown system.
    assert_outcome(
        &fhir.get(&format!(
            "ValueSet/$validate-code?url=http://example.org/vs&system={GENDER}&code=male"
        )),
        404,
        &["not-found"],
    );
    assert_outcome(
        &fhir.get("ValueSet/$validate-code?system=http://example.org/cs&code=x"),
        404,
        &["not-found"],
    );
    assert_outcome(
        &fhir.get("ValueSet/$validate-code?code=x"),
        400,
        &["invalid"],
    );
}

#[test]
fn validate_code_takes_codings_concepts_and_value_sets_by_post() {
    let fhir = Fhir::start();
    let result = |parameter: Value| {
        let reply = post_parameters(&fhir, "ValueSet/$validate-code", parameter);
        let answer = reply.expect(200, "POST").resource();
        valid_r4(&answer);
        params(&answer)["result"]["valueBoolean"].as_bool().unwrap()
    };
    assert!(result(json!([
        {"name": "url", "valueUri": GENDER_VS},
        {"name": "coding", "valueCoding": {"system": GENDER, "code": "other"}},
    ])));
    // A CodeableConcept is valid when one of its codings is.
    assert!(result(json!([
        {"name": "url", "valueUri": GENDER_VS},
        {"name": "codeableConcept", "valueCodeableConcept": {"coding": [
            {"system": "http://example.org/local", "code": "F"},
            {"system": GENDER, "code": "female"},
        ]}},
    ])));
    // A value set given whole.
    let inline = json!({"resourceType": "ValueSet", "status": "active", "compose": {"include": [
        {"system": ICD10CM, "filter": [{"property": "concept", "op": "is-a", "value": "E11"}]}]}});
    assert!(result(json!([
        {"name": "valueSet", "resource": inline},
        {"name": "coding", "valueCoding": {"system": ICD10CM, "code": "E11.65"}},
    ])));
    assert!(!result(json!([
        {"name": "valueSet", "resource": inline},
        {"name": "coding", "valueCoding": {"system": ICD10CM, "code": "E10.9"}},
    ])));
    assert_outcome(
        &post_parameters(
            &fhir,
            "ValueSet/$validate-code",
            json!([
                {"name": "url", "valueUri": GENDER_VS},
                {"name": "valueSet", "resource": inline},
                {"name": "coding", "valueCoding": {"system": GENDER, "code": "other"}},
            ]),
        ),
        400,
        &["invalid"],
    );
}

#[test]
fn expand_lists_pages_and_filters() {
    let fhir = Fhir::start();
    let reply = fhir.get(&format!("ValueSet/$expand?url={GENDER_VS}"));
    let expanded = reply.expect(200, "expand").resource();
    valid_r4(&expanded);
    assert_eq!(expanded["url"], GENDER_VS);
    assert_eq!(expanded["expansion"]["total"], 4);
    let codes: Vec<&str> = expanded["expansion"]["contains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["male", "female", "other", "unknown"]);
    let page = fhir
        .get(&format!(
            "ValueSet/$expand?url={GENDER_VS}&count=2&offset=2"
        ))
        .expect(200, "page")
        .resource();
    assert_eq!(page["expansion"]["total"], 4);
    assert_eq!(page["expansion"]["offset"], 2);
    assert_eq!(page["expansion"]["contains"].as_array().unwrap().len(), 2);
    let filtered = fhir
        .get(&format!("ValueSet/$expand?url={GENDER_VS}&filter=unk"))
        .expect(200, "filter")
        .resource();
    assert_eq!(filtered["expansion"]["contains"][0]["code"], "unknown");
    let none = fhir
        .get(&format!("ValueSet/$expand?url={GENDER_VS}&filter=zzz"))
        .expect(200, "nothing")
        .resource();
    valid_r4(&none);
    assert_eq!(none["expansion"]["total"], 0);
    // The SNOMED CT GPS value set comes with its licence.
    let gps = fhir
        .get("ValueSet/$expand?url=http://terminology.hl7.org/ValueSet/snomed-intl-gps&count=3")
        .expect(200, "gps")
        .resource();
    assert_eq!(gps["expansion"]["total"], 26_158);
    assert!(
        gps["copyright"]
            .as_str()
            .unwrap()
            .contains("Creative Commons")
    );
    // By POST, a value set given whole.
    let reply = post_parameters(
        &fhir,
        "ValueSet/$expand",
        json!([
            {"name": "valueSet", "resource": {"resourceType": "ValueSet", "status": "draft", "compose": {"include": [
                {"system": ICD10CM, "filter": [{"property": "concept", "op": "descendent-of", "value": "E11.6"}]}]}}},
            {"name": "count", "valueInteger": 100},
        ]),
    );
    let expanded = reply.expect(200, "POST expand").resource();
    valid_r4(&expanded);
    let contains = expanded["expansion"]["contains"].as_array().unwrap();
    assert!(
        contains
            .iter()
            .all(|c| c["code"].as_str().unwrap().starts_with("E11.6"))
    );
    assert!(
        contains.iter().all(|c| c["code"] != "E11.6"),
        "descendants only"
    );
}

#[test]
fn expand_errors_are_operation_outcomes() {
    let fhir = Fhir::start();
    let outcome = assert_outcome(
        &fhir.get(&format!("ValueSet/$expand?url={CLINICAL_FINDINGS}")),
        422,
        &["not-supported"],
    );
    assert!(outcome.to_string().contains("hierarchy"), "{outcome}");
    assert_outcome(
        &fhir.get("ValueSet/$expand?url=http://example.org/none"),
        404,
        &["not-found"],
    );
    assert_outcome(&fhir.get("ValueSet/$expand"), 400, &["invalid"]);
    assert_outcome(
        &fhir.get(&format!("ValueSet/$expand?url={GENDER_VS}&count=-1")),
        400,
        &["invalid"],
    );
    assert_outcome(
        &fhir.get(&format!("ValueSet/$expand?url={GENDER_VS}&offset=x")),
        400,
        &["invalid"],
    );
    assert_outcome(
        &post_parameters(
            &fhir,
            "ValueSet/$expand",
            json!([{"name": "valueSet", "resource": {"resourceType": "Patient"}}]),
        ),
        400,
        &["invalid"],
    );
    assert_outcome(
        &fhir.get(&format!("ValueSet/$expand?url={GENDER_VS}&_format=turtle")),
        406,
        &["not-supported"],
    );
}

/// Whatever a client sends, the answer is a FHIR answer: 200 or an OperationOutcome, never a
/// crash (the server still answers afterwards).
#[test]
fn nothing_a_client_sends_crashes_the_operations() {
    let fhir = Fhir::start();
    let bodies = [
        json!(null),
        json!([]),
        json!({"resourceType": "Parameters", "parameter": {}}),
        json!({"resourceType": "Parameters", "parameter": [1, "x", null]}),
        json!({"resourceType": "Parameters", "parameter": [{"name": 3, "valueString": "x"}]}),
        json!({"resourceType": "Parameters", "parameter": [{"name": "coding", "valueCoding": "x"}]}),
        json!({"resourceType": "Parameters", "parameter": [{"name": "codeableConcept", "valueCodeableConcept": {"coding": 5}}]}),
        json!({"resourceType": "Parameters", "parameter": [{"name": "valueSet", "resource": {"resourceType": "ValueSet", "compose": {"include": [{"valueSet": ["x"]}]}}}]}),
        json!({"resourceType": "Parameters", "parameter": [{"name": "valueSet", "resource": {"resourceType": "ValueSet", "compose": {"include": [{"system": 5}]}}}]}),
        json!({"resourceType": "Parameters", "parameter": [{"name": "url", "valueUri": GENDER_VS}, {"name": "code", "valueCode": "x"}]}),
    ];
    let queries = [
        "system=&code=",
        "system=%00&code=%FF",
        "url=&system=a&code=b",
        "url=http://hl7.org/fhir/ValueSet/administrative-gender|9&system=x&code=y",
        "count=99999999999999999999999",
        "filter=%E2%82%AC&url=http://hl7.org/fhir/ValueSet/administrative-gender",
        "codeA=1&codeB=2&system=http://snomed.info/sct",
    ];
    for operation in [
        "CodeSystem/$lookup",
        "CodeSystem/$subsumes",
        "ValueSet/$validate-code",
        "ValueSet/$expand",
    ] {
        for body in &bodies {
            let reply = fhir.post(operation, body);
            check_answer(&reply, operation);
        }
        for query in queries {
            let reply = fhir.get(&format!("{operation}?{query}"));
            check_answer(&reply, operation);
        }
    }
    fhir.get(&format!("CodeSystem/$lookup?system={ICD10CM}&code=A00"))
        .expect(200, "still up");
}

fn check_answer(reply: &Reply, what: &str) {
    assert!(
        reply.status == 200 || (400..500).contains(&reply.status),
        "{what}: {} {}",
        reply.status,
        reply.text
    );
    let body = reply.resource();
    if reply.status != 200 {
        assert_eq!(body["resourceType"], "OperationOutcome", "{what}: {body}");
    }
}

#[test]
fn the_capability_statement_names_the_operations() {
    let fhir = Fhir::start();
    let statement = fhir.get("metadata").expect(200, "metadata").resource();
    let operations = |name: &str| -> Vec<String> {
        statement["rest"][0]["resource"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == name)
            .unwrap()["operation"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap().to_string())
            .collect()
    };
    // Every type also has the erasure operations.
    assert_eq!(
        operations("CodeSystem"),
        ["lookup", "subsumes", "validate", "erase", "bulk-delete"]
    );
    assert_eq!(
        operations("ValueSet"),
        [
            "validate-code",
            "expand",
            "validate",
            "erase",
            "bulk-delete"
        ]
    );
}

/// Writes an RF2 Snapshot: a root, Clinical finding, Disease, Diabetes mellitus and type 2
/// under it, an inactive concept, a malformed id, and a US English preferred synonym.
fn write_rf2(dir: &Path) {
    use verhoeff::Verhoeff;
    let inactive = format!("99999900{}", "99999900".calculate_verhoeff_check_digit());
    let terminology = dir.join("Snapshot/Terminology");
    let language = dir.join("Snapshot/Refset/Language");
    std::fs::create_dir_all(&terminology).unwrap();
    std::fs::create_dir_all(&language).unwrap();
    let concepts: Vec<(&str, &str)> = vec![
        ("138875005", "1"),
        ("404684003", "1"),
        ("64572001", "1"),
        ("73211009", "1"),
        ("44054006", "1"),
        (inactive.as_str(), "0"),
        ("12345", "1"),
    ];
    let mut text = String::from("id\teffectiveTime\tactive\tmoduleId\tdefinitionStatusId\r\n");
    for (id, active) in &concepts {
        text += &format!("{id}\t20240101\t{active}\t900000000000207008\t900000000000074008\r\n");
    }
    std::fs::write(
        terminology.join("sct2_Concept_Snapshot_INT_20240101.txt"),
        text,
    )
    .unwrap();
    let descriptions = [
        (
            "1",
            "138875005",
            "900000000000003001",
            "SNOMED CT Concept (SNOMED RT+CTV3)",
        ),
        (
            "2",
            "404684003",
            "900000000000003001",
            "Clinical finding (finding)",
        ),
        ("3", "64572001", "900000000000003001", "Disease (disorder)"),
        (
            "4",
            "73211009",
            "900000000000003001",
            "Diabetes mellitus (disorder)",
        ),
        (
            "5",
            "44054006",
            "900000000000003001",
            "Diabetes mellitus type 2 (disorder)",
        ),
        (
            "6",
            "44054006",
            "900000000000013009",
            "Type 2 diabetes mellitus",
        ),
        (
            "7",
            "44054006",
            "900000000000013009",
            "Non-insulin dependent diabetes mellitus",
        ),
        (
            "8",
            inactive.as_str(),
            "900000000000003001",
            "Retired thing (finding)",
        ),
    ];
    let mut text = String::from(
        "id\teffectiveTime\tactive\tmoduleId\tconceptId\tlanguageCode\ttypeId\tterm\tcaseSignificanceId\r\n",
    );
    for (id, concept, kind, term) in descriptions {
        text += &format!(
            "{id}\t20240101\t1\t900000000000207008\t{concept}\ten\t{kind}\t{term}\t900000000000448009\r\n"
        );
    }
    text += "9\t20240101\t1\t900000000000207008\t44054006\tes\t900000000000013009\tDiabetes tipo 2\t900000000000448009\r\n";
    std::fs::write(
        terminology.join("sct2_Description_Snapshot-en_INT_20240101.txt"),
        text,
    )
    .unwrap();
    let is_a = [
        ("404684003", "138875005"),
        ("64572001", "404684003"),
        ("73211009", "64572001"),
        ("44054006", "73211009"),
    ];
    let mut text = String::from(
        "id\teffectiveTime\tactive\tmoduleId\tsourceId\tdestinationId\trelationshipGroup\ttypeId\tcharacteristicTypeId\tmodifierId\r\n",
    );
    for (n, (source, destination)) in is_a.iter().enumerate() {
        text += &format!(
            "{n}\t20240101\t1\t900000000000207008\t{source}\t{destination}\t0\t116680003\t900000000000011006\t900000000000451002\r\n"
        );
    }
    // An inactive is-a, and a finding site: neither is a parent.
    text += "90\t20240101\t0\t900000000000207008\t44054006\t138875005\t0\t116680003\t900000000000011006\t900000000000451002\r\n";
    text += "91\t20240101\t1\t900000000000207008\t44054006\t404684003\t1\t363698007\t900000000000011006\t900000000000451002\r\n";
    std::fs::write(
        terminology.join("sct2_Relationship_Snapshot_INT_20240101.txt"),
        text,
    )
    .unwrap();
    std::fs::write(
        language.join("der2_cRefset_LanguageSnapshot-en_INT_20240101.txt"),
        "id\teffectiveTime\tactive\tmoduleId\trefsetId\treferencedComponentId\tacceptabilityId\r\n\
         a\t20240101\t1\t900000000000207008\t900000000000509007\t6\t900000000000548007\r\n\
         b\t20240101\t1\t900000000000207008\t900000000000509007\t7\t900000000000549004\r\n",
    )
    .unwrap();
}

/// Writes a Loinc.csv: quoted fields with commas, quotes and a line break; a deprecated code.
fn write_loinc(path: &Path) {
    std::fs::write(
        path,
        "\"LOINC_NUM\",\"COMPONENT\",\"PROPERTY\",\"SCALE_TYP\",\"STATUS\",\"VersionLastChanged\",\"LONG_COMMON_NAME\",\"SHORTNAME\",\"DefinitionDescription\"\n\
         \"2345-7\",\"Glucose\",\"MCnc\",\"Qn\",\"ACTIVE\",\"2.9\",\"Glucose [Mass/volume] in Serum or Plasma\",\"Glucose SerPl-mCnc\",\"Sugar, \"\"blood\"\"\nsecond line\"\n\
         \"8302-2\",\"Body height\",\"Len\",\"Qn\",\"ACTIVE\",\"2.77\",\"Body height\",\"Body height\",\"\"\n\
         \"1234-5\",\"Old\",\"Prid\",\"Nom\",\"DEPRECATED\",\"2.10\",\"Old thing\",\"\",\"\"\n",
    )
    .unwrap();
}

#[test]
fn a_loaded_snomed_release_decides_what_the_subset_cannot() {
    let temp = tempfile::tempdir().unwrap();
    let rf2 = temp.path().join("rf2");
    write_rf2(&rf2);
    let content = read_snomed_snapshot(&rf2).unwrap();
    assert_eq!(content.version.as_deref(), Some("20240101"));
    assert_eq!(content.concepts.len(), 6);
    assert_eq!(
        content.notes,
        ["1 rows with malformed concept ids left out"]
    );
    let data = temp.path().join("data");
    release::install(&data, &content).unwrap();
    let t = Terminology::open(&data).unwrap();
    let info = t.system(SNOMED).unwrap();
    assert_eq!((info.content, info.hierarchy), (Content::Complete, true));

    // The preferred synonym is the display; every English name is a designation.
    let diabetes = t.lookup(SNOMED, "44054006").unwrap().unwrap();
    assert_eq!(
        diabetes.display.as_deref(),
        Some("Type 2 diabetes mellitus")
    );
    assert_eq!(diabetes.designations.len(), 3);
    assert_eq!(diabetes.parents, ["73211009"]);
    assert_eq!(t.children(SNOMED, "73211009").unwrap(), ["44054006"]);
    assert!(
        t.validate_code(
            SNOMED,
            "44054006",
            Some("non-insulin dependent diabetes mellitus")
        )
        .unwrap()
        .issues
        .is_empty()
    );
    // Complete now: a code it lacks is invalid, no longer "not in the subset".
    assert_eq!(
        t.validate_code(SNOMED, "195967001", None).unwrap().verdict,
        Verdict::Invalid
    );
    let retired = t
        .lookup(SNOMED, &content.concepts[5].code)
        .unwrap()
        .unwrap();
    assert!(retired.is_inactive());

    assert_eq!(
        t.subsumes(SNOMED, "404684003", "44054006").unwrap(),
        Subsumption::Subsumes
    );
    assert_eq!(
        t.subsumes(SNOMED, "44054006", "64572001").unwrap(),
        Subsumption::SubsumedBy
    );
    assert_eq!(
        t.subsumes(SNOMED, "44054006", "138875005").unwrap(),
        Subsumption::SubsumedBy,
        "through the active is-a chain"
    );
    assert_eq!(
        t.validate_in_value_set(CLINICAL_FINDINGS, SNOMED, "44054006", None)
            .unwrap()
            .membership,
        Membership::Member
    );
    assert_eq!(
        t.validate_in_value_set(CLINICAL_FINDINGS, SNOMED, "138875005", None)
            .unwrap()
            .membership,
        Membership::NotMember
    );
    let findings = t
        .expand(CLINICAL_FINDINGS, &ExpandRequest::default())
        .unwrap();
    let codes: Vec<&str> = findings.contains.iter().map(|e| e.code.as_str()).collect();
    assert_eq!(codes, ["404684003", "64572001", "73211009", "44054006"]);

    // Loading again replaces the release.
    release::install(&data, &content).unwrap();
    assert_eq!(Terminology::open(&data).unwrap().releases().count(), 1);
}

#[test]
fn a_loaded_loinc_table_completes_loinc() {
    let temp = tempfile::tempdir().unwrap();
    let csv = temp.path().join("Loinc.csv");
    write_loinc(&csv);
    let content = read_loinc_table(&csv).unwrap();
    assert_eq!(
        content.version.as_deref(),
        Some("2.77"),
        "2.77 > 2.10 > 2.9"
    );
    release::install(temp.path(), &content).unwrap();
    let t = Terminology::open(temp.path()).unwrap();
    let glucose = t.lookup(LOINC, "2345-7").unwrap().unwrap();
    assert_eq!(
        glucose.display.as_deref(),
        Some("Glucose [Mass/volume] in Serum or Plasma")
    );
    assert_eq!(glucose.designations[0].value, "Glucose SerPl-mCnc");
    assert_eq!(
        glucose.property("SCALE_TYP"),
        Some(&PropertyValue::String("Qn".into()))
    );
    let height = t.lookup(LOINC, "8302-2").unwrap().unwrap();
    assert!(
        height.designations.is_empty(),
        "the short name repeats the display"
    );
    assert!(t.lookup(LOINC, "1234-5").unwrap().unwrap().is_inactive());
    assert_eq!(
        t.validate_code(LOINC, "99999-9", None).unwrap().verdict,
        Verdict::Invalid
    );
    // Property filters can be answered over the whole table now.
    let quantities: ValueSet = serde_json::from_value(serde_json::json!({
        "url": "http://example.org/quantities",
        "compose": {"include": [{"system": LOINC, "filter": [{"property": "SCALE_TYP", "op": "=", "value": "Qn"}]}]}
    }))
    .unwrap();
    let expansion = t
        .expand_value_set(&quantities, &ExpandRequest::default())
        .unwrap();
    let codes: Vec<&str> = expansion.contains.iter().map(|e| e.code.as_str()).collect();
    assert_eq!(codes, ["2345-7", "8302-2"]);
    // LOINC's hierarchy is not loaded.
    assert!(matches!(
        t.subsumes(LOINC, "2345-7", "8302-2"),
        Err(TerminologyError::Undecidable(_))
    ));
}

#[test]
fn malformed_release_files_are_refused_with_a_reason() {
    let temp = tempfile::tempdir().unwrap();
    let error = read_snomed_snapshot(temp.path()).err().unwrap().to_string();
    assert!(error.contains("sct2_Concept_Snapshot"), "{error}");
    std::fs::write(
        temp.path().join("sct2_Concept_Snapshot_x.txt"),
        "id\tactive\n1\t1\n",
    )
    .unwrap();
    let error = read_snomed_snapshot(temp.path()).err().unwrap().to_string();
    assert!(error.contains("no column effectiveTime"), "{error}");
    let csv = temp.path().join("other.csv");
    std::fs::write(&csv, "a,b\n1,2\n").unwrap();
    let error = read_loinc_table(&csv).err().unwrap().to_string();
    assert!(error.contains("LOINC_NUM"), "{error}");
}

#[test]
fn releases_loaded_by_command_are_served_after_a_restart() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let rf2 = temp.path().join("rf2");
    write_rf2(&rf2);
    let csv = temp.path().join("Loinc.csv");
    write_loinc(&csv);
    // A server running meanwhile keeps what it had.
    let before = Fhir::with(TestServer::start_on(&data, &[]));
    let printed = common::run_command(
        &["terminology", "load-snomed", rf2.to_str().unwrap()],
        &data,
    );
    assert!(
        printed.contains("loaded SNOMED CT 20240101 (6 concepts)"),
        "{printed}"
    );
    assert!(
        printed.contains("1 rows with malformed concept ids left out"),
        "{printed}"
    );
    let printed = common::run_command(&["terminology", "load-loinc", csv.to_str().unwrap()], &data);
    assert!(
        printed.contains("loaded LOINC 2.77 (3 concepts)"),
        "{printed}"
    );
    let query = format!("CodeSystem/$subsumes?system={SNOMED}&codeA=404684003&codeB=44054006");
    assert_outcome(&before.get(&query), 422, &["not-supported"]);
    drop(before);

    let fhir = Fhir::with(TestServer::start_on(&data, &[]));
    let answer = fhir.get(&query).expect(200, "subsumes").resource();
    assert_eq!(params(&answer)["outcome"]["valueCode"], "subsumes");
    let lookup = fhir
        .get(&format!("CodeSystem/$lookup?system={SNOMED}&code=44054006"))
        .expect(200, "lookup")
        .resource();
    valid_r4(&lookup);
    assert_eq!(
        params(&lookup)["display"]["valueString"],
        "Type 2 diabetes mellitus"
    );
    assert_eq!(params(&lookup)["version"]["valueString"], "20240101");
    let designation = &params(&lookup)["designation"]["part"];
    assert_eq!(designation[1]["valueCoding"]["system"], SNOMED);
    let (result, _, _) = validate(
        &fhir,
        &format!("url={CLINICAL_FINDINGS}&system={SNOMED}&code=44054006"),
    );
    assert!(result);
    let (result, _, _) = validate(&fhir, &format!("system={SNOMED}&code=195967001"));
    assert!(
        !result,
        "not in the loaded release: invalid, no longer undecided"
    );
    let expanded = fhir
        .get(&format!("ValueSet/$expand?url={CLINICAL_FINDINGS}"))
        .expect(200, "expand")
        .resource();
    assert_eq!(expanded["expansion"]["total"], 4);
    assert!(
        !expanded["copyright"]
            .as_str()
            .unwrap_or_default()
            .contains("GPS"),
        "a user's release is not the shipped subset: its licence statement is not added"
    );
    let glucose = fhir
        .get(&format!("CodeSystem/$lookup?system={LOINC}&code=2345-7"))
        .expect(200, "loinc")
        .resource();
    assert!(properties(&glucose).contains(&("SCALE_TYP".into(), "Qn".into())));
    fhir.get("../ready").expect(200, "ready");
}

#[test]
fn a_failed_load_changes_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fhirlake"))
        .args(["terminology", "load-snomed"])
        .arg(temp.path().join("missing"))
        .arg("--data")
        .arg(temp.path().join("data"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("missing"), "{stderr}");
    assert!(!temp.path().join("data/terminology/snomed.redb").exists());
}

/// What the shipped terminology says of the codings of one system in the Synthea data.
#[derive(Default)]
struct Tally {
    codings: usize,
    codes: std::collections::BTreeSet<String>,
    /// By verdict: (codings, distinct codes).
    verdicts: BTreeMap<&'static str, (usize, std::collections::BTreeSet<String>)>,
    /// Valid codings whose display is none of the code's names.
    display_warnings: usize,
    /// Invalid codes with the reason.
    invalid: BTreeMap<String, String>,
}

/// Calls `visit(system, code, display)` for every Coding in `value`: an object with a string
/// `system` and `code` that is not a Quantity (no `value`).
fn codings(value: &Value, visit: &mut dyn FnMut(&str, &str, Option<&str>)) {
    match value {
        Value::Object(map) => {
            if let (Some(Value::String(system)), Some(Value::String(code))) =
                (map.get("system"), map.get("code"))
                && !map.contains_key("value")
            {
                visit(system, code, map.get("display").and_then(Value::as_str));
            }
            map.values().for_each(|v| codings(v, visit));
        }
        Value::Array(items) => items.iter().for_each(|v| codings(v, visit)),
        _ => {}
    }
}

/// The report the issue asks for: how many codings of the Synthea bundles the shipped
/// terminology does not know, per system, and why (printed: `--nocapture`).
#[test]
fn synthea_codes_unknown_to_the_shipped_terminology() {
    let terminology = Terminology::shipped_only();
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    for path in common::synthea::files() {
        let bundle = common::synthea::read_bundle(&path);
        codings(&bundle, &mut |system, code, display| {
            let check = terminology.validate_code(system, code, display).unwrap();
            let tally = tallies.entry(system.to_string()).or_default();
            tally.codings += 1;
            tally.codes.insert(code.to_string());
            let verdict = match check.verdict {
                Verdict::Valid => "valid",
                Verdict::NotInSubset => "not in the shipped subset",
                Verdict::Invalid => "invalid",
                Verdict::UnknownSystem => "unknown system",
            };
            let entry = tally.verdicts.entry(verdict).or_default();
            entry.0 += 1;
            entry.1.insert(code.to_string());
            if check
                .issues
                .iter()
                .any(|i| i.kind == fhirlake::terminology::IssueKind::Display)
            {
                tally.display_warnings += 1;
            }
            if check.verdict == Verdict::Invalid {
                tally
                    .invalid
                    .insert(code.to_string(), check.issues[0].message.clone());
            }
        });
    }
    let cell = |tally: &Tally, verdict: &str| match tally.verdicts.get(verdict) {
        Some((codings, codes)) => format!("{codings} ({})", codes.len()),
        None => "0".into(),
    };
    println!(
        "| system | codings (codes) | valid | not in the shipped subset | invalid | unknown system | display warnings |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut ordered: Vec<_> = tallies.iter().collect();
    ordered.sort_by_key(|(_, t)| std::cmp::Reverse(t.codings));
    for (system, tally) in &ordered {
        println!(
            "| {system} | {} ({}) | {} | {} | {} | {} | {} |",
            tally.codings,
            tally.codes.len(),
            cell(tally, "valid"),
            cell(tally, "not in the shipped subset"),
            cell(tally, "invalid"),
            cell(tally, "unknown system"),
            tally.display_warnings
        );
    }
    let sum = |verdict: &str| -> usize {
        tallies
            .values()
            .filter_map(|t| t.verdicts.get(verdict))
            .map(|(n, _)| n)
            .sum()
    };
    let total: usize = tallies.values().map(|t| t.codings).sum();
    println!(
        "| all {} systems | {total} | {} | {} | {} | {} | {} |",
        tallies.len(),
        sum("valid"),
        sum("not in the shipped subset"),
        sum("invalid"),
        sum("unknown system"),
        tallies.values().map(|t| t.display_warnings).sum::<usize>()
    );
    for (system, tally) in &ordered {
        for (code, why) in &tally.invalid {
            println!("invalid: {system} {code}: {why}");
        }
    }
    // Every coding has one verdict.
    assert_eq!(
        total,
        sum("valid") + sum("not in the shipped subset") + sum("invalid") + sum("unknown system")
    );
    // The figures this test reports (../shared/README.md: 490 distinct SNOMED CT codes, 218 LOINC).
    assert_eq!(tallies[SNOMED].codes.len(), 490);
    assert_eq!(tallies[LOINC].codes.len(), 218);
    // The one SNOMED CT code that is certainly wrong: a cut-off id, caught by its check digit.
    assert_eq!(
        tallies[SNOMED].invalid.keys().collect::<Vec<_>>(),
        ["1853470"]
    );
    assert!(tallies[SNOMED].invalid["1853470"].contains("Verhoeff"));
    // Codes of the HL7 code systems Synthea uses are all known.
    for (system, tally) in &tallies {
        if system.starts_with("http://terminology.hl7.org/CodeSystem/") {
            assert!(tally.invalid.is_empty(), "{system}: {:?}", tally.invalid);
        }
    }
}
