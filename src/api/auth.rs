//! Authorization at the HTTP edge: the middleware that verifies the bearer token of every
//! request under `/fhir` (`/fhir/metadata`, `/fhir/$versions` and the SMART configuration are
//! routed outside it), the [`Access`] extractor the handlers take,
//! `/.well-known/smart-configuration`, and the CapabilityStatement's `rest.security`. Under
//! `--auth none` the server warns loudly at start, `rest.security` says so and the SMART
//! configuration is 404.
//!
//! Both announce one token endpoint: the external authorization server's
//! (`--auth-token-url`, with `--auth-authorize-url`), as before, or else this server's own
//! (`/auth/token`, SMART Backend Services: `client_credentials` with `private_key_jwt`
//! assertions signed RS384 or ES384, [`super::token`]), which answers in both cases.
//!
//! Invariants: a request under `/fhir` reaches its handler only with an [`Access`] (a verified
//! token's, or [`Access::Open`] under `--auth none`); a missing, malformed, expired or badly
//! signed token is a 401 with `WWW-Authenticate: Bearer` and an OperationOutcome that says why
//! and never repeats the token.

use super::http::{FHIR_JSON, base_url};
use super::{ApiError, AppState};
use crate::auth::Access;
use crate::auth::token::{Mode, Rejection};
use crate::config::ServeConfig;
use crate::fhir::{FhirError, IssueCode};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, web};
use serde_json::{Value, json};
use std::future::{Ready, ready};
use std::sync::Arc;

/// The realm of the `WWW-Authenticate` challenges.
const REALM: &str = "fhirlake";

/// The middleware of the `/fhir` scope: verifies the bearer token and leaves the request's
/// [`Access`] in its extensions (where the handlers and the audit trail find it).
pub async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .expect("the app state is registered");
    let access = match &state.verifier {
        None => Access::Open,
        Some(verifier) => match bearer(req.headers()) {
            Ok(token) => match verifier.verify(token) {
                Ok(principal) => Access::Token(Arc::new(principal)),
                Err(rejection) => {
                    return Ok(req.into_response(unauthorized(Problem::Invalid(rejection))));
                }
            },
            Err(problem) => return Ok(req.into_response(unauthorized(problem))),
        },
    };
    req.extensions_mut().insert(access);
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// What is wrong with a request's credentials.
enum Problem {
    /// No `Authorization` header.
    Missing,
    /// An `Authorization` header that is not `Bearer <token>`.
    NotBearer,
    Invalid(Rejection),
}

/// The token of `Authorization: Bearer <token>` (the scheme in any case).
fn bearer(headers: &header::HeaderMap) -> Result<&str, Problem> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(Problem::Missing)?
        .to_str()
        .map_err(|_| Problem::NotBearer)?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(Problem::NotBearer)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(Problem::NotBearer);
    }
    Ok(token)
}

/// The 401 answer: a `WWW-Authenticate: Bearer` challenge (RFC 6750: no error code when no
/// credentials were sent) and an OperationOutcome.
fn unauthorized(problem: Problem) -> HttpResponse {
    let (challenge, diagnostics) = match &problem {
        Problem::Missing => (
            format!("Bearer realm=\"{REALM}\""),
            "this request needs a bearer token: Authorization: Bearer <JWT>".to_string(),
        ),
        Problem::NotBearer => (
            format!("Bearer realm=\"{REALM}\", error=\"invalid_request\""),
            "the Authorization header must be Bearer <JWT>".to_string(),
        ),
        Problem::Invalid(rejection) => (
            format!(
                "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{rejection}\""
            ),
            rejection.to_string(),
        ),
    };
    let outcome = FhirError::new(401, IssueCode::Login, diagnostics).to_outcome();
    HttpResponse::Unauthorized()
        .insert_header((header::WWW_AUTHENTICATE, challenge))
        .content_type(FHIR_JSON)
        .body(outcome.to_string())
}

/// The access of a request under `/fhir`, left by [`authenticate`]. A handler outside its
/// scope that asks for it is a server bug, answered with a 500 rather than with access.
impl FromRequest for Access {
    type Error = ApiError;
    type Future = Ready<Result<Access, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(req.extensions().get::<Access>().cloned().ok_or_else(|| {
            ApiError(FhirError::internal(
                "this route is outside the authorization middleware",
            ))
        }))
    }
}

/// The SMART scopes this server enforces, as `scopes_supported` lists them.
const SCOPES: &[&str] = &[
    "patient/*.cruds",
    "user/*.cruds",
    "system/*.cruds",
    "patient/*.rs",
    "user/*.rs",
    "system/*.rs",
    "patient/*.read",
    "user/*.read",
    "system/*.read",
    "patient/*.write",
    "user/*.write",
    "system/*.write",
];

