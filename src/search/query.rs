//! From FHIR search parameters to a tantivy query, per the FHIR search page: AND across
//! repeated parameters, OR across comma-separated values, modifiers and prefixes.
//!
//! What a parameter that cannot be applied does depends on why (see [`Refusal`]): an unknown
//! or unsupported parameter is ignored and reported (or 400 under `handling=strict`); a known
//! parameter with a malformed value, or a search past its [`Limits`], is a 400 in either
//! handling. An empty value (`gender=`) is ignored, as are the empty values of an OR list
//! (`gender=male,` is `gender=male`).
//!
//! A search of several types takes only the parameters every one of them has, and a search of
//! all types only the common ones (`_id`, `_tag`, ...): one definition (`shared`) serves both
//! the filters and `_sort`. `url=...|version` also matches the resource's `version` (a
//! canonical reference with a version is indexed with its bare URL too, see `terms`).

use super::compartment;
use super::extract::precise;
use super::fulltext::{self, Source};
use super::index::{Fields, LAST_UPDATED, PAIRS_FIELD};
use super::limits::{Limits, too_costly};
use super::registry::{ParamType, Registry, SearchParam};
use super::sort::SortKey;
use super::terms::{self, encode_f64, encode_i64, fold, kind, words};
use super::units::Canonical;
use super::view::View;
use crate::fhir::datetime::{Micros, Period, now, parse_period};
use crate::fhir::reference::{self, Base};
use crate::fhir::{FhirError, IssueCode};
use std::cell::Cell;
use std::ops::Bound;
use tantivy::collector::DocSetCollector;
use tantivy::columnar::BytesColumn;
use tantivy::query::doc_predicate_query::{
    DocPredicateQuery, FunctionPredicate, SegmentDocPredicate,
};
use tantivy::query::{
    AllQuery, BooleanQuery, EmptyQuery, Occur, Query, RangeQuery, RegexQuery, TermQuery,
};
use tantivy::schema::IndexRecordOption;
use tantivy::{DocAddress, DocId, Searcher, SegmentReader, Term};

mod any_term;
mod chain;
mod near;

use any_term::AnyTermQuery;

/// The parameters that steer a search rather than select resources.
pub const CONTROL: &[&str] = &[
    "_count",
    "_offset",
    "_cursor",
    "_snapshot",
    "_sort",
    "_total",
    "_summary",
    "_elements",
    "_format",
    "_pretty",
    "_type",
    "_include",
    "_revinclude",
];

/// A planned search.
pub struct Plan {
    pub query: Box<dyn Query>,
    /// Parameters that were not understood or are not supported.
    pub ignored: Vec<Ignored>,
    /// The `_sort` keys; empty for the default order (lastUpdated, oldest first).
    pub sort: Vec<SortKey>,
}

/// A parameter a lenient search ignored, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Ignored {
    pub name: String,
    pub value: String,
    pub reason: String,
}

/// Why a parameter is not applied.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The parameter, its modifier or what it asks is unknown or not supported: ignored and
    /// reported, or 400 under strict handling.
    Unsupported(String),
    /// A known parameter with a malformed value: 400 in either handling.
    Invalid(String),
    /// The search fails with this error (a limit passed, a nested search's error).
    Fails(FhirError),
}

impl From<String> for Refusal {
    fn from(reason: String) -> Refusal {
        Refusal::Unsupported(reason)
    }
}

impl From<&str> for Refusal {
    fn from(reason: &str) -> Refusal {
        Refusal::Unsupported(reason.to_string())
    }
}

/// A malformed value.
fn invalid(reason: impl Into<String>) -> Refusal {
    Refusal::Invalid(reason.into())
}

/// What a search is planned against: the definitions, the index's fields, the snapshot the
/// search runs on, the view it is confined to and its limits. Chains and `_has` run their
/// nested searches on that same snapshot and within that same view, so a search sees one
/// state of the index throughout, and nothing outside its view decides what it finds.
#[derive(Clone, Copy)]
pub struct Planner<'a> {
    pub registry: &'a Registry,
    pub fields: Fields,
    pub searcher: &'a Searcher,
    pub view: &'a View,
    pub limits: &'a Limits,
}

/// The resources a search looks at.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// The types searched; empty for all.
    pub resource_types: Vec<String>,
    /// A compartment, `(compartment type, id)`: only its members are searched.
    pub compartment: Option<(String, String)>,
    /// Only resources with care in this period `[start, end)` (microseconds), or without a
    /// date of care (see [`care_dates`]): `$everything`'s `start` and `end`.
    pub care: Option<Period>,
}

impl Target {
    /// All resources of one type.
    pub fn of_type(resource_type: &str) -> Target {
        Target {
            resource_types: vec![resource_type.to_string()],
            ..Target::default()
        }
    }

    /// The types whose documents a search of this target with `params`, within `view`, reads:
    /// the target's, when it names them and reads no other document: no chain, `_has`,
    /// `_list`, `_include` or `_revinclude` in its parameters or its view's (a compartment's
    /// members are found by their own references). `None` when it may read any type's. The
    /// answer of a search depends only on the changes to these types.
    pub fn reads(&self, params: &[(String, String)], view: &View) -> Option<&[String]> {
        let own = |params: &[(String, String)]| {
            params.iter().all(|(name, _)| {
                let code = name.split(':').next().unwrap_or(name);
                !name.contains('.')
                    && !matches!(code, "_has" | "_list" | "_include" | "_revinclude")
            })
        };
        let view_own = match view {
            View::All => true,
            View::Only(parts) => parts.iter().all(|part| own(&part.params)),
        };
        let named = !self.resource_types.is_empty() && self.care.is_none();
        (named && own(params) && view_own).then_some(self.resource_types.as_slice())
    }
}

impl Planner<'_> {
    /// Plans a search of `target` with `params`. Under `strict` handling an unknown or
    /// unsupported parameter is a 400; otherwise it is ignored and reported.
    pub fn plan(
        &self,
        target: &Target,
        params: &[(String, String)],
        strict: bool,
    ) -> Result<Plan, FhirError> {
        // The parameters that select resources: the ANDs (the others are bounded apart, or
        // cost nothing, and links add paging parameters).
        let selecting = params
            .iter()
            .filter(|(name, _)| !CONTROL.contains(&name.split(':').next().unwrap_or(name)))
            .count();
        if selecting > self.limits.params {
            return Err(too_costly(format!(
                "a search has at most {} parameters that select resources (--search-max-params)",
                self.limits.params
            )));
        }
        let joins = Cell::new(self.limits.joins);
        let planning = Planning {
            planner: *self,
            depth: 0,
            joins: &joins,
        };
        planning.plan(target, params, strict)
    }
}

/// One planning of a search: the planner, how deep in chains and `_has` it is, and how many
/// nested searches the search may still run.
#[derive(Clone, Copy)]
struct Planning<'a> {
    planner: Planner<'a>,
    depth: usize,
    joins: &'a Cell<usize>,
}

