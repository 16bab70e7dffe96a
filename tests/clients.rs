//! Real FHIR client libraries against the real server: fhirpy and fhirclient (PyPI) and
//! fhir-kit-client (npm), installed by `tests/setup.sh`, each running its conformance script
//! from `tests/clients/` with its own API (CRUD, PATCH, conditional create, paging, includes,
//! system search, a batch with searches, strict parsing of what the server returns) against a
//! server that authorizes with bearer tokens and holds Synthea patients.

mod common;

use common::{TestServer, run_command, synthea, test_tool};
use std::path::Path;
use std::process::Command;

/// A server with HS256 authorization, the Synthea providers and two patients, and a token
/// that may do everything.
fn loaded() -> (TestServer, String) {
    let server = TestServer::start_with(&["--auth", "hs256"]);
    let output = run_command(&["token", "--scope", "system/*.cruds"], &server.data);
    let token = output.lines().last().expect("a token").to_string();
    let client = common::auth::bearer(&server, &token);
    for name in [
        "0-hospitalInformation",
        "0-practitionerInformation",
        "057aa36e",
        "0696ac49",
    ] {
        client.bundle(&synthea::bundle(name)).expect(200, name);
    }
    (server, token)
}

/// Runs `program script BASE TOKEN` in `tests/clients/` and fails the test with its output
/// unless every check of the script passed.
fn run_script(mut program: Command, script: &str) {
    let (server, token) = loaded();
    let clients = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
    let output = program
        .current_dir(&clients)
        .arg(clients.join(script))
        .arg(&server.base)
        .arg(&token)
        .output()
        .unwrap_or_else(|error| panic!("running {script}: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("every check passed"), "{script}: {stdout}");
}

fn python() -> Command {
    Command::new(test_tool("venv/bin/python"))
}

#[test]
fn fhirpy_works_unchanged() {
    run_script(python(), "fhirpy_client.py");
}

#[test]
fn fhirclient_parses_everything_strictly() {
    run_script(python(), "fhirclient_client.py");
}

#[test]
fn fhir_kit_client_works_unchanged() {
    let mut node = Command::new("node");
    node.env(
        "FHIRLAKE_NODE_MODULES",
        test_tool("clients-node/node_modules"),
    );
    run_script(node, "fhir_kit_client.mjs");
}
