//! Views: which resources a search may find at all, whatever it asks for; and the check of
//! single resources against the same rule.
//!
//! A [`View`] is a union of [`Part`]s. A part is the resources of one type (or of every type),
//! maybe only the members of one compartment, maybe only those matching some search
//! parameters. The authorization layer makes a view of a token's scopes.
//!
//! Invariants:
//! - The planner ANDs the view into every search it plans, the nested searches of chains and
//!   `_has` included: a resource outside the view is never found, and never decides which
//!   other resources match. A search runs within the view of every type, not only of the
//!   types it asks for, since its chains and `_has` search other types: a patient's token
//!   cannot learn which practitioners treated another patient through
//!   `Practitioner?_has:Observation:performer:subject=...`. A part the planner cannot apply
//!   (an unknown parameter) fails the search with 403 rather than being dropped.
//! - A resource read by id (a read, an include, a history entry) is judged by
//!   [`super::Engine::visible`], which indexes it in a scratch in-memory index (only the
//!   parameters the view looks at, [`View::wanted`]; a page of includes or history is one
//!   index) and runs the view's own query there: it is visible exactly when a search would
//!   find it. A chain inside a scope's query finds nothing in such an index, so the resource is
//!   hidden (fails closed). A view without search parameters (types and compartments only: a
//!   `patient/` scope) is judged without an index, by [`View::judge_by_membership`], which
//!   reads the same membership references the compartment query matches, with the same rules
//!   (a unit test holds both judgements equal on Synthea data): 4.4 µs a resource instead of
//!   the scratch index's 1.7 ms (BENCHMARKS.md, Authorization).
//! - A write's before and after are judged stricter, by [`View::judge_owned`]: a part with a
//!   compartment holds a resource only when it is a member of no other compartment of that
//!   type (a patient's token writes what belongs to its patient alone).

use super::extract::{IndexValue, extract};
use super::query::{Planner, Target};
use super::registry::Registry;
use super::{compartment, fulltext};
use crate::fhir::FhirError;
use crate::fhir::reference;
use std::collections::BTreeSet;
use tantivy::query::{BooleanQuery, EmptyQuery, Query};

/// Which resources a search may find. It serializes (a bulk export keeps the view of the
/// token that started it, to run it later without the token).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum View {
    /// Every resource.
    #[default]
    All,
    /// Only those of one of these parts: none when there are none.
    Only(Vec<Part>),
}

/// One set of resources a view holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Part {
    /// The type; `None` for every type.
    pub resource_type: Option<String>,
    /// Only the members of this compartment, `(compartment type, id)`.
    pub compartment: Option<(String, String)>,
    /// Only those these search parameters match (ANDed, as in a search).
    pub params: Vec<(String, String)>,
}

/// What a scratch index of one type needs for a view's query: the parameters it looks at
/// and whether the full text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    pub codes: BTreeSet<String>,
    pub text: bool,
}

impl View {
    /// Whether it holds every resource of `resource_type`: it is [`View::All`], or one of its
    /// parts takes that type (or every type) with neither a compartment nor a query.
    pub fn holds_all(&self, resource_type: &str) -> bool {
        match self {
            View::All => true,
            View::Only(parts) => parts.iter().any(|part| {
                part.resource_type
                    .as_deref()
                    .is_none_or(|t| t == resource_type)
                    && part.compartment.is_none()
                    && part.params.is_empty()
            }),
        }
    }
}

impl View {
    /// What judging resources of `resource_type` under this view looks at: the membership
    /// parameters of the parts' compartments and the parameters of the parts' queries (the
    /// first parameter of a chain; a modifier is not part of the code).
    pub fn wanted(&self, resource_type: &str) -> Wanted {
        let mut wanted = Wanted::default();
        let View::Only(parts) = self else {
            return wanted;
        };
        for part in parts {
            if let Some((compartment, _)) = &part.compartment {
                wanted.codes.extend(
                    compartment::params(compartment, resource_type)
                        .iter()
                        .cloned(),
                );
            }
            for (name, _) in &part.params {
                let code = name.split([':', '.']).next().unwrap_or(name);
                wanted.text |= fulltext::Source::of(code).is_some();
                wanted.codes.insert(code.to_string());
            }
        }
        wanted
    }
}

