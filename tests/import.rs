//! `fhirlake import`: the real binary loads NDJSON (plain and gzipped), collection Bundles,
//! single resources, directories and transaction/batch Bundles into a data directory with no
//! server running; a server started on that directory afterwards serves what was stored.
mod common;

use common::fhir::{Fhir, check_references, type_and_id, without_server_meta};
use common::synthea;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `fhirlake import --data DATA --quiet PATHS...` and returns its output.
fn import(data: &Path, paths: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fhirlake"))
        .arg("import")
        .arg("--data")
        .arg(data)
        .arg("--quiet")
        .args(paths)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run fhirlake import")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The numbers of the summary line `imported N resources from F files in S s (R resources/s);
/// X rejected resources, Y rejected files`: (N, F, X, Y).
fn summary(output: &Output) -> (u64, u64, u64, u64) {
    let out = stdout(output);
    let line = out
        .lines()
        .find(|l| l.starts_with("imported "))
        .unwrap_or_else(|| {
            panic!(
                "no summary line on stdout: {out:?}; stderr: {}",
                stderr(output)
            )
        });
    let words: Vec<&str> = line.split_whitespace().collect();
    // imported N resources from F files in S s (R resources/s); X rejected resources, Y rejected
    // files; W validation warnings
    let shape = [
        (0, "imported"),
        (2, "resources"),
        (3, "from"),
        (5, "files"),
        (6, "in"),
        (8, "s"),
        (10, "resources/s);"),
        (12, "rejected"),
        (13, "resources,"),
        (15, "rejected"),
        (16, "files;"),
        (18, "validation"),
        (19, "warnings"),
    ];
    assert_eq!(words.len(), 20, "summary line {line:?}");
    for (at, word) in shape {
        assert_eq!(words[at], word, "summary line {line:?}");
    }
    let number = |at: usize| -> u64 {
        words[at]
            .parse()
            .unwrap_or_else(|_| panic!("{:?} in {line:?} is not a count", words[at]))
    };
    assert!(words[7].parse::<f64>().is_ok(), "seconds in {line:?}");
    assert!(words[9].starts_with('('), "rate in {line:?}");
    number(17);
    (number(1), number(4), number(11), number(14))
}

/// The lines of stderr that report a rejection.
fn rejections(output: &Output) -> Vec<String> {
    stderr(output)
        .lines()
        .filter(|l| l.starts_with("rejected "))
        .map(String::from)
        .collect()
}

/// Asserts that stderr reports exactly the rejections named by `prefixes` (each line
/// `rejected PATH:LINE: message` or `rejected PATH entry N: message`), in that order.
fn assert_rejections(output: &Output, prefixes: &[String]) {
    let rejected = rejections(output);
    assert_eq!(
        rejected.len(),
        prefixes.len(),
        "stderr should list the rejections {prefixes:?}; stderr was: {:?}",
        stderr(output)
    );
    for (line, prefix) in rejected.iter().zip(prefixes) {
        assert!(
            line.starts_with(prefix.as_str()),
            "{line:?} is not {prefix:?}..."
        );
    }
}

/// Asserts that `fhir import` succeeded.
fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "status {:?}; stderr: {}",
        output.status,
        stderr(output)
    );
}

/// GET of a resource that must be there (200), as JSON.
fn read(fhir: &Fhir, path: &str) -> Value {
    fhir.get(path).expect(200, &format!("GET {path}")).json()
}

/// Asserts that the server stored `sent` under its own id, unchanged but for the version
/// metadata.
fn assert_stored_as_sent(fhir: &Fhir, sent: &Value) {
    let at = type_and_id(sent);
    let stored = read(fhir, &at);
    assert_eq!(stored["meta"]["versionId"], "1", "{at}");
    assert_eq!(&without_server_meta(&stored), sent, "{at} as stored");
}

/// Creates the directory `name` in `parent` and returns its path.
fn new_dir(parent: &Path, name: &str) -> PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir(&dir).unwrap();
    dir
}

