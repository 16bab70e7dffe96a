//! The search parameters fhirlake knows: the official FHIR R4 SearchParameter definitions
//! shipped in `fhir-profiles/search-parameters.json` (without the specification's example
//! SearchParameters: each type and code is defined once), parsed once.
//!
//! Each parameter keeps its FHIRPath expression specialised per resource type: the shared
//! definitions (`Patient.name | Person.name | ...`) are cut to the branches of that type, so
//! extraction evaluates only what can match.
//!
//! A registry also knows which references are this server's ([`Base`]): what reference
//! parameters index, match and include, and what puts a resource in a compartment, all read
//! references through it.

use super::fulltext;
use crate::fhir::reference::Base;
use crate::fhirpath::{self, Expr};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The R4 definitions, as shipped.
const R4_PARAMETERS: &str = include_str!("../../fhir-profiles/search-parameters.json");

/// The type of a search parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamType {
    Number,
    Date,
    String,
    Token,
    Reference,
    Composite,
    Quantity,
    Uri,
    Special,
}

impl ParamType {
    fn parse(text: &str) -> Option<ParamType> {
        Some(match text {
            "number" => ParamType::Number,
            "date" => ParamType::Date,
            "string" => ParamType::String,
            "token" => ParamType::Token,
            "reference" => ParamType::Reference,
            "composite" => ParamType::Composite,
            "quantity" => ParamType::Quantity,
            "uri" => ParamType::Uri,
            "special" => ParamType::Special,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::Number => "number",
            ParamType::Date => "date",
            ParamType::String => "string",
            ParamType::Token => "token",
            ParamType::Reference => "reference",
            ParamType::Composite => "composite",
            ParamType::Quantity => "quantity",
            ParamType::Uri => "uri",
            ParamType::Special => "special",
        }
    }
}

/// One part of a composite parameter: the parameter it reuses, and the expression relative to
/// the composite's element.
#[derive(Debug, Clone)]
pub struct Component {
    pub definition: String,
    pub expression: Expr,
}

/// A search parameter as it applies to one resource type.
#[derive(Debug, Clone)]
pub struct SearchParam {
    pub code: String,
    pub url: String,
    pub kind: ParamType,
    /// The FHIRPath expression for this resource type; None when the definition has none (the
    /// parameter is then not supported).
    pub expression: Option<Expr>,
    /// The expression as the definition writes it.
    pub expression_text: Option<String>,
    /// The resource types a reference parameter may point to.
    pub targets: Vec<String>,
    pub components: Vec<Component>,
    pub description: String,
}

/// Every search parameter, by resource type and code.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    by_type: HashMap<String, BTreeMap<String, Arc<SearchParam>>>,
    by_url: HashMap<String, Arc<SearchParam>>,
    /// Definitions that could not be used, with the reason (reported in the
    /// CapabilityStatement).
    pub unsupported: Vec<(String, String)>,
    /// Which references are this server's.
    pub base: Base,
}

impl Registry {
    /// The registry of the official R4 definitions.
    pub fn r4() -> Registry {
        let bundle: Value = serde_json::from_str(R4_PARAMETERS).expect("the shipped definitions");
        let mut registry = Registry::default();
        for entry in bundle["entry"]
            .as_array()
            .expect("a Bundle of SearchParameters")
        {
            registry.add(&entry["resource"]);
        }
        for definition in view_definition_parameters() {
            registry.add(&definition);
        }
        registry
    }

    /// Adds one SearchParameter resource; a definition that cannot be used is recorded in
    /// [`Registry::unsupported`].
    pub fn add(&mut self, definition: &Value) {
        let text = |name: &str| definition.get(name).and_then(Value::as_str);
        let url = text("url").unwrap_or_default().to_string();
        let Some(code) = text("code") else {
            self.unsupported.push((url, "no code".into()));
            return;
        };
        let Some(kind) = text("type").and_then(ParamType::parse) else {
            self.unsupported.push((url, "no valid type".into()));
            return;
        };
        let expression_text = text("expression").map(String::from);
        let parsed = match expression_text.as_deref().map(fhirpath::parse) {
            Some(Ok(expr)) => Some(expr),
            Some(Err(error)) => {
                self.unsupported
                    .push((url, format!("expression does not parse: {error}")));
                return;
            }
            None => None,
        };
        if parsed.is_none() && !matches!(code, "_text" | "_content" | "_id" | "_lastUpdated") {
            self.unsupported.push((
                url.clone(),
                "the definition has no FHIRPath expression".into(),
            ));
        }
        let mut components = Vec::new();
        for component in definition["component"].as_array().into_iter().flatten() {
            let expression = component["expression"].as_str().map(fhirpath::parse);
            match (component["definition"].as_str(), expression) {
                (Some(definition), Some(Ok(expression))) => components.push(Component {
                    definition: definition.to_string(),
                    expression,
                }),
                _ => {
                    self.unsupported
                        .push((url.clone(), "a composite component cannot be read".into()));
                    return;
                }
            }
        }
        let targets: Vec<String> = definition["target"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(String::from))
            .collect();
        for resource_type in types_of(definition) {
            let param = Arc::new(SearchParam {
                code: code.to_string(),
                url: url.clone(),
                kind,
                expression: parsed.as_ref().map(|e| specialise(e, resource_type)),
                expression_text: expression_text.clone(),
                targets: targets.clone(),
                components: components.clone(),
                description: text("description").unwrap_or_default().to_string(),
            });
            self.by_url
                .entry(url.clone())
                .or_insert_with(|| param.clone());
            self.by_type
                .entry(resource_type.to_string())
                .or_default()
                .insert(code.to_string(), param);
        }
    }

