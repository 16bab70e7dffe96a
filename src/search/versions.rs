//! Whether single versions of resources match search criteria (`Observation?code=x`), as the
//! change stream and Subscriptions ask: each version is matched as it was written, never as its
//! resource is now, so a consumer that replays the log gets the same answer as one that
//! followed it live.
//!
//! The versions of a batch go into a scratch index (`index::scratch`, the search index's own
//! schema, built by the indexer's own extraction, in RAM with a single-segment writer: no
//! threads, no merges), and each criteria is planned and run on it by the search planner: the
//! same parameters, modifiers and prefixes as a search (strict: an unknown parameter is a
//! 400), with one answer per batch, however many consumers ask. Chains and `_has` are refused:
//! they ask about other resources, which a single version does not hold.
//!
//! The alternative, searching the live index for `_id=X&criteria` once it caught up, answers
//! for the current version: a replay, or a consumer that fell behind an update, would get
//! other events.

use super::index::{Change, Fields, keys_of, scratch};
use super::indexer::document;
use super::limits::Limits;
use super::query::{CONTROL, Planner, Target};
use super::registry::Registry;
use super::view::View;
use crate::fhir::resource::check_type;
use crate::fhir::{FhirError, IssueCode};
use crate::store::tables::VersionRecord;
use std::collections::HashSet;
use std::sync::OnceLock;
use tantivy::Searcher;
use tantivy::collector::DocSetCollector;

/// Search criteria of one resource type, checked to plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Criteria {
    pub resource_type: String,
    params: Vec<(String, String)>,
}

impl Criteria {
    /// Parses `Type?name=value&...` (or `Type` alone: every version of the type). Every
    /// parameter must be a search parameter of the type that plans (strict handling); result
    /// parameters (`_sort`, `_count`, ...), chains and `_has` are refused.
    pub fn parse(registry: &Registry, text: &str) -> Result<Criteria, FhirError> {
        let invalid = |reason: String| {
            FhirError::bad_request(IssueCode::Invalid, format!("criteria '{text}': {reason}"))
        };
        let (resource_type, query) = text.split_once('?').unwrap_or((text, ""));
        check_type(resource_type).map_err(|e| invalid(e.diagnostics))?;
        let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        for (name, _) in &params {
            let code = name.split(':').next().unwrap_or(name);
            if CONTROL.contains(&code) {
                return Err(invalid(format!("{name} is not a filter")));
            }
            if name.starts_with("_has:") || name.contains('.') {
                return Err(invalid(format!(
                    "{name}: chains and _has are not supported here, a change is matched on \
                     its own version"
                )));
            }
        }
        let criteria = Criteria {
            resource_type: resource_type.to_string(),
            params,
        };
        // Planning on an empty index checks every parameter.
        criteria.matching(registry, empty())?;
        Ok(criteria)
    }

    /// Its parameters (`name`, `value`), as parsed.
    pub(super) fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// The keys of the documents of `versions` that match.
    fn matching(&self, registry: &Registry, versions: &Versions) -> Result<Vec<String>, FhirError> {
        let planner = Planner {
            registry,
            fields: versions.fields,
            searcher: &versions.searcher,
            view: &View::All,
            limits: &Limits::default(),
        };
        let plan = planner.plan(&Target::of_type(&self.resource_type), &self.params, true)?;
        let failed =
            |e: tantivy::TantivyError| FhirError::internal(format!("matching failed: {e}"));
        let found: Vec<_> = versions
            .searcher
            .search(&plan.query, &DocSetCollector)
            .map_err(failed)?
            .into_iter()
            .collect();
        keys_of(&versions.searcher, &found).map_err(failed)
    }
}

/// Versions indexed together to be matched against criteria, each under a number of the
/// caller's (a change's seq).
pub struct Versions {
    fields: Fields,
    searcher: Searcher,
}

