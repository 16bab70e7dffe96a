//! The FHIR REST API: HTTP in, calls on the store and fhir layers, FHIR out.
//!
//! Every error a client can cause leaves here as an OperationOutcome with its status code:
//! handlers return [`ApiError`] (a `FhirError`: status, issue code, diagnostics, FHIRPath
//! expression), and the default services answer unknown paths (404) and methods (405) the same
//! way.
//!
//! What a client controls is bounded before it costs anything: the request head in
//! `admission.rs`, bodies in `http.rs` (size, and JSON nesting scanned on the bytes:
//! `fhir::nesting`), Bundle entries (nested ones counted) in `bundle`.

mod admission;
mod auth;
mod binary;
mod bundle;
mod changes;
mod crud;
mod erase;
mod export;
mod format;
mod get;
mod history;
mod http;
mod import;
mod interaction;
mod jobs;
mod metadata;
mod metrics;
pub mod openapi;
mod operations;
mod patch;
mod request_log;
mod search;
mod sql;
mod terminology;
mod token;
mod validate;
mod view_export;
mod views;

pub use admission::admit;
pub use metrics::Metrics;
pub use operations::ReadinessCheck;
pub use request_log::log_request;
pub use token::Backend;

use crate::config::ServeConfig;
use crate::fhir::{FhirError, IssueCode};
use crate::store::Store;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use std::sync::Arc;

/// What every handler shares.
pub struct AppState {
    pub store: Store,
    pub search: Arc<crate::search::Engine>,
    /// The change stream's fan-out to live consumers.
    pub changes: Arc<crate::cdc::feed::Hub>,
    pub terminology: Arc<crate::terminology::Terminology>,
    /// Validates every written resource (with the same terminology) under the policy.
    pub validator: Arc<crate::validate::Validator>,
    pub config: Arc<ServeConfig>,
    pub metrics: Metrics,
    /// What `GET /ready` checks; every part that can be unready adds its check here.
    pub readiness: Vec<Box<dyn ReadinessCheck>>,
    /// Verifies the bearer tokens; `None` under `--auth none`.
    pub verifier: Option<crate::auth::token::Verifier>,
    /// The token endpoint of SMART Backend Services; `None` under `--auth none`.
    pub backend: Option<token::Backend>,
    /// The jobs (bulk exports): their records, workers and files.
    pub jobs: Arc<crate::jobs::Jobs>,
    /// The SQL engine of `$sql`, with its limits.
    pub sql: Arc<fhirlake_analytics::sql::Engine>,
    /// The materialized views `$sql` reads.
    pub views: Arc<crate::jobs::views::materialized::Materializer>,
}

