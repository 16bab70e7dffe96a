//! Checks a resource against the base StructureDefinition of its type, or against a profile:
//! cardinality, choice types, fixed and pattern values, the invariants, and the format of
//! every primitive value ([`primitives`]), recursively through backbone elements, complex data
//! types, the extensions of primitives (`_birthDate`), and contained and Bundle-entry resources;
//! against a profile, also its slicings (`structure/slicing.rs`) and the profiles its types
//! name.
//!
//! The model (fhirbolt) has already rejected unknown elements and wrong JSON types when this
//! runs, so the walk follows the definitions and never the JSON's own keys: for each child
//! element of the current path, the JSON members that hold it (a choice `value[x]` is every
//! `valueX` whose type the element allows, and one of a type a profile leaves out is an issue;
//! two of them is an error), their count against `min`/`max`, fixed and pattern values, and the
//! element's invariants, checked by `Constraint::holds` on each value with `%resource`
//! and `%rootResource` (the container of a contained resource). Backbone elements and
//! `contentReference`s recurse within the definition; complex data types recurse into their own
//! definition (whose root holds invariants such as Period's `per-1`); contained resources and
//! Bundle entries are validated as resources, against their base definitions. A primitive given
//! by its extensions only (`_status`) counts as present.
//!
//! The profiles a type names are followed when registered (a `CodeableConcept-uv-ips` type
//! is; the target of `Reference(Patient-uv-ips)` is not). An invariant that goes beyond the
//! FHIRPath limits on a resource is an issue (`too-costly`, with the invariant's severity),
//! not a pass: a narrative too large to check is not taken to be safe.
//!
//! Invariant: every issue names where it is with a FHIRPath-style location
//! (`Patient.contact[0].name`), and an invariant that cannot be evaluated (a function the
//! evaluator lacks) is never reported as a failure, nor is a profile that is not registered,
//! nor a slicing whose discriminators cannot be evaluated: they are listed as unchecked.

mod slicing;

use super::codes::Codes;
use super::definitions::{Definition, Definitions, ElementDef};
use super::primitives;
use super::profiles::ProfileSet;
use crate::fhir::IssueCode;
pub use crate::fhir::Severity;
use crate::fhirpath::EvalError;
use serde_json::{Map, Value};

/// Which kind of rule an issue breaks: what a validation policy decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// The contract: cardinality, types, fixed and pattern values, invariants, slicing and
    /// profiles.
    Structure,
    /// A code is not in the value set of a binding of this strength (`required`,
    /// `extensible`).
    Binding(String),
    /// A code and its code system (this one): the code is unknown, not in the part held, or
    /// its display matches none of its names.
    Code(String),
    /// An empty element (`{}`, `[]`, `""`, `null`) the write took in and dropped.
    EmptyElement,
}

impl std::fmt::Display for Rule {
    /// The rule as a policy names it (`structure`, `binding required`, `code <system>`,
    /// `empty-elements`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rule::Structure => write!(f, "structure"),
            Rule::Binding(strength) => write!(f, "binding {strength}"),
            Rule::Code(system) => write!(f, "code {system}"),
            Rule::EmptyElement => write!(f, "empty-elements"),
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub severity: Severity,
    pub code: IssueCode,
    pub rule: Rule,
    /// Where: a FHIRPath location in the resource.
    pub expression: String,
    pub diagnostics: String,
}

/// What the validation of one resource found.
#[derive(Debug, Default)]
pub struct Report {
    pub issues: Vec<Issue>,
    /// What could not be checked (not failures): invariants the evaluator cannot evaluate, by
    /// key; bindings whose membership cannot be decided here, by value set URL; codes the
    /// terminology failed to look up, by code system URL; profiles named by a type but not
    /// registered, by canonical url; slicings whose values could not all be put in a slice, as
    /// `slicing <element id>`.
    pub unchecked: Vec<String>,
}

impl Report {
    pub fn errors(&self) -> impl Iterator<Item = &Issue> {
        self.issues.iter().filter(|i| i.severity == Severity::Error)
    }
}

