//! Search: `GET /fhir/{type}`, `POST /fhir/{type}/_search`, `GET /fhir?_type=...`, compartment
//! searches (`GET /fhir/Patient/123/Observation`, `GET /fhir/Patient/123/*`) and
//! `$everything` of a Patient or an Encounter.
//!
//! A search first waits until the index holds every write committed before it (read your
//! writes, at most `search::CATCH_UP`); past that it runs anyway and says the results may be
//! stale. Pages after the first reuse the first page's index snapshot.

use super::get::Get;
use super::http::{FHIR_JSON, negotiate, read_form};
use super::{ApiResult, AppState};
use crate::auth::scope::Permission;
use crate::auth::{Access, Stored};
use crate::fhir::bundle::{BundleWriter, Entry};
use crate::fhir::resource::check_type;
use crate::fhir::summary::{self, Subset};
use crate::fhir::{FhirError, IssueCode};
use crate::search::include::{Directive, Found, Included, MAX_INCLUDES, include, load, referenced};
use crate::search::{Candidate, Page, Request, Target, View, compartment};
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

/// `GET /fhir?_type=A,B&...`: all types, or those `_type` names.
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
/// updated since an instant, `_type` the types named. It reads: it needs `r` on the resource,
/// and holds only what the client may read.
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

/// Answers a search over HTTP once the index holds the writes before it (read your writes).
async fn respond(
    req: &HttpRequest,
    state: &AppState,
    access: &Access,
    get: Get,
    what: Search,
) -> ApiResult {
    negotiate(req)?;
    let caught_up = state.search.catch_up(&state.store).await;
    let body = searchset(state, access, &get, what, caught_up)?;
    Ok(HttpResponse::Ok().content_type(FHIR_JSON).body(body))
}

/// The searchset Bundle (a page of it) of the search `what` with `get`'s parameters, within
/// what `access` may search (for `$everything`, read); `caught_up` says whether the index held
/// every earlier write. The HTTP endpoints and the GET entries of Bundles both come here.
pub(super) fn searchset(
    state: &AppState,
    access: &Access,
    get: &Get,
    what: Search,
    caught_up: bool,
) -> Result<Vec<u8>, FhirError> {
    let mut params = get.params.clone();
    let (target, view, everything) = match what {
        Search::Type(resource_type) => {
            check_type(&resource_type)?;
            let target = Target::of_type(&resource_type);
            let view = access.search_view(Permission::Search, &target.resource_types)?;
            (target, view, false)
        }
        Search::System => {
            let target = Target {
                resource_types: named_types(&params)?,
                compartment: None,
            };
            let view = access.search_view(Permission::Search, &target.resource_types)?;
            (target, view, false)
        }
        Search::Compartment {
            compartment,
            id,
            resource_type,
        } => {
            check_compartment(&compartment)?;
            let resource_types = if resource_type == "*" {
                Vec::new()
            } else {
                check_type(&resource_type)?;
                vec![resource_type]
            };
            let target = Target {
                resource_types,
                compartment: Some((compartment, id)),
            };
            let view = access.search_view(Permission::Search, &target.resource_types)?;
            (target, view, false)
        }
        Search::Everything {
            resource_type: compartment,
            id,
        } => {
            if !EVERYTHING.contains(&compartment.as_str()) {
                return Err(FhirError::not_found(format!(
                    "$everything is an operation of Patient and Encounter, not of {compartment}"
                )));
            }
            access.require(Permission::Read, Some(&compartment))?;
            let absent = || FhirError::not_found(format!("{compartment}/{id} is not here"));
            let Some((current, Some(version))) = state.store.read(&compartment, &id)? else {
                return Err(absent());
            };
            let focal = Stored {
                resource_type: &compartment,
                id: &id,
                vid: current.vid,
                last_updated: current.last_updated,
                body: Some(&version.body),
            };
            if !access.sees_stored(&state.search, &state.store, Permission::Read, focal)? {
                return Err(absent());
            }
            let target = Target {
                resource_types: named_types(&params)?,
                compartment: Some((compartment.clone(), id.clone())),
            };
            if let Some((_, since)) = params.iter().find(|(name, _)| name == "_since") {
                let since = ("_lastUpdated".to_string(), format!("ge{since}"));
                params.retain(|(name, _)| name != "_since");
                params.push(since);
            }
            (target, access.view(Permission::Read), true)
        }
    };
    run(
        state,
        access,
        get,
        (target, view),
        params,
        everything,
        caught_up,
    )
}