impl View {
    /// Judges `candidates` without a scratch index when no part of the view has search
    /// parameters: a candidate is visible when a part takes its type and, for a part with a
    /// compartment, it is the focal resource or one of its membership parameters refers to
    /// the focal resource (`Patient/a`, or a URL or versioned reference whose local part is
    /// that), which is what the compartment query matches in the index. A body that is not
    /// JSON is not visible, as it could not be indexed. None when a part has parameters.
    pub(super) fn judge_by_membership(
        &self,
        registry: &Registry,
        candidates: &[Candidate],
    ) -> Option<Vec<bool>> {
        let View::Only(parts) = self else {
            return Some(vec![true; candidates.len()]);
        };
        if parts.iter().any(|part| !part.params.is_empty()) {
            return None;
        }
        let judged = candidates.iter().map(|candidate| {
            let Ok(resource) = serde_json::from_slice::<serde_json::Value>(candidate.body) else {
                return false;
            };
            parts
                .iter()
                .any(|part| part.holds(registry, candidate, &resource))
        });
        Some(judged.collect())
    }
}

impl View {
    /// Judges `candidates` as a confined write must keep to them (see
    /// [`super::Engine::owned`]): a candidate is owned when a part holds it alone
    /// ([`Part::holds_alone`]) and, for a part with parameters, that part's query matches it,
    /// as `matches` judges it (a view of the part without its compartment). A body that is not
    /// JSON is owned by no part.
    pub(super) fn judge_owned(
        &self,
        registry: &Registry,
        candidates: &[Candidate],
        matches: impl Fn(&View, &[Candidate]) -> Result<Vec<bool>, FhirError>,
    ) -> Result<Vec<bool>, FhirError> {
        let View::Only(parts) = self else {
            return Ok(vec![true; candidates.len()]);
        };
        let resources: Vec<Option<serde_json::Value>> = candidates
            .iter()
            .map(|c| serde_json::from_slice(c.body).ok())
            .collect();
        let mut owned = vec![false; candidates.len()];
        for part in parts {
            let mut held: Vec<bool> = candidates
                .iter()
                .zip(&resources)
                .map(|(c, r)| r.as_ref().is_some_and(|r| part.holds_alone(registry, c, r)))
                .collect();
            if !part.params.is_empty() && held.contains(&true) {
                let query = View::Only(vec![Part {
                    compartment: None,
                    ..part.clone()
                }]);
                for (held, matched) in held.iter_mut().zip(matches(&query, candidates)?) {
                    *held &= matched;
                }
            }
            for (owned, held) in owned.iter_mut().zip(held) {
                *owned |= held;
            }
        }
        Ok(owned)
    }
}

impl Part {
    /// Whether this part (without parameters) holds `candidate`, whose JSON is `resource`:
    /// its type, and for a part with a compartment, the focal resource itself or a member.
    fn holds(
        &self,
        registry: &Registry,
        candidate: &Candidate,
        resource: &serde_json::Value,
    ) -> bool {
        if !self.takes(candidate) {
            return false;
        }
        let Some((compartment, id)) = &self.compartment else {
            return true;
        };
        let focal = format!("{compartment}/{id}");
        candidate.key_is(compartment, id)
            || members_of(registry, compartment, candidate, resource).any(|m| m == focal)
    }

