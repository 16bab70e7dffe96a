//! Real data for unit tests, from `../shared` beside the repository.

use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};

/// `path` under `../shared`.
pub fn shared(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared")
        .join(path)
}

/// The files of FHIR's test cases (`fhir-test-cases-r4.tgz` in `../shared`) whose path in the
/// archive `keep` accepts, by that path, as text (those that are not UTF-8 are left out).
pub fn test_cases(keep: impl Fn(&str) -> bool) -> Vec<(String, String)> {
    let file = std::fs::File::open(shared("data/fhir-test-cases/fhir-test-cases-r4.tgz"))
        .expect("the FHIR test cases in ../shared");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut files = Vec::new();
    for entry in archive.entries().expect("tar entries") {
        let mut entry = entry.expect("tar entry");
        let name = entry.path().expect("path").to_string_lossy().into_owned();
        if keep(&name) {
            let mut text = String::new();
            if entry.read_to_string(&mut text).is_ok() {
                files.push((name, text));
            }
        }
    }
    files
}

/// The one file of FHIR's test cases whose path in the archive ends with `path`, as text.
pub fn test_case(path: &str) -> String {
    let mut found = test_cases(|name| name.ends_with(path));
    assert_eq!(found.len(), 1, "{path} is not in the FHIR test cases");
    found.remove(0).1
}

/// Every resource of the official R4 examples package.
pub fn examples() -> Vec<Value> {
    let file = std::fs::File::open(shared("data/fhir-r4/hl7.fhir.r4.examples-4.0.1.tgz"))
        .expect("the FHIR examples in ../shared");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut resources = Vec::new();
    for entry in archive.entries().expect("tar entries") {
        let mut entry = entry.expect("tar entry");
        let name = entry.path().expect("path").to_string_lossy().into_owned();
        if !name.ends_with(".json") || name.ends_with("package.json") || name.contains(".index") {
            continue;
        }
        let mut text = String::new();
        entry.read_to_string(&mut text).expect("utf-8 example");
        if let Ok(value) = serde_json::from_str::<Value>(&text)
            && value.get("resourceType").is_some()
        {
            resources.push(value);
        }
    }
    resources
}

/// The official examples (all of them: more than 5,000) for which `errors` finds something,
/// by `Type/id`, with what it found.
pub fn failing_examples(
    errors: impl Fn(&Value) -> Vec<String>,
) -> std::collections::BTreeMap<String, Vec<String>> {
    let all = examples();
    assert!(all.len() > 5000, "{}", all.len());
    let mut failing = std::collections::BTreeMap::new();
    for example in &all {
        let found = errors(example);
        if !found.is_empty() {
            let name = format!(
                "{}/{}",
                example["resourceType"].as_str().unwrap_or(""),
                example["id"].as_str().unwrap_or("")
            );
            failing.insert(name, found);
        }
    }
    failing
}

/// Every resource of every Synthea bundle (`data/synthea/*.json.gz`), in file name order,
/// read a bundle at a time as the iterator is drained (a test that takes a few reads a few).
pub fn synthea() -> impl Iterator<Item = Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(shared("data/synthea"))
        .expect("the Synthea data in ../shared")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.to_string_lossy().ends_with(".json.gz"))
        .collect();
    files.sort();
    files
        .into_iter()
        .flat_map(|path| {
            let file = std::fs::File::open(&path).expect("a Synthea bundle");
            let mut bundle: Value = serde_json::from_reader(flate2::read::GzDecoder::new(file))
                .expect("a Synthea bundle is JSON");
            match bundle["entry"].take() {
                Value::Array(entries) => entries,
                _ => Vec::new(),
            }
        })
        .map(|mut entry| entry["resource"].take())
}