/// Checks `resource` against the base definition of its type.
pub fn validate(resource: &Value) -> Report {
    walk(resource, None)
}

/// [`validate`], and with `codes` the codes met on the way too ([`super::codes`]).
pub(super) fn walk(resource: &Value, codes: Option<Codes>) -> Report {
    let mut walk = Walk {
        definitions: Definitions::r4(),
        codes,
        profiles: None,
        report: Report::default(),
    };
    let type_name = resource["resourceType"].as_str().unwrap_or("Resource");
    walk.resource(resource, resource, type_name);
    walk.report
}

/// Checks `resource` against `profile`, following the profiles of its types and slices that
/// `profiles` holds, and with `codes` its codes too (the profile's bindings included). A
/// profile's snapshot holds the rules of the base definition, so this finds what [`validate`]
/// finds, and more.
pub fn validate_profile(
    resource: &Value,
    profile: &Definition,
    profiles: &ProfileSet,
    codes: Option<Codes>,
) -> Report {
    let mut walk = Walk {
        definitions: Definitions::r4(),
        codes,
        profiles: Some(profiles),
        report: Report::default(),
    };
    let location = resource["resourceType"]
        .as_str()
        .unwrap_or(&profile.root().path);
    walk.resource_as(profile, resource, resource, location);
    walk.report
}

struct Walk<'d, 't> {
    definitions: &'d Definitions,
    codes: Option<Codes<'t>>,
    /// The profiles types and slices may name; None when checking a base definition, whose
    /// type profiles (`SimpleQuantity`) are then not followed.
    profiles: Option<&'d ProfileSet>,
    report: Report,
}

