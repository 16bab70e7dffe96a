//! Searches that ask for too much: every size and depth a client controls in a search is
//! bounded (the `--search-max-*` settings), past a bound the answer is a 400 OperationOutcome,
//! and no search, however strange, takes the server down. Over HTTP on the real binary.

mod common;

use common::fhir::{Fhir, FhirClient, Reply, assert_outcome, patient};
use common::search::loaded;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;
use std::collections::BTreeMap;

/// The server is still up: it answers a read of what it holds.
fn still_up(fhir: &Fhir, id: &str) {
    fhir.get(&format!("Patient/{id}"))
        .expect(200, "a read after the hostile search");
}

#[test]
fn searches_past_their_limits_are_refused_and_the_server_stays_up() {
    let fhir = Fhir::start();
    let id = common::fhir::id_of(&fhir.create(&patient("Limit")));
    let too_costly = |reply: &Reply, what: &str| {
        common::fhir::assert_outcome_for(reply, 400, &["too-costly"], what);
        still_up(&fhir, &id);
    };
    // The requests of the report: each killed the process.
    too_costly(&fhir.get("Patient?_offset=10000000000"), "a huge offset");
    too_costly(
        &fhir.get("Patient?_offset=4611686018427387904"),
        "an offset near 2^62",
    );
    let deep_has = format!("Patient?{}gender=x", "_has:Patient:link:".repeat(1500));
    assert!(deep_has.len() > 27_000);
    too_costly(&fhir.get(&deep_has), "_has 1,500 deep in a 27 KB URL");
    let deep_chain = format!("{}gender", "link:Patient.".repeat(2000));
    too_costly(
        &fhir.post_form("Patient/_search", &[(deep_chain.as_str(), "x")]),
        "a chain 2,000 deep in a POST _search body",
    );
    // Each limit at its default, just past it.
    let many = |value: &str, n: usize| vec![value; n].join(",");
    let long_chain = format!("{}gender", "link:Patient.".repeat(5));
    let cases: Vec<(String, Vec<(String, String)>)> = vec![
        (
            "too many ORs".into(),
            vec![("gender".into(), many("male", 501))],
        ),
        (
            "too many ANDs".into(),
            vec![("gender".into(), "male".into()); 101],
        ),
        (
            "too many sort keys".into(),
            vec![("_sort".into(), many("gender", 501))],
        ),
        ("a chain 5 deep".into(), vec![(long_chain, "x".into())]),
        (
            "too many includes".into(),
            vec![("_include".into(), "Patient:link".into()); 21],
        ),
        (
            "too many words".into(),
            vec![("_content".into(), vec!["word"; 501].join(" "))],
        ),
        (
            "too many words of :text".into(),
            vec![("language:text".into(), vec!["word"; 501].join(" "))],
        ),
        (
            "too many segments of :above".into(),
            vec![("_profile:above".into(), "a/".repeat(600))],
        ),
    ];
    for (what, params) in &cases {
        let pairs: Vec<(&str, &str)> = params
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        too_costly(&fhir.post_form("Patient/_search", &pairs), what);
        too_costly(
            &fhir.get_with(
                &format!(
                    "Patient?{}",
                    form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(&pairs)
                        .finish()
                ),
                &[("Prefer", "handling=strict")],
            ),
            what,
        );
    }
    // Values whose parsing or matching could grow without bound: refused (400), never a
    // crash.
    let long = "a".repeat(200_000);
    let nested = format!("{}a{}", "(".repeat(10_000), ")".repeat(10_000));
    let huge = format!("1{}", "0".repeat(100_000));
    let cursor = "ab".repeat(100_000);
    for (name, value) in [
        ("family:contains", long.as_str()),
        ("_content", nested.as_str()),
        ("birthdate", huge.as_str()),
        ("_cursor", cursor.as_str()),
        (
            "_sort",
            "-_lastUpdated,_id,-family,birthdate,gender,-address,name",
        ),
    ] {
        let reply = fhir.post_form("Patient/_search", &[(name, value)]);
        assert!(
            reply.status == 200 || reply.status == 400,
            "{name}: {}",
            reply.status
        );
        if reply.status == 400 {
            common::fhir::assert_outcome_for(&reply, 400, &["invalid", "too-costly"], name);
        }
        still_up(&fhir, &id);
    }
    // A chain without a type may fan out to every type a reference may name: one nested
    // search each (Provenance.target names any type).
    too_costly(
        &fhir.get("Provenance?target._id=x"),
        "a fan-out of 146 types",
    );
    fhir.get("Provenance?target:Patient._id=x")
        .expect(200, "the same chain, typed");
    // Within the limits: fine.
    fhir.get(&format!("Patient?gender={}", many("male", 500)))
        .expect(200, "500 ORs");
    fhir.get(&format!("Patient?{}gender=x", "link:Patient.".repeat(4)))
        .expect(200, "a chain 4 deep");
    still_up(&fhir, &id);
}

