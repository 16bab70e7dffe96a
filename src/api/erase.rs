//! Erasure of one resource or one version: `POST [base]/{type}/{id}/$erase` removes a
//! resource and every version of it for good; `POST [base]/{type}/{id}/_history/{vid}/$erase`
//! removes one version (never the current one while others are left: 409). Both answer 200
//! with an OperationOutcome saying what was erased, once the erasure is durable; a resource or
//! version that does not exist is 404.
//!
//! `POST [base]/Patient/{id}/$purge` erases the patient's compartment (every member and the
//! Patient itself), and `POST [base]/{type}/$bulk-delete` deletes every resource of a type
//! (tombstones), or with `hardDelete=true` erases them; both take `_since`, or `start` and
//! `end`, on lastUpdated (`$bulk-delete` also search criteria), in the query or a Parameters
//! body, and run as jobs (`jobs::erase`): 202 with the status URL in `Content-Location`.
//!
//! What erased means (the store's versions, the change log, the index, every consumer of the
//! change stream) is `store::erase`'s; who may erase is [`Access::require_erase`] (unconfined
//! delete and the scope `fhirlake/erase`; never a `patient/` token). Each erasure writes an
//! audit line naming the type, id and versions erased and who erased them, never the content
//! (`auth::audit::erasure`).

use super::http::{FHIR_JSON, base_url, negotiate, query_pairs, read_body};
use super::{ApiResult, AppState};
use crate::auth::scope::Permission;
use crate::auth::{Access, audit};
use crate::fhir::outcome::outcome;
use crate::fhir::resource::{check_id, check_type};
use crate::fhir::{FhirError, IssueCode, Severity};
use crate::jobs::erase::Request as JobRequest;
use crate::jobs::{Kind, Owner};
use crate::store::erase::{Erased, Erasure};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

type State = web::Data<AppState>;

/// Parameters as `(name, value)`.
type Params = Vec<(String, String)>;

/// `POST [base]/{type}/{id}/$erase`
pub async fn resource(
    req: HttpRequest,
    state: State,
    access: Access,
    path: web::Path<(String, String)>,
) -> ApiResult {
    let (resource_type, id) = path.into_inner();
    erase(&req, &state, &access, resource_type, id, None).await
}

/// `POST [base]/{type}/{id}/_history/{vid}/$erase`
pub async fn version(
    req: HttpRequest,
    state: State,
    access: Access,
    path: web::Path<(String, String, String)>,
) -> ApiResult {
    let (resource_type, id, vid) = path.into_inner();
    let vid = vid
        .parse::<u64>()
        .ok()
        .filter(|vid| *vid > 0)
        .ok_or_else(|| {
            FhirError::not_found(format!("{resource_type}/{id} has no version {vid}"))
        })?;
    erase(&req, &state, &access, resource_type, id, Some(vid)).await
}

async fn erase(
    req: &HttpRequest,
    state: &AppState,
    access: &Access,
    resource_type: String,
    id: String,
    vid: Option<u64>,
) -> ApiResult {
    negotiate(req)?;
    check_type(&resource_type)?;
    check_id(&id)?;
    access.require_erase(Some(&resource_type))?;
    let erasure = Erasure {
        resource_type,
        id,
        vid,
    };
    let erased = state
        .store
        .erase(vec![erasure.clone()])
        .await?
        .pop()
        .unwrap_or_default();
    if erased.vids.is_empty() {
        return Err(FhirError::not_found(format!(
            "{}/{} does not exist",
            erasure.resource_type, erasure.id
        ))
        .into());
    }
    audit::erasure(access, "$erase", None, &erased);
    let said = outcome(
        Severity::Information,
        IssueCode::Informational,
        &describe(&erased),
        None,
    );
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(said.to_string()))
}

/// The erasure operations of `resource_type` in the CapabilityStatement: fhirlake's own, so
/// without a definition of the specification's.
pub fn capabilities(resource_type: &str) -> Vec<serde_json::Value> {
    let mut names = vec!["erase", "bulk-delete"];
    if resource_type == "Patient" {
        names.push("purge");
    }
    names
        .into_iter()
        .map(|name| {
            serde_json::json!({"name": name,
                "definition": format!("{OPERATIONS}/{name}"),
                "documentation": "fhirlake's own: see README, Erasure"})
        })
        .collect()
}

/// Where fhirlake's own operation definitions are named.
const OPERATIONS: &str = "https://fhirlake.dev/OperationDefinition";

/// `erased Patient/1 (versions 1, 2, 3): it is gone` or `erased version 2 of Patient/1`.
fn describe(erased: &Erased) -> String {
    let name = format!("{}/{}", erased.resource_type, erased.id);
    let versions = erased
        .vids
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if erased.gone {
        format!("erased {name} (versions {versions}): it is gone")
    } else {
        format!("erased version {versions} of {name}")
    }
}

