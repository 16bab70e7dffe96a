//! `POST /auth/token`: the token endpoint of SMART Backend Services. A client registered with
//! `fhirlake client add` sends `grant_type=client_credentials`, a signed client assertion
//! (`client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`,
//! `client_assertion`, checked by [`crate::auth::assertion`]) and the `scope` it wants, and
//! gets an access token for the scopes it asked for and was registered with
//! ([`crate::auth::scope::granted`]), signed with the server's own key
//! ([`crate::auth::token::OwnKey`]) and valid `--backend-token-lifetime`.
//!
//! This endpoint is OAuth 2.0, not FHIR: an error the client causes is a 400 with an RFC 6749
//! §5.2 JSON body (`error`: `invalid_request`, `invalid_client`, `invalid_scope`,
//! `unsupported_grant_type`; `error_description`), never an OperationOutcome. Every failure
//! of the client's authentication is `invalid_client`, as SMART asks; `invalid_grant` is not
//! used, since `client_credentials` carries no grant to be invalid. Only the server's own
//! faults (a storage error: 500) and the HTTP layer's limits (`api/admission.rs`) answer with
//! an OperationOutcome, as everywhere else. Under `--auth none` the endpoint is a 404.
//!
//! Invariants:
//! - Every input is bounded before it costs anything: the form at [`MAX_FORM`] bytes, each
//!   parameter given at most once and UTF-8, the assertion at
//!   [`crate::auth::assertion::MAX_ASSERTION`] bytes, the scope at [`MAX_SCOPE`] bytes, a
//!   JWKS URL's answer at [`crate::auth::clients::MAX_JWKS`] bytes within [`JWKS_TIMEOUT`].
//! - A token is issued only after the assertion's `jti` is durably recorded as used, and only
//!   to the request whose record stands ([`crate::store::Store::use_assertion`]): an assertion
//!   buys one token, across restarts too.
//! - A JWKS URL is fetched under the endpoint rules of rest-hook Subscriptions
//!   (`--subscription-endpoints`, `cdc/endpoints.rs`: public addresses only unless listed, no
//!   redirects), kept [`JWKS_TTL`], and fetched again for a `kid` it lacks at most once per
//!   [`JWKS_RETRY`] (a failed fetch is retried no sooner either).
//! - The token URL is `/auth/token` beside the FHIR base: the base URL (`--base-url`, or the
//!   request's) without its last path segment ([`token_url`]); an assertion's `aud` must be it.

use super::http::{base_url, header_str, media_type};
use super::{ApiError, AppState};
use crate::auth::assertion::{self, Checked, Refusal};
use crate::auth::clients::{self, Client, Keys};
use crate::auth::scope::{self, Scope, Scopes};
use crate::auth::token::{Grant, OwnKey};
use crate::cdc::endpoints::{self, Prefix};
use crate::fhir::FhirError;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::JwkSet;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The path of the token endpoint.
pub const TOKEN_PATH: &str = "/auth/token";

/// The largest form body read.
pub const MAX_FORM: usize = 16 * 1024;

/// The longest `scope` parameter.
pub const MAX_SCOPE: usize = 4096;

/// How long a JWKS fetched from a client's URL is used.
pub const JWKS_TTL: Duration = Duration::from_secs(300);

/// The shortest time between two fetches of one JWKS URL (for a `kid` the cached set lacks, or
/// after a failure).
pub const JWKS_RETRY: Duration = Duration::from_secs(30);

/// The longest a JWKS URL may take to answer.
pub const JWKS_TIMEOUT: Duration = Duration::from_secs(10);

/// The most JWKS URLs cached at once (the cache starts over beyond).
const MAX_CACHED: usize = 1024;

/// The token endpoint's state: the key it signs with, how long its tokens live, the JWKS of
/// clients registered with a URL.
pub struct Backend {
    pub key: OwnKey,
    pub lifetime: Duration,
    keys: JwksCache,
}

