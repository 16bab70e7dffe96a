//! Import kick-offs: `POST [base]/$import` (the Parameters HAPI and Pathling take) and the
//! Bulk Data IG's Bulk Submit, `POST [base]/$bulk-submit` and `POST [base]/$bulk-submit-status`.
//! The jobs they start, and who may start them, are `jobs::import`'s; their status and files
//! `api/jobs.rs`'s.
//!
//! - `$import` needs `Prefer: respond-async` and answers 202 with the job's status URL in
//!   `Content-Location`, as `$export` does.
//! - `$bulk-submit` answers 200 with an OperationOutcome, as the IG says: the first request of
//!   a submission (`submitter`, `submissionId`) starts its job, each `manifestUrl` (with
//!   `fhirBaseUrl`) adds a manifest, `submissionStatus` `completed` closes it (the job ends once
//!   it has imported every manifest), `stopped` cancels it (resources already imported stay).
//!   `replacesManifestUrl`, `oauthMetadataUrl` and `fileEncryptionKey` are not supported
//!   (400); `fileRequestHeader` headers are sent with every request for the submission's
//!   manifests and files; `metadata` is accepted and ignored. A submission already completed
//!   takes no more manifests (409).
//! - `$bulk-submit-status` (`submitter`, `submissionId`) answers 202 with the submission's
//!   status URL in `Content-Location`; polling it answers the IG's status manifest
//!   (`submissionId`, `outcome` files with their `manifestUrl`) once the submission is
//!   complete.

use super::http::{FHIR_JSON, base_url, read_body};
use super::{ApiResult, AppState};
use crate::auth::Access;
use crate::fhir::outcome::outcome;
use crate::fhir::resource::parse_resource;
use crate::fhir::{FhirError, IssueCode, Severity};
use crate::jobs::import::request::{Parameter, invalid, is_ndjson, parameters, text_of};
use crate::jobs::import::{Request, Submission, Writable, parse_import, request_of};
use crate::jobs::{Kind, Owner};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;

type State = web::Data<AppState>;

/// `POST [base]/$import`
pub async fn import(
    req: HttpRequest,
    state: State,
    access: Access,
    payload: web::Payload,
) -> ApiResult {
    if !super::export::preferences(&req)
        .iter()
        .any(|p| p == "respond-async")
    {
        return Err(FhirError::bad_request(
            IssueCode::Invalid,
            "$import runs asynchronously: send Prefer: respond-async",
        )
        .into());
    }
    let writable = Writable::of(&access)?;
    let body = parameters_body(&req, payload, &state).await?;
    let asked = parse_import(&body, &state.jobs.sources(), &writable)?;
    let base = base_url(&req, &state);
    let request = Request {
        url: format!("{base}/$import"),
        inputs: asked.inputs,
        headers: asked.headers,
        writable,
        submission: None,
    };
    start(&state, &access, request, &base).await
}

/// Submits the import `request`: 202 with its status URL (429 when the owner has too many
/// jobs under way).
async fn start(state: &State, access: &Access, request: Request, base: &str) -> ApiResult {
    let request = serde_json::to_value(&request).expect("a request serializes");
    match state
        .jobs
        .submit(Kind::Import, Owner::of(access), request, None)
        .await
    {
        Ok(id) => Ok(super::jobs::accepted(base, &id, "import")),
        Err(error) if error.status == 429 => Ok(super::jobs::too_many(
            &error,
            state.jobs.settings().poll_interval,
        )),
        Err(error) => Err(error.into()),
    }
}

/// A `Parameters` body, parsed and checked.
async fn parameters_body(
    req: &HttpRequest,
    payload: web::Payload,
    state: &State,
) -> Result<Value, FhirError> {
    let body = read_body(req, payload, state).await?;
    Ok(parse_resource(&body, Some("Parameters"))?.resource)
}

/// What a `$bulk-submit` or `$bulk-submit-status` says.
#[derive(Default)]
struct Submit {
    submitter: Option<String>,
    id: Option<String>,
    status: Option<String>,
    manifest: Option<String>,
    base: Option<String>,
    headers: Vec<(String, String)>,
}

