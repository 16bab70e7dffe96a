//! The Synthea data of `../shared/data/synthea`, made loadable before search exists.
//!
//! The patient bundles refer to Organizations, Locations and Practitioners by conditional
//! references (`Practitioner?identifier=system|value`), which need search; the two batch
//! bundles (`0-hospitalInformation*`, `0-practitionerInformation*`) create those with
//! `ifNoneExist`, which needs search too. [`load`] resolves both by a plain scan: the shared
//! resources become one transaction of `PUT Type/id` entries ([`providers`]), and each
//! conditional reference in the patient bundles is replaced by the `Type/id` whose identifier
//! matches ([`resolve`]).
#![allow(dead_code)]

use super::fhir::{map_references, type_and_id};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

pub struct Synthea {
    /// A transaction Bundle that PUTs every shared resource (Organizations, Locations,
    /// Practitioners and PractitionerRoles).
    pub shared: Value,
    /// The patient transaction Bundles, conditional references resolved, with their file names.
    pub patients: Vec<(String, Value)>,
}

/// The resources of the shared batch bundles (`0-*`).
pub struct Providers {
    /// A transaction Bundle that PUTs each of them as `Type/id` (their `fullUrl` kept).
    pub transaction: Value,
    /// Each conditional reference `Type?identifier=system|value` that can name one of them ->
    /// its `Type/id`.
    pub targets: HashMap<String, String>,
}

/// Every Synthea file (shared and patient bundles), in name order.
pub fn files() -> Vec<PathBuf> {
    let dir = super::shared_dir().join("data/synthea");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("../shared/data/synthea")
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    files
}

