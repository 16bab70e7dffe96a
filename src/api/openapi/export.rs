//! Bulk `$export` (`api/export.rs`) and a job's status URL and files (`api/jobs.rs`) as OpenAPI
//! operations. Operations, not interactions: their FHIR interaction codes are none; the
//! CapabilityStatement lists `export` at the system level and under Patient and Group.

use super::components::{Error, FhirBodies, parameter};
use super::interactions::{Interaction, SYSTEM_TAG, errors, operation};
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, Required, ResponseBuilder};

const KICK_OFF: &str = "Starts an export job (FHIR Bulk Data Access IG) and answers 202 with \
    its status URL in `Content-Location`. It needs `Prefer: respond-async`; with \
    `handling=lenient`, parameters and values it does not support are ignored and reported in \
    the manifest's `error` file instead of a 400. The export holds exactly the versions \
    committed at its `transactionTime`, whatever is written while it runs, limited to what the \
    token may read. Not supported: `includeAssociatedData`, `organizeOutputBy`.";

/// Every operation of bulk export and of jobs.
pub fn operations() -> Vec<Interaction> {
    let mut all = Vec::new();
    for (tag, path, level) in [
        (SYSTEM_TAG, "/fhir/$export", "every resource"),
        (
            "Patient",
            "/fhir/Patient/$export",
            "the Patient compartment",
        ),
        (
            "Group",
            "/fhir/Group/{id}/$export",
            "the compartments of the Group's members",
        ),
    ] {
        for method in [HttpMethod::Get, HttpMethod::Post] {
            all.push(kick_off(tag, path, level, method));
        }
    }
    all.push(status());
    all.push(cancel());
    all.push(file());
    all
}

fn kick_off(tag: &str, path: &str, level: &str, method: HttpMethod) -> Interaction {
    let prefix = match tag {
        SYSTEM_TAG => "system".to_string(),
        tag => tag.to_string(),
    };
    let verb = if method == HttpMethod::Get {
        "Get"
    } else {
        "Post"
    };
    let mut operation = operation(
        tag,
        format!("export{prefix}{verb}"),
        format!("$export: {level}, as NDJSON files"),
        KICK_OFF,
    )
    .parameter(
        parameter(
            "Prefer",
            ParameterIn::Header,
            "`respond-async` (required), and `handling=lenient` to ignore what is not \
             supported.",
            text(),
        )
        .required(Required::True)
        .example(Some("respond-async".into()))
        .build(),
    );
    for (name, what) in QUERY {
        operation = operation.parameter(parameter(name, ParameterIn::Query, what, text()).build());
    }
    if path.contains("{id}") {
        operation = operation.parameter(
            parameter("id", ParameterIn::Path, "The Group's id.", text())
                .example(Some("example".into()))
                .build(),
        );
    }
    let mut refused = vec![Error::BadRequest];
    if method == HttpMethod::Post {
        operation = operation.request_body(Some(
            RequestBodyBuilder::new()
                .description(Some(
                    "A Parameters resource with the same parameters (each repeated as often as \
                     needed) and `patient` (valueReference, Patients to export only).",
                ))
                .required(Some(Required::False))
                .fhir_bodies("Parameters")
                .build(),
        ));
        refused.extend([Error::TooLarge, Error::UnsupportedMediaType]);
    }
    if path.contains("{id}") {
        refused.push(Error::NotFound);
    }
    let accepted = ResponseBuilder::new()
        .description("Accepted: the job's status URL is in `Content-Location`.")
        .header("Content-Location", header("The job's status URL."))
        .fhir_bodies("OperationOutcome")
        .build();
    Interaction {
        codes: &[],
        path: path.to_string(),
        method,
        operation: errors(operation.response("202", accepted), &refused).build(),
    }
}