impl<'d> Walk<'d, '_> {
    /// A whole resource at `location`, contained in `root` (or `root` itself): its root
    /// invariants, then its elements.
    fn resource(&mut self, resource: &Value, root: &Value, location: &str) {
        let Some(type_name) = resource["resourceType"].as_str() else {
            return self.issue(
                Severity::Error,
                IssueCode::Structure,
                location,
                "a resource without a resourceType".into(),
            );
        };
        let Some(definition) = self.definitions.get(type_name) else {
            return self.issue(
                Severity::Error,
                IssueCode::Structure,
                location,
                format!("'{type_name}' is not an R4 resource type"),
            );
        };
        self.conform(definition, resource, [resource, root], location);
    }

    /// A resource (`root` or contained in it) checked against `profile`, a profile of its
    /// type.
    fn resource_as(
        &mut self,
        profile: &'d Definition,
        resource: &Value,
        root: &Value,
        location: &str,
    ) {
        let type_name = profile.root().path.as_str();
        if resource["resourceType"] != type_name {
            return self.issue(
                Severity::Error,
                IssueCode::Structure,
                location,
                format!(
                    "{} is a profile of {type_name}, which this is not",
                    profile.url
                ),
            );
        }
        self.conform(profile, resource, [resource, root], location);
    }

    /// A value checked against `definition`, the definition (or a profile) of its type: the
    /// invariants of the root, then the elements.
    fn conform(
        &mut self,
        definition: &'d Definition,
        item: &Value,
        resources: [&Value; 2],
        location: &str,
    ) {
        let root = definition.root();
        self.invariants(root, item, Some(&root.path), resources, location);
        self.children(definition, root.key(), item, resources, location);
    }

    /// The child elements of the element known by `key` in `definition`, in `value` (an
    /// object).
    fn children(
        &mut self,
        definition: &'d Definition,
        key: &str,
        value: &Value,
        resources: [&Value; 2],
        location: &str,
    ) {
        let Some(object) = value.as_object() else {
            return;
        };
        for element in definition.children(key) {
            let name = element.name();
            // (member name, its type when the name says it) for each JSON member of this
            // element: one for a plain element, any number of typed ones for a choice.
            let members: Vec<(&str, Option<&str>)> = match name.strip_suffix("[x]") {
                None => object
                    .get_key_value(name)
                    .map(|(key, _)| (key.as_str(), single_type(element)))
                    .into_iter()
                    .collect(),
                Some(base) => self.choice_members(element, base, object, location),
            };
            let here = |key: &str| format!("{location}.{key}");
            if name.ends_with("[x]") && members.len() > 1 {
                self.issue(
                    Severity::Error,
                    IssueCode::Structure,
                    &here(name.trim_end_matches("[x]")),
                    format!("{} has values of several types", element.path),
                );
            }
            let mut count: usize = members.iter().map(|(key, _)| values(object, key)).sum();
            if count < element.min as usize {
                count += extensions_only(object, name, element);
            }
            if count < element.min as usize {
                self.issue(
                    Severity::Error,
                    IssueCode::Required,
                    &here(name.trim_end_matches("[x]")),
                    format!(
                        "{} needs at least {} value(s), it has {count}",
                        element.path, element.min
                    ),
                );
            }
            if element.max().is_some_and(|max| count > max) {
                self.issue(
                    Severity::Error,
                    IssueCode::Structure,
                    &here(name.trim_end_matches("[x]")),
                    format!(
                        "{} allows at most {} value(s), it has {count}",
                        element.path, element.max
                    ),
                );
            }
            match &element.slicing {
                Some(slicing) if self.profiles.is_some() => {
                    let mut values = Vec::new();
                    each_value(object, &members, location, |ty, item, at| {
                        values.push((ty, item, at))
                    });
                    let at = here(name.trim_end_matches("[x]"));
                    self.sliced(definition, element, slicing, values, resources, &at);
                }
                _ => each_value(object, &members, location, |ty, item, at| {
                    self.value(definition, element, ty, item, resources, &at)
                }),
            }
        }
        self.primitive_extensions(object, resources, location);
    }

    /// The id and extensions of the primitive values in `object` (`_birthDate`, `_given`, with
    /// `null` for a value that has none): each checked as an element of its own, located at
    /// its value (`Patient.name[0].given[1].extension[0]`).
    fn primitive_extensions(
        &mut self,
        object: &Map<String, Value>,
        resources: [&Value; 2],
        location: &str,
    ) {
        let Some(element) = self.definitions.get("BackboneElement") else {
            return;
        };
        for (key, partner) in object {
            let Some(name) = key.strip_prefix('_') else {
                continue;
            };
            let at = format!("{location}.{name}");
            match partner {
                Value::Array(items) => {
                    for (n, item) in items.iter().enumerate() {
                        let at = format!("{at}[{n}]");
                        self.children(element, &element.root().path, item, resources, &at);
                    }
                }
                item => self.children(element, &element.root().path, item, resources, &at),
            }
        }
    }

    /// The JSON members of a choice element in `object` (`valueQuantity`, ...), each with
    /// its type. A member of a type the element does not allow (a profile narrows the types
    /// of the base) is an issue.
    fn choice_members<'v>(
        &mut self,
        element: &'d ElementDef,
        base: &str,
        object: &'v Map<String, Value>,
        location: &str,
    ) -> Vec<(&'v str, Option<&'d str>)> {
        let mut members = Vec::new();
        for key in object.keys() {
            let Some(suffix) = key.strip_prefix(base) else {
                continue;
            };
            match element
                .types
                .iter()
                .find(|t| capitalised(&t.code) == suffix)
            {
                Some(ty) => members.push((key.as_str(), Some(ty.code.as_str()))),
                None if self.is_type_name(suffix) => self.issue(
                    Severity::Error,
                    IssueCode::Structure,
                    &format!("{location}.{key}"),
                    format!("{} does not allow the type {suffix}", element.path),
                ),
                None => {}
            }
        }
        members
    }

    /// Whether `name`, capitalised, is an R4 data type (`Quantity`, `DateTime`).
    fn is_type_name(&self, name: &str) -> bool {
        self.definitions
            .get(name)
            .is_some_and(|d| d.kind == "complex-type")
            || PRIMITIVE_TYPES.iter().any(|p| capitalised(p) == name)
    }

    /// One value of `element`, of type `ty` when known.
    fn value(
        &mut self,
        definition: &'d Definition,
        element: &'d ElementDef,
        ty: Option<&str>,
        item: &Value,
        resources: [&Value; 2],
        location: &str,
    ) {
        if let Some(ty) = ty
            && let Some((severity, message)) =
                primitives::check(primitive_type(definition, element, ty), item)
        {
            self.issue(severity, IssueCode::Value, location, message);
        }
        if let Some(fixed) = &element.fixed
            && fixed != item
        {
            self.issue(
                Severity::Error,
                IssueCode::Value,
                location,
                format!("{} must be exactly {fixed}", element.path),
            );
        }
        if let Some(pattern) = &element.pattern
            && !matches_pattern(item, pattern)
        {
            self.issue(
                Severity::Error,
                IssueCode::Value,
                location,
                format!("{} must match the pattern {pattern}", element.path),
            );
        }
        self.invariants(element, item, ty, resources, location);
        if let (Some(codes), Some(ty)) = (self.codes, ty) {
            codes.check(element, ty, item, location, &mut self.report);
        }
        if let Some(target) = &element.content_reference {
            return self.children(definition, target, item, resources, location);
        }
        if definition.has_children(element.key()) {
            return self.children(definition, element.key(), item, resources, location);
        }
        if let Some(type_name) = ty {
            self.typed(element, type_name, item, resources, location);
        }
    }

    /// A value of `element` of type `type_name` that its definition does not detail: checked
    /// against the profile of the type the element names (when checking a profile and that
    /// one is registered), else against the base definition of the type. The type's own
    /// invariants (`per-1` of Period) are on its root.
    fn typed(
        &mut self,
        element: &'d ElementDef,
        type_name: &str,
        item: &Value,
        resources: [&Value; 2],
        location: &str,
    ) {
        // A contained resource's root is its container's; a resource in a Bundle entry or a
        // Parameters part is a root itself.
        let root = || {
            if element.name() == "contained" {
                resources[1]
            } else {
                item
            }
        };
        let profiles = self.type_profiles(element, type_name);
        let profile = match profiles.as_slice() {
            [] => None,
            [only] => Some(*only),
            // Any of them will do: the first the value conforms to, else the first.
            several => several
                .iter()
                .find(|p| self.conforms(p, item, root(), resources))
                .or(several.first())
                .copied(),
        };
        if let Some(profile) = profile {
            return self.profiled(profile, item, root(), resources, location);
        }
        if type_name == "Resource" {
            return self.resource(item, root(), location);
        }
        match self.definitions.get(type_name) {
            Some(data_type) if data_type.kind == "complex-type" => {
                self.conform(data_type, item, resources, location)
            }
            // The resource type a profile's slice names.
            Some(_) => self.resource(item, root(), location),
            None => {}
        }
    }

    /// The registered profiles of `type_name` that `element` names, when checking a profile;
    /// a named profile that is not registered is listed as unchecked.
    fn type_profiles(&mut self, element: &ElementDef, type_name: &str) -> Vec<&'d Definition> {
        let Some(profiles) = self.profiles else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for url in element
            .types
            .iter()
            .filter(|t| t.code == type_name)
            .flat_map(|t| &t.profile)
        {
            match profiles.get(url) {
                Some(profile) => found.push(profile),
                None => self.unchecked(url.clone()),
            }
        }
        found
    }

    /// A value checked against `profile`, a profile of a data type, or of a resource type
    /// (`root` being the resource the value is contained in, or the value).
    fn profiled(
        &mut self,
        profile: &'d Definition,
        item: &Value,
        root: &Value,
        resources: [&Value; 2],
        location: &str,
    ) {
        match profile.kind.as_str() {
            "resource" => self.resource_as(profile, item, root, location),
            _ => self.conform(profile, item, resources, location),
        }
    }

    /// Whether `item` conforms to `profile`: checked apart, the issues found dropped.
    fn conforms(
        &self,
        profile: &'d Definition,
        item: &Value,
        root: &Value,
        resources: [&Value; 2],
    ) -> bool {
        let mut walk = Walk {
            report: Report::default(),
            ..*self
        };
        walk.profiled(profile, item, root, resources, &profile.root().path);
        walk.report.errors().next().is_none()
    }

    /// The invariants of `element` on one of its values.
    fn invariants(
        &mut self,
        element: &ElementDef,
        item: &Value,
        ty: Option<&str>,
        resources: [&Value; 2],
        location: &str,
    ) {
        for constraint in &element.constraints {
            let severity = if constraint.severity == "error" {
                Severity::Error
            } else {
                Severity::Warning
            };
            match constraint.holds(item, ty, resources) {
                Err(EvalError::Invalid(_)) => self.report.unchecked.push(constraint.key.clone()),
                // Too costly on this value: not known to hold, so not let pass (a narrative
                // too large to check is not taken to be free of scripts).
                Err(EvalError::Exceeded(why)) => self.issue(
                    severity,
                    IssueCode::TooCostly,
                    location,
                    format!("{}: cannot be checked here: {why}", constraint.key),
                ),
                Ok(holds) => {
                    if !holds {
                        self.issue(
                            severity,
                            IssueCode::Invariant,
                            location,
                            format!("{}: {}", constraint.key, constraint.human),
                        );
                    }
                }
            }
        }
    }

    /// Lists what could not be checked, once.
    fn unchecked(&mut self, what: String) {
        if !self.report.unchecked.contains(&what) {
            self.report.unchecked.push(what);
        }
    }

    fn issue(&mut self, severity: Severity, code: IssueCode, location: &str, diagnostics: String) {
        self.report.issues.push(Issue {
            severity,
            code,
            rule: Rule::Structure,
            expression: location.to_string(),
            diagnostics,
        });
    }
}

