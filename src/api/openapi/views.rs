//! `$run` of SQL on FHIR v2 (`api/views.rs`) as OpenAPI operations: by type with an inline
//! `viewResource`, and by instance on a stored ViewDefinition, each by GET and by POST.

use super::components::{Error, FhirBodies, parameter};
use super::interactions::{Interaction, errors, operation};
use utoipa::openapi::path::{HttpMethod, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
use utoipa::openapi::tag::{Tag, TagBuilder};
use utoipa::openapi::{ContentBuilder, Required, ResponseBuilder};

/// The tag of ViewDefinition's operations.
pub const TAG: &str = crate::fhir::resource::VIEW_DEFINITION;

/// The tag: ViewDefinition is not an R4 type.
pub fn tag() -> Tag {
    TagBuilder::new()
        .name(TAG)
        .description(Some(
            "SQL on FHIR v2 ViewDefinitions (not an R4 type; the one other type stored): \
             tabular views of resources, and their rows by `$run`.",
        ))
        .build()
}

const RUN: &str = "Runs a SQL on FHIR v2 view and streams its rows as they are made: over the \
    store's resources of the view's type (those the token may read; a `patient/` token gets \
    its compartment's rows), or over inline `resource` parameters. A view at fault, or one \
    that fails on the first resources, is a 400 OperationOutcome naming the element; \
    `_format=parquet` is 501.";

/// Its query parameters.
const QUERY: &[(&str, &str)] = &[
    (
        "_format",
        "`json` (an array of objects, the default), `ndjson` or `csv`; else the `Accept` header.",
    ),
    (
        "header",
        "CSV: `false` leaves out the line of column names.",
    ),
    (
        "patient",
        "Only the rows of this Patient's compartment (`Patient/[id]`).",
    ),
    (
        "group",
        "Only the rows of the compartments of this Group's members (`Group/[id]`).",
    ),
    (
        "_since",
        "An instant: only resources last changed at or after it.",
    ),
    ("_limit", "At most this many rows."),
    (
        "viewReference",
        "A stored ViewDefinition to run (`ViewDefinition/[id]`), by type only.",
    ),
];

/// Every `$run` operation.
pub fn operations() -> Vec<Interaction> {
    let mut all = Vec::new();
    for path in [
        "/fhir/ViewDefinition/$run",
        "/fhir/ViewDefinition/{id}/$run",
    ] {
        for method in [HttpMethod::Get, HttpMethod::Post] {
            all.push(run(path, method));
        }
    }
    all
}

fn run(path: &str, method: HttpMethod) -> Interaction {
    let instance = path.contains("{id}");
    let verb = if method == HttpMethod::Get {
        "Get"
    } else {
        "Post"
    };
    let level = if instance { "Instance" } else { "Type" };
    let mut operation = operation(
        TAG,
        format!("viewDefinitionRun{level}{verb}"),
        if instance {
            "$run: the rows of a stored view".into()
        } else {
            "$run: the rows of an inline view".into()
        },
        RUN,
    );
    for (name, what) in QUERY {
        if instance && *name == "viewReference" {
            continue;
        }
        operation = operation.parameter(parameter(name, ParameterIn::Query, what, text()).build());
    }
    if instance {
        operation = operation.parameter(
            parameter("id", ParameterIn::Path, "The ViewDefinition's id.", text())
                .example(Some("example".into()))
                .build(),
        );
    }
    let mut refused = vec![Error::BadRequest, Error::Forbidden, Error::NotImplemented];
    if method == HttpMethod::Post {
        operation = operation.request_body(Some(
            RequestBodyBuilder::new()
                .description(Some(
                    "A Parameters resource: `viewResource` (the ViewDefinition, by type), \
                     `resource` (resources to run it on instead of the store's, repeatable) \
                     and any of the query's parameters.",
                ))
                .required(Some(Required::False))
                .fhir_bodies("Parameters")
                .build(),
        ));
        refused.extend([Error::TooLarge, Error::UnsupportedMediaType]);
    }
    if instance {
        refused.push(Error::NotFound);
    }
    let array = ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::Object));
    let ok = ResponseBuilder::new()
        .description("The rows, streamed: an object per row, or a CSV line.")
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(array)).build(),
        )
        .content(
            "application/x-ndjson",
            ContentBuilder::new().schema(Some(text())).build(),
        )
        .content(
            "text/csv",
            ContentBuilder::new().schema(Some(text())).build(),
        )
        .build();
    Interaction {
        codes: &[],
        path: path.to_string(),
        method,
        operation: errors(operation.response("200", ok), &refused).build(),
    }
}

fn text() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}