/// `GET /.well-known/smart-configuration`, and the same at `/fhir/.well-known/...` (where SMART
/// App Launch 2.0 looks: under the FHIR base, without a token): what the server supports; 404
/// when authorization is off, as the specification asks of servers without it.
pub async fn smart_configuration(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let config = &state.config;
    if config.auth.mode == Mode::None {
        return Err(FhirError::not_found(
            "this server runs without authorization (--auth none): it has no SMART configuration",
        )
        .into());
    }
    let mut capabilities = vec![
        "permission-v1",
        "permission-v2",
        "permission-patient",
        "permission-user",
    ];
    let own = config.auth_token_url.is_none();
    if own {
        capabilities.push("client-confidential-asymmetric");
    }
    let mut body = json!({
        "capabilities": capabilities,
        "scopes_supported": SCOPES,
    });
    if let Some(issuer) = &config.auth.auth_issuer {
        body["issuer"] = issuer.clone().into();
    }
    let mut grant_types = Vec::new();
    if let Some(url) = &config.auth_authorize_url {
        body["authorization_endpoint"] = url.clone().into();
        body["response_types_supported"] = json!(["code"]);
        body["code_challenge_methods_supported"] = json!(["S256"]);
        grant_types.push("authorization_code");
    }
    body["token_endpoint"] = token_endpoint(config, &base_url(&req, &state)).into();
    if own {
        grant_types.push("client_credentials");
        body["token_endpoint_auth_methods_supported"] = json!(["private_key_jwt"]);
        body["token_endpoint_auth_signing_alg_values_supported"] = json!(["RS384", "ES384"]);
    }
    if !grant_types.is_empty() {
        body["grant_types_supported"] = json!(grant_types);
    }
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body.to_string()))
}

/// The token endpoint announced for the FHIR base `base`: the external one when configured,
/// else this server's own.
fn token_endpoint(config: &ServeConfig, base: &str) -> String {
    config
        .auth_token_url
        .clone()
        .unwrap_or_else(|| super::token::token_url(base))
}

/// The CapabilityStatement's `rest.security` at the FHIR base `base`: SMART on FHIR with the
/// token endpoint (and the authorization server's authorize endpoint when configured), or a
/// plain statement that authorization is off.
pub fn security(config: &ServeConfig, base: &str) -> Value {
    if config.auth.mode == Mode::None {
        return json!({
            "cors": false,
            "description": "Authorization is OFF (--auth none): every client may read and \
                write everything, and requests carry no identity.",
        });
    }
    let mut security = json!({
        "cors": false,
        "service": [{
            "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                "code": "SMART-on-FHIR",
            }],
            "text": "OAuth2 bearer tokens (JWT) with SMART on FHIR v1 and v2 scopes",
        }],
        "description": format!(
            "Every request under the FHIR base but metadata and $versions needs Authorization: \
             Bearer <JWT>, signed with {}. SMART scopes (patient/, user/, system/; cruds; v1 \
             read/write) grant each interaction: read, vread and history r, search s, create \
             c, update u, delete d, Bundles entry by entry. patient/ scopes grant the compartment of the \
             token's patient claim only; a scope's query (?category=laboratory) restricts it \
             further. {} See .well-known/smart-configuration under this base.",
            config.auth.mode.as_str(),
            if config.auth_token_url.is_none() {
                "Backend services registered with `fhirlake client add` get tokens for their \
                 system/ scopes from this server's token endpoint (SMART Backend Services: \
                 client_credentials with a private_key_jwt assertion signed RS384 or ES384), \
                 which it accepts too."
            } else {
                "Tokens come from the authorization server's token endpoint."
            }
        ),
    });
    let mut uris = Vec::new();
    if let Some(url) = &config.auth_authorize_url {
        uris.push(json!({"url": "authorize", "valueUri": url}));
    }
    uris.push(json!({"url": "token", "valueUri": token_endpoint(config, base)}));
    security["extension"] = json!([{
        "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
        "extension": uris,
    }]);
    security
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: Option<&str>) -> header::HeaderMap {
        let mut headers = header::HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert(
                header::AUTHORIZATION,
                header::HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        assert_eq!(
            bearer(&headers(Some("Bearer abc.def.ghi"))).ok(),
            Some("abc.def.ghi")
        );
        assert_eq!(bearer(&headers(Some("bearer   x "))).ok(), Some("x"));
        assert!(matches!(bearer(&headers(None)), Err(Problem::Missing)));
        for value in ["Basic dXNlcjpwdw==", "Bearer", "Bearer   ", "token"] {
            assert!(
                matches!(bearer(&headers(Some(value))), Err(Problem::NotBearer)),
                "{value}"
            );
        }
    }

    #[test]
    fn a_401_challenges_and_says_why() {
        let response = unauthorized(Problem::Invalid(Rejection::Expired));
        assert_eq!(response.status(), 401);
        let challenge = response.headers().get(header::WWW_AUTHENTICATE).unwrap();
        assert_eq!(
            challenge.to_str().unwrap(),
            "Bearer realm=\"fhirlake\", error=\"invalid_token\", \
             error_description=\"the token has expired\""
        );
    }
}
