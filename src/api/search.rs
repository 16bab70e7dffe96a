//! Search: `GET /fhir/{type}`, `POST /fhir/{type}/_search`, `GET /fhir?_type=...`, compartment
//! searches (`GET /fhir/Patient/123/Observation`, `GET /fhir/Patient/123/*`) and
//! `$everything` of a Patient or an Encounter.
//!
//! A search first waits until the index holds every write committed before it that can change
//! its answer (read your writes, at most `search::CATCH_UP`): the writes to the types it reads
//! (`Target::reads`), so a search of Patients is not held up by writes of Observations. Past
//! that it runs anyway and says the results may be stale. Pages after the first reuse the
//! first page's index snapshot, and start after the last match of the page before
//! (`_cursor`): a page costs the same at any depth.
//!
//! Links repeat the search: the client's parameters but those ignored (and empty), with the
//! page's `_count` and position.
//!
//! The matches' keys come from the index; the resources themselves are read from the store
//! (one deleted since the snapshot was taken is left out). `_summary` and `_elements` cut the
//! matches only, after their includes were followed from the whole resources; included
//! resources come whole.
//!
//! `$everything` (Patient, Encounter) is a compartment search of all types (`_type` narrows it,
//! `_since` becomes `_lastUpdated=ge`), paged like any search; each page adds every resource
//! its matches refer to anywhere in their JSON (not only through search parameters:
//! `Claim.prescription` has none), as includes. A Patient's `start` and `end` (R4 defines them
//! for Patient only) keep the resources with care in the period: a value of one of their
//! type's date parameters, but those about the record or a person (`issued`, `recorded`,
//! `birthdate`...), overlaps it; a resource with none is kept.

use super::get::Get;
use super::http::{FHIR_JSON, negotiate, read_form};
use super::{ApiResult, AppState};
use crate::auth::Access;
use crate::auth::scope::Permission;
use crate::fhir::bundle::{BundleWriter, Entry};
use crate::fhir::datetime::{Period, parse_period};
use crate::fhir::resource::{check_id, check_type};
use crate::fhir::summary::{self, Subset};
use crate::fhir::{FhirError, IssueCode};
use crate::search::include::{Directive, Found, Included, MAX_INCLUDES, include, load, referenced};
use crate::search::limits::too_costly;
use crate::search::sort::Cursor;
use crate::search::{Ignored, Page, Request, Target, View, compartment};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

type State = web::Data<AppState>;

/// The types with a `$everything` operation.
pub const EVERYTHING: &[&str] = &["Patient", "Encounter"];

/// Which search: of a type, of every type (`_type` may name some), of a compartment, or
/// `$everything` of a Patient or an Encounter.
pub(super) enum Search {
    Type(String),
    System,
    /// The members of one type (`*`: of every type) of the compartment of `compartment/id`.
    Compartment {
        compartment: String,
        id: String,
        resource_type: String,
    },
    Everything {
        resource_type: String,
        id: String,
    },
}

/// `GET /fhir/{type}`
pub async fn of_type(
    req: HttpRequest,
    state: State,
    access: Access,
    path: web::Path<String>,
) -> ApiResult {
    let get = Get::of(&req, &state);
    respond(&req, &state, &access, get, Search::Type(path.into_inner())).await
}

/// `POST /fhir/{type}/_search` with a form body (and maybe a query string too).
pub async fn of_type_post(
    req: HttpRequest,
    state: State,
    access: Access,
    path: web::Path<String>,
    payload: web::Payload,
) -> ApiResult {
    let resource_type = path.into_inner();
    check_type(&resource_type)?;
    let mut get = Get::of(&req, &state);
    get.params.extend(read_form(&req, payload, &state).await?);
    respond(&req, &state, &access, get, Search::Type(resource_type)).await
}

/// `GET /fhir?_type=A,B&...` (and `GET /fhir/?...`): all types, or those `_type` names.
pub async fn system(req: HttpRequest, state: State, access: Access) -> ApiResult {
    let get = Get::of(&req, &state);
    respond(&req, &state, &access, get, Search::System).await
}

