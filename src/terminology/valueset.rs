//! Value sets: whether a code is in one ([`Terminology::check_in_value_set`], three-valued)
//! and its expansion ([`Terminology::expand_value_set`]), both from its `compose`.
//!
//! Membership follows `compose`: a code is in the value set when some `include` has it and no
//! `exclude` does. An include part with a `system` has the system's codes that are listed in
//! `concept`, or that pass every `filter`, or all of them; with `valueSet`s it has only the
//! codes those value sets have too. Each step is three-valued: when the answer depends on
//! what is not held (a code missing from a subset, an is-a filter without the hierarchy, an
//! unknown system or value set, a filter operator not implemented), it is
//! [`Membership::Undecided`], and undecided parts combine as in Kleene's logic (a part that
//! says no to the code wins over an undecided one in an intersection, a yes in a union).
//!
//! An expansion lists every code; it fails with [`TerminologyError::Undecidable`] when some
//! part cannot be listed (all of a subset-held system), and with
//! [`TerminologyError::TooCostly`] past [`MAX_EXPANSION`] codes, or past `MAX_WORK` codes
//! looked at to find them (so a value set given whole cannot make the server work without
//! bound). `exclude` parts and the value sets an include intersects with are applied as
//! membership tests on the listed codes, so they need not be listed themselves. The text
//! `filter` matches word starts of displays (or the start of the code); pages by
//! `offset`/`count`.
//!
//! Subsumption and is-a filters need the hierarchy: complete code systems have theirs, a loaded
//! SNOMED CT release has its is-a relationships; LOINC's is not loaded.

use super::concept::Concept;
use super::system::{self, CodeSource, Content};
use super::{CodeCheck, SNOMED, Terminology, TerminologyError, shipped, snomed};
use serde::Deserialize;
use std::cell::Cell;
use std::collections::HashSet;

/// The most codes an expansion collects.
pub const MAX_EXPANSION: usize = 100_000;

/// How deep value sets may include value sets (deeper is taken for a cycle).
const MAX_DEPTH: usize = 16;

/// A value set: its identity and its `compose`, in FHIR's JSON shape (a client's ValueSet
/// resource deserializes into it too; what is not used here is ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct ValueSet {
    #[serde(default)]
    pub url: String,
    pub version: Option<String>,
    pub name: Option<String>,
    pub title: Option<String>,
    pub status: Option<String>,
    pub copyright: Option<String>,
    #[serde(default)]
    pub compose: Compose,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Compose {
    #[serde(default)]
    pub include: Vec<ComposePart>,
    #[serde(default)]
    pub exclude: Vec<ComposePart>,
}

/// One `compose.include` or `compose.exclude`.
#[derive(Debug, Clone, Deserialize)]
pub struct ComposePart {
    pub system: Option<String>,
    #[serde(default, rename = "valueSet")]
    pub value_sets: Vec<String>,
    #[serde(default)]
    pub concept: Vec<ListedConcept>,
    #[serde(default)]
    pub filter: Vec<Filter>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ListedConcept {
    pub code: String,
    pub display: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Filter {
    pub property: String,
    pub op: String,
    pub value: String,
}

/// Whether a code is in a value set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    Member,
    NotMember,
    /// It depends on content that is not held; the text says what.
    Undecided(String),
}

use Membership::{Member, NotMember, Undecided};

/// The answer of [`Terminology::check_in_value_set`]: the membership, and the check of the
/// code in its system (its verdict, its concept, display and status warnings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueSetCheck {
    pub membership: Membership,
    pub code: CodeCheck,
}

/// One code of an expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpansionEntry {
    pub system: String,
    pub code: String,
    pub display: Option<String>,
    pub inactive: bool,
}

/// What part of an expansion to return.
#[derive(Debug, Clone, Default)]
pub struct ExpandRequest {
    /// Text the codes' displays must match: each word of it starts a word of the display
    /// (ignoring case), or the whole text starts the code.
    pub filter: Option<String>,
    pub offset: usize,
    /// At most this many codes (all when None).
    pub count: Option<usize>,
}