    /// The R4 registry, built once for the whole process.
    pub fn r4_shared() -> &'static Registry {
        static REGISTRY: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
        REGISTRY.get_or_init(Registry::r4)
    }

    /// The R4 registry of a server whose public base is `base`: [`Registry::r4_shared`] when
    /// there is none, else a copy of it made once per call and kept for the process (one per
    /// server: the definitions are shared, only the base differs).
    pub fn r4_with_base(base: Base) -> &'static Registry {
        if base.url().is_none() {
            return Registry::r4_shared();
        }
        let mut registry = Registry::r4_shared().clone();
        registry.base = base;
        Box::leak(Box::new(registry))
    }

    /// The parameters of `resource_type` that search supports: the full-text ones (`_text`,
    /// `_content`, which have no expression) and those with an expression, other than
    /// composites whose components search cannot match and special ones other than `near`.
    pub fn searchable(&self, resource_type: &str) -> impl Iterator<Item = &SearchParam> {
        self.params(resource_type).filter(|p| {
            fulltext::Source::of(&p.code).is_some()
                || p.expression.is_some()
                    && match p.kind {
                        ParamType::Special => p.code == "near",
                        ParamType::Composite => self.composite_kinds(p).is_some(),
                        _ => true,
                    }
        })
    }

    /// The types of a composite's components, when search supports it: every component is
    /// defined, and the leading ones are matched exactly (token, reference, uri or string).
    pub fn composite_kinds(&self, param: &SearchParam) -> Option<Vec<ParamType>> {
        let kinds: Vec<ParamType> = param
            .components
            .iter()
            .map(|c| self.by_url(&c.definition).map(|p| p.kind))
            .collect::<Option<_>>()?;
        let (_, leading) = kinds.split_last()?;
        leading
            .iter()
            .all(|k| {
                matches!(
                    k,
                    ParamType::Token | ParamType::Reference | ParamType::Uri | ParamType::String
                )
            })
            .then_some(kinds)
    }

    /// The parameter `code` of `resource_type`.
    pub fn get(&self, resource_type: &str, code: &str) -> Option<&SearchParam> {
        self.by_type.get(resource_type)?.get(code).map(Arc::as_ref)
    }

    /// The parameter defined at `url` (for composite components).
    pub fn by_url(&self, url: &str) -> Option<&SearchParam> {
        self.by_url.get(url).map(Arc::as_ref)
    }

    /// Every parameter of `resource_type`, by code.
    pub fn params(&self, resource_type: &str) -> impl Iterator<Item = &SearchParam> {
        self.by_type
            .get(resource_type)
            .into_iter()
            .flat_map(|params| params.values().map(Arc::as_ref))
    }
}

/// The resource types a definition applies to: its bases, `Resource` standing for every type
/// and `DomainResource` for every type but Bundle, Binary and Parameters.
fn types_of(definition: &Value) -> Vec<&str> {
    let mut types: Vec<&str> = Vec::new();
    for base in definition["base"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if base == "Resource" || base == "DomainResource" {
            types.extend(fhirlake_model::RESOURCE_TYPES.iter().copied().filter(|t| {
                base == "Resource" || !matches!(*t, "Bundle" | "Binary" | "Parameters")
            }));
            types.push(crate::fhir::resource::VIEW_DEFINITION);
        } else {
            types.push(base);
        }
    }
    types
}

/// `expr` cut to the union branches that can match `resource_type`: a branch whose path starts
/// with another resource type's name is dropped.
fn specialise(expr: &Expr, resource_type: &str) -> Expr {
    let mut branches = Vec::new();
    collect_branches(expr, &mut branches);
    let kept: Vec<&Expr> = branches
        .into_iter()
        .filter(|branch| match root_type(branch) {
            Some(root) => root == resource_type || !fhirlake_model::is_resource_type(root),
            None => true,
        })
        .collect();
    kept.into_iter()
        .cloned()
        .reduce(|left, right| Expr::Union(Box::new(left), Box::new(right)))
        .unwrap_or_else(|| expr.clone())
}