/// The Synthea files that store `copies` copies of every patient: the shared bundles once,
/// each patient bundle `copies` times. A patient bundle is a transaction of POSTs, so each
/// import of it stores its resources under new ids: all Synthea 11 times is a million
/// resources.
#[allow(dead_code)]
pub fn copies(copies: usize) -> Vec<PathBuf> {
    let (shared, patients): (Vec<PathBuf>, Vec<PathBuf>) =
        files().into_iter().partition(|path| is_shared(path));
    let mut files = shared;
    for _ in 0..copies {
        files.extend(patients.iter().cloned());
    }
    files
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// Whether `path` is one of the shared batch bundles rather than a patient bundle.
pub fn is_shared(path: &Path) -> bool {
    file_name(path).starts_with("0-")
}

pub fn read_bundle(path: &Path) -> Value {
    let file = std::fs::File::open(path).expect("open bundle");
    serde_json::from_reader(flate2::read::GzDecoder::new(file)).expect("bundle json")
}

/// The Synthea file whose name starts with `file_prefix`.
pub fn path(file_prefix: &str) -> PathBuf {
    files()
        .into_iter()
        .find(|p| file_name(p).starts_with(file_prefix))
        .unwrap_or_else(|| panic!("no Synthea file {file_prefix}*"))
}

/// The whole Bundle of the Synthea file whose name starts with `file_prefix`, as it is.
pub fn bundle(file_prefix: &str) -> Value {
    read_bundle(&path(file_prefix))
}

/// Every resource of one Synthea bundle, as JSON values.
pub fn resources(file_prefix: &str) -> Vec<Value> {
    bundle(file_prefix)["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["resource"].clone())
        .collect()
}

/// The resources of the shared batch bundles whose type `keep` accepts.
pub fn providers(keep: impl Fn(&str) -> bool) -> Providers {
    let mut targets = HashMap::new();
    let mut entries = Vec::new();
    for path in files().into_iter().filter(|p| is_shared(p)) {
        let batch = read_bundle(&path);
        assert_eq!(batch["type"], "batch", "{}", path.display());
        for entry in batch["entry"].as_array().expect("entries") {
            let resource = &entry["resource"];
            let kind = resource["resourceType"].as_str().expect("type");
            if !keep(kind) {
                continue;
            }
            let at = type_and_id(resource);
            for identifier in resource["identifier"].as_array().into_iter().flatten() {
                if let (Some(system), Some(value)) =
                    (identifier["system"].as_str(), identifier["value"].as_str())
                {
                    targets.insert(format!("{kind}?identifier={system}|{value}"), at.clone());
                }
            }
            entries.push(json!({
                "fullUrl": entry["fullUrl"],
                "resource": resource,
                "request": {"method": "PUT", "url": at},
            }));
        }
    }
    let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    Providers {
        transaction,
        targets,
    }
}

/// The Organizations, Locations and Practitioners: the resources that patient bundles name by
/// conditional references.
pub fn referenced_providers() -> Providers {
    providers(|kind| ["Organization", "Location", "Practitioner"].contains(&kind))
}

/// The shared resources and up to `max_patients` patient bundles (all when None), resolved.
pub fn load(max_patients: Option<usize>) -> Synthea {
    let providers = providers(|_| true);
    let patients = files()
        .into_iter()
        .filter(|p| !is_shared(p))
        .take(max_patients.unwrap_or(usize::MAX))
        .map(|path| {
            let mut bundle = read_bundle(&path);
            resolve(&mut bundle, &providers.targets);
            (file_name(&path), bundle)
        })
        .collect();
    Synthea {
        shared: providers.transaction,
        patients,
    }
}

/// Replaces every conditional reference (`Type?criteria`) in `value` by the `Type/id` that
/// `targets` gives for it; asserts that every one is resolved.
pub fn resolve(value: &mut Value, targets: &HashMap<String, String>) {
    let mut unresolved = BTreeSet::new();
    map_references(value, &mut |reference| {
        if !reference.contains('?') {
            return None;
        }
        let target = targets.get(reference).cloned();
        if target.is_none() {
            unresolved.insert(reference.to_string());
        }
        target
    });
    assert!(
        unresolved.is_empty(),
        "conditional references the providers do not resolve: {unresolved:?}"
    );
}

/// How many resources a Bundle carries.
pub fn entry_count(bundle: &Value) -> usize {
    bundle["entry"].as_array().map_or(0, Vec::len)
}

/// Every Synthea resource, once each (by `Type/id`), references as `Type/id`.
pub fn resources_by_id() -> BTreeMap<String, Value> {
    let synthea = load(None);
    let mut resources = BTreeMap::new();
    let mut add = |resource: Value| {
        resources.insert(type_and_id(&resource), resource);
    };
    for entry in synthea.shared["entry"].as_array().unwrap() {
        add(entry["resource"].clone());
    }
    for (_, mut bundle) in synthea.patients {
        let urls: HashMap<String, String> = bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["fullUrl"].as_str().unwrap().to_string(),
                    type_and_id(&e["resource"]),
                )
            })
            .collect();
        map_references(&mut bundle, &mut |reference| urls.get(reference).cloned());
        for entry in bundle["entry"].as_array_mut().unwrap() {
            add(entry["resource"].take());
        }
    }
    resources
}

/// Writes `resources` into `dir` as one NDJSON file per type (`{Type}.ndjson`); returns the
/// files by type, and the resources per type.
pub fn ndjson_by_type<V: std::borrow::Borrow<Value>>(
    dir: &Path,
    resources: impl IntoIterator<Item = V>,
) -> (BTreeMap<String, PathBuf>, BTreeMap<String, u64>) {
    let mut files = BTreeMap::new();
    let mut counts = BTreeMap::new();
    let mut writers: BTreeMap<String, std::io::BufWriter<std::fs::File>> = BTreeMap::new();
    for resource in resources {
        let resource = resource.borrow();
        let resource_type = resource["resourceType"].as_str().unwrap().to_string();
        let writer = writers.entry(resource_type.clone()).or_insert_with(|| {
            let path = dir.join(format!("{resource_type}.ndjson"));
            files.insert(resource_type.clone(), path.clone());
            std::io::BufWriter::new(std::fs::File::create(path).unwrap())
        });
        std::io::Write::write_all(writer, format!("{resource}\n").as_bytes()).unwrap();
        *counts.entry(resource_type).or_default() += 1;
    }
    for (_, mut writer) in writers {
        std::io::Write::flush(&mut writer).unwrap();
    }
    (files, counts)
}