/// `GET /fhir/{compartment}/{id}/{type}`: the members of one type (`*`: of every type) of the
/// compartment of `{compartment}/{id}`.
pub async fn compartment(
    req: HttpRequest,
    state: State,
    access: Access,
    path: web::Path<(String, String, String)>,
) -> ApiResult {
    let (compartment, id, resource_type) = path.into_inner();
    let what = Search::Compartment {
        compartment,
        id,
        resource_type,
    };
    let get = Get::of(&req, &state);
    respond(&req, &state, &access, get, what).await
}

/// `GET /fhir/{Patient|Encounter}/{id}/$everything`: the resource, its compartment, and what
/// they refer to (`search.mode` `include`), paged like a search. `_since` keeps resources
/// updated since an instant, `_type` the types named; a Patient's `start` and `end` keep the
/// resources with care in that period (or without a date of care). It reads: it needs `r` on
/// the resource, and holds only what the client may read.
pub async fn everything(
    req: HttpRequest,
    state: State,
    access: Access,
    path: web::Path<(String, String)>,
) -> ApiResult {
    let (resource_type, id) = path.into_inner();
    let get = Get::of(&req, &state);
    let what = Search::Everything { resource_type, id };
    respond(&req, &state, &access, get, what).await
}

/// Answers a search over HTTP once the index holds the writes before it to the types it
/// reads (read your writes).
async fn respond(
    req: &HttpRequest,
    state: &AppState,
    access: &Access,
    get: Get,
    what: Search,
) -> ApiResult {
    negotiate(req)?;
    let plan = plan(state, access, get.params.clone(), what)?;
    let caught_up = state.search.catch_up_on(&state.store, plan.reads()).await;
    let body = run(state, access, &get, plan, caught_up)?;
    Ok(HttpResponse::Ok().content_type(FHIR_JSON).body(body))
}

/// The searchset Bundle (a page of it) of the search `what` with `get`'s parameters, within
/// what `access` may search (for `$everything`, read); `caught_up` says whether the index held
/// every earlier write. The GET entries of Bundles come here.
pub(super) fn searchset(
    state: &AppState,
    access: &Access,
    get: &Get,
    what: Search,
    caught_up: bool,
) -> Result<Vec<u8>, FhirError> {
    let plan = plan(state, access, get.params.clone(), what)?;
    run(state, access, get, plan, caught_up)
}

/// What the search `what` with `params` searches, within what `access` may search.
fn plan(
    state: &AppState,
    access: &Access,
    params: Vec<(String, String)>,
    what: Search,
) -> Result<Plan, FhirError> {
    Ok(match what {
        Search::Type(resource_type) => {
            check_type(&resource_type)?;
            let target = Target::of_type(&resource_type);
            let view = access.search_view(Permission::Search, &target.resource_types)?;
            Plan::of(target, view, params)
        }
        Search::System => {
            let target = Target {
                resource_types: named_types(&params)?,
                ..Target::default()
            };
            let view = access.search_view(Permission::Search, &target.resource_types)?;
            Plan::of(target, view, params)
        }
        Search::Compartment {
            compartment,
            id,
            resource_type,
        } => {
            check_compartment(&compartment)?;
            check_id(&id)?;
            let resource_types = if resource_type == "*" {
                Vec::new()
            } else {
                check_type(&resource_type)?;
                vec![resource_type]
            };
            let target = Target {
                resource_types,
                compartment: Some((compartment, id)),
                ..Target::default()
            };
            let view = access.search_view(Permission::Search, &target.resource_types)?;
            Plan::of(target, view, params)
        }
        Search::Everything {
            resource_type: compartment,
            id,
        } => everything_plan(state, access, compartment, id, params)?,
    })
}