impl Versions {
    /// Indexes `versions`: `(number, type, id, version)`. A version whose body is not JSON
    /// matches nothing.
    pub fn index<'a>(
        registry: &Registry,
        versions: impl IntoIterator<Item = (u64, &'a str, &'a str, &'a VersionRecord)>,
    ) -> Result<Versions, FhirError> {
        let failed =
            |e: tantivy::TantivyError| FhirError::internal(format!("matching failed: {e}"));
        let mut documents = Vec::new();
        for (number, resource_type, id, version) in versions {
            let body = &version.body;
            if let Some(mut change) = document(
                registry,
                resource_type,
                id,
                version.last_updated,
                body,
                None,
            ) {
                // Keyed by the caller's number: one resource may have several versions here.
                if let Change::Upsert { key, .. } = &mut change {
                    *key = number.to_string();
                }
                documents.push(change);
            }
        }
        let (searcher, fields) = scratch(documents).map_err(failed)?;
        Ok(Versions { fields, searcher })
    }

    /// The numbers of the versions that match `criteria`.
    pub fn matching(
        &self,
        registry: &Registry,
        criteria: &Criteria,
    ) -> Result<HashSet<u64>, FhirError> {
        Ok(criteria
            .matching(registry, self)?
            .into_iter()
            .filter_map(|key| key.parse().ok())
            .collect())
    }
}

/// An index without versions, to check criteria on.
fn empty() -> &'static Versions {
    static EMPTY: OnceLock<Versions> = OnceLock::new();
    EMPTY.get_or_init(|| {
        Versions::index(Registry::r4_shared(), std::iter::empty()).expect("an empty index")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tables::{Method, Op};
    use serde_json::json;

    fn version(resource: serde_json::Value) -> VersionRecord {
        VersionRecord {
            op: Op::Create,
            method: Method::Put,
            last_updated: 0,
            body: serde_json::to_vec(&resource).unwrap(),
        }
    }

    fn observation(id: &str, code: &str, value: f64) -> VersionRecord {
        version(
            json!({"resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "valueQuantity": {"value": value, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}}),
        )
    }

    #[test]
    fn each_version_is_matched_as_written() {
        let registry = Registry::r4_shared();
        // Two versions of one resource: only the first has the code.
        let v1 = observation("o1", "1234-5", 5.0);
        let v2 = observation("o1", "9999-9", 5.0);
        let other = observation("o2", "1234-5", 50.0);
        let patient = version(json!({"resourceType": "Patient", "id": "o1"}));
        let versions = Versions::index(
            registry,
            [
                (1, "Observation", "o1", &v1),
                (2, "Observation", "o1", &v2),
                (3, "Observation", "o2", &other),
                (4, "Patient", "o1", &patient),
            ],
        )
        .unwrap();
        let matching = |text: &str| {
            let criteria = Criteria::parse(registry, text).unwrap();
            let mut found: Vec<u64> = versions
                .matching(registry, &criteria)
                .unwrap()
                .into_iter()
                .collect();
            found.sort();
            found
        };
        assert_eq!(
            matching("Observation?code=http://loinc.org|1234-5"),
            vec![1, 3]
        );
        assert_eq!(
            matching("Observation?code=1234-5&value-quantity=gt10"),
            vec![3]
        );
        assert_eq!(matching("Observation?_id=o1"), vec![1, 2]);
        assert_eq!(matching("Observation"), vec![1, 2, 3]);
        assert_eq!(matching("Patient?_id=o1"), vec![4]);
    }

    #[test]
    fn criteria_that_cannot_be_matched_are_refused() {
        let registry = Registry::r4_shared();
        for text in [
            "Nope?code=1",
            "Observation?nope=1",
            "Observation?_sort=date",
            "Observation?subject.name=x",
            "Patient?_has:Observation:patient:code=1",
            "Observation?date=notadate",
        ] {
            let error = Criteria::parse(registry, text).unwrap_err();
            assert_eq!(error.status, 400, "{text}: {error:?}");
        }
    }
}