impl Planning<'_> {
    fn plan(
        &self,
        target: &Target,
        params: &[(String, String)],
        strict: bool,
    ) -> Result<Plan, FhirError> {
        let planner = &self.planner;
        let resource_types = target.resource_types.as_slice();
        let fields = planner.fields;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        clauses.push((Occur::Must, type_filter(fields, resource_types)));
        if let Some((compartment, id)) = &target.compartment {
            let members = compartment_query(fields, compartment, id, resource_types)
                .map_err(|reason| FhirError::bad_request(IssueCode::NotSupported, reason))?;
            clauses.push((Occur::Must, members));
        }
        if let Some(care) = target.care {
            clauses.push((
                Occur::Must,
                care_query(planner.registry, fields, target, care),
            ));
        }
        if let Some(within) = planner.view_query(resource_types)? {
            clauses.push((Occur::Must, within));
        }
        let mut ignored = Vec::new();
        let mut sort = Vec::new();
        let mut refuse = |name: &str, value: &str, reason: String| {
            if strict {
                return Err(FhirError::bad_request(
                    IssueCode::NotSupported,
                    format!("{name}={value}: {reason}"),
                ));
            }
            ignored.push(Ignored {
                name: name.to_string(),
                value: value.to_string(),
                reason,
            });
            Ok(())
        };
        for (name, value) in params {
            let Some(value) = or_values(value, planner.limits)? else {
                continue; // An empty value: ignored.
            };
            if name == "_sort" {
                match sort_keys(planner.registry, resource_types, &value) {
                    Ok(keys) => sort = keys,
                    Err(reason) => refuse(name, &value, reason)?,
                }
                continue;
            }
            if CONTROL.contains(&name.split(':').next().unwrap_or(name)) {
                continue;
            }
            match self.param(resource_types, name, &value) {
                Ok(query) => clauses.push(query),
                Err(Refusal::Unsupported(reason)) => refuse(name, &value, reason)?,
                Err(Refusal::Invalid(reason)) => {
                    return Err(FhirError::bad_request(
                        IssueCode::Invalid,
                        format!("{name}={value}: {reason}"),
                    ));
                }
                Err(Refusal::Fails(error)) => return Err(error),
            }
        }
        Ok(Plan {
            query: Box::new(BooleanQuery::new(clauses)),
            ignored,
            sort,
        })
    }

    /// The clause of one parameter `name=value`: a reverse chain (`_has:...`), a chain
    /// (`subject:Patient.name`), `_list`, or a parameter with an optional modifier.
    fn param(
        &self,
        resource_types: &[String],
        name: &str,
        value: &str,
    ) -> Result<(Occur, Box<dyn Query>), Refusal> {
        if let Some(rest) = name.strip_prefix("_has:") {
            return self.reverse_chain(resource_types, rest, value);
        }
        if let Some((head, rest)) = name.split_once('.') {
            return self.chain(resource_types, head, rest, value);
        }
        let (code, modifier) = match name.split_once(':') {
            Some((code, modifier)) => (code, Some(modifier)),
            None => (name, None),
        };
        if code == "_list" && modifier.is_none() {
            return self.list(resource_types, value);
        }
        let registry = self.planner.registry;
        let param = shared(registry, resource_types, code)?;
        let scope = Scope {
            fields: self.planner.fields,
            code: &param.code,
            prefix: "",
            parts: self.planner.limits.values,
        };
        if param.code == LAST_UPDATED {
            last_updated_query(scope.fields, modifier, value)
        } else if let Some(source) = Source::of(&param.code) {
            fulltext_query(scope, source, modifier, value)
        } else {
            param_query(registry, scope, param, modifier, value)
        }
    }

    /// Every match of `params` on `resource_type` in this snapshot: the nested search of a
    /// chain, `_has` or `_list`, one level deeper, always strict (a nested parameter that is
    /// not understood fails the parameter it is part of).
    fn nested(
        &self,
        resource_type: &str,
        params: &[(String, String)],
    ) -> Result<Vec<DocAddress>, Refusal> {
        let limits = self.planner.limits;
        if self.depth >= limits.depth {
            return Err(Refusal::Fails(too_costly(format!(
                "chains and _has go at most {} links deep (--search-max-depth)",
                limits.depth
            ))));
        }
        let Some(left) = self.joins.get().checked_sub(1) else {
            return Err(Refusal::Fails(too_costly(format!(
                "the chains and _has of a search run at most {} nested searches \
                 (--search-max-joins); name the target types (subject:Patient.name)",
                limits.joins
            ))));
        };
        self.joins.set(left);
        let deeper = Planning {
            depth: self.depth + 1,
            ..*self
        };
        let plan = deeper
            .plan(&Target::of_type(resource_type), params, true)
            .map_err(|e| {
                if e.status == 400 && e.code == IssueCode::NotSupported {
                    Refusal::Unsupported(e.diagnostics)
                } else {
                    Refusal::Fails(e)
                }
            })?;
        let found = self
            .planner
            .searcher
            .search(&plan.query, &DocSetCollector)
            .map_err(|e| Refusal::Fails(FhirError::internal(format!("search failed: {e}"))))?;
        Ok(found.into_iter().collect())
    }
}

/// `value` without its empty OR values (`male,` is `male`), as written (escapes kept); None
/// when nothing is left. More values than the limit is a 400.
fn or_values(value: &str, limits: &Limits) -> Result<Option<String>, FhirError> {
    let values: Vec<&str> = split_raw(value, ',')
        .into_iter()
        .filter(|v| !v.is_empty())
        .collect();
    if values.len() > limits.values {
        return Err(too_costly(format!(
            "a parameter has at most {} values (--search-max-values)",
            limits.values
        )));
    }
    Ok((!values.is_empty()).then(|| values.join(",")))
}

/// Splits `value` on `separator` where it is not escaped with `\`, keeping the escapes.
fn split_raw(value: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut chars = value.char_indices();
    while let Some((at, c)) = chars.next() {
        if c == '\\' {
            chars.next();
        } else if c == separator {
            parts.push(&value[start..at]);
            start = at + c.len_utf8();
        }
    }
    parts.push(&value[start..]);
    parts
}

/// The keys of `_sort=a,-b`: each a parameter of every type searched, `-` for descending.
fn sort_keys(
    registry: &Registry,
    resource_types: &[String],
    value: &str,
) -> Result<Vec<SortKey>, String> {
    let mut keys = Vec::new();
    for item in value.split(',').filter(|i| !i.is_empty()) {
        let (code, descending) = match item.strip_prefix('-') {
            Some(code) => (code, true),
            None => (item, false),
        };
        let param = shared(registry, resource_types, code)?;
        if Source::of(code).is_some() {
            return Err(format!("cannot sort by full-text parameter '{code}'"));
        }
        if matches!(param.kind, ParamType::Composite | ParamType::Special) {
            return Err(format!(
                "cannot sort by {} parameter '{code}'",
                param.kind.as_str()
            ));
        }
        keys.push(SortKey {
            code: code.to_string(),
            descending,
        });
    }
    Ok(keys)
}

/// The definition of `code` for a search of `resource_types`: a parameter of every type
/// searched, or a common parameter (`_id`, `_tag`...) when all types are.
fn shared<'r>(
    registry: &'r Registry,
    resource_types: &[String],
    code: &str,
) -> Result<&'r SearchParam, String> {
    let unknown = || format!("unknown search parameter '{code}'");
    match resource_types {
        // Every type has the common parameters; Patient stands for them.
        [] => registry
            .get("Patient", code)
            .filter(|p| p.code.starts_with('_'))
            .ok_or_else(unknown),
        [first, rest @ ..] => {
            let param = registry.get(first, code).ok_or_else(unknown)?;
            if rest.iter().any(|t| registry.get(t, code).is_none()) {
                return Err(format!(
                    "'{code}' is not a parameter of every type searched"
                ));
            }
            Ok(param)
        }
    }
}