/// The plan of `$everything` of `compartment/id`, which the client must be able to read.
fn everything_plan(
    state: &AppState,
    access: &Access,
    compartment: String,
    id: String,
    params: Vec<(String, String)>,
) -> Result<Plan, FhirError> {
    if !EVERYTHING.contains(&compartment.as_str()) {
        return Err(FhirError::not_found(format!(
            "$everything is an operation of Patient and Encounter, not of {compartment}"
        )));
    }
    check_id(&id)?;
    access.require(Permission::Read, Some(&compartment))?;
    let absent = || FhirError::not_found(format!("{compartment}/{id} is not here"));
    let current = access.current(
        &state.search,
        &state.store,
        Permission::Read,
        &compartment,
        &id,
    )?;
    if !matches!(current, Some((_, Some(_)))) {
        return Err(absent());
    }
    // Patient's `start` and `end` (R4's Encounter $everything has none: there they are
    // unknown parameters).
    let care = if compartment == "Patient" {
        care_period(&params)?
    } else {
        None
    };
    let mut filters = Vec::new();
    for (name, value) in &params {
        match name.as_str() {
            "_since" => filters.push(("_lastUpdated".to_string(), format!("ge{value}"))),
            "start" | "end" if care.is_some() => {}
            _ => filters.push((name.clone(), value.clone())),
        }
    }
    let target = Target {
        resource_types: named_types(&params)?,
        compartment: Some((compartment, id)),
        care,
    };
    Ok(Plan {
        target,
        view: access.view(Permission::Read),
        params,
        filters,
        everything: true,
    })
}

/// `$everything`'s `start` and `end` (dates, each optional) as one period, from the start of
/// `start` to the end of `end`; None when neither is given.
fn care_period(params: &[(String, String)]) -> Result<Option<Period>, FhirError> {
    let bound = |name: &str| -> Result<Option<Period>, FhirError> {
        let Some((_, value)) = params
            .iter()
            .rev()
            .find(|(n, v)| n == name && !v.is_empty())
        else {
            return Ok(None);
        };
        parse_period(value).map(Some).map_err(|reason| {
            FhirError::bad_request(IssueCode::Invalid, format!("{name}: {reason}"))
        })
    };
    let (start, end) = (bound("start")?, bound("end")?);
    if start.is_none() && end.is_none() {
        return Ok(None);
    }
    Ok(Some(Period {
        start: start.map_or(i64::MIN, |p| p.start),
        end: end.map_or(i64::MAX, |p| p.end),
    }))
}

/// The types a `_type` parameter names, each once.
fn named_types(params: &[(String, String)]) -> Result<Vec<String>, FhirError> {
    let mut types = Vec::new();
    for (_, value) in params.iter().filter(|(name, _)| name == "_type") {
        for name in value.split(',').filter(|n| !n.is_empty()) {
            check_type(name)?;
            types.push(name.to_string());
        }
    }
    types.sort();
    types.dedup();
    Ok(types)
}

fn check_compartment(compartment: &str) -> Result<(), FhirError> {
    if compartment::is_compartment(compartment) {
        Ok(())
    } else {
        Err(FhirError::not_found(format!(
            "{compartment} is not a compartment: there are {}",
            compartment::types().collect::<Vec<_>>().join(", ")
        )))
    }
}

/// What [`run`] searches.
struct Plan {
    /// The types searched, maybe a compartment.
    target: Target,
    /// What the client may find.
    view: View,
    /// The parameters as the client sent them: the controls come from them, and the links
    /// repeat them.
    params: Vec<(String, String)>,
    /// What the planner gets: `params`, or what `$everything`'s parameters become.
    filters: Vec<(String, String)>,
    /// `$everything`: every resource the matches refer to is added.
    everything: bool,
}

impl Plan {
    /// A plain search of `target` with `params`.
    fn of(target: Target, view: View, params: Vec<(String, String)>) -> Plan {
        Plan {
            target,
            view,
            filters: params.clone(),
            params,
            everything: false,
        }
    }

    /// The types whose documents the search reads from the index ([`Target::reads`]); `None`
    /// for any (`$everything` adds what its matches refer to, of any type).
    fn reads(&self) -> Option<&[String]> {
        if self.everything {
            return None;
        }
        self.target.reads(&self.params, &self.view)
    }
}

/// The parameters that say which page a search answers; links set them anew.
const PAGING: &[&str] = &["_count", "_offset", "_cursor", "_snapshot"];

