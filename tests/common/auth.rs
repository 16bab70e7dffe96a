//! What the authorization tests share (`tests/auth.rs`, `tests/isolation.rs`): servers with
//! HS256 authorization, tokens minted by `fhirlake token`, clients that send them, and the
//! Observations and Bundle keys the tests look at.
#![allow(dead_code)]

use super::TestServer;
use super::fhir::FhirClient;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::process::Command;

pub const SECRET: &str = "the-test-secret-of-at-least-32-bytes!";
pub const ISSUER: &str = "https://issuer.test";
pub const AUDIENCE: &str = "https://fhir.test/fhir";

/// The settings the servers and `fhirlake token` share.
pub const HS256: &[&str] = &[
    "--auth",
    "hs256",
    "--auth-secret",
    SECRET,
    "--auth-issuer",
    ISSUER,
    "--auth-audience",
    AUDIENCE,
];

/// Runs `fhirlake token` with the HS256 settings and `args`; returns its last line.
pub fn mint(args: &[&str]) -> String {
    let output = token_command(args).output().expect("run fhirlake token");
    assert!(
        output.status.success(),
        "fhirlake token {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    stdout.lines().last().expect("a token line").to_string()
}

pub fn token_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fhirlake"));
    command.arg("token").args(HS256).args(args);
    command
}

/// A token with `scope` (and a `patient` claim when given).
pub fn token(scope: &str, patient: Option<&str>) -> String {
    let mut args = vec!["--scope", scope];
    if let Some(patient) = patient {
        args.extend(["--patient", patient]);
    }
    mint(&args)
}

/// A client of `base` that sends `Authorization: <authorization>` with every request (none
/// when `None`).
pub fn client_at(base: &str, authorization: Option<&str>) -> FhirClient {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(value) = authorization {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            reqwest::header::HeaderValue::from_str(value).unwrap(),
        );
    }
    FhirClient {
        base: base.to_string(),
        http: super::client_builder()
            .default_headers(headers)
            .build()
            .unwrap(),
    }
}

/// A client of `server` (see [`client_at`]).
pub fn client(server: &TestServer, authorization: Option<&str>) -> FhirClient {
    client_at(&server.base, authorization)
}

/// A client of `server` that sends `token` as its bearer token.
pub fn bearer(server: &TestServer, token: &str) -> FhirClient {
    client(server, Some(&format!("Bearer {token}")))
}

/// An Observation whose subject is `subject` (`pa` for `Patient/pa`, or a whole reference
/// such as `https://elsewhere.example/fhir/Patient/pa`); without an id when `id` is empty
/// (for a create).
pub fn observation(id: &str, subject: &str, category: &str, performer: Option<&str>) -> Value {
    let subject = if subject.contains('/') {
        subject.to_string()
    } else {
        format!("Patient/{subject}")
    };
    let mut observation = json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": category}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "1234-5"}]},
        "subject": {"reference": subject},
    });
    if let Some(performer) = performer {
        observation["performer"] = json!([{"reference": performer}]);
    }
    if !id.is_empty() {
        observation["id"] = id.into();
    }
    observation
}

/// The `Type/id` of every entry of a Bundle but OperationOutcomes.
pub fn keys(bundle: &Value) -> BTreeSet<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let r = &e["resource"];
            Some(format!(
                "{}/{}",
                r["resourceType"].as_str()?,
                r["id"].as_str()?
            ))
        })
        .filter(|key| !key.starts_with("OperationOutcome/"))
        .collect()
}

pub fn set(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|k| k.to_string()).collect()
}
