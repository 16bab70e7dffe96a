//! FHIR rules that need no storage and no HTTP framework.

pub mod bundle;
pub mod datetime;
pub mod json;
pub mod nesting;
pub mod outcome;
pub mod parameters;
pub mod reference;
pub mod resource;
pub mod sparse;
pub mod summary;
#[cfg(test)]
pub(crate) mod test_data;
pub mod xml;

pub use outcome::{FhirError, IssueCode, Severity};

/// What a client wants back after a write (`Prefer: return=...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Return {
    Minimal,
    #[default]
    Representation,
    OperationOutcome,
}
