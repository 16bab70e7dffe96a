//! Terminology: code systems and value sets, for content validation and the terminology
//! operations (`$lookup`, `$validate-code`, `$subsumes`, `$expand`).
//!
//! Two kinds of content:
//! - the shipped content, compiled into the binary and held in memory: ICD-10-CM (complete),
//!   SNOMED CT, LOINC and RxNorm subsets, and the code systems and value sets of FHIR R4 and
//!   HL7 terminology ([`shipped`]). It is decoded once per process, on first use or by
//!   [`Terminology::load_in_background`] at start (the server listens without waiting for it;
//!   a question asked before it is done waits for it, off the HTTP workers);
//! - releases a user loads (`fhirlake terminology load-snomed|load-loinc`), one redb file
//!   each under `DATA/terminology/`, read on demand ([`release`]). A loaded release replaces
//!   the shipped subset of its system.
//!
//! Every answer says how sure it is. A code system is held complete or in part
//! ([`Content`]): a code missing from a complete one is invalid, a code missing from a part is
//! only "not in the subset held" ([`Verdict::NotInSubset`]), which callers warn about by
//! default; an unknown system is [`Verdict::UnknownSystem`]. Value set membership is
//! three-valued ([`Membership`]): when it depends on what is not held (all of SNOMED CT, an
//! is-a filter without the hierarchy), the answer is "undecided", never "no".
//!
//! A display is compared with the concept's display and designations ignoring case and runs of
//! spaces; no match is a warning. For the shipped SNOMED CT subset, which has fully specified
//! names only, the name without its semantic tag counts too. For validation,
//! [`Terminology::validate_code`] answers a [`CodeCheck`] (a verdict, the concept, issues with
//! a suggested severity and a kind that names its OperationOutcome code), and
//! [`Terminology::check_in_value_set`] membership plus that check; the validation policy maps
//! verdicts and kinds to reject, warn or off.
//!
//! Known gaps: one version per system (`version` is ignored); `CodeSystem/$validate-code` and
//! instance-level operations are not served, and ValueSet and CodeSystem resources stored
//! through the REST API are not used (a value set can be given inline to `$expand` and
//! `$validate-code`); filters `regex`, `in`, `exists`, `generalizes` and properties not held
//! are undecided; LOINC's part hierarchy and SNOMED CT's other relationships are not loaded;
//! `compose.inactive`, `activeOnly` and language preferences are ignored; UCUM, CVX, NUCC and
//! other external systems are unknown; expansions are not cached.
//!
//! This module uses no other layer of fhirlake: api (HTTP) and validation call it.

pub mod concept;
mod loinc;
pub mod release;
mod rf2;
mod shipped;
pub mod snomed;
pub mod system;
pub mod valueset;

pub use concept::{Concept, Designation, Property, PropertyValue};
pub use loinc::read_table as read_loinc_table;
pub use rf2::read_snapshot as read_snomed_snapshot;
pub use system::{CodeSource, Content, SystemInfo};
pub use valueset::{ExpandRequest, Expansion, ExpansionEntry, Membership, ValueSet, ValueSetCheck};

use std::path::Path;

/// ICD-10-CM.
pub const ICD10CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";
/// LOINC.
pub const LOINC: &str = "http://loinc.org";
/// RxNorm.
pub const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
/// SNOMED CT.
pub const SNOMED: &str = snomed::SYSTEM;

/// Why a terminology question has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TerminologyError {
    #[error("the code system {0} is not known here")]
    UnknownSystem(String),
    #[error("the value set {0} is not known here")]
    UnknownValueSet(String),
    /// A code that is not in its system (or not in the part held): the message says which.
    #[error("{0}")]
    UnknownCode(String),
    /// The answer depends on content that is not held.
    #[error("cannot be decided: {0}")]
    Undecidable(String),
    /// The answer is too large to give (an expansion of all of a large code system).
    #[error("too costly: {0}")]
    TooCostly(String),
    /// A loaded release could not be read.
    #[error("terminology storage error: {0}")]
    Storage(String),
}

/// What [`Terminology::validate_code`] concluded about a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The code is a concept of the system.
    Valid,
    /// The system is held only in part and the code is not in that part: it may be a valid
    /// code all the same. Callers warn about it by default.
    NotInSubset,
    /// Certainly not a code of the system: the system is held complete and lacks it, or the
    /// code breaks the system's syntax (a SNOMED CT id with a wrong check digit).
    Invalid,
    /// The system is not known here at all.
    UnknownSystem,
}

/// How serious an [`Issue`] is: OperationOutcome's `issue.severity`.
pub use crate::fhir::Severity;

/// What an [`Issue`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueKind {
    /// The code is not a code of its system.
    InvalidCode,
    /// The code is not in the part of its system held here.
    NotInSubset,
    /// The system is not known here.
    UnknownSystem,
    /// The display matches none of the concept's names.
    Display,
    /// The concept is inactive (retired, or inactive in its release).
    Inactive,
    /// The code is not in the value set asked about.
    NotInValueSet,
}