fn gzip(path: &Path, text: &str) {
    let mut encoder = GzEncoder::new(
        std::fs::File::create(path).expect("create gz"),
        Compression::default(),
    );
    encoder.write_all(text.as_bytes()).expect("write gz");
    encoder.finish().expect("finish gz");
}

fn ndjson(resources: &[Value]) -> String {
    resources.iter().map(|r| format!("{r}\n")).collect()
}

fn patient(id: &str, family: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "id": id,
        "active": true,
        "name": [{"family": family, "given": ["Imported"]}]
    })
}

#[test]
fn ndjson_import_stores_good_lines_and_names_the_bad_ones() {
    let temp = tempfile::tempdir().expect("temp dir");
    let data = temp.path().join("data");
    let file = temp.path().join("resources.ndjson");

    // 30 real resources of several types; every third one without an id.
    let mut resources = synthea::resources("057aa36e");
    resources.truncate(30);
    let mut with_ids = Vec::new();
    for (index, resource) in resources.iter_mut().enumerate() {
        if index % 3 == 1 {
            resource.as_object_mut().unwrap().remove("id");
        } else {
            with_ids.push(resource.clone());
        }
    }
    let kinds: HashSet<&str> = resources
        .iter()
        .map(|r| r["resourceType"].as_str().unwrap())
        .collect();
    assert!(kinds.len() >= 4, "several resource types: {kinds:?}");
    let mut lines: Vec<String> = resources.iter().map(Value::to_string).collect();
    // Line 5: not JSON. Line 12: an element Patient does not have.
    lines.insert(
        4,
        r#"{"resourceType": "Patient", "id": "broken""#.to_string(),
    );
    lines.insert(
        11,
        json!({"resourceType": "Patient", "id": "unknown-element", "favouriteColour": "blue"})
            .to_string(),
    );
    std::fs::write(&file, lines.join("\n") + "\n").expect("write ndjson");

    let output = import(&data, &[&file]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "rejected lines make the exit status 1; stderr: {}",
        stderr(&output)
    );
    assert_eq!(summary(&output), (30, 1, 2, 0));

    let fhir = Fhir::on(&data, &[]);
    for resource in &with_ids {
        assert_stored_as_sent(&fhir, resource);
    }
    assert_eq!(fhir.get("Patient/unknown-element").status, 404);
    assert_eq!(fhir.get("Patient/broken").status, 404);
    let history = fhir.system_history();
    assert_eq!(history.len(), 30, "one version per good line");
    let named: HashSet<String> = with_ids.iter().map(type_and_id).collect();
    let anonymous: Vec<&Value> = history
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| !named.contains(&type_and_id(r)))
        .collect();
    assert_eq!(anonymous.len(), 10, "the lines without ids got new ids");
    for resource in anonymous {
        read(&fhir, &type_and_id(resource));
    }
    // Last, so that the stored data is checked even when this fails.
    let path = file.display().to_string();
    assert_rejections(
        &output,
        &[
            format!("rejected {path}:5: "),
            format!("rejected {path}:12: "),
        ],
    );
    let rejected = rejections(&output);
    assert!(
        rejected[1].contains("favouriteColour"),
        "the message names the unknown element: {}",
        rejected[1]
    );
}

