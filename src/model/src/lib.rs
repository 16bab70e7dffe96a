//! The typed FHIR R4 (4.0.1) model of fhirlake, behind plain functions.
//!
//! This is the only crate of the workspace that calls fhirbolt. fhirbolt's serde code is
//! monomorphized in every crate that instantiates it, which costs minutes of compile time per
//! crate, so every call lives here behind non-generic functions and the rest of fhirlake
//! depends on this crate alone.
//!
//! Two known fhirbolt 0.4 defects are contained here:
//! - an empty JSON array panics inside its deserializer: [`check_resource`] rejects empty
//!   arrays (which FHIR forbids anyway) before parsing and runs the parser under
//!   `catch_unwind` all the same (callers drop empty elements first with [`drop_empty`]);
//! - parsing into a concrete resource type fails when fields follow `contained`: parsing always
//!   goes through the `Resource` enum.
//!
//! fhirbolt coerces some wrong shapes silently when parsing (`"3"` to `3`, `["male"]` to
//! `"male"`, `{}` to `[{}]`). Its JSON round trip is otherwise lossless, so [`check_resource`]
//! serializes the parsed resource again and compares it with the input: any difference is an
//! element whose type or cardinality is wrong, and is reported with its path.

mod empty;
mod shape;
mod xml;

use fhirbolt::model::r4::Resource;
use serde_json::Value;
use std::panic::{AssertUnwindSafe, catch_unwind};

pub use empty::drop_empty;
pub use shape::{Problem, ProblemKind};
pub use xml::{json_to_xml, xml_to_json};

/// Every concrete resource type of FHIR R4 4.0.1, sorted by name.
pub const RESOURCE_TYPES: &[&str] = &[
    "Account",
    "ActivityDefinition",
    "AdverseEvent",
    "AllergyIntolerance",
    "Appointment",
    "AppointmentResponse",
    "AuditEvent",
    "Basic",
    "Binary",
    "BiologicallyDerivedProduct",
    "BodyStructure",
    "Bundle",
    "CapabilityStatement",
    "CarePlan",
    "CareTeam",
    "CatalogEntry",
    "ChargeItem",
    "ChargeItemDefinition",
    "Claim",
    "ClaimResponse",
    "ClinicalImpression",
    "CodeSystem",
    "Communication",
    "CommunicationRequest",
    "CompartmentDefinition",
    "Composition",
    "ConceptMap",
    "Condition",
    "Consent",
    "Contract",
    "Coverage",
    "CoverageEligibilityRequest",
    "CoverageEligibilityResponse",
    "DetectedIssue",
    "Device",
    "DeviceDefinition",
    "DeviceMetric",
    "DeviceRequest",
    "DeviceUseStatement",
    "DiagnosticReport",
    "DocumentManifest",
    "DocumentReference",
    "EffectEvidenceSynthesis",
    "Encounter",
    "Endpoint",
    "EnrollmentRequest",
    "EnrollmentResponse",
    "EpisodeOfCare",
    "EventDefinition",
    "Evidence",
    "EvidenceVariable",
    "ExampleScenario",
    "ExplanationOfBenefit",
    "FamilyMemberHistory",
    "Flag",
    "Goal",
    "GraphDefinition",
    "Group",
    "GuidanceResponse",
    "HealthcareService",
    "ImagingStudy",
    "Immunization",
    "ImmunizationEvaluation",
    "ImmunizationRecommendation",
    "ImplementationGuide",
    "InsurancePlan",
    "Invoice",
    "Library",
    "Linkage",
    "List",
    "Location",
    "Measure",
    "MeasureReport",
    "Media",
    "Medication",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationKnowledge",
    "MedicationRequest",
    "MedicationStatement",
    "MedicinalProduct",
    "MedicinalProductAuthorization",
    "MedicinalProductContraindication",
    "MedicinalProductIndication",
    "MedicinalProductIngredient",
    "MedicinalProductInteraction",
    "MedicinalProductManufactured",
    "MedicinalProductPackaged",
    "MedicinalProductPharmaceutical",
    "MedicinalProductUndesirableEffect",
    "MessageDefinition",
    "MessageHeader",
    "MolecularSequence",
    "NamingSystem",
    "NutritionOrder",
    "Observation",
    "ObservationDefinition",
    "OperationDefinition",
    "OperationOutcome",
    "Organization",
    "OrganizationAffiliation",
    "Parameters",
    "Patient",
    "PaymentNotice",
    "PaymentReconciliation",
    "Person",
    "PlanDefinition",
    "Practitioner",
    "PractitionerRole",
    "Procedure",
    "Provenance",
    "Questionnaire",
    "QuestionnaireResponse",
    "RelatedPerson",
    "RequestGroup",
    "ResearchDefinition",
    "ResearchElementDefinition",
    "ResearchStudy",
    "ResearchSubject",
    "RiskAssessment",
    "RiskEvidenceSynthesis",
    "Schedule",
    "SearchParameter",
    "ServiceRequest",
    "Slot",
    "Specimen",
    "SpecimenDefinition",
    "StructureDefinition",
    "StructureMap",
    "Subscription",
    "Substance",
    "SubstanceNucleicAcid",
    "SubstancePolymer",
    "SubstanceProtein",
    "SubstanceReferenceInformation",
    "SubstanceSourceMaterial",
    "SubstanceSpecification",
    "SupplyDelivery",
    "SupplyRequest",
    "Task",
    "TerminologyCapabilities",
    "TestReport",
    "TestScript",
    "ValueSet",
    "VerificationResult",
    "VisionPrescription",
];

