//! An independent bulk client against the real server: smart-fetch (SMART's bulk exporter,
//! PyPI, installed by `tests/setup.sh`) authorizes as a registered backend client with a
//! signed assertion, runs a whole system `$export` over Synthea patients and downloads every
//! file; DuckDB then reads the downloaded NDJSON (`read_json`), and its counts per type must
//! equal the resources of the imported bundles.
//!
//! smart-fetch exports the clinical types it knows (Patient, Encounter, Observation, ...:
//! `smart-fetch bulk --type help`); the test asks for every one of them.

mod common;

use common::auth::HS256;
use common::keys::{make_client_keys, public_jwk};
use common::{TestServer, run_command, synthea, test_tool};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// The resource types smart-fetch can export.
const TYPES: &[&str] = &[
    "AllergyIntolerance",
    "Condition",
    "Device",
    "DiagnosticReport",
    "DocumentReference",
    "Encounter",
    "EpisodeOfCare",
    "Immunization",
    "MedicationDispense",
    "MedicationRequest",
    "Observation",
    "Patient",
    "Procedure",
    "ServiceRequest",
    "Specimen",
];

/// The Synthea patient bundles the test imports.
const PATIENTS: usize = 3;

/// How many resources of each of [`TYPES`] the first [`PATIENTS`] Synthea patient bundles
/// hold, with their files (the shared provider bundles first).
fn synthea_patients() -> (Vec<String>, BTreeMap<String, u64>) {
    let files = synthea::files();
    let (shared, patients): (Vec<_>, Vec<_>) =
        files.iter().partition(|path| synthea::is_shared(path));
    let patients = &patients[..PATIENTS];
    let mut counts: BTreeMap<String, u64> = TYPES.iter().map(|t| (t.to_string(), 0)).collect();
    for path in patients {
        for entry in synthea::read_bundle(path)["entry"].as_array().unwrap() {
            let kind = entry["resource"]["resourceType"].as_str().unwrap();
            if let Some(count) = counts.get_mut(kind) {
                *count += 1;
            }
        }
    }
    let paths = shared
        .iter()
        .chain(patients)
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    (paths, counts)
}

#[test]
fn smart_fetch_exports_everything_and_duckdb_counts_it() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let data = dir.join("data");
    let (files, expected) = synthea_patients();
    assert!(expected["Observation"] > 0 && expected["Patient"] == PATIENTS as u64);
    let mut import = vec!["import"];
    import.extend(files.iter().map(String::as_str));
    run_command(&import, &data);

    make_client_keys(dir);
    let key = EncodingKey::from_rsa_pem(&std::fs::read(dir.join("rsa.pem")).unwrap()).unwrap();
    let jwks = dir.join("public.jwks.json");
    let set = JwkSet {
        keys: vec![public_jwk(&key, Algorithm::RS384, "key-1")],
    };
    std::fs::write(&jwks, serde_json::to_vec(&set).unwrap()).unwrap();
    let jwks = jwks.to_string_lossy();
    let register = ["client", "add", "--id", "smart-fetch", "--jwks", &jwks];
    run_command(
        &[&register[..], &["--scope", "system/*.rs"]].concat(),
        &data,
    );

    // Small files, so that every type with more than a few resources comes in several.
    let files_of = [
        "--export-file-resources",
        "250",
        "--job-poll-interval",
        "1s",
    ];
    let server = TestServer::start_on(&data, &[HS256, &files_of].concat());
    let out = dir.join("export");
    let counts = bulk_export(&server.base, &dir.join("rsa.pem"), &out);
    for (kind, count) in &expected {
        let got = &counts[kind.as_str()];
        assert_eq!(got["rows"], *count, "{kind}: DuckDB's rows, of {got}");
        assert_eq!(got["ids"], *count, "{kind}: distinct ids, of {got}");
    }
    let observation_files = counts["Observation"]["files"].as_u64().unwrap();
    assert!(
        observation_files >= expected["Observation"].div_ceil(250),
        "every Observation file was downloaded: {observation_files}"
    );
}

/// Runs `tests/clients/bulk_export.py` (smart-fetch, then DuckDB) against `base` with the
/// client key `pem`, downloading into `out`; DuckDB's counts per type.
fn bulk_export(base: &str, pem: &Path, out: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/bulk_export.py");
    let output = Command::new(test_tool("venv/bin/python"))
        .arg(script)
        .args([base, "smart-fetch"])
        .arg(pem)
        .arg(TYPES.join(","))
        .arg(out)
        .output()
        .expect("run tests/clients/bulk_export.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "bulk_export.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout.lines().last().expect("the counts");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("counts {last}: {e}"))
}
