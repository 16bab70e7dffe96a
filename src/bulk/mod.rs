//! Bulk data in and out of a data directory: the inputs of imports ([`input`]), the line loop
//! that stores NDJSON ([`ndjson`]), and `fhirlake import` ([`import`]).

pub mod import;
pub mod input;
pub mod ndjson;