/// The R4 primitive types a choice element may take.
const PRIMITIVE_TYPES: &[&str] = &[
    "base64Binary",
    "boolean",
    "canonical",
    "code",
    "date",
    "dateTime",
    "decimal",
    "id",
    "instant",
    "integer",
    "markdown",
    "oid",
    "positiveInt",
    "string",
    "time",
    "unsignedInt",
    "uri",
    "url",
    "uuid",
];

/// The type code of a value of `element` of type `code`, for [`primitives::check`]: R4's
/// snapshots give `id` elements and `Extension.url` the FHIRPath type `System.String`, which
/// stands for `string` but for an extension's url (`uri`) and a resource's id (`id`).
fn primitive_type<'a>(definition: &Definition, element: &ElementDef, code: &'a str) -> &'a str {
    if code != "http://hl7.org/fhirpath/System.String" {
        return code;
    }
    let own_id = element
        .path
        .strip_prefix(definition.root().path.as_str())
        .is_some_and(|rest| rest == ".id");
    if element.path == "Extension.url" {
        "uri"
    } else if definition.kind == "resource" && own_id {
        "id"
    } else {
        "string"
    }
}

/// Each value of the JSON `members` of one element in `object` (an array member gives one
/// per item, but for the `null`s that align a primitive array with its extensions: no value
/// there, its extensions are walked with the others), with its type when known and its
/// location below `location`.
fn each_value<'v, 't>(
    object: &'v Map<String, Value>,
    members: &[(&str, Option<&'t str>)],
    location: &str,
    mut f: impl FnMut(Option<&'t str>, &'v Value, String),
) {
    for (key, ty) in members {
        match &object[*key] {
            Value::Array(items) => {
                for (n, item) in items.iter().enumerate().filter(|(_, i)| !i.is_null()) {
                    f(*ty, item, format!("{location}.{key}[{n}]"))
                }
            }
            item => f(*ty, item, format!("{location}.{key}")),
        }
    }
}

/// How many values the member `key` of `object` has.
fn values(object: &Map<String, Value>, key: &str) -> usize {
    match object.get(key) {
        Some(Value::Array(items)) => items.len(),
        Some(_) => 1,
        None => 0,
    }
}

/// How many values of `element` (named `name`) in `object` are primitives given by their
/// extensions only (`_birthDate` without `birthDate`, as a data-absent-reason is): they are
/// there.
fn extensions_only(object: &Map<String, Value>, name: &str, element: &ElementDef) -> usize {
    let only = |key: &str| {
        if object.contains_key(key) {
            0
        } else {
            values(object, &format!("_{key}"))
        }
    };
    match name.strip_suffix("[x]") {
        None => only(name),
        Some(base) => element
            .types
            .iter()
            .map(|t| only(&format!("{base}{}", capitalised(&t.code))))
            .sum(),
    }
}

/// The one type of an element that has one.
fn single_type(element: &ElementDef) -> Option<&str> {
    match element.types.as_slice() {
        [only] => Some(only.code.as_str()),
        _ => None,
    }
}

/// `dateTime` -> `DateTime`: how a choice member's name spells its type.
fn capitalised(code: &str) -> String {
    let mut chars = code.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// FHIR pattern matching: every member of `pattern` is in `value` with a matching value; each
/// item of a pattern array matches some item of the value's array.
fn matches_pattern(value: &Value, pattern: &Value) -> bool {
    match (value, pattern) {
        (Value::Object(value), Value::Object(pattern)) => pattern
            .iter()
            .all(|(key, p)| value.get(key).is_some_and(|v| matches_pattern(v, p))),
        (Value::Array(values), Value::Array(patterns)) => patterns
            .iter()
            .all(|p| values.iter().any(|v| matches_pattern(v, p))),
        (value, pattern) => value == pattern,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::test_data::failing_examples;
    use serde_json::json;

    fn errors(resource: &Value) -> Vec<String> {
        validate(resource)
            .errors()
            .map(|i| format!("{} {}", i.expression, i.diagnostics))
            .collect()
    }

    /// Official R4 examples that break a rule of R4 itself, each checked by hand against the
    /// rule the validator names (the examples package ships definitions as they were).
    const INVALID_EXAMPLES: &[(&str, &str)] = &[
        (
            "ActivityDefinition/blood-tubes-supply",
            "txt-2 (and so txt-1, the same htmlChecks()): a narrative of whitespace only",
        ),
        ("ActivityDefinition/heart-valve-replacement", "txt-2"),
        ("EventDefinition/example", "txt-2"),
        ("Questionnaire/zika-virus-exposure-assessment", "txt-2"),
        ("Bundle/dataelements", "bdl-7: two entries share a fullUrl"),
        (
            "ImplementationGuide/fhir",
            "no name and no status (both 1..1)",
        ),
        ("Questionnaire/qs1", "nested items without linkId (1..1)"),
        (
            "StructureDefinition/Definition",
            "sdf-4: not abstract, no baseDefinition",
        ),
        ("StructureDefinition/Event", "sdf-4"),
        ("StructureDefinition/FiveWs", "sdf-4"),
        ("StructureDefinition/Request", "sdf-4"),
        (
            "SearchParameter/codesystem-extensions-CodeSystem-author",
            "no base (1..*)",
        ),
        (
            "SearchParameter/codesystem-extensions-CodeSystem-effective",
            "no base",
        ),
        (
            "SearchParameter/codesystem-extensions-CodeSystem-end",
            "no base",
        ),
        (
            "SearchParameter/codesystem-extensions-CodeSystem-keyword",
            "no base",
        ),
        (
            "SearchParameter/codesystem-extensions-CodeSystem-workflow",
            "no base",
        ),
        (
            "SearchParameter/questionnaireresponse-extensions-QuestionnaireResponse-item-subject",
            "its id has 67 characters: an id has at most 64",
        ),
        (
            "SearchParameter/valueset-extensions-ValueSet-author",
            "no base",
        ),
        (
            "SearchParameter/valueset-extensions-ValueSet-effective",
            "no base",
        ),
        (
            "SearchParameter/valueset-extensions-ValueSet-end",
            "no base",
        ),
        (
            "SearchParameter/valueset-extensions-ValueSet-keyword",
            "no base",
        ),
        (
            "SearchParameter/valueset-extensions-ValueSet-workflow",
            "no base",
        ),
    ];

    /// Every valid official R4 example passes with no error, and the invalid ones (above) are
    /// caught.
    #[test]
    fn the_official_examples_are_valid_but_the_known_invalid_ones() {
        let failing = failing_examples(errors);
        let expected: Vec<&str> = INVALID_EXAMPLES.iter().map(|(name, _)| *name).collect();
        let found: Vec<&str> = failing.keys().map(String::as_str).collect();
        let mut expected_sorted = expected.clone();
        expected_sorted.sort();
        assert_eq!(found, expected_sorted, "{failing:#?}");
    }

    #[test]
    fn broken_resources_are_caught_where_they_break() {
        // A missing required element.
        let observation = json!({"resourceType": "Observation",
            "code": {"text": "x"}});
        assert_eq!(
            errors(&observation),
            ["Observation.status Observation.status needs at least 1 value(s), it has 0"]
        );
        // An invariant: a contact needs a name, telecom, address or organization (pat-1).
        let patient = json!({"resourceType": "Patient", "contact": [{"gender": "male"}]});
        let found = errors(&patient);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("Patient.contact[0] pat-1:"),
            "{found:?}"
        );
        // An invariant of a data type, deep inside: a Period's start after its end (per-1).
        let encounter = json!({"resourceType": "Encounter", "status": "finished",
            "class": {"code": "AMB"},
            "participant": [{"period": {"start": "2020-02-01", "end": "2020-01-01"}}]});
        let found = errors(&encounter);
        assert!(
            found
                .iter()
                .any(|e| e.starts_with("Encounter.participant[0].period per-1:")),
            "{found:?}"
        );
        // Two types for one choice element, and a resource in a Bundle entry.
        let bundle = json!({"resourceType": "Bundle", "type": "collection",
            "entry": [{"resource": {"resourceType": "Observation", "status": "final",
                "code": {"text": "x"}, "valueString": "a", "valueBoolean": true}}]});
        let found = errors(&bundle);
        assert!(
            found
                .iter()
                .any(|e| e.starts_with("Bundle.entry[0].resource.value ")),
            "{found:?}"
        );
    }

    #[test]
    fn a_primitive_given_by_its_extensions_only_is_there() {
        let absent = json!({"extension": [{"url":
            "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}]});
        let observation = json!({"resourceType": "Observation", "_status": absent,
            "code": {"text": "x"}});
        assert_eq!(errors(&observation), Vec::<String>::new());
        // A choice: Questionnaire.item.enableWhen.answer[x] is 1..1.
        let mut questionnaire = json!({"resourceType": "Questionnaire", "status": "draft",
            "item": [{"linkId": "1", "type": "boolean"}, {"linkId": "2", "type": "string",
                "enableWhen": [{"question": "1", "operator": "=", "_answerBoolean": absent}]}]});
        assert_eq!(errors(&questionnaire), Vec::<String>::new());
        let when = &mut questionnaire["item"][1]["enableWhen"][0];
        when.as_object_mut().unwrap().remove("_answerBoolean");
        assert_eq!(
            errors(&questionnaire),
            [
                "Questionnaire.item[1].enableWhen[0].answer Questionnaire.item.enableWhen.answer[x] \
              needs at least 1 value(s), it has 0"
            ]
        );
    }

    #[test]
    fn patterns_match_subsets() {
        let pattern = json!({"coding": [{"system": "s", "code": "c"}]});
        let value = json!({"coding": [{"system": "x"}, {"system": "s", "code": "c", "display": "d"}],
            "text": "t"});
        assert!(matches_pattern(&value, &pattern));
        assert!(!matches_pattern(
            &json!({"coding": [{"system": "s"}]}),
            &pattern
        ));
    }
}