#[test]
fn the_limits_are_settings() {
    let fhir = Fhir::with(common::TestServer::start_with(&[
        "--search-max-values",
        "2",
        "--search-max-depth",
        "1",
        "--search-max-offset",
        "5",
        "--search-max-params",
        "3",
        "--search-max-includes",
        "1",
        "--search-max-joins",
        "1",
    ]));
    let id = common::fhir::id_of(&fhir.create(&patient("Limit")));
    fhir.get("Patient?gender=male,female")
        .expect(200, "2 values");
    for query in [
        "Patient?gender=male,female,other",
        "Patient?link:Patient.link:Patient.gender=x",
        "Patient?_offset=6",
        "Patient?gender=male&gender=male&gender=male&gender=male",
        "Patient?_include=Patient:link&_include=Patient:organization",
        "Patient?link.gender=x",
    ] {
        assert_outcome(&fhir.get(query), 400, &["too-costly"]);
    }
    fhir.get("Patient?_offset=5").expect(200, "offset 5");
    fhir.get("Patient?link:Patient.gender=x")
        .expect(200, "one link");
    // Paging past the largest offset goes on with cursors.
    for n in 0..12 {
        fhir.create(&patient(&format!("Paged{n}")));
    }
    let found = common::search::search(&fhir, "Patient?_count=2");
    assert_eq!(found.len(), 13);
    still_up(&fhir, &id);
}

