//! Contract validation: a resource checked against the R4 StructureDefinitions (cardinality,
//! choice types, fixed and pattern values, invariants), with every finding located by a
//! FHIRPath expression.

pub mod definitions;
pub mod structure;

pub use structure::{Issue, Report, Rule, Severity, validate};
