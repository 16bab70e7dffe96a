//! SQL on FHIR v2 views: a ViewDefinition flattens resources into rows of columns with
//! FHIRPath (the project's own engine, `crate::fhirpath`).
//!
//! [`View::parse`] reads and checks a ViewDefinition (`definition`); [`View::rows`] makes the
//! rows of one resource and [`Rows`] those of a sequence of resources, one resource at a time
//! (`rows`); [`output`] writes them as JSON, NDJSON or CSV. The official test suite of the guide runs as `tests/sql_on_fhir.rs`.
//!
//! Uses `fhirpath` and `fhir` only: the HTTP operation `$run` is `api::views`.

mod definition;
pub mod output;
mod rows;

pub use definition::{Column, MAX_ELEMENTS, MAX_NESTING, View};
pub use rows::{MAX_CELLS, MAX_REPEAT_DEPTH, Row, Rows};

use crate::fhir::outcome::{FhirError, IssueCode};
use std::fmt;

/// What kind of fault a [`ViewError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewErrorKind {
    /// The ViewDefinition is not a valid one.
    Definition,
    /// A path could not be evaluated on a resource (a column with more than one value, a
    /// `where` that is not a boolean, an unknown function or variable).
    Evaluation,
    /// Running the view on a resource costs more than its limits allow.
    TooCostly,
}

/// A fault of a view, located by the path of the element that holds it
/// (`select[0].column[1].path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewError {
    pub kind: ViewErrorKind,
    /// The element at fault, as a path from the ViewDefinition.
    pub at: String,
    pub message: String,
}

impl ViewError {
    pub(crate) fn definition(at: &str, message: impl Into<String>) -> ViewError {
        ViewError {
            kind: ViewErrorKind::Definition,
            at: at.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn evaluation(at: &str, message: impl Into<String>) -> ViewError {
        ViewError {
            kind: ViewErrorKind::Evaluation,
            at: at.to_string(),
            message: message.into(),
        }
    }
}

impl ViewError {
    /// The element at fault as a FHIRPath location in the ViewDefinition.
    pub fn location(&self) -> String {
        match self.at.as_str() {
            "" | "ViewDefinition" => "ViewDefinition".into(),
            at => format!("ViewDefinition.{at}"),
        }
    }

    /// The error a client gets: 400, `too-costly` for a view past its limits, else `invalid`
    /// (a definition at fault) or `processing` (a path that fails on a resource), located.
    pub fn to_fhir(&self) -> FhirError {
        let code = match self.kind {
            ViewErrorKind::Definition => IssueCode::Invalid,
            ViewErrorKind::Evaluation => IssueCode::Processing,
            ViewErrorKind::TooCostly => IssueCode::TooCostly,
        };
        FhirError::bad_request(code, self.to_string()).at(self.location())
    }
}

impl From<ViewError> for FhirError {
    fn from(error: ViewError) -> FhirError {
        error.to_fhir()
    }
}

impl fmt::Display for ViewError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location(), self.message)
    }
}

impl std::error::Error for ViewError {}
