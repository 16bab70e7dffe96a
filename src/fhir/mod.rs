//! FHIR rules that need no storage and no HTTP framework.

pub mod bundle;
pub mod datetime;
pub mod outcome;
pub mod resource;

pub use outcome::{FhirError, IssueCode};