/// Runs a search of `target` within `view`; `everything` adds what the matches refer to, as
/// `$everything` does. Included resources are those of them the client may read.
fn run(
    state: &AppState,
    access: &Access,
    get: &Get,
    search: Plan,
    caught_up: bool,
) -> Result<Vec<u8>, FhirError> {
    let params = &search.params;
    let given: Vec<(String, String)> = params
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .cloned()
        .collect();
    let subset = Subset::parse(&given)?;
    let control = |name: &str| {
        given
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let number = |name: &str, default: usize| -> Result<usize, FhirError> {
        control(name).map_or(Ok(default), |v| {
            v.parse().map_err(|_| {
                FhirError::bad_request(
                    IssueCode::Invalid,
                    format!("{name}={v} is not a whole number"),
                )
            })
        })
    };
    let limits = &state.search.limits;
    let asked = number("_count", state.config.default_count)?;
    let count = asked.min(state.config.max_count);
    let offset = number("_offset", 0)?;
    if offset > limits.offset {
        return Err(too_costly(format!(
            "_offset is at most {} (--search-max-offset): page on with the next links, whose \
             cost does not grow with the page's position",
            limits.offset
        )));
    }
    let after = control("_cursor")
        .map(Cursor::parse)
        .transpose()
        .map_err(|reason| FhirError::bad_request(IssueCode::Invalid, reason))?;
    let snapshot = control("_snapshot").and_then(|v| v.parse().ok());
    let summary_count = control("_summary") == Some("count");
    let total = control("_total") != Some("none") || summary_count;
    let strict = get.strict;

    let (mut directives, mut ignored) = (Vec::new(), Vec::new());
    for (name, value) in &given {
        match Directive::parse(state.search.registry, name, value) {
            None => {}
            Some(_) if directives.len() + ignored.len() >= limits.includes => {
                return Err(too_costly(format!(
                    "a search has at most {} _include and _revinclude (--search-max-includes)",
                    limits.includes
                )));
            }
            Some(Ok(directive)) => directives.push(directive),
            Some(Err(reason)) if strict => {
                return Err(FhirError::bad_request(
                    IssueCode::NotSupported,
                    format!("{name}={value}: {reason}"),
                ));
            }
            Some(Err(reason)) => ignored.push(Ignored {
                name: name.clone(),
                value: value.clone(),
                reason,
            }),
        }
    }

    let mut page = state.search.search(&Request {
        target: search.target.clone(),
        params: search.filters.clone(),
        strict,
        count: if summary_count { 0 } else { count },
        offset,
        after: after.clone(),
        snapshot,
        total,
        view: search.view,
    })?;
    page.ignored.extend(ignored);
    // A resource deleted since the snapshot was taken is left out.
    let mut matches = load(&state.store, &page.matches)?;
    // Included resources are those the client may read: judged as they are found, so that
    // nothing it may not read is followed further.
    let readable = access.view(Permission::Read);
    let included = if search.everything {
        let types = &search.target.resource_types;
        let keep = |t: &str| types.is_empty() || types.iter().any(|k| k == t);
        referenced(&state.search, &state.store, &matches, keep, &readable)?
    } else {
        include(
            &state.search,
            &state.store,
            &directives,
            &matches,
            &readable,
        )?
    };
    if let Some(subset) = &subset {
        // After the includes, which follow the references of the whole resources; included
        // resources are not cut.
        for (_, _, version) in &mut matches {
            version.body = summary::subset(&version.body, subset)?;
        }
    }
    let mut notes = Vec::new();
    if asked > count {
        notes.push(format!(
            "_count={asked} is more than a page holds: pages hold at most {count} (--max-count)"
        ));
    }
    let position = Position {
        count,
        offset,
        after: after.as_ref(),
        summary_count,
    };
    let links = links(get, params, &page, &position);
    Ok(render(
        &get.base,
        &page,
        &links,
        (&matches, &included),
        caught_up,
        &notes,
    ))
}

/// Which page of its search a page is.
struct Position<'a> {
    count: usize,
    offset: usize,
    /// The cursor the page started after.
    after: Option<&'a Cursor>,
    summary_count: bool,
}