/// The routes: the operations endpoints, the SMART configuration, the token endpoint
/// (`/auth/token`, OAuth rather than FHIR: [`token`]), the OpenAPI description and its
/// explorer at the root, and the FHIR API under `/fhir`, where every route but `metadata`
/// and `$versions` and the SMART configuration (routed before the scope) needs authorization
/// ([`auth::authenticate`]). Every FHIR answer is FHIR XML when the request asks for it
/// ([`format::answer_in_format`], the outermost middleware of `/fhir`). More specific paths
/// come first: `_history` is not a resource type or an id; but a path that only `/{type}` or
/// `/{type}/{id}` can match (`plain_path`) is tried against them before the rest. Each FHIR
/// route's interaction (for the log and the metrics) is named in
/// [`interaction::Interaction::of_route`].
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/health").route(web::get().to(operations::health)))
        .service(resource("/ready").route(web::get().to(operations::ready)))
        .service(resource("/metrics").route(web::get().to(operations::metrics)))
        .service(
            resource("/.well-known/smart-configuration")
                .route(web::get().to(auth::smart_configuration)),
        )
        .service(resource(token::TOKEN_PATH).route(web::post().to(token::token)));
    cfg.configure(openapi::routes);
    cfg.service(
        resource("/fhir/metadata")
            .route(web::get().to(metadata::capability_statement))
            .wrap(actix_web::middleware::from_fn(format::answer_in_format)),
    )
    .service(
        resource("/fhir/$versions")
            .route(web::get().to(metadata::versions_operation))
            .wrap(actix_web::middleware::from_fn(format::answer_in_format)),
    );
    // SMART App Launch looks for it under the FHIR base, without a token.
    cfg.service(
        resource("/fhir/.well-known/smart-configuration")
            .route(web::get().to(auth::smart_configuration)),
    );
    cfg.service(
        web::scope("/fhir")
            .wrap(actix_web::middleware::from_fn(auth::authenticate))
            .wrap(actix_web::middleware::from_fn(format::answer_in_format))
            // The commonest paths first, where nothing before them could match (see
            // `plain_path`); at their own place below for every other path.
            .service(type_level().guard(actix_web::guard::fn_guard(plain_path)))
            .service(instance_level().guard(actix_web::guard::fn_guard(plain_path)))
            .service(resource("/$changes").route(web::get().to(changes::pull)))
            .service(resource("/$changes/stream").route(web::get().to(changes::stream)))
            .service(resource("/$changes/websocket").route(web::get().to(changes::websocket)))
            .service(
                resource("/$export")
                    .route(web::get().to(export::system))
                    .route(web::post().to(export::system)),
            )
            .service(
                resource("/Patient/$export")
                    .route(web::get().to(export::patients))
                    .route(web::post().to(export::patients)),
            )
            .service(
                resource("/Group/{id}/$export")
                    .route(web::get().to(export::group))
                    .route(web::post().to(export::group)),
            )
            .service(
                resource("/$sql")
                    .route(web::get().to(sql::sql))
                    .route(web::post().to(sql::sql)),
            )
            .service(resource("/$import").route(web::post().to(import::import)))
            .service(resource("/$bulk-submit").route(web::post().to(import::bulk_submit)))
            .service(
                resource("/$bulk-submit-status").route(web::post().to(import::bulk_submit_status)),
            )
            .service(
                resource(JOB_PATH)
                    .route(web::get().to(jobs::status))
                    .route(web::delete().to(jobs::cancel)),
            )
            .service(resource(JOB_FILE_PATH).route(web::get().to(jobs::file)))
            .service(resource("/_history").route(web::get().to(history::system)))
            .configure(terminology::routes)
            .service(
                resource("")
                    .route(web::post().to(bundle::transaction_or_batch))
                    .route(web::get().to(search::system)),
            )
            // The base with a trailing slash, as some clients send it (fhir-kit-client's
            // system search).
            .service(
                resource("/")
                    .route(web::post().to(bundle::transaction_or_batch))
                    .route(web::get().to(search::system)),
            )
            .service(resource("/{type}/_history").route(web::get().to(history::of_type)))
            .service(resource("/{type}/_search").route(web::post().to(search::of_type_post)))
            .service(
                resource("/{type}/{id}/_history/{vid}/$erase")
                    .route(web::post().to(erase::version)),
            )
            .service(resource("/{type}/{id}/$erase").route(web::post().to(erase::resource)))
            .service(resource("/{type}/{id}/_history/{vid}").route(web::get().to(crud::vread)))
            .service(resource("/{type}/{id}/_history").route(web::get().to(history::instance)))
            .service(resource("/{type}/{id}/$everything").route(web::get().to(search::everything)))
            .service(
                resource("/$viewdefinition-export")
                    .route(web::post().to(view_export::kick_off_type)),
            )
            .service(
                resource("/ViewDefinition/$viewdefinition-export")
                    .route(web::post().to(view_export::kick_off_type)),
            )
            .service(
                resource("/ViewDefinition/{id}/$viewdefinition-export")
                    .route(web::post().to(view_export::kick_off_instance)),
            )
            .service(
                resource("/ViewDefinition/$run")
                    .route(web::get().to(views::run_type))
                    .route(web::post().to(views::run_type)),
            )
            .service(
                resource("/ViewDefinition/{id}/$run")
                    .route(web::get().to(views::run_instance))
                    .route(web::post().to(views::run_instance)),
            )
            .service(resource("/Patient/{id}/$purge").route(web::post().to(erase::purge)))
            .service(resource("/{type}/$bulk-delete").route(web::post().to(erase::bulk_delete)))
            .service(resource("/{type}/$validate").route(web::post().to(validate::of_type)))
            .service(
                resource("/{type}/{id}/$validate")
                    .route(web::get().to(validate::instance))
                    .route(web::post().to(validate::instance)),
            )
            .service(
                resource("/{compartment}/{id}/{type}").route(web::get().to(search::compartment)),
            )
            .service(instance_level())
            .service(type_level())
            .default_service(web::to(not_found)),
    )
    .default_service(web::to(not_found));
}

