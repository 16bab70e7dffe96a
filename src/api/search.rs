//! Search: `GET /fhir/{type}`, `POST /fhir/{type}/_search`, `GET /fhir?_type=...`, compartment
//! searches (`GET /fhir/Patient/123/Observation`, `GET /fhir/Patient/123/*`) and
//! `$everything` of a Patient or an Encounter.
//!
//! A search first waits until the index holds every write committed before it (read your
//! writes, at most `search::CATCH_UP`); past that it runs anyway and says the results may be
//! stale. Pages after the first reuse the first page's index snapshot.

use super::http::{FHIR_JSON, base_url, header_str, negotiate, query_pairs, read_form};
use super::{ApiResult, AppState};
use crate::auth::scope::Permission;
use crate::auth::{Access, Stored};
use crate::fhir::bundle::{BundleWriter, Entry};
use crate::fhir::resource::{check_id, check_type};
use crate::fhir::summary::{self, Subset};
use crate::fhir::{FhirError, IssueCode};
use crate::search::include::{Directive, Found, Included, MAX_INCLUDES, include, load, referenced};
use crate::search::{Page, Request, Target, View, compartment};
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
    let params = query_pairs(&req);
    let target = Target::of_type(&path);
    let view = access.search_view(Permission::Search, &target.resource_types)?;
    run(&req, &state, &access, (target, view), params, false).await
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
    run(&req, &state, &access, (target, view), params, false).await
}

/// `GET /fhir?_type=A,B&...`: all types, or those `_type` names.
pub async fn system(req: HttpRequest, state: State, access: Access) -> ApiResult {
    let params = query_pairs(&req);
    let target = Target {
        resource_types: named_types(&params)?,
        compartment: None,
    };
    let view = access.search_view(Permission::Search, &target.resource_types)?;
    run(&req, &state, &access, (target, view), params, false).await
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
    };
    let view = access.search_view(Permission::Search, &target.resource_types)?;
    run(
        &req,
        &state,
        &access,
        (target, view),
        query_pairs(&req),
        false,
    )
    .await
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
    let mut params = query_pairs(&req);
    let target = Target {
        resource_types: named_types(&params)?,
        compartment: Some((compartment.clone(), id.clone())),
    };
    let view = access.view(Permission::Read);
    if let Some((_, since)) = params.iter().find(|(name, _)| name == "_since") {
        let since = ("_lastUpdated".to_string(), format!("ge{since}"));
        params.retain(|(name, _)| name != "_since");
        params.push(since);
    }
    run(&req, &state, &access, (target, view), params, true).await
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
async fn run(
    req: &HttpRequest,
    state: &AppState,
    access: &Access,
    (target, view): (Target, View),
    params: Vec<(String, String)>,
    everything: bool,
) -> ApiResult {
    negotiate(req)?;
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
    let prefer = header_str(req.headers(), header::HeaderName::from_static("prefer")).unwrap_or("");
    let strict = prefer.split(',').any(|p| p.trim() == "handling=strict");

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
                )
                .into());
            }
            Some(Err(reason)) => ignored.push((name.clone(), reason)),
        }
    }

    let caught_up = state.search.catch_up(&state.store).await;
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
    // Included resources are those the client may read: judged as they are found, so that
    // nothing it may not read is followed further.
    let readable = access.view(Permission::Read);
    let included = if everything {
        let types = &target.resource_types;
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
    let base = base_url(req, state);
    let body = render(
        &base,
        req,
        &page,
        (&matches, &included),
        count,
        offset,
        caught_up,
        summary_count,
    );
    Ok(HttpResponse::Ok().content_type(FHIR_JSON).body(body))
}

#[allow(clippy::too_many_arguments)]
fn render(
    base: &str,
    req: &HttpRequest,
    page: &Page,
    (matches, included): (&[Found], &Included),
    count: usize,
    offset: usize,
    caught_up: bool,
    summary_count: bool,
) -> Vec<u8> {
    let path = req.path().strip_prefix("/fhir").unwrap_or(req.path());
    let path = path.strip_suffix("/_search").unwrap_or(path);
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
        format!("{base}{path}?{}", query.finish())
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
