//! The validation policy: what a write does with each finding of the validator, per kind of
//! rule, per code system and per resource type.
//!
//! Each finding gets one [`Action`]:
//! - `reject`: an error refuses the write (422); a warning is stored with the resource and
//!   reported in the response;
//! - `warn`: an error is stored as a warning;
//! - `off`: the finding is dropped.
//!
//! The policy file (JSON) names actions at two levels, `default` and per type under `types`;
//! a type's setting wins over the default's, a code system's over `codes`:
//!
//! ```json
//! {"default": {"structure": "reject", "required-bindings": "reject",
//!              "extensible-bindings": "warn", "codes": "warn", "empty-elements": "warn",
//!              "systems": {"http://loinc.org": "reject"}},
//!  "types": {"Basic": {"structure": "warn"},
//!            "Observation": {"systems": {"http://snomed.info/sct": "reject"}}}}
//! ```
//!
//! `empty-elements` decides on the empty elements (`{}`, `[]`, `""`, `null`) a write carries:
//! they are never stored, and `warn` reports each, `reject` refuses the write, `off` drops them
//! without a word.
//!
//! Invariant: a setting left out falls back to the next level, and finally to the built-in
//! defaults of [`Policy::default`]: the contract and required bindings reject, everything else
//! warns.
//!
//! `--validation on|off|FILE` picks the built-in policy, none, or a file. A finding dropped by
//! `off` is still told by `$validate`, as information. When [`Policy::is_off_for`] a type, the
//! walk of its resources is skipped altogether.

use super::{Issue, Report, Rule, Severity};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

/// What to do with a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Reject,
    Warn,
    Off,
}

/// The actions of one level (the default, or one resource type); `None` falls back.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Rules {
    structure: Option<Action>,
    required_bindings: Option<Action>,
    extensible_bindings: Option<Action>,
    /// Codes of every system without a setting of its own.
    codes: Option<Action>,
    empty_elements: Option<Action>,
    #[serde(default)]
    systems: HashMap<String, Action>,
}

impl Rules {
    /// This level's action for `rule`, if it has one; for a code, its `codes` setting (the
    /// code systems' own settings are weighed by [`Policy::action`]).
    fn action(&self, rule: &Rule) -> Option<Action> {
        match rule {
            Rule::Structure => self.structure,
            Rule::Binding(strength) if strength == "required" => self.required_bindings,
            Rule::Binding(_) => self.extensible_bindings,
            Rule::Code(_) => self.codes,
            Rule::EmptyElement => self.empty_elements,
        }
    }

    fn all(action: Action) -> Rules {
        Rules {
            structure: Some(action),
            required_bindings: Some(action),
            extensible_bindings: Some(action),
            codes: Some(action),
            empty_elements: Some(action),
            systems: HashMap::new(),
        }
    }
}

/// A validation policy (see the module's documentation). The default one has no settings: the
/// built-in actions apply (the contract and required bindings reject, everything else warns).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    default: Rules,
    #[serde(default)]
    types: HashMap<String, Rules>,
}

/// What a policy made of a validation report.
#[derive(Debug, Default)]
pub struct Judgement {
    /// The errors that refuse the write; none means it may be stored.
    pub rejections: Vec<Issue>,
    /// The findings stored with the write and reported to the client.
    pub warnings: Vec<Issue>,
}

impl Policy {
    /// No validation at all.
    pub fn off() -> Policy {
        Policy {
            default: Rules::all(Action::Off),
            types: HashMap::new(),
        }
    }