/// The `self`, `next` and `previous` links of a page: the client's parameters but those
/// ignored (and empty ones), then the page's `_count` and position. A page after a cursor has
/// no `previous` link; one at an `_offset` has.
fn links(
    get: &Get,
    params: &[(String, String)],
    page: &Page,
    position: &Position,
) -> Vec<(&'static str, String)> {
    let path = get.path.strip_suffix("/_search").unwrap_or(&get.path);
    let path = path.trim_end_matches('/');
    let kept: Vec<&(String, String)> = params
        .iter()
        .filter(|(name, value)| {
            !value.is_empty()
                && !PAGING.contains(&name.as_str())
                && !page
                    .ignored
                    .iter()
                    .any(|i| &i.name == name && &i.value == value)
        })
        .collect();
    let link = |paging: &[(&str, String)]| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in &kept {
            query.append_pair(name, value);
        }
        query.append_pair("_count", &position.count.to_string());
        for (name, value) in paging {
            query.append_pair(name, value);
        }
        get.url(path, &query.finish())
    };
    let snapshot = || ("_snapshot", page.snapshot.to_string());
    let mut here = Vec::new();
    if position.offset > 0 {
        here.push(("_offset", position.offset.to_string()));
    }
    if let Some(after) = position.after {
        here.push(("_cursor", after.encode()));
    }
    if !here.is_empty() {
        here.push(snapshot());
    }
    let mut links = vec![("self", link(&here))];
    if let Some(next) = &page.next
        && !position.summary_count
    {
        links.push(("next", link(&[("_cursor", next.encode()), snapshot()])));
    }
    if position.offset > 0 && position.after.is_none() {
        let previous = position.offset.saturating_sub(position.count);
        let mut paging = Vec::new();
        if previous > 0 {
            paging.push(("_offset", previous.to_string()));
        }
        paging.push(snapshot());
        links.push(("previous", link(&paging)));
    }
    links
}

/// The searchset Bundle of a page, with an outcome entry for what the client should know:
/// parameters ignored, includes cut, `notes`, an index that had not caught up.
fn render(
    base: &str,
    page: &Page,
    links: &[(&str, String)],
    (matches, included): (&[Found], &Included),
    caught_up: bool,
    notes: &[String],
) -> Vec<u8> {
    let mut bundle = BundleWriter::new("searchset");
    if let Some(total) = page.total {
        bundle.total(total as u64);
    }
    bundle.links(links);
    let found = matches.iter().map(|f| (f, "match"));
    for ((resource_type, id, version), mode) in
        found.chain(included.resources.iter().map(|f| (f, "include")))
    {
        bundle.entry(Entry {
            full_url: Some(format!("{base}/{resource_type}/{id}")),
            resource: Some(&version.body),
            search_mode: Some(mode),
            ..Entry::default()
        });
    }
    let mut issues = Vec::new();
    if included.truncated {
        issues.push(json!({"severity": "warning", "code": "too-costly",
            "diagnostics": format!("the included resources were cut at {MAX_INCLUDES}")}));
    }
    if included.unfinished {
        issues.push(json!({"severity": "warning", "code": "too-costly",
            "diagnostics": "_include:iterate was stopped after its last round (--search-max-iterations): more resources may be referred to"}));
    }
    for Ignored { name, reason, .. } in &page.ignored {
        issues.push(json!({"severity": "warning", "code": "not-supported",
            "diagnostics": format!("{name} was ignored: {reason}")}));
    }
    for note in notes {
        issues.push(json!({"severity": "information", "code": "informational",
            "diagnostics": note}));
    }
    if !caught_up {
        issues.push(json!({"severity": "warning", "code": "incomplete",
            "diagnostics": "the search index had not caught up with the latest writes: the results may be stale"}));
    }
    if !issues.is_empty() {
        let report = json!({"resourceType": "OperationOutcome", "issue": issues});
        let report = serde_json::to_vec(&report).expect("serializes");
        bundle.entry(Entry {
            resource: Some(&report),
            search_mode: Some("outcome"),
            ..Entry::default()
        });
    }
    bundle.finish()
}