#[test]
fn gzipped_ndjson_collection_bundles_and_directories_import() {
    let temp = tempfile::tempdir().expect("temp dir");
    let data = temp.path().join("data");
    let dir = new_dir(temp.path(), "input");

    let gz_resources: Vec<Value> = (0..5)
        .map(|i| patient(&format!("gz-{i}"), &format!("Gz{i}")))
        .collect();
    gzip(&dir.join("a.ndjson.gz"), &ndjson(&gz_resources));
    let collection_resources: Vec<Value> = (0..3)
        .map(|i| patient(&format!("coll-{i}"), &format!("Coll{i}")))
        .collect();
    let collection = json!({
        "resourceType": "Bundle",
        "type": "collection",
        "entry": collection_resources
            .iter()
            .map(|r| json!({"fullUrl": format!("http://example.org/fhir/{}", type_and_id(r)), "resource": r}))
            .collect::<Vec<_>>()
    });
    std::fs::write(dir.join("b.json"), collection.to_string()).unwrap();
    let single = patient("single-1", "Single");
    std::fs::write(dir.join("c.json"), single.to_string()).unwrap();
    let gz_collection_resources: Vec<Value> = (0..2)
        .map(|i| patient(&format!("gzcoll-{i}"), &format!("GzColl{i}")))
        .collect();
    gzip(
        &dir.join("d.json.gz"),
        &json!({
            "resourceType": "Bundle",
            "type": "collection",
            "entry": gz_collection_resources.iter().map(|r| json!({"resource": r})).collect::<Vec<_>>()
        })
        .to_string(),
    );
    // Not a .json/.ndjson(.gz) file: the directory import leaves it alone.
    std::fs::write(dir.join("notes.txt"), "not FHIR at all").unwrap();

    let output = import(&data, &[&dir]);
    assert_success(&output);
    assert_rejections(&output, &[]);
    assert_eq!(summary(&output), (11, 4, 0, 0));

    // A gzipped NDJSON file named on its own works too.
    let more = temp.path().join("more.ndjson.gz");
    let more_resources = vec![patient("more-1", "More")];
    gzip(&more, &ndjson(&more_resources));
    let output = import(&data, &[&more]);
    assert_success(&output);
    assert_eq!(summary(&output), (1, 1, 0, 0));

    let fhir = Fhir::on(&data, &[]);
    for resource in gz_resources
        .iter()
        .chain(&collection_resources)
        .chain([&single])
        .chain(&gz_collection_resources)
        .chain(&more_resources)
    {
        assert_stored_as_sent(&fhir, resource);
    }
    assert_eq!(fhir.system_history().len(), 12);
}

