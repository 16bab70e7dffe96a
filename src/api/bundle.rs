//! `POST /fhir`: batch and transaction Bundles; their GET and HEAD entries are routed to the
//! read endpoints' own code ([`Endpoints`]).

use super::get::{Answer, Get};
use super::http::{FHIR_JSON, base_url, negotiate, prefer_return, read_body};
use super::interaction::Interaction;
use super::search::Search;
use super::{ApiResult, AppState, crud, history, metadata, search};
use crate::auth::Access;
use crate::bundle::{self, EntryResult, Options, Read, Reads};
use crate::fhir::FhirError;
use crate::fhir::resource::parse_json;
use crate::store::history::Scope;
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
    let base = base_url(&req, &state);
    let options = Options {
        max_entries: state.config.max_bundle_entries,
        returns: prefer_return(&req),
        subscription_endpoints: Some(state.config.subscription_endpoints.clone()),
        base: Some(base.clone()),
        deletes: state.config.deletes(),
        max_patch_growth: state.config.max_body,
        // As much as a request may send.
        max_read_bytes: state.config.max_body,
    };
    let endpoints = Endpoints {
        state: &state,
        access: &access,
        base,
        strict: super::get::strict(&req),
    };
    let processed = bundle::process(
        &state.store,
        &state.search,
        &access,
        &state.validator,
        bundle,
        &options,
        &endpoints,
    )
    .await?;
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(bundle::render(&processed)))
}

/// The read endpoints, for the GET entries of a Bundle sent by a client with `access`.
struct Endpoints<'a> {
    state: &'a AppState,
    access: &'a Access,
    /// The FHIR base URL of the Bundle's request.
    base: String,
    /// `Prefer: handling=strict` on the Bundle's request: it holds for its searches.
    strict: bool,
}

impl Reads for Endpoints<'_> {
    fn read(&self, read: &Read, caught_up: bool) -> Result<EntryResult, FhirError> {
        let get = Get::of_entry(read, &self.base, self.strict);
        Ok(self.route(&get, caught_up)?.into_entry())
    }
}

impl Endpoints<'_> {
    /// The endpoint a GET of `get.path` reaches, as `api::routes` routes it, and its answer.
    fn route(&self, get: &Get, caught_up: bool) -> Result<Answer, FhirError> {
        let (state, access) = (self.state, self.access);
        let segments: Vec<&str> = get.path.split('/').collect();
        let searchset =
            |what: Search| search::searchset(state, access, get, what, caught_up).map(Answer::ok);
        let history = |scope: Scope| history::bundle(state, access, get, scope).map(Answer::ok);
        match segments.as_slice() {
            [""] => searchset(Search::System),
            ["metadata"] => metadata::capabilities(state, get),
            ["$versions"] => Ok(metadata::versions()),
            ["_history"] => history(Scope::System),
            [operation, ..] | [_, operation, ..] | [_, _, operation]
                if operation.starts_with('$') && *operation != "$everything" =>
            {
                Err(FhirError::not_supported(format!(
                    "{operation} is not run inside a Bundle: send it on its own"
                )))
            }
            [resource_type] => searchset(Search::Type(resource_type.to_string())),
            [resource_type, "_history"] => history(Scope::Type(resource_type)),
            [resource_type, id] => crud::read_answer(state, access, get, resource_type, id),
            [resource_type, id, "_history"] => history(Scope::Instance(resource_type, id)),
            [resource_type, id, "_history", vid] => {
                crud::vread_answer(state, access, get, resource_type, id, vid)
            }
            [resource_type, id, "$everything"] => searchset(Search::Everything {
                resource_type: resource_type.to_string(),
                id: id.to_string(),
            }),
            [compartment, id, resource_type] => searchset(Search::Compartment {
                compartment: compartment.to_string(),
                id: id.to_string(),
                resource_type: resource_type.to_string(),
            }),
            _ => Err(FhirError::not_found(format!(
                "there is nothing at {}",
                get.url(&get.path, "")
            ))),
        }
    }
}
