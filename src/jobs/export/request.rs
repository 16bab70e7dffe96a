//! The kick-off of an export: its parameters checked, its types and view settled with the
//! client's access, its snapshot named by the writer, and its job recorded.
//!
//! Parameters (GET query or POST `Parameters`, which may repeat a parameter): `_outputFormat`
//! (`application/fhir+ndjson`, `application/ndjson` or `ndjson`), `_since` and `_until`
//! (instants), `_type` (comma-separated types; for a patient or group export, types of the
//! Patient compartment), `_elements`, `_typeFilter` (`Type?params`, see the module above;
//! at most [`MAX_TYPE_FILTERS`] of [`MAX_TYPE_FILTER_BYTES`]), `patient` (POST only, at most
//! [`MAX_PATIENTS`]; Patients that exist, members of the Group for a group export),
//! `allowPartialManifests` (accepted, always one manifest). Not
//! supported: `includeAssociatedData`, `organizeOutputBy`. A parameter that is not supported,
//! or a value that is not (a type, a filter, a format), is a 400, or ignored and reported in
//! the job's `error` file under `Prefer: handling=lenient`; a malformed instant or element,
//! `patient` in a GET and too many or too long values are a 400 whatever the handling.

use super::{Level, Request, Snapshot};
use crate::auth::Access;
use crate::auth::scope::Permission;
use crate::fhir::datetime::{Temporal, check_temporal, parse_period};
use crate::fhir::reference::Base;
use crate::fhir::summary::Subset;
use crate::fhir::{FhirError, IssueCode};
use crate::jobs::{Jobs, Kind, Owner};
use crate::search::compartment;
use crate::search::registry::Registry;
use crate::search::versions::Criteria;
use crate::search::{Engine, limits};
use crate::store::Store;

/// The most `_typeFilter` queries of one export, and the longest one (bytes, as a GET search's
/// URL may be).
pub const MAX_TYPE_FILTERS: usize = 100;
pub const MAX_TYPE_FILTER_BYTES: usize = 32 * 1024;

/// The most `_elements` and `patient` values of one export (a larger cohort is a Group).
pub const MAX_ELEMENTS: usize = 1000;
pub const MAX_PATIENTS: usize = 10_000;

/// The formats `_outputFormat` may name (all NDJSON).
const FORMATS: &[&str] = &["application/fhir+ndjson", "application/ndjson", "ndjson"];

/// What a client asked to export.
#[derive(Debug, Clone)]
pub struct KickOff {
    pub level: Level,
    /// The parameters, in order; a reference's value is its `reference`.
    pub params: Vec<(String, String)>,
    /// Whether they came by POST (`patient` needs it).
    pub post: bool,
    /// `Prefer: handling=lenient`.
    pub lenient: bool,
    /// The kick-off's URL.
    pub url: String,
    /// The FHIR base URL the request came to (which absolute `patient` references are ours).
    pub base: String,
}

/// Checks the kick-off, names its snapshot and records its job; returns the job's id.
pub async fn kick_off(
    jobs: &Jobs,
    store: &Store,
    engine: &Engine,
    access: &Access,
    kick_off: KickOff,
) -> Result<String, FhirError> {
    let mut request = parse(&kick_off, access, engine.registry)?;
    check_population(store, engine, access, &request)?;
    // The writer's position now: every change up to `seq` is at or before `time`.
    let position = store.keep_books(Vec::new()).await?;
    request.snapshot = Snapshot {
        seq: position.seq,
        time: position.time,
    };
    let seq = request.snapshot.seq;
    let request = serde_json::to_value(&request).expect("a request serializes");
    jobs.submit(Kind::Export, Owner::of(access), request, Some(seq))
        .await
}

/// The Group exists and the client may read it; each `patient` exists (readable), and for a
/// group export is a member. Judged on the current state; the job reads the Group again in
/// its snapshot.
pub fn check_population(
    store: &Store,
    engine: &Engine,
    access: &Access,
    request: &Request,
) -> Result<(), FhirError> {
    let members = match &request.level {
        Level::Group { id } => {
            access.require(Permission::Read, Some("Group"))?;
            let group = access.current(engine, store, Permission::Read, "Group", id)?;
            let Some((_, Some(version))) = group else {
                return Err(FhirError::not_found(format!("Group/{id} does not exist")));
            };
            let group: serde_json::Value = serde_json::from_slice(&version.body)
                .map_err(|_| FhirError::internal("a stored Group is not JSON"))?;
            Some(super::select::members(engine.registry, &group))
        }
        _ => None,
    };
    for patient in &request.patients {
        let found = access.current(engine, store, Permission::Read, "Patient", patient)?;
        if !matches!(found, Some((_, Some(_)))) {
            return Err(FhirError::bad_request(
                IssueCode::NotFound,
                format!("patient: Patient/{patient} does not exist"),
            ));
        }
        if let Some(members) = &members
            && !members.contains(patient)
        {
            return Err(FhirError::bad_request(
                IssueCode::Invalid,
                format!("patient: Patient/{patient} is not a member of the Group"),
            ));
        }
    }
    Ok(())
}

