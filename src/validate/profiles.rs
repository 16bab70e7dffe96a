//! The profiles the server knows: StructureDefinitions (derivation `constraint`, with a
//! snapshot) from a folder or POSTed, turned into [`Definition`]s and found by canonical url.
//!
//! Invariant: a registration replaces the whole [`ProfileSet`] (copy on write), so a
//! validation holds the lock only to clone an `Arc`, sees one consistent set from start to
//! end, and the next validation sees the new profile.

use super::definitions::Definition;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// The profiles known at one moment, by canonical url. Immutable.
#[derive(Clone, Default)]
pub struct ProfileSet {
    /// url -> its versions, the one registered last at the end.
    by_url: HashMap<String, Vec<Arc<Definition>>>,
}

impl ProfileSet {
    /// The profile with canonical `url`, or `url|version` for that version; without a
    /// version, the one registered last.
    pub fn get(&self, canonical: &str) -> Option<&Definition> {
        let (url, version) = match canonical.split_once('|') {
            Some((url, version)) => (url, Some(version)),
            None => (canonical, None),
        };
        let versions = self.by_url.get(url)?;
        match version {
            None => versions.last(),
            Some(version) => versions
                .iter()
                .find(|p| p.version.as_deref() == Some(version)),
        }
        .map(|p| &**p)
    }
}

/// The registry: shared by every worker that validates.
#[derive(Default)]
pub struct Profiles {
    current: RwLock<Arc<ProfileSet>>,
}

/// What [`Profiles::load_dir`] did with a folder.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The canonical urls registered (`url|version` when versioned).
    pub registered: Vec<String>,
    /// The StructureDefinitions (or unreadable files) refused, and why.
    pub refused: Vec<(PathBuf, String)>,
}

impl Profiles {
    /// The profiles known now.
    pub fn current(&self) -> Arc<ProfileSet> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Registers one StructureDefinition (a POSTed or PUT resource, or a file), replacing
    /// any with the same url and version; its canonical url (`url|version` when versioned),
    /// or why it is refused (not a profile, no snapshot, ...).
    pub fn register(&self, structure_definition: &Value) -> Result<String, String> {
        let profile = Arc::new(Definition::from_structure_definition(structure_definition)?);
        let canonical = match &profile.version {
            Some(version) => format!("{}|{version}", profile.url),
            None => profile.url.clone(),
        };
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        let mut next = ProfileSet::clone(&current);
        let versions = next.by_url.entry(profile.url.clone()).or_default();
        versions.retain(|p| p.version != profile.version);
        versions.push(profile);
        *current = Arc::new(next);
        Ok(canonical)
    }

