//! The OpenAPI 3.1 description of the FHIR API, and the explorer that shows it.
//!
//! [`document`] builds the description with utoipa's builder API: the same interactions for
//! each of the 146 R4 resource types cannot be written as `#[utoipa::path]` handlers, so
//! [`interactions`] describes each interaction once as a function of the type. Request and
//! response bodies reference the official FHIR R4 JSON schemas ([`fhir_schemas`]); what
//! operations share is defined once in [`components`].
//!
//! Invariants:
//! - The document is a pure function of the build: `fhirlake openapi`, `GET /openapi.json` and
//!   the committed `openapi/openapi.json` are the same document (a test compares them).
//! - It describes the interactions the CapabilityStatement declares, no more, no fewer, and
//!   the SMART endpoints beside them ([`smart`]: the token endpoint, the SMART configuration).
//! - The server URL is `/`, so the explorer's "Try it out" calls the server that served it.
//!
//! Routes: `GET /openapi.json` (the description) and the [`explorer`] under `/docs/` (Swagger
//! UI, whose assets are compiled into the binary, showing a lighter view of the document).
//!
//! The document is 6.3 MB (9 MB pretty-printed; the schemas are 2.8 MB of it; every FHIR body
//! is listed in JSON and XML), made on first request and then served from memory.

mod components;
mod erase;
mod explorer;
mod export;
mod fhir_schemas;
mod import;
mod interactions;
mod smart;
mod terminology;
mod validate;
mod views;

use crate::fhir::resource::VIEW_DEFINITION;
use actix_web::{HttpResponse, web};
use interactions::{CHANGES_TAG, Interaction, SYSTEM_INTERACTIONS, SYSTEM_TAG, TYPE_INTERACTIONS};
use std::sync::LazyLock;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::external_docs::ExternalDocsBuilder;
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    InfoBuilder, LicenseBuilder, OpenApi, OpenApiBuilder, Paths, RefOr, Server, Tag,
};

/// The operation extension that names the FHIR interaction codes an operation implements.
/// utoipa keeps extensions in a `HashMap`, whose order varies: operations carry this one only,
/// which keeps the document's bytes stable.
const INTERACTION_EXTENSION: &str = "x-fhir-interaction";

/// Where the description is served.
const DOCUMENT_PATH: &str = "/openapi.json";

