//! FHIR search: the registry of search parameters and the values they extract from resources.

pub mod extract;
pub mod registry;
