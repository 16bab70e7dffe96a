//! Chained parameters (`subject:Patient.name=peter`, any depth) and reverse chains
//! (`_has:Observation:patient:code=1234-5`, nested): each runs a nested search on the same
//! snapshot and turns its matches into a clause on the outer search.
//!
//! - A chain `ref[:Type].rest=value` searches the types `ref` may point to (only `Type` when
//!   given; otherwise every target type that has the first parameter of `rest`) for
//!   `rest=value`, and matches the resources whose `ref` refers to one of those matches.
//! - `_has:Source:ref:rest=value` searches `Source` for `rest=value` and matches the resources
//!   that the matches' `ref` refers to.
//!
//! The planner ([`super::Planner`]) holds the search's snapshot, so every nested search runs on
//! the same one. A chain turns its matches' keys into the outer parameter's reference terms
//! (one term set); `_has` reads what its matches refer to from the `refs` fast column (every
//! local reference of a document as `param\x1fType/id`) and matches those keys.
//!
//! `rest` is itself a parameter name, so chains and `_has` nest; a value's commas stay ORs of
//! the innermost parameter. Each nested search is one level deeper and counts against the
//! search's limits (see `Planning::nested`).
//!
//! `_list=id` is the same kind of lookup: the List's `item` references, read from the `refs`
//! column of the List found (within the view, like any nested search).

use super::{Planning, Refusal, any_term, references_query, shared};
use crate::fhir::FhirError;
use crate::search::index;
use crate::search::registry::{ParamType, SearchParam};
use std::collections::BTreeSet;
use tantivy::query::{EmptyQuery, Occur, Query};
use tantivy::{DocAddress, Term};

/// A nested search's failure to read its matches.
fn failed(error: tantivy::TantivyError) -> Refusal {
    Refusal::Fails(FhirError::internal(format!("search failed: {error}")))
}

impl Planning<'_> {
    /// `head.rest=value`, `head` being a reference parameter with an optional type modifier.
    pub(super) fn chain(
        &self,
        resource_types: &[String],
        head: &str,
        rest: &str,
        value: &str,
    ) -> Result<(Occur, Box<dyn Query>), Refusal> {
        let registry = self.planner.registry;
        let (code, type_modifier) = match head.split_once(':') {
            Some((code, target)) => (code, Some(target)),
            None => (head, None),
        };
        let param = reference_param(shared(registry, resource_types, code)?)?;
        let next = rest.split(['.', ':']).next().unwrap_or(rest);
        let targets: Vec<&str> = match type_modifier {
            Some(target) => {
                if !may_refer_to(param, target) {
                    return Err(format!("'{code}' does not refer to {target}").into());
                }
                shared(registry, &[target.to_string()], next)?;
                vec![target]
            }
            None => param
                .targets
                .iter()
                .map(String::as_str)
                .filter(|t| shared(registry, &[t.to_string()], next).is_ok())
                .collect(),
        };
        if targets.is_empty() {
            return Err(format!("no type that '{code}' refers to has a parameter '{next}'").into());
        }
        let nested = [(rest.to_string(), value.to_string())];
        let mut keys = Vec::new();
        for target in targets {
            let found = self.nested(target, &nested)?;
            keys.extend(index::keys_of(self.planner.searcher, &found).map_err(failed)?);
        }
        if keys.is_empty() {
            return Ok((Occur::Must, Box::new(EmptyQuery)));
        }
        let fields = self.planner.fields;
        Ok((
            Occur::Must,
            references_query(fields, code, keys.iter().map(String::as_str)),
        ))
    }

    /// `_has:Source:ref:rest=value` (`spec` is what follows `_has:`).
    pub(super) fn reverse_chain(
        &self,
        resource_types: &[String],
        spec: &str,
        value: &str,
    ) -> Result<(Occur, Box<dyn Query>), Refusal> {
        let mut parts = spec.splitn(3, ':');
        let (Some(source), Some(code), Some(rest)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err("_has is _has:Type:reference:parameter".into());
        };
        if !fhirlake_model::is_resource_type(source) {
            return Err(format!("'{source}' is not a resource type").into());
        }
        let param = self
            .planner
            .registry
            .get(source, code)
            .ok_or_else(|| Refusal::from(format!("{source} has no parameter '{code}'")))
            .and_then(reference_param)?;
        if !resource_types.is_empty() && !resource_types.iter().any(|t| may_refer_to(param, t)) {
            return Err(format!(
                "{source}.{code} does not refer to {}",
                resource_types.join(" or ")
            )
            .into());
        }
        let found = self.nested(source, &[(rest.to_string(), value.to_string())])?;
        self.referred_by(resource_types, &found, code)
    }

    /// `_list=id[,id]`: the resources the Lists hold (`List.entry.item`). Functional lists
    /// (`$current-allergies`) are not supported.
    pub(super) fn list(
        &self,
        resource_types: &[String],
        value: &str,
    ) -> Result<(Occur, Box<dyn Query>), Refusal> {
        if value.starts_with('$') {
            return Err("functional lists ($current-allergies...) are not supported".into());
        }
        let found = self.nested("List", &[("_id".to_string(), value.to_string())])?;
        self.referred_by(resource_types, &found, "item")
    }

    /// The resources of `resource_types` (any when empty) that the documents `found` refer to
    /// through their parameter `code`.
    fn referred_by(
        &self,
        resource_types: &[String],
        found: &[DocAddress],
        code: &str,
    ) -> Result<(Occur, Box<dyn Query>), Refusal> {
        let referred: BTreeSet<String> = index::references_of(self.planner.searcher, found, code)
            .map_err(failed)?
            .into_iter()
            .filter(|local| {
                let referred_type = local.split('/').next().unwrap_or("");
                resource_types.is_empty() || resource_types.iter().any(|t| t == referred_type)
            })
            .collect();
        if referred.is_empty() {
            return Ok((Occur::Must, Box::new(EmptyQuery)));
        }
        let key = self.planner.fields.key;
        let keys = referred.iter().map(|k| Term::from_field_text(key, k));
        Ok((Occur::Must, any_term(keys.collect())))
    }
}

/// `param` when it is a reference parameter: only those can be chained.
fn reference_param(param: &SearchParam) -> Result<&SearchParam, Refusal> {
    if param.kind == ParamType::Reference {
        Ok(param)
    } else {
        Err(format!(
            "'{}' is a {} parameter, not a reference: it cannot be chained",
            param.code,
            param.kind.as_str()
        )
        .into())
    }
}

/// Whether reference parameter `param` may refer to `resource_type` (any type when its
/// definition names none).
fn may_refer_to(param: &SearchParam, resource_type: &str) -> bool {
    param.targets.is_empty() || param.targets.iter().any(|t| t == resource_type)
}