/// `POST [base]/$bulk-submit`
pub async fn bulk_submit(
    req: HttpRequest,
    state: State,
    access: Access,
    payload: web::Payload,
) -> ApiResult {
    let writable = Writable::of(&access)?;
    let body = parameters_body(&req, payload, &state).await?;
    let submit = read_submit(&body, true)?;
    let (submitter, id) = key(&submit)?;
    let status = submit.status.as_deref().unwrap_or("in-progress");
    if !matches!(status, "in-progress" | "completed" | "stopped") {
        return Err(invalid(
            "Parameters.parameter",
            format!(
                "submissionStatus {status}: it is in-progress, completed or stopped \
                 (http://hl7.org/fhir/event-status)"
            ),
        )
        .into());
    }
    if submit.manifest.is_some() && submit.base.is_none() {
        return Err(FhirError::bad_request(
            IssueCode::Required,
            "a manifestUrl comes with its fhirBaseUrl",
        )
        .into());
    }
    if let Some(manifest) = &submit.manifest {
        crate::bulk::input::check(&state.jobs.sources(), manifest)?;
    }
    if status != "stopped" && submit.manifest.is_none() && submit.status.is_none() {
        return Err(FhirError::bad_request(
            IssueCode::Required,
            "$bulk-submit needs a manifestUrl or a submissionStatus",
        )
        .into());
    }
    let owner = Owner::of(&access);
    let found = state.jobs.find(&owner, |job| {
        job.kind == Kind::Import
            && request_of(job).is_ok_and(|request| {
                request
                    .submission
                    .is_some_and(|s| s.submitter == submitter && s.id == id)
            })
    });
    let base = base_url(&req, &state);
    let message = match (found, status) {
        (None, "stopped") => format!("submission {id} is stopped: nothing was under way"),
        (Some(job), "stopped") => {
            state.jobs.cancel(&job.id, &owner).await?;
            format!(
                "submission {id} is stopped: fhirlake reads no more of its files (the \
                 resources already imported stay)"
            )
        }
        (None, _) => {
            let request = Request {
                url: format!("{base}/$bulk-submit"),
                inputs: Vec::new(),
                headers: submit.headers.clone(),
                writable,
                submission: Some(Submission {
                    submitter: submitter.clone(),
                    id: id.clone(),
                    manifests: submit.manifest.iter().cloned().collect(),
                    completed: status == "completed",
                }),
            };
            let request = serde_json::to_value(&request).expect("a request serializes");
            state
                .jobs
                .submit(Kind::Import, owner, request, None)
                .await?;
            format!("submission {id} is accepted")
        }
        (Some(job), _) => {
            let mut closed = false;
            let amended = state
                .jobs
                .amend(&job.id, &owner, |job| {
                    let Ok(mut request) = request_of(job) else {
                        return false;
                    };
                    let Some(submission) = request.submission.as_mut() else {
                        return false;
                    };
                    if submission.completed {
                        closed = true;
                        return false;
                    }
                    submission.manifests.extend(submit.manifest.iter().cloned());
                    submission.completed = status == "completed";
                    for header in &submit.headers {
                        if !request.headers.contains(header) {
                            request.headers.push(header.clone());
                        }
                    }
                    job.request = serde_json::to_value(&request).expect("a request serializes");
                    true
                })
                .await?;
            if !amended {
                let why = if closed { "completed" } else { "finished" };
                return Err(FhirError::new(
                    409,
                    IssueCode::Conflict,
                    format!("submission {id} is {why}: it takes no more manifests"),
                )
                .into());
            }
            format!("submission {id} is updated")
        }
    };
    let body = outcome(
        Severity::Information,
        IssueCode::Informational,
        &message,
        None,
    );
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(body.to_string()))
}

/// `POST [base]/$bulk-submit-status`
pub async fn bulk_submit_status(
    req: HttpRequest,
    state: State,
    access: Access,
    payload: web::Payload,
) -> ApiResult {
    let body = parameters_body(&req, payload, &state).await?;
    let submit = read_submit(&body, false)?;
    let (submitter, id) = key(&submit)?;
    let job = state
        .jobs
        .find(&Owner::of(&access), |job| {
            job.kind == Kind::Import
                && request_of(job).is_ok_and(|request| {
                    request
                        .submission
                        .is_some_and(|s| s.submitter == submitter && s.id == id)
                })
        })
        .ok_or_else(|| {
            FhirError::not_found(format!("there is no submission {id} of this submitter"))
        })?;
    let base = base_url(&req, &state);
    Ok(super::jobs::accepted(&base, &job.id, "submission"))
}