impl Backend {
    pub fn new(key: OwnKey, lifetime: Duration, endpoints: Vec<Prefix>) -> anyhow::Result<Self> {
        Ok(Backend {
            key,
            lifetime,
            keys: JwksCache {
                clients: endpoints::Clients::new(endpoints, JWKS_TIMEOUT)?,
                fetched: Mutex::new(HashMap::new()),
            },
        })
    }
}

/// The token endpoint's URL for the FHIR base `base` (see the module's invariants).
pub fn token_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    let root = match base.rfind('/') {
        Some(at) if !base[..at].ends_with('/') => &base[..at],
        _ => base,
    };
    format!("{root}{TOKEN_PATH}")
}

/// An OAuth 2.0 error (RFC 6749 §5.2).
#[derive(Debug)]
struct OAuthError {
    code: &'static str,
    description: String,
    /// The client the request named, when it named one (for the log).
    client: Option<String>,
}

impl OAuthError {
    fn new(code: &'static str, description: impl Into<String>) -> OAuthError {
        OAuthError {
            code,
            description: description.into(),
            client: None,
        }
    }

    fn request(description: impl Into<String>) -> OAuthError {
        OAuthError::new("invalid_request", description)
    }

    fn client(client: Option<&str>, refusal: Refusal) -> OAuthError {
        OAuthError {
            code: "invalid_client",
            description: refusal.to_string(),
            client: client.map(str::to_string),
        }
    }

    fn response(&self) -> HttpResponse {
        let body = json!({"error": self.code, "error_description": self.description});
        no_store(HttpResponse::BadRequest()).json(body)
    }
}

/// The headers of every token endpoint answer (RFC 6749 §5.1).
fn no_store(mut response: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    response
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"));
    response
}

/// Why a request got no token.
enum Failure {
    OAuth(OAuthError),
    Server(FhirError),
}

impl From<OAuthError> for Failure {
    fn from(error: OAuthError) -> Self {
        Failure::OAuth(error)
    }
}

impl From<crate::store::StoreError> for Failure {
    fn from(error: crate::store::StoreError) -> Self {
        Failure::Server(error.into())
    }
}

/// `POST /auth/token`.
pub async fn token(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Some(backend) = &state.backend else {
        return Err(FhirError::not_found(
            "this server runs without authorization (--auth none): it issues no tokens",
        )
        .into());
    };
    let base = base_url(&req, &state);
    let token_url = token_url(&base);
    match issue(&req, payload, &state, backend, &token_url, &base).await {
        Ok(answer) => Ok(no_store(HttpResponse::Ok()).json(answer)),
        Err(Failure::OAuth(error)) => {
            tracing::info!(client = error.client.as_deref(), error = error.code,
                why = %error.description, "token request refused");
            Ok(error.response())
        }
        Err(Failure::Server(error)) => Err(error.into()),
    }
}

