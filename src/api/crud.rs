//! The instance-level interactions: create, read, vread, update, delete; also conditional
//! create (`If-None-Exist`, or criteria in the query of the POST), update and delete
//! (`PUT|DELETE /fhir/{type}?criteria`, resolved by `bundle::conditional`).

use super::get::{Answer, Get};
use super::http::{
    base_url, etag, header_str, if_match, negotiate, prefer_return, query_pairs, read_body,
    version_headers,
};
use super::{ApiResult, AppState, binary};
use crate::auth::scope::Permission;
use crate::auth::{Access, Decision, Stored};
use crate::bundle::conditional;
use crate::cdc::subscriptions;
use crate::fhir::outcome::outcome;
use crate::fhir::resource::{check_id, check_type, id_of, parse_etag, parse_resource};
use crate::fhir::summary::{self, Subset};
use crate::fhir::{FhirError, IssueCode, Return, Severity};
use crate::store::commit::{Action, Applied, Write, describe};
use crate::store::tables::{CurrentRecord, Op, VersionRecord};
use crate::validate::Issue;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};

type State = web::Data<AppState>;

/// `POST /fhir/{type}`: create with a server-assigned id; a conditional create with criteria
/// ([`create_criteria`]).
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
    if let Some(criteria) = create_criteria(&req)? {
        let criteria = criteria.as_str();
        // Only what the client may read counts as a match: the match is the answer.
        let view = access.view(Permission::Read);
        state
            .search
            .catch_up_for_criteria(&state.store, &resource_type, criteria, &view)
            .await;
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
            _ => return Err(conditional::several(&resource_type, criteria).into()),
        }
    }
    let intake = parse_resource(&body, Some(&resource_type))?;
    let write = Write {
        resource_type,
        id: uuid::Uuid::new_v4().to_string(),
        action: Action::Create(intake.resource),
        if_match: None,
    };
    let (applied, warnings) = commit_one(&state, &access, write, &intake.dropped).await?;
    Ok(written(&req, &state, applied, &warnings))
}

/// The criteria of a conditional create: `If-None-Exist`, or the query of
/// `POST /fhir/{type}?criteria`, as fhirpy's `get_or_create()` and some other clients send
/// them (`_format` and `_pretty` there are not criteria). Both at once must say the same
/// (the same parameters in any order), else 400: a query on a create is never ignored.
fn create_criteria(req: &HttpRequest) -> Result<Option<String>, FhirError> {
    let header = header_str(
        req.headers(),
        header::HeaderName::from_static("if-none-exist"),
    )
    .map(str::trim)
    .filter(|criteria| !criteria.is_empty());
    let query: Vec<(String, String)> = query_pairs(req)
        .into_iter()
        .filter(|(name, _)| !matches!(name.as_str(), "_format" | "_pretty"))
        .collect();
    let from_query = (!query.is_empty()).then(|| {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&query)
            .finish()
    });
    match (header, from_query) {
        (Some(header), Some(from_query)) => {
            let sorted = |text: &str| {
                let mut pairs: Vec<(String, String)> = form_urlencoded::parse(text.as_bytes())
                    .into_owned()
                    .collect();
                pairs.sort();
                pairs
            };
            if sorted(header) != sorted(&from_query) {
                return Err(FhirError::bad_request(
                    IssueCode::Invalid,
                    format!(
                        "the create has criteria in If-None-Exist ('{header}') and others in \
                         its query ('{from_query}'): send one of them"
                    ),
                ));
            }
            Ok(Some(header.to_string()))
        }
        (header, from_query) => Ok(header.map(String::from).or(from_query)),
    }
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
    let body = binary::read_resource(&req, payload, &state, &resource_type, Some(&id)).await?;
    let intake = parse_resource(&body, Some(&resource_type))?;
    let resource = intake.resource;
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
    let pinned = if_none_match(&req, &state, &resource_type, &id)?;
    let write = Write {
        resource_type,
        id,
        action: Action::Update(resource),
        if_match: if_match(&req)?.or(pinned),
    };
    let (applied, warnings) = commit_one(&state, &access, write, &intake.dropped).await?;
    Ok(written(&req, &state, applied, &warnings))
}