/// A page of an expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expansion {
    /// How many codes the whole expansion (after the text filter) has.
    pub total: usize,
    pub offset: usize,
    pub contains: Vec<ExpansionEntry>,
}

/// Every item is a member: no if one says no, else undecided if one is, else yes. Stops at
/// the first no.
fn all(
    items: impl IntoIterator<Item = Result<Membership, TerminologyError>>,
) -> Result<Membership, TerminologyError> {
    let mut undecided = None;
    for item in items {
        match item? {
            NotMember => return Ok(NotMember),
            Undecided(why) => {
                undecided.get_or_insert(why);
            }
            Member => {}
        }
    }
    Ok(undecided.map_or(Member, Undecided))
}

/// Some item is a member: yes if one says yes, else undecided if one is, else no. Stops at
/// the first yes.
fn any(
    items: impl IntoIterator<Item = Result<Membership, TerminologyError>>,
) -> Result<Membership, TerminologyError> {
    let mut undecided = None;
    for item in items {
        match item? {
            Member => return Ok(Member),
            Undecided(why) => {
                undecided.get_or_insert(why);
            }
            NotMember => {}
        }
    }
    Ok(undecided.map_or(NotMember, Undecided))
}

impl Membership {
    /// Whether a code is in a value set when any one of `items` being a member is enough (a
    /// CodeableConcept with a coding in it): yes if one says yes, else undecided if one is,
    /// else no.
    pub fn any(
        items: impl IntoIterator<Item = Result<Membership, TerminologyError>>,
    ) -> Result<Membership, TerminologyError> {
        any(items)
    }
}

fn not(membership: Membership) -> Membership {
    match membership {
        Member => NotMember,
        NotMember => Member,
        undecided => undecided,
    }
}

fn yes(member: bool) -> Membership {
    if member { Member } else { NotMember }
}

fn same_code(case_sensitive: bool, a: &str, b: &str) -> bool {
    if case_sensitive {
        a == b
    } else {
        a.eq_ignore_ascii_case(b)
    }
}

fn not_held(source: &dyn CodeSource, code: &str) -> String {
    let info = source.info();
    format!(
        "{code} is not in the part of {} held here ({})",
        info.label(),
        info.holding
    )
}

fn no_hierarchy(source: &dyn CodeSource) -> String {
    let info = source.info();
    format!(
        "the is-a hierarchy of {} is not held here ({})",
        info.label(),
        info.holding
    )
}

