//! Bulk `$export` to object storage (`--export-store s3://bucket/prefix`) over HTTP against
//! the real binary and a real S3-compatible server (s3s-fs, tests/setup.sh builds it), on the
//! Synthea data of tests/export.rs.
//!
//! The manifest's URLs are fhirlake's own (`requiresAccessToken: true`); what they serve must
//! be, resource for resource, the store at `transactionTime` (a plain read of the store), and
//! byte for byte the objects in the bucket (read from s3s-fs's directory, not through the S3
//! client under test). Cancel and expiry remove the objects; a crash mid-export resumes into
//! the bucket; a bucket that does not exist and a wrong secret fail the job with an
//! OperationOutcome.

mod common;

use common::bulk::*;
use common::fhir::{assert_outcome, send};
use common::s3::{S3Server, SECRET_KEY};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};

const BUCKET: &str = "lake";
const PREFIX: &str = "exports/fhir";

/// A server exporting to `s3://lake/exports/fhir` of `s3`, with `extra` arguments.
fn exporting(s3: &S3Server, extra: &[&str], pause: Option<&str>) -> Server {
    let store = format!("s3://{BUCKET}/{PREFIX}");
    let mut args = vec!["--export-store", store.as_str()];
    args.extend(extra);
    Server::start_with_env(&args, pause, s3.env(SECRET_KEY))
}

/// The file name of each of the manifest's URLs (output, deleted and error).
fn names(manifest: &Value) -> Vec<String> {
    let mut names: Vec<String> = ["output", "deleted", "error"]
        .iter()
        .flat_map(|part| manifest[part].as_array().cloned().unwrap_or_default())
        .map(|file| {
            let url = file["url"].as_str().unwrap();
            url.rsplit('/').next().unwrap().to_string()
        })
        .collect();
    names.sort();
    names
}

/// Asserts that the bucket holds exactly the manifest's files under the job's folder, each
/// the same bytes as its download, and that nothing went to the data directory.
fn assert_in_bucket(s3: &S3Server, server: &Server, status: &str, manifest: &Value) {
    let job = job_id(status);
    let objects = s3.objects(BUCKET, &format!("{PREFIX}/{job}"));
    let keys: Vec<String> = objects.iter().map(|(key, _)| key.clone()).collect();
    assert_eq!(keys, names(manifest), "the job's objects are its files");
    let client = server.client();
    let files: BTreeMap<String, String> = manifest["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|file| file["url"].as_str().unwrap().to_string())
        .map(|url| (url.rsplit('/').next().unwrap().to_string(), url))
        .collect();
    for (key, bytes) in &objects {
        let Some(url) = files.get(key) else { continue };
        let served = send(
            client
                .http
                .get(url)
                .header("Accept", "application/fhir+ndjson"),
        );
        served.expect(200, url);
        assert_eq!(served.text.as_bytes(), bytes.as_slice(), "{key}");
    }
    assert!(!server.job_dir(status).exists(), "nothing in DATA/jobs");
}

/// A system and a Patient export go to the bucket, several files per type; the manifest's
/// URLs serve the store at `transactionTime`, resource for resource, and the bucket's bytes.
#[test]
fn system_and_patient_exports_go_to_the_bucket() {
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET);
    let server = exporting(&s3, &["--export-file-resources", "200"], None);
    let client = server.client();
    let system = kick_off(&client, "$export");
    let patient = kick_off(&client, "Patient/$export");
    let compartment = compartment_types();
    let all_patients: HashSet<String> = patients_by_name(&client).into_iter().collect();
    for (status, population) in [(system, None), (patient, Some(&all_patients))] {
        let manifest = finish(&client, &status);
        let mut expected = state_at(&client, manifest["transactionTime"].as_str().unwrap());
        if let Some(population) = population {
            expected.retain(|key, resource| {
                compartment.contains(key.split('/').next().unwrap())
                    && of_patients(key, resource, population)
            });
        }
        assert!(expected.len() > 100, "{} expected", expected.len());
        let exported = download(&client, &manifest);
        assert_same(&exported, &expected, manifest["request"].as_str().unwrap());
        let outputs = manifest["output"].as_array().unwrap();
        assert!(
            outputs
                .iter()
                .any(|o| o["url"].as_str().unwrap().ends_with("-2.ndjson")),
            "several files of a type"
        );
        assert_in_bucket(&s3, &server, &status, &manifest);
    }
}

