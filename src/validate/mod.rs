//! Contract and content validation: a resource checked against the R4 StructureDefinitions
//! (cardinality, choice types, fixed and pattern values, invariants) and its codes against the
//! terminology, with every finding located by a FHIRPath expression, and sorted by a
//! [`Policy`] into what refuses a write and what is only reported.

mod codes;
pub mod definitions;
pub mod policy;
pub mod structure;

pub use policy::{Action, Judgement, Policy};
pub use structure::{Issue, Report, Rule, Severity, validate};

use crate::fhir::{FhirError, IssueCode};
use crate::terminology::Terminology;
use serde_json::Value;
use std::sync::Arc;

/// Everything a resource is validated with. Cheap to share; every method takes `&self`.
pub struct Validator {
    terminology: Arc<Terminology>,
    policy: Policy,
}

impl Validator {
    pub fn new(terminology: Arc<Terminology>, policy: Policy) -> Validator {
        Validator {
            terminology,
            policy,
        }
    }

    /// The terminology codes are checked against.
    pub fn terminology(&self) -> &Terminology {
        &self.terminology
    }

    /// Every finding about `resource`: its contract against the base definition of its type,
    /// and its codes against the terminology.
    pub fn validate(&self, resource: &Value) -> Report {
        structure::walk(resource, Some(codes::Codes::new(&self.terminology)))
    }

    /// Every finding about `resource`, graded by the policy ([`Policy::grade`]): what
    /// `$validate` reports.
    pub fn grade(&self, resource: &Value) -> Vec<Issue> {
        let resource_type = resource["resourceType"].as_str().unwrap_or("Resource");
        self.policy.grade(resource_type, self.validate(resource))
    }

    /// The policy's judgement of `resource`, as a write would get it.
    pub fn judge(&self, resource: &Value) -> Judgement {
        let resource_type = resource["resourceType"].as_str().unwrap_or("Resource");
        if self.policy.is_off_for(resource_type) {
            return Judgement::default();
        }
        self.policy.judge(resource_type, self.validate(resource))
    }

    /// Checks a resource about to be written: 422 with every finding when the policy rejects
    /// it, otherwise the warnings to report with the write.
    pub fn check_write(&self, resource: &Value) -> Result<Vec<Issue>, FhirError> {
        let judgement = self.judge(resource);
        match judgement.rejections.split_first() {
            None => Ok(judgement.warnings),
            Some((first, others)) => Err(FhirError::new(422, first.code, &first.diagnostics)
                .at(&first.expression)
                .with(
                    others
                        .iter()
                        .chain(&judgement.warnings)
                        .map(Issue::to_outcome_issue),
                )),
        }
    }
}

impl Issue {
    /// This finding as an OperationOutcome `issue`.
    pub fn to_outcome_issue(&self) -> Value {
        crate::fhir::outcome::issue(
            self.severity.as_str(),
            self.code,
            &self.diagnostics,
            Some(&self.expression),
        )
    }
}

/// An OperationOutcome of `issues`, or of one `information` issue saying that there is none.
pub fn outcome_of(issues: &[Issue]) -> Value {
    if issues.is_empty() {
        return crate::fhir::outcome::outcome(
            "information",
            IssueCode::Informational,
            "no issues found",
            None,
        );
    }
    serde_json::json!({"resourceType": "OperationOutcome",
        "issue": issues.iter().map(Issue::to_outcome_issue).collect::<Vec<_>>()})
}
