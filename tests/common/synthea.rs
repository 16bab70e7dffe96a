//! The Synthea data of `../shared/data/synthea`, made loadable before search exists.
//!
//! The patient bundles refer to Organizations, Locations and Practitioners by conditional
//! references (`Practitioner?identifier=system|value`), which need search; the two batch
//! bundles (`0-hospitalInformation*`, `0-practitionerInformation*`) create those with
//! `ifNoneExist`, which needs search too. [`load`] resolves both by a plain scan: the shared
//! resources become one transaction of `PUT Type/id` entries, and each conditional reference in
//! the patient bundles is replaced by the `Type/id` whose identifier matches.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;

pub struct Synthea {
    /// A transaction Bundle that PUTs every Organization, Location and Practitioner.
    pub shared: Value,
    /// The patient transaction Bundles, conditional references resolved, with their file names.
    pub patients: Vec<(String, Value)>,
}

fn files() -> Vec<PathBuf> {
    let dir = super::shared_dir().join("data/synthea");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("../shared/data/synthea")
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    files
}

pub fn read_bundle(path: &std::path::Path) -> Value {
    let file = std::fs::File::open(path).expect("open bundle");
    serde_json::from_reader(flate2::read::GzDecoder::new(file)).expect("bundle json")
}

/// The shared resources and up to `max_patients` patient bundles (all when None), resolved.
pub fn load(max_patients: Option<usize>) -> Synthea {
    let (shared_files, patient_files): (Vec<PathBuf>, Vec<PathBuf>) = files()
        .into_iter()
        .partition(|p| p.file_name().unwrap().to_string_lossy().starts_with("0-"));
    let mut targets = HashMap::new();
    let mut entries = Vec::new();
    for path in shared_files {
        for entry in read_bundle(&path)["entry"].as_array().expect("entries") {
            let resource = &entry["resource"];
            let kind = resource["resourceType"].as_str().unwrap();
            let id = resource["id"].as_str().unwrap();
            for identifier in resource["identifier"].as_array().into_iter().flatten() {
                let key = format!(
                    "{kind}?identifier={}|{}",
                    identifier["system"].as_str().unwrap_or(""),
                    identifier["value"].as_str().unwrap_or("")
                );
                targets.insert(key, format!("{kind}/{id}"));
            }
            entries.push(json!({
                "resource": resource,
                "request": {"method": "PUT", "url": format!("{kind}/{id}")},
            }));
        }
    }
    let shared = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    let patients = patient_files
        .into_iter()
        .take(max_patients.unwrap_or(usize::MAX))
        .map(|path| {
            let mut bundle = read_bundle(&path);
            resolve(&mut bundle, &targets);
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, bundle)
        })
        .collect();
    Synthea { shared, patients }
}

fn resolve(value: &mut Value, targets: &HashMap<String, String>) {
    match value {
        Value::Object(object) => {
            for (key, member) in object.iter_mut() {
                match member {
                    Value::String(reference) if key == "reference" && reference.contains('?') => {
                        *reference = targets
                            .get(reference.as_str())
                            .unwrap_or_else(|| panic!("unresolved {reference}"))
                            .clone();
                    }
                    member => resolve(member, targets),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| resolve(item, targets)),
        _ => {}
    }
}

/// How many resources a Bundle carries.
pub fn entry_count(bundle: &Value) -> usize {
    bundle["entry"].as_array().map_or(0, Vec::len)
}
