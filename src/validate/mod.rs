//! Contract and content validation: a resource checked against the R4 StructureDefinitions
//! (cardinality, choice types, fixed and pattern values, invariants) and its codes against the
//! terminology, with every finding located by a FHIRPath expression.

mod codes;
pub mod definitions;
pub mod structure;

pub use structure::{Issue, Report, Rule, Severity, validate};

use crate::terminology::Terminology;
use std::sync::Arc;

/// Everything a resource is validated with. Cheap to share; every method takes `&self`.
pub struct Validator {
    terminology: Arc<Terminology>,
}

impl Validator {
    pub fn new(terminology: Arc<Terminology>) -> Validator {
        Validator { terminology }
    }

    /// The terminology codes are checked against.
    pub fn terminology(&self) -> &Terminology {
        &self.terminology
    }

    /// Every finding about `resource`: its contract against the base definition of its type,
    /// and its codes against the terminology.
    pub fn validate(&self, resource: &serde_json::Value) -> Report {
        structure::walk(resource, Some(codes::Codes::new(&self.terminology)))
    }
}
