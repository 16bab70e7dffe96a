//! Which resources of the snapshot an export writes, and what it writes of each: a batch of
//! resources of one type is judged by time (`_since`, `_until`), by population (the patients of
//! a patient or group export), by the owner's view, and by `_typeFilter`, in that order (the
//! cheap judgements first), then cut by `_elements`. The rules are in the module above.

use super::{Level, Request};
use crate::fhir::FhirError;
use crate::fhir::sparse::parse_members;
use crate::fhir::summary::{self, Subset};
use crate::jobs::Stop;
use crate::search::matched::Matched;
use crate::search::registry::Registry;
use crate::search::versions::{Criteria, Versions};
use crate::search::view::{is_named_member, members_of, membership_members};
use crate::search::{Candidate, Engine, IndexSnapshot, View};
use crate::store::snapshot::{At, Changed, Found, Snapshot};
use crate::store::tables::{Op, VersionRecord};
use rayon::prelude::*;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

/// Whose resources an export holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Population {
    /// Everyone's, and no one's (a system export).
    Everyone,
    /// Every Patient and every member of a Patient's compartment.
    AllPatients,
    /// These Patients (ids) and the members of their compartments.
    Patients(HashSet<String>),
}

impl Population {
    /// The population of `request`, with the Group's members as of `snapshot`.
    pub fn of(
        registry: &Registry,
        request: &Request,
        snapshot: &Snapshot,
    ) -> Result<Population, Stop> {
        let named: HashSet<String> = request.patients.iter().cloned().collect();
        Ok(match &request.level {
            Level::System => Population::Everyone,
            Level::Patient if named.is_empty() => Population::AllPatients,
            Level::Patient => Population::Patients(named),
            Level::Group { id } => {
                let changed = snapshot.changed("Group")?;
                let group = match snapshot.get("Group", id, &changed)? {
                    Some(Found {
                        at: At::Live(version),
                        ..
                    }) => serde_json::from_slice::<Value>(&version.body)
                        .map_err(|_| FhirError::internal("a stored Group is not JSON"))?,
                    _ => {
                        return Err(Stop::Failed(FhirError::not_found(format!(
                            "Group/{id} did not exist when the export started"
                        ))));
                    }
                };
                let mut members = members(registry, &group);
                if !named.is_empty() {
                    members.retain(|member| named.contains(member));
                }
                Population::Patients(members)
            }
        })
    }

    /// Whether `candidate` (whose JSON is `resource`) belongs to the population.
    fn holds(&self, registry: &Registry, candidate: &Candidate, resource: &Value) -> bool {
        let is_patient = candidate.resource_type == "Patient";
        match self {
            Population::Everyone => true,
            Population::AllPatients => {
                is_patient
                    || members_of(registry, "Patient", candidate, resource)
                        .next()
                        .is_some()
            }
            Population::Patients(ids) => {
                (is_patient && ids.contains(candidate.id))
                    || members_of(registry, "Patient", candidate, resource).any(|member| {
                        member
                            .strip_prefix("Patient/")
                            .is_some_and(|id| ids.contains(id))
                    })
            }
        }
    }
}

/// The ids of a Group's members that are Patients of this server (`member.entity`), but those
/// marked `inactive`.
pub fn members(registry: &Registry, group: &Value) -> HashSet<String> {
    group["member"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|member| member["inactive"] != Value::Bool(true))
        .filter_map(|member| member["entity"]["reference"].as_str())
        .filter_map(|reference| registry.base.local(reference))
        .filter_map(|local| local.strip_prefix("Patient/"))
        .map(String::from)
        .collect()
}

/// What an export writes of one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line<'a> {
    /// The resource, as one NDJSON line: its stored bytes, or its cut.
    Resource(Cow<'a, [u8]>),
    /// Its deletion (for `deleted`).
    Deleted,
}

/// Judges the resources of a snapshot for one export.
pub struct Selector<'a> {
    engine: &'a Engine,
    request: &'a Request,
    population: Population,
    /// The `_typeFilter` criteria of each type.
    filters: HashMap<String, Vec<Criteria>>,
    /// What each type's criteria match in the index, to judge filtered resources that did not
    /// change after the snapshot by; the index holds at least the snapshot's seq (see the
    /// module above).
    matched: HashMap<String, Matched>,
}

/// A resource of a batch to judge: where it is in the batch, the version judged (the deleted
/// one, for a deletion) and whether that version is current in the index.
struct Judged<'b> {
    at: usize,
    version: &'b VersionRecord,
    indexed: bool,
}