/// The export a kick-off asks for (its snapshot still to be named), or why it cannot run.
pub fn parse(
    kick_off: &KickOff,
    access: &Access,
    registry: &Registry,
) -> Result<Request, FhirError> {
    let mut parsed = Parsed::default();
    let mut notes = Vec::new();
    let lenient = kick_off.lenient;
    // An unsupported parameter or value: 400, or a note under lenient handling.
    let mut unsupported = |error: FhirError| -> Result<(), FhirError> {
        if lenient {
            notes.push(format!("ignored: {}", error.diagnostics));
            Ok(())
        } else {
            Err(error)
        }
    };
    for (name, value) in &kick_off.params {
        let value = value.trim();
        let bad =
            |what: &str| FhirError::bad_request(IssueCode::Invalid, format!("{name}: {what}"));
        match name.as_str() {
            "_outputFormat" => {
                if parsed.format.replace(()).is_some() {
                    return Err(bad("given more than once"));
                }
                if !FORMATS.contains(&value) {
                    unsupported(FhirError::bad_request(
                        IssueCode::NotSupported,
                        format!(
                            "_outputFormat={value}: the formats are application/fhir+ndjson, \
                             application/ndjson and ndjson"
                        ),
                    ))?;
                }
            }
            "_since" | "_until" => {
                let instant = instant(value).map_err(|why| bad(&why))?;
                let slot = if name == "_since" {
                    &mut parsed.since
                } else {
                    &mut parsed.until
                };
                if slot.replace(instant).is_some() {
                    return Err(bad("given more than once"));
                }
            }
            "_type" => {
                for resource_type in value.split(',').map(str::trim) {
                    if fhirlake_model::is_resource_type(resource_type) {
                        if !parsed.types.iter().any(|t| t == resource_type) {
                            parsed.types.push(resource_type.to_string());
                        }
                    } else {
                        unsupported(FhirError::bad_request(
                            IssueCode::NotSupported,
                            format!("_type: '{resource_type}' is not a FHIR R4 resource type"),
                        ))?;
                    }
                }
                parsed.typed = true;
            }
            "_elements" => {
                let pair = [("_elements".to_string(), value.to_string())];
                if let Some(Subset::Elements(elements)) = Subset::parse(&pair)? {
                    parsed.elements.extend(elements);
                }
                if parsed.elements.len() > MAX_ELEMENTS {
                    return Err(limits::too_costly(format!(
                        "_elements: at most {MAX_ELEMENTS} elements"
                    )));
                }
            }
            "_typeFilter" => {
                parsed.filters += 1;
                if parsed.filters > MAX_TYPE_FILTERS || value.len() > MAX_TYPE_FILTER_BYTES {
                    return Err(limits::too_costly(format!(
                        "an export has at most {MAX_TYPE_FILTERS} _typeFilter queries of at \
                         most {MAX_TYPE_FILTER_BYTES} bytes each"
                    )));
                }
                match Criteria::parse(registry, value) {
                    Ok(_) if value.contains('?') => parsed.type_filters.push(value.to_string()),
                    Ok(_) => unsupported(bad("a query is Type?parameters"))?,
                    // Too costly is refused whatever the handling, as in a search.
                    Err(error) if error.code == IssueCode::TooCostly => {
                        return Err(limits::too_costly(format!(
                            "_typeFilter: {}",
                            error.diagnostics
                        )));
                    }
                    Err(error) => unsupported(FhirError::bad_request(
                        error.code,
                        format!("_typeFilter: {}", error.diagnostics),
                    ))?,
                }
            }
            "patient" => {
                if !kick_off.post {
                    return Err(bad(
                        "only a POST kick-off takes patients (a Parameters body with \
                         valueReference parameters)",
                    ));
                }
                if kick_off.level == Level::System {
                    unsupported(bad("a system-level export takes no patients"))?;
                    continue;
                }
                let base = Base::new(Some(&kick_off.base));
                let id = base
                    .local(value)
                    .and_then(|local| local.strip_prefix("Patient/"))
                    .ok_or_else(|| bad(&format!("'{value}' is not a reference to a Patient")))?;
                parsed.patients.push(id.to_string());
                if parsed.patients.len() > MAX_PATIENTS {
                    return Err(limits::too_costly(format!(
                        "patient: at most {MAX_PATIENTS} Patients (export a Group of more)"
                    )));
                }
            }
            "allowPartialManifests" => {
                if !matches!(value, "true" | "false") {
                    return Err(bad("a boolean is true or false"));
                }
            }
            "includeAssociatedData" | "organizeOutputBy" => {
                unsupported(FhirError::bad_request(
                    IssueCode::NotSupported,
                    format!("{name} is not supported"),
                ))?;
            }
            // The parameters of every FHIR interaction.
            "_format" | "_pretty" => {}
            _ => unsupported(FhirError::bad_request(
                IssueCode::NotSupported,
                format!("{name} is not a parameter of $export"),
            ))?,
        }
    }
    let types = types(kick_off, access, &parsed, &mut unsupported)?;
    parsed.patients.sort();
    parsed.patients.dedup();
    Ok(Request {
        level: kick_off.level.clone(),
        url: kick_off.url.clone(),
        types,
        since: parsed.since,
        until: parsed.until,
        type_filters: parsed.type_filters,
        elements: parsed.elements,
        patients: parsed.patients,
        view: access.view(Permission::Read),
        notes,
        snapshot: Snapshot { seq: 0, time: 0 },
    })
}

