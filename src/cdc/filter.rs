//! Which changes a consumer wants: resource types and FHIR search criteria.
//!
//! Criteria are matched on each change's own version (see `search::versions`); a delete is
//! matched on the version it deleted, so a consumer of `Observation?code=x` hears of the
//! deletion of an Observation it was told about.

use super::event::Event;
use crate::fhir::resource::check_type;
use crate::fhir::{FhirError, IssueCode};
use crate::search::registry::Registry;
use crate::search::versions::{Criteria, Versions};
use crate::store::Store;
use crate::store::tables::{Op, VersionRecord};
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

/// What a consumer asked for. The empty filter passes every change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// The types passed; empty for all.
    types: Vec<String>,
    criteria: Option<Criteria>,
}

impl Filter {
    /// A filter of `types` (`_type`, comma-separated, may repeat) and `criteria`
    /// (`Type?params`); with both, the criteria's type must be one of the types.
    pub fn parse(
        registry: &Registry,
        types: &[&str],
        criteria: Option<&str>,
    ) -> Result<Filter, FhirError> {
        let mut names = Vec::new();
        for name in types
            .iter()
            .flat_map(|t| t.split(','))
            .filter(|n| !n.is_empty())
        {
            check_type(name).map_err(|e| {
                FhirError::bad_request(IssueCode::Invalid, format!("_type: {}", e.diagnostics))
            })?;
            if !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
        let criteria = criteria
            .map(|text| Criteria::parse(registry, text))
            .transpose()?;
        if let Some(criteria) = &criteria {
            if !names.is_empty() && !names.contains(&criteria.resource_type) {
                return Err(FhirError::bad_request(
                    IssueCode::Invalid,
                    format!(
                        "the criteria are of {} but _type asks for {} only",
                        criteria.resource_type,
                        names.join(",")
                    ),
                ));
            }
            names = vec![criteria.resource_type.clone()];
        }
        Ok(Filter {
            types: names,
            criteria,
        })
    }

    /// The types to read from the log (empty: all).
    pub fn types(&self) -> &[String] {
        &self.types
    }

    /// Whether the filter passes `event`, whose batch is `batch`.
    fn passes(
        &self,
        batch: &Batch,
        store: &Store,
        registry: &Registry,
        event: &Event,
    ) -> Result<bool, FhirError> {
        if !self.types.is_empty() && !self.types.contains(&event.change.resource_type) {
            return Ok(false);
        }
        let Some(criteria) = &self.criteria else {
            return Ok(true);
        };
        if event.change.op == Op::Erased {
            // Nothing is left to judge; whoever may have received the version must hear.
            return Ok(true);
        }
        Ok(batch
            .matching(store, registry, criteria)?
            .contains(&event.change.seq))
    }

    /// The events of `batch` that pass, in order.
    pub fn select(
        &self,
        batch: &Batch,
        store: &Store,
        registry: &Registry,
    ) -> Result<Vec<Arc<Event>>, FhirError> {
        let mut out = Vec::new();
        for event in batch.events.iter() {
            if self.passes(batch, store, registry, event)? {
                out.push(event.clone());
            }
        }
        Ok(out)
    }
}

/// Events read together, and (made on first need, then shared by every filter) their versions
/// indexed for criteria.
pub struct Batch {
    pub events: Vec<Arc<Event>>,
    versions: OnceLock<Result<Versions, FhirError>>,
}

impl Batch {
    pub fn new(events: Vec<Arc<Event>>) -> Batch {
        Batch {
            events,
            versions: OnceLock::new(),
        }
    }

    /// The seqs of the events that match `criteria`.
    fn matching(
        &self,
        store: &Store,
        registry: &Registry,
        criteria: &Criteria,
    ) -> Result<HashSet<u64>, FhirError> {
        let versions = self.versions.get_or_init(|| self.index(store, registry));
        versions
            .as_ref()
            .map_err(Clone::clone)?
            .matching(registry, criteria)
    }

    /// Indexes every event's version; a delete's is the version it deleted.
    fn index(&self, store: &Store, registry: &Registry) -> Result<Versions, FhirError> {
        let mut deleted: Vec<Option<VersionRecord>> = Vec::with_capacity(self.events.len());
        for event in &self.events {
            let change = &event.change;
            deleted.push(match change.op {
                Op::Delete => store.vread(&change.resource_type, &change.id, change.vid - 1)?,
                _ => None,
            });
        }
        let versions = self
            .events
            .iter()
            .zip(&deleted)
            .filter_map(|(event, deleted)| {
                let change = &event.change;
                let version = match change.op {
                    Op::Delete => deleted.as_ref()?,
                    Op::Erased => return None,
                    _ => &event.version,
                };
                Some((
                    change.seq,
                    change.resource_type.as_str(),
                    change.id.as_str(),
                    version,
                ))
            });
        Versions::index(registry, versions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::registry::Registry;

    #[test]
    fn types_and_criteria_must_agree() {
        let registry = Registry::r4_shared();
        let filter = Filter::parse(registry, &["Patient,Observation", "Patient"], None).unwrap();
        assert_eq!(filter.types(), ["Patient", "Observation"]);
        let filter = Filter::parse(registry, &[], Some("Observation?code=1")).unwrap();
        assert_eq!(filter.types(), ["Observation"]);
        let error = Filter::parse(registry, &["Patient"], Some("Observation?code=1")).unwrap_err();
        assert_eq!(error.status, 400);
        assert_eq!(
            Filter::parse(registry, &["Nope"], None).unwrap_err().status,
            400
        );
    }
}
