//! The SMART endpoints beside the FHIR API, as OpenAPI operations: the token endpoint of
//! SMART Backend Services (`api/token.rs`) and the SMART configuration under the FHIR base
//! (`api/auth.rs`). Neither is FHIR: their bodies are OAuth 2.0 and SMART JSON, described
//! here inline; they need no token and take no `_format`.

use super::components::Error;
use super::interactions::{errors, operation};
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, Required, ResponseBuilder, Schema};

/// The tag of these operations.
pub const SMART_TAG: &str = "SMART authorization";

/// What the tag says.
pub const SMART_TAG_DESCRIPTION: &str = "SMART on FHIR: the SMART configuration, and the token \
    endpoint of SMART Backend Services (OAuth 2.0 client_credentials with a private_key_jwt \
    client assertion) for the clients registered with `fhirlake client add`.";

/// The operations: (path, method, operation).
pub fn operations() -> Vec<(&'static str, HttpMethod, Operation)> {
    vec![
        (super::super::token::TOKEN_PATH, HttpMethod::Post, token()),
        (
            "/fhir/.well-known/smart-configuration",
            HttpMethod::Get,
            configuration(),
        ),
    ]
}

fn string(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
}

fn json(schema: impl Into<Schema>) -> utoipa::openapi::Content {
    ContentBuilder::new().schema(Some(schema.into())).build()
}

/// `POST /auth/token`
fn token() -> Operation {
    let form = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "grant_type",
            string("`client_credentials`.").enum_values(Some(["client_credentials"])),
        )
        .required("grant_type")
        .property(
            "client_assertion_type",
            string("`urn:ietf:params:oauth:client-assertion-type:jwt-bearer`.").enum_values(Some(
                ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"],
            )),
        )
        .required("client_assertion_type")
        .property(
            "client_assertion",
            string(
                "A JWT signed RS384 or ES384 with a key of the client's JWKS named by its \
                 `kid`: `iss` and `sub` the client id, `aud` this endpoint's URL, `exp` at most \
                 five minutes ahead, a `jti` never used before. At most 8 KiB.",
            )
            .max_length(Some(8 * 1024)),
        )
        .required("client_assertion")
        .property(
            "scope",
            string(
                "The SMART scopes wanted, space-separated (`system/*.rs`): the token gets those \
                 the client is also registered with. At most 4096 characters.",
            )
            .max_length(Some(4096)),
        )
        .required("scope");
    let granted = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "access_token",
            string("A JWT bearer token for the FHIR API."),
        )
        .required("access_token")
        .property("token_type", string("`bearer`."))
        .required("token_type")
        .property(
            "expires_in",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .description(Some(
                    "Seconds until it expires (`--backend-token-lifetime`).",
                )),
        )
        .required("expires_in")
        .property("scope", string("The scopes granted, space-separated."))
        .required("scope");
    let error = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "error",
            string("The RFC 6749 §5.2 error code.").enum_values(Some([
                "invalid_request",
                "invalid_client",
                "invalid_scope",
                "unsupported_grant_type",
            ])),
        )
        .required("error")
        .property("error_description", string("Why, in words."));
    let operation = operation(
        SMART_TAG,
        "token".into(),
        "token: an access token for a backend client (SMART Backend Services)".into(),
        "OAuth 2.0, not FHIR. A client registered with `fhirlake client add` authenticates with \
         a signed client assertion and gets a short-lived access token for the scopes it asks \
         for and is registered with. Each assertion buys one token. Refusals are 400 with an \
         OAuth error: `invalid_client` for anything wrong with the assertion or the client, \
         `invalid_scope` when no scope asked for is granted, `unsupported_grant_type`, \
         `invalid_request` for a malformed form (at most 16 KiB, each parameter once). 404 \
         when the server runs without authorization.",
    )
    .request_body(Some(
        RequestBodyBuilder::new()
            .description(Some("The token request, as a form."))
            .required(Some(Required::True))
            .content("application/x-www-form-urlencoded", json(form))
            .build(),
    ))
    .response(
        "200",
        ResponseBuilder::new()
            .description("The access token (`Cache-Control: no-store`).")
            .content("application/json", json(granted))
            .build(),
    )
    .response(
        "400",
        ResponseBuilder::new()
            .description("An OAuth 2.0 error (RFC 6749 §5.2).")
            .content("application/json", json(error))
            .build(),
    );
    errors(operation, &[Error::NotFound]).build()
}

/// `GET /fhir/.well-known/smart-configuration`
fn configuration() -> Operation {
    let words = |description: &str| {
        ArrayBuilder::new()
            .items(ObjectBuilder::new().schema_type(Type::String))
            .description(Some(description))
    };
    let configuration = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "token_endpoint",
            string("This server's token endpoint, or the authorization server's when configured."),
        )
        .property("grant_types_supported", words("`client_credentials`, and `authorization_code` with an authorization server."))
        .property(
            "token_endpoint_auth_methods_supported",
            words("`private_key_jwt` (the own token endpoint)."),
        )
        .property(
            "token_endpoint_auth_signing_alg_values_supported",
            words("`RS384`, `ES384`."),
        )
        .property("scopes_supported", words("The SMART scopes enforced."))
        .property(
            "capabilities",
            words("SMART capabilities: `permission-v1`, `permission-v2`, `client-confidential-asymmetric`, ..."),
        );
    let operation = operation(
        SMART_TAG,
        "smartConfiguration".into(),
        "SMART configuration: how to get tokens for this server".into(),
        "SMART App Launch's discovery document, without a token (also at \
         `/.well-known/smart-configuration`). 404 when the server runs without authorization.",
    )
    .response(
        "200",
        ResponseBuilder::new()
            .description("The SMART configuration.")
            .content("application/json", json(configuration))
            .build(),
    );
    errors(operation, &[Error::NotFound]).build()
}
