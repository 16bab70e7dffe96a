//! What operations share, defined once under `components` and referenced by name: parameters,
//! response headers, error responses and the security scheme (the FHIR schemas come from
//! [`super::fhir_schemas`]).
//!
//! Each shared part is an enum variant; its component name comes from the same variant as every
//! reference to it, so a reference cannot name a component that does not exist.

use super::fhir_schemas;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    Components, Content, ContentBuilder, HeaderBuilder, Ref, Required, ResponseBuilder,
};

/// The media types of every FHIR request and response body.
pub const FHIR_JSON: &str = "application/fhir+json";
pub const FHIR_XML: &str = "application/fhir+xml";

/// A FHIR body of the schema `name` in both formats: FHIR JSON (with `example`, when given)
/// and FHIR XML. The schemas are the official JSON ones; the XML form of the same resources is
/// the specification's XML format.
pub trait FhirBodies: Sized {
    fn content_of(self, media_type: &str, content: Content) -> Self;

    fn fhir_bodies(self, name: &str) -> Self {
        self.fhir_bodies_with_example(name, None)
    }

    fn fhir_bodies_with_example(self, name: &str, example: Option<serde_json::Value>) -> Self {
        let schema = || Some(Ref::from_schema_name(name));
        self.content_of(
            FHIR_JSON,
            ContentBuilder::new()
                .schema(schema())
                .example(example)
                .build(),
        )
        .content_of(FHIR_XML, ContentBuilder::new().schema(schema()).build())
    }
}

impl FhirBodies for ResponseBuilder {
    fn content_of(self, media_type: &str, content: Content) -> Self {
        self.content(media_type, content)
    }
}

impl FhirBodies for RequestBodyBuilder {
    fn content_of(self, media_type: &str, content: Content) -> Self {
        self.content(media_type, content)
    }
}

/// The name of the bearer token security scheme.
pub const BEARER: &str = "bearer";

/// A parameter that several operations take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    Id,
    Vid,
    Count,
    Since,
    At,
    Format,
    IfMatch,
    IfNoneMatch,
    IfModifiedSince,
    Prefer,
    Mode,
    Profile,
}

impl Param {
    const ALL: [Param; 12] = [
        Param::Id,
        Param::Vid,
        Param::Count,
        Param::Since,
        Param::At,
        Param::Format,
        Param::IfMatch,
        Param::IfNoneMatch,
        Param::IfModifiedSince,
        Param::Prefer,
        Param::Mode,
        Param::Profile,
    ];

    /// The parameter's name, which is also its component name.
    fn name(self) -> &'static str {
        match self {
            Param::Id => "id",
            Param::Vid => "vid",
            Param::Count => "_count",
            Param::Since => "_since",
            Param::At => "_at",
            Param::Format => "_format",
            Param::IfMatch => "If-Match",
            Param::IfNoneMatch => "If-None-Match",
            Param::IfModifiedSince => "If-Modified-Since",
            Param::Prefer => "Prefer",
            Param::Mode => "mode",
            Param::Profile => "profile",
        }
    }

    pub fn reference(self) -> Ref {
        Ref::new(format!("#/components/parameters/{}", self.name()))
    }

    fn definition(self) -> Parameter {
        let (location, kind, description, example) = match self {
            Param::Id => (
                ParameterIn::Path,
                Type::String,
                "The logical id of the resource: 1 to 64 letters, digits, `-` and `.`.",
                Some("example"),
            ),
            Param::Vid => (
                ParameterIn::Path,
                Type::String,
                "The version id (`meta.versionId`): 1 for the first version, then 2, 3, ...",
                Some("1"),
            ),
            Param::Count => (
                ParameterIn::Query,
                Type::Integer,
                "The most entries per page (default 50, at most `--max-count`, 1000 by \
                 default). Further pages are reached by the Bundle's `next` link.",
                None,
            ),
            Param::Since => (
                ParameterIn::Query,
                Type::String,
                "Only versions created at or after this instant (`2024-01-31T12:00:00Z`; a \
                 date or partial date means its start).",
                None,
            ),
            Param::At => (
                ParameterIn::Query,
                Type::String,
                "Only versions current at some point within this period: a date, partial date \
                 or instant (`2024`, `2024-01`, `2024-01-31`).",
                None,
            ),
            Param::Format => (
                ParameterIn::Query,
                Type::String,
                "Overrides `Accept`: `json`, `application/fhir+json` or `application/json` for \
                 FHIR JSON, `xml`, `application/fhir+xml` or `application/xml` for FHIR XML. \
                 Any other format is answered with 406.",
                None,
            ),
            Param::IfMatch => (
                ParameterIn::Header,
                Type::String,
                "Optimistic locking: the write happens only if the current version is this \
                 one (`W/\"3\"`); otherwise 412.",
                None,
            ),
            Param::IfNoneMatch => (
                ParameterIn::Header,
                Type::String,
                "Conditional read: 304 Not Modified when the current version is this one \
                 (`W/\"3\"`, or `*`).",
                None,
            ),
            Param::IfModifiedSince => (
                ParameterIn::Header,
                Type::String,
                "Conditional read: 304 Not Modified when the resource has not changed since \
                 this HTTP date (`Wed, 31 Jan 2024 12:00:00 GMT`).",
                None,
            ),
            Param::Prefer => (
                ParameterIn::Header,
                Type::String,
                "What a successful write answers with: `return=representation` (the stored \
                 resource, the default), `return=minimal` (no body) or \
                 `return=OperationOutcome`.",
                None,
            ),
            Param::Mode => (
                ParameterIn::Query,
                Type::String,
                "`$validate`: `create`, `update` or `delete` (the last two at the instance \
                 level): the token needs that interaction's permission; without a mode, read.",
                None,
            ),
            Param::Profile => (
                ParameterIn::Query,
                Type::String,
                "`$validate`: the canonical URL of a profile (a StructureDefinition known \
                 here) to check against, besides the base definition.",
                None,
            ),
        };
        let mut schema = ObjectBuilder::new().schema_type(kind);
        if self == Param::Prefer {
            schema = schema.enum_values(Some([
                "return=representation",
                "return=minimal",
                "return=OperationOutcome",
            ]));
        }
        parameter(self.name(), location, description, schema)
            .example(example.map(Into::into))
            .build()
    }
}