/// Is `name` a concrete FHIR R4 resource type?
pub fn is_resource_type(name: &str) -> bool {
    RESOURCE_TYPES.binary_search(&name).is_ok()
}

/// Checks that `value` is a well-formed FHIR R4 resource in JSON: a known `resourceType`, no
/// unknown elements, every element of the right type and cardinality, no empty arrays, objects
/// or strings, no two variants of one choice element, required elements present.
///
/// On success it returns the resource in fhirbolt's canonical form, which equals the input as a
/// JSON value (only the order of object members may differ: the canonical order puts
/// `resourceType`, `id` and `meta` first, as the FHIR specification lists elements).
///
/// It does not check primitive formats (dates, ids), bindings, invariants or profiles.
///
/// fhirbolt's generated deserializer recurses with large stack frames (up to ~24 KiB per level
/// of JSON nesting in a debug build): a resource nested deeper than [`INLINE_DEPTH`] is checked
/// on a thread of its own whose stack is sized for its depth, so that no depth the JSON parser
/// lets through can overflow the caller's stack (an HTTP worker has 2 MiB).
pub fn check_resource(value: &Value) -> Result<Value, Problem> {
    let depth = depth(value);
    if depth <= INLINE_DEPTH {
        return check(value);
    }
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("fhirlake-model".into())
            .stack_size(BASE_STACK + depth * STACK_PER_LEVEL)
            .spawn_scoped(scope, || check(value))
            .expect("a thread to check a deeply nested resource")
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// The deepest JSON nesting checked on the caller's stack: the deepest official R4 example
/// resource nests 22 levels, Synthea's 11.
pub const INLINE_DEPTH: usize = 24;
/// The stack of a checking thread: this, plus [`STACK_PER_LEVEL`] per level of nesting.
const BASE_STACK: usize = 1024 * 1024;
/// More than twice the most one level of nesting was measured to take.
const STACK_PER_LEVEL: usize = 64 * 1024;

/// How deeply arrays and objects nest in `value` (a scalar is 0, `[]` is 1); iterative, so any
/// value can be measured.
pub fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(value, 0)];
    while let Some((value, above)) = pending.pop() {
        let level = above + 1;
        match value {
            Value::Array(items) => pending.extend(items.iter().map(|item| (item, level))),
            Value::Object(members) => pending.extend(members.values().map(|item| (item, level))),
            _ => continue,
        }
        deepest = deepest.max(level);
    }
    deepest
}

