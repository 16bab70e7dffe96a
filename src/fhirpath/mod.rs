//! FHIRPath evaluation over stored JSON: what the FHIR R4 search parameters and the invariants
//! of the R4 StructureDefinitions use (every one of their 195 distinct invariant expressions
//! parses).
//!
//! Expressions are parsed once ([`parse`]) and evaluated on a resource's JSON ([`evaluate`]),
//! yielding the elements they select; [`evaluate_on`] evaluates on one element with
//! `%resource`. The model is the JSON itself: a choice element (`Observation.value`) matches
//! its typed JSON members (`valueQuantity`), and the type named by the member's suffix is what
//! `is`, `as` and `ofType` test; primitive types are only known that way.
//!
//! Safe on any expression and any input (`hostile` attacks it, with proptest): [`parse`] reads
//! at most [`MAX_LENGTH`] (16 KiB) and [`MAX_DEPTH`] (64) levels of nesting, counted rather
//! than left to the stack, and escapes as the specification lists them (others are errors).
//! Every evaluation runs within [`Limits`] ([`budget`]: depth, ten million steps, strings of
//! 1 MiB), given by the caller through [`evaluate_within`] (`evaluate` and `evaluate_on` use
//! the defaults); past them it is [`EvalError::Exceeded`], never a panic. Regular expressions
//! are the `regex` crate's (linear time), at most 4 KiB, compiled within size and nesting
//! limits.
//!
//! The official FHIRPath test suite runs as a unit test (`conformance`): 450 of the 807 tests
//! it can run pass, a floor that must not fall; the rest need typed date/time and quantity
//! literals, the model's primitive types and math functions.
//!
//! Written rather than taken from a crate: octofhir-fhirpath and helios-fhirpath were measured
//! against it on every R4 expression over real data (BENCHMARKS.md) and were 29x and 220x
//! slower, with wrong or failing results on parameters search needs.

mod boundary;
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
pub use eval::{
    Environment, EvalError, Item, evaluate, evaluate_in, evaluate_on, evaluate_within,
    has_value_or_children,
};
pub use parser::{Expr, MAX_DEPTH, MAX_LENGTH, ParseError, parse};
