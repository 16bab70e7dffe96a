//! The FHIR R4 JSON schemas as OpenAPI components.
//!
//! `fhir-profiles/r4-openapi-schemas.json.gz` holds the 680 definitions of the official R4
//! JSON schema (`fhir.schema.json` of hl7.fhir.r4.core 4.0.1), converted once for OpenAPI 3.1
//! (see `fhir-profiles/README.md`): every `$ref` points into `#/components/schemas/`, and
//! `const` is written as a one-value `enum`, which utoipa's schema model can hold. Every type
//! is named as in FHIR (`Patient`, `HumanName`, backbone elements as `Patient_Contact`);
//! `ResourceList` is any resource, told apart by `resourceType`.

use flate2::read::GzDecoder;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use utoipa::openapi::{RefOr, Schema};

const SCHEMAS_GZ: &[u8] = include_bytes!("../../../fhir-profiles/r4-openapi-schemas.json.gz");

/// The schema components, by name, with an example value for each primitive type.
pub fn schemas() -> BTreeMap<String, RefOr<Schema>> {
    let mut schemas = converted();
    schemas.insert(
        crate::fhir::resource::VIEW_DEFINITION.into(),
        serde_json::from_value(view_definition()).expect("a schema"),
    );
    for (name, example) in primitive_examples() {
        if let Some(RefOr::T(Schema::Object(primitive))) = schemas.get_mut(name) {
            primitive.examples = vec![example];
        }
    }
    schemas
}

/// SQL on FHIR v2's ViewDefinition, the one type stored that R4 does not have: its members,
/// in outline (the server checks the rest).
fn view_definition() -> Value {
    let array = || json!({"type": "array", "items": {"type": "object"}});
    json!({
        "type": "object",
        "description": "A SQL on FHIR v2 ViewDefinition \
            (https://sql-on-fhir.org/ig/StructureDefinition-ViewDefinition.html); not an R4 type.",
        "required": ["resourceType", "resource", "select"],
        "properties": {
            "resourceType": {"type": "string", "enum": ["ViewDefinition"]},
            "id": {"$ref": "#/components/schemas/id"},
            "meta": {"$ref": "#/components/schemas/Meta"},
            "url": {"$ref": "#/components/schemas/uri"},
            "name": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "string", "enum": ["draft", "active", "retired", "unknown"]},
            "resource": {"type": "string"},
            "constant": array(),
            "select": array(),
            "where": array()
        }
    })
}

/// The schemas as converted from FHIR.
fn converted() -> BTreeMap<String, RefOr<Schema>> {
    serde_json::from_reader(GzDecoder::new(SCHEMAS_GZ))
        .expect("the embedded FHIR schemas are valid (tested)")
}

/// A valid value of each FHIR primitive type. Without them, Swagger UI makes its examples up
/// from the patterns (`^[ \r\n\t\S]+$` gives random Unicode).
fn primitive_examples() -> [(&'static str, Value); 20] {
    [
        ("base64Binary", json!("SGVsbG8=")),
        ("boolean", json!(true)),
        (
            "canonical",
            json!("http://hl7.org/fhir/StructureDefinition/Patient"),
        ),
        ("code", json!("example")),
        ("date", json!("2024-01-31")),
        ("dateTime", json!("2024-01-31T12:00:00Z")),
        ("decimal", json!(1.5)),
        ("id", json!("example")),
        ("instant", json!("2024-01-31T12:00:00.000Z")),
        ("integer", json!(1)),
        ("markdown", json!("Some *markdown*")),
        ("oid", json!("urn:oid:2.16.840.1.113883")),
        ("positiveInt", json!(1)),
        ("string", json!("text")),
        ("time", json!("12:00:00")),
        ("unsignedInt", json!(0)),
        ("uri", json!("http://example.org/fhir")),
        ("url", json!("http://example.org/fhir")),
        (
            "uuid",
            json!("urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"),
        ),
        (
            "xhtml",
            json!("<div xmlns=\"http://www.w3.org/1999/xhtml\">text</div>"),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> Value {
        serde_json::from_reader(GzDecoder::new(SCHEMAS_GZ)).unwrap()
    }

    /// utoipa's schema model drops keywords it does not know: nothing of the FHIR schemas
    /// may be lost on the way through it.
    #[test]
    fn the_schemas_pass_through_utoipa_unchanged() {
        let through_utoipa = serde_json::to_value(converted()).unwrap();
        let raw = raw();
        let raw = raw.as_object().unwrap();
        for (name, schema) in raw {
            assert_eq!(&through_utoipa[name], schema, "schema {name}");
        }
        assert_eq!(through_utoipa.as_object().unwrap().len(), raw.len());
    }

    #[test]
    fn every_resource_type_has_a_schema_and_every_reference_resolves() {
        let raw = raw();
        for name in fhirlake_model::RESOURCE_TYPES {
            assert_eq!(
                raw[name]["properties"]["resourceType"]["enum"],
                serde_json::json!([name]),
                "{name}"
            );
        }
        let text = raw.to_string();
        for reference in text.split("\"#/components/schemas/").skip(1) {
            let name = &reference[..reference.find('"').unwrap()];
            assert!(raw.get(name).is_some(), "dangling reference to {name}");
        }
        assert!(!text.contains("#/definitions/"));
    }

    /// Every primitive (a schema without properties or alternatives) has an example, and no
    /// example names a schema that is not a primitive.
    #[test]
    fn every_primitive_has_an_example() {
        let schemas = serde_json::to_value(schemas()).unwrap();
        for (name, schema) in schemas.as_object().unwrap() {
            let primitive = schema.get("properties").is_none() && schema.get("oneOf").is_none();
            assert_eq!(schema.get("examples").is_some(), primitive, "{name}");
        }
    }
}