    /// Whether this part (its parameters aside) holds `candidate` alone: its type, and for a
    /// part with a compartment, the focal resource or a member, and a member of no other
    /// compartment of that type (what a confined write must keep to, see
    /// [`super::Engine::owned`]).
    fn holds_alone(
        &self,
        registry: &Registry,
        candidate: &Candidate,
        resource: &serde_json::Value,
    ) -> bool {
        if !self.takes(candidate) {
            return false;
        }
        let Some((compartment, id)) = &self.compartment else {
            return true;
        };
        let focal = format!("{compartment}/{id}");
        let mut members = members_of(registry, compartment, candidate, resource).peekable();
        let any = members.peek().is_some();
        (any || candidate.key_is(compartment, id)) && members.all(|m| m == focal)
    }

    fn takes(&self, candidate: &Candidate) -> bool {
        self.resource_type
            .as_deref()
            .is_none_or(|own| own == candidate.resource_type)
    }
}

/// The `Type/id` of every compartment of type `compartment` that `resource` (`candidate`'s
/// JSON) is a member of, by the compartment's membership parameters: their references to this
/// server's resources of that type, each as often as it appears. The candidate's own
/// compartment (when it is of that type) is not among them. What a compartment search and a
/// view's compartment hold; a bulk export of patients judges its resources by it.
pub fn members_of<'a>(
    registry: &'a Registry,
    compartment: &'a str,
    candidate: &'a Candidate,
    resource: &'a serde_json::Value,
) -> impl Iterator<Item = String> + 'a {
    compartment::params(compartment, candidate.resource_type)
        .iter()
        .filter_map(|code| registry.get(candidate.resource_type, code))
        .filter_map(|param| extract(registry, param, resource).ok())
        .flatten()
        .filter_map(move |value| match value {
            IndexValue::Reference {
                reference: Some(reference),
                ..
            } => reference::relative(&reference)
                .filter(|local| reference::resource_type(local) == Some(compartment))
                .map(String::from),
            _ => None,
        })
}

/// What [`members_of`] reads of a `resource_type` resource for compartments of type
/// `compartment`: a test of the names of its top-level members, for a parse that builds only
/// those ([`crate::fhir::sparse`]). The members its membership parameters' expressions name
/// after a type (`Observation.subject`, a choice `value` as `valueQuantity`...), with their
/// primitive extensions, `resourceType`, `id` and `contained`; `None` (every member) when an
/// expression may read beyond the elements it names (`%resource`, `descendants()`...).
pub fn membership_members(
    registry: &Registry,
    compartment: &str,
    resource_type: &str,
) -> Option<Vec<String>> {
    let mut names = vec![
        "resourceType".to_string(),
        "id".to_string(),
        "contained".to_string(),
    ];
    for code in compartment::params(compartment, resource_type) {
        let Some(param) = registry.get(resource_type, code) else {
            continue;
        };
        let text = param.expression_text.as_deref()?;
        if ["%", "descendants", "repeat", "children", "trace"]
            .iter()
            .any(|reach| text.contains(reach))
        {
            return None;
        }
        names.extend(named_elements(text));
    }
    Some(names)
}

/// Whether a top-level member `name` is one [`membership_members`] named: the element
/// itself, a choice of it (`value` -> `valueQuantity`), or their primitive extensions (`_`).
pub fn is_named_member(names: &[String], name: &str) -> bool {
    let bare = name.strip_prefix('_').unwrap_or(name);
    names.iter().any(|element| {
        bare.strip_prefix(element.as_str()).is_some_and(|rest| {
            rest.is_empty() || rest.starts_with(|c: char| c.is_ascii_uppercase())
        })
    })
}

/// The element names that follow a type name (`Type.element`) in a FHIRPath expression.
fn named_elements(text: &str) -> impl Iterator<Item = String> + '_ {
    let identifier = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices('.').filter_map(move |(at, _)| {
        let before = &text[..at];
        let start = before.rfind(|c: char| !identifier(c)).map_or(0, |i| i + 1);
        let after = &text[at + 1..];
        let end = after.find(|c: char| !identifier(c)).unwrap_or(after.len());
        let owner = &before[start..];
        let element = &after[..end];
        (owner.starts_with(|c: char| c.is_ascii_uppercase()) && !element.is_empty())
            .then(|| element.to_string())
    })
}