impl Terminology {
    /// The value set of canonical `url` (a `|version` suffix is ignored).
    pub fn value_set(&self, url: &str) -> Option<&'static ValueSet> {
        let url = url.split('|').next().unwrap_or(url);
        shipped::get().value_sets.get(url)
    }

    fn resolve(&self, url: &str) -> Result<&'static ValueSet, TerminologyError> {
        self.value_set(url)
            .ok_or_else(|| TerminologyError::UnknownValueSet(url.into()))
    }

    /// Whether `code` of `system` is in the value set `url`, and the code's own check
    /// ([`Terminology::validate_code`]; a display the value set gives the code is good too).
    pub fn validate_in_value_set(
        &self,
        url: &str,
        system: &str,
        code: &str,
        display: Option<&str>,
    ) -> Result<ValueSetCheck, TerminologyError> {
        self.check_in_value_set(self.resolve(url)?, system, code, display)
    }

    /// [`Terminology::validate_in_value_set`] for a value set given whole.
    pub fn check_in_value_set(
        &self,
        value_set: &ValueSet,
        system: &str,
        code: &str,
        display: Option<&str>,
    ) -> Result<ValueSetCheck, TerminologyError> {
        let membership = self.contains(value_set, system, code, 0)?;
        let listed: Vec<&str> = value_set
            .compose
            .include
            .iter()
            .filter(|part| part.system.as_deref() == Some(system))
            .flat_map(|part| &part.concept)
            .filter(|c| c.code == code)
            .filter_map(|c| c.display.as_deref())
            .collect();
        Ok(ValueSetCheck {
            membership,
            code: self.check_code(system, code, display, &listed)?,
        })
    }

    /// Whether `code` of `system` is in `value_set`: membership alone, the code itself
    /// unchecked.
    pub fn membership(
        &self,
        value_set: &ValueSet,
        system: &str,
        code: &str,
    ) -> Result<Membership, TerminologyError> {
        self.contains(value_set, system, code, 0)
    }

    /// Whether `code`, given without a system (an element of type `code`), is in `value_set`
    /// with one of the code systems the value set draws from. Undecided when it draws from
    /// none known (it only includes value sets not held here).
    pub fn code_membership(
        &self,
        value_set: &ValueSet,
        code: &str,
    ) -> Result<Membership, TerminologyError> {
        let systems = self.systems(value_set);
        if systems.is_empty() {
            return Ok(Undecided(format!(
                "the value set {} has no code system known here",
                value_set.url
            )));
        }
        any(systems
            .into_iter()
            .map(|system| self.contains(value_set, system, code, 0)))
    }

    /// The code systems `value_set` draws codes from, through the value sets it includes
    /// too (those not held here add none), each once, in the order met.
    pub fn systems<'a>(&'a self, value_set: &'a ValueSet) -> Vec<&'a str> {
        let mut systems = Vec::new();
        self.collect_systems(value_set, 0, &mut systems);
        systems
    }

    fn collect_systems<'a>(
        &'a self,
        value_set: &'a ValueSet,
        depth: usize,
        out: &mut Vec<&'a str>,
    ) {
        if depth > MAX_DEPTH {
            return;
        }
        for part in &value_set.compose.include {
            if let Some(system) = part.system.as_deref() {
                if !out.contains(&system) {
                    out.push(system);
                }
            } else {
                for included in part.value_sets.iter().filter_map(|url| self.value_set(url)) {
                    self.collect_systems(included, depth + 1, out);
                }
            }
        }
    }

    fn contains(
        &self,
        value_set: &ValueSet,
        system: &str,
        code: &str,
        depth: usize,
    ) -> Result<Membership, TerminologyError> {
        if depth > MAX_DEPTH {
            return Ok(Undecided(format!(
                "value sets include each other more than {MAX_DEPTH} deep below {}",
                value_set.url
            )));
        }
        let compose = &value_set.compose;
        let parts = |parts: &[ComposePart]| {
            any(parts
                .iter()
                .map(|part| self.part_contains(part, system, code, depth)))
        };
        let included = parts(&compose.include)?;
        if included == NotMember || compose.exclude.is_empty() {
            return Ok(included);
        }
        all([Ok(included), parts(&compose.exclude).map(not)])
    }

    fn part_contains(
        &self,
        part: &ComposePart,
        system: &str,
        code: &str,
        depth: usize,
    ) -> Result<Membership, TerminologyError> {
        if part.system.is_none() && part.value_sets.is_empty() {
            return Ok(NotMember);
        }
        let in_system = part.system.as_deref().map(|s| {
            if s == system {
                self.system_contains(part, system, code)
            } else {
                Ok(NotMember)
            }
        });
        let in_value_sets = part.value_sets.iter().map(|url| match self.value_set(url) {
            Some(value_set) => self.contains(value_set, system, code, depth + 1),
            None => Ok(Undecided(format!(
                "it includes the value set {url}, which is not known here"
            ))),
        });
        all(in_system.into_iter().chain(in_value_sets))
    }

    /// Whether the include part of `system` (the code's own system) has `code`.
    fn system_contains(
        &self,
        part: &ComposePart,
        system: &str,
        code: &str,
    ) -> Result<Membership, TerminologyError> {
        let source = self.source(system);
        if !part.concept.is_empty() {
            let case_sensitive = source.is_none_or(|s| s.info().case_sensitive);
            return Ok(yes(part
                .concept
                .iter()
                .any(|c| same_code(case_sensitive, &c.code, code))));
        }
        let Some(source) = source else {
            return Ok(Undecided(format!(
                "the code system {system} is not known here"
            )));
        };
        if system == SNOMED && snomed::check_concept_id(code).is_err() {
            return Ok(snomed::unevaluated_expression(code).map_or(NotMember, Undecided));
        }
        let Some(concept) = source.concept(code)? else {
            return Ok(match source.info().content {
                Content::Complete => NotMember,
                Content::Partial => Undecided(not_held(source, code)),
            });
        };
        all(part
            .filter
            .iter()
            .map(|filter| self.passes(source, &concept, filter)))
    }

    /// Whether `concept` of `source` passes `filter`.
    fn passes(
        &self,
        source: &dyn CodeSource,
        concept: &Concept,
        filter: &Filter,
    ) -> Result<Membership, TerminologyError> {
        let info = source.info();
        let value = filter.value.as_str();
        Ok(match (filter.property.as_str(), filter.op.as_str()) {
            ("concept" | "code", "=") => yes(same_code(info.case_sensitive, &concept.code, value)),
            ("concept", "is-a") => self.is_a(source, &concept.code, value)?,
            ("concept", "descendent-of") => {
                if same_code(info.case_sensitive, &concept.code, value) {
                    NotMember
                } else {
                    self.is_a(source, &concept.code, value)?
                }
            }
            ("concept", "is-not-a") => not(self.is_a(source, &concept.code, value)?),
            (property, "=") => match concept.property(property) {
                Some(found) => yes(found.as_text() == value),
                None if info.properties.iter().any(|p| p == property) => NotMember,
                None => Undecided(format!(
                    "the property {property} of {} is not held here",
                    info.label()
                )),
            },
            (property, op) => Undecided(format!(
                "the filter \"{property} {op} {value}\" is not supported here"
            )),
        })
    }

    fn is_a(
        &self,
        source: &dyn CodeSource,
        code: &str,
        ancestor: &str,
    ) -> Result<Membership, TerminologyError> {
        if same_code(source.info().case_sensitive, code, ancestor) {
            Ok(Member)
        } else if !source.info().hierarchy {
            Ok(Undecided(no_hierarchy(source)))
        } else {
            Ok(yes(system::is_a(source, code, ancestor)?))
        }
    }

    /// The expansion of the value set `url`, cut as `request` asks.
    pub fn expand(
        &self,
        url: &str,
        request: &ExpandRequest,
    ) -> Result<Expansion, TerminologyError> {
        self.expand_value_set(self.resolve(url)?, request)
    }

    /// [`Terminology::expand`] for a value set given whole.
    pub fn expand_value_set(
        &self,
        value_set: &ValueSet,
        request: &ExpandRequest,
    ) -> Result<Expansion, TerminologyError> {
        let expander = Expander {
            terminology: self,
            work: Cell::new(0),
        };
        let mut entries = expander.entries(value_set, 0)?;
        if let Some(filter) = request
            .filter
            .as_deref()
            .map(str::trim)
            .filter(|f| !f.is_empty())
        {
            let words: Vec<String> = words(filter).map(|w| w.to_lowercase()).collect();
            let filter = filter.to_lowercase();
            entries.retain(|entry| matches_text(entry, &filter, &words));
        }
        let total = entries.len();
        let contains = entries
            .into_iter()
            .skip(request.offset)
            .take(request.count.unwrap_or(usize::MAX))
            .collect();
        Ok(Expansion {
            total,
            offset: request.offset,
            contains,
        })
    }
}