/// Stored gzip-compressed in the bucket, served compressed or plain as the client asks.
#[test]
fn gzip_objects_are_served_either_way() {
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET);
    let server = exporting(&s3, &["--export-compression", "gzip"], None);
    let client = server.client();
    let status = kick_off(&client, "$export?_type=Patient,Condition");
    let manifest = finish(&client, &status);
    let expected: BTreeMap<String, Value> =
        state_at(&client, manifest["transactionTime"].as_str().unwrap())
            .into_iter()
            .filter(|(key, _)| key.starts_with("Patient/") || key.starts_with("Condition/"))
            .collect();
    // The test client decodes gzip itself: files come compressed or not, the same lines.
    assert_same(&download(&client, &manifest), &expected, "gzip");
    let objects = s3.objects(BUCKET, &format!("{PREFIX}/{}", job_id(&status)));
    assert_eq!(objects.len(), 2);
    for (key, bytes) in &objects {
        assert!(key.ends_with(".ndjson.gz"), "{key}");
        assert_eq!(&bytes[..2], &[0x1f, 0x8b], "{key} is gzip");
    }
}

/// Cancelling a running export removes its objects; so does the expiry of a finished one.
#[test]
fn cancel_and_expiry_remove_the_objects() {
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET);
    let server = exporting(
        &s3,
        &["--export-file-resources", "20", "--job-retention", "2s"],
        Some("30:never"),
    );
    let client = server.client();
    let status = kick_off(&client, "$export?_type=Observation");
    let job = format!("{PREFIX}/{}", job_id(&status));
    wait_until("the first object", || {
        s3.objects(BUCKET, &job)
            .iter()
            .any(|(key, _)| key == "Observation-1.ndjson")
    });
    send(client.http.delete(&status)).expect(202, "cancel");
    assert_outcome(&send(client.http.get(&status)), 404, &["not-found"]);
    wait_until("the objects to go", || s3.objects(BUCKET, &job).is_empty());
    drop(server);

    let server = exporting(&s3, &["--job-retention", "2s"], None);
    let client = server.client();
    let status = kick_off(&client, "$export?_type=Patient");
    finish(&client, &status);
    let job = format!("{PREFIX}/{}", job_id(&status));
    assert_eq!(s3.objects(BUCKET, &job).len(), 1);
    wait_until("the export to expire", || {
        std::thread::sleep(POLL);
        send(client.http.get(&status)).status == 404
    });
    assert!(s3.objects(BUCKET, &job).is_empty(), "expired: no objects");
}

/// Killed in the middle of an export, the server resumes it after a restart: the bucket ends
/// with exactly the manifest's files, and they hold exactly the snapshot.
#[test]
fn an_export_to_the_bucket_survives_sigkill() {
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET);
    let small = ["--export-file-resources", "20"];
    let mut server = exporting(&s3, &small, Some("50:never"));
    let client = server.client();
    let status = kick_off(&client, "$export?_type=Observation,Condition");
    let job = format!("{PREFIX}/{}", job_id(&status));
    wait_until("the second object", || {
        s3.objects(BUCKET, &job)
            .iter()
            .any(|(key, _)| key == "Observation-2.ndjson")
    });
    server.server.kill();
    // The same settings again: the export store, and no pause.
    let store = format!("s3://{BUCKET}/{PREFIX}");
    server.restart(
        &[&["--export-store", store.as_str()], &small[..]].concat(),
        None,
    );
    let client = server.client();
    let status = format!("{}/_jobs/{}", server.server.base, job_id(&status));
    let manifest = finish(&client, &status);
    let mut expected = state_at(&client, manifest["transactionTime"].as_str().unwrap());
    expected.retain(|key, _| key.starts_with("Observation/") || key.starts_with("Condition/"));
    assert_same(&download(&client, &manifest), &expected, "after SIGKILL");
    assert_in_bucket(&s3, &server, &status, &manifest);
}

/// A bucket that does not exist, and a secret the server refuses, fail the job: its status is
/// an OperationOutcome that names the store and what it answered, and the server goes on.
#[test]
fn a_wrong_bucket_or_bad_credentials_fail_the_job() {
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET);
    for (store, secret, said) in [
        (
            "s3://no-such-bucket/exports",
            SECRET_KEY,
            "s3://no-such-bucket/exports",
        ),
        ("s3://lake/exports", "not-the-secret", "403"),
    ] {
        let server = Server::start_with_env(&["--export-store", store], None, s3.env(secret));
        let client = server.client();
        let status = kick_off(&client, "$export?_type=Patient");
        let reply = wait_for_end(&client, &status);
        let outcome = assert_outcome(&reply, 500, &["exception"]);
        let diagnostics = outcome["issue"][0]["diagnostics"].as_str().unwrap();
        assert!(diagnostics.contains(said), "{said}: {diagnostics}");
        // The server still answers, and the next export fails the same way.
        client.get("metadata").expect(200, "metadata");
        let again = wait_for_end(&client, &kick_off(&client, "$export?_type=Patient"));
        assert_outcome(&again, 500, &["exception"]);
    }
    assert!(s3.objects(BUCKET, "").is_empty());
}