/// Checks the request and issues its token; the answer's JSON.
async fn issue(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    backend: &Backend,
    token_url: &str,
    base: &str,
) -> Result<serde_json::Value, Failure> {
    let mut form = read_form(req, payload).await?;
    let mut take = |name: &str| form.remove(name);
    match take("grant_type").as_deref() {
        Some("client_credentials") => {}
        Some(other) => {
            return Err(OAuthError::new(
                "unsupported_grant_type",
                format!(
                    "grant_type {other} is not supported: this endpoint takes client_credentials"
                ),
            )
            .into());
        }
        None => return Err(OAuthError::request("grant_type is missing").into()),
    }
    let no_auth = |why: &str| OAuthError::new("invalid_client", why.to_string());
    match take("client_assertion_type").as_deref() {
        Some(assertion::ASSERTION_TYPE) => {}
        Some(_) => {
            return Err(no_auth(
                "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            )
            .into());
        }
        None => {
            return Err(no_auth(
                "the client authenticates with a signed JWT: give client_assertion_type and \
                 client_assertion",
            )
            .into());
        }
    }
    let assertion =
        take("client_assertion").ok_or_else(|| no_auth("client_assertion is missing"))?;
    let requested = take("scope").ok_or_else(|| {
        OAuthError::request("scope is missing: ask for system/ scopes, e.g. system/*.rs")
    })?;
    if requested.len() > MAX_SCOPE {
        return Err(
            OAuthError::request(format!("scope is longer than {MAX_SCOPE} characters")).into(),
        );
    }
    let claimed = assertion::claimed_client(&assertion)
        .map_err(|refusal| OAuthError::client(None, refusal))?;
    let refused = |refusal| OAuthError::client(Some(&claimed), refusal);
    if let Some(client_id) = take("client_id")
        && client_id != claimed
    {
        return Err(refused(Refusal::Issuer).into());
    }
    let client = match state.store.client(&claimed)? {
        Some(record) => Client::from_bytes(&record)
            .map_err(FhirError::internal)
            .map_err(Failure::Server)?,
        None => return Err(refused(Refusal::UnknownClient(claimed.clone())).into()),
    };
    let jwks = match &client.keys {
        Keys::Jwks(set) => Arc::new(set.clone()),
        Keys::JwksUrl(url) => {
            let signing = assertion::signing(&assertion, &client).map_err(&refused)?;
            backend
                .keys
                .keys(url, &signing.kid, signing.alg)
                .await
                .map_err(|why| refused(Refusal::KeysUnavailable(why)))?
        }
    };
    let Checked {
        client: id,
        jti,
        lapses,
    } = assertion::check(&assertion, &client, &jwks, token_url).map_err(&refused)?;
    if !state.store.use_assertion(&id, &jti, lapses).await? {
        return Err(refused(Refusal::Replayed).into());
    }
    let granted = scope::granted(&Scopes::parse(&requested).resources, &client.scopes());
    if granted.is_empty() {
        return Err(OAuthError {
            code: "invalid_scope",
            description: format!(
                "none of the scopes asked for is within those the client is registered with ({})",
                client.scope
            ),
            client: Some(id),
        }
        .into());
    }
    let scope = granted
        .iter()
        .map(Scope::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    let grant = Grant {
        scope: scope.clone(),
        patient: None,
        subject: id.clone(),
        client_id: id.clone(),
        lifetime: backend.lifetime,
    };
    let access_token = backend
        .key
        .issue(&grant, token_url, base)
        .map_err(|e| Failure::Server(FhirError::internal(e.to_string())))?;
    tracing::info!(client = %id, %scope, "token issued");
    Ok(json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": backend.lifetime.as_secs(),
        "scope": scope,
    }))
}

/// The form of a token request: `application/x-www-form-urlencoded`, at most [`MAX_FORM`]
/// bytes, each parameter once and UTF-8 once decoded.
async fn read_form(
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<HashMap<String, String>, OAuthError> {
    let media = header_str(req.headers(), header::CONTENT_TYPE).map(media_type);
    if media.as_deref() != Some("application/x-www-form-urlencoded") {
        return Err(OAuthError::request(
            "a token request is a form: Content-Type: application/x-www-form-urlencoded",
        ));
    }
    let too_large = || OAuthError::request(format!("the form is larger than {MAX_FORM} bytes"));
    let declared = header_str(req.headers(), header::CONTENT_LENGTH)
        .and_then(|length| length.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_FORM as u64) {
        return Err(too_large());
    }
    let body = match payload.to_bytes_limited(MAX_FORM).await {
        Ok(Ok(body)) => body,
        Ok(Err(error)) => {
            return Err(OAuthError::request(format!(
                "the form could not be read: {error}"
            )));
        }
        Err(_) => return Err(too_large()),
    };
    parse_form(&body)
}

/// The parameters of a form body (see [`read_form`]).
fn parse_form(body: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
    let decode = |part: &[u8]| {
        let spaced: Vec<u8> = part
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        let bytes: Vec<u8> = percent_encoding::percent_decode(&spaced).collect();
        String::from_utf8(bytes)
            .map_err(|_| OAuthError::request("the form is not UTF-8 once decoded"))
    };
    let mut form = HashMap::new();
    for pair in body.split(|&b| b == b'&').filter(|pair| !pair.is_empty()) {
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &b""[..]),
        };
        let name = decode(name)?;
        if form.insert(name.clone(), decode(value)?).is_some() {
            return Err(OAuthError::request(format!(
                "the parameter {name} is given more than once"
            )));
        }
    }
    Ok(form)
}

