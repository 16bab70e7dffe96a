//! Content validation: the codes the structure walk meets, checked against the terminology.
//!
//! - A Coding, and a Quantity's `system` and `code`, is checked in its code system where it
//!   stands ([`Rule::Code`] of that system): a code the system does not have is an error; one
//!   not in the part of the system held here, a display that is none of the concept's names
//!   and an inactive concept are warnings.
//! - A value of an element bound `required` or `extensible` is checked against the value set
//!   ([`Rule::Binding`] of the strength): a `code` must be in it with one of the code systems
//!   the value set draws from; a Coding or CodeableConcept must have a coding in it.
//!   Required: an error otherwise, and so is a CodeableConcept of text alone (R4: it "SHALL"
//!   be coded from the value set). Extensible: FHIR allows another code when none of the
//!   value set fits, so the warning is only for codings of a system the value set draws from
//!   of which none is in it (a code picked from the right system but outside the set); text
//!   alone, codes of other systems and a bare `code` pass. Bindings of other strengths, on
//!   `string` and `uri` elements, and on the root of a data type (Duration's UCUM units) are
//!   not checked.
//!
//! Invariants:
//! - Only what the terminology can decide is reported. A code system not known here
//!   (Synthea's DICOM, CVX, NUCC, CDC race and ethnicity...) or known by name only (no concept
//!   held) gives no issue: nothing can be said of its codes, and a warning on each of them
//!   would bury the issues that matter. A value set membership that depends on what is not
//!   held, a value set not known here, and a terminology that fails to answer give no issue
//!   either: the value set's URL (or the code system's) goes to [`Report::unchecked`].
//! - Each Coding is checked in its code system once, at its own location
//!   (`Observation.code.coding[0]`); a binding adds membership alone, at the location of the
//!   bound element (`Observation.code`).

use super::definitions::{Binding, ElementDef};
use super::structure::{Issue, Report, Rule, Severity};
use crate::fhir::IssueCode;
use crate::terminology::{IssueKind, Membership, Terminology};
use serde_json::Value;

/// What the codes of resources are checked against.
#[derive(Clone, Copy)]
pub struct Codes<'t> {
    terminology: &'t Terminology,
}

