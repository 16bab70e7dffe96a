//! `$validate` (`api/validate.rs`) as OpenAPI operations: at the type level by POST, at the
//! instance level by GET (the stored version) and POST. Operations, not interactions: their
//! FHIR interaction codes are none; the CapabilityStatement lists `validate` under each type.

use super::components::{Error, FhirBodies, Param};
use super::interactions::{Interaction, errors, operation};
use utoipa::openapi::path::{HttpMethod, OperationBuilder};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::{Required, ResponseBuilder};

const DESCRIPTION: &str = "Checks the resource (the body: a resource or a Parameters with \
    `resource`, `mode`, `profile`) without storing it. 200 with every finding graded as a write \
    would meet it: `error` refuses the write (422), `warning` is stored, `information` is \
    dropped by the policy.";

/// `POST /fhir/{type}/$validate`
pub fn of_type(resource_type: &str) -> Interaction {
    let operation = operation(
        resource_type,
        format!("validate{resource_type}"),
        format!("$validate: check a {resource_type} without storing it"),
        DESCRIPTION,
    )
    .request_body(Some(body(resource_type, Required::True)));
    Interaction {
        codes: &[],
        path: format!("/fhir/{resource_type}/$validate"),
        method: HttpMethod::Post,
        operation: answer(operation).build(),
    }
}

/// `GET|POST /fhir/{type}/{id}/$validate`
pub fn instance(resource_type: &str, method: HttpMethod) -> Interaction {
    let (id, summary) = match method {
        HttpMethod::Get => (
            format!("validateStored{resource_type}"),
            format!("$validate: check the stored {resource_type}"),
        ),
        _ => (
            format!("validateInstance{resource_type}"),
            format!("$validate: check a {resource_type} as an update or delete of this one"),
        ),
    };
    let mut operation =
        operation(resource_type, id, summary, DESCRIPTION).parameter_ref(Param::Id.reference());
    if method == HttpMethod::Post {
        operation = operation.request_body(Some(body(resource_type, Required::False)));
    }
    Interaction {
        codes: &[],
        path: format!("/fhir/{resource_type}/{{id}}/$validate"),
        method,
        operation: errors(answer(operation), &[Error::NotFound]).build(),
    }
}

/// The `mode` and `profile` parameters, the OperationOutcome answer and the errors.
fn answer(operation: OperationBuilder) -> OperationBuilder {
    let operation = operation
        .parameter_ref(Param::Mode.reference())
        .parameter_ref(Param::Profile.reference())
        .response(
            "200",
            ResponseBuilder::new()
                .description("Every finding, or one `information` issue saying there is none.")
                .fhir_bodies("OperationOutcome")
                .build(),
        );
    errors(
        operation,
        &[
            Error::BadRequest,
            Error::NotAcceptable,
            Error::TooLarge,
            Error::UnsupportedMediaType,
        ],
    )
}

fn body(resource_type: &str, required: Required) -> utoipa::openapi::request_body::RequestBody {
    RequestBodyBuilder::new()
        .description(Some(format!(
            "A {resource_type}, or a Parameters with `resource` (and `mode`, `profile`). At \
             the instance level without a body, the stored version is checked."
        )))
        .required(Some(required))
        .fhir_bodies(resource_type)
        .build()
}
