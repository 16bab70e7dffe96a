//! The explorer: Swagger UI at `/docs/` (its assets compiled into the binary by
//! utoipa-swagger-ui's `vendored` feature), showing the explorer's view of the document.
//!
//! Why a view: when an operation is opened, Swagger UI resolves every `$ref` reachable from it
//! into one tree. The FHIR type graph is dense (every resource may contain any resource, every
//! element carries extensions whose value is any of 50 types), so with the complete schemas
//! that tree never finishes and the page hangs. The view ([`view`], served at
//! `/docs/openapi.json`) is the same document (same paths, operations, parameters, responses
//! and component names), except that a property of a complex FHIR type names its type (`title`)
//! instead of referencing its schema: each schema is shown one level deep. Tools that want the
//! complete schemas read `/openapi.json`. Primitive types carry examples
//! ([`super::fhir_schemas`]), so that sample bodies are readable.
//!
//! The page then loads in about 10 s and opens an operation in about 5 s (measured on the
//! 2-core development machine with builds running beside it); most of that is Swagger UI
//! reading the 1,774 operations, which no schema change helps.

use super::serve_json;
use actix_web::http::header;
use actix_web::{HttpResponse, web};
use std::collections::BTreeMap;
use std::sync::LazyLock;
use utoipa::openapi::schema::{ArrayItems, ObjectBuilder, Type};
use utoipa::openapi::{OpenApi, Ref, RefOr, Schema};
use utoipa_swagger_ui::{Config, SwaggerUi};

/// Where the explorer's view of the document is served.
const VIEW_PATH: &str = "/docs/openapi.json";

/// `/docs` (a redirect), `/docs/openapi.json` and Swagger UI under `/docs/`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    // The view's route comes before Swagger UI's, which takes every other path under /docs/.
    cfg.service(web::resource(VIEW_PATH).route(web::get().to(serve_view)))
        .service(web::resource("/docs").route(web::get().to(to_explorer)))
        .service(
            SwaggerUi::new("/docs/{_:.*}").config(
                Config::new([VIEW_PATH])
                    .filter(true)
                    .doc_expansion("none")
                    .display_request_duration(true)
                    .validator_url("none"),
            ),
        );
}

/// The view as compact JSON, made on first use.
static VIEW_JSON: LazyLock<web::Bytes> = LazyLock::new(|| {
    view(super::document())
        .to_json()
        .expect("an OpenAPI document serializes")
        .into()
});

async fn serve_view() -> actix_web::Result<HttpResponse> {
    serve_json(&VIEW_JSON).await
}

/// Swagger UI loads its assets relative to its page, which must end in `/`.
async fn to_explorer() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/docs/"))
        .finish()
}

const VIEW_NOTE: &str = "\n\nThis explorer shows each FHIR schema one level deep: a property \
of a complex type names its type. [/openapi.json](/openapi.json) has the complete schemas.";

/// The explorer's view of `document`: every schema that references a complex schema (one with
/// properties or alternatives) names it instead; references to primitive schemas stay.
pub fn view(mut document: OpenApi) -> OpenApi {
    let description = document.info.description.get_or_insert_default();
    description.push_str(VIEW_NOTE);
    let Some(components) = document.components.as_mut() else {
        return document;
    };
    let complex: BTreeMap<String, bool> = components
        .schemas
        .iter()
        .map(|(name, schema)| (format!("#/components/schemas/{name}"), is_complex(schema)))
        .collect();
    let named = |reference: &Ref| {
        complex
            .get(&reference.ref_location)
            .copied()
            .unwrap_or(false)
            .then(|| named_object(reference))
    };
    for schema in components.schemas.values_mut() {
        match schema {
            RefOr::T(Schema::Object(object)) => {
                for property in object.properties.values_mut() {
                    match property {
                        RefOr::Ref(reference) => {
                            if let Some(object) = named(reference) {
                                *property = object;
                            }
                        }
                        RefOr::T(Schema::Array(array)) => {
                            if let ArrayItems::RefOrSchema(items) = &mut array.items
                                && let RefOr::Ref(reference) = items.as_ref()
                                && let Some(object) = named(reference)
                            {
                                **items = object;
                            }
                        }
                        RefOr::T(_) => {}
                    }
                }
            }
            // Any resource (`ResourceList`): one of every resource type.
            RefOr::T(Schema::OneOf(one_of)) => {
                *schema = RefOr::T(Schema::Object(
                    ObjectBuilder::new()
                        .schema_type(Type::Object)
                        .description(one_of.description.clone().or(Some(
                            "Any FHIR resource; its `resourceType` says which.".into(),
                        )))
                        .required("resourceType")
                        .build(),
                ));
            }
            _ => {}
        }
    }
    document
}

fn is_complex(schema: &RefOr<Schema>) -> bool {
    match schema {
        RefOr::T(Schema::Object(object)) => !object.properties.is_empty(),
        RefOr::T(Schema::OneOf(_) | Schema::AllOf(_) | Schema::AnyOf(_)) => true,
        _ => false,
    }
}

/// An object titled with the referenced schema's name, keeping the reference's description.
fn named_object(reference: &Ref) -> RefOr<Schema> {
    let name = reference
        .ref_location
        .rsplit('/')
        .next()
        .unwrap_or_default();
    let description = (!reference.description.is_empty()).then(|| reference.description.clone());
    RefOr::T(Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .title(Some(name))
            .description(description)
            .build(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The view keeps the document's surface and cuts every chain of references after one
    /// step, which is what keeps Swagger UI responsive.
    #[test]
    fn the_view_keeps_every_operation_and_references_only_primitive_schemas() {
        let document = serde_json::to_value(super::super::document()).unwrap();
        let view = serde_json::to_value(view(super::super::document())).unwrap();
        assert_eq!(view["paths"], document["paths"]);
        assert_eq!(
            view["components"]["parameters"],
            document["components"]["parameters"]
        );
        let schemas = view["components"]["schemas"].as_object().unwrap();
        assert_eq!(
            schemas.keys().collect::<Vec<_>>(),
            document["components"]["schemas"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>()
        );
        let text = view["components"]["schemas"].to_string();
        for reference in text.split("\"#/components/schemas/").skip(1) {
            let name = &reference[..reference.find('"').unwrap()];
            assert!(
                !schemas[name].to_string().contains("\"$ref\""),
                "{name} is referenced and references further"
            );
        }
        let patient = &schemas["Patient"]["properties"];
        assert_eq!(patient["name"]["items"]["title"], "HumanName");
        assert_eq!(patient["meta"]["title"], "Meta");
        assert_eq!(patient["birthDate"]["$ref"], "#/components/schemas/date");
    }
}
