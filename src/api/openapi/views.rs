//! SQL on FHIR v2 as OpenAPI operations: `$run` (`api/views.rs`) by type with an inline
//! `viewResource` and by instance on a stored ViewDefinition, each by GET and by POST;
//! `$viewdefinition-export` (`api/view_export.rs`) at the system, type and instance levels; and
//! fhirlake's `$sql` (`api/sql.rs`) at the system level.

use super::components::{Error, FhirBodies, parameter};
use super::export::header;
use super::interactions::{Interaction, SYSTEM_TAG, errors, operation};
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
             tabular views of resources, their rows by `$run`, their files by \
             `$viewdefinition-export`.",
        ))
        .build()
}

const RUN: &str = "Runs a SQL on FHIR v2 view and streams its rows as they are made: over the \
    store's resources of the view's type (those the token may read; a `patient/` token gets \
    its compartment's rows), or over inline `resource` parameters. A view at fault, or one \
    that fails on the first resources, is a 400 OperationOutcome naming the element. Parquet \
    goes out a row group at a time.";

/// Its query parameters.
const QUERY: &[(&str, &str)] = &[
    (
        "_format",
        "`json` (an array of objects, the default), `ndjson`, `csv` or `parquet`; else the \
         `Accept` header.",
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

/// Every `$run`, `$viewdefinition-export` and `$sql` operation.
pub fn operations() -> Vec<Interaction> {
    let mut all = vec![
        export("/fhir/$viewdefinition-export"),
        export("/fhir/ViewDefinition/$viewdefinition-export"),
        export("/fhir/ViewDefinition/{id}/$viewdefinition-export"),
        sql(HttpMethod::Get),
        sql(HttpMethod::Post),
    ];
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
    let mut refused = vec![Error::BadRequest, Error::Forbidden];
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
    Interaction {
        codes: &[],
        path: path.to_string(),
        method,
        operation: errors(operation.response("200", rows()), &refused).build(),
    }
}

/// The 200 of rows in every format.
fn rows() -> utoipa::openapi::Response {
    let array = ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::Object));
    ResponseBuilder::new()
        .description("The rows, streamed: an object per row, a CSV line, or a Parquet file.")
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
        .content(
            "application/vnd.apache.parquet",
            ContentBuilder::new()
                .schema(Some(text().format(Some(
                    utoipa::openapi::SchemaFormat::KnownFormat(
                        utoipa::openapi::KnownFormat::Binary,
                    ),
                ))))
                .build(),
        )
        .build()
}

const EXPORT: &str = "Starts a job that writes each view's rows to a file (SQL on FHIR v2 \
    `$viewdefinition-export`) and answers 202 with its status URL in `Content-Location`; it \
    needs `Prefer: respond-async`. Every view reads one snapshot of the store, the one at the \
    kick-off, limited to what the token may read. The status URL answers 202 while the job \
    runs, then 200 with the result Parameters (an `output` per view: `name` and `location`, \
    file URLs that need the token). Parameters (in a Parameters body): `view` (repeated; parts \
    `name`, `viewReference` or `viewResource`; none at the instance level), `_format` \
    (`parquet`, the default, `csv`, `ndjson`, `json`), `clientTrackingId`, `patient` \
    (repeated), `group` (one), `_since`. `source` is not supported.";

fn export(path: &str) -> Interaction {
    let instance = path.contains("{id}");
    let (tag, level) = match path {
        "/fhir/$viewdefinition-export" => (SYSTEM_TAG, "System"),
        _ if instance => (TAG, "Instance"),
        _ => (TAG, "Type"),
    };
    let mut operation = operation(
        tag,
        format!("viewDefinitionExport{level}"),
        "$viewdefinition-export: views to files, as a job".into(),
        EXPORT,
    )
    .parameter(
        parameter(
            "Prefer",
            ParameterIn::Header,
            "`respond-async` (required).",
            text(),
        )
        .required(Required::True)
        .example(Some("respond-async".into()))
        .build(),
    )
    .request_body(Some(
        RequestBodyBuilder::new()
            .description(Some("A Parameters resource with the export's parameters."))
            .required(Some(Required::True))
            .fhir_bodies("Parameters")
            .build(),
    ));
    // 404: a ViewDefinition referred to, or the instance, does not exist.
    let refused = [
        Error::BadRequest,
        Error::Forbidden,
        Error::NotFound,
        Error::TooLarge,
        Error::UnsupportedMediaType,
        Error::TooManyRequests,
    ];
    if instance {
        operation = operation.parameter(
            parameter("id", ParameterIn::Path, "The ViewDefinition's id.", text())
                .example(Some("example".into()))
                .build(),
        );
    }
    let accepted = ResponseBuilder::new()
        .description("Accepted: the job's status URL is in `Content-Location`.")
        .header("Content-Location", header("The job's status URL."))
        .fhir_bodies("OperationOutcome")
        .build();
    Interaction {
        codes: &[],
        path: path.to_string(),
        method: HttpMethod::Post,
        operation: errors(operation.response("202", accepted), &refused).build(),
    }
}

const SQL: &str = "Runs a read-only SQL query (Apache DataFusion's dialect) over the stored \
    ViewDefinitions, each a table named by its `name`, and streams the result in the formats \
    of `$run`. Each table holds the rows of the resources the token may read (a `patient/` \
    token: its compartment's); the token needs to read ViewDefinition and every view's type. \
    A fault of the query (syntax, an unknown table or column, anything but a query) is a 400 \
    OperationOutcome at `query` with the line and column; a query past `--sql-timeout` or \
    `--sql-memory` is a 400 `too-costly`.";

/// Its parameters, in the query or a Parameters body.
const SQL_PARAMETERS: &[(&str, &str)] = &[
    (
        "query",
        "The SQL (`SELECT gender, count(*) FROM patient_demographics GROUP BY gender`).",
    ),
    (
        "_format",
        "`json` (the default), `ndjson`, `csv` or `parquet`; else the `Accept` header.",
    ),
    (
        "header",
        "CSV: `false` leaves out the line of column names.",
    ),
];

fn sql(method: HttpMethod) -> Interaction {
    let verb = if method == HttpMethod::Get {
        "Get"
    } else {
        "Post"
    };
    let mut operation = operation(
        SYSTEM_TAG,
        format!("sql{verb}"),
        "$sql: a SQL query over the stored views".into(),
        SQL,
    );
    for (name, what) in SQL_PARAMETERS {
        operation = operation.parameter(parameter(name, ParameterIn::Query, what, text()).build());
    }
    let mut refused = vec![Error::BadRequest, Error::Forbidden];
    if method == HttpMethod::Post {
        operation = operation.request_body(Some(
            RequestBodyBuilder::new()
                .description(Some(
                    "A Parameters resource: `query` (valueString), `_format`, `header`.",
                ))
                .required(Some(Required::False))
                .fhir_bodies("Parameters")
                .build(),
        ));
        refused.extend([Error::TooLarge, Error::UnsupportedMediaType]);
    }
    Interaction {
        codes: &[],
        path: "/fhir/$sql".to_string(),
        method,
        operation: errors(operation.response("200", rows()), &refused).build(),
    }
}

fn text() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}