/// The search parameters of each type, as the CapabilityStatement lists them, with their
/// types.
fn parameters(fhir: &Fhir) -> BTreeMap<String, Vec<(String, String)>> {
    let statement = fhir.get("metadata").expect(200, "metadata").resource();
    let mut out = BTreeMap::new();
    for resource in statement["rest"][0]["resource"].as_array().unwrap() {
        let params = resource["searchParam"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_string(),
                    p["type"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        out.insert(resource["type"].as_str().unwrap().to_string(), params);
    }
    out
}

/// A search value: well formed for some parameter type, or not.
fn values() -> impl Strategy<Value = String> {
    let prefix = prop_oneof![
        Just(""),
        Just("eq"),
        Just("ne"),
        Just("gt"),
        Just("lt"),
        Just("ge"),
        Just("le"),
        Just("sa"),
        Just("eb"),
        Just("ap"),
        Just(">="),
        Just("<"),
    ];
    let plain = prop_oneof![
        Just("2020".to_string()),
        Just("2020-02-30".to_string()),
        Just("2020-03-15T23:30:00+05:00".to_string()),
        Just("1e400".to_string()),
        Just("-0.0".to_string()),
        Just("NaN".to_string()),
        Just("99999999999999999999999999".to_string()),
        Just("http://loinc.org|8867-4".to_string()),
        Just("|".to_string()),
        Just("a|b|c|d".to_string()),
        Just("5.4|http://unitsofmeasure.org|mg".to_string()),
        Just("42|-71|10|km".to_string()),
        Just("90|180|1e308|[mi_i]".to_string()),
        Just("8480-6$gt120".to_string()),
        Just("$$$".to_string()),
        Just("Patient/x".to_string()),
        Just("\\,\\|\\$\\\\".to_string()),
        Just("((((a))))".to_string()),
        Just("\"open".to_string()),
        Just("a OR (b AND \"c d\")".to_string()),
        Just("+:*?{}[]^~".to_string()),
        Just("true".to_string()),
        "[a-z0-9]{0,12}",
        any::<String>(),
    ];
    (prefix, proptest::collection::vec(plain, 1..4))
        .prop_map(|(prefix, values)| format!("{prefix}{}", values.join(",")))
}

/// A search parameter name of `resource_type`: a parameter with a modifier or not, a chain, a
/// reverse chain, a control parameter, or nonsense.
fn names(params: Vec<(String, String)>) -> impl Strategy<Value = String> {
    let codes: Vec<String> = params.iter().map(|(code, _)| code.clone()).collect();
    let references: Vec<String> = params
        .iter()
        .filter(|(_, kind)| kind == "reference")
        .map(|(code, _)| code.clone())
        .collect();
    let code = proptest::sample::select(codes.clone());
    let modifier = prop_oneof![
        Just(""),
        Just(":missing"),
        Just(":not"),
        Just(":exact"),
        Just(":contains"),
        Just(":text"),
        Just(":of-type"),
        Just(":below"),
        Just(":above"),
        Just(":identifier"),
        Just(":Patient"),
        Just(":iterate"),
        Just(":nonsense"),
    ];
    let link = proptest::sample::select(if references.is_empty() {
        codes
    } else {
        references
    });
    prop_oneof![
        4 => (code.clone(), modifier).prop_map(|(c, m)| format!("{c}{m}")),
        2 => (proptest::collection::vec(link, 1..6), code.clone())
            .prop_map(|(links, c)| format!("{}.{c}", links.join("."))),
        1 => (0usize..6, code.clone())
            .prop_map(|(n, c)| format!("{}{c}", "_has:Observation:patient:".repeat(n))),
        1 => proptest::sample::select(vec![
            "_sort", "_count", "_offset", "_cursor", "_include", "_revinclude",
            "_include:iterate", "_summary", "_elements", "_total", "_type", "_list", "_text",
            "_content", "_id", "_lastUpdated", "_has", "_snapshot",
        ])
        .prop_map(String::from),
        1 => "[_a-z:.]{1,20}",
    ]
}

/// Random searches with known parameters, modifiers, prefixes, garbage values and deep chains
/// never get a 5xx, and the server stays up.
#[test]
fn generated_searches_never_fail_the_server() {
    let fhir = loaded(1);
    let known = parameters(&fhir);
    let types = [
        "Patient",
        "Observation",
        "Encounter",
        "Condition",
        "Location",
    ];
    let patient_id = common::fhir::id_of(&common::search::all(&fhir, "Patient")[0]);
    let client = FhirClient::at(&fhir.base);
    let mut runner = TestRunner::new(Config {
        cases: 48,
        failure_persistence: None,
        max_shrink_iters: 100,
        ..Config::default()
    });
    let search = proptest::sample::select(types.to_vec()).prop_flat_map(|resource_type| {
        let params = known[resource_type].clone();
        (
            Just(resource_type),
            proptest::collection::vec((names(params), values()), 1..5),
            any::<bool>(),
            any::<bool>(),
        )
    });
    runner
        .run(&search, |(resource_type, params, strict, post)| {
            let pairs: Vec<(&str, &str)> = params
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let reply = if post {
                client.post_form(&format!("{resource_type}/_search"), &pairs)
            } else if strict {
                let query = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(&pairs)
                    .finish();
                client.get_with(
                    &format!("{resource_type}?{query}"),
                    &[("Prefer", "handling=strict")],
                )
            } else {
                client.get_query(resource_type, &pairs)
            };
            prop_assert!(
                reply.status < 500,
                "{resource_type} {params:?}: {}",
                reply.text
            );
            let body: Value = serde_json::from_str(&reply.text).unwrap_or(Value::Null);
            let kind = body["resourceType"].as_str().unwrap_or("");
            prop_assert!(
                kind == "Bundle" || (reply.status >= 400 && kind == "OperationOutcome"),
                "{resource_type} {params:?}: {} {}",
                reply.status,
                reply.text
            );
            Ok(())
        })
        .unwrap();
    still_up(&fhir, &patient_id);
}