#[test]
fn batch_and_transaction_bundle_files_are_processed_like_post_fhir() {
    let temp = tempfile::tempdir().expect("temp dir");
    let data = temp.path().join("data");

    // A small transaction whose entries reference each other by urn:uuid (the Observation
    // before the Patient it names).
    let patient_urn = "urn:uuid:8b1f0c4e-2a3d-4e5f-9a6b-7c8d9e0f1a2b";
    let transaction = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:8b1f0c4e-2a3d-4e5f-9a6b-7c8d9e0f1a2c",
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "height"},
                    "subject": {"reference": patient_urn},
                    "valueQuantity": {"value": 170, "unit": "cm"}
                },
                "request": {"method": "POST", "url": "Observation"}
            },
            {
                "fullUrl": patient_urn,
                "resource": {"resourceType": "Patient", "name": [{"family": "Transacted"}]},
                "request": {"method": "POST", "url": "Patient"}
            },
            {
                "fullUrl": "http://example.org/fhir/Patient/put-1",
                "resource": patient("put-1", "Put"),
                "request": {"method": "PUT", "url": "Patient/put-1"}
            }
        ]
    });
    let transaction_file = temp.path().join("transaction.json");
    std::fs::write(&transaction_file, transaction.to_string()).unwrap();
    let output = import(&data, &[&transaction_file]);
    assert_success(&output);
    assert_eq!(summary(&output), (3, 1, 0, 0));

    // A batch with a bad entry: the others are stored, the bad one is named.
    let mut bad = patient("batch-bad", "Bad");
    bad["active"] = json!("yes");
    let batch = json!({
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": patient("batch-1", "B1"), "request": {"method": "PUT", "url": "Patient/batch-1"}},
            {"resource": bad, "request": {"method": "PUT", "url": "Patient/batch-bad"}},
            {"resource": patient("batch-3", "B3"), "request": {"method": "PUT", "url": "Patient/batch-3"}}
        ]
    });
    let batch_file = temp.path().join("batch.json");
    std::fs::write(&batch_file, batch.to_string()).unwrap();
    let batch_output = import(&data, &[&batch_file]);
    let output = &batch_output;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(output));
    assert_eq!(summary(output), (2, 1, 1, 0));

    // A transaction with a bad entry stores nothing.
    let failing = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": patient("tx-1", "T1"), "request": {"method": "PUT", "url": "Patient/tx-1"}},
            {"resource": {"resourceType": "Patient", "id": "tx-2", "nickname": "x"}, "request": {"method": "PUT", "url": "Patient/tx-2"}}
        ]
    });
    let failing_file = temp.path().join("failing-transaction.json");
    std::fs::write(&failing_file, failing.to_string()).unwrap();
    let failing_output = import(&data, &[&failing_file]);
    let output = &failing_output;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(output));
    let (stored, files, rejected_resources, rejected_files) = summary(output);
    assert_eq!((stored, files), (0, 1));
    assert!(rejected_resources + rejected_files >= 1);

    let fhir = Fhir::on(&data, &[]);
    let history = fhir.system_history();
    assert_eq!(history.len(), 5, "3 from the transaction, 2 from the batch");
    let stored: HashMap<String, Value> = history
        .iter()
        .map(|e| (type_and_id(&e["resource"]), e["resource"].clone()))
        .collect();
    let observation = stored
        .values()
        .find(|r| r["resourceType"] == "Observation")
        .expect("the Observation");
    let subject = observation["subject"]["reference"].as_str().unwrap();
    assert!(subject.starts_with("Patient/"), "{subject}");
    assert_eq!(
        read(&fhir, subject)["name"][0]["family"],
        "Transacted",
        "the urn:uuid reference names the created Patient"
    );
    assert_stored_as_sent(&fhir, &patient("put-1", "Put"));
    assert_stored_as_sent(&fhir, &patient("batch-1", "B1"));
    assert_stored_as_sent(&fhir, &patient("batch-3", "B3"));
    for absent in ["Patient/batch-bad", "Patient/tx-1", "Patient/tx-2"] {
        assert_eq!(fhir.get(absent).status, 404, "{absent}");
    }
    // Last, so that the stored data is checked even when this fails.
    assert_rejections(
        &batch_output,
        &[format!("rejected {} entry 1: ", batch_file.display())],
    );
    let rejected = rejections(&failing_output);
    assert!(
        !rejected.is_empty()
            && rejected
                .iter()
                .all(|r| r.starts_with(&format!("rejected {}", failing_file.display()))),
        "stderr should name the rejected transaction file: {:?}",
        stderr(&failing_output)
    );
}