/// A resource to judge: its type, id, lastUpdated (microseconds) and JSON.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub resource_type: &'a str,
    pub id: &'a str,
    pub last_updated: i64,
    pub body: &'a [u8],
}

impl Candidate<'_> {
    fn key_is(&self, resource_type: &str, id: &str) -> bool {
        self.resource_type == resource_type && self.id == id
    }
}

impl Planner<'_> {
    /// The clause that keeps a search of `resource_types` (every type when empty) within its
    /// view; `None` for [`View::All`]. Each part is planned for the types searched only (a
    /// compartment of every type is a union over its ~60 member types), and with its own
    /// parameters planned without the view (they are what defines it). A part whose
    /// parameters cannot be searched fails the search with 403: a view is never widened by
    /// dropping what it cannot apply.
    pub(super) fn view_query(
        &self,
        resource_types: &[String],
    ) -> Result<Option<Box<dyn Query>>, FhirError> {
        let View::Only(parts) = self.view else {
            return Ok(None);
        };
        let unconfined = Planner {
            view: &View::All,
            ..*self
        };
        let mut alternatives: Vec<Box<dyn Query>> = Vec::new();
        for part in parts {
            let mut types: Vec<String> = match &part.resource_type {
                Some(own) if resource_types.is_empty() || resource_types.contains(own) => {
                    vec![own.clone()]
                }
                Some(_) => continue,
                None => resource_types.to_vec(),
            };
            // Types that are never in the part's compartment hold nothing of it.
            if let Some((compartment, _)) = &part.compartment {
                let members = compartment::member_types(compartment);
                if types.is_empty() {
                    types = members;
                } else {
                    types.retain(|t| members.contains(t));
                    if types.is_empty() {
                        continue;
                    }
                }
            }
            let target = |resource_types: Vec<String>| Target {
                resource_types,
                compartment: part.compartment.clone(),
                ..Target::default()
            };
            match unconfined.plan(&target(types.clone()), &part.params, true) {
                Ok(plan) => alternatives.push(plan.query),
                // A query on several types (`user/*.rs?category=laboratory`) whose parameter
                // some of them lack: those hold nothing of the part, the others what it
                // matches. Only when no type has it is the query an error.
                Err(error) if part.resource_type.is_none() && !part.params.is_empty() => {
                    let each: Vec<String> = if types.is_empty() {
                        fhirlake_model::RESOURCE_TYPES
                            .iter()
                            .map(|t| t.to_string())
                            .collect()
                    } else {
                        types
                    };
                    let planned: Vec<Box<dyn Query>> = each
                        .into_iter()
                        .filter_map(|t| unconfined.plan(&target(vec![t]), &part.params, true).ok())
                        .map(|plan| plan.query)
                        .collect();
                    if planned.is_empty() {
                        return Err(unusable(error));
                    }
                    alternatives.extend(planned);
                }
                Err(error) => return Err(unusable(error)),
            }
        }
        Ok(Some(if alternatives.is_empty() {
            Box::new(EmptyQuery)
        } else {
            Box::new(BooleanQuery::union(alternatives))
        }))
    }
}

