//! Erasure (`api/erase.rs`) as OpenAPI operations: `$erase` of a resource and of one version,
//! `$bulk-delete` of each type, `$purge` of a Patient. Operations, not interactions: their FHIR
//! interaction codes are none; the CapabilityStatement lists them under each type.

use super::components::{Error, FhirBodies, Param, parameter};
use super::export::{header, text};
use super::interactions::{Interaction, errors, operation};
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::{Required, ResponseBuilder};

const ERASE: &str = "Removes for good, from the store, the search index and the change log \
    (which keeps an `erased` entry without content, and tells every consumer). Needs delete on \
    the type, unconfined, and the scope `fhirlake/erase`; never a `patient/` token.";

const JOB: &str = "Runs as a job: 202 with its status URL in `Content-Location`; the result \
    counts the resources done and lists the finished exports that may hold erased data. \
    `_since`, or `start` and `end`, limit it by lastUpdated.";

/// The erasure operations of `resource_type`.
pub fn operations(resource_type: &str) -> Vec<Interaction> {
    let mut all = vec![erase(resource_type, false), erase(resource_type, true)];
    all.push(bulk_delete(resource_type));
    if resource_type == "Patient" {
        all.push(purge());
    }
    all
}

fn erase(resource_type: &str, version: bool) -> Interaction {
    let (id, summary, path) = if version {
        (
            format!("eraseVersion{resource_type}"),
            format!("$erase: one earlier version of a {resource_type}, for good"),
            format!("/fhir/{resource_type}/{{id}}/_history/{{vid}}/$erase"),
        )
    } else {
        (
            format!("erase{resource_type}"),
            format!("$erase: a {resource_type} and every version of it, for good"),
            format!("/fhir/{resource_type}/{{id}}/$erase"),
        )
    };
    let mut operation =
        operation(resource_type, id, summary, ERASE).parameter_ref(Param::Id.reference());
    let mut refused = vec![Error::Forbidden, Error::NotFound];
    if version {
        operation = operation.parameter_ref(Param::Vid.reference());
        refused.push(Error::Conflict);
    }
    let done = ResponseBuilder::new()
        .description("Erased: what was, in an OperationOutcome.")
        .fhir_bodies("OperationOutcome")
        .build();
    Interaction {
        codes: &[],
        path,
        method: HttpMethod::Post,
        operation: errors(operation.response("200", done), &refused).build(),
    }
}

fn bulk_delete(resource_type: &str) -> Interaction {
    let description = format!(
        "Deletes every {resource_type} (versioned tombstones) the search parameters given \
         match, or erases them with `hardDelete=true` (see $erase). {JOB}"
    );
    let operation = operation(
        resource_type,
        format!("bulkDelete{resource_type}"),
        format!("$bulk-delete: delete or erase every matching {resource_type}"),
        &description,
    )
    .parameter(
        parameter(
            "hardDelete",
            ParameterIn::Query,
            "`true` to erase for good (needs `fhirlake/erase`), `false` (the default) for \
             tombstones.",
            text(),
        )
        .build(),
    );
    job(
        limits(operation),
        format!("/fhir/{resource_type}/$bulk-delete"),
    )
}

fn purge() -> Interaction {
    let description = format!(
        "Erases the Patient's compartment: every resource whose compartment membership names \
         it, and the Patient itself, last. {ERASE} {JOB}"
    );
    let operation = operation(
        "Patient",
        "purgePatient".into(),
        "$purge: erase a patient's compartment, for good".into(),
        &description,
    )
    .parameter_ref(Param::Id.reference());
    job(limits(operation), "/fhir/Patient/{id}/$purge".into())
}

fn limits(mut operation: OperationBuilder) -> OperationBuilder {
    for (name, what) in [
        (
            "_since",
            "Only resources last updated at or after this instant.",
        ),
        (
            "start",
            "Only resources last updated at or after this date.",
        ),
        ("end", "Only resources last updated at or before this date."),
    ] {
        operation = operation.parameter(parameter(name, ParameterIn::Query, what, text()).build());
    }
    operation.request_body(Some(
        RequestBodyBuilder::new()
            .description(Some("A Parameters resource with the same parameters."))
            .required(Some(Required::False))
            .fhir_bodies("Parameters")
            .build(),
    ))
}

fn job(operation: OperationBuilder, path: String) -> Interaction {
    let accepted = ResponseBuilder::new()
        .description("Accepted: the job's status URL is in `Content-Location`.")
        .header("Content-Location", header("The job's status URL."))
        .fhir_bodies("OperationOutcome")
        .build();
    let refused = [
        Error::BadRequest,
        Error::Forbidden,
        Error::NotFound,
        Error::TooManyRequests,
    ];
    Interaction {
        codes: &[],
        path,
        method: HttpMethod::Post,
        operation: errors(operation.response("202", accepted), &refused).build(),
    }
}