/// The most codes one expansion may look at (listing a part's candidates, testing a listed
/// code against an exclusion or an included value set): past it the expansion is too costly,
/// however few codes it would keep. It bounds what a value set given whole can make the
/// server do.
const MAX_WORK: usize = 2_000_000;

/// One expansion under way: the terminology it asks, and the work done so far.
struct Expander<'a> {
    terminology: &'a Terminology,
    work: Cell<usize>,
}

impl Expander<'_> {
    /// Counts `codes` more codes looked at; too costly past [`MAX_WORK`].
    fn charge(&self, codes: usize) -> Result<(), TerminologyError> {
        let work = self.work.get() + codes;
        self.work.set(work);
        if work > MAX_WORK {
            return Err(TerminologyError::TooCostly(format!(
                "the expansion would look at more than {MAX_WORK} codes"
            )));
        }
        Ok(())
    }

    /// Every code of `value_set`, each once, in the order of its include parts.
    fn entries(
        &self,
        value_set: &ValueSet,
        depth: usize,
    ) -> Result<Vec<ExpansionEntry>, TerminologyError> {
        if depth > MAX_DEPTH {
            return Err(TerminologyError::Undecidable(format!(
                "value sets include each other more than {MAX_DEPTH} deep below {}",
                value_set.url
            )));
        }
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for part in &value_set.compose.include {
            for entry in self.part_entries(part, depth)? {
                if seen.insert((entry.system.clone(), entry.code.clone())) {
                    if out.len() == MAX_EXPANSION {
                        return Err(too_costly(value_set));
                    }
                    out.push(entry);
                }
            }
        }
        for part in &value_set.compose.exclude {
            out = self.keep(out, |entry| {
                self.terminology
                    .part_contains(part, &entry.system, &entry.code, depth)
                    .map(not)
            })?;
        }
        Ok(out)
    }

    /// The entries that `member` says are members; an undecided one makes it all undecided.
    fn keep(
        &self,
        entries: Vec<ExpansionEntry>,
        member: impl Fn(&ExpansionEntry) -> Result<Membership, TerminologyError>,
    ) -> Result<Vec<ExpansionEntry>, TerminologyError> {
        self.charge(entries.len())?;
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            match member(&entry)? {
                Member => out.push(entry),
                NotMember => {}
                Undecided(why) => return Err(TerminologyError::Undecidable(why)),
            }
        }
        Ok(out)
    }

    fn part_entries(
        &self,
        part: &ComposePart,
        depth: usize,
    ) -> Result<Vec<ExpansionEntry>, TerminologyError> {
        let (entries, others) = match (&part.system, part.value_sets.split_first()) {
            (Some(system), _) => (self.system_entries(part, system)?, &part.value_sets[..]),
            (None, Some((first, rest))) => {
                let value_set = self.terminology.value_set(first).ok_or_else(|| {
                    TerminologyError::Undecidable(format!(
                        "it includes the value set {first}, which is not known here"
                    ))
                })?;
                (self.entries(value_set, depth + 1)?, rest)
            }
            (None, None) => return Ok(Vec::new()),
        };
        let mut entries = entries;
        for url in others {
            let value_set = self.terminology.value_set(url).ok_or_else(|| {
                TerminologyError::Undecidable(format!(
                    "it includes the value set {url}, which is not known here"
                ))
            })?;
            entries = self.keep(entries, |entry| {
                self.terminology
                    .contains(value_set, &entry.system, &entry.code, depth + 1)
            })?;
        }
        Ok(entries)
    }

    /// The codes of `system` that the include part has.
    fn system_entries(
        &self,
        part: &ComposePart,
        system: &str,
    ) -> Result<Vec<ExpansionEntry>, TerminologyError> {
        let source = self.terminology.source(system);
        let entry = |concept: &Concept| ExpansionEntry {
            system: system.to_string(),
            code: concept.code.clone(),
            display: concept.display.clone(),
            inactive: concept.is_inactive(),
        };
        if !part.concept.is_empty() {
            self.charge(part.concept.len())?;
            let mut out = Vec::with_capacity(part.concept.len());
            for listed in &part.concept {
                let concept = match source {
                    Some(source) => source.concept(&listed.code)?,
                    None => None,
                };
                let mut listed_entry = concept
                    .as_ref()
                    .map_or_else(|| entry(&Concept::new(listed.code.clone(), None)), entry);
                if listed.display.is_some() {
                    listed_entry.display = listed.display.clone();
                }
                out.push(listed_entry);
            }
            return Ok(out);
        }
        let Some(source) = source else {
            return Err(TerminologyError::Undecidable(format!(
                "it includes codes of {system}, which is not known here"
            )));
        };
        let candidates = match part.filter.first() {
            None => self.all_concepts(source, "all of")?,
            Some(filter) => self.candidates(source, filter)?,
        };
        self.charge(candidates.len())?;
        let mut out = Vec::new();
        for concept in candidates {
            match all(part
                .filter
                .iter()
                .map(|filter| self.terminology.passes(source, &concept, filter)))?
            {
                Member => out.push(entry(&concept)),
                NotMember => {}
                Undecided(why) => return Err(TerminologyError::Undecidable(why)),
            }
        }
        Ok(out)
    }

    /// The concepts that may pass `filter`: the root and its descendants for is-a, the code
    /// for `concept =`, else every concept.
    fn candidates(
        &self,
        source: &dyn CodeSource,
        filter: &Filter,
    ) -> Result<Vec<Concept>, TerminologyError> {
        match (filter.property.as_str(), filter.op.as_str()) {
            ("concept", "is-a" | "descendent-of") => {
                if !source.info().hierarchy {
                    return Err(TerminologyError::Undecidable(no_hierarchy(source)));
                }
                let Some(root) = source.concept(&filter.value)? else {
                    return Ok(Vec::new());
                };
                let mut out = Vec::new();
                for code in system::descendants(source, &root.code, MAX_EXPANSION)? {
                    out.extend(source.concept(&code)?);
                }
                out.insert(0, root);
                Ok(out)
            }
            ("concept" | "code", "=") => Ok(source.concept(&filter.value)?.into_iter().collect()),
            _ => self.all_concepts(source, "a filter over"),
        }
    }

    /// Every concept of a complete source; undecidable for a partial one.
    fn all_concepts(
        &self,
        source: &dyn CodeSource,
        what: &str,
    ) -> Result<Vec<Concept>, TerminologyError> {
        let info = source.info();
        if info.content == Content::Partial {
            return Err(TerminologyError::Undecidable(format!(
                "it includes {what} {}, of which only a part is held here ({})",
                info.label(),
                info.holding
            )));
        }
        if source.concept_count() > MAX_EXPANSION {
            return Err(TerminologyError::TooCostly(format!(
                "it includes {what} {}, {} codes; at most {MAX_EXPANSION} are expanded",
                info.label(),
                source.concept_count()
            )));
        }
        let mut out = Vec::with_capacity(source.concept_count());
        source.each_concept(&mut |concept| {
            out.push(concept.clone());
            true
        })?;
        Ok(out)
    }
}

fn too_costly(value_set: &ValueSet) -> TerminologyError {
    TerminologyError::TooCostly(format!(
        "the value set {} has more than {MAX_EXPANSION} codes",
        value_set.url
    ))
}

fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
}

/// Whether an entry matches a text filter: `filter` (lower case) starts its code, or each of
/// `filter_words` (lower case) starts a word of its display.
fn matches_text(entry: &ExpansionEntry, filter: &str, filter_words: &[String]) -> bool {
    if entry.code.to_lowercase().starts_with(filter) {
        return true;
    }
    let display = entry.display.as_deref().unwrap_or_default().to_lowercase();
    let display_words: Vec<&str> = words(&display).collect();
    !filter_words.is_empty()
        && filter_words
            .iter()
            .all(|w| display_words.iter().any(|d| d.starts_with(w.as_str())))
}
