//! FHIRPath evaluation over stored JSON: the subset the FHIR R4 search parameters use.
//!
//! Expressions are parsed once ([`parse`]) and evaluated on a resource's JSON ([`evaluate`]),
//! yielding the elements they select. The model is the JSON itself: a choice element
//! (`Observation.value`) matches its typed JSON members (`valueQuantity`), and the type named
//! by the member's suffix is what `is`, `as` and `ofType` test.

pub mod budget;
#[cfg(test)]
mod conformance;
pub mod eval;
mod functions;
#[cfg(test)]
mod hostile;
mod html;
mod operators;
mod parser;

pub use budget::Limits;
pub use eval::{EvalError, Item, evaluate, evaluate_on, evaluate_within};
pub use parser::{Expr, MAX_DEPTH, MAX_LENGTH, ParseError, parse};