/// The types a `_type` parameter names.
fn named_types(params: &[(String, String)]) -> Result<Vec<String>, FhirError> {
    let mut types = Vec::new();
    for (_, value) in params.iter().filter(|(name, _)| name == "_type") {
        for name in value.split(',').filter(|n| !n.is_empty()) {
            check_type(name)?;
            types.push(name.to_string());
        }
    }
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

/// Runs a search of `target` within `view`; `everything` adds what the matches refer to, as
/// `$everything` does. Included resources are those of them the client may read.
fn run(
    state: &AppState,
    access: &Access,
    get: &Get,
    (target, view): (Target, View),
    params: Vec<(String, String)>,
    everything: bool,
    caught_up: bool,
) -> Result<Vec<u8>, FhirError> {
    let subset = Subset::parse(&params)?;
    let control = |name: &str| {
        params
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
    let count = number("_count", state.config.default_count)?.min(state.config.max_count);
    let offset = number("_offset", 0)?;
    let snapshot = control("_snapshot").and_then(|v| v.parse().ok());
    let summary_count = control("_summary") == Some("count");
    let total = control("_total") != Some("none") || summary_count;
    let strict = get.strict;

    let (mut directives, mut applied, mut ignored) = (Vec::new(), Vec::new(), Vec::new());
    for (name, value) in &params {
        match Directive::parse(state.search.registry, name, value) {
            None => {}
            Some(Ok(directive)) => {
                directives.push(directive);
                applied.push((name.clone(), value.clone()));
            }
            Some(Err(reason)) if strict => {
                return Err(FhirError::bad_request(
                    IssueCode::NotSupported,
                    format!("{name}={value}: {reason}"),
                ));
            }
            Some(Err(reason)) => ignored.push((name.clone(), reason)),
        }
    }

    let mut page = state.search.search(&Request {
        target: target.clone(),
        params: params.clone(),
        strict,
        count: if summary_count { 0 } else { count },
        offset,
        snapshot,
        total,
        view,
    })?;
    page.ignored.extend(ignored);
    // A resource deleted since the snapshot was taken is left out.
    let mut matches = load(&state.store, &page.matches)?;
    let mut included = if everything {
        let types = &target.resource_types;
        referenced(&state.store, &matches, |t| {
            types.is_empty() || types.iter().any(|k| k == t)
        })?
    } else {
        include(&state.search, &state.store, &directives, &matches)?
    };
    let candidates: Vec<Candidate> = included
        .resources
        .iter()
        .map(|(resource_type, id, version)| Candidate {
            resource_type,
            id,
            last_updated: version.last_updated,
            body: &version.body,
        })
        .collect();
    let readable = access.visible(&state.search, Permission::Read, &candidates)?;
    let mut readable = readable.into_iter();
    included
        .resources
        .retain(|_| readable.next().unwrap_or(false));
    page.used.extend(applied);
    if let Some(subset) = &subset {
        // After the includes, which follow the references of the whole resources; included
        // resources are not cut.
        for (_, _, version) in &mut matches {
            version.body = summary::subset(&version.body, subset)?;
        }
        let (name, value) = subset.query();
        page.used.push((name.to_string(), value));
    }
    Ok(render(
        get,
        &page,
        (&matches, &included),
        count,
        offset,
        caught_up,
        summary_count,
    ))
}

fn render(
    get: &Get,
    page: &Page,
    (matches, included): (&[Found], &Included),
    count: usize,
    offset: usize,
    caught_up: bool,
    summary_count: bool,
) -> Vec<u8> {
    let path = get.path.strip_suffix("/_search").unwrap_or(&get.path);
    let link = |offset: usize, with_snapshot: bool| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in &page.used {
            query.append_pair(name, value);
        }
        query.append_pair("_count", &count.to_string());
        if offset > 0 {
            query.append_pair("_offset", &offset.to_string());
        }
        if with_snapshot {
            query.append_pair("_snapshot", &page.snapshot.to_string());
        }
        get.url(path, &query.finish())
    };
    let mut bundle = BundleWriter::new("searchset");
    if let Some(total) = page.total {
        bundle.total(total as u64);
    }
    let mut links = vec![("self", link(offset, offset > 0))];
    if page.has_more && !summary_count {
        links.push(("next", link(offset + count, true)));
    }
    if offset > 0 {
        links.push(("previous", link(offset.saturating_sub(count), true)));
    }
    bundle.links(&links);
    let found = matches.iter().map(|f| (f, "match"));
    for ((resource_type, id, version), mode) in
        found.chain(included.resources.iter().map(|f| (f, "include")))
    {
        bundle.entry(Entry {
            full_url: Some(format!("{}/{resource_type}/{id}", get.base)),
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
    for (name, reason) in &page.ignored {
        issues.push(json!({"severity": "warning", "code": "not-supported",
            "diagnostics": format!("{name} was ignored: {reason}")}));
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