/// The kick-off's query parameters.
const QUERY: &[(&str, &str)] = &[
    (
        "_outputFormat",
        "`application/fhir+ndjson` (the default), `application/ndjson` or `ndjson`.",
    ),
    (
        "_since",
        "An instant: only resources last changed at or after it; those deleted since are \
         listed in the manifest's `deleted` files.",
    ),
    (
        "_until",
        "An instant: only resources last changed before it.",
    ),
    (
        "_type",
        "Comma-separated resource types (each readable by the token; for Patient and Group, of \
         the Patient compartment). All of them by default.",
    ),
    (
        "_elements",
        "Comma-separated top-level elements (`name` or `Type.name`) to keep; the resources are \
         tagged SUBSETTED.",
    ),
    (
        "_typeFilter",
        "A search of one type (`Observation?category=laboratory`), repeatable (ORed within a \
         type); chains and `_has` are not supported.",
    ),
];

/// The job's id, a path parameter.
fn job_id() -> utoipa::openapi::path::Parameter {
    parameter(
        "id",
        ParameterIn::Path,
        "The job's id, as its status URL gives it.",
        text(),
    )
    .build()
}

fn job_operation(id: &str, summary: &str, description: &str) -> OperationBuilder {
    operation(SYSTEM_TAG, id.to_string(), summary.to_string(), description).parameter(job_id())
}

fn status() -> Interaction {
    let operation = job_operation(
        "jobStatus",
        "A job's status: in progress, its manifest, or why it failed",
        "202 with `X-Progress` and `Retry-After` while the job is queued or running; 200 with \
         the manifest (`transactionTime`, `request`, `requiresAccessToken`, `output`, `error`, \
         and `deleted` for `_since`) and `Expires` once it is complete; the failure's status \
         with an OperationOutcome if it failed; 429 with `Retry-After` when polled again within \
         half of `--job-poll-interval`. Only the job's owner sees it (404 otherwise, and after \
         a cancel or its expiry).",
    )
    .response(
        "202",
        ResponseBuilder::new()
            .description("In progress.")
            .header("X-Progress", header("What the job is doing."))
            .header(
                "Retry-After",
                header("Seconds to wait before polling again."),
            )
            .build(),
    )
    .response(
        "200",
        ResponseBuilder::new()
            .description("Complete: the manifest of the job's files.")
            .header("Expires", header("When the job and its files are removed."))
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::Object)))
                    .build(),
            )
            .build(),
    );
    Interaction {
        codes: &[],
        path: "/fhir/_jobs/{id}".into(),
        method: HttpMethod::Get,
        operation: errors(operation, &[Error::NotFound, Error::TooManyRequests]).build(),
    }
}

fn cancel() -> Interaction {
    let operation = job_operation(
        "jobCancel",
        "Cancels a job and removes its files",
        "202: a queued or running job stops, its files and a finished job's are removed; its \
         status URL is 404 from then on.",
    )
    .response(
        "202",
        ResponseBuilder::new()
            .description("Cancelled.")
            .fhir_bodies("OperationOutcome")
            .build(),
    );
    Interaction {
        codes: &[],
        path: "/fhir/_jobs/{id}".into(),
        method: HttpMethod::Delete,
        operation: errors(operation, &[Error::NotFound]).build(),
    }
}

fn file() -> Interaction {
    let operation = job_operation(
        "jobFile",
        "A file of a completed job",
        "An NDJSON file the manifest lists, for the job's owner with a token that may still \
         read its type; gzip-compressed (`Content-Encoding: gzip`) when `Accept-Encoding` takes \
         gzip.",
    )
    .parameter(parameter("name", ParameterIn::Path, "The file's name.", text()).build())
    .response(
        "200",
        ResponseBuilder::new()
            .description("The file: one resource (or Bundle, or OperationOutcome) per line.")
            .content(
                "application/fhir+ndjson",
                ContentBuilder::new().schema(Some(text())).build(),
            )
            .build(),
    );
    Interaction {
        codes: &[],
        path: "/fhir/_jobs/{id}/files/{name}".into(),
        method: HttpMethod::Get,
        operation: errors(operation, &[Error::NotFound, Error::NotAcceptable]).build(),
    }
}

pub(super) fn text() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

pub(super) fn header(description: &str) -> utoipa::openapi::Header {
    HeaderBuilder::new()
        .schema(Some(text()))
        .description(Some(description))
        .build()
}
