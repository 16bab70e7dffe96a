//! The profiles the server knows: StructureDefinitions (derivation `constraint`, with a
//! snapshot) from a folder or POSTed, turned into [`Definition`]s and found by canonical url
//! (`|version` optional: without it, the one registered last).
//!
//! They come from `--profiles DIR` and from every StructureDefinition written: registered after
//! its commit, and again from the store at start, so what a client stored is enforced after a
//! restart. A StructureDefinition without a snapshot is refused, and told why; so is a profile
//! with an invariant that does not parse or evaluate on an empty instance within a hundredth
//! of the FHIRPath limits, or with more than 1,000 invariants. A refused one that was written
//! is stored with a warning that it is no usable profile; one refused at start is skipped (an
//! error log line, a `/ready` warning until its url is registered), never a failed start.
//!
//! Invariant: a registration replaces the whole [`ProfileSet`] (copy on write), so a
//! validation holds the lock only to clone an `Arc`, sees one consistent set from start to
//! end, and the next validation sees the new profile.

use super::definitions::{Definition, Refusal};
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
    /// The profiles refused at start-up for their invariants, by canonical url: what they are
    /// (a file, a stored StructureDefinition) and why. A later registration of the url takes
    /// it off the list.
    skipped: RwLock<Vec<Skipped>>,
}

/// A profile refused when the server started ([`Profiles::skip`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub url: String,
    /// Where it came from: `StructureDefinition/{id}`, or a file's path.
    pub source: String,
    pub why: String,
}