/// A parameter named `name` in `location` whose values `schema` describes; path parameters
/// are required, others optional. Shared parameters are [`Param`]s; an interaction's own (a
/// search parameter, say) is made here and added to its operation directly.
pub fn parameter(
    name: &str,
    location: ParameterIn,
    description: &str,
    schema: ObjectBuilder,
) -> ParameterBuilder {
    let required = if location == ParameterIn::Path {
        Required::True
    } else {
        Required::False
    };
    Parameter::builder()
        .name(name)
        .parameter_in(location)
        .required(required)
        .description(Some(description))
        .schema(Some(schema))
}

/// A response header that several responses carry.
#[derive(Debug, Clone, Copy)]
pub enum Header {
    ETag,
    LastModified,
    Location,
}

impl Header {
    const ALL: [Header; 3] = [Header::ETag, Header::LastModified, Header::Location];

    /// The header's name, which is also its component name.
    pub fn name(self) -> &'static str {
        match self {
            Header::ETag => "ETag",
            Header::LastModified => "Last-Modified",
            Header::Location => "Location",
        }
    }

    pub fn reference(self) -> Ref {
        Ref::new(format!("#/components/headers/{}", self.name()))
    }

    fn definition(self) -> utoipa::openapi::Header {
        let description = match self {
            Header::ETag => "The version of the resource as a weak ETag: `W/\"3\"`.",
            Header::LastModified => "When this version was stored (`meta.lastUpdated`).",
            Header::Location => {
                "The version that was written: `{base}/{type}/{id}/_history/{vid}`."
            }
        };
        HeaderBuilder::new()
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .description(Some(description))
            .build()
    }
}

/// An error answer: always an OperationOutcome whose issues say what went wrong.
#[derive(Debug, Clone, Copy)]
pub enum Error {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    NotAcceptable,
    Conflict,
    Gone,
    PreconditionFailed,
    TooLarge,
    UnsupportedMediaType,
    Unprocessable,
    NotImplemented,
    UriTooLong,
    HeadersTooLarge,
    TooManyRequests,
    Internal,
}

impl Error {
    /// What any request may be answered, whatever the operation: checked before routing, or
    /// a fault of the server.
    pub const ANY_REQUEST: [Error; 3] =
        [Error::UriTooLong, Error::HeadersTooLarge, Error::Internal];

    const ALL: [Error; 17] = [
        Error::BadRequest,
        Error::Unauthorized,
        Error::Forbidden,
        Error::NotFound,
        Error::MethodNotAllowed,
        Error::NotAcceptable,
        Error::Conflict,
        Error::Gone,
        Error::PreconditionFailed,
        Error::TooLarge,
        Error::UnsupportedMediaType,
        Error::Unprocessable,
        Error::NotImplemented,
        Error::UriTooLong,
        Error::HeadersTooLarge,
        Error::TooManyRequests,
        Error::Internal,
    ];