#[test]
fn synthea_transaction_files_import_with_references_rewritten() {
    let temp = tempfile::tempdir().expect("temp dir");
    let data = temp.path().join("data");
    let dir = new_dir(temp.path(), "synthea");
    // Synthea's Organizations, Locations and Practitioners as a transaction of `PUT Type/id`,
    // and the patient bundle with its conditional references naming them as `Type/id`.
    let synthea::Providers {
        transaction: providers,
        targets,
    } = synthea::referenced_providers();
    let mut patient = synthea::bundle("057aa36e");
    synthea::resolve(&mut patient, &targets);
    let provider_count = providers["entry"].as_array().unwrap().len();
    let patient_count = patient["entry"].as_array().unwrap().len();
    std::fs::write(dir.join("0-providers.json"), providers.to_string()).unwrap();
    gzip(&dir.join("1-patient.json.gz"), &patient.to_string());

    let output = import(&data, &[&dir]);
    assert_success(&output);
    assert_eq!(
        summary(&output),
        ((provider_count + patient_count) as u64, 2, 0, 0)
    );

    let fhir = Fhir::on(&data, &[]);
    let history = fhir.system_history();
    assert_eq!(history.len(), provider_count + patient_count);
    let stored: HashMap<String, &Value> = history
        .iter()
        .map(|e| (type_and_id(&e["resource"]), &e["resource"]))
        .collect();
    assert_eq!(stored.len(), history.len(), "one version per resource");
    // The patient's resources got new ids; the providers kept theirs.
    let patients: Vec<&String> = stored
        .keys()
        .filter(|k| k.starts_with("Patient/"))
        .collect();
    assert_eq!(patients.len(), 1);
    assert_ne!(
        patients[0].as_str(),
        "Patient/057aa36e-b892-9964-75b9-ffb46b097e34",
        "a POST entry gets a new id"
    );
    for entry in providers["entry"].as_array().unwrap() {
        assert!(stored.contains_key(entry["request"]["url"].as_str().unwrap()));
    }
    let mut checked = 0;
    for (at, resource) in &stored {
        // No reference points at a urn any more, and every one names something stored.
        checked += check_references(resource, at, |reference| {
            assert!(
                stored.contains_key(reference),
                "{at}: reference {reference} names nothing stored"
            );
        });
        if resource["resourceType"] == "Observation" {
            assert_eq!(resource["subject"]["reference"], json!(patients[0]), "{at}");
        }
    }
    assert!(checked > 5000, "{checked} references checked");
    // What the history shows is what a read returns.
    read(&fhir, patients[0]);
}

#[test]
fn import_refuses_a_data_directory_a_server_holds() {
    let temp = tempfile::tempdir().expect("temp dir");
    let data: PathBuf = temp.path().join("data");
    let fhir = Fhir::on(&data, &[]);
    let file = temp.path().join("one.ndjson");
    std::fs::write(&file, ndjson(&[patient("locked-1", "Locked")])).unwrap();

    let output = import(&data, &[&file]);
    assert!(
        !output.status.success(),
        "import ran beside a server; stdout: {}",
        stdout(&output)
    );
    let message = stderr(&output);
    assert!(
        message.to_lowercase().contains("lock"),
        "the message should mention the lock: {message}"
    );
    assert_eq!(fhir.get("Patient/locked-1").status, 404);
    assert!(fhir.system_history().is_empty());
}

/// `fhirlake reindex` rebuilds the index from the store alone (with every core's indexing
/// thread), and a server started afterwards finds exactly what was imported, with nothing to
/// index at start; so does one started after the index directory was removed and rebuilt.
#[test]
fn reindex_rebuilds_what_searches_find() {
    let temp = tempfile::tempdir().expect("temp dir");
    let data = temp.path().join("data");
    let resources: Vec<Value> = (0..40)
        .map(|i| patient(&format!("re-{i}"), &format!("Reindexed{}", i % 4)))
        .collect();
    let file = temp.path().join("patients.ndjson");
    std::fs::write(&file, ndjson(&resources)).unwrap();
    assert_success(&import(&data, &[&file]));
    for round in ["over the imported index", "after the index was removed"] {
        if round.starts_with("after") {
            std::fs::remove_dir_all(data.join("index")).unwrap();
        }
        let printed = common::run_command(&["reindex"], &data);
        assert!(
            printed.contains("indexed 40 resources"),
            "{round}: {printed}"
        );
        let fhir = Fhir::on(&data, &[]);
        for family in 0..4 {
            let found = read(
                &fhir,
                &format!("Patient?family=Reindexed{family}&_count=100"),
            );
            let mut ids: Vec<&str> = found["entry"]
                .as_array()
                .expect("entries")
                .iter()
                .map(|e| e["resource"]["id"].as_str().unwrap())
                .collect();
            ids.sort_unstable();
            let mut expected: Vec<String> = (0..40)
                .filter(|i| i % 4 == family)
                .map(|i| format!("re-{i}"))
                .collect();
            expected.sort_unstable();
            assert_eq!(ids, expected, "{round}: family Reindexed{family}");
        }
    }
}