/// What the parameters said, before the types are settled.
#[derive(Default)]
struct Parsed {
    format: Option<()>,
    since: Option<i64>,
    until: Option<i64>,
    /// Whether `_type` was given (even with no type left).
    typed: bool,
    types: Vec<String>,
    elements: Vec<String>,
    filters: usize,
    type_filters: Vec<String>,
    patients: Vec<String>,
}

/// The types to export: those named by `_type` (each readable by the client, 403 otherwise;
/// for a patient or group export, of the Patient compartment), or every type the client may
/// read (of the compartment).
fn types(
    kick_off: &KickOff,
    access: &Access,
    parsed: &Parsed,
    unsupported: &mut impl FnMut(FhirError) -> Result<(), FhirError>,
) -> Result<Vec<String>, FhirError> {
    let compartment = match kick_off.level {
        Level::System => None,
        Level::Patient | Level::Group { .. } => Some(compartment::member_types("Patient")),
    };
    if !parsed.typed {
        let all: Vec<String> = match compartment {
            Some(mut members) => {
                members.sort();
                members
            }
            None => fhirlake_model::RESOURCE_TYPES
                .iter()
                .map(|t| t.to_string())
                .collect(),
        };
        return Ok(all
            .into_iter()
            .filter(|t| access.require(Permission::Read, Some(t)).is_ok())
            .collect());
    }
    let mut types = Vec::new();
    for resource_type in &parsed.types {
        if let Some(members) = &compartment
            && !members.contains(resource_type)
        {
            unsupported(FhirError::bad_request(
                IssueCode::NotSupported,
                format!(
                    "_type: {resource_type} is not in the Patient compartment, which a patient \
                     or group export is of"
                ),
            ))?;
            continue;
        }
        access.require(Permission::Read, Some(resource_type))?;
        types.push(resource_type.clone());
    }
    Ok(types)
}