/// The description of this build's HTTP API.
pub fn document() -> OpenApi {
    let mut paths = Paths::new();
    // Every operation takes `_format` (the common one, unless it describes its own) and names
    // the FHIR interactions it implements; all but `metadata` and `$versions` need a bearer
    // token, and answer 401 without a valid one and 403 without the scope.
    let mut add = |interaction: Interaction| {
        let mut operation = interaction.operation;
        let parameters = operation.parameters.get_or_insert_default();
        let own_format = parameters
            .iter()
            .any(|p| matches!(p, RefOr::T(p) if p.name == "_format"));
        if !own_format {
            parameters.push(RefOr::Ref(components::Param::Format.reference()));
        }
        if !OPEN_PATHS.contains(&interaction.path.as_str()) {
            operation.security = Some(vec![SecurityRequirement::new(
                components::BEARER,
                Vec::<String>::new(),
            )]);
            for error in [
                components::Error::Unauthorized,
                components::Error::Forbidden,
            ] {
                operation
                    .responses
                    .responses
                    .insert(error.status().into(), RefOr::Ref(error.reference()));
            }
        }
        finish(&mut operation, interaction.codes);
        paths.add_path_operation(&interaction.path, vec![interaction.method], operation);
    };
    let mut tags = vec![
        TagBuilder::new()
            .name(SYSTEM_TAG)
            .description(Some(
                "Interactions with the whole server: capabilities, Bundles, history.",
            ))
            .build(),
        TagBuilder::new()
            .name(CHANGES_TAG)
            .description(Some(
                "The change stream: every committed version as a CloudEvent, by offset \
                 (pull), as Server-Sent Events or over a WebSocket.",
            ))
            .build(),
        TagBuilder::new()
            .name(smart::SMART_TAG)
            .description(Some(smart::SMART_TAG_DESCRIPTION))
            .build(),
    ];
    for interaction in SYSTEM_INTERACTIONS {
        add(interaction());
    }
    for resource_type in fhirlake_model::RESOURCE_TYPES
        .iter()
        .chain([&VIEW_DEFINITION])
    {
        tags.push(match *resource_type {
            VIEW_DEFINITION => views::tag(),
            _ => type_tag(resource_type),
        });
        for interaction in TYPE_INTERACTIONS {
            add(interaction(resource_type));
        }
        if crate::search::compartment::is_compartment(resource_type) {
            add(interactions::search_compartment(resource_type));
        }
        if super::search::EVERYTHING.contains(resource_type) {
            add(interactions::everything(resource_type));
        }
        add(validate::of_type(resource_type));
        for operation in erase::operations(resource_type) {
            add(operation);
        }
        for method in [HttpMethod::Get, HttpMethod::Post] {
            add(validate::instance(resource_type, method));
        }
    }
    for operation in terminology::operations() {
        add(operation);
    }
    for operation in export::operations().into_iter().chain(import::operations()) {
        add(operation);
    }
    for operation in views::operations() {
        add(operation);
    }
    // Not FHIR: no `_format`, no token, no interaction.
    for (path, method, mut operation) in smart::operations() {
        finish(&mut operation, &[]);
        paths.add_path_operation(path, vec![method], operation);
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("fhirlake FHIR R4 API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(DESCRIPTION))
                .license(Some(
                    LicenseBuilder::new()
                        .name("Apache-2.0")
                        .identifier(Some("Apache-2.0"))
                        .build(),
                )),
        )
        .servers(Some([Server::new("/")]))
        .paths(paths)
        .components(Some(components::all()))
        .tags(Some(tags))
        .build()
}

/// Adds what every operation has: the answers any request may get, and the extension naming
/// the FHIR interactions it implements (`codes`).
fn finish(operation: &mut Operation, codes: &[&str]) {
    for error in components::Error::ANY_REQUEST {
        operation
            .responses
            .responses
            .insert(error.status().into(), RefOr::Ref(error.reference()));
    }
    operation.extensions = Some(
        ExtensionsBuilder::new()
            .add(INTERACTION_EXTENSION, codes)
            .build(),
    );
}

const DESCRIPTION: &str = "The FHIR R4 (4.0.1) RESTful API of fhirlake, in FHIR JSON \
(`application/fhir+json`) and FHIR XML (`application/fhir+xml`), chosen by `_format` or \
`Accept`; a Binary is also read and written as its own content. Bodies are described by the \
official FHIR R4 JSON schemas (the XML format carries the same resources). Every \
error is an OperationOutcome with the status that says what went wrong; a path that exists \
answers other methods with 405. Every operation but `GET /fhir/metadata`, \
`GET /fhir/$versions` and the SMART endpoints needs a JWT bearer token whose SMART scopes grant it \
(401 without a valid token, 403 without the scope); backend services get one from the token \
endpoint `POST /auth/token` (SMART Backend Services). The change \
stream (`/fhir/$changes`) serves every committed version as a CloudEvent. `GET /fhir/metadata` \
states exactly what this build supports.";

/// The CapabilityStatement's path.
pub(super) const METADATA_PATH: &str = "/fhir/metadata";

/// The `$versions` operation's path.
pub(super) const VERSIONS_PATH: &str = "/fhir/$versions";

/// The FHIR operations that need no token (the SMART ones need none either: [`smart`]).
const OPEN_PATHS: &[&str] = &[METADATA_PATH, VERSIONS_PATH];

/// A resource type's tag, linking to its page of the specification.
fn type_tag(resource_type: &str) -> Tag {
    TagBuilder::new()
        .name(resource_type)
        .description(Some(format!("The FHIR R4 {resource_type} resource.")))
        .external_docs(Some(
            ExternalDocsBuilder::new()
                .url(format!(
                    "https://hl7.org/fhir/R4/{}.html",
                    resource_type.to_ascii_lowercase()
                ))
                .description(Some(format!(
                    "{resource_type} in the FHIR R4 specification"
                )))
                .build(),
        ))
        .build()
}

/// The document as pretty-printed JSON with a final newline, as `openapi/openapi.json` holds
/// it.
pub fn pretty_json() -> String {
    let mut json = document()
        .to_pretty_json()
        .expect("an OpenAPI document serializes");
    json.push('\n');
    json
}

/// `/openapi.json`, and the explorer under `/docs`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource(DOCUMENT_PATH).route(web::get().to(serve_document)))
        .configure(explorer::routes);
}

/// The document as compact JSON, made on first use.
static DOCUMENT_JSON: LazyLock<web::Bytes> = LazyLock::new(|| {
    document()
        .to_json()
        .expect("an OpenAPI document serializes")
        .into()
});

async fn serve_document() -> actix_web::Result<HttpResponse> {
    serve_json(&DOCUMENT_JSON).await
}