impl IssueKind {
    /// The OperationOutcome `issue.code` for it.
    pub fn fhir_code(self) -> &'static str {
        match self {
            IssueKind::InvalidCode | IssueKind::NotInValueSet => "code-invalid",
            IssueKind::NotInSubset | IssueKind::UnknownSystem => "not-found",
            IssueKind::Display => "invalid",
            IssueKind::Inactive => "business-rule",
        }
    }
}

/// One thing to tell about a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// The severity the terminology suggests; a validation policy may change it.
    pub severity: Severity,
    pub kind: IssueKind,
    pub message: String,
}

/// The answer of [`Terminology::validate_code`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeCheck {
    pub verdict: Verdict,
    /// The concept, when the code is valid.
    pub concept: Option<Concept>,
    /// Why the verdict, when it is not `Valid`; warnings about a valid code (its display
    /// matches none of its names, it is inactive).
    pub issues: Vec<Issue>,
}

/// The answer of [`Terminology::subsumes`]: how code A relates to code B.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subsumption {
    Equivalent,
    /// A subsumes B: B is-a A.
    Subsumes,
    /// A is-a B.
    SubsumedBy,
    NotSubsumed,
}

impl Subsumption {
    /// The `outcome` code of `$subsumes`.
    pub fn as_str(self) -> &'static str {
        match self {
            Subsumption::Equivalent => "equivalent",
            Subsumption::Subsumes => "subsumes",
            Subsumption::SubsumedBy => "subsumed-by",
            Subsumption::NotSubsumed => "not-subsumed",
        }
    }
}

/// The terminology of one data directory: the shipped content and the releases loaded there.
/// Cheap to share (`Arc`); every method takes `&self` and may be called from any thread.
pub struct Terminology {
    releases: Vec<release::Release>,
}

impl Terminology {
    /// The shipped content alone.
    pub fn shipped_only() -> Terminology {
        Terminology {
            releases: Vec::new(),
        }
    }

    /// The shipped content and the releases loaded into `data_dir` (none is fine).
    pub fn open(data_dir: &Path) -> Result<Terminology, TerminologyError> {
        Ok(Terminology {
            releases: release::open_all(data_dir)?,
        })
    }

    /// Decodes the shipped content on a thread of its own, so that a server's start does not
    /// wait for it; a question asked before it is done waits for it.
    pub fn load_in_background() {
        std::thread::Builder::new()
            .name("terminology".into())
            .spawn(|| {
                shipped::get();
            })
            .expect("spawn the terminology loader");
    }

    /// Whether the shipped content is decoded (questions will not wait).
    pub fn is_loaded() -> bool {
        shipped::is_loaded()
    }

    /// The loaded releases.
    pub fn releases(&self) -> impl Iterator<Item = &SystemInfo> {
        self.releases.iter().map(|r| r.info())
    }

    /// Where the concepts of `system` come from: its loaded release, else the shipped content.
    pub fn source(&self, system: &str) -> Option<&dyn CodeSource> {
        if let Some(release) = self.releases.iter().find(|r| r.info().url == system) {
            return Some(release);
        }
        shipped::get()
            .systems
            .get(system)
            .map(|s| s as &dyn CodeSource)
    }

    /// What is known about `system`, if it is known.
    pub fn system(&self, system: &str) -> Option<&SystemInfo> {
        self.source(system).map(|s| s.info())
    }

    fn known_source(&self, system: &str) -> Result<&dyn CodeSource, TerminologyError> {
        self.source(system)
            .ok_or_else(|| TerminologyError::UnknownSystem(system.into()))
    }

    /// The concept of `code` in `system`: None when the system does not have it (or the part
    /// held does not: see [`Terminology::system`]); Err when the system is unknown.
    pub fn lookup(&self, system: &str, code: &str) -> Result<Option<Concept>, TerminologyError> {
        self.known_source(system)?.concept(code)
    }

    /// The codes of the concepts that are-a `code` directly.
    pub fn children(&self, system: &str, code: &str) -> Result<Vec<String>, TerminologyError> {
        self.known_source(system)?.children(code)
    }

    /// Whether `code` is a code of `system`, and whether `display` (when given) is one of its
    /// names (ignoring case and runs of white space). A SNOMED CT expression (post-coordinated
    /// rather than one concept id) is [`TerminologyError::Undecidable`]: expressions are not
    /// evaluated here.
    pub fn validate_code(
        &self,
        system: &str,
        code: &str,
        display: Option<&str>,
    ) -> Result<CodeCheck, TerminologyError> {
        self.check_code(system, code, display, &[])
    }

