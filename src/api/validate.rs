//! `$validate`: `POST /fhir/{type}/$validate` and `GET|POST /fhir/{type}/{id}/$validate`.
//!
//! The resource is the body (a resource, or a Parameters with `resource`, `mode` and
//! `profile`), or at the instance level without one, the stored current version. `mode` and
//! `profile` may also be query parameters. `mode` (`create`, `update`, `delete`) names the
//! permission the client needs.
//!
//! Invariant: the answer is 200 with an OperationOutcome of every finding, graded as a write
//! would meet it under the validation policy (error: the write is refused; warning: stored
//! with the warning; information: the policy drops it), whether or not the resource is valid;
//! 4xx only when the request itself is wrong. Nothing is written.

use super::http::{negotiate, query_pairs, read_body};
use super::{ApiResult, AppState};
use crate::auth::Access;
use crate::auth::scope::Permission;
use crate::fhir::resource::{check_id, check_type, check_value, id_of, parse_json};
use crate::fhir::{FhirError, IssueCode};
use crate::validate::{Issue, Rule, Severity, outcome_of};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;

type State = web::Data<AppState>;

/// `mode`: what the resource is validated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// No mode: the resource on its own.
    General,
    Create,
    Update,
    Delete,
}

impl Mode {
    fn parse(text: Option<&str>) -> Result<Mode, FhirError> {
        match text {
            None => Ok(Mode::General),
            Some("create") => Ok(Mode::Create),
            Some("update") => Ok(Mode::Update),
            Some("delete") => Ok(Mode::Delete),
            Some(other) => Err(FhirError::bad_request(
                IssueCode::Value,
                format!("mode '{other}' is not one of create, update, delete"),
            )),
        }
    }

    /// The permission the client needs to validate for this mode.
    fn permission(self) -> Permission {
        match self {
            Mode::General => Permission::Read,
            Mode::Create => Permission::Create,
            Mode::Update => Permission::Update,
            Mode::Delete => Permission::Delete,
        }
    }
}

/// What a `$validate` request asks.
struct Asked {
    resource: Option<Value>,
    mode: Mode,
    profile: Option<String>,
}

/// `POST /fhir/{type}/$validate`
pub async fn of_type(
    req: HttpRequest,
    state: State,
    access: Access,
    path: web::Path<String>,
    payload: web::Payload,
) -> ApiResult {
    negotiate(&req)?;
    let resource_type = path.into_inner();
    check_type(&resource_type)?;
    let asked = asked(&req, &state, payload).await?;
    access.require(asked.mode.permission(), Some(&resource_type))?;
    if matches!(asked.mode, Mode::Update | Mode::Delete) {
        return Err(FhirError::bad_request(
            IssueCode::Invalid,
            "mode update and delete validate against a resource: use /{type}/{id}/$validate",
        )
        .into());
    }
    let Some(resource) = asked.resource else {
        return Err(no_resource().into());
    };
    Ok(answer(check(
        &state,
        resource,
        &resource_type,
        asked.profile.as_deref(),
    )))
}

/// `GET|POST /fhir/{type}/{id}/$validate`
pub async fn instance(
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
    let asked = asked(&req, &state, payload).await?;
    access.require(asked.mode.permission(), Some(&resource_type))?;
    let current = super::crud::readable_current(&state, &access, &resource_type, &id)?;
    let stored = current.and_then(|(_, version)| version);
    if asked.mode == Mode::Delete {
        // Nothing here refuses a delete (references to a resource do not keep it alive).
        let message = match stored {
            Some(_) => format!("{resource_type}/{id} may be deleted"),
            None => format!("{resource_type}/{id} does not exist: deleting it does nothing"),
        };
        return Ok(answer(vec![information(&resource_type, message)]));
    }
    let resource = match asked.resource {
        Some(resource) => {
            if id_of(&resource).is_some_and(|given| given != id) {
                return Err(FhirError::bad_request(
                    IssueCode::Invalid,
                    format!("the resource's id differs from the id '{id}' in the URL"),
                )
                .at(format!("{resource_type}.id"))
                .into());
            }
            resource
        }
        None => match stored {
            Some(version) => parse_json(&version.body)?,
            None => {
                return Err(
                    FhirError::not_found(format!("{resource_type}/{id} does not exist")).into(),
                );
            }
        },
    };
    Ok(answer(check(
        &state,
        resource,
        &resource_type,
        asked.profile.as_deref(),
    )))
}

/// Reads the request: the body (a resource or a Parameters), then `mode` and `profile` from
/// the query or the Parameters.
async fn asked(
    req: &HttpRequest,
    state: &AppState,
    payload: web::Payload,
) -> Result<Asked, FhirError> {
    let query = query_pairs(req);
    let from_query = |name: &str| {
        query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let mut mode = from_query("mode");
    let mut profile = from_query("profile");
    let body = read_body(req, payload, state).await?;
    let mut resource = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(parse_json(&body)?)
    };
    if let Some(parameters) =
        resource.take_if(|r| r.get("resourceType").and_then(Value::as_str) == Some("Parameters"))
    {
        for parameter in parameters["parameter"].as_array().into_iter().flatten() {
            let text = |names: &[&str]| {
                names
                    .iter()
                    .find_map(|name| parameter[*name].as_str())
                    .map(String::from)
            };
            match parameter["name"].as_str() {
                Some("resource") => resource = parameter.get("resource").cloned(),
                Some("mode") => mode = text(&["valueCode", "valueString"]),
                Some("profile") => {
                    profile = text(&["valueUri", "valueCanonical", "valueString"]);
                }
                _ => {}
            }
        }
    }
    Ok(Asked {
        resource,
        mode: Mode::parse(mode.as_deref())?,
        profile,
    })
}

/// Every finding about `resource`: a wrong type or a shape the model refuses is reported as
/// an error finding, as the validator's are.
fn check(
    state: &AppState,
    resource: Value,
    resource_type: &str,
    profile: Option<&str>,
) -> Vec<Issue> {
    let intake = match check_value(resource, Some(resource_type)) {
        Ok(intake) => intake,
        Err(error) => {
            return vec![Issue {
                severity: Severity::Error,
                code: error.code,
                rule: Rule::Structure,
                expression: error
                    .expression
                    .unwrap_or_else(|| resource_type.to_string()),
                diagnostics: error.diagnostics,
            }];
        }
    };
    state
        .validator
        .grade(&intake.resource, &intake.dropped, profile)
}

fn information(resource_type: &str, message: String) -> Issue {
    Issue {
        severity: Severity::Information,
        code: IssueCode::Informational,
        rule: Rule::Structure,
        expression: resource_type.to_string(),
        diagnostics: message,
    }
}

fn no_resource() -> FhirError {
    FhirError::bad_request(
        IssueCode::Required,
        "$validate needs a resource: the body, or a Parameters with a 'resource' part",
    )
}

fn answer(issues: Vec<Issue>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(super::http::FHIR_JSON)
        .body(outcome_of(&issues).to_string())
}