fn type_filter(fields: Fields, resource_types: &[String]) -> Box<dyn Query> {
    if resource_types.is_empty() {
        return Box::new(AllQuery);
    }
    let terms: Vec<Box<dyn Query>> = resource_types
        .iter()
        .map(|t| term_query(Term::from_field_text(fields.resource_type, t)))
        .collect();
    Box::new(BooleanQuery::union(terms))
}

/// The members of the compartment `compartment/id` among `resource_types` (all its member
/// types when empty): the resources whose membership parameters refer to it, and the focal
/// resource itself. A type named that can never be a member is an error.
fn compartment_query(
    fields: Fields,
    compartment: &str,
    id: &str,
    resource_types: &[String],
) -> Result<Box<dyn Query>, String> {
    if !compartment::is_compartment(compartment) {
        return Err(format!("{compartment} is not a compartment"));
    }
    let focal = format!("{compartment}/{id}");
    let types = if resource_types.is_empty() {
        compartment::member_types(compartment)
    } else {
        resource_types.to_vec()
    };
    let mut members: Vec<Box<dyn Query>> = Vec::new();
    for resource_type in &types {
        let mut ways: Vec<Box<dyn Query>> = compartment::params(compartment, resource_type)
            .iter()
            .map(|code| references_query(fields, code, [focal.as_str()]))
            .collect();
        if resource_type == compartment {
            ways.push(term_query(Term::from_field_text(fields.key, &focal)));
        }
        if ways.is_empty() {
            return Err(format!(
                "{resource_type} resources are not in {compartment} compartments"
            ));
        }
        members.push(Box::new(BooleanQuery::intersection(vec![
            type_filter(fields, std::slice::from_ref(resource_type)),
            Box::new(BooleanQuery::union(ways)),
        ])));
    }
    Ok(Box::new(BooleanQuery::union(members)))
}

/// The date parameters that say when a resource's care happened: every date parameter of its
/// type but those about the record (`_lastUpdated`, `issued`, `recorded`...), about a person
/// (`birthdate`, `death-date`) or about something other than the care (`value-date`,
/// `reaction-date`...).
fn care_dates<'r>(registry: &'r Registry, resource_type: &str) -> Vec<&'r str> {
    const NOT_CARE: &[&str] = &[
        LAST_UPDATED,
        "birthdate",
        "death-date",
        "entered-date",
        "issued",
        "last-date",
        "payment-date",
        "reaction-date",
        "recorded",
        "recorded-date",
        "value-date",
    ];
    registry
        .params(resource_type)
        .filter(|p| p.kind == ParamType::Date && p.expression.is_some())
        .map(|p| p.code.as_str())
        .filter(|code| !NOT_CARE.contains(code))
        .collect()
}

/// The resources of the target's types (or of its compartment's member types) with care in
/// `period`: a value of one of their type's [`care_dates`] overlaps it. A resource without
/// any such value (a Patient, a Medication, an Observation without an effective date) is kept:
/// nothing says its care lies outside.
fn care_query(
    registry: &Registry,
    fields: Fields,
    target: &Target,
    period: Period,
) -> Box<dyn Query> {
    let types = match (&target.resource_types[..], &target.compartment) {
        ([], Some((compartment, _))) => compartment::member_types(compartment),
        (types, _) => types.to_vec(),
    };
    let mut kept: Vec<Box<dyn Query>> = Vec::new();
    let mut undated = Vec::new();
    for resource_type in &types {
        let codes = care_dates(registry, resource_type);
        if codes.is_empty() {
            undated.push(resource_type.clone());
            continue;
        }
        let scope = |code| Scope {
            fields,
            code,
            prefix: "",
            parts: 0,
        };
        let mut ways: Vec<Box<dyn Query>> = codes
            .iter()
            .map(|code| overlap_query(scope(code), period))
            .collect();
        let mut none: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, Box::new(AllQuery))];
        none.extend(
            codes
                .iter()
                .map(|code| (Occur::MustNot, scope(code).term(kind::EXISTS, ""))),
        );
        ways.push(Box::new(BooleanQuery::new(none)));
        kept.push(Box::new(BooleanQuery::intersection(vec![
            type_filter(fields, std::slice::from_ref(resource_type)),
            Box::new(BooleanQuery::union(ways)),
        ])));
    }
    if types.is_empty() {
        return Box::new(AllQuery); // Every type: nothing to tell them apart by.
    }
    if !undated.is_empty() {
        kept.push(type_filter(fields, &undated));
    }
    Box::new(BooleanQuery::union(kept))
}

/// Resources whose reference parameter `code` refers to one of `locals` (`Type/id`).
fn references_query<'l>(
    fields: Fields,
    code: &str,
    locals: impl IntoIterator<Item = &'l str>,
) -> Box<dyn Query> {
    let terms = locals.into_iter().map(|local| {
        Term::from_field_text(fields.terms, &terms::term(code, kind::REFERENCE, local))
    });
    any_term(terms.collect())
}

/// Documents with any of `terms`, all of one field: a term query for one, an
/// [`AnyTermQuery`] for more.
fn any_term(mut terms: Vec<Term>) -> Box<dyn Query> {
    match terms.len() {
        0 => Box::new(EmptyQuery),
        1 => term_query(terms.pop().expect("one term")),
        _ => Box::new(AnyTermQuery::new(terms)),
    }
}

fn term_query(term: Term) -> Box<dyn Query> {
    Box::new(TermQuery::new(term, IndexRecordOption::Basic))
}

/// Where a value's terms live: the parameter's own terms, or (for a composite's last
/// component) the composite's terms after the prefix of its leading components.
#[derive(Clone, Copy)]
struct Scope<'a> {
    fields: Fields,
    /// The code the terms are indexed under.
    code: &'a str,
    /// What precedes every value in the terms.
    prefix: &'a str,
    /// The most parts one value may have (words of `:text`, segments of `:above`): the
    /// search's [`Limits::values`].
    parts: usize,
}

impl Scope<'_> {
    /// The term text of `value` of `kind`.
    fn text(&self, kind: char, value: &str) -> String {
        terms::term(self.code, kind, &format!("{}{value}", self.prefix))
    }

    fn term(&self, kind: char, value: &str) -> Box<dyn Query> {
        term_query(Term::from_field_text(
            self.fields.terms,
            &self.text(kind, value),
        ))
    }

    /// Terms of `kind` that start with `start`.
    fn starting_with(&self, kind: char, start: &str) -> Box<dyn Query> {
        let lower = self.text(kind, start);
        let upper = format!("{lower}\u{10ffff}");
        Box::new(RangeQuery::new(
            Bound::Included(Term::from_field_text(self.fields.terms, &lower)),
            Bound::Excluded(Term::from_field_text(self.fields.terms, &upper)),
        ))
    }

    /// The values of `kind` under `key` (a unit key, or nothing) between two bounds, each an
    /// encoded value.
    fn span(&self, kind: char, key: &str, lower: Bound<String>, upper: Bound<String>) -> Span {
        Span {
            field: self.fields.terms,
            scope: self.text(kind, key),
            lower,
            upper,
        }
    }
}