impl<'a> Selector<'a> {
    /// A selector for `request`: `population` of its snapshot, `index` when it has filters.
    pub fn new(
        engine: &'a Engine,
        request: &'a Request,
        population: Population,
        index: Option<IndexSnapshot>,
    ) -> Result<Selector<'a>, Stop> {
        let filters = filters(engine.registry, &request.type_filters)?;
        let mut matched = HashMap::new();
        if let Some(index) = &index {
            for (resource_type, criteria) in &filters {
                matched.insert(resource_type.clone(), engine.matched(index, criteria)?);
            }
        }
        Ok(Selector {
            engine,
            request,
            population,
            filters,
            matched,
        })
    }

    /// Whether any `_typeFilter` applies (the run then needs an index).
    pub fn has_filters(request: &Request) -> bool {
        !request.type_filters.is_empty()
    }

    /// What goes out of each resource of `batch` (resources of `resource_type` at the
    /// snapshot's seq, `changed` those that changed after it): `None` for what does not.
    pub fn lines<'b>(
        &self,
        snapshot: &Snapshot,
        resource_type: &str,
        changed: &Changed,
        batch: &'b [Found],
    ) -> Result<Vec<Option<Line<'b>>>, Stop> {
        let registry = self.engine.registry;
        let (since, until) = (self.request.since, self.request.until);
        let in_time = |time: i64| since.is_none_or(|s| time >= s) && until.is_none_or(|u| time < u);
        // The versions deleted resources had, owned here for the batch.
        let mut deleted: Vec<(usize, VersionRecord)> = Vec::new();
        let mut judged: Vec<Judged> = Vec::new();
        for (at, found) in batch.iter().enumerate() {
            match &found.at {
                At::Live(version) if in_time(version.last_updated) => judged.push(Judged {
                    at,
                    version,
                    indexed: !changed.contains(&found.id),
                }),
                At::Deleted { last_updated } if since.is_some() && in_time(*last_updated) => {
                    let before = match found.vid {
                        1 => None,
                        vid => snapshot.version(resource_type, &found.id, vid - 1)?,
                    };
                    if let Some(before) = before.filter(|v| v.op != Op::Delete) {
                        deleted.push((at, before));
                    }
                }
                _ => {}
            }
        }
        judged.extend(deleted.iter().map(|(at, version)| Judged {
            at: *at,
            version,
            indexed: false,
        }));
        if self.population != Population::Everyone {
            // Parsing and judging each resource is most of a Patient export's time: only the
            // members its compartment membership reads are built, on every core.
            let members = membership_members(registry, "Patient", resource_type);
            let keep = |name: &str| {
                members
                    .as_deref()
                    .is_none_or(|names| is_named_member(names, name))
            };
            let holds: Vec<bool> = judged
                .par_iter()
                .map(|judged| {
                    parse_members(&judged.version.body, &keep).is_ok_and(|resource| {
                        let candidate = candidate(resource_type, batch, judged);
                        self.population.holds(registry, &candidate, &resource)
                    })
                })
                .collect();
            let mut holds = holds.into_iter();
            judged.retain(|_| holds.next().unwrap_or(false));
        }
        if self.request.view != View::All && !judged.is_empty() {
            let candidates: Vec<Candidate> = judged
                .iter()
                .map(|judged| candidate(resource_type, batch, judged))
                .collect();
            let visible = self.engine.visible(&self.request.view, &candidates)?;
            let mut visible = visible.into_iter();
            judged.retain(|_| visible.next().unwrap_or(false));
        }
        if let Some(criteria) = self.filters.get(resource_type) {
            let matched = self.filtered(resource_type, criteria, batch, &judged)?;
            judged.retain(|judged| matched.contains(&judged.at));
        }
        let mut lines: Vec<Option<Line>> = vec![None; batch.len()];
        let elements = self.elements(resource_type);
        for judged in judged {
            lines[judged.at] = Some(match &batch[judged.at].at {
                At::Deleted { .. } => Line::Deleted,
                At::Live(version) => Line::Resource(line(&version.body, elements.as_ref())?),
            });
        }
        Ok(lines)
    }

    /// Which of `judged` (positions in `batch`) the criteria of their type match: by the index
    /// for the versions it holds, in a scratch index for the others.
    fn filtered(
        &self,
        resource_type: &str,
        criteria: &[Criteria],
        batch: &[Found],
        judged: &[Judged],
    ) -> Result<HashSet<usize>, Stop> {
        let registry = self.engine.registry;
        let mut matched = HashSet::new();
        let (indexed, scratch): (Vec<&Judged>, Vec<&Judged>) =
            judged.iter().partition(|judged| judged.indexed);
        if !indexed.is_empty() {
            let index = self
                .matched
                .get(resource_type)
                .ok_or_else(|| FhirError::internal("an export with filters has no index"))?;
            let ids: Vec<&str> = indexed.iter().map(|j| batch[j.at].id.as_str()).collect();
            let found = index.among(&ids)?;
            matched.extend(
                indexed
                    .iter()
                    .filter(|j| found.contains(&batch[j.at].id))
                    .map(|j| j.at),
            );
        }
        if !scratch.is_empty() {
            let versions = Versions::index(
                registry,
                scratch.iter().map(|j| {
                    (
                        j.at as u64,
                        resource_type,
                        batch[j.at].id.as_str(),
                        j.version,
                    )
                }),
            )?;
            for criteria in criteria {
                matched.extend(
                    versions
                        .matching(registry, criteria)?
                        .into_iter()
                        .map(|at| at as usize),
                );
            }
        }
        Ok(matched)
    }

    /// The cut of `_elements` for `resource_type`: the elements named bare or for this type;
    /// `None` (whole resources) when it names none of them.
    fn elements(&self, resource_type: &str) -> Option<Subset> {
        let prefix = format!("{resource_type}.");
        let chosen: Vec<String> = self
            .request
            .elements
            .iter()
            .filter(|element| !element.contains('.') || element.starts_with(&prefix))
            .cloned()
            .collect();
        (!chosen.is_empty()).then_some(Subset::Elements(chosen))
    }
}