fn check(value: &Value) -> Result<Value, Problem> {
    shape::check_no_empty(value)?;
    let resource = match parse(value) {
        Ok(Ok(resource)) => resource,
        Ok(Err(message)) => {
            let message_of = |candidate: &Value| parse(candidate).ok()?.err();
            return Err(shape::locate_parse_error(value, &message, &message_of));
        }
        Err(()) => {
            return Err(Problem::new(
                ProblemKind::Structure,
                shape::root_path(value),
                "the resource could not be parsed as FHIR R4".to_string(),
            ));
        }
    };
    let canonical = catch_unwind(AssertUnwindSafe(|| {
        fhirbolt::json::to_json_value(resource, None)
    }));
    match canonical {
        Ok(Ok(canonical)) => {
            shape::compare(value, &canonical)?;
            Ok(canonical)
        }
        _ => Err(Problem::new(
            ProblemKind::Structure,
            shape::root_path(value),
            "the resource could not be serialized as FHIR R4".to_string(),
        )),
    }
}

/// Parses `value` through the `Resource` enum under `catch_unwind`: `Err(())` when fhirbolt
/// panicked, `Ok(Err(message))` when it refused the input.
fn parse(value: &Value) -> Result<Result<Resource, String>, ()> {
    catch_unwind(AssertUnwindSafe(|| {
        fhirbolt::json::from_json_value::<Resource>(value.clone(), None)
            .map_err(|error| error.to_string())
    }))
    .map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resource_types_are_sorted_for_binary_search() {
        assert!(RESOURCE_TYPES.windows(2).all(|w| w[0] < w[1]));
        assert!(is_resource_type("Patient"));
        assert!(!is_resource_type("Patients"));
        assert!(!is_resource_type("DomainResource"));
    }

    #[test]
    fn accepts_a_valid_patient_and_puts_canonical_order_first() {
        let input = json!({
            "gender": "male",
            "name": [{"family": "Chalmers", "given": ["Peter", "James"]}],
            "id": "example",
            "resourceType": "Patient",
            "birthDate": "1974-12-25",
            "_birthDate": {"extension": [{"url": "http://example.org/x", "valueString": "y"}]}
        });
        let canonical = check_resource(&input).unwrap();
        assert_eq!(canonical, input);
        let keys: Vec<&String> = canonical.as_object().unwrap().keys().collect();
        assert_eq!(keys[0], "resourceType");
        assert_eq!(keys[1], "id");
    }

    #[test]
    fn keeps_exact_decimals() {
        let input: Value = serde_json::from_str(
            r#"{"resourceType":"Observation","status":"final","code":{"text":"x"},
                "valueQuantity":{"value":1.50,"unit":"mg"}}"#,
        )
        .unwrap();
        let canonical = check_resource(&input).unwrap();
        assert_eq!(
            serde_json::to_string(&canonical["valueQuantity"]["value"]).unwrap(),
            "1.50"
        );
    }

    fn problem(input: Value) -> Problem {
        check_resource(&input).expect_err("must be rejected")
    }

    #[test]
    fn rejects_unknown_elements_with_their_path() {
        let p =
            problem(json!({"resourceType": "Patient", "name": [{"family": "x", "nickname": "y"}]}));
        assert_eq!(p.kind, ProblemKind::Structure);
        assert_eq!(p.path, "Patient.name[0].nickname");
    }

    #[test]
    fn rejects_coerced_shapes() {
        let p = problem(json!({"resourceType": "Patient", "gender": ["male"]}));
        assert_eq!(p.path, "Patient.gender");
        let p = problem(json!({"resourceType": "Patient", "name": {"family": "x"}}));
        assert_eq!(p.path, "Patient.name");
        let p = problem(json!({"resourceType": "Patient", "multipleBirthInteger": "3"}));
        assert_eq!(p.path, "Patient.multipleBirthInteger");
        let p = problem(json!({"resourceType": "Patient", "active": "true"}));
        assert_eq!(p.path, "Patient.active");
    }

    #[test]
    fn rejects_empty_arrays_objects_and_strings_without_panicking() {
        let p = problem(json!({"resourceType": "Patient", "name": []}));
        assert_eq!(p.path, "Patient.name");
        let p = problem(json!({"resourceType": "Patient", "name": [{"given": []}]}));
        assert_eq!(p.path, "Patient.name[0].given");
        let p = problem(json!({"resourceType": "Patient", "meta": {}}));
        assert_eq!(p.path, "Patient.meta");
        let p = problem(json!({"resourceType": "Patient", "gender": ""}));
        assert_eq!(p.path, "Patient.gender");
        // Inside a contained resource, and a primitive's extensions located at its value.
        let p = problem(json!({
            "resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "contained": [{"resourceType": "Patient", "name": [{"_given": [null, {}]}]}]
        }));
        assert_eq!(
            p.path,
            "Observation.contained[0].ofType(Patient).name[0].given[1]"
        );
    }

    #[test]
    fn rejects_unknown_and_missing_resource_types() {
        assert_eq!(
            problem(json!({"resourceType": "Patientx"})).kind,
            ProblemKind::ResourceType
        );
        assert_eq!(problem(json!({"id": "x"})).kind, ProblemKind::ResourceType);
        assert_eq!(problem(json!([1])).kind, ProblemKind::ResourceType);
    }

    #[test]
    fn rejects_two_variants_of_a_choice_and_missing_required_elements() {
        problem(
            json!({"resourceType": "Patient", "deceasedBoolean": true, "deceasedDateTime": "2020"}),
        );
        let p = problem(json!({"resourceType": "Observation", "code": {"text": "x"}}));
        assert_eq!(p.path, "Observation.status");
        let p = problem(json!({
            "resourceType": "Observation", "code": {"text": "x"}, "status": "final",
            "component": [{"code": {"text": "a"}}, {"valueString": "b"}]
        }));
        assert_eq!(p.path, "Observation.component[1].code");
    }

    #[test]
    fn a_missing_element_is_reported_on_the_object_that_lacks_it() {
        let identifier = json!([{"system": "urn:ietf:rfc:3986", "value": "urn:uuid:1"}]);
        for (input, path) in [
            (
                json!({"resourceType": "DocumentReference", "identifier": identifier,
                    "content": [{"attachment": {"contentType": "text/plain"}}]}),
                "DocumentReference.status",
            ),
            (
                json!({"resourceType": "DocumentReference", "status": "current",
                    "content": [{"format": {"code": "x"}}]}),
                "DocumentReference.content[0].attachment",
            ),
            (
                json!({"resourceType": "Observation", "identifier": identifier,
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}}),
                "Observation.status",
            ),
            (
                json!({"resourceType": "Encounter", "status": "finished",
                    "identifier": identifier, "type": [{"text": "visit"}]}),
                "Encounter.class",
            ),
            (
                json!({"resourceType": "MedicationRequest", "status": "active",
                    "intent": "order", "medicationCodeableConcept": {"text": "x"},
                    "dosageInstruction": [{"text": "once"}]}),
                "MedicationRequest.subject",
            ),
            (
                json!({"resourceType": "Condition", "identifier": identifier,
                    "code": {"coding": [{"code": "x"}]}}),
                "Condition.subject",
            ),
            (
                json!({"resourceType": "Bundle", "type": "collection", "entry": [
                    {"resource": {"resourceType": "Observation", "identifier": identifier,
                        "code": {"text": "x"}}}]}),
                "Bundle.entry[0].resource.ofType(Observation).status",
            ),
        ] {
            assert_eq!(problem(input.clone()).path, path, "{input}");
        }
    }

    #[test]
    fn names_the_element_of_a_wrong_primitive_type() {
        let p = problem(json!({"resourceType": "Patient", "active": true, "birthDate": 3}));
        assert_eq!(p.path, "Patient.birthDate");
        let p = problem(
            json!({"resourceType": "Patient", "name": [{"family": "x"}, {"given": [true]}]}),
        );
        assert_eq!(p.path, "Patient.name[1].given[0]");
        let p = problem(json!({
            "resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "contained": [{"resourceType": "Patient", "gender": 1}]
        }));
        assert_eq!(p.path, "Observation.contained[0].ofType(Patient).gender");
    }

    #[test]
    fn accepts_contained_resources_followed_by_fields() {
        let input = json!({
            "resourceType": "Observation",
            "contained": [{"resourceType": "Patient", "id": "p1"}],
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": "#p1"}
        });
        assert_eq!(check_resource(&input).unwrap(), input);
    }
}