/// The length of an encoded value (see `terms::encode_i64`).
const ENCODED: usize = 16;

/// A range of values: terms of `scope` followed by an encoded value between two bounds.
#[derive(Clone)]
struct Span {
    field: tantivy::schema::Field,
    /// The text before the encoded value.
    scope: String,
    lower: Bound<String>,
    upper: Bound<String>,
}

impl Span {
    fn query(&self) -> Box<dyn Query> {
        let term = |v: &str| Term::from_field_text(self.field, &format!("{}{v}", self.scope));
        let lower = match &self.lower {
            Bound::Included(v) => Bound::Included(term(v)),
            Bound::Excluded(v) => Bound::Excluded(term(v)),
            Bound::Unbounded => Bound::Included(term("")),
        };
        let upper = match &self.upper {
            Bound::Included(v) => Bound::Included(term(v)),
            Bound::Excluded(v) => Bound::Excluded(term(v)),
            Bound::Unbounded => Bound::Included(term("g")), // past every hex digit
        };
        Box::new(RangeQuery::new(lower, upper))
    }

    /// Whether a term in scope holds a value between the bounds.
    fn contains(&self, term: &[u8]) -> bool {
        let value = &term[term.len().saturating_sub(ENCODED)..];
        let above = match &self.lower {
            Bound::Included(l) => value >= l.as_bytes(),
            Bound::Excluded(l) => value > l.as_bytes(),
            Bound::Unbounded => true,
        };
        let below = match &self.upper {
            Bound::Included(u) => value <= u.as_bytes(),
            Bound::Excluded(u) => value < u.as_bytes(),
            Bound::Unbounded => true,
        };
        above && below
    }

    /// Whether `term` is a value of this span's kind and key (and not of a longer key).
    fn in_scope(&self, term: &[u8]) -> bool {
        term.len() == self.scope.len() + ENCODED && term.starts_with(self.scope.as_bytes())
    }
}

/// Resources with a value whose low term lies in `low` and whose high term lies in `high`.
///
/// The two range queries alone would also match a resource whose one value satisfies `low`
/// and another `high`; for resources with several values in scope the index keeps each
/// value's pair of terms (see `terms::Entries`), and a predicate checks that one pair
/// satisfies both.
fn both(low: Span, high: Span) -> Box<dyn Query> {
    let ranges = vec![low.query(), high.query()];
    let predicate = FunctionPredicate::from(move |segment: &SegmentReader| {
        Ok(PairCheck {
            pairs: Pairs::open(segment)?,
            low: low.clone(),
            high: high.clone(),
        })
    });
    let mut clauses = ranges;
    clauses.push(Box::new(DocPredicateQuery::from(predicate)));
    Box::new(BooleanQuery::intersection(clauses))
}

/// A segment's column of value pairs (see `terms::Entries`), read one document at a time.
struct Pairs {
    column: Option<BytesColumn>,
    buffer: Vec<u8>,
}

impl Pairs {
    fn open(segment: &SegmentReader) -> tantivy::Result<Pairs> {
        Ok(Pairs {
            column: segment.fast_fields().bytes(PAIRS_FIELD)?,
            buffer: Vec::new(),
        })
    }

    /// Calls `visit` with each `(low, high)` pair of `doc` until it returns true; whether one
    /// did.
    fn any(&mut self, doc: DocId, mut visit: impl FnMut(&[u8], &[u8]) -> bool) -> bool {
        let Some(column) = &self.column else {
            return false;
        };
        for ord in column.term_ords(doc) {
            self.buffer.clear();
            if column.ord_to_bytes(ord, &mut self.buffer).unwrap_or(false)
                && let Some((low, high)) = terms::unpair(&self.buffer)
                && visit(low, high)
            {
                return true;
            }
        }
        false
    }
}

/// The check of [`both`] in one segment.
struct PairCheck {
    pairs: Pairs,
    low: Span,
    high: Span,
}

impl SegmentDocPredicate for PairCheck {
    /// True when the document has no pair in the spans' scope (a single value: its terms
    /// matched), or has one whose low and high both lie in the spans.
    fn eval(&mut self, doc: DocId) -> bool {
        let mut in_scope = false;
        let (low, high) = (&self.low, &self.high);
        let matched = self.pairs.any(doc, |l, h| {
            in_scope |= low.in_scope(l);
            low.in_scope(l) && low.contains(l) && high.contains(h)
        });
        matched || !in_scope
    }
}

/// The clause of one parameter occurrence: the OR of its comma-separated values.
fn param_query(
    registry: &Registry,
    scope: Scope<'_>,
    param: &SearchParam,
    modifier: Option<&str>,
    value: &str,
) -> Result<(Occur, Box<dyn Query>), Refusal> {
    if modifier == Some("missing") {
        let exists = scope.term(kind::EXISTS, "");
        return match value {
            "true" => Ok((Occur::MustNot, exists)),
            "false" => Ok((Occur::Must, exists)),
            _ => Err(invalid("':missing' takes true or false")),
        };
    }
    let mut alternatives = Vec::new();
    for value in split_unescaped(value, ',') {
        alternatives.push(if param.kind == ParamType::Composite {
            composite_query(registry, scope, param, modifier, &value)?
        } else {
            value_query(&registry.base, scope, param.kind, modifier, &value)?
        });
    }
    let any: Box<dyn Query> = Box::new(BooleanQuery::union(alternatives));
    if modifier == Some("not") {
        // `:not` matches resources without any of the codes, also those without a value.
        return Ok((Occur::MustNot, any));
    }
    Ok((Occur::Must, any))
}

/// `_lastUpdated`, on the index's own lastUpdated field rather than on terms: every resource
/// has one, an instant to the microsecond (the period `[t, t + 1 µs)`), so each prefix is one
/// range of that field.
fn last_updated_query(
    fields: Fields,
    modifier: Option<&str>,
    value: &str,
) -> Result<(Occur, Box<dyn Query>), Refusal> {
    if modifier.is_some() {
        return Err("_lastUpdated takes no modifier".into());
    }
    let range = |lower: Bound<Micros>, upper: Bound<Micros>| -> Box<dyn Query> {
        let term = |t: Micros| Term::from_field_i64(fields.last_updated, t);
        Box::new(RangeQuery::new(lower.map(term), upper.map(term)))
    };
    let mut alternatives = Vec::new();
    for value in split_unescaped(value, ',') {
        let (prefix, text) = split_prefix(&value);
        let Period { start, end } = parse_period(text).map_err(invalid)?;
        alternatives.push(match prefix {
            "ne" => Box::new(BooleanQuery::union(vec![
                range(Bound::Unbounded, Bound::Excluded(start)),
                range(Bound::Included(end), Bound::Unbounded),
            ])),
            "gt" | "sa" => range(Bound::Included(end), Bound::Unbounded),
            "lt" | "eb" => range(Bound::Unbounded, Bound::Excluded(start)),
            "ge" => range(Bound::Included(start), Bound::Unbounded),
            "le" => range(Bound::Unbounded, Bound::Excluded(end)),
            "ap" => {
                let margin = date_margin(start, end);
                range(
                    Bound::Included(start - margin),
                    Bound::Excluded(end + margin),
                )
            }
            _ => range(Bound::Included(start), Bound::Excluded(end)),
        });
    }
    Ok((Occur::Must, Box::new(BooleanQuery::union(alternatives))))
}