fn collect_branches<'e>(expr: &'e Expr, out: &mut Vec<&'e Expr>) {
    match expr {
        Expr::Union(left, right) => {
            collect_branches(left, out);
            collect_branches(right, out);
        }
        other => out.push(other),
    }
}

/// The search parameters of ViewDefinition (the one type that is not R4's): `name`, `url`,
/// `resource` and `status`, as the SQL on FHIR guide's capability discovery names them.
fn view_definition_parameters() -> Vec<Value> {
    const BASE: &str = "https://sql-on-fhir.org/ig/SearchParameter/ViewDefinition";
    [
        ("name", "string", "The computable name of the view"),
        ("url", "uri", "The canonical URL of the view"),
        ("resource", "token", "The resource type the view reads"),
        (
            "status",
            "token",
            "The status of the view (draft, active, retired, unknown)",
        ),
    ]
    .into_iter()
    .map(|(code, kind, description)| {
        serde_json::json!({
            "resourceType": "SearchParameter",
            "url": format!("{BASE}-{code}"),
            "code": code,
            "type": kind,
            "base": ["ViewDefinition"],
            "expression": format!("ViewDefinition.{code}"),
            "description": description,
        })
    })
    .collect()
}

/// The type name a path starts with (`Patient` of `Patient.name.where(...)`).
fn root_type(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Member(inner, name) if matches!(**inner, Expr::This) => Some(name),
        Expr::Member(inner, _)
        | Expr::Call(inner, _, _)
        | Expr::Index(inner, _)
        | Expr::Is(inner, _)
        | Expr::As(inner, _) => root_type(inner),
        Expr::Equals(left, _, _) | Expr::And(left, _) | Expr::Or(left, _) => root_type(left),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_r4_registry_knows_every_type_and_the_common_parameters() {
        let registry = Registry::r4();
        for resource_type in fhirlake_model::RESOURCE_TYPES {
            for common in [
                "_id",
                "_lastUpdated",
                "_tag",
                "_profile",
                "_security",
                "_source",
            ] {
                assert!(
                    registry.get(resource_type, common).is_some(),
                    "{resource_type} lacks {common}"
                );
            }
        }
        let name = registry.get("Patient", "name").unwrap();
        assert_eq!(name.kind, ParamType::String);
        let code = registry.get("Observation", "code-value-quantity").unwrap();
        assert_eq!(code.kind, ParamType::Composite);
        assert_eq!(code.components.len(), 2);
        let subject = registry.get("Observation", "subject").unwrap();
        assert!(subject.targets.iter().any(|t| t == "Patient"));
        // Only the definitions without an expression are unsupported.
        assert!(
            registry.unsupported.len() <= 16,
            "{:?}",
            registry.unsupported
        );
    }

    /// A second definition of a code would silently replace the first (the specification's
    /// example `example-reference` redefined `Condition.subject` as a reference to
    /// Organizations): the shipped definitions hold exactly one per type and code, and the
    /// examples are not among them.
    #[test]
    fn every_type_and_code_is_defined_once() {
        let bundle: Value = serde_json::from_str(R4_PARAMETERS).unwrap();
        let mut seen: HashMap<(&str, &str), &str> = HashMap::new();
        let entries = bundle["entry"].as_array().unwrap();
        for entry in entries {
            let definition = &entry["resource"];
            let id = definition["id"].as_str().unwrap();
            assert!(
                !id.starts_with("example"),
                "{id} is an example, not a definition"
            );
            let code = definition["code"].as_str().unwrap();
            for resource_type in types_of(definition) {
                if let Some(first) = seen.insert((resource_type, code), id) {
                    panic!("{resource_type}.{code} is defined by {first} and by {id}");
                }
            }
        }
        assert_eq!(entries.len(), 1397);
        let registry = Registry::r4();
        let subject = registry.get("Condition", "subject").unwrap();
        assert_eq!(subject.targets, ["Group", "Patient"]);
    }

    #[test]
    fn expressions_are_cut_to_the_resource_type() {
        let registry = Registry::r4();
        let birthdate = registry.get("Patient", "birthdate").unwrap();
        assert_eq!(
            birthdate.expression,
            Some(fhirpath::parse("Patient.birthDate").unwrap())
        );
        let patient = registry.get("Observation", "patient").unwrap();
        assert_eq!(
            patient.expression,
            Some(fhirpath::parse("Observation.subject.where(resolve() is Patient)").unwrap())
        );
    }
}
