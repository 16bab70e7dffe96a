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
//! `rest` is itself a parameter name, so chains and `_has` nest; a value's commas stay ORs of
//! the innermost parameter.

use super::{Planner, any_term, references_query, shared};
use crate::search::index;
use crate::search::registry::{ParamType, SearchParam};
use std::collections::BTreeSet;
use tantivy::Term;
use tantivy::query::{EmptyQuery, Occur, Query};

impl Planner<'_> {
    /// `head.rest=value`, `head` being a reference parameter with an optional type modifier.
    pub(super) fn chain(
        &self,
        resource_types: &[String],
        head: &str,
        rest: &str,
        value: &str,
    ) -> Result<(Occur, Box<dyn Query>), String> {
        let (code, type_modifier) = match head.split_once(':') {
            Some((code, target)) => (code, Some(target)),
            None => (head, None),
        };
        let param = reference_param(shared(self.registry, resource_types, code)?)?;
        let next = rest.split(['.', ':']).next().unwrap_or(rest);
        let targets: Vec<&str> = match type_modifier {
            Some(target) => {
                if !may_refer_to(param, target) {
                    return Err(format!("'{code}' does not refer to {target}"));
                }
                shared(self.registry, &[target.to_string()], next)?;
                vec![target]
            }
            None => param
                .targets
                .iter()
                .map(String::as_str)
                .filter(|t| shared(self.registry, &[t.to_string()], next).is_ok())
                .collect(),
        };
        if targets.is_empty() {
            return Err(format!(
                "no type that '{code}' refers to has a parameter '{next}'"
            ));
        }
        let nested = [(rest.to_string(), value.to_string())];
        let mut keys = Vec::new();
        for target in targets {
            let found = self.nested(target, &nested)?;
            keys.extend(
                index::keys_of(self.searcher, &found).map_err(|e| format!("search failed: {e}"))?,
            );
        }
        if keys.is_empty() {
            return Ok((Occur::Must, Box::new(EmptyQuery)));
        }
        let fields = self.fields;
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
    ) -> Result<(Occur, Box<dyn Query>), String> {
        let mut parts = spec.splitn(3, ':');
        let (Some(source), Some(code), Some(rest)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err("_has is _has:Type:reference:parameter".into());
        };
        if !fhirlake_model::is_resource_type(source) {
            return Err(format!("'{source}' is not a resource type"));
        }
        let param = self
            .registry
            .get(source, code)
            .ok_or_else(|| format!("{source} has no parameter '{code}'"))
            .and_then(reference_param)?;
        if !resource_types.is_empty() && !resource_types.iter().any(|t| may_refer_to(param, t)) {
            return Err(format!(
                "{source}.{code} does not refer to {}",
                resource_types.join(" or ")
            ));
        }
        let found = self.nested(source, &[(rest.to_string(), value.to_string())])?;
        let referred: BTreeSet<String> = index::references_of(self.searcher, &found, code)
            .map_err(|e| format!("search failed: {e}"))?
            .into_iter()
            .filter(|local| {
                let referred_type = local.split('/').next().unwrap_or("");
                resource_types.is_empty() || resource_types.iter().any(|t| t == referred_type)
            })
            .collect();
        if referred.is_empty() {
            return Ok((Occur::Must, Box::new(EmptyQuery)));
        }
        let key = self.fields.key;
        let keys = referred.iter().map(|k| Term::from_field_text(key, k));
        Ok((Occur::Must, any_term(keys.collect())))
    }
}

/// `param` when it is a reference parameter: only those can be chained.
fn reference_param(param: &SearchParam) -> Result<&SearchParam, String> {
    if param.kind == ParamType::Reference {
        Ok(param)
    } else {
        Err(format!(
            "'{}' is a {} parameter, not a reference: it cannot be chained",
            param.code,
            param.kind.as_str()
        ))
    }
}

/// Whether reference parameter `param` may refer to `resource_type` (any type when its
/// definition names none).
fn may_refer_to(param: &SearchParam, resource_type: &str) -> bool {
    param.targets.is_empty() || param.targets.iter().any(|t| t == resource_type)
}