/// `_text` or `_content`: the OR of its comma-separated values, each a full-text query (see
/// `fulltext`).
fn fulltext_query(
    scope: Scope<'_>,
    source: Source,
    modifier: Option<&str>,
    value: &str,
) -> Result<(Occur, Box<dyn Query>), Refusal> {
    if let Some(modifier) = modifier {
        return Err(format!(
            "the modifier ':{modifier}' is not supported on a full-text parameter"
        )
        .into());
    }
    let field = scope.fields.text(source);
    let alternatives = split_unescaped(value, ',')
        .iter()
        .map(|value| {
            // At least as many as the words the analyzer makes of it.
            let words = value
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .count();
            if words > scope.parts {
                return Err(Refusal::Fails(too_costly(format!(
                    "a full-text value has at most {} words (--search-max-values)",
                    scope.parts
                ))));
            }
            fulltext::query(field, value).map_err(invalid)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((Occur::Must, Box::new(BooleanQuery::union(alternatives))))
}

/// A composite value: `a$b`, its leading components matched exactly and its last one as the
/// component's parameter type says, all on one element of the resource.
fn composite_query(
    registry: &Registry,
    scope: Scope<'_>,
    param: &SearchParam,
    modifier: Option<&str>,
    value: &str,
) -> Result<Box<dyn Query>, Refusal> {
    if modifier.is_some() {
        return Err("composite parameters take no modifier".into());
    }
    let parts = split_unescaped(value, '$');
    if parts.len() != param.components.len() {
        return Err(invalid(format!(
            "'{value}' needs {} parts separated by '$'",
            param.components.len()
        )));
    }
    let kinds = registry
        .composite_kinds(param)
        .ok_or("the components of this composite cannot be searched")?;
    let (last_kind, leading_kinds) = kinds.split_last().expect("components");
    let mut prefix = String::new();
    for (part, kind) in parts.iter().zip(leading_kinds) {
        prefix.push_str(&prefix_form(*kind, part).map_err(invalid)?);
        prefix.push(terms::COMPOSITE_SEPARATOR);
    }
    let last = parts.last().expect("parts");
    value_query(
        &registry.base,
        Scope {
            prefix: &prefix,
            ..scope
        },
        *last_kind,
        None,
        last,
    )
}

/// The exact form of a composite's leading component (see `terms::prefix_forms`): a token,
/// reference, uri or (otherwise) string.
fn prefix_form(kind: ParamType, value: &str) -> Result<String, String> {
    Ok(match kind {
        ParamType::Token => {
            let parts = split_unescaped(value, '|');
            match parts.as_slice() {
                [code] => format!("{}{code}", kind::CODE),
                [system, code] if system.is_empty() => {
                    format!("{}{code}", kind::CODE_WITHOUT_SYSTEM)
                }
                [system, code] if !code.is_empty() => {
                    format!("{}{system}|{code}", kind::SYSTEM_CODE)
                }
                _ => return Err("a composite's token is code, system|code or |code".into()),
            }
        }
        ParamType::Reference => format!("{}{}", kind::REFERENCE, unescape(value)),
        ParamType::Uri => format!("{}{}", kind::URI, unescape(value)),
        _ => format!("{}{}", kind::FOLDED, fold(&unescape(value))),
    })
}

/// The query of one value; a reference value is read with `base` (which references are this
/// server's), as the indexed ones are.
fn value_query(
    base: &Base,
    scope: Scope<'_>,
    param_kind: ParamType,
    modifier: Option<&str>,
    value: &str,
) -> Result<Box<dyn Query>, Refusal> {
    let t = |kind: char, v: &str| scope.term(kind, v);
    let unsupported = || {
        Err(Refusal::Unsupported(format!(
            "the modifier ':{}' is not supported on a {} parameter",
            modifier.unwrap_or(""),
            param_kind.as_str()
        )))
    };
    let at_most = |parts: usize, what: &str| {
        if parts > scope.parts {
            Err(Refusal::Fails(too_costly(format!(
                "a value has at most {} {what} (--search-max-values)",
                scope.parts
            ))))
        } else {
            Ok(())
        }
    };
    match param_kind {
        ParamType::Token => {
            match modifier {
                None | Some("not") => {}
                Some("text") => {
                    let words = words(value);
                    at_most(words.len(), "words")?;
                    let words: Vec<Box<dyn Query>> =
                        words.iter().map(|w| t(kind::TEXT_WORD, w)).collect();
                    if words.is_empty() {
                        return Err(invalid("':text' needs words"));
                    }
                    return Ok(Box::new(BooleanQuery::intersection(words)));
                }
                Some("of-type") => {
                    let parts = split_unescaped(value, '|');
                    let [system, type_code, id] = parts.as_slice() else {
                        return Err(invalid("':of-type' takes system|code|value"));
                    };
                    return Ok(t(kind::OF_TYPE, &format!("{system}|{type_code}|{id}")));
                }
                _ => return unsupported(),
            }
            let parts = split_unescaped(value, '|');
            Ok(match parts.as_slice() {
                [code] => Box::new(BooleanQuery::union(vec![
                    t(kind::CODE, code),
                    t(kind::CODE_WITHOUT_SYSTEM, code),
                ])),
                [system, code] if system.is_empty() => t(kind::CODE_WITHOUT_SYSTEM, code),
                [system, code] if code.is_empty() => t(kind::SYSTEM, system),
                [system, code] => t(kind::SYSTEM_CODE, &format!("{system}|{code}")),
                _ => return Err(invalid("a token is code, system|code, |code or system|")),
            })
        }
        ParamType::String => {
            let value = unescape(value);
            match modifier {
                None => Ok(scope.starting_with(kind::FOLDED, &fold(&value))),
                Some("exact") => Ok(t(kind::EXACT, &value)),
                Some("contains") => {
                    let pattern = format!(
                        "{}.*{}.*",
                        regex_escape(&scope.text(kind::FOLDED, "")),
                        regex_escape(&fold(&value))
                    );
                    RegexQuery::from_pattern(&pattern, scope.fields.terms)
                        .map(|q| Box::new(q) as Box<dyn Query>)
                        .map_err(|e| invalid(e.to_string()))
                }
                _ => unsupported(),
            }
        }
        ParamType::Reference => {
            let value = unescape(value);
            match modifier {
                Some("identifier") => Ok(match value.split_once('|') {
                    Some((system, id)) => t(kind::IDENTIFIER, &format!("{system}|{id}")),
                    None => t(kind::IDENTIFIER_VALUE, &value),
                }),
                // An id, or this server's reference of that type; another server's matches
                // nothing of this type.
                Some(target) if fhirlake_model::is_resource_type(target) => {
                    if !value.contains('/') {
                        return Ok(t(kind::REFERENCE, &format!("{target}/{value}")));
                    }
                    Ok(match base.local(&value) {
                        Some(local) if reference::resource_type(local) == Some(target) => {
                            t(kind::REFERENCE, local)
                        }
                        _ => Box::new(EmptyQuery),
                    })
                }
                // A reference as written (another server's is indexed as written), and this
                // server's by its `Type/id`, whatever its form.
                None => Ok(if value.contains('/') {
                    let mut options = vec![t(kind::REFERENCE, &value)];
                    if let Some(local) = base.local(&value)
                        && local != value
                    {
                        options.push(t(kind::REFERENCE, local));
                    }
                    Box::new(BooleanQuery::union(options))
                } else {
                    t(kind::REFERENCE_ID, &value)
                }),
                _ => unsupported(),
            }
        }
        ParamType::Uri => {
            if modifier.is_none()
                && scope.code == "url"
                && let [url, version] = split_unescaped(value, '|').as_slice()
            {
                // A canonical URL with its version: the resource's `version` too.
                let versions = Scope {
                    code: "version",
                    ..scope
                };
                let version: Box<dyn Query> = Box::new(BooleanQuery::union(vec![
                    versions.term(kind::CODE, version),
                    versions.term(kind::CODE_WITHOUT_SYSTEM, version),
                ]));
                return Ok(Box::new(BooleanQuery::intersection(vec![
                    t(kind::URI, url),
                    version,
                ])));
            }
            let value = unescape(value);
            match modifier {
                None => Ok(t(kind::URI, &value)),
                Some("below") => Ok(scope.starting_with(kind::URI, &value)),
                Some("above") => {
                    at_most(value.matches('/').count() + 1, "segments")?;
                    let mut options = Vec::new();
                    let mut end = value.len();
                    while end > 0 {
                        options.push(t(kind::URI, &value[..end]));
                        end = value[..end].rfind('/').unwrap_or(0);
                    }
                    Ok(Box::new(BooleanQuery::union(options)))
                }
                _ => unsupported(),
            }
        }
        ParamType::Date if modifier.is_none() => {
            let (prefix, text) = split_prefix(value);
            let period = parse_period(text).map_err(invalid)?;
            Ok(date_query(scope, prefix, period.start, period.end))
        }
        ParamType::Number if modifier.is_none() => {
            let (prefix, text) = split_prefix(value);
            let (exact, low, high) = number(text).map_err(invalid)?;
            let ranges = Ranges {
                scope,
                bounds: None,
                points: true,
                key: String::new(),
            };
            Ok(ranges.number(prefix, exact, low, high))
        }
        ParamType::Quantity if modifier.is_none() => {
            let (prefix, text) = split_prefix(value);
            let parts = split_unescaped(text, '|');
            let (number_text, unit_key, canonical) = match parts.as_slice() {
                [n] => (n.as_str(), String::new(), None),
                [n, system, code] if system.is_empty() => (n.as_str(), format!("c:{code}"), None),
                [n, system, code] => (
                    n.as_str(),
                    format!("s:{system}|{code}"),
                    Canonical::of(Some(system), code),
                ),
                _ => return Err(invalid("a quantity is [prefix]number[|system|code]")),
            };
            let (mut exact, mut low, mut high) = number(number_text).map_err(invalid)?;
            // A UCUM unit is searched in base units: it finds every commensurable unit.
            let unit_key = match canonical {
                Some(canonical) => {
                    (exact, low, high) = (
                        canonical.convert(exact),
                        canonical.convert(low),
                        canonical.convert(high),
                    );
                    canonical.key
                }
                None => unit_key,
            };
            // A Quantity is a point, a Range has a low and a high.
            let ranges = Ranges {
                scope,
                bounds: Some((kind::LOW, kind::HIGH)),
                points: true,
                key: format!("{unit_key}\u{1e}"),
            };
            Ok(ranges.number(prefix, exact, low, high))
        }
        ParamType::Date | ParamType::Number | ParamType::Quantity => unsupported(),
        ParamType::Special if modifier.is_none() && scope.code == "near" => {
            near::query(scope, value).map_err(invalid)
        }
        ParamType::Composite | ParamType::Special => {
            Err(format!("{} parameters are not supported here", param_kind.as_str()).into())
        }
    }
}

/// A comparison prefix: eq, ne, gt, lt, ge, le, sa, eb, ap.
fn split_prefix(value: &str) -> (&str, &str) {
    let candidate = value.get(..2).unwrap_or("");
    if ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"].contains(&candidate) {
        (candidate, &value[2..])
    } else {
        ("eq", value)
    }
}

/// The range terms of one parameter (or composite component) after `key`: values with a low
/// and a high (dates, Ranges) under the `bounds` kinds, and points (numbers, Quantities) under
/// `kind::POINT` when `points`.
struct Ranges<'a> {
    scope: Scope<'a>,
    bounds: Option<(char, char)>,
    points: bool,
    key: String,
}