    /// [`Terminology::validate_code`], where `extra_names` are also good displays (the ones a
    /// value set gives the code).
    fn check_code(
        &self,
        system: &str,
        code: &str,
        display: Option<&str>,
        extra_names: &[&str],
    ) -> Result<CodeCheck, TerminologyError> {
        let Some(source) = self.source(system) else {
            return Ok(CodeCheck {
                verdict: Verdict::UnknownSystem,
                concept: None,
                issues: vec![Issue {
                    severity: Severity::Warning,
                    kind: IssueKind::UnknownSystem,
                    message: format!(
                        "the code system {system} is not known here, so the code {code} is not \
                         checked"
                    ),
                }],
            });
        };
        let info = source.info();
        let invalid = |message: String| CodeCheck {
            verdict: Verdict::Invalid,
            concept: None,
            issues: vec![Issue {
                severity: Severity::Error,
                kind: IssueKind::InvalidCode,
                message,
            }],
        };
        if system == SNOMED
            && let Some(why) = snomed::unevaluated_expression(code)
        {
            return Err(TerminologyError::Undecidable(why));
        }
        if system == SNOMED
            && let Err(why) = snomed::check_concept_id(code)
        {
            return Ok(invalid(format!(
                "{code} is not a SNOMED CT concept id: {why}"
            )));
        }
        let Some(concept) = source.concept(code)? else {
            return Ok(match info.content {
                Content::Complete => invalid(format!(
                    "{code} is not a code of {} ({})",
                    info.label(),
                    info.holding
                )),
                Content::Partial => CodeCheck {
                    verdict: Verdict::NotInSubset,
                    concept: None,
                    issues: vec![Issue {
                        severity: Severity::Warning,
                        kind: IssueKind::NotInSubset,
                        message: format!(
                            "{code} is not in the part of {} held here ({}): it may be valid",
                            info.label(),
                            info.holding
                        ),
                    }],
                },
            });
        };
        let mut issues = Vec::new();
        if let Some(display) = display
            && let Some(issue) = display_issue(info, &concept, display, extra_names)
        {
            issues.push(issue);
        }
        if concept.is_inactive() {
            issues.push(Issue {
                severity: Severity::Warning,
                kind: IssueKind::Inactive,
                message: format!("{code} of {} is inactive", info.label()),
            });
        }
        Ok(CodeCheck {
            verdict: Verdict::Valid,
            concept: Some(concept),
            issues,
        })
    }

    /// How `code_a` relates to `code_b` in `system` by is-a. Both codes must be held, and so
    /// must the system's hierarchy (a SNOMED CT release, or a complete code system).
    pub fn subsumes(
        &self,
        system: &str,
        code_a: &str,
        code_b: &str,
    ) -> Result<Subsumption, TerminologyError> {
        let source = self.known_source(system)?;
        let info = source.info();
        let mut codes = Vec::new();
        for code in [code_a, code_b] {
            if system == SNOMED
                && let Err(why) = snomed::check_concept_id(code)
            {
                return Err(TerminologyError::UnknownCode(format!(
                    "{code} is not a SNOMED CT concept id: {why}"
                )));
            }
            match source.concept(code)? {
                Some(concept) => codes.push(concept.code),
                None => {
                    return Err(TerminologyError::UnknownCode(match info.content {
                        Content::Complete => format!("{code} is not a code of {}", info.label()),
                        Content::Partial => format!(
                            "{code} is not in the part of {} held here ({})",
                            info.label(),
                            info.holding
                        ),
                    }));
                }
            }
        }
        if !info.hierarchy {
            return Err(TerminologyError::Undecidable(format!(
                "the is-a hierarchy of {} is not held here ({})",
                info.label(),
                info.holding
            )));
        }
        let (a, b) = (&codes[0], &codes[1]);
        Ok(if a == b {
            Subsumption::Equivalent
        } else if system::is_a(source, b, a)? {
            Subsumption::Subsumes
        } else if system::is_a(source, a, b)? {
            Subsumption::SubsumedBy
        } else {
            Subsumption::NotSubsumed
        })
    }
}

/// A warning when `display` is none of the concept's names (nor one of `extra_names`); None
/// when it is one, or when the concept has no name to compare with. A SNOMED CT concept of
/// the shipped subset has its fully specified name only; its name without the semantic tag
/// (`Asthma` for `Asthma (disorder)`) is accepted too, being nearly always a synonym.
fn display_issue(
    info: &SystemInfo,
    concept: &Concept,
    display: &str,
    extra_names: &[&str],
) -> Option<Issue> {
    let mut names = concept
        .names()
        .chain(extra_names.iter().copied())
        .peekable();
    names.peek()?;
    let matches = |name: &str| {
        concept::same_display(display, name)
            || (info.url == SNOMED
                && snomed::without_semantic_tag(name)
                    .is_some_and(|name| concept::same_display(display, name)))
    };
    if names.any(matches) {
        return None;
    }
    let expected = concept
        .display
        .as_deref()
        .or(extra_names.first().copied())
        .unwrap_or_default();
    let others = concept.designations.len();
    Some(Issue {
        severity: Severity::Warning,
        kind: IssueKind::Display,
        message: format!(
            "the display \"{display}\" is not a name of {} in {}: expected \"{expected}\"{}",
            concept.code,
            info.label(),
            if others > 0 {
                format!(" or one of its {others} designations")
            } else {
                String::new()
            }
        ),
    })
}

#[cfg(test)]
mod tests;