/// What `judged` is judged as: a resource of `resource_type` of `batch`, at its version.
fn candidate<'c>(resource_type: &'c str, batch: &'c [Found], judged: &Judged<'c>) -> Candidate<'c> {
    Candidate {
        resource_type,
        id: &batch[judged.at].id,
        last_updated: judged.version.last_updated,
        body: &judged.version.body,
    }
}

/// The criteria of each type's `_typeFilter` queries (checked at kick-off).
fn filters(
    registry: &Registry,
    queries: &[String],
) -> Result<HashMap<String, Vec<Criteria>>, FhirError> {
    let mut filters: HashMap<String, Vec<Criteria>> = HashMap::new();
    for query in queries {
        let criteria = Criteria::parse(registry, query)?;
        filters
            .entry(criteria.resource_type.clone())
            .or_default()
            .push(criteria);
    }
    Ok(filters)
}

/// The NDJSON line of a stored version: its bytes, cut by `elements`; bytes with a line break
/// (never written by fhirlake, which stores compact JSON) are written again compact.
fn line<'b>(body: &'b [u8], elements: Option<&Subset>) -> Result<Cow<'b, [u8]>, FhirError> {
    if let Some(elements) = elements {
        return Ok(Cow::Owned(summary::subset(body, elements)?));
    }
    if !body.contains(&b'\n') {
        return Ok(Cow::Borrowed(body));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| FhirError::internal("a stored version is not JSON"))?;
    Ok(Cow::Owned(
        serde_json::to_vec(&value).expect("JSON serializes"),
    ))
}

/// The `deleted` line of `resource_type/id`: a transaction Bundle with its DELETE.
pub fn deletion(resource_type: &str, id: &str) -> Vec<u8> {
    let bundle = serde_json::json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": "DELETE", "url": format!("{resource_type}/{id}")}}],
    });
    serde_json::to_vec(&bundle).expect("JSON serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_members_of_a_group_are_its_active_patients() {
        let registry = Registry::r4_shared();
        let group = json!({"resourceType": "Group", "member": [
            {"entity": {"reference": "Patient/a"}},
            {"entity": {"reference": "Patient/b"}, "inactive": true},
            {"entity": {"reference": "Practitioner/c"}},
            {"entity": {"reference": "https://elsewhere.example/fhir/Patient/d"}},
            {"entity": {"reference": "Patient/e/_history/2"}},
            {"entity": {"display": "no reference"}},
        ]});
        let mut found: Vec<String> = members(registry, &group).into_iter().collect();
        found.sort();
        assert_eq!(found, ["a", "e"]);
        assert!(members(registry, &json!({"resourceType": "Group"})).is_empty());
    }

    #[test]
    fn lines_are_the_stored_bytes_unless_cut() {
        let body =
            br#"{"resourceType":"Patient","id":"a","name":[{"family":"F"}],"gender":"male"}"#;
        assert!(matches!(line(body, None).unwrap(), Cow::Borrowed(_)));
        let cut = line(body, Some(&Subset::Elements(vec!["gender".into()]))).unwrap();
        let cut: Value = serde_json::from_slice(&cut).unwrap();
        assert_eq!(cut["gender"], "male");
        assert!(cut.get("name").is_none());
        assert_eq!(cut["meta"]["tag"][0]["code"], "SUBSETTED");
        let pretty = b"{\n  \"resourceType\": \"Patient\"\n}";
        assert_eq!(
            &*line(pretty, None).unwrap(),
            br#"{"resourceType":"Patient"}"#
        );
        let deleted: Value = serde_json::from_slice(&deletion("Patient", "a")).unwrap();
        assert_eq!(deleted["entry"][0]["request"]["url"], "Patient/a");
    }
}