/// `If-None-Match` on an update (RFC 9110 §13.1.2): with `*` it happens only if the resource
/// does not exist (a deleted one does not), so `PUT` creates and never replaces; with
/// versions, only if the current version is none of them. 412 otherwise. Returns the version
/// judged (0 for none), for the write to be pinned to: a write in between makes it a 412 too.
fn if_none_match(
    req: &HttpRequest,
    state: &AppState,
    resource_type: &str,
    id: &str,
) -> Result<Option<u64>, FhirError> {
    let Some(tags) = header_str(req.headers(), header::IF_NONE_MATCH) else {
        return Ok(None);
    };
    let current = state.store.read(resource_type, id)?;
    let live = current
        .as_ref()
        .filter(|(_, version)| version.is_some())
        .map(|(state, _)| state.vid);
    for tag in tags.split(',').map(str::trim) {
        let matched = match (tag, parse_etag(tag)) {
            ("*", _) => live.is_some(),
            (_, Some(vid)) => live == Some(vid),
            (_, None) => {
                return Err(FhirError::bad_request(
                    IssueCode::Invalid,
                    format!("If-None-Match: {tag} is neither * nor a version ETag"),
                ));
            }
        };
        if matched {
            return Err(FhirError::new(
                412,
                IssueCode::Conflict,
                format!(
                    "{resource_type}/{id} exists (version {}) and If-None-Match: {tags} asks \
                     for it not to",
                    live.unwrap_or_default()
                ),
            ));
        }
    }
    Ok(Some(current.map_or(0, |(state, _)| state.vid)))
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
    let write = Write {
        resource_type,
        id,
        action: Action::Delete,
        if_match: if_match(&req)?,
    };
    delete_all(&req, &state, &access, vec![write]).await
}

/// Deletes the resources of `writes` (tombstone versions) in one commit and answers as the
/// delete interaction does: 204 (200 with an OperationOutcome for `Prefer:
/// return=OperationOutcome`), with the deletion's `ETag` when it deleted one resource.
async fn delete_all(
    req: &HttpRequest,
    state: &AppState,
    access: &Access,
    writes: Vec<Write>,
) -> ApiResult {
    // What the client may not see is deleted as what does not exist: nothing is committed.
    let mut applied = Vec::new();
    let mut commit = Vec::new();
    for mut write in writes {
        match access.check_write(&state.search, &state.store, &mut write)? {
            Decision::Absent(nothing) => applied.push(nothing),
            Decision::Commit => commit.push(write),
        }
    }
    if !commit.is_empty() {
        applied.extend(state.store.commit(commit).await?);
    }
    let outcome = prefer_return(req) == Return::OperationOutcome;
    let mut response = if outcome {
        HttpResponse::Ok()
    } else {
        HttpResponse::NoContent()
    };
    if let [one] = applied.as_slice()
        && one.op.is_some()
    {
        response.insert_header((header::ETAG, etag(one.vid)));
    }
    if !outcome {
        return Ok(response.finish());
    }
    response.content_type(super::http::FHIR_JSON);
    Ok(response.body(informational(&describe(&applied))))
}

/// `GET /fhir/{type}/{id}`.
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
    let get = Get::of(&req, &state);
    respond_read(
        read_answer(&state, &access, &get, &resource_type, &id)?,
        raw,
    )
}

/// A read's or vread's answer over HTTP: a Binary's own content when `raw` (a Binary read by a
/// client that did not ask for FHIR first), else FHIR.
fn respond_read(answer: Answer, raw: bool) -> ApiResult {
    match answer.version {
        Some((vid, last_updated)) if raw && answer.status == 200 => {
            Ok(binary::raw(&answer.body, vid, last_updated)?)
        }
        _ => Ok(answer.respond()),
    }
}

/// The read of `resource_type/id`: the current version (or the part `_summary` or `_elements`
/// asks for), 304 when the client has it, 410 when deleted. A resource the client may not
/// read is answered as one that does not exist.
pub(super) fn read_answer(
    state: &AppState,
    access: &Access,
    get: &Get,
    resource_type: &str,
    id: &str,
) -> Result<Answer, FhirError> {
    let subset = Subset::parse(&get.params)?;
    check_type(resource_type)?;
    check_id(id)?;
    access.require(Permission::Read, Some(resource_type))?;
    match readable_current(state, access, resource_type, id)? {
        None => Err(missing(resource_type, id)),
        Some((current, None)) => Err(gone(resource_type, id, current.vid)),
        Some((current, Some(version))) => {
            if get.not_modified(current.vid, current.last_updated) {
                return Ok(Answer::not_modified(current.vid, current.last_updated));
            }
            let body = representation(version.body, subset.as_ref())?;
            Ok(Answer::version(current.vid, current.last_updated, body))
        }
    }
}

/// The current state of `resource_type/id`, or `None` when it does not exist or the client
/// may not read it ([`Access::current`]).
pub(super) fn readable_current(
    state: &AppState,
    access: &Access,
    resource_type: &str,
    id: &str,
) -> Result<Option<(CurrentRecord, Option<VersionRecord>)>, FhirError> {
    access.current(
        &state.search,
        &state.store,
        Permission::Read,
        resource_type,
        id,
    )
}

pub(super) fn missing(resource_type: &str, id: &str) -> FhirError {
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
    let get = Get::of(&req, &state);
    respond_read(
        vread_answer(&state, &access, &get, &resource_type, &id, &vid)?,
        raw,
    )
}