    /// The component name of the response.
    fn name(self) -> &'static str {
        match self {
            Error::BadRequest => "BadRequest",
            Error::Unauthorized => "Unauthorized",
            Error::Forbidden => "Forbidden",
            Error::NotFound => "NotFound",
            Error::MethodNotAllowed => "MethodNotAllowed",
            Error::NotAcceptable => "NotAcceptable",
            Error::Conflict => "Conflict",
            Error::Gone => "Gone",
            Error::PreconditionFailed => "PreconditionFailed",
            Error::TooLarge => "TooLarge",
            Error::UnsupportedMediaType => "UnsupportedMediaType",
            Error::Unprocessable => "Unprocessable",
            Error::NotImplemented => "NotImplemented",
            Error::UriTooLong => "UriTooLong",
            Error::HeadersTooLarge => "HeadersTooLarge",
            Error::TooManyRequests => "TooManyRequests",
            Error::Internal => "Internal",
        }
    }

    pub fn status(self) -> &'static str {
        match self {
            Error::BadRequest => "400",
            Error::Unauthorized => "401",
            Error::Forbidden => "403",
            Error::NotFound => "404",
            Error::MethodNotAllowed => "405",
            Error::NotAcceptable => "406",
            Error::Conflict => "409",
            Error::Gone => "410",
            Error::PreconditionFailed => "412",
            Error::TooLarge => "413",
            Error::UnsupportedMediaType => "415",
            Error::Unprocessable => "422",
            Error::NotImplemented => "501",
            Error::UriTooLong => "414",
            Error::HeadersTooLarge => "431",
            Error::TooManyRequests => "429",
            Error::Internal => "500",
        }
    }

    pub fn reference(self) -> Ref {
        Ref::from_response_name(self.name())
    }

    fn description(self) -> &'static str {
        match self {
            Error::BadRequest => {
                "Bad request: the body is not JSON or FHIR XML, or not a valid resource of this \
                 type (the issue's expression names the element at fault), the id in the URL \
                 and the body differ, or a parameter or header is malformed."
            }
            Error::Unauthorized => {
                "Unauthorized: no bearer token, or one that is malformed, expired, not yet \
                 valid, badly signed, or of another issuer or audience. `WWW-Authenticate: \
                 Bearer` says which; the token is never repeated."
            }
            Error::Forbidden => {
                "Forbidden: the token's SMART scopes do not grant this interaction on this \
                 resource type (or a Bundle entry), or a write of what is not the token's alone: \
                 under a patient/ scope, a resource that belongs to another patient too, or to \
                 none; under a scope's query, one it does not match."
            }
            Error::NotFound => {
                "Not found: the resource, or the version, does not exist, or the token may \
                 not read it (or the resource type is unknown)."
            }
            Error::MethodNotAllowed => {
                "Method not allowed: an update of a resource that does not exist, by a token \
                 confined to part of the type (a patient/ scope, a scope's query): it cannot \
                 create with an id of its choosing, since the id may be taken by what it may not \
                 see. It creates with POST."
            }
            Error::NotAcceptable => {
                "Not acceptable: `Accept` or `_format` asks for something other than FHIR \
                 JSON or FHIR XML (a Binary's read also serves its own content type)."
            }
            Error::Conflict => {
                "Conflict: the resource already exists, or it changed each time a patch was \
                 applied to it."
            }
            Error::Gone => {
                "Gone: the resource was deleted (or this version is its deletion), or the \
                 changes asked for were removed from the change log by retention."
            }
            Error::PreconditionFailed => {
                "Precondition failed: `If-Match` names a version that is not the current one, \
                 `If-None-Match: *` meets a resource that exists, or conditional criteria match \
                 more than one resource."
            }
            Error::TooLarge => {
                "Payload too large: the body is larger than `--max-body`, or a Bundle has more \
                 entries than the server takes."
            }
            Error::UnsupportedMediaType => {
                "Unsupported media type: the body is neither `application/fhir+json` (or \
                 `application/json`) nor `application/fhir+xml` (or `application/xml`); a \
                 Binary's create and update also take any other content type."
            }
            Error::Unprocessable => {
                "Unprocessable: the request is well formed but cannot be carried out: a written \
                 resource the validation policy refuses (every finding, each with its FHIRPath \
                 `expression`), or a terminology question that depends on codes or a hierarchy \
                 not loaded (`not-supported`), or an expansion too large (`too-costly`)."
            }
            Error::NotImplemented => {
                "Not implemented: the request needs a feature this server does not have yet \
                 (operations other than `$everything` and `$versions` as Bundle entries, a \
                 condition a Bundle entry's method does not take)."
            }
            Error::UriTooLong => "URI too long: the request target is longer than `--max-url`.",
            Error::HeadersTooLarge => {
                "Request header fields too large: more header fields than `--max-headers`, or \
                 more bytes of them than `--max-header-bytes`."
            }
            Error::TooManyRequests => {
                "Too many requests: a job's status polled again too soon; `Retry-After` says \
                 when to poll."
            }
            Error::Internal => {
                "Internal server error: a fault of the server, logged with the request id the \
                 `X-Request-Id` header gives; the server goes on serving."
            }
        }
    }

    fn definition(self) -> utoipa::openapi::Response {
        ResponseBuilder::new()
            .description(self.description())
            .fhir_bodies("OperationOutcome")
            .build()
    }
}

/// Every component: the FHIR schemas and the shared parts above.
pub fn all() -> Components {
    let mut components = Components::new();
    components.schemas = fhir_schemas::schemas();
    for param in Param::ALL {
        components
            .parameters
            .insert(param.name().into(), param.definition().into());
    }
    for header in Header::ALL {
        components
            .headers
            .insert(header.name().into(), header.definition().into());
    }
    for error in Error::ALL {
        components
            .responses
            .insert(error.name().into(), error.definition().into());
    }
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "A JWT bearer token with SMART on FHIR scopes, required by every operation \
                     under /fhir but metadata (see /fhir/.well-known/smart-configuration, also \
                     at the root). In \
                     development, `fhirlake token --scope 'system/*.cruds'` mints one; a \
                     server started with `--auth none` needs none.",
                ))
                .build(),
        ),
    );
    components
}