/// The JWKS of clients registered with a URL, as last fetched.
struct JwksCache {
    clients: endpoints::Clients,
    fetched: Mutex<HashMap<String, Fetched>>,
}

#[derive(Clone)]
struct Fetched {
    at: Instant,
    keys: Result<Arc<JwkSet>, String>,
}

impl JwksCache {
    /// The keys at `url` for an assertion signed with `alg` by `kid`: the cached set while it
    /// is fresh and has the key (or was fetched less than [`JWKS_RETRY`] ago), else a new
    /// fetch. An error says why the keys could not be had.
    async fn keys(&self, url: &str, kid: &str, alg: Algorithm) -> Result<Arc<JwkSet>, String> {
        let cached = self
            .fetched
            .lock()
            .expect("the JWKS cache")
            .get(url)
            .cloned();
        let usable = cached.filter(|fetched| {
            let age = fetched.at.elapsed();
            match &fetched.keys {
                Ok(set) => {
                    age < JWKS_TTL
                        && (age < JWKS_RETRY || clients::key_for(set, kid, alg).is_some())
                }
                Err(_) => age < JWKS_RETRY,
            }
        });
        if let Some(fetched) = usable {
            return fetched.keys;
        }
        let keys = self.fetch(url).await.map(Arc::new);
        if let Err(why) = &keys {
            tracing::warn!(url, "a client's JWKS could not be fetched: {why}");
        }
        let mut fetched = self.fetched.lock().expect("the JWKS cache");
        if fetched.len() >= MAX_CACHED {
            fetched.clear();
        }
        fetched.insert(
            url.to_string(),
            Fetched {
                at: Instant::now(),
                keys: keys.clone(),
            },
        );
        keys
    }

    /// GETs the JWKS at `url`, under the endpoint rules, at most [`clients::MAX_JWKS`] bytes.
    async fn fetch(&self, url: &str) -> Result<JwkSet, String> {
        let url = reqwest::Url::parse(url).map_err(|e| format!("{url} is not a URL: {e}"))?;
        let client = self.clients.client(&url)?;
        let failed = |e: reqwest::Error| format!("{url}: {e}");
        let mut response = client
            .get(url.clone())
            .header(header::ACCEPT.as_str(), "application/json")
            .send()
            .await
            .map_err(failed)?;
        if !response.status().is_success() {
            return Err(format!("{url} answered {}", response.status()));
        }
        let too_large = || format!("{url} answered more than {} bytes", clients::MAX_JWKS);
        if response
            .content_length()
            .is_some_and(|length| length > clients::MAX_JWKS as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            body.extend_from_slice(&chunk);
            if body.len() > clients::MAX_JWKS {
                return Err(too_large());
            }
        }
        clients::parse_jwks(&body).map_err(|why| format!("{url}: {why}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_url_is_beside_the_fhir_base() {
        for (base, url) in [
            (
                "http://127.0.0.1:8080/fhir",
                "http://127.0.0.1:8080/auth/token",
            ),
            (
                "https://example.org/fhir/",
                "https://example.org/auth/token",
            ),
            (
                "https://example.org/lake/r4",
                "https://example.org/lake/auth/token",
            ),
            ("https://example.org", "https://example.org/auth/token"),
        ] {
            assert_eq!(token_url(base), url, "{base}");
        }
    }

    #[test]
    fn forms_are_read_strictly() {
        let form =
            parse_form(b"grant_type=client_credentials&scope=system%2F*.rs+x&empty").unwrap();
        assert_eq!(form["grant_type"], "client_credentials");
        assert_eq!(form["scope"], "system/*.rs x");
        assert_eq!(form["empty"], "");
        for bad in [&b"a=1&a=2"[..], b"a=%FF", b"%C3=x"] {
            assert_eq!(parse_form(bad).unwrap_err().code, "invalid_request");
        }
    }
}
