//! Search: `GET /fhir/{type}`, `POST /fhir/{type}/_search`, `GET /fhir?_type=...`, compartment
//! searches (`GET /fhir/Patient/123/Observation`, `GET /fhir/Patient/123/*`) and
//! `$everything` of a Patient or an Encounter.
//!
//! A search first waits until the index holds every write committed before it (read your
//! writes, at most `search::CATCH_UP`); past that it runs anyway and says the results may be
//! stale. Pages after the first reuse the first page's index snapshot, and start after the
//! last match of the page before (`_cursor`): a page costs the same at any depth.
//!
//! Links repeat the search: the client's parameters but those ignored (and empty), with the
//! page's `_count` and position.

use super::http::{FHIR_JSON, base_url, header_str, negotiate, query_pairs, read_form};
use super::{ApiResult, AppState};
use crate::auth::scope::Permission;
use crate::auth::{Access, Stored};
use crate::fhir::bundle::{BundleWriter, Entry};
use crate::fhir::datetime::{Period, parse_period};
use crate::fhir::resource::{check_id, check_type};
use crate::fhir::summary::{self, Subset};
use crate::fhir::{FhirError, IssueCode};
use crate::search::include::{Directive, Found, Included, MAX_INCLUDES, include, load, referenced};
use crate::search::limits::too_costly;
use crate::search::sort::Cursor;
use crate::search::{Ignored, Page, Request, Target, View, compartment};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

type State = web::Data<AppState>;

/// The types with a `$everything` operation.
pub const EVERYTHING: &[&str] = &["Patient", "Encounter"];

/// `GET /fhir/{type}`
pub async fn of_type(
    req: HttpRequest,
    state: State,
    access: Access,
    path: web::Path<String>,
) -> ApiResult {
    check_type(&path)?;
    let target = Target::of_type(&path);
    let view = access.search_view(Permission::Search, &target.resource_types)?;
    run(
        &req,
        &state,
        &access,
        Search::of(target, view, query_pairs(&req)),
    )
    .await
}

/// `POST /fhir/{type}/_search` with a form body (and maybe a query string too).
pub async fn of_type_post(
    req: HttpRequest,
    state: State,
    access: Access,
    path: web::Path<String>,
    payload: web::Payload,
) -> ApiResult {
    check_type(&path)?;
    let target = Target::of_type(&path);
    let view = access.search_view(Permission::Search, &target.resource_types)?;
    let mut params = query_pairs(&req);
    params.extend(read_form(&req, payload, &state).await?);
    run(&req, &state, &access, Search::of(target, view, params)).await
}

/// `GET /fhir?_type=A,B&...` (and `GET /fhir/?...`): all types, or those `_type` names.
pub async fn system(req: HttpRequest, state: State, access: Access) -> ApiResult {
    let params = query_pairs(&req);
    let target = Target {
        resource_types: named_types(&params)?,
        ..Target::default()
    };
    let view = access.search_view(Permission::Search, &target.resource_types)?;
    run(&req, &state, &access, Search::of(target, view, params)).await
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
    run(
        &req,
        &state,
        &access,
        Search::of(target, view, query_pairs(&req)),
    )
    .await
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
    let (compartment, id) = path.into_inner();
    if !EVERYTHING.contains(&compartment.as_str()) {
        return Err(FhirError::not_found(format!(
            "$everything is an operation of Patient and Encounter, not of {compartment}"
        ))
        .into());
    }
    check_id(&id)?;
    access.require(Permission::Read, Some(&compartment))?;
    let absent = || FhirError::not_found(format!("{compartment}/{id} is not here"));
    let Some((current, Some(version))) = state.store.read(&compartment, &id)? else {
        return Err(absent().into());
    };
    let focal = Stored {
        resource_type: &compartment,
        id: &id,
        vid: current.vid,
        last_updated: current.last_updated,
        body: Some(&version.body),
    };
    if !access.sees_stored(&state.search, &state.store, Permission::Read, focal)? {
        return Err(absent().into());
    }
    let params = query_pairs(&req);
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
        compartment: Some((compartment.clone(), id.clone())),
        care,
    };
    let search = Search {
        target,
        view: access.view(Permission::Read),
        params,
        filters,
        everything: true,
    };
    run(&req, &state, &access, search).await
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

/// What a handler asks [`run`] for.
struct Search {
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

impl Search {
    /// A plain search of `target` with `params`.
    fn of(target: Target, view: View, params: Vec<(String, String)>) -> Search {
        Search {
            target,
            view,
            filters: params.clone(),
            params,
            everything: false,
        }
    }
}

/// The parameters that say which page a search answers; links set them anew.
const PAGING: &[&str] = &["_count", "_offset", "_cursor", "_snapshot"];

/// Runs a search of `target` within `view`; `everything` adds what the matches refer to, as
/// `$everything` does. Included resources are those of them the client may read.
async fn run(req: &HttpRequest, state: &AppState, access: &Access, search: Search) -> ApiResult {
    negotiate(req)?;
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
        ))
        .into());
    }
    let after = control("_cursor")
        .map(Cursor::parse)
        .transpose()
        .map_err(|reason| FhirError::bad_request(IssueCode::Invalid, reason))?;
    let snapshot = control("_snapshot").and_then(|v| v.parse().ok());
    let summary_count = control("_summary") == Some("count");
    let total = control("_total") != Some("none") || summary_count;
    let prefer = header_str(req.headers(), header::HeaderName::from_static("prefer")).unwrap_or("");
    let strict = prefer.split(',').any(|p| p.trim() == "handling=strict");

    let (mut directives, mut ignored) = (Vec::new(), Vec::new());
    for (name, value) in &given {
        match Directive::parse(state.search.registry, name, value) {
            None => {}
            Some(_) if directives.len() + ignored.len() >= limits.includes => {
                return Err(too_costly(format!(
                    "a search has at most {} _include and _revinclude (--search-max-includes)",
                    limits.includes
                ))
                .into());
            }
            Some(Ok(directive)) => directives.push(directive),
            Some(Err(reason)) if strict => {
                return Err(FhirError::bad_request(
                    IssueCode::NotSupported,
                    format!("{name}={value}: {reason}"),
                )
                .into());
            }
            Some(Err(reason)) => ignored.push(Ignored {
                name: name.clone(),
                value: value.clone(),
                reason,
            }),
        }
    }

    let caught_up = state.search.catch_up(&state.store).await;
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
    let base = base_url(req, state);
    let links = links(&base, req, params, &page, &position);
    let body = render(
        &base,
        &page,
        &links,
        (&matches, &included),
        caught_up,
        &notes,
    );
    Ok(HttpResponse::Ok().content_type(FHIR_JSON).body(body))
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
    base: &str,
    req: &HttpRequest,
    params: &[(String, String)],
    page: &Page,
    position: &Position,
) -> Vec<(&'static str, String)> {
    let path = req.path().strip_prefix("/fhir").unwrap_or(req.path());
    let path = path.strip_suffix("/_search").unwrap_or(path);
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
        format!("{base}{path}?{}", query.finish())
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
