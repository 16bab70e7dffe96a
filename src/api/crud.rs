//! The instance-level interactions: create, read, vread, update, delete.

use super::http::{
    base_url, etag, header_str, if_match, negotiate, prefer_return, query_pairs, read_body,
    version_headers,
};
use super::{ApiResult, AppState, binary};
use crate::auth::scope::Permission;
use crate::auth::{Access, Stored};
use crate::cdc::subscriptions;
use crate::fhir::datetime::parse_http_date;
use crate::fhir::outcome::outcome;
use crate::fhir::resource::{check_id, check_type, id_of, parse_etag, parse_resource};
use crate::fhir::summary::{self, Subset};
use crate::fhir::{FhirError, IssueCode, Return, Severity};
use crate::store::commit::{Action, Applied, Write};
use crate::store::tables::{CurrentRecord, Op, VersionRecord};
use crate::validate::Issue;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};

type State = web::Data<AppState>;

/// `POST /fhir/{type}`: create with a server-assigned id.
pub async fn create(
    req: HttpRequest,
    state: State,
    access: Access,
    path: web::Path<String>,
    payload: web::Payload,
) -> ApiResult {
    negotiate(&req)?;
    let resource_type = path.into_inner();
    check_type(&resource_type)?;
    access.require(Permission::Create, Some(&resource_type))?;
    let body = binary::read_resource(&req, payload, &state, &resource_type, None).await?;
    if let Some(criteria) = header_str(
        req.headers(),
        header::HeaderName::from_static("if-none-exist"),
    ) {
        state.search.catch_up(&state.store).await;
        // Only what the client may read counts as a match: the match is the answer.
        let view = access.view(Permission::Read);
        match state
            .search
            .matching(&resource_type, criteria, &view)?
            .as_slice()
        {
            [] => {}
            [id] => {
                // One match: the create is not done, and the match is the answer.
                let Some((current, Some(version))) = state.store.read(&resource_type, id)? else {
                    return Err(
                        FhirError::not_found(format!("{resource_type}/{id} is gone")).into(),
                    );
                };
                let mut response = HttpResponse::Ok();
                response.content_type(super::http::FHIR_JSON);
                version_headers(&mut response, current.vid, current.last_updated);
                return Ok(response.body(version.body));
            }
            _ => return Err(several(&resource_type, criteria).into()),
        }
    }
    let resource = parse_resource(&body, Some(&resource_type))?;
    let write = Write {
        resource_type,
        id: uuid::Uuid::new_v4().to_string(),
        action: Action::Create(resource),
        if_match: None,
    };
    let (applied, warnings) = commit_one(&state, &access, write).await?;
    Ok(written(&req, &state, applied, &warnings))
}