impl<'t> Codes<'t> {
    pub fn new(terminology: &'t Terminology) -> Codes<'t> {
        Codes { terminology }
    }

    /// Checks `item`, a value of `element` of type `ty`, found at `location`.
    pub fn check(
        self,
        element: &ElementDef,
        ty: &str,
        item: &Value,
        location: &str,
        report: &mut Report,
    ) {
        if matches!(
            ty,
            "Coding" | "Quantity" | "Age" | "Count" | "Distance" | "Duration"
        ) {
            self.in_system(item, location, report);
        }
        if let Some(binding) = &element.binding
            && matches!(binding.strength.as_str(), "required" | "extensible")
        {
            self.bound(binding, &element.path, ty, item, location, report);
        }
    }

    /// A Coding (or a Quantity) in its code system.
    fn in_system(self, coding: &Value, location: &str, report: &mut Report) {
        let (Some(system), Some(code)) = (coding["system"].as_str(), coding["code"].as_str())
        else {
            return;
        };
        if self
            .terminology
            .source(system)
            .is_none_or(|source| source.concept_count() == 0)
        {
            return;
        }
        match self
            .terminology
            .validate_code(system, code, coding["display"].as_str())
        {
            Err(_) => report.unchecked.push(system.to_string()),
            Ok(check) => report
                .issues
                .extend(check.issues.into_iter().map(|issue| Issue {
                    // What the terminology only tells is a warning about the resource.
                    severity: match issue.severity {
                        Severity::Error => Severity::Error,
                        Severity::Warning | Severity::Information => Severity::Warning,
                    },
                    code: issue_code(issue.kind),
                    rule: Rule::Code(system.to_string()),
                    expression: location.to_string(),
                    diagnostics: issue.message,
                })),
        }
    }

    /// A value of an element with a `required` or `extensible` binding, in its value set.
    fn bound(
        self,
        binding: &Binding,
        path: &str,
        ty: &str,
        item: &Value,
        location: &str,
        report: &mut Report,
    ) {
        let url = binding
            .value_set
            .split('|')
            .next()
            .unwrap_or(&binding.value_set);
        let Some(value_set) = self.terminology.value_set(url) else {
            return report.unchecked.push(url.to_string());
        };
        let codings = match ty {
            "Coding" => std::slice::from_ref(item),
            "CodeableConcept" => item["coding"].as_array().map_or(&[][..], Vec::as_slice),
            _ => &[],
        };
        let coded = || {
            codings
                .iter()
                .filter_map(|c| Some((c["system"].as_str()?, c["code"].as_str()?)))
        };
        let membership = match (ty, item.as_str()) {
            ("code", Some(code)) => self.terminology.code_membership(value_set, code),
            ("Coding" | "CodeableConcept", _) => Membership::any(
                coded().map(|(system, code)| self.terminology.membership(value_set, system, code)),
            ),
            _ => return,
        };
        match membership {
            Ok(Membership::Member) => return,
            Ok(Membership::Undecided(_)) | Err(_) => return report.unchecked.push(url.to_string()),
            Ok(Membership::NotMember) => {}
        }
        let strength = binding.strength.as_str();
        let found = || {
            coded()
                .map(|(system, code)| format!("{system}|{code}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (severity, diagnostics) = match (strength, item.as_str()) {
            ("required", Some(code)) => (
                Severity::Error,
                format!("\"{code}\" is not in the value set {url}, which {path} is bound to"),
            ),
            ("required", None) if coded().next().is_none() => (
                Severity::Error,
                format!("{path} has no coding, and it must have one from the value set {url}"),
            ),
            ("required", None) => (
                Severity::Error,
                format!(
                    "no coding of {path} is in the value set {url}, which it is bound to: {}",
                    found()
                ),
            ),
            _ => {
                let systems = self.terminology.systems(value_set);
                if !coded().any(|(system, _)| systems.contains(&system)) {
                    return;
                }
                (
                    Severity::Warning,
                    format!(
                        "no coding of {path} is in the value set {url}, though one is of its \
                         code systems: {}; the binding is extensible, so another code is only \
                         for a concept the value set lacks",
                        found()
                    ),
                )
            }
        };
        report.issues.push(Issue {
            severity,
            code: IssueCode::CodeInvalid,
            rule: Rule::Binding(strength.to_string()),
            expression: location.to_string(),
            diagnostics,
        });
    }
}

/// The OperationOutcome `issue.code` of a finding about a code (as [`IssueKind::fhir_code`]
/// names it).
fn issue_code(kind: IssueKind) -> IssueCode {
    match kind {
        IssueKind::InvalidCode | IssueKind::NotInValueSet => IssueCode::CodeInvalid,
        IssueKind::NotInSubset | IssueKind::UnknownSystem => IssueCode::NotFound,
        IssueKind::Display => IssueCode::Invalid,
        IssueKind::Inactive => IssueCode::BusinessRule,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Policy, Validator, validate};
    use super::*;
    use crate::fhir::test_data::{failing_examples, synthea};
    use crate::terminology;
    use serde_json::json;
    use std::collections::BTreeMap;
    use std::sync::{Arc, LazyLock};

    fn validator() -> &'static Validator {
        static VALIDATOR: LazyLock<Validator> = LazyLock::new(|| {
            Validator::new(Arc::new(Terminology::shipped_only()), Policy::default())
        });
        &VALIDATOR
    }

    /// The issues about codes of `resource`: (severity, rule, location).
    fn code_issues(resource: &Value) -> Vec<Issue> {
        validator()
            .validate(resource)
            .issues
            .into_iter()
            .filter(|i| i.rule != Rule::Structure)
            .collect()
    }

    /// Official R4 examples whose codes break a required binding or are not codes of their
    /// system, each checked by hand.
    const WRONG_EXAMPLES: &[(&str, &str)] = &[
        (
            "ImagingStudy/example-xr",
            "bodySite T-15460: a SNOMED RT code, no SNOMED CT id",
        ),
        (
            "Medication/med0304",
            "strength.denominator Tab: v3-orderableDrugForm is case-sensitive, its code is TAB",
        ),
        ("Medication/med0309", "Tab for TAB, twice"),
        (
            "MedicationAdministration/medadmin0312",
            "dose patch for PATCH",
        ),
        (
            "MedicationDispense/meddisp0301",
            "quantity Vial: v3-orderableDrugForm has no vial",
        ),
        (
            "MedicationDispense/meddisp0314",
            "quantity SNOMED CT 415818005: its check digit is wrong",
        ),
        ("MedicationDispense/meddisp0317", "415818005 again"),
        (
            "MedicationDispense/meddisp0325",
            "doseQuantity patch for PATCH",
        ),
        (
            "MedicationRequest/medrx0313",
            "dispenseRequest.quantity Tab for TAB",
        ),
        ("MedicationRequest/medrx0314", "Tab for TAB"),
        ("MedicationRequest/medrx0327", "patch for PATCH, twice"),
        (
            "MedicationStatement/example001",
            "contained Medication: Tab for TAB",
        ),
        (
            "MedicationStatement/example002",
            "contained Medication: Tab for TAB",
        ),
        ("MedicationStatement/example003", "doseQuantity tab for TAB"),
        (
            "NutritionOrder/enteralcontinuous",
            "baseFormulaType SNOMED CT 6547210000124112: its check digit is wrong",
        ),
        (
            "PlanDefinition/example-cardiology-os",
            "useContext SNOMED CT code \"look up value\", a placeholder",
        ),
    ];

    /// Every official R4 example has codes of their systems and in their required value sets,
    /// but the known wrong ones (above).
    #[test]
    fn the_official_examples_keep_their_bindings_but_the_known_wrong_ones() {
        let failing = failing_examples(|example| {
            code_issues(example)
                .into_iter()
                .filter(|i| i.severity == Severity::Error)
                .map(|i| format!("{} {:?} {}", i.expression, i.rule, i.diagnostics))
                .collect()
        });
        let mut expected: Vec<&str> = WRONG_EXAMPLES.iter().map(|(name, _)| *name).collect();
        expected.sort();
        let found: Vec<&str> = failing.keys().map(String::as_str).collect();
        assert_eq!(found, expected, "{failing:#?}");
    }

    /// Synthea's data: no error but its one cut-short SNOMED CT code; the issues by rule and
    /// code system, and the cost of the checks, printed (`--nocapture`).
    #[test]
    fn synthea_codes_are_known_but_one_cut_short() {
        let resources: Vec<Value> = synthea().collect();
        // Warm: the definitions, the terminology.
        validator().validate(&resources[0]);
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let mut errors = BTreeMap::new();
        let start = std::time::Instant::now();
        for resource in &resources {
            for issue in validator().validate(resource).issues {
                let rule = issue.rule.to_string();
                *counts
                    .entry(format!("{} {rule}", issue.severity.as_str()))
                    .or_default() += 1;
                if issue.severity == Severity::Error {
                    *errors
                        .entry(format!("{rule} {}", issue.diagnostics))
                        .or_insert(0) += 1;
                }
            }
        }
        let with_codes = start.elapsed();
        let start = std::time::Instant::now();
        resources.iter().for_each(|r| drop(validate(r)));
        let structure = start.elapsed();
        println!(
            "{} resources; per resource: {:.1} µs with codes, {:.1} µs structure only",
            resources.len(),
            with_codes.as_secs_f64() * 1e6 / resources.len() as f64,
            structure.as_secs_f64() * 1e6 / resources.len() as f64,
        );
        println!("{counts:#?}");
        // Encounter.type's SNOMED CT 1853470 "Encounter for problem": 185347001 cut short, its
        // check digit wrong.
        assert_eq!(errors.len(), 1, "{errors:#?}");
        let (error, count) = errors.iter().next().unwrap();
        assert!(error.contains("1853470 ") && *count == 24, "{errors:#?}");
    }

    /// (severity, rule, location) of each issue about codes.
    fn found(resource: Value) -> Vec<(Severity, Rule, String)> {
        code_issues(&resource)
            .into_iter()
            .map(|i| (i.severity, i.rule, i.expression))
            .collect()
    }

    fn required() -> Rule {
        Rule::Binding("required".into())
    }

    #[test]
    fn a_code_outside_its_required_value_set_is_an_error_where_it_stands() {
        assert_eq!(
            found(json!({"resourceType": "Patient", "gender": "mal"})),
            [(Severity::Error, required(), "Patient.gender".into())]
        );
        assert!(found(json!({"resourceType": "Patient", "gender": "male"})).is_empty());
        let observation = |status: &str| json!({"resourceType": "Observation", "status": status, "code": {"text": "x"}});
        assert_eq!(
            found(observation("done")),
            [(Severity::Error, required(), "Observation.status".into())]
        );
        assert!(found(observation("final")).is_empty());
        // Within a backbone element, in a contained resource.
        let contained = json!({"resourceType": "Patient", "contained": [
            {"resourceType": "Patient", "id": "p", "contact": [{"gender": "f",
                "name": {"text": "A"}}]}]});
        assert_eq!(
            found(contained),
            [(
                Severity::Error,
                required(),
                "Patient.contained[0].contact[0].gender".into()
            )]
        );
    }

    #[test]
    fn a_codeable_concept_with_a_required_binding_needs_a_coding_in_the_value_set() {
        let condition = |clinical_status: Value| {
            json!({"resourceType": "Condition", "subject": {"reference": "Patient/p"},
                "clinicalStatus": clinical_status})
        };
        let clinical = "http://terminology.hl7.org/CodeSystem/condition-clinical";
        let good = json!({"coding": [{"system": clinical, "code": "active"}]});
        assert!(found(condition(good)).is_empty());
        // A code of its system, but of another value set.
        let elsewhere = json!({"coding": [{"system":
            "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
            "code": "active"}]});
        assert_eq!(
            found(condition(elsewhere)),
            [(
                Severity::Error,
                required(),
                "Condition.clinicalStatus".into()
            )]
        );
        // One coding in the value set is enough.
        let one_of_two = json!({"coding": [{"system": "http://example.org/local", "code": "x"},
            {"system": clinical, "code": "active"}]});
        assert!(found(condition(one_of_two)).is_empty());
        let text_alone = json!({"text": "active"});
        assert_eq!(
            found(condition(text_alone)),
            [(
                Severity::Error,
                required(),
                "Condition.clinicalStatus".into()
            )]
        );
    }

    #[test]
    fn codes_are_checked_in_their_systems() {
        let condition = |system: &str, code: &str| {
            json!({"resourceType": "Condition", "subject": {"reference": "Patient/p"},
                "code": {"coding": [{"system": system, "code": code}]}})
        };
        let at = "Condition.code.coding[0]".to_string();
        let snomed = terminology::SNOMED;
        assert!(found(condition(snomed, "44054006")).is_empty());
        assert_eq!(
            found(condition(snomed, "44054007")),
            [(Severity::Error, Rule::Code(snomed.into()), at.clone())],
            "a wrong check digit"
        );
        let icd = terminology::ICD10CM;
        assert!(found(condition(icd, "A00.9")).is_empty());
        assert_eq!(
            found(condition(icd, "A00.5")),
            [(Severity::Error, Rule::Code(icd.into()), at.clone())],
            "ICD-10-CM is held whole: a code it lacks is no code"
        );
        // Systems not known here, and SNOMED CT expressions, are not judged.
        assert!(found(condition("urn:oid:2.16.840.1.113883.6.238", "2106-3")).is_empty());
        let expression = condition(snomed, "71341001:272741003=7771000");
        assert!(found(expression.clone()).is_empty());
        assert_eq!(
            validator().validate(&expression).unchecked,
            [snomed.to_string()]
        );
        // A display that is none of the code's names, and an inactive code: warnings.
        let loinc = terminology::LOINC;
        let observation = json!({"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"code": "ti",
                "system": "http://terminology.hl7.org/CodeSystem/hl7-work-group"}]}],
            "code": {"coding": [{"system": loinc, "code": "8302-2", "display": "Body weight"}]},
            "valueQuantity": {"value": 180, "system": "http://unitsofmeasure.org", "code": "cm"}});
        assert_eq!(
            found(observation),
            [
                (
                    Severity::Warning,
                    Rule::Code("http://terminology.hl7.org/CodeSystem/hl7-work-group".into()),
                    "Observation.category[0].coding[0]".into()
                ),
                (
                    Severity::Warning,
                    Rule::Code(loinc.into()),
                    "Observation.code.coding[0]".into()
                ),
            ]
        );
    }

    #[test]
    fn an_extensible_binding_warns_only_of_a_code_of_its_own_systems_outside_it() {
        let patient = |marital_status: Value| json!({"resourceType": "Patient", "maritalStatus": marital_status});
        let v3 = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus";
        assert!(found(patient(json!({"coding": [{"system": v3, "code": "M"}]}))).is_empty());
        // Text alone, or a code of another system: allowed when no code of the set fits.
        assert!(found(patient(json!({"text": "in a civil union"}))).is_empty());
        let other = json!({"coding": [{"system": terminology::SNOMED, "code": "44054006"}]});
        assert!(found(patient(other)).is_empty());
        // A code of v2-0203, which identifier-type draws from, outside it.
        let identified = json!({"resourceType": "Patient", "identifier": [{"value": "1",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                "code": "SS"}]}}]});
        assert_eq!(
            found(identified),
            [(
                Severity::Warning,
                Rule::Binding("extensible".into()),
                "Patient.identifier[0].type".into()
            )]
        );
    }
}