    /// Reads a policy file.
    pub fn read(path: &Path) -> anyhow::Result<Policy> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read the validation policy {path:?}: {e}"))?;
        serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("the validation policy {path:?} is not valid: {e}"))
    }

    /// The action for a finding of `rule` in a resource of `resource_type`.
    pub fn action(&self, resource_type: &str, rule: &Rule) -> Action {
        let built_in = match rule {
            Rule::Structure => Action::Reject,
            Rule::Binding(strength) if strength == "required" => Action::Reject,
            Rule::Binding(_) | Rule::Code(_) | Rule::EmptyElement => Action::Warn,
        };
        let typed = self.types.get(resource_type);
        // A type's code system setting wins over the default's, which wins over the type's
        // `codes`: the most specific setting decides.
        let specific = match rule {
            Rule::Code(system) => typed
                .and_then(|t| t.systems.get(system))
                .or_else(|| self.default.systems.get(system))
                .copied(),
            _ => None,
        };
        specific
            .or_else(|| typed.and_then(|t| t.action(rule)))
            .or_else(|| self.default.action(rule))
            .unwrap_or(built_in)
    }

    /// Is every finding of the validator's walk about a resource of `resource_type` dropped
    /// (so that walking it would be wasted)? Every kind of rule the walk checks is asked about,
    /// codes for each code system named and for one named nowhere (`Rule::Code("")`); empty
    /// elements are found before the walk, and judged all the same.
    pub fn is_off_for(&self, resource_type: &str) -> bool {
        let named = self
            .types
            .get(resource_type)
            .into_iter()
            .chain([&self.default])
            .flat_map(|level| level.systems.keys());
        [
            Rule::Structure,
            Rule::Binding("required".into()),
            Rule::Binding("extensible".into()),
            Rule::Code(String::new()),
        ]
        .into_iter()
        .chain(named.map(|system| Rule::Code(system.clone())))
        .all(|rule| self.action(resource_type, &rule) == Action::Off)
    }

    /// The findings of `report` about a resource of `resource_type`, each with the severity
    /// the policy gives it: an error it rejects stays an error, one it warns about becomes a
    /// warning, and one it drops becomes information.
    pub fn grade(&self, resource_type: &str, report: Report) -> Vec<Issue> {
        let mut issues = report.issues;
        for issue in &mut issues {
            issue.severity = match (self.action(resource_type, &issue.rule), issue.severity) {
                (Action::Off, _) => Severity::Information,
                (Action::Warn, Severity::Error) => Severity::Warning,
                (_, severity) => severity,
            };
        }
        issues
    }

    /// Sorts the findings of `report` about a resource of `resource_type` into what refuses a
    /// write and what is stored with it ([`Policy::grade`]; information is dropped).
    pub fn judge(&self, resource_type: &str, report: Report) -> Judgement {
        let mut judgement = Judgement::default();
        for issue in self.grade(resource_type, report) {
            match issue.severity {
                Severity::Error => judgement.rejections.push(issue),
                Severity::Warning => judgement.warnings.push(issue),
                Severity::Information => {}
            }
        }
        judgement
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::IssueCode;
    use serde_json::json;

    const SNOMED: &str = "http://snomed.info/sct";
    const LOINC: &str = "http://loinc.org";

    fn parse(value: serde_json::Value) -> Policy {
        serde_json::from_value(value).unwrap()
    }

    fn error(rule: Rule) -> Issue {
        Issue {
            severity: Severity::Error,
            code: IssueCode::Invalid,
            rule,
            expression: "Patient".into(),
            diagnostics: "x".into(),
        }
    }

    #[test]
    fn the_built_in_defaults_reject_the_contract_and_required_bindings_and_warn_on_codes() {
        let policy = Policy::default();
        let required = Rule::Binding("required".into());
        assert_eq!(policy.action("Patient", &Rule::Structure), Action::Reject);
        assert_eq!(policy.action("Patient", &required), Action::Reject);
        let extensible = Rule::Binding("extensible".into());
        assert_eq!(policy.action("Patient", &extensible), Action::Warn);
        for system in [SNOMED, LOINC, "http://hl7.org/fhir/sid/icd-10-cm"] {
            assert_eq!(
                policy.action("Condition", &Rule::Code(system.into())),
                Action::Warn
            );
        }
        assert!(!policy.is_off_for("Patient"));
        assert!(Policy::off().is_off_for("Patient"));
        assert_eq!(policy.action("Patient", &Rule::EmptyElement), Action::Warn);
        assert_eq!(
            Policy::off().action("Patient", &Rule::EmptyElement),
            Action::Off
        );
    }

    #[test]
    fn empty_elements_may_be_refused_or_dropped_silently_per_type() {
        let policy = parse(json!({"default": {"empty-elements": "reject"},
            "types": {"Patient": {"empty-elements": "off"}}}));
        assert_eq!(
            policy.action("Observation", &Rule::EmptyElement),
            Action::Reject
        );
        assert_eq!(policy.action("Patient", &Rule::EmptyElement), Action::Off);
        assert_eq!(policy.action("Patient", &Rule::Structure), Action::Reject);
        // Rejecting empty elements alone leaves the walk off.
        let only = parse(json!({"default": {"structure": "off", "codes": "off",
            "required-bindings": "off", "extensible-bindings": "off",
            "empty-elements": "reject"}}));
        assert!(only.is_off_for("Patient"));
        assert_eq!(only.action("Patient", &Rule::EmptyElement), Action::Reject);
    }

    #[test]
    fn the_most_specific_setting_decides() {
        let policy = parse(json!({
            "default": {"codes": "off", "systems": {LOINC: "reject"}, "structure": "warn"},
            "types": {
                "Observation": {"codes": "warn", "systems": {SNOMED: "reject"}},
                "Basic": {"structure": "off", "codes": "off"}
            }
        }));
        let code = |system: &str| Rule::Code(system.into());
        // A type's system setting, then the default's system setting, then the type's codes.
        assert_eq!(policy.action("Observation", &code(SNOMED)), Action::Reject);
        assert_eq!(policy.action("Observation", &code(LOINC)), Action::Reject);
        assert_eq!(policy.action("Observation", &code("urn:x")), Action::Warn);
        assert_eq!(policy.action("Patient", &code("urn:x")), Action::Off);
        assert_eq!(policy.action("Patient", &code(LOINC)), Action::Reject);
        assert_eq!(policy.action("Patient", &Rule::Structure), Action::Warn);
        assert_eq!(policy.action("Basic", &Rule::Structure), Action::Off);
        // Basic still has bindings (built in) and LOINC (the default's).
        assert!(!policy.is_off_for("Basic"));
        let silent = parse(json!({"default": {"structure": "off", "codes": "off",
            "required-bindings": "off", "extensible-bindings": "off"}}));
        assert!(silent.is_off_for("Patient"));
    }

    #[test]
    fn judging_rejects_warns_or_drops() {
        let policy = parse(json!({"default": {"systems": {SNOMED: "reject", LOINC: "off"}}}));
        let mut warning = error(Rule::Structure);
        warning.severity = Severity::Warning;
        let report = Report {
            issues: vec![
                error(Rule::Structure),
                warning,
                error(Rule::Code(SNOMED.into())),
                error(Rule::Code(LOINC.into())),
                error(Rule::Binding("extensible".into())),
            ],
            unchecked: Vec::new(),
        };
        let judgement = policy.judge("Patient", report);
        let rules =
            |issues: &[Issue]| -> Vec<Rule> { issues.iter().map(|i| i.rule.clone()).collect() };
        assert_eq!(
            rules(&judgement.rejections),
            [Rule::Structure, Rule::Code(SNOMED.into())]
        );
        assert_eq!(
            rules(&judgement.warnings),
            [Rule::Structure, Rule::Binding("extensible".into())]
        );
        assert!(
            judgement
                .warnings
                .iter()
                .all(|i| i.severity == Severity::Warning)
        );
    }

    #[test]
    fn a_policy_with_a_misspelt_setting_is_refused() {
        let result: Result<Policy, _> =
            serde_json::from_value(json!({"default": {"structures": "warn"}}));
        assert!(result.is_err());
        let result: Result<Policy, _> =
            serde_json::from_value(json!({"default": {"structure": "ignore"}}));
        assert!(result.is_err());
    }
}
