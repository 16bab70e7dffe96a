//! `PATCH /fhir/{type}/{id}` and conditional `PATCH /fhir/{type}?criteria`: the patch
//! ([`crate::patch`]) is applied to the current version and the result written as an update of
//! it, through the same path as `PUT` (authorization, validation, a new version and its change,
//! `Prefer`); a result equal to the current version changes nothing.

use super::crud::{commit_one, written};
use super::http::{header_str, if_match, negotiate, read_json};
use super::{ApiResult, AppState};
use crate::auth::Access;
use crate::auth::scope::Permission;
use crate::bundle::conditional::several;
use crate::fhir::resource::{check_id, check_type};
use crate::fhir::{FhirError, IssueCode};
use crate::patch::{Format, Patch};
use actix_web::http::header;
use actix_web::{HttpRequest, web};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};

type State = web::Data<AppState>;

/// How many times a patch without `If-Match` is applied again when the resource changed
/// between its read and its write.
const ATTEMPTS: usize = 5;

/// Patches of one resource take turns in this process: each holds its resource's turn from
/// reading the current version to committing the result, so that concurrent patches of a
/// resource never make each other start again (nor, past [`ATTEMPTS`], fail). Other writes
/// are not held back: one in between makes the patch start again.
static TURNS: LazyLock<Turns> = LazyLock::new(Turns::default);

/// One resource's turn: held by the patch being applied, awaited by the others.
type Turn = tokio::sync::Mutex<()>;

/// A turn per resource being patched (by `(type, id)`); a turn nobody holds or waits for is
/// dropped.
#[derive(Default)]
struct Turns(Mutex<HashMap<(String, String), Weak<Turn>>>);

impl Turns {
    fn of(&self, resource_type: &str, id: &str) -> Arc<Turn> {
        let mut turns = self.0.lock().expect("the turns");
        let key = (resource_type.to_string(), id.to_string());
        if let Some(turn) = turns.get(&key).and_then(Weak::upgrade) {
            return turn;
        }
        turns.retain(|_, turn| turn.strong_count() > 0);
        let turn = Arc::new(Turn::new(()));
        turns.insert(key, Arc::downgrade(&turn));
        turn
    }
}

/// `PATCH /fhir/{type}/{id}`.
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
    access.require(Permission::Update, Some(&resource_type))?;
    let patch = read_patch(&req, payload, &state).await?;
    patch_one(&req, &state, &access, &resource_type, &id, &patch).await
}

/// `PATCH /fhir/{type}?criteria`: the criteria pick the resource among those the client may
/// update. None: 404; several: 412.
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
    access.require(Permission::Update, Some(&resource_type))?;
    let criteria = req.query_string();
    if criteria.is_empty() {
        return Err(FhirError::bad_request(
            IssueCode::Required,
            format!(
                "a conditional patch needs search criteria (PATCH {resource_type}?identifier=...); \
                 PATCH {resource_type}/id patches one resource"
            ),
        )
        .into());
    }
    let patch = read_patch(&req, payload, &state).await?;
    let view = access.view(Permission::Update);
    state
        .search
        .catch_up_for_criteria(&state.store, &resource_type, criteria, &view)
        .await;
    match state
        .search
        .matching(&resource_type, criteria, &view)?
        .as_slice()
    {
        [] => Err(FhirError::not_found(format!(
            "no {resource_type} matches '{criteria}': there is nothing to patch"
        ))
        .into()),
        [id] => patch_one(&req, &state, &access, &resource_type, id, &patch).await,
        _ => Err(several(&resource_type, criteria).into()),
    }
}

/// Reads a PATCH body by its media type ([`Format::of_media_type`]); none is taken as FHIR
/// JSON, anything else is 415.
async fn read_patch(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<Patch, FhirError> {
    let content_type =
        header_str(req.headers(), header::CONTENT_TYPE).unwrap_or("application/fhir+json");
    let format = Format::of_media_type(content_type).ok_or_else(|| {
        FhirError::new(
            415,
            IssueCode::NotSupported,
            format!(
                "Content-Type {content_type} is not a patch fhirlake reads: send a JSON Patch \
                 (application/json-patch+json), a FHIRPath Patch (a Parameters resource as \
                 application/fhir+json) or a merge patch (application/merge-patch+json)"
            ),
        )
    })?;
    let body = read_json(req, payload, state).await?;
    Patch::parse(format, &body)
}

/// Patches the current version of `resource_type/id` ([`Patch::update_of`]) and writes the
/// result, in the resource's turn ([`TURNS`]). With `If-Match` the patch applies to that
/// version only (412 otherwise); without, a write in between makes it start again on the new
/// version, up to [`ATTEMPTS`] times (then 409).
async fn patch_one(
    req: &HttpRequest,
    state: &AppState,
    access: &Access,
    resource_type: &str,
    id: &str,
    patch: &Patch,
) -> ApiResult {
    let asked = if_match(req)?;
    let turn = TURNS.of(resource_type, id);
    let _turn = turn.lock().await;
    let mut attempt = 1;
    loop {
        let (write, dropped) = patch.update_of(
            &state.store,
            &state.search,
            access,
            resource_type,
            id,
            asked,
            state.config.max_body,
        )?;
        match commit_one(state, access, write, &dropped).await {
            Ok((applied, warnings)) => return Ok(written(req, state, applied, &warnings)),
            Err(error) if error.0.status == 412 && asked.is_none() => {
                if attempt == ATTEMPTS {
                    return Err(FhirError::new(
                        409,
                        IssueCode::Conflict,
                        format!(
                            "{resource_type}/{id} changed each of the {ATTEMPTS} times the patch \
                             was applied: send it again"
                        ),
                    )
                    .into());
                }
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}
