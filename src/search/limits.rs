//! What one search may ask for: every size and depth a client controls in a search is bounded,
//! so that no search can take unbounded memory or stack. Each limit is a setting of `serve`
//! (`--search-max-*`); past one, the search is refused with 400 `too-costly` whatever its
//! handling (strict or lenient): it is never silently cut to fit, except `:iterate`, whose
//! rounds depend on the data and are cut with a warning.

use crate::fhir::{FhirError, IssueCode};

/// The limits of one search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The most parameters that select resources one search may have, every repetition
    /// counted (`code=a&code=b` is two): the ANDs of a search.
    pub params: usize,
    /// The most comma-separated values of one parameter (its ORs); also the most keys of
    /// `_sort`, words and phrases of one full-text value, words of a `:text` value and
    /// segments of an `:above` URI.
    pub values: usize,
    /// The most links of one chain or nesting of `_has`: `subject.organization.name` has two,
    /// `_has:Encounter:patient:_has:Observation:encounter:code` has two.
    pub depth: usize,
    /// The most nested searches the chains and `_has` of one search may run (a link runs one
    /// per type it may refer to).
    pub joins: usize,
    /// The largest `_offset` (next links page with a cursor, whose cost does not grow with
    /// the page's position).
    pub offset: usize,
    /// The most `_include` and `_revinclude` parameters of one search.
    pub includes: usize,
    /// The most rounds of `_include:iterate` and `_revinclude:iterate`.
    pub iterations: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            params: 100,
            values: 500,
            depth: 4,
            joins: 100,
            offset: 10_000,
            includes: 20,
            iterations: 8,
        }
    }
}

/// The 400 of a search past one of its limits; `what` says which, and how to stay within it.
pub fn too_costly(what: impl Into<String>) -> FhirError {
    FhirError::bad_request(IssueCode::TooCostly, what)
}