    /// Registers every StructureDefinition among the `*.json` files of `dir` (an unpacked
    /// IG package's `package/` folder, say); other resources and JSON files are passed over.
    /// Err only when the folder cannot be read.
    pub fn load_dir(&self, dir: &Path) -> std::io::Result<Loaded> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|e| e == "json"))
            .collect();
        paths.sort();
        let mut loaded = Loaded::default();
        for path in paths {
            let read = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    serde_json::from_slice::<Value>(&bytes).map_err(|e| e.to_string())
                });
            match read {
                Ok(resource) if resource["resourceType"] != "StructureDefinition" => {}
                Ok(resource) => match self.register(&resource) {
                    Ok(canonical) => loaded.registered.push(canonical),
                    Err(why) => loaded.refused.push((path, why)),
                },
                Err(why) => loaded.refused.push((path, why)),
            }
        }
        Ok(loaded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patient_profile(version: &str) -> Value {
        json!({"resourceType": "StructureDefinition", "url": "http://example.org/p",
            "version": version, "kind": "resource", "derivation": "constraint",
            "type": "Patient", "snapshot": {"element": [
                {"id": "Patient", "path": "Patient", "min": 0, "max": "*",
                    "constraint": [{"key": "bad-1", "severity": "error", "human": "no parse",
                        "expression": "name.where("}]},
                {"id": "Patient.name", "path": "Patient.name", "min": 1, "max": "*",
                    "type": [{"code": "HumanName"}]}]}})
    }

    #[test]
    fn profiles_are_found_by_url_with_or_without_version() {
        let profiles = Profiles::default();
        assert_eq!(
            profiles.register(&patient_profile("1")),
            Ok("http://example.org/p|1".into())
        );
        assert_eq!(
            profiles.register(&patient_profile("2")),
            Ok("http://example.org/p|2".into())
        );
        let known = profiles.current();
        assert_eq!(
            known
                .get("http://example.org/p")
                .unwrap()
                .version
                .as_deref(),
            Some("2")
        );
        assert!(known.get("http://example.org/p|1").is_some());
        assert!(known.get("http://example.org/p|3").is_none());
        // The invariant that does not parse is kept out, and listed.
        let profile = known.get("http://example.org/p|1").unwrap();
        assert_eq!(profile.unparsed, ["bad-1"]);
        assert!(profile.root().constraints.is_empty());
    }

    #[test]
    fn what_is_not_a_profile_with_a_snapshot_is_refused() {
        let profiles = Profiles::default();
        let mut no_snapshot = patient_profile("1");
        no_snapshot.as_object_mut().unwrap().remove("snapshot");
        no_snapshot["differential"] =
            json!({"element": [{"id": "Patient.name", "path": "Patient.name", "min": 1}]});
        let refused = profiles.register(&no_snapshot).unwrap_err();
        assert!(refused.contains("has no snapshot"), "{refused}");
        assert!(refused.contains("not supported"), "{refused}");
        let mut logical = patient_profile("1");
        logical["kind"] = json!("logical");
        assert!(profiles.register(&logical).unwrap_err().contains("logical"));
        let mut r5 = patient_profile("1");
        r5["fhirVersion"] = json!("5.0.0");
        assert!(profiles.register(&r5).unwrap_err().contains("FHIR 5.0.0"));
        let mut specialization = patient_profile("1");
        specialization["derivation"] = json!("specialization");
        assert!(profiles.register(&specialization).is_err());
        assert!(
            profiles
                .register(&json!({"resourceType": "Patient"}))
                .is_err()
        );
        assert!(profiles.current().get("http://example.org/p").is_none());
    }

    #[test]
    fn a_folder_registers_its_structure_definitions_and_passes_over_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, value: &Value| {
            std::fs::write(dir.path().join(name), value.to_string()).unwrap()
        };
        write("StructureDefinition-p.json", &patient_profile("1"));
        write("ValueSet-v.json", &json!({"resourceType": "ValueSet"}));
        write("package.json", &json!({"name": "a.package"}));
        let mut logical = patient_profile("1");
        logical["kind"] = json!("logical");
        write("StructureDefinition-logical.json", &logical);
        std::fs::write(dir.path().join("broken.json"), "{").unwrap();
        let profiles = Profiles::default();
        let loaded = profiles.load_dir(dir.path()).unwrap();
        assert_eq!(loaded.registered, ["http://example.org/p|1"]);
        let refused: Vec<_> = loaded
            .refused
            .iter()
            .map(|(path, _)| path.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(refused, ["StructureDefinition-logical.json", "broken.json"]);
        assert!(profiles.load_dir(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn a_registration_is_seen_by_the_next_lookup_on_any_thread() {
        let profiles = Profiles::default();
        let before = profiles.current();
        std::thread::scope(|scope| {
            scope.spawn(|| profiles.register(&patient_profile("1")).unwrap());
        });
        let seen = std::thread::scope(|scope| {
            scope
                .spawn(|| profiles.current().get("http://example.org/p").is_some())
                .join()
                .unwrap()
        });
        assert!(seen);
        // A set taken before stays as it was.
        assert!(before.get("http://example.org/p").is_none());
    }
}