/// What [`Profiles::load_dir`] did with a folder.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The canonical urls registered (`url|version` when versioned).
    pub registered: Vec<String>,
    /// The StructureDefinitions (or unreadable files) refused as no profile, and why; those
    /// refused for their invariants are [`Profiles::skipped`].
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
    /// or why it is refused (not a profile, no snapshot, an invariant that cannot be checked,
    /// ...).
    pub fn register(&self, structure_definition: &Value) -> Result<String, Refusal> {
        let profile = Arc::new(Definition::from_structure_definition(structure_definition)?);
        self.skipped
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|skipped| skipped.url != profile.url);
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

    /// Registers a profile the server had before it started (a file of `--profiles`, a
    /// stored StructureDefinition), from `source`. One refused for its invariants (or whose
    /// registration fails in any way) is skipped: [`Profiles::skipped`] lists it until its url
    /// is registered. Never panics, so no profile can stop a start.
    pub fn restore(&self, structure_definition: &Value, source: String) -> Result<String, Refusal> {
        let registered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.register(structure_definition)
        }))
        .unwrap_or_else(|_| Err(Refusal::Invariant("registering it failed".into())));
        if let Err(why @ Refusal::Invariant(_)) = &registered {
            self.skipped
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .push(Skipped {
                    url: structure_definition["url"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    source,
                    why: why.to_string(),
                });
        }
        registered
    }

    /// The profiles refused at start-up and not registered since.
    pub fn skipped(&self) -> Vec<Skipped> {
        self.skipped
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
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
                Ok(resource) => match self.restore(&resource, path.display().to_string()) {
                    Ok(canonical) => loaded.registered.push(canonical),
                    Err(Refusal::Invariant(_)) => {}
                    Err(why) => loaded.refused.push((path, why.to_string())),
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
                    "constraint": [{"key": "p-1", "severity": "error", "human": "a name",
                        "expression": "name.exists()"}]},
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
        let profile = known.get("http://example.org/p|1").unwrap();
        assert_eq!(profile.root().constraints[0].key, "p-1");
    }

    /// [`patient_profile`] with one more invariant, `expression`, on Patient.name.
    fn with_invariant(expression: &str) -> Value {
        let mut sd = patient_profile("1");
        sd["snapshot"]["element"][1]["constraint"] = json!([{"key": "x-1",
            "severity": "error", "human": "x", "expression": expression}]);
        sd
    }

    #[test]
    fn a_profile_whose_invariant_cannot_be_checked_safely_is_refused() {
        let profiles = Profiles::default();
        let nested = |n: usize| format!("{}1{}", "(".repeat(n), ")".repeat(n));
        for (expression, why) in [
            ("name.where(".to_string(), "does not parse"),
            ("'\\é'.exists()".to_string(), "unknown escape"),
            (nested(20_000), "bytes long"),
            (nested(5_000), "nests deeper"),
            ("-".repeat(50_000), "bytes long"),
            (vec!["1"; 5_000].join("+"), "nests deeper"),
            ("1.repeat($this + 1)".to_string(), "within the limits"),
            (
                format!("'a'{}", ".replace('a', 'aaaaaaaaaa')".repeat(8)),
                "within the limits",
            ),
            (
                "''.matches('a{1000}{1000}')".to_string(),
                "within the limits",
            ),
        ] {
            let refused = profiles.register(&with_invariant(&expression)).unwrap_err();
            assert!(
                matches!(&refused, Refusal::Invariant(w) if w.contains("x-1") && w.contains(why)),
                "{}: {refused}",
                &expression[..expression.len().min(40)]
            );
        }
        assert!(profiles.current().get("http://example.org/p").is_none());
        // What the engine cannot evaluate on an empty Patient is no danger: registered (and
        // unchecked where it cannot be evaluated).
        for expression in ["name.frobnicate()", "name.given.single()", "%unknown"] {
            assert!(profiles.register(&with_invariant(expression)).is_ok());
        }
        // More invariants than any real profile has.
        let mut many = patient_profile("1");
        let invariants: Vec<Value> = (0..1_001)
            .map(|n| {
                json!({"key": format!("k-{n}"), "severity": "error", "human": "x",
                "expression": "name.exists()"})
            })
            .collect();
        many["snapshot"]["element"][1]["constraint"] = json!(invariants);
        assert!(matches!(
            profiles.register(&many),
            Err(Refusal::Invariant(why)) if why.contains("at most 1000")
        ));
    }

    #[test]
    fn a_profile_refused_at_start_is_skipped_until_registered_again() {
        let profiles = Profiles::default();
        let bad = with_invariant("1.repeat($this + 1)");
        let refused = profiles.restore(&bad, "StructureDefinition/p".into());
        assert!(matches!(refused, Err(Refusal::Invariant(_))));
        let skipped = profiles.skipped();
        assert_eq!(skipped.len(), 1);
        assert_eq!(
            (skipped[0].url.as_str(), skipped[0].source.as_str()),
            ("http://example.org/p", "StructureDefinition/p")
        );
        assert!(skipped[0].why.contains("x-1"), "{:?}", skipped[0]);
        // What is no profile is not skipped: it never was one.
        let mut logical = patient_profile("1");
        logical["kind"] = json!("logical");
        assert!(profiles.restore(&logical, "x".into()).is_err());
        assert_eq!(profiles.skipped().len(), 1);
        // A fixed profile of the same url clears the warning.
        profiles.register(&patient_profile("1")).unwrap();
        assert_eq!(profiles.skipped(), []);
    }

    #[test]
    fn what_is_not_a_profile_with_a_snapshot_is_refused() {
        let profiles = Profiles::default();
        let mut no_snapshot = patient_profile("1");
        no_snapshot.as_object_mut().unwrap().remove("snapshot");
        no_snapshot["differential"] =
            json!({"element": [{"id": "Patient.name", "path": "Patient.name", "min": 1}]});
        let refused = profiles.register(&no_snapshot).unwrap_err().to_string();
        assert!(refused.contains("has no snapshot"), "{refused}");
        assert!(refused.contains("not supported"), "{refused}");
        let mut logical = patient_profile("1");
        logical["kind"] = json!("logical");
        let refused = profiles.register(&logical).unwrap_err();
        assert!(matches!(refused, Refusal::NotAProfile(w) if w.contains("logical")));
        let mut r5 = patient_profile("1");
        r5["fhirVersion"] = json!("5.0.0");
        let refused = profiles.register(&r5).unwrap_err().to_string();
        assert!(refused.contains("FHIR 5.0.0"));
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
