//! The OpenAPI description: the committed `openapi/openapi.json` is what this build generates,
//! the server serves it (and the explorer's view of it), and a standard validator accepts both.

mod common;

use common::{TestServer, client, test_tool};
use serde_json::Value;
use std::process::Command;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
const REGENERATE: &str = "cargo run -- openapi > openapi/openapi.json";

/// `fhirlake openapi`.
fn generated() -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_fhirlake"))
        .arg("openapi")
        .output()
        .expect("run fhirlake openapi");
    assert!(
        output.status.success(),
        "fhirlake openapi failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

#[test]
fn the_committed_document_is_up_to_date() {
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    let generated = generated();
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(old, new)| old != new)
            .map_or(
                committed.lines().count().min(generated.lines().count()),
                |i| i,
            );
        panic!(
            "openapi/openapi.json is out of date (it differs from line {}): regenerate it with \
             `{REGENERATE}`",
            line + 1
        );
    }
}

#[test]
fn the_server_serves_the_document_and_the_explorer() {
    let server = TestServer::start();
    let http = client();
    let generated: Value = serde_json::from_str(&generated()).unwrap();

    let response = http
        .get(format!("{}/openapi.json", server.origin))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let served: Value = response.json().unwrap();
    assert!(
        served == generated,
        "/openapi.json is not `fhirlake openapi`"
    );

    let view: Value = http
        .get(format!("{}/docs/openapi.json", server.origin))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(view["paths"], generated["paths"]);

    let no_redirects = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let docs = no_redirects
        .get(format!("{}/docs", server.origin))
        .send()
        .unwrap();
    assert_eq!(docs.status(), 308);
    assert_eq!(docs.headers()["location"], "/docs/");
    let page = http.get(format!("{}/docs/", server.origin)).send().unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().unwrap().contains("swagger-ui-bundle.js"));
    let initializer = http
        .get(format!("{}/docs/swagger-initializer.js", server.origin))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(initializer.contains("\"url\": \"/docs/openapi.json\""));
}

/// openapi-spec-validator (PyPI), installed by tests/setup.sh, on the document and on the
/// explorer's view of it.
#[test]
fn a_standard_validator_accepts_the_document_and_its_view() {
    let validator = test_tool("venv/bin/openapi-spec-validator");
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let document = dir.path().join("openapi.json");
    std::fs::write(&document, generated()).unwrap();
    let view = dir.path().join("explorer-view.json");
    let text = client()
        .get(format!("{}/docs/openapi.json", server.origin))
        .send()
        .unwrap()
        .text()
        .unwrap();
    std::fs::write(&view, text).unwrap();
    let output = Command::new(validator)
        .args(["--schema", "3.1", "--validation-errors", "all"])
        .args([&document, &view])
        .output()
        .expect("run openapi-spec-validator");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "openapi-spec-validator rejects the document:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.matches(": OK").count(), 2, "{stdout}");
}