/// A FHIR instant (`2020-01-01T00:00:00Z`), in microseconds. A `+` of a zone decoded from a
/// query as a space is read as `+`.
pub fn instant(text: &str) -> Result<i64, String> {
    let text = text.replace(' ', "+");
    check_temporal(Temporal::Instant, &text).map_err(|why| format!("'{text}': {why}"))?;
    parse_period(&text).map(|period| period.start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Principal;
    use crate::auth::scope::Scopes;
    use crate::search::{Part, View};
    use std::sync::Arc;

    fn kick_off(level: Level, params: &[(&str, &str)], post: bool, lenient: bool) -> KickOff {
        KickOff {
            level,
            params: params
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            post,
            lenient,
            url: "http://h/fhir/$export".into(),
            base: "http://h/fhir".into(),
        }
    }

    fn parse_open(
        level: Level,
        params: &[(&str, &str)],
        post: bool,
        lenient: bool,
    ) -> Result<Request, FhirError> {
        parse(
            &kick_off(level, params, post, lenient),
            &Access::Open,
            Registry::r4_shared(),
        )
    }

    #[test]
    fn the_parameters_of_the_ig_are_read() {
        let request = parse_open(
            Level::Patient,
            &[
                ("_outputFormat", "application/ndjson"),
                ("_since", "2020-01-01T00:00:00+01:00"),
                ("_until", "2030-01-01T00:00:00Z"),
                ("_type", "Observation,Patient"),
                ("_type", "Observation"),
                ("_elements", "id,Patient.name"),
                ("_typeFilter", "Observation?category=laboratory"),
                ("patient", "Patient/a"),
                ("patient", "http://h/fhir/Patient/b"),
                ("allowPartialManifests", "true"),
                ("_format", "json"),
            ],
            true,
            false,
        )
        .unwrap();
        assert_eq!(request.types, ["Observation", "Patient"]);
        assert_eq!(request.since, Some(1_577_833_200_000_000));
        assert!(request.until.is_some());
        assert_eq!(request.elements, ["id", "Patient.name"]);
        assert_eq!(request.type_filters, ["Observation?category=laboratory"]);
        assert_eq!(request.patients, ["a", "b"]);
        let twice = [("patient", "Patient/a"), ("patient", "Patient/a")];
        let request = parse_open(Level::Patient, &twice, true, false).unwrap();
        assert_eq!(request.patients, ["a"]);
        assert_eq!(request.view, View::All);
        assert!(request.notes.is_empty());
        // Without `_type`: every type of the compartment, Patient among them, no Organization.
        let all = parse_open(Level::Patient, &[], false, false).unwrap().types;
        assert!(all.contains(&"Patient".into()) && all.contains(&"Encounter".into()));
        assert!(!all.contains(&"Organization".into()));
        let system = parse_open(Level::System, &[], false, false).unwrap().types;
        assert_eq!(system.len(), fhirlake_model::RESOURCE_TYPES.len());
    }

    #[test]
    fn what_is_not_supported_is_400_or_a_note_when_lenient() {
        let group = || Level::Group { id: "g".into() };
        for params in [
            &[("_type", "Nope")][..],
            &[("_type", "Organization")],
            &[("_outputFormat", "text/csv")],
            &[("_typeFilter", "Observation?nope=1")],
            &[("_typeFilter", "Observation?subject.name=x")],
            &[("_typeFilter", "Observation?_sort=date")],
            &[("_typeFilter", "Observation")],
            &[("includeAssociatedData", "LatestProvenanceResources")],
            &[("organizeOutputBy", "Patient")],
            &[("unknown", "1")],
        ] {
            let refused = parse_open(group(), params, true, false).unwrap_err();
            assert_eq!(refused.status, 400, "{params:?}: {refused:?}");
            let lenient = parse_open(group(), params, true, true).unwrap();
            assert_eq!(lenient.notes.len(), 1, "{params:?}");
        }
        // Lenient: the unsupported type is dropped, the others stay.
        let lenient = parse_open(group(), &[("_type", "Organization,Patient")], true, true);
        assert_eq!(lenient.unwrap().types, ["Patient"]);
        // Whatever the handling.
        let too_many: Vec<(&str, &str)> = (0..=MAX_TYPE_FILTERS)
            .map(|_| ("_typeFilter", "Observation?code=1"))
            .collect();
        let huge = format!("Observation?code={}", vec!["x"; 10_000].join(","));
        let long = format!("Observation?code={}", "x".repeat(MAX_TYPE_FILTER_BYTES));
        let patients: Vec<String> = (0..=MAX_PATIENTS)
            .map(|n| format!("Patient/p{n}"))
            .collect();
        for (params, post) in [
            (vec![("_since", "yesterday")], false),
            (vec![("_since", "2020-01-01")], false),
            (vec![("_until", "2020-01-01T00:00:00")], false),
            (
                vec![
                    ("_since", "2020-01-01T00:00:00Z"),
                    ("_since", "2021-01-01T00:00:00Z"),
                ],
                false,
            ),
            (vec![("_elements", "a.b.c")], false),
            (vec![("patient", "Patient/a")], false),
            (vec![("patient", "Observation/a")], true),
            (vec![("allowPartialManifests", "yes")], false),
            (too_many, false),
            (vec![("_typeFilter", huge.as_str())], false),
            (vec![("_typeFilter", long.as_str())], false),
            (
                patients.iter().map(|p| ("patient", p.as_str())).collect(),
                true,
            ),
        ] {
            let refused = parse_open(group(), &params, post, true).unwrap_err();
            assert_eq!(refused.status, 400, "{params:?}");
        }
    }

    #[test]
    fn the_types_are_those_the_token_may_read() {
        let token = Access::Token(Arc::new(Principal {
            subject: Some("s".into()),
            client: None,
            patient: Some("p".into()),
            scopes: Scopes::parse("patient/Observation.rs patient/Patient.r"),
        }));
        let registry = Registry::r4_shared();
        let all = parse(
            &kick_off(Level::System, &[], false, false),
            &token,
            registry,
        )
        .unwrap();
        assert_eq!(all.types, ["Observation", "Patient"]);
        assert_eq!(
            all.view,
            View::Only(vec![
                Part {
                    resource_type: Some("Observation".into()),
                    compartment: Some(("Patient".into(), "p".into())),
                    params: vec![],
                },
                Part {
                    resource_type: Some("Patient".into()),
                    compartment: Some(("Patient".into(), "p".into())),
                    params: vec![],
                },
            ])
        );
        let asked = kick_off(Level::System, &[("_type", "Condition")], false, false);
        assert_eq!(parse(&asked, &token, registry).unwrap_err().status, 403);
    }
}