/// `PUT /fhir/{type}/{id}`: update, or create with the client's id.
pub async fn update(
    req: HttpRequest,
    state: State,
    access: Access,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> ApiResult {
    negotiate(&req)?;
    let (resource_type, id) = path.into_inner();
    check_type(&resource_type)?;
    check_id(&id)?;
    access.require(Permission::Update, Some(&resource_type))?;
    let expected = if_match(&req)?;
    let body = binary::read_resource(&req, payload, &state, &resource_type, Some(&id)).await?;
    let resource = parse_resource(&body, Some(&resource_type))?;
    match id_of(&resource) {
        Some(found) if found == id => {}
        Some(found) => {
            return Err(FhirError::bad_request(
                IssueCode::Invalid,
                format!("the resource's id '{found}' differs from the id '{id}' in the URL"),
            )
            .at(format!("{resource_type}.id"))
            .into());
        }
        None => {
            return Err(FhirError::bad_request(
                IssueCode::Required,
                format!("an update needs the resource's id: add \"id\": \"{id}\""),
            )
            .at(format!("{resource_type}.id"))
            .into());
        }
    }
    let write = Write {
        resource_type,
        id,
        action: Action::Update(resource),
        if_match: expected,
    };
    let (applied, warnings) = commit_one(&state, &access, write).await?;
    Ok(written(&req, &state, applied, &warnings))
}

/// `DELETE /fhir/{type}/{id}`: a tombstone version; deleting what is not there succeeds.
pub async fn delete(
    req: HttpRequest,
    state: State,
    access: Access,
    path: web::Path<(String, String)>,
) -> ApiResult {
    negotiate(&req)?;
    let (resource_type, id) = path.into_inner();
    check_type(&resource_type)?;
    check_id(&id)?;
    delete_one(&req, &state, &access, resource_type, id).await
}

/// Deletes one resource (a tombstone version) and answers as the delete interaction does.
async fn delete_one(
    req: &HttpRequest,
    state: &AppState,
    access: &Access,
    resource_type: String,
    id: String,
) -> ApiResult {
    let write = Write {
        resource_type,
        id,
        action: Action::Delete,
        if_match: if_match(req)?,
    };
    let (applied, _) = commit_one(state, access, write).await?;
    if prefer_return(req) == Return::OperationOutcome {
        let message = match applied.op {
            Some(_) => format!("deleted {}/{}", applied.resource_type, applied.id),
            None => format!("{}/{} did not exist", applied.resource_type, applied.id),
        };
        let mut response = HttpResponse::Ok();
        response.content_type(super::http::FHIR_JSON);
        if applied.op.is_some() {
            response.insert_header((header::ETAG, etag(applied.vid)));
        }
        return Ok(response.body(informational(&message)));
    }
    let mut response = HttpResponse::NoContent();
    if applied.op.is_some() {
        response.insert_header((header::ETAG, etag(applied.vid)));
    }
    Ok(response.finish())
}

/// `GET /fhir/{type}/{id}`. A resource the client may not read is answered as one that does
/// not exist.
pub async fn read(
    req: HttpRequest,
    state: State,
    access: Access,
    path: web::Path<(String, String)>,
) -> ApiResult {
    let (resource_type, id) = path.into_inner();
    let raw = binary::wants_raw(&req, &resource_type);
    if !raw {
        negotiate(&req)?;
    }
    let subset = Subset::parse(&query_pairs(&req))?;
    check_type(&resource_type)?;
    check_id(&id)?;
    access.require(Permission::Read, Some(&resource_type))?;
    match readable_current(&state, &access, &resource_type, &id)? {
        None => Err(missing(&resource_type, &id).into()),
        Some((current, None)) => Err(gone(&resource_type, &id, current.vid).into()),
        Some((current, Some(version))) => {
            if not_modified(&req, current.vid, current.last_updated) {
                let mut response = HttpResponse::NotModified();
                version_headers(&mut response, current.vid, current.last_updated);
                return Ok(response.finish());
            }
            if raw {
                return Ok(binary::raw(
                    &version.body,
                    current.vid,
                    current.last_updated,
                )?);
            }
            let mut response = HttpResponse::Ok();
            response.content_type(super::http::FHIR_JSON);
            version_headers(&mut response, current.vid, current.last_updated);
            Ok(response.body(representation(version.body, subset.as_ref())?))
        }
    }
}

/// The current state of `resource_type/id` (see `Store::read`), or 404 when the client may
/// not read it: such a resource is answered as one that does not exist.
pub(super) fn readable_current(
    state: &AppState,
    access: &Access,
    resource_type: &str,
    id: &str,
) -> Result<Option<(CurrentRecord, Option<VersionRecord>)>, FhirError> {
    let current = state.store.read(resource_type, id)?;
    if let Some((at, version)) = &current {
        let stored = Stored {
            resource_type,
            id,
            vid: at.vid,
            last_updated: at.last_updated,
            body: version.as_ref().map(|v| v.body.as_slice()),
        };
        if !access.sees_stored(&state.search, &state.store, Permission::Read, stored)? {
            return Err(missing(resource_type, id));
        }
    }
    Ok(current)
}

fn missing(resource_type: &str, id: &str) -> FhirError {
    FhirError::not_found(format!("{resource_type}/{id} does not exist"))
}

/// `GET /fhir/{type}/{id}/_history/{vid}`.
pub async fn vread(
    req: HttpRequest,
    state: State,
    access: Access,
    path: web::Path<(String, String, String)>,
) -> ApiResult {
    let (resource_type, id, vid) = path.into_inner();
    let raw = binary::wants_raw(&req, &resource_type);
    if !raw {
        negotiate(&req)?;
    }
    let subset = Subset::parse(&query_pairs(&req))?;
    check_type(&resource_type)?;
    check_id(&id)?;
    access.require(Permission::Read, Some(&resource_type))?;
    let missing = || FhirError::not_found(format!("{resource_type}/{id} has no version {vid}"));
    let number: u64 = vid.parse().map_err(|_| missing())?;
    let version = state.store.vread(&resource_type, &id, number)?;
    if let Some(version) = &version {
        let stored = Stored {
            resource_type: &resource_type,
            id: &id,
            vid: number,
            last_updated: version.last_updated,
            body: (version.op != Op::Delete).then_some(version.body.as_slice()),
        };
        if !access.sees_stored(&state.search, &state.store, Permission::Read, stored)? {
            return Err(missing().into());
        }
    }
    match version {
        None => Err(missing().into()),
        Some(version) if version.op == Op::Delete => Err(FhirError::new(
            410,
            IssueCode::Deleted,
            format!("version {vid} of {resource_type}/{id} is its deletion"),
        )
        .into()),
        Some(version) if raw => Ok(binary::raw(&version.body, number, version.last_updated)?),
        Some(version) => {
            let mut response = HttpResponse::Ok();
            response.content_type(super::http::FHIR_JSON);
            version_headers(&mut response, number, version.last_updated);
            Ok(response.body(representation(version.body, subset.as_ref())?))
        }
    }
}

/// Conditional update and delete, `PUT|DELETE /fhir/{type}?criteria`: the criteria pick the
/// resource. No match: an update creates, a delete does nothing; several: 412.
pub async fn conditional(
    req: HttpRequest,
    state: State,
    access: Access,
    path: web::Path<String>,
    payload: web::Payload,
) -> ApiResult {
    negotiate(&req)?;
    let resource_type = path.into_inner();
    check_type(&resource_type)?;
    let permission = if req.method() == actix_web::http::Method::DELETE {
        Permission::Delete
    } else {
        Permission::Update
    };
    access.require(permission, Some(&resource_type))?;
    let criteria = req.query_string();
    state.search.catch_up(&state.store).await;
    // The criteria pick among what the client may change, and nothing else.
    let view = access.view(permission);
    let ids = state.search.matching(&resource_type, criteria, &view)?;
    if ids.len() > 1 {
        return Err(several(&resource_type, criteria).into());
    }
    if permission == Permission::Delete {
        return match ids.into_iter().next() {
            Some(id) => delete_one(&req, &state, &access, resource_type, id).await,
            None => Ok(HttpResponse::NoContent().finish()),
        };
    }
    let body = read_body(&req, payload, &state).await?;
    let resource = parse_resource(&body, Some(&resource_type))?;
    let (id, action) = match (ids.into_iter().next(), id_of(&resource).map(String::from)) {
        (Some(id), Some(given)) if given != id => {
            return Err(FhirError::bad_request(
                IssueCode::Invalid,
                format!(
                    "the criteria match {resource_type}/{id}, but the resource's id is '{given}'"
                ),
            )
            .at(format!("{resource_type}.id"))
            .into());
        }
        (Some(id), _) => (id, Action::Update(resource)),
        (None, Some(given)) => (given, Action::Update(resource)),
        (None, None) => (uuid::Uuid::new_v4().to_string(), Action::Create(resource)),
    };
    let write = Write {
        resource_type,
        id,
        action,
        if_match: if_match(&req)?,
    };
    let (applied, warnings) = commit_one(&state, &access, write).await?;
    Ok(written(&req, &state, applied, &warnings))
}

/// The body a read or vread answers with: the stored version, or the part of it that
/// `_summary` or `_elements` asks for.
fn representation(stored: Vec<u8>, subset: Option<&Subset>) -> Result<Vec<u8>, FhirError> {
    match subset {
        Some(subset) => summary::subset(&stored, subset),
        None => Ok(stored),
    }
}

fn several(resource_type: &str, criteria: &str) -> FhirError {
    FhirError::new(
        412,
        IssueCode::Conflict,
        format!("the criteria '{criteria}' match more than one {resource_type}"),
    )
}

/// Commits one write the client's access allows (see [`Access::check_write`]) and the
/// validation policy accepts; returns it with the validator's warnings.
async fn commit_one(
    state: &AppState,
    access: &Access,
    mut write: Write,
) -> Result<(Applied, Vec<Issue>), super::ApiError> {
    access.check_write(&state.search, &state.store, &mut write)?;
    subscriptions::check_write(&state.config.subscription_endpoints, &write).await?;
    let mut warnings = match &write.action {
        Action::Create(resource) | Action::Update(resource) => {
            state.validator.check_write(resource)?
        }
        Action::Delete => Vec::new(),
    };
    let applied = state.store.commit(vec![write]).await?.pop();
    let applied = applied.expect("one write, one result");
    if let Some(body) = &applied.body {
        warnings.extend(state.validator.learn(&applied.resource_type, body));
    }
    Ok((applied, warnings))
}

/// The answer to a create or update: 201 when the resource came into existence, 200 when it
/// was updated, with `Location`, `ETag` and `Last-Modified`, and the body `Prefer` asks for.
/// The validator's warnings are in the OperationOutcome of `Prefer: return=OperationOutcome`,
/// and one `X-FHIR-Request-Validation` header each whatever the body.
fn written(
    req: &HttpRequest,
    state: &AppState,
    applied: Applied,
    warnings: &[Issue],
) -> HttpResponse {
    let status = match applied.op {
        Some(Op::Create) => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    let location = format!(
        "{}/{}/{}/_history/{}",
        base_url(req, state),
        applied.resource_type,
        applied.id,
        applied.vid
    );
    let mut response = HttpResponse::build(status);
    response.insert_header((header::LOCATION, location));
    version_headers(&mut response, applied.vid, applied.last_updated);
    for warning in warnings.iter().take(MAX_WARNING_HEADERS) {
        response.append_header((VALIDATION_HEADER, header_text(warning)));
    }
    match prefer_return(req) {
        Return::Minimal => response.finish(),
        Return::Representation => response
            .content_type(super::http::FHIR_JSON)
            .body(applied.body.unwrap_or_default()),
        Return::OperationOutcome => {
            let verb = if status == StatusCode::CREATED {
                "created"
            } else {
                "updated"
            };
            let message = format!(
                "{verb} {}/{} version {}",
                applied.resource_type, applied.id, applied.vid
            );
            let mut body = outcome(
                Severity::Information,
                IssueCode::Informational,
                &message,
                None,
            );
            if let Some(issues) = body["issue"].as_array_mut() {
                issues.extend(warnings.iter().map(Issue::to_outcome_issue));
            }
            response
                .content_type(super::http::FHIR_JSON)
                .body(body.to_string())
        }
    }
}

/// The response header that carries a validation warning about the written resource, one
/// header per warning (as HAPI FHIR's validating interceptor does).
const VALIDATION_HEADER: &str = "X-FHIR-Request-Validation";

/// At most this many warning headers; all are in `Prefer: return=OperationOutcome`'s body.
const MAX_WARNING_HEADERS: usize = 20;

/// `warning Patient.text: dom-6: ...`, in visible ASCII (what a header value may hold).
fn header_text(issue: &Issue) -> String {
    format!(
        "{} {}: {}",
        issue.severity.as_str(),
        issue.expression,
        issue.diagnostics
    )
    .chars()
    .map(|c| {
        if c == ' ' || c.is_ascii_graphic() {
            c
        } else {
            '?'
        }
    })
    .collect()
}

fn informational(message: &str) -> String {
    outcome(
        Severity::Information,
        IssueCode::Informational,
        message,
        None,
    )
    .to_string()
}

fn gone(resource_type: &str, id: &str, vid: u64) -> FhirError {
    FhirError::new(
        410,
        IssueCode::Deleted,
        format!("{resource_type}/{id} was deleted (version {vid})"),
    )
}

/// `If-None-Match` naming the current version, or `If-Modified-Since` not before it.
fn not_modified(req: &HttpRequest, vid: u64, last_updated: i64) -> bool {
    let headers = req.headers();
    if let Some(tags) = header_str(headers, header::IF_NONE_MATCH) {
        return tags
            .split(',')
            .any(|tag| tag.trim() == "*" || parse_etag(tag) == Some(vid));
    }
    header_str(headers, header::IF_MODIFIED_SINCE)
        .and_then(parse_http_date)
        .is_some_and(|since| last_updated < since + 1_000_000)
}