impl Ranges<'_> {
    fn span<T>(
        &self,
        kind: char,
        lower: Bound<T>,
        upper: Bound<T>,
        encode: fn(T) -> String,
    ) -> Span {
        self.scope
            .span(kind, &self.key, bound(lower, encode), bound(upper, encode))
    }

    /// A number or quantity search: the value is `exact`, with the range `[plow, phigh)` its
    /// precision implies.
    fn number(&self, prefix: &str, exact: f64, plow: f64, phigh: f64) -> Box<dyn Query> {
        let f = encode_f64;
        let margin = (exact * 0.1).abs();
        let mut parts = Vec::new();
        if let Some((low, high)) = self.bounds {
            let low = |lower, upper| self.span(low, lower, upper, f);
            let high = |lower, upper| self.span(high, lower, upper, f);
            parts.push(match prefix {
                "ne" => Box::new(BooleanQuery::union(vec![
                    low(Bound::Unbounded, Bound::Excluded(plow)).query(),
                    high(Bound::Included(phigh), Bound::Unbounded).query(),
                ])),
                "gt" | "sa" => high(Bound::Excluded(exact), Bound::Unbounded).query(),
                "lt" | "eb" => low(Bound::Unbounded, Bound::Excluded(exact)).query(),
                "ge" => high(Bound::Included(exact), Bound::Unbounded).query(),
                "le" => low(Bound::Unbounded, Bound::Included(exact)).query(),
                "ap" => both(
                    low(Bound::Unbounded, Bound::Included(exact + margin)),
                    high(Bound::Included(exact - margin), Bound::Unbounded),
                ),
                _ => both(
                    low(Bound::Included(plow), Bound::Unbounded),
                    high(Bound::Unbounded, Bound::Excluded(phigh)),
                ),
            });
        }
        if self.points {
            // A point is its own low and high: every prefix is one range of points.
            let point = |lower, upper| self.span(kind::POINT, lower, upper, f).query();
            parts.push(match prefix {
                "ne" => Box::new(BooleanQuery::union(vec![
                    point(Bound::Unbounded, Bound::Excluded(plow)),
                    point(Bound::Included(phigh), Bound::Unbounded),
                ])),
                "gt" | "sa" => point(Bound::Excluded(exact), Bound::Unbounded),
                "lt" | "eb" => point(Bound::Unbounded, Bound::Excluded(exact)),
                "ge" => point(Bound::Included(exact), Bound::Unbounded),
                "le" => point(Bound::Unbounded, Bound::Included(exact)),
                "ap" => point(
                    Bound::Included(exact - margin),
                    Bound::Included(exact + margin),
                ),
                _ => point(Bound::Included(plow), Bound::Excluded(phigh)),
            });
        }
        Box::new(BooleanQuery::union(parts))
    }
}

/// How far `ap` widens a searched period `[start, end)`: 10% of its distance from now, at
/// least its own length.
fn date_margin(start: Micros, end: Micros) -> Micros {
    ((now() - start).abs() / 10).max(end - start)
}