/// `$import` reads objects under `--import-store`, plain or gzipped (told by their bytes):
/// every Synthea Patient and Condition is stored and reads back as sent; an object outside the
/// import store is refused at kick-off.
#[test]
fn an_import_reads_its_inputs_from_the_bucket() {
    use common::fhir::type_and_id;
    use std::io::Write;
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET);
    let resources = common::synthea::resources_by_id();
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let mut files: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    for resource in resources.values() {
        let kind = resource["resourceType"].as_str().unwrap();
        if kind == "Patient" || kind == "Condition" {
            *expected.entry(kind.to_string()).or_default() += 1;
            let file = files.entry(if kind == "Patient" {
                "Patient"
            } else {
                "Condition"
            });
            writeln!(file.or_default(), "{resource}").unwrap();
        }
    }
    s3.put(BUCKET, "imports/Patient.ndjson", &files["Patient"]);
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(&files["Condition"]).unwrap();
    s3.put(
        BUCKET,
        "imports/2026/Condition.ndjson.gz",
        &gzip.finish().unwrap(),
    );

    let dir = tempfile::tempdir().unwrap();
    let store = format!("s3://{BUCKET}/imports");
    let server = spawn(
        &dir.path().join("data"),
        &["--import-store", &store],
        None,
        &s3.env(SECRET_KEY),
    );
    let client = common::fhir::FhirClient::new(&server);
    let input = |kind: &str, url: String| {
        serde_json::json!({"name": "input", "part": [
            {"name": "type", "valueCode": kind}, {"name": "url", "valueUri": url}]})
    };
    let parameters = |inputs: Vec<Value>| {
        let mut parameter = vec![
            serde_json::json!({"name": "inputFormat", "valueCode": "application/fhir+ndjson"}),
        ];
        parameter.extend(inputs);
        serde_json::json!({"resourceType": "Parameters", "parameter": parameter})
    };
    let outside = parameters(vec![input(
        "Patient",
        format!("s3://{BUCKET}/exports/Patient.ndjson"),
    )]);
    let refused = client.post_with("$import", &outside, &[("Prefer", "respond-async")]);
    assert_outcome(&refused, 400, &["forbidden"]);

    let inputs = vec![
        input("Patient", format!("{store}/Patient.ndjson")),
        input("Condition", format!("{store}/2026/Condition.ndjson.gz")),
    ];
    let reply = client.post_with(
        "$import",
        &parameters(inputs),
        &[("Prefer", "respond-async")],
    );
    let status = accepted(&reply, "$import");
    let manifest = wait_for_end(&client, &status)
        .expect(200, "the import")
        .json();
    let imported: BTreeMap<String, u64> = manifest["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["type"].as_str().unwrap().to_string(),
                o["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(imported, expected, "{manifest}");
    for resource in resources
        .values()
        .filter(|r| r["resourceType"] == "Patient")
        .take(5)
    {
        let key = type_and_id(resource);
        let mut stored = client.get(&key).expect(200, &key).resource();
        stored.as_object_mut().unwrap().remove("meta");
        let mut sent = resource.clone();
        sent.as_object_mut().unwrap().remove("meta");
        assert_eq!(stored, sent, "{key}");
    }
}

/// A job does not go on in two places: an export begun into the data directory and resumed
/// by a server that now exports to a bucket fails, naming both, instead of finishing with a
/// manifest whose files are half here and half there.
#[test]
fn an_export_does_not_resume_into_another_store() {
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET);
    let small = ["--export-file-resources", "20"];
    let mut server = Server::start_with_env(&small, Some("50:never"), s3.env(SECRET_KEY));
    let client = server.client();
    let status = kick_off(&client, "$export?_type=Observation");
    let dir = server.job_dir(&status);
    wait_until("the second file", || {
        dir.join("Observation-2.ndjson").exists()
    });
    server.server.kill();
    let store = format!("s3://{BUCKET}/{PREFIX}");
    server.restart(
        &[&["--export-store", store.as_str()], &small[..]].concat(),
        None,
    );
    let client = server.client();
    let status = format!("{}/_jobs/{}", server.server.base, job_id(&status));
    let outcome = assert_outcome(&wait_for_end(&client, &status), 500, &["exception"]);
    let diagnostics = outcome["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(
        diagnostics.contains("the data directory") && diagnostics.contains(&store),
        "{diagnostics}"
    );
    assert!(s3.objects(BUCKET, "").is_empty());
}
