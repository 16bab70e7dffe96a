//! `POST /fhir`: batch and transaction Bundles.

use super::http::{FHIR_JSON, negotiate, prefer_return, read_body};
use super::interaction::Interaction;
use super::{ApiResult, AppState};
use crate::auth::Access;
use crate::bundle::{self, Options};
use crate::fhir::resource::parse_json;
use actix_web::{HttpRequest, HttpResponse, web};

pub async fn transaction_or_batch(
    req: HttpRequest,
    state: web::Data<AppState>,
    access: Access,
    payload: web::Payload,
) -> ApiResult {
    negotiate(&req)?;
    let body = read_body(&req, payload, &state).await?;
    let bundle = parse_json(&body)?;
    if let Ok(kind) = bundle::kind_of(&bundle) {
        Interaction::from(kind).record(&req);
    }
    let options = Options {
        max_entries: state.config.max_bundle_entries,
        returns: prefer_return(&req),
        subscription_endpoints: Some(state.config.subscription_endpoints.clone()),
        max_patch_growth: state.config.max_body,
    };
    let processed = bundle::process(
        &state.store,
        &state.search,
        &access,
        &state.validator,
        bundle,
        &options,
    )
    .await?;
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(bundle::render(&processed)))
}
