//! The terminology operations of `api/terminology.rs` as OpenAPI operations: each by GET with
//! query parameters and by POST with a Parameters body. They are operations, not
//! interactions: their FHIR interaction codes are none (`x-fhir-interaction: []`); the
//! CapabilityStatement lists them under its CodeSystem and ValueSet resources.

use super::super::terminology::OPERATIONS;
use super::components::{Error, FhirBodies};
use super::interactions::{Interaction, errors, operation};
use serde_json::{Value, json};
use utoipa::openapi::path::{HttpMethod, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{Required, ResponseBuilder};

/// What the document says of one operation.
struct Described {
    summary: &'static str,
    description: &'static str,
    /// The query parameters: name, description, example.
    params: &'static [(&'static str, &'static str, &'static str)],
    /// The schema of the answer.
    answer: &'static str,
}

const SYSTEM: (&str, &str, &str) = (
    "system",
    "The code system's URL.",
    "http://hl7.org/fhir/sid/icd-10-cm",
);
const VERSION: (&str, &str, &str) = (
    "version",
    "Accepted and ignored: one version of each code system is held.",
    "",
);
const URL: (&str, &str, &str) = (
    "url",
    "The canonical URL of a value set of FHIR R4 or HL7 terminology.",
    "http://hl7.org/fhir/ValueSet/administrative-gender",
);

fn described(name: &str) -> Described {
    match name {
        "lookup" => Described {
            summary: "$lookup: a code's display, designations and properties",
            description: "The concept of `code` in `system`: its display, designations and \
                properties, with its is-a parents and children as `parent` and `child`. 404 when \
                the code system is unknown or does not have the code (or, for SNOMED CT, LOINC \
                and RxNorm, when the code is not in the part held).",
            params: &[
                SYSTEM,
                ("code", "The code.", "E11.9"),
                VERSION,
                ("displayLanguage", "Accepted and ignored.", ""),
            ],
            answer: "Parameters",
        },
        "subsumes" => Described {
            summary: "$subsumes: how code A relates to code B by is-a",
            description: "`equivalent`, `subsumes` (B is-a A), `subsumed-by` or \
                `not-subsumed`. Needs the code system's hierarchy: a SNOMED CT release loaded \
                with `fhirlake terminology load-snomed`, ICD-10-CM, or a complete FHIR code \
                system; otherwise 422.",
            params: &[
                SYSTEM,
                ("codeA", "Code A.", "E11"),
                ("codeB", "Code B.", "E11.9"),
                VERSION,
            ],
            answer: "Parameters",
        },
        "validate-code" => Described {
            summary: "$validate-code: whether a code is in a value set (or its code system)",
            description: "`result` true or false, a `message` (why not, or warnings such as a \
                display that is none of the code's names) and the code's `display`. Without \
                `url` (or a `valueSet`) the code is checked in its code system. When the answer \
                depends on what is not held (a code of SNOMED CT or LOINC outside the subset \
                shipped, an is-a filter without a loaded hierarchy) it is not false: 422 says \
                it cannot be decided. POST also takes a `coding` or a `codeableConcept` (valid \
                when one of its codings is).",
            params: &[
                URL,
                (
                    "system",
                    "The code's system.",
                    "http://hl7.org/fhir/administrative-gender",
                ),
                ("code", "The code.", "female"),
                (
                    "display",
                    "A display to check against the code's names.",
                    "Female",
                ),
                VERSION,
            ],
            answer: "Parameters",
        },
        _ => Described {
            summary: "$expand: the codes of a value set",
            description: "A ValueSet with an `expansion`: the value set's codes (those whose \
                display or code matches `filter`), a page of `count` from `offset`, with the \
                `total`. A value set that includes all of a code system held in part (SNOMED CT, \
                LOINC) cannot be listed: 422 (`not-supported`); one of more than 100,000 codes \
                neither (`too-costly`). POST also takes a `valueSet` to expand.",
            params: &[
                URL,
                (
                    "filter",
                    "Text the codes' displays must match (word starts).",
                    "fem",
                ),
                (
                    "count",
                    "The most codes to return (default and at most `--max-count`).",
                    "10",
                ),
                ("offset", "How many codes to skip.", "0"),
            ],
            answer: "ValueSet",
        },
    }
}

/// The operations, GET then POST, in the order of [`OPERATIONS`].
pub fn operations() -> Vec<Interaction> {
    OPERATIONS
        .iter()
        .flat_map(|(resource_type, name, _)| {
            [HttpMethod::Get, HttpMethod::Post].map(|method| describe(resource_type, name, method))
        })
        .collect()
}

fn describe(resource_type: &str, name: &str, method: HttpMethod) -> Interaction {
    let described = described(name);
    let post = method == HttpMethod::Post;
    // validate-code -> validateCode: the id is the operation's name, then the type's.
    let id: String = name
        .split('-')
        .enumerate()
        .map(|(i, word)| match i {
            0 => word.to_string(),
            _ => word[..1].to_uppercase() + &word[1..],
        })
        .collect();
    let mut builder = operation(
        resource_type,
        format!("{id}{resource_type}{}", if post { "Post" } else { "" }),
        described.summary.into(),
        described.description,
    );
    if post {
        builder = builder.request_body(Some(
            RequestBodyBuilder::new()
                .description(Some(
                    "A Parameters resource with the same parameters (and the complex ones).",
                ))
                .required(Some(Required::True))
                .fhir_bodies_with_example("Parameters", Some(example(&described)))
                .build(),
        ));
    } else {
        for (param, description, example) in described.params {
            let mut parameter = super::components::parameter(
                param,
                ParameterIn::Query,
                description,
                ObjectBuilder::new().schema_type(Type::String),
            );
            if !example.is_empty() {
                parameter = parameter.example(Some((*example).into()));
            }
            builder = builder.parameter(parameter.build());
        }
    }
    let builder = builder.response(
        "200",
        ResponseBuilder::new()
            .description(format!("The answer: a {}.", described.answer))
            .fhir_bodies(described.answer)
            .build(),
    );
    let mut failures = vec![
        Error::BadRequest,
        Error::NotFound,
        Error::NotAcceptable,
        Error::Unprocessable,
    ];
    if post {
        failures.extend([Error::TooLarge, Error::UnsupportedMediaType]);
    }
    Interaction {
        codes: &[],
        path: format!("/fhir/{resource_type}/${name}"),
        method,
        operation: errors(builder, &failures).build(),
    }
}

/// A Parameters body made of the GET parameters' examples.
fn example(described: &Described) -> Value {
    let parameter: Vec<Value> = described
        .params
        .iter()
        .filter(|(_, _, example)| !example.is_empty())
        .map(|(name, _, example)| match *name {
            "count" | "offset" => {
                json!({"name": name, "valueInteger": example.parse::<u32>().unwrap_or(0)})
            }
            "system" | "url" => json!({"name": name, "valueUri": example}),
            "code" | "codeA" | "codeB" => json!({"name": name, "valueCode": example}),
            _ => json!({"name": name, "valueString": example}),
        })
        .collect();
    json!({"resourceType": "Parameters", "parameter": parameter})
}