/// A date parameter against resource periods `[low, high)`, for the period `[start, end)` of
/// the search value, as the FHIR search page defines each prefix.
fn date_query(scope: Scope<'_>, prefix: &str, start: Micros, end: Micros) -> Box<dyn Query> {
    let ranges = Ranges {
        scope,
        bounds: Some((kind::LOW, kind::HIGH)),
        points: false,
        key: String::new(),
    };
    let e = encode_i64;
    let low = |lower, upper| ranges.span(kind::LOW, lower, upper, e);
    let high = |lower, upper| ranges.span(kind::HIGH, lower, upper, e);
    let within = || {
        both(
            low(Bound::Included(start), Bound::Unbounded),
            high(Bound::Unbounded, Bound::Included(end)),
        )
    };
    let above = || high(Bound::Excluded(end), Bound::Unbounded).query();
    let below = || low(Bound::Unbounded, Bound::Excluded(start)).query();
    match prefix {
        "ne" => Box::new(BooleanQuery::union(vec![above(), below()])),
        "gt" => above(),
        "lt" => below(),
        // Above or within equals above or starting at or after the start (a value starting
        // there ends either within or above): two single ranges, no pair to check. Likewise
        // below or within equals below or ending at or before the end.
        "ge" => Box::new(BooleanQuery::union(vec![
            above(),
            low(Bound::Included(start), Bound::Unbounded).query(),
        ])),
        "le" => Box::new(BooleanQuery::union(vec![
            below(),
            high(Bound::Unbounded, Bound::Included(end)).query(),
        ])),
        "sa" => low(Bound::Included(end), Bound::Unbounded).query(),
        "eb" => high(Bound::Unbounded, Bound::Included(start)).query(),
        "ap" => {
            let margin = date_margin(start, end);
            both(
                low(Bound::Unbounded, Bound::Excluded(end + margin)),
                high(Bound::Excluded(start - margin), Bound::Unbounded),
            )
        }
        _ => within(),
    }
}

/// A date parameter with a value `[low, high)` that overlaps `period`: it starts before the
/// period ends and ends after it starts.
fn overlap_query(scope: Scope<'_>, period: Period) -> Box<dyn Query> {
    let ranges = Ranges {
        scope,
        bounds: Some((kind::LOW, kind::HIGH)),
        points: false,
        key: String::new(),
    };
    both(
        ranges.span(
            kind::LOW,
            Bound::Unbounded,
            Bound::Excluded(period.end),
            encode_i64,
        ),
        ranges.span(
            kind::HIGH,
            Bound::Excluded(period.start),
            Bound::Unbounded,
            encode_i64,
        ),
    )
}

fn bound<T>(bound: Bound<T>, encode: impl Fn(T) -> String) -> Bound<String> {
    match bound {
        Bound::Included(v) => Bound::Included(encode(v)),
        Bound::Excluded(v) => Bound::Excluded(encode(v)),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// A search number with the range its precision implies (see [`precise`]).
fn number(text: &str) -> Result<(f64, f64, f64), String> {
    precise(text).ok_or_else(|| format!("'{text}' is not a number"))
}

/// Splits on `separator` where it is not escaped with `\`, and unescapes the parts.
pub fn split_unescaped(value: &str, separator: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(next) if next == separator => parts.last_mut().expect("a part").push(next),
                Some(next) => {
                    let part = parts.last_mut().expect("a part");
                    part.push('\\');
                    part.push(next);
                }
                None => parts.last_mut().expect("a part").push('\\'),
            },
            c if c == separator => parts.push(String::new()),
            c => parts.last_mut().expect("a part").push(c),
        }
    }
    parts
}

/// Removes the escapes `\,` `\|` `\$` `\\` from a value.
fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\'
            && let Some(next) = chars.next()
        {
            if !matches!(next, ',' | '|' | '$' | '\\') {
                out.push('\\');
            }
            out.push(next);
        } else {
            out.push(c);
        }
    }
    out
}

fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~\"@<>".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::datetime::Period;
    use crate::search::extract::IndexValue;
    use crate::search::index::{Change, SearchIndex, keys_of};
    use crate::search::terms::Entries;
    use crate::search::view::Part;
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use tantivy::collector::DocSetCollector;

    const DAY: i64 = 86_400_000_000;

    #[test]
    fn a_search_reads_only_its_types_unless_it_follows_references() {
        let params = |names: &[&str]| -> Vec<(String, String)> {
            names.iter().map(|n| (n.to_string(), "x".into())).collect()
        };
        let patients = Target::of_type("Patient");
        let own = params(&[
            "name",
            "gender:not",
            "_id",
            "_sort",
            "_count",
            "_text",
            "organization:Organization",
        ]);
        assert_eq!(
            patients.reads(&own, &View::All),
            Some(&["Patient".to_string()][..])
        );
        for other in [
            "_has:Observation:subject:code",
            "general-practitioner:Practitioner.name",
            "organization.name",
            "_list",
            "_include",
            "_include:iterate",
            "_revinclude",
        ] {
            assert_eq!(
                patients.reads(&params(&["name", other]), &View::All),
                None,
                "{other}"
            );
        }
        let everything = Target::default();
        assert_eq!(everything.reads(&own, &View::All), None, "all types");
        let compartment = Target {
            compartment: Some(("Patient".into(), "1".into())),
            ..Target::of_type("Observation")
        };
        assert!(compartment.reads(&[], &View::All).is_some());
        let care = Target {
            care: Some(Period { start: 0, end: DAY }),
            ..Target::of_type("Observation")
        };
        assert_eq!(care.reads(&[], &View::All), None, "$everything");
        let part = |params: Vec<(String, String)>| Part {
            resource_type: None,
            compartment: Some(("Patient".into(), "1".into())),
            params,
        };
        let confined = View::Only(vec![part(params(&["category"]))]);
        assert!(patients.reads(&own, &confined).is_some());
        let chained = View::Only(vec![part(Vec::new()), part(params(&["subject.name"]))]);
        assert_eq!(patients.reads(&own, &chained), None, "a view's chain");
    }

    /// The day `n` of January 2020 as a search value, and as the period it means.
    fn day(n: i64) -> (String, Period) {
        let start = 1_577_836_800_000_000 + n * DAY; // 2020-01-01T00:00:00Z
        (
            format!("2020-01-{:02}", n + 1),
            Period {
                start,
                end: start + DAY,
            },
        )
    }

    /// What a prefix means for one resource period `value` and the searched period `search`,
    /// written from the FHIR search page's table.
    fn reference(prefix: &str, value: Period, search: Period) -> bool {
        let within = value.start >= search.start && value.end <= search.end;
        let above = value.end > search.end;
        let below = value.start < search.start;
        match prefix {
            "eq" => within,
            "ne" => !within,
            "gt" => above,
            "lt" => below,
            "ge" => above || within,
            "le" => below || within,
            "sa" => value.start >= search.end,
            "eb" => value.end <= search.start,
            _ => unreachable!(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Date searches over resources with one to three periods each match exactly the
        /// resources with one period satisfying the prefix (never a low bound met by one
        /// period and a high bound by another).
        #[test]
        fn date_prefixes_match_one_value_of_several(
            resources in proptest::collection::vec(
                proptest::collection::vec((0i64..20, 1i64..6), 1..4), 1..25),
            prefix in proptest::sample::select(vec!["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"]),
            searched in 0i64..20,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let (index, _) = SearchIndex::open(dir.path(), &Default::default()).unwrap();
            let hour = DAY / 24;
            let periods: Vec<Vec<Period>> = resources
                .iter()
                .map(|values| values.iter().map(|(first, hours)| {
                    let start = day(0).1.start + first * hour * 7;
                    Period { start, end: start + hours * hour * 5 }
                }).collect())
                .collect();
            let changes = periods.iter().enumerate().map(|(n, values)| {
                let mut entries = Entries::default();
                let values: Vec<IndexValue> = values.iter().map(|p| IndexValue::Date(*p)).collect();
                entries.add("date", &values);
                Change::Upsert {
                    key: format!("Observation/{n}"),
                    resource_type: "Observation".into(),
                    last_updated: n as i64,
                    entries,
                    text: Default::default(),
                    replaces: true,
                }
            }).collect();
            index.apply(changes, 1).unwrap();
            let (text, search) = day(searched);
            let searcher = index.searcher();
            let planner = Planner { registry: Registry::r4_shared(), fields: index.fields, searcher: &searcher, view: &View::All, limits: &Limits::default() };
            let planned = planner.plan(
                &Target::of_type("Observation"),
                &[("date".to_string(), format!("{prefix}{text}"))],
                true,
            ).unwrap();
            let addresses: Vec<_> = searcher
                .search(&planned.query, &DocSetCollector)
                .unwrap()
                .into_iter()
                .collect();
            let found: BTreeSet<String> =
                keys_of(&searcher, &addresses).unwrap().into_iter().collect();
            let expected: BTreeSet<String> = periods
                .iter()
                .enumerate()
                .filter(|(_, values)| values.iter().any(|v| reference(prefix, *v, search)))
                .map(|(n, _)| format!("Observation/{n}"))
                .collect();
            prop_assert_eq!(found, expected);
        }
    }

    #[test]
    fn full_text_parameters_search_any_type_and_take_no_modifier() {
        let dir = tempfile::tempdir().unwrap();
        let (index, _) = SearchIndex::open(dir.path(), &Default::default()).unwrap();
        let searcher = index.searcher();
        let planner = Planner {
            registry: Registry::r4_shared(),
            fields: index.fields,
            searcher: &searcher,
            view: &View::All,
            limits: &Limits::default(),
        };
        let planned = |types: &[&str], name: &str, value: &str| {
            let target = Target {
                resource_types: types.iter().map(|t| t.to_string()).collect(),
                ..Target::default()
            };
            let params = [(name.to_string(), value.to_string())];
            planner.plan(&target, &params, true).map(|_| ())
        };
        assert!(planned(&[], "_content", "cancer OR tumour,x").is_ok());
        assert!(planned(&["Patient", "Observation"], "_text", "\"acute bronchitis\"").is_ok());
        // Bundle, Binary and Parameters are no DomainResources: they have no narrative.
        assert!(planned(&["Bundle"], "_text", "x").is_err());
        assert!(planned(&["Bundle"], "_content", "x").is_ok());
        assert!(planned(&[], "_content:not", "x").is_err());
        assert!(planned(&[], "_text", "\"unclosed").is_err());
        assert!(planned(&[], "_text", "a,").is_ok());
        assert!(planned(&[], "_sort", "_content").is_err());
    }

    /// Unknown parameters are the client's risk (ignored unless strict); a malformed value of
    /// a known one, or a search past its limits, is refused either way.
    #[test]
    fn refusals_depend_on_why() {
        let dir = tempfile::tempdir().unwrap();
        let (index, _) = SearchIndex::open(dir.path(), &Default::default()).unwrap();
        let searcher = index.searcher();
        let limits = Limits {
            depth: 2,
            values: 3,
            params: 4,
            ..Limits::default()
        };
        let planner = Planner {
            registry: Registry::r4_shared(),
            fields: index.fields,
            searcher: &searcher,
            view: &View::All,
            limits: &limits,
        };
        let lenient = |params: &[(&str, &str)]| {
            let params: Vec<(String, String)> = params
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            planner.plan(&Target::of_type("Patient"), &params, false)
        };
        let code = |params: &[(&str, &str)]| lenient(params).err().map(|e| e.code);
        assert_eq!(lenient(&[("nonsense", "1")]).unwrap().ignored.len(), 1);
        assert_eq!(
            lenient(&[("gender:nonsense", "x")]).unwrap().ignored.len(),
            1
        );
        assert_eq!(code(&[("birthdate", "garbage")]), Some(IssueCode::Invalid));
        assert_eq!(
            code(&[("birthdate", ">=1985-01-01")]),
            Some(IssueCode::Invalid)
        );
        assert_eq!(
            code(&[("gender:missing", "maybe")]),
            Some(IssueCode::Invalid)
        );
        assert_eq!(
            code(&[("link:Patient.birthdate", "x")]),
            Some(IssueCode::Invalid)
        );
        // Empty values are ignored, not reported; empty ORs are dropped.
        let plan = lenient(&[("gender", ""), ("gender", "male,,"), ("birthdate", ",")]).unwrap();
        assert!(plan.ignored.is_empty());
        // Limits.
        assert_eq!(code(&[("gender", "a,b,c,d")]), Some(IssueCode::TooCostly));
        assert_eq!(
            code(&[("_sort", "gender,birthdate,name,family")]),
            Some(IssueCode::TooCostly)
        );
        assert_eq!(code(&[("_content", "a b c d")]), Some(IssueCode::TooCostly));
        assert_eq!(code(&[("gender", "x"); 5]), Some(IssueCode::TooCostly));
        assert!(lenient(&[("link:Patient.link:Patient.gender", "x")]).is_ok());
        assert_eq!(
            code(&[("link:Patient.link:Patient.link:Patient.gender", "x")]),
            Some(IssueCode::TooCostly)
        );
        let deep = format!("{}gender", "_has:Patient:link:".repeat(1500));
        assert_eq!(code(&[(&deep, "x")]), Some(IssueCode::TooCostly));
        let deep = format!("{}gender", "link:Patient.".repeat(2000));
        assert_eq!(code(&[(&deep, "x")]), Some(IssueCode::TooCostly));
    }

    #[test]
    fn values_split_on_unescaped_separators() {
        assert_eq!(split_unescaped("a,b\\,c", ','), ["a", "b,c"]);
        assert_eq!(split_unescaped("http://x|1\\|2", '|'), ["http://x", "1|2"]);
        assert_eq!(unescape("a\\$b\\,c\\\\"), "a$b,c\\");
        assert_eq!(split_prefix("ge2020"), ("ge", "2020"));
        assert_eq!(split_prefix("2020"), ("eq", "2020"));
        assert_eq!(number("100").unwrap(), (100.0, 99.5, 100.5));
        assert!(number("abc").is_err());
    }

    proptest! {
        #[test]
        fn escaped_values_split_back(parts in proptest::collection::vec("[a-z,|\\\\]{0,8}", 1..5)) {
            let escaped: Vec<String> = parts
                .iter()
                .map(|p| p.replace('\\', "\\\\").replace(',', "\\,"))
                .collect();
            let joined = escaped.join(",");
            let split: Vec<String> = split_unescaped(&joined, ',').iter().map(|p| unescape(p)).collect();
            prop_assert_eq!(split, parts);
        }
    }
}