/// `POST [base]/Patient/{id}/$purge`
pub async fn purge(
    req: HttpRequest,
    state: State,
    access: Access,
    path: web::Path<String>,
    payload: web::Payload,
) -> ApiResult {
    let id = path.into_inner();
    check_id(&id)?;
    access.require_erase(None)?;
    if state.store.read("Patient", &id)?.is_none() {
        return Err(FhirError::not_found(format!("Patient/{id} does not exist")).into());
    }
    let params = operation_params(&req, payload, &state).await?;
    let (limits, criteria) = last_updated(params);
    if let Some((name, _)) = criteria.first() {
        return Err(FhirError::bad_request(
            IssueCode::NotSupported,
            format!("$purge takes _since, start and end, not {name}"),
        )
        .into());
    }
    let request = JobRequest {
        operation: "$purge".into(),
        url: String::new(),
        compartment: Some(("Patient".into(), id)),
        resource_type: None,
        params: limits,
        hard: true,
        subject: None,
        client: None,
    };
    kick_off(&req, &state, &access, request).await
}

/// `POST [base]/{type}/$bulk-delete`
pub async fn bulk_delete(
    req: HttpRequest,
    state: State,
    access: Access,
    path: web::Path<String>,
    payload: web::Payload,
) -> ApiResult {
    let resource_type = path.into_inner();
    check_type(&resource_type)?;
    let params = operation_params(&req, payload, &state).await?;
    let (hard, params): (Vec<_>, Vec<_>) = params
        .into_iter()
        .partition(|(name, _)| name == "hardDelete");
    let hard = match hard.last().map(|(_, value)| value.as_str()) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(FhirError::bad_request(
                IssueCode::Invalid,
                format!("hardDelete={other}: it is true or false"),
            )
            .into());
        }
    };
    if hard {
        access.require_erase(Some(&resource_type))?;
    } else {
        access.require(Permission::Delete, Some(&resource_type))?;
        if access.confined(Permission::Delete, &resource_type) {
            return Err(FhirError::forbidden(format!(
                "$bulk-delete deletes every {resource_type} it matches: it needs delete on all \
                 of them, unconfined (a scope such as system/{resource_type}.d)"
            ))
            .into());
        }
    }
    let (mut limits, criteria) = last_updated(params);
    limits.extend(criteria);
    let request = JobRequest {
        operation: "$bulk-delete".into(),
        url: String::new(),
        compartment: None,
        resource_type: Some(resource_type),
        params: limits,
        hard,
        subject: None,
        client: None,
    };
    kick_off(&req, &state, &access, request).await
}

/// The parameters of an operation: the query's and a Parameters body's.
async fn operation_params(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<Vec<(String, String)>, FhirError> {
    negotiate(req)?;
    let mut params = query_pairs(req);
    // A POST without a body (and so without a Content-Type) has the query's parameters only.
    if req.headers().contains_key(header::CONTENT_TYPE) {
        let body = read_body(req, payload, state).await?;
        if !body.iter().all(u8::is_ascii_whitespace) {
            params.extend(super::export::parameters(&body)?);
        }
    }
    Ok(params)
}

/// `_since`, `start` and `end` as `_lastUpdated` search parameters, and the other parameters.
fn last_updated(params: Params) -> (Params, Params) {
    let mut limits = Vec::new();
    let mut others = Vec::new();
    for (name, value) in params {
        match name.as_str() {
            "_since" | "start" => limits.push(("_lastUpdated".into(), format!("ge{value}"))),
            "end" => limits.push(("_lastUpdated".into(), format!("le{value}"))),
            "_format" | "_pretty" => {}
            _ => others.push((name, value)),
        }
    }
    // Never what is written after the kick-off: that is not the job's.
    let now = crate::fhir::datetime::format_instant(crate::fhir::datetime::now());
    limits.push(("_lastUpdated".into(), format!("le{now}")));
    (limits, others)
}

/// Checks the request (its search), records the job and answers 202 with its status URL.
async fn kick_off(
    req: &HttpRequest,
    state: &AppState,
    access: &Access,
    mut request: JobRequest,
) -> ApiResult {
    crate::jobs::erase::check(&state.search, &request)?;
    let base = base_url(req, state);
    let path = req.path().strip_prefix("/fhir").unwrap_or(req.path());
    request.url = match req.query_string() {
        "" => format!("{base}{path}"),
        query => format!("{base}{path}?{query}"),
    };
    if let Access::Token(principal) = access {
        request.subject = principal.subject.clone();
        request.client = principal.client.clone();
    }
    let operation = request.operation.clone();
    let value = serde_json::to_value(&request).expect("a request serializes");
    let id = match state
        .jobs
        .submit(Kind::Erasure, Owner::of(access), value, None)
        .await
    {
        Ok(id) => id,
        Err(error) if error.status == 429 => {
            let wait = state.jobs.settings().poll_interval;
            return Ok(super::jobs::too_many(&error, wait));
        }
        Err(error) => return Err(error.into()),
    };
    let accepted = outcome(
        Severity::Information,
        IssueCode::Informational,
        &format!("{operation} {id} accepted: poll its status at the Content-Location"),
        None,
    );
    Ok(HttpResponse::Accepted()
        .insert_header((
            header::CONTENT_LOCATION,
            crate::jobs::status_url(&base, &id),
        ))
        .content_type(FHIR_JSON)
        .body(accepted.to_string()))
}
