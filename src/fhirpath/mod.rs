//! FHIRPath evaluation over stored JSON: the subset the FHIR R4 search parameters use.
//!
//! Expressions are parsed once ([`parse`]) and evaluated on a resource's JSON ([`evaluate`]),
//! yielding the elements they select. The model is the JSON itself: a choice element
//! (`Observation.value`) matches its typed JSON members (`valueQuantity`), and the type named
//! by the member's suffix is what `is`, `as` and `ofType` test.

#[cfg(test)]
mod conformance;
pub mod eval;
mod functions;
mod operators;
mod parser;

pub use eval::{EvalError, Item, evaluate, evaluate_on};
pub use parser::{Expr, ParseError, parse};
