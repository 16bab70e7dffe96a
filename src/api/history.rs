//! The history interactions: of one resource, of a type, of the whole system; over HTTP and
//! as GET entries of Bundles ([`bundle`]).

use super::get::Get;
use super::http::{etag, negotiate};
use super::{ApiResult, AppState};
use crate::auth::scope::Permission;
use crate::auth::{Access, Stored};
use crate::fhir::bundle::{BundleWriter, Entry, Response};
use crate::fhir::datetime::{format_instant, parse_period};
use crate::fhir::resource::{check_id, check_type};
use crate::fhir::{FhirError, IssueCode};
use crate::search::View;
use crate::store::history::{Cursor, Entry as Version, Page, Query, Scope};
use crate::store::tables::{Method, Op};
use actix_web::{HttpRequest, HttpResponse, web};

type State = web::Data<AppState>;

/// `GET /fhir/_history`
pub async fn system(req: HttpRequest, state: State, access: Access) -> ApiResult {
    respond(&req, &state, &access, Scope::System)
}

/// `GET /fhir/{type}/_history`
pub async fn of_type(
    req: HttpRequest,
    state: State,
    access: Access,
    path: web::Path<String>,
) -> ApiResult {
    respond(&req, &state, &access, Scope::Type(&path))
}

/// `GET /fhir/{type}/{id}/_history`
pub async fn instance(
    req: HttpRequest,
    state: State,
    access: Access,
    path: web::Path<(String, String)>,
) -> ApiResult {
    let (resource_type, id) = path.into_inner();
    respond(&req, &state, &access, Scope::Instance(&resource_type, &id))
}

fn respond(req: &HttpRequest, state: &AppState, access: &Access, scope: Scope<'_>) -> ApiResult {
    negotiate(req)?;
    let body = bundle(state, access, &Get::of(req, state), scope)?;
    Ok(HttpResponse::Ok()
        .content_type(super::http::FHIR_JSON)
        .body(body))
}

/// The query parameters history understands; the paging cursor is `_cursor`.
struct Params {
    count: usize,
    since: Option<String>,
    at: Option<String>,
    cursor: Option<Cursor>,
}

fn params(get: &Get, state: &AppState) -> Result<Params, FhirError> {
    let mut params = Params {
        count: state.config.default_count,
        since: None,
        at: None,
        cursor: None,
    };
    for (name, value) in get.params.iter().cloned() {
        let invalid = |what: &str| {
            FhirError::bad_request(IssueCode::Invalid, format!("{name}={value}: {what}"))
        };
        match name.as_str() {
            "_count" => {
                let count: usize = value
                    .parse()
                    .map_err(|_| invalid("not a non-negative whole number"))?;
                params.count = count.min(state.config.max_count);
            }
            "_since" => params.since = Some(value),
            "_at" => params.at = Some(value),
            "_cursor" => {
                params.cursor =
                    Some(Cursor::parse(&value).ok_or_else(|| invalid("not a paging cursor"))?)
            }
            _ => {}
        }
    }
    Ok(params)
}

/// A page of the history of `scope`, the Bundle the HTTP endpoints and the GET entries of
/// Bundles answer with: of the versions the client may read only, pages are filled with them,
/// and links and cursors depend on them alone (see `store::history`). `total` counts the
/// entries of every page, and is left out when the client's view hides some (it would count
/// them).
pub(super) fn bundle(
    state: &AppState,
    access: &Access,
    get: &Get,
    scope: Scope<'_>,
) -> Result<Vec<u8>, FhirError> {
    match scope {
        Scope::System => access.require(Permission::Read, None)?,
        Scope::Type(resource_type) => {
            check_type(resource_type)?;
            access.require(Permission::Read, Some(resource_type))?;
        }
        Scope::Instance(resource_type, id) => {
            check_type(resource_type)?;
            check_id(id)?;
            access.require(Permission::Read, Some(resource_type))?;
            // A resource the client may not read now has no history for it either.
            if super::crud::readable_current(state, access, resource_type, id)?.is_none() {
                return Err(super::crud::missing(resource_type, id));
            }
        }
    }
    let params = params(get, state)?;
    let period = |name: &str, value: &Option<String>| {
        value
            .as_deref()
            .map(|text| {
                parse_period(text)
                    .map_err(|e| FhirError::bad_request(IssueCode::Invalid, format!("{name}: {e}")))
            })
            .transpose()
    };
    let query = Query {
        scope,
        since: period("_since", &params.since)?.map(|p| p.start),
        at: period("_at", &params.at)?,
        count: params.count,
        after: params.cursor.clone(),
    };
    let readable = |entries: &[Version]| {
        let versions: Vec<Stored> = entries
            .iter()
            .map(|entry| Stored {
                resource_type: &entry.resource_type,
                id: &entry.id,
                vid: entry.vid,
                last_updated: entry.last_updated,
                body: (entry.op != Op::Delete).then_some(entry.body.as_slice()),
            })
            .collect();
        access.visible_versions(&state.search, &state.store, Permission::Read, &versions)
    };
    let Some(page) = state.store.history(&query, readable)? else {
        let Scope::Instance(resource_type, id) = scope else {
            unreachable!("only an instance can be missing")
        };
        return Err(super::crud::missing(resource_type, id));
    };
    let unconfined = match scope {
        Scope::System => access.view(Permission::Read) == View::All,
        Scope::Type(resource_type) | Scope::Instance(resource_type, _) => {
            !access.confined(Permission::Read, resource_type)
        }
    };
    let total = if unconfined {
        Some(state.store.history_total(&query)?)
    } else {
        None
    };
    Ok(render(get, &params, &page, total))
}

fn render(get: &Get, params: &Params, page: &Page, total: Option<u64>) -> Vec<u8> {
    let base = &get.base;
    let mut links = vec![("self", get.url(&get.path, &get.query))];
    if let Some(next) = &page.next {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("_count", &params.count.to_string());
        if let Some(since) = &params.since {
            query.append_pair("_since", since);
        }
        if let Some(at) = &params.at {
            query.append_pair("_at", at);
        }
        query.append_pair("_cursor", &next.to_string());
        links.push(("next", get.url(&get.path, &query.finish())));
    }
    let mut bundle = BundleWriter::new("history");
    if let Some(total) = total {
        bundle.total(total);
    }
    bundle.links(&links);
    for entry in &page.entries {
        let instance = format!("{}/{}", entry.resource_type, entry.id);
        let request_url = match entry.method {
            Method::Post => entry.resource_type.clone(),
            Method::Put | Method::Delete => instance.clone(),
        };
        let status = match entry.op {
            Op::Create => "201",
            Op::Update => "200",
            Op::Delete | Op::Erased => "204",
        };
        bundle.entry(Entry {
            full_url: Some(format!("{base}/{instance}")),
            resource: (entry.op != Op::Delete).then_some(entry.body.as_slice()),
            request: Some((entry.method.as_str(), request_url)),
            response: Some(Response {
                status: status.into(),
                location: None,
                etag: Some(etag(entry.vid)),
                last_modified: Some(format_instant(entry.last_updated)),
                outcome: None,
            }),
            ..Entry::default()
        });
    }
    bundle.finish()
}