/// A job's status URL under the FHIR base (`jobs::status_url`).
pub const JOB_PATH: &str = "/_jobs/{id}";
/// A job's file under the FHIR base (`jobs::file_url`).
pub const JOB_FILE_PATH: &str = "/_jobs/{id}/files/{name}";

/// A route whose unmatched methods get a 405 OperationOutcome.
/// `/{type}/{id}`: read, update, patch, delete.
fn instance_level() -> actix_web::Resource {
    resource("/{type}/{id}")
        .route(web::get().to(crud::read))
        .route(web::put().to(crud::update))
        .route(web::patch().to(patch::instance))
        .route(web::delete().to(crud::delete))
}

/// `/{type}`: search, create, and the conditional update, patch and delete.
fn type_level() -> actix_web::Resource {
    resource("/{type}")
        .route(web::get().to(search::of_type))
        .route(web::post().to(crud::create))
        .route(web::put().to(crud::conditional))
        .route(web::patch().to(patch::conditional))
        .route(web::delete().to(crud::conditional))
}

/// Whether every segment of the path below `/fhir/` starts as a resource type or an id does
/// (a letter, a digit, `-` or `.`): no operation (`$`), no `_history`, `_search` or `_jobs`,
/// nothing percent-encoded, no empty segment. Every route of the scope with one or two
/// segments has one that does not, but `/{type}` and `/{type}/{id}`, so a path of one or two
/// such segments can only be theirs: [`routes`] tries them first for it. The router matches
/// each dynamic pattern with a regular expression, and trying the twenty before them for each
/// create and read took 1-2% of a create's CPU.
fn plain_path(ctx: &actix_web::guard::GuardContext) -> bool {
    let plain = |segment: &str| {
        segment
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    ctx.head()
        .uri
        .path()
        .strip_prefix("/fhir/")
        .is_some_and(|rest| rest.split('/').all(plain))
}

fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn not_found(req: HttpRequest) -> ApiResult {
    let last = req.path().rsplit('/').next().unwrap_or_default();
    crate::panics::inject(crate::panics::Fault::Handler, last);
    Err(FhirError::not_found(format!("there is nothing at {}", req.path())).into())
}

async fn method_not_allowed(req: HttpRequest) -> ApiResult {
    Err(FhirError::new(
        405,
        IssueCode::NotSupported,
        format!("{} is not supported on {}", req.method(), req.path()),
    )
    .into())
}

/// An error on its way to the client as an OperationOutcome.
#[derive(Debug)]
pub struct ApiError(pub FhirError);

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> actix_web::http::StatusCode {
        actix_web::http::StatusCode::from_u16(self.0.status)
            .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .content_type(http::FHIR_JSON)
            .body(self.0.to_outcome().to_string())
    }
}

impl From<FhirError> for ApiError {
    fn from(error: FhirError) -> Self {
        ApiError(error)
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> Self {
        ApiError(error.into())
    }
}

impl From<crate::store::commit::CommitError> for ApiError {
    fn from(error: crate::store::commit::CommitError) -> Self {
        ApiError(error.error)
    }
}

pub type ApiResult = Result<HttpResponse, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn only_paths_of_types_and_ids_are_plain() {
        let plain =
            |uri: &str| plain_path(&TestRequest::with_uri(uri).to_srv_request().guard_ctx());
        for uri in [
            "/fhir/Patient",
            "/fhir/Patient/123",
            "/fhir/Observation/a-1.b?_count=1",
        ] {
            assert!(plain(uri), "{uri}");
        }
        for uri in [
            "/fhir",
            "/fhir/",
            "/fhir/$export",
            "/fhir/%24export",
            "/fhir/_history",
            "/fhir/Patient/$export",
            "/fhir/Patient/_search",
            "/fhir/_jobs/1",
            "/fhir/Patient/",
            "/fhir//Patient",
            "/metadata",
        ] {
            assert!(!plain(uri), "{uri}");
        }
    }
}