/// The vread of version `vid` of `resource_type/id` (or the part `_summary` or `_elements`
/// asks for), 304 when the client has it, 410 for a deletion. A version the client may not
/// read is answered as one that does not exist.
pub(super) fn vread_answer(
    state: &AppState,
    access: &Access,
    get: &Get,
    resource_type: &str,
    id: &str,
    vid: &str,
) -> Result<Answer, FhirError> {
    let subset = Subset::parse(&get.params)?;
    check_type(resource_type)?;
    check_id(id)?;
    access.require(Permission::Read, Some(resource_type))?;
    let missing = || FhirError::not_found(format!("{resource_type}/{id} has no version {vid}"));
    let number: u64 = vid.parse().map_err(|_| missing())?;
    let version = state.store.vread(resource_type, id, number)?;
    if let Some(version) = &version {
        let stored = Stored {
            resource_type,
            id,
            vid: number,
            last_updated: version.last_updated,
            body: (version.op != Op::Delete).then_some(version.body.as_slice()),
        };
        if !access.sees_stored(&state.search, &state.store, Permission::Read, stored)? {
            return Err(missing());
        }
    }
    match version {
        None => Err(missing()),
        Some(version) if version.op == Op::Delete => Err(FhirError::new(
            410,
            IssueCode::Deleted,
            format!("version {vid} of {resource_type}/{id} is its deletion"),
        )),
        Some(version) if get.not_modified(number, version.last_updated) => {
            Ok(Answer::not_modified(number, version.last_updated))
        }
        Some(version) => {
            let body = representation(version.body, subset.as_ref())?;
            Ok(Answer::version(number, version.last_updated, body))
        }
    }
}

/// Conditional update and delete, `PUT|DELETE /fhir/{type}?criteria`: the criteria pick the
/// resources ([`conditional`], shared with Bundle entries). No match: an update creates, a
/// delete does nothing; several: 412 for an update, all deleted (or 412) for a delete as
/// `--conditional-delete` says.
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
    let delete = req.method() == actix_web::http::Method::DELETE;
    let permission = if delete {
        Permission::Delete
    } else {
        Permission::Update
    };
    access.require(permission, Some(&resource_type))?;
    let criteria = req.query_string();
    let expected = if_match(&req)?;
    state
        .search
        .catch_up_for_criteria(
            &state.store,
            &resource_type,
            criteria,
            &access.view(permission),
        )
        .await;
    if delete {
        let writes = conditional::delete(
            &state.search,
            &access,
            &resource_type,
            criteria,
            expected,
            state.config.deletes(),
        )?;
        return delete_all(&req, &state, &access, writes).await;
    }
    let body = read_body(&req, payload, &state).await?;
    let intake = parse_resource(&body, Some(&resource_type))?;
    let write = conditional::update(
        &state.search,
        &access,
        &resource_type,
        criteria,
        intake.resource,
        expected,
    )?;
    let (applied, warnings) = commit_one(&state, &access, write, &intake.dropped).await?;
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

/// Commits one write the client's access allows (see [`Access::check_write`]) and the
/// validation policy accepts (with `dropped`, the empty elements taken out of its resource);
/// returns it with the validator's warnings.
pub(super) async fn commit_one(
    state: &AppState,
    access: &Access,
    mut write: Write,
    dropped: &[String],
) -> Result<(Applied, Vec<Issue>), super::ApiError> {
    if let Decision::Absent(applied) =
        access.check_write(&state.search, &state.store, &mut write)?
    {
        return Ok((applied, Vec::new()));
    }
    subscriptions::check_write(&state.config.subscription_endpoints, &write).await?;
    let mut warnings = match &write.action {
        Action::Create(resource) | Action::Update(resource) => {
            state.validator.check_write(resource, dropped)?
        }
        Action::Delete => Vec::new(),
    };
    let applied = state.store.commit(vec![write]).await?.pop();
    let applied = applied.expect("one write, one result");
    if let Some(body) = applied.body.as_ref().filter(|_| !applied.unchanged) {
        warnings.extend(state.validator.learn(&applied.resource_type, body));
    }
    Ok((applied, warnings))
}

/// The answer to a create or update: 201 when the resource came into existence, 200 when it
/// was updated (or the update changed nothing: then of the current version), with `Location`,
/// `ETag` and `Last-Modified`, and the body `Prefer` asks for.
/// The validator's warnings are in the OperationOutcome of `Prefer: return=OperationOutcome`,
/// and one `X-FHIR-Request-Validation` header each whatever the body.
pub(super) fn written(
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
            let mut body = outcome(
                Severity::Information,
                IssueCode::Informational,
                &applied.describe(),
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
