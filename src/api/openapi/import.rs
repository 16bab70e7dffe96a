//! Bulk import (`api/import.rs`) as OpenAPI operations: `$import`, `$bulk-submit` and
//! `$bulk-submit-status`, all POST with a Parameters body. Their status URL is the jobs' one
//! (`export.rs` describes it); the CapabilityStatement lists the three at the system level.

use super::components::{Error, FhirBodies, parameter};
use super::interactions::{Interaction, SYSTEM_TAG, errors, operation};
use utoipa::openapi::path::{HttpMethod, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{HeaderBuilder, Required, ResponseBuilder};

/// The operations of bulk import.
pub fn operations() -> Vec<Interaction> {
    vec![
        post(
            "/fhir/$import",
            "import",
            "$import: NDJSON files into the store, as a job",
            "Starts an import job (the Parameters HAPI and Pathling take: `inputFormat`, \
             `inputSource`, `input` with `type` and `url`, `mode` merge, `storageDetail` with \
             `credentialHttpBasic`) and answers 202 with its status URL in `Content-Location`. \
             Inputs are NDJSON, gzipped or not: `file://` paths under `--import-root`, or \
             http(s) URLs under the rules of Subscription endpoints. Every line is stored \
             through the normal write path (validation, change log, index) as an \
             update-as-create when it has an id. The manifest counts the resources stored by \
             type and lists OperationOutcome files of the rejected lines, each naming its \
             input and line. Needs `Prefer: respond-async` and create and update rights on \
             every type imported (`system/*.cu`).",
            "202",
        ),
        post(
            "/fhir/$bulk-submit",
            "bulkSubmit",
            "$bulk-submit: a manifest of a Data Provider's submission (Bulk Data IG)",
            "Adds a manifest (`manifestUrl` with `fhirBaseUrl`) to the submission named by \
             `submitter` and `submissionId`, starting its import job at the first; \
             `submissionStatus` `completed` closes the submission, `stopped` cancels it. \
             `fileRequestHeader` headers go with every request for its files; \
             `replacesManifestUrl`, `oauthMetadataUrl` and `fileEncryptionKey` are not \
             supported (400). 409 for a manifest of a completed submission.",
            "200",
        ),
        post(
            "/fhir/$bulk-submit-status",
            "bulkSubmitStatus",
            "$bulk-submit-status: the status URL of a submission (Bulk Data IG)",
            "Answers 202 with the status URL of the submission named by `submitter` and \
             `submissionId` in `Content-Location`; its manifest has `submissionId` and \
             `outcome` files (each with its `manifestUrl`) of the rejected lines.",
            "202",
        ),
    ]
}

fn post(path: &str, id: &str, summary: &str, description: &str, success: &str) -> Interaction {
    let mut operation = operation(SYSTEM_TAG, id.to_string(), summary.to_string(), description)
        .request_body(Some(
            RequestBodyBuilder::new()
                .description(Some("A Parameters resource."))
                .required(Some(Required::True))
                .fhir_bodies("Parameters")
                .build(),
        ));
    let answer = if success == "202" {
        operation = operation.parameter(
            parameter(
                "Prefer",
                ParameterIn::Header,
                "`respond-async`.",
                ObjectBuilder::new().schema_type(Type::String),
            )
            .example(Some("respond-async".into()))
            .build(),
        );
        ResponseBuilder::new()
            .description("Accepted: the job's status URL is in `Content-Location`.")
            .header(
                "Content-Location",
                HeaderBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                    .description(Some("The job's status URL."))
                    .build(),
            )
            .fhir_bodies("OperationOutcome")
            .build()
    } else {
        ResponseBuilder::new()
            .description("The manifest is taken.")
            .fhir_bodies("OperationOutcome")
            .build()
    };
    let refused = [
        Error::BadRequest,
        Error::Forbidden,
        Error::NotFound,
        Error::Conflict,
        Error::TooLarge,
        Error::UnsupportedMediaType,
        Error::TooManyRequests,
    ];
    Interaction {
        codes: &[],
        path: path.to_string(),
        method: HttpMethod::Post,
        operation: errors(operation.response(success, answer), &refused).build(),
    }
}