/// Answers with `json`, made off the HTTP workers the first time (it takes a moment).
async fn serve_json(json: &'static LazyLock<web::Bytes>) -> actix_web::Result<HttpResponse> {
    let json = web::block(|| LazyLock::force(json).clone()).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(json))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use std::collections::BTreeSet;

    fn document_json() -> Value {
        serde_json::to_value(document()).unwrap()
    }

    /// The FHIR interaction codes the operations name, for one tag.
    fn codes(document: &Value, tag: &str) -> BTreeSet<String> {
        let mut codes = BTreeSet::new();
        for item in document["paths"].as_object().unwrap().values() {
            for operation in item.as_object().unwrap().values() {
                if operation["tags"][0] == tag {
                    for code in operation[INTERACTION_EXTENSION].as_array().unwrap() {
                        codes.insert(code.as_str().unwrap().to_string());
                    }
                }
            }
        }
        codes
    }

    /// The document says what the CapabilityStatement says: the same interactions for every
    /// resource type, and every system interaction (plus `capabilities` itself).
    #[test]
    fn the_operations_are_the_capability_statements_interactions() {
        let statement = super::super::metadata::statement(
            "http://localhost/fhir",
            crate::search::registry::Registry::r4_shared(),
            Value::Null,
            crate::bundle::ConditionalDelete::Multiple,
            0,
        );
        let document = document_json();
        let declared = |interactions: &Value| -> BTreeSet<String> {
            interactions
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["code"].as_str().unwrap().to_string())
                .collect()
        };
        let resources = statement["rest"][0]["resource"].as_array().unwrap();
        assert_eq!(resources.len(), fhirlake_model::RESOURCE_TYPES.len() + 1);
        for resource in resources {
            let name = resource["type"].as_str().unwrap();
            assert_eq!(
                codes(&document, name),
                declared(&resource["interaction"]),
                "{name}"
            );
        }
        let mut system = declared(&statement["rest"][0]["interaction"]);
        system.insert("capabilities".into());
        assert_eq!(codes(&document, SYSTEM_TAG), system);
    }

    /// Every `$ref` points at something the document defines.
    #[test]
    fn every_reference_resolves() {
        fn walk(node: &Value, document: &Value) {
            match node {
                Value::Object(map) => {
                    if let Some(Value::String(reference)) = map.get("$ref") {
                        let pointer = reference.strip_prefix('#').expect("a local reference");
                        assert!(document.pointer(pointer).is_some(), "dangling {reference}");
                    }
                    map.values().for_each(|value| walk(value, document));
                }
                Value::Array(items) => items.iter().for_each(|value| walk(value, document)),
                _ => {}
            }
        }
        let document = document_json();
        walk(&document, &document);
    }

    #[test]
    fn every_resource_type_has_its_tag_and_operations() {
        let document = document_json();
        let tags: Vec<&str> = document["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|tag| tag["name"].as_str().unwrap())
            .collect();
        assert_eq!(tags[..3], [SYSTEM_TAG, CHANGES_TAG, smart::SMART_TAG]);
        assert_eq!(&tags[3..tags.len() - 1], fhirlake_model::RESOURCE_TYPES);
        assert_eq!(
            tags.last(),
            Some(&VIEW_DEFINITION),
            "the one type that is not R4"
        );
        let patient = &document["paths"]["/fhir/Patient/{id}"];
        assert_eq!(
            patient["get"]["responses"]["200"]["content"]["application/fhir+json"]["schema"]["$ref"],
            "#/components/schemas/Patient"
        );
        assert_eq!(document["openapi"], "3.1.0");
        assert_eq!(document["servers"][0]["url"], "/");
        assert_eq!(
            document["components"]["securitySchemes"][components::BEARER]["scheme"],
            "bearer"
        );
        // A token for everything but the CapabilityStatement.
        let read = &patient["get"];
        assert_eq!(read["security"][0][components::BEARER], json!([]));
        assert!(read["responses"]["401"].is_object() && read["responses"]["403"].is_object());
        for path in OPEN_PATHS {
            let open = &document["paths"][path]["get"];
            assert!(open.get("security").is_none() && open["responses"]["401"].is_null());
        }
        // The SMART endpoints need no token either, and answer OAuth and SMART JSON.
        let token = &document["paths"]["/auth/token"]["post"];
        assert!(token.get("security").is_none() && token["responses"]["401"].is_null());
        assert!(token["responses"]["400"]["content"]["application/json"].is_object());
        let smart = &document["paths"]["/fhir/.well-known/smart-configuration"]["get"];
        assert!(smart.get("security").is_none());
        // What any request may get: every operation lists it.
        for (path, methods) in document["paths"].as_object().unwrap() {
            for (method, operation) in methods.as_object().unwrap() {
                for status in ["414", "431", "500"] {
                    assert!(
                        operation["responses"][status].is_object(),
                        "{method} {path} lacks {status}"
                    );
                }
            }
        }
    }
}