/// The submitter (`system|value`) and submission id, both required.
fn key(submit: &Submit) -> Result<(String, String), FhirError> {
    match (&submit.submitter, &submit.id) {
        (Some(submitter), Some(id)) => Ok((submitter.clone(), id.clone())),
        _ => Err(FhirError::bad_request(
            IssueCode::Required,
            "a submission is named by its submitter (an Identifier) and submissionId",
        )),
    }
}

/// Reads the Parameters of `$bulk-submit` (`submit`) or `$bulk-submit-status`.
fn read_submit(body: &Value, submit: bool) -> Result<Submit, FhirError> {
    let mut read = Submit::default();
    for parameter in parameters(body) {
        match (parameter.name, submit) {
            ("submitter", _) => read.submitter = Some(submitter(&parameter)?),
            ("submissionId", _) => {
                let id = text_of(&parameter)?;
                if id.is_empty() || id.len() > 256 {
                    return Err(invalid(
                        &parameter.at,
                        "a submissionId has 1 to 256 characters",
                    ));
                }
                read.id = Some(id);
            }
            ("submissionStatus", true) => {
                let code = parameter
                    .value
                    .and_then(|coding| coding["code"].as_str())
                    .map(String::from)
                    .or_else(|| parameter.text.clone());
                read.status = Some(code.ok_or_else(|| {
                    invalid(&parameter.at, "submissionStatus is a Coding with a code")
                })?);
            }
            ("manifestUrl", true) => read.manifest = Some(text_of(&parameter)?),
            ("fhirBaseUrl", true) => read.base = Some(text_of(&parameter)?),
            ("fileRequestHeader", true) => {
                let part = |name: &str| {
                    parameter
                        .parts
                        .iter()
                        .find(|p| p.name == name)
                        .and_then(|p| p.text.clone())
                };
                match (part("headerName"), part("headerValue")) {
                    (Some(name), Some(value)) if header_ok(&name, &value) => {
                        read.headers.push((name, value))
                    }
                    _ => {
                        return Err(invalid(
                            &parameter.at,
                            "fileRequestHeader has a headerName and a headerValue, both \
                             valid in an HTTP header",
                        ));
                    }
                }
            }
            ("metadata", true) => {}
            ("_outputFormat", false) => {
                let format = text_of(&parameter)?;
                if !is_ndjson(&format) {
                    return Err(invalid(&parameter.at, "fhirlake reports in NDJSON"));
                }
            }
            (name @ ("replacesManifestUrl" | "oauthMetadataUrl" | "fileEncryptionKey"), true) => {
                return Err(FhirError::bad_request(
                    IssueCode::NotSupported,
                    format!("fhirlake does not support {name} of $bulk-submit"),
                )
                .at(parameter.at.clone()));
            }
            (name, _) => {
                let shown: String = name.chars().take(100).collect();
                return Err(FhirError::bad_request(
                    IssueCode::NotSupported,
                    format!("this operation has no parameter {shown}"),
                )
                .at(parameter.at.clone()));
            }
        }
    }
    Ok(read)
}

/// A submitter Identifier as `system|value`.
fn submitter(parameter: &Parameter) -> Result<String, FhirError> {
    let identifier = parameter.value.filter(|v| v.is_object());
    let system = identifier.and_then(|i| i["system"].as_str()).unwrap_or("");
    let value = identifier.and_then(|i| i["value"].as_str());
    match value {
        Some(value) if !value.is_empty() && system.len() + value.len() <= 1024 => {
            Ok(format!("{system}|{value}"))
        }
        _ => Err(invalid(
            &parameter.at,
            "submitter is an Identifier (valueIdentifier) with a value",
        )),
    }
}

/// A header name and value an HTTP request may carry.
fn header_ok(name: &str, value: &str) -> bool {
    actix_web::http::header::HeaderName::try_from(name).is_ok()
        && actix_web::http::header::HeaderValue::try_from(value).is_ok()
}