/// The 403 of a view part the planner cannot apply.
fn unusable(error: FhirError) -> FhirError {
    FhirError::forbidden(format!(
        "the access granted cannot be applied to this search: {}",
        error.diagnostics
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::Engine;
    use serde_json::json;

    fn part(resource_type: Option<&str>, patient: Option<&str>, params: &[(&str, &str)]) -> Part {
        Part {
            resource_type: resource_type.map(String::from),
            compartment: patient.map(|id| ("Patient".to_string(), id.to_string())),
            params: params
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Judges `resources` (type, id, JSON) under `view`.
    fn visible(view: &View, resources: &[(&str, &str, serde_json::Value)]) -> Vec<bool> {
        let bodies: Vec<Vec<u8>> = resources
            .iter()
            .map(|(_, _, json)| serde_json::to_vec(json).unwrap())
            .collect();
        let candidates: Vec<Candidate> = resources
            .iter()
            .zip(&bodies)
            .map(|((resource_type, id, _), body)| Candidate {
                resource_type,
                id,
                last_updated: 0,
                body,
            })
            .collect();
        Engine::visible_in(
            crate::search::registry::Registry::r4_shared(),
            view,
            &candidates,
        )
        .unwrap()
    }

    fn observation(patient: &str, category: &str) -> serde_json::Value {
        json!({"resourceType": "Observation", "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": format!("Patient/{patient}")},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}]})
    }

    #[test]
    fn a_patient_view_holds_the_compartment_and_the_focal_patient() {
        let view = View::Only(vec![part(None, Some("a"), &[])]);
        let resources = [
            ("Patient", "a", json!({"resourceType": "Patient"})),
            ("Patient", "b", json!({"resourceType": "Patient"})),
            ("Observation", "1", observation("a", "laboratory")),
            ("Observation", "2", observation("b", "laboratory")),
            // Never in a Patient compartment.
            ("Organization", "o", json!({"resourceType": "Organization"})),
            // The same id twice (two versions): judged one by one.
            ("Observation", "1", observation("b", "laboratory")),
        ];
        assert_eq!(
            visible(&view, &resources),
            [true, false, true, false, false, false]
        );
    }

    #[test]
    fn parts_are_a_union_and_their_parameters_restrict() {
        let view = View::Only(vec![
            part(
                Some("Observation"),
                Some("a"),
                &[("category", "laboratory")],
            ),
            part(Some("Organization"), None, &[]),
        ]);
        let resources = [
            ("Observation", "1", observation("a", "laboratory")),
            ("Observation", "2", observation("a", "vital-signs")),
            ("Observation", "3", observation("b", "laboratory")),
            ("Organization", "o", json!({"resourceType": "Organization"})),
            ("Patient", "a", json!({"resourceType": "Patient"})),
        ];
        assert_eq!(
            visible(&view, &resources),
            [true, false, false, true, false]
        );
        assert_eq!(visible(&View::Only(Vec::new()), &resources), [false; 5]);
        // A query on every type holds the types that have its parameter.
        let any_laboratory = View::Only(vec![part(None, None, &[("category", "laboratory")])]);
        assert_eq!(
            visible(&any_laboratory, &resources),
            [true, false, true, false, false]
        );
        assert_eq!(visible(&View::All, &resources), [true; 5]);
    }

    /// Judges `resources` as a confined write must keep to them, under `view`.
    fn owned(view: &View, resources: &[(&str, &str, serde_json::Value)]) -> Vec<bool> {
        let bodies: Vec<Vec<u8>> = resources
            .iter()
            .map(|(_, _, json)| serde_json::to_vec(json).unwrap())
            .collect();
        let candidates: Vec<Candidate> = resources
            .iter()
            .zip(&bodies)
            .map(|((resource_type, id, _), body)| Candidate {
                resource_type,
                id,
                last_updated: 0,
                body,
            })
            .collect();
        Engine::owned_in(
            crate::search::registry::Registry::r4_shared(),
            view,
            &candidates,
        )
        .unwrap()
    }

    #[test]
    fn a_write_keeps_to_what_belongs_to_the_patient_alone() {
        let mut shared = observation("a", "laboratory");
        shared["performer"] = json!([{"reference": "Patient/b"}]);
        let mut by_a_doctor = observation("a", "laboratory");
        by_a_doctor["performer"] = json!([{"reference": "Practitioner/d"},
            {"reference": "Patient/a/_history/2"}]);
        let linked = json!({"resourceType": "Patient",
            "link": [{"other": {"reference": "Patient/b"}, "type": "seealso"}]});
        let resources = [
            ("Observation", "1", observation("a", "laboratory")),
            ("Observation", "2", shared),
            ("Observation", "3", observation("b", "laboratory")),
            ("Observation", "4", by_a_doctor),
            (
                "Observation",
                "5",
                observation("x/../Patient/a", "laboratory"),
            ),
            ("Patient", "a", json!({"resourceType": "Patient"})),
            ("Patient", "a", linked),
            ("Patient", "b", json!({"resourceType": "Patient"})),
            ("Organization", "o", json!({"resourceType": "Organization"})),
        ];
        let patient = View::Only(vec![part(None, Some("a"), &[])]);
        assert_eq!(
            owned(&patient, &resources),
            [true, false, false, true, false, true, false, false, false]
        );
        // What a read sees of the same: every member.
        assert_eq!(
            visible(&patient, &resources),
            [true, true, false, true, false, true, true, false, false]
        );
        // A part's query narrows it further; a part without a compartment takes its type.
        let vitals_only = View::Only(vec![
            part(
                Some("Observation"),
                Some("a"),
                &[("category", "vital-signs")],
            ),
            part(Some("Organization"), None, &[]),
        ]);
        assert_eq!(
            owned(&vitals_only, &resources),
            [false, false, false, false, false, false, false, false, true]
        );
        assert_eq!(owned(&View::All, &resources), [true; 9]);
    }

    #[test]
    fn a_view_wants_what_its_query_looks_at() {
        let view = View::Only(vec![
            part(None, Some("a"), &[]),
            part(
                Some("Observation"),
                None,
                &[("code:text", "x"), ("_content", "y")],
            ),
            part(None, None, &[("subject:Patient.name", "z")]),
        ]);
        let wanted = view.wanted("Observation");
        let codes: Vec<&str> = wanted.codes.iter().map(String::as_str).collect();
        assert_eq!(codes, ["_content", "code", "performer", "subject"]);
        assert!(wanted.text);
        assert!(
            !View::Only(vec![part(None, Some("a"), &[])])
                .wanted("Patient")
                .text
        );
    }

    /// The first `count` Synthea resources from the first Patient on, as stored: their
    /// references within their Bundle (`urn:uuid:{id}`) as `Type/id`, with their bodies.
    fn synthea_stored(count: usize) -> (Vec<serde_json::Value>, Vec<Vec<u8>>) {
        let mut resources: Vec<serde_json::Value> = crate::fhir::test_data::synthea()
            .skip_while(|r| r["resourceType"] != "Patient")
            .take(count)
            .collect();
        // Within its Bundle a resource refers to another by `urn:uuid:{id}`: stored, that is
        // `Type/id`.
        let types: std::collections::HashMap<String, String> = resources
            .iter()
            .map(|r| {
                (
                    r["id"].as_str().unwrap().to_string(),
                    r["resourceType"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        fn rewrite(
            value: &mut serde_json::Value,
            types: &std::collections::HashMap<String, String>,
        ) {
            match value {
                serde_json::Value::Object(members) => {
                    for (key, member) in members.iter_mut() {
                        if let (true, Some(id)) = (
                            key == "reference",
                            member.as_str().and_then(|r| r.strip_prefix("urn:uuid:")),
                        ) && let Some(resource_type) = types.get(id)
                        {
                            *member = serde_json::json!(format!("{resource_type}/{id}"));
                        } else {
                            rewrite(member, types);
                        }
                    }
                }
                serde_json::Value::Array(items) => items.iter_mut().for_each(|i| rewrite(i, types)),
                _ => {}
            }
        }
        resources.iter_mut().for_each(|r| rewrite(r, &types));
        let bodies: Vec<Vec<u8>> = resources
            .iter()
            .map(|r| serde_json::to_vec(r).unwrap())
            .collect();
        (resources, bodies)
    }

    /// The parse of the members [`membership_members`] names gives the same memberships as
    /// the whole resource, on 5,000 Synthea resources of every type there.
    #[test]
    fn membership_reads_only_the_members_it_names() {
        let registry = crate::search::registry::Registry::r4_shared();
        let (resources, bodies) = synthea_stored(5_000);
        let mut sparse = 0;
        for (resource, body) in resources.iter().zip(&bodies) {
            let resource_type = resource["resourceType"].as_str().unwrap();
            let candidate = Candidate {
                resource_type,
                id: resource["id"].as_str().unwrap(),
                last_updated: 0,
                body,
            };
            let Some(names) = membership_members(registry, "Patient", resource_type) else {
                continue;
            };
            sparse += 1;
            let keep = |name: &str| is_named_member(&names, name);
            let parsed = crate::fhir::sparse::parse_members(body, &keep).unwrap();
            let whole: Vec<String> =
                members_of(registry, "Patient", &candidate, resource).collect();
            let read: Vec<String> = members_of(registry, "Patient", &candidate, &parsed).collect();
            assert_eq!(read, whole, "{resource_type}");
            assert!(
                parsed.as_object().unwrap().len() <= resource.as_object().unwrap().len(),
                "{resource_type}"
            );
        }
        assert!(sparse > 4_000, "only {sparse} resources read in part");
        assert!(is_named_member(&["value".to_string()], "valueQuantity"));
        assert!(is_named_member(&["birthDate".to_string()], "_birthDate"));
        assert!(!is_named_member(&["value".to_string()], "valuesets"));
    }

    /// The membership judgement and the scratch index agree on 3,000 Synthea resources (the
    /// first patient bundles), for the compartments of a Patient, of an Encounter and of no
    /// one, with and without a type.
    #[test]
    fn membership_is_judged_as_the_index_judges_it() {
        let registry = crate::search::registry::Registry::r4_shared();
        let (resources, bodies) = synthea_stored(3_000);
        let candidates: Vec<Candidate> = resources
            .iter()
            .zip(&bodies)
            .map(|(resource, body)| Candidate {
                resource_type: resource["resourceType"].as_str().unwrap(),
                id: resource["id"].as_str().unwrap(),
                last_updated: 0,
                body,
            })
            .collect();
        let first = |resource_type: &str| {
            candidates
                .iter()
                .find(|c| c.resource_type == resource_type)
                .map(|c| c.id.to_string())
                .unwrap()
        };
        let compartment = |compartment: &str, id: String| Some((compartment.to_string(), id));
        // (view, whether it holds any of the candidates, when that is known)
        let mut views = Vec::new();
        for (name, id, holds) in [
            ("Patient", first("Patient"), true),
            ("Encounter", first("Encounter"), true),
            ("Patient", "nobody".to_string(), false),
        ] {
            let whole = View::Only(vec![Part {
                resource_type: None,
                compartment: compartment(name, id.clone()),
                params: Vec::new(),
            }]);
            views.push((whole, Some(holds)));
            let typed = View::Only(vec![
                Part {
                    resource_type: Some("Observation".into()),
                    compartment: compartment(name, id),
                    params: Vec::new(),
                },
                Part {
                    resource_type: Some("Organization".into()),
                    compartment: None,
                    params: Vec::new(),
                },
            ]);
            views.push((typed, None));
        }
        for (view, holds) in &views {
            let by_membership = view.judge_by_membership(registry, &candidates).unwrap();
            let by_index = Engine::visible_by_index(registry, view, &candidates).unwrap();
            if let Some(holds) = holds {
                assert_eq!(by_membership.iter().any(|v| *v), *holds, "{view:?}");
            }
            assert_eq!(by_membership, by_index, "{view:?}");
        }
    }

    #[test]
    fn a_restriction_that_cannot_be_searched_is_refused_not_dropped() {
        let view = View::Only(vec![part(Some("Observation"), None, &[("nonsense", "1")])]);
        let body = serde_json::to_vec(&observation("a", "laboratory")).unwrap();
        let candidate = Candidate {
            resource_type: "Observation",
            id: "1",
            last_updated: 0,
            body: &body,
        };
        let error = Engine::visible_in(
            crate::search::registry::Registry::r4_shared(),
            &view,
            &[candidate],
        )
        .unwrap_err();
        assert_eq!(error.status, 403);
    }
}
