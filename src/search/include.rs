//! `_include` and `_revinclude`: the resources a page's matches refer to, and those referring
//! to them, with `:iterate` following the included resources in turn.
//!
//! `_include` (also `Type:*` and a target type) reads the references of each match's stored
//! JSON with the registry's extraction, then reads each new target once from the store.
//! `_revinclude` searches the source type for references to the matches, up to 256 at a time.
//! `:iterate` repeats from what was included until nothing is new.
//!
//! Invariants: a resource appears once in a page (a match is never also an include), the
//! includes are never silently cut (past [`MAX_INCLUDES`], or when `:iterate` still finds new
//! resources after its last round (`Limits::iterations`), the result says so), and only what
//! the client's view holds is included, followed or counted.

use super::extract::{IndexValue, extract};
use super::registry::{ParamType, Registry};
use super::{Candidate, Engine, Request, Target, View};
use crate::fhir::reference;
use crate::fhir::{FhirError, IssueCode};
use crate::store::Store;
use crate::store::tables::VersionRecord;
use std::collections::HashSet;

/// The most resources one page includes.
pub const MAX_INCLUDES: usize = 10_000;

/// One `_include` or `_revinclude` value: `Source:param[:Target]`, `param` maybe `*`.
#[derive(Debug, Clone, PartialEq)]
pub struct Directive {
    pub reverse: bool,
    pub iterate: bool,
    pub source: String,
    /// `None` for `*`: every reference parameter of the source type.
    pub param: Option<String>,
    pub target: Option<String>,
}

impl Directive {
    /// Reads `_include[:iterate]=...` or `_revinclude[:iterate]=...`; None for other names.
    pub fn parse(
        registry: &Registry,
        name: &str,
        value: &str,
    ) -> Option<Result<Directive, String>> {
        let (reverse, modifier) = match name.split_once(':') {
            Some(("_include", m)) => (false, Some(m)),
            Some(("_revinclude", m)) => (true, Some(m)),
            None if name == "_include" => (false, None),
            None if name == "_revinclude" => (true, None),
            _ => return None,
        };
        Some(Self::read(registry, reverse, modifier, value))
    }

    fn read(
        registry: &Registry,
        reverse: bool,
        modifier: Option<&str>,
        value: &str,
    ) -> Result<Directive, String> {
        let iterate = match modifier {
            None => false,
            Some("iterate" | "recurse") => true,
            Some(other) => return Err(format!("unknown modifier ':{other}'")),
        };
        let mut parts = value.split(':');
        let (Some(source), Some(param)) = (parts.next(), parts.next()) else {
            return Err("an include is Type:parameter[:TargetType]".into());
        };
        let target = parts.next().map(String::from);
        if parts.next().is_some() || !fhirlake_model::is_resource_type(source) {
            return Err(format!("'{value}' is not Type:parameter[:TargetType]"));
        }
        if let Some(target) = &target
            && !fhirlake_model::is_resource_type(target)
        {
            return Err(format!("'{target}' is not a resource type"));
        }
        let param = match param {
            "*" if !reverse => None,
            code => match registry.get(source, code) {
                Some(p) if p.kind == ParamType::Reference => Some(code.to_string()),
                _ => return Err(format!("{source} has no reference parameter '{code}'")),
            },
        };
        Ok(Directive {
            reverse,
            iterate,
            source: source.to_string(),
            param,
            target,
        })
    }
}

/// A resource of a page: `(type, id, current version)`.
pub type Found = (String, String, VersionRecord);

/// The current versions of `keys`, in one store transaction; missing and deleted resources
/// (deleted since a snapshot was taken, say) are left out.
pub fn load(store: &Store, keys: &[(String, String)]) -> Result<Vec<Found>, FhirError> {
    let versions = store.read_many(keys)?;
    Ok(keys
        .iter()
        .zip(versions)
        .filter_map(|((t, i), version)| Some((t.clone(), i.clone(), version?)))
        .collect())
}

/// What the directives add to a page of `matches`.
pub struct Included {
    pub resources: Vec<Found>,
    /// True when [`MAX_INCLUDES`] cut the includes short.
    pub truncated: bool,
    /// True when `:iterate` was stopped after its last round with new resources to follow.
    pub unfinished: bool,
}

/// Follows `directives` from `matches`: each directive once from the matches, then the
/// iterating ones from what was included, until nothing new comes or for the engine's
/// `iterations` rounds. Only what `view` holds is included, and only that is followed
/// further: a resource outside it never decides what else is included, nor whether the
/// includes were cut.
pub fn include(
    engine: &Engine,
    store: &Store,
    directives: &[Directive],
    matches: &[Found],
    view: &View,
) -> Result<Included, FhirError> {
    let mut seen = keys_of(matches);
    let mut out = Included {
        resources: Vec::new(),
        truncated: false,
        unfinished: false,
    };
    let iterating = directives.iter().any(|d| d.iterate);
    // The sources of this round: the matches, then what the last round added.
    let mut from = None;
    for round in 0..=engine.limits.iterations {
        let sources = from.map_or(matches, |start| &out.resources[start..]);
        // Keys first: a resource many sources refer to is read from the store once.
        let mut new = Vec::new();
        for directive in directives.iter().filter(|d| round == 0 || d.iterate) {
            let keys = if directive.reverse {
                referring(engine, directive, sources, view)?
            } else {
                referred(directive, sources, engine.registry)?
            };
            unseen(&mut seen, keys, &mut new);
        }
        let start = out.resources.len();
        out.truncated = admit(engine, store, view, &new, &mut out.resources)?;
        if out.resources.len() == start || out.truncated {
            return Ok(out);
        }
        from = Some(start);
    }
    out.unfinished = iterating;
    Ok(out)
}

/// Every resource that `matches` refer to anywhere in their JSON (not only through search
/// parameters), that is this server's, whose type `keep` accepts and that `view` holds: what
/// `$everything` adds to its matches.
pub fn referenced(
    engine: &Engine,
    store: &Store,
    matches: &[Found],
    keep: impl Fn(&str) -> bool,
    view: &View,
) -> Result<Included, FhirError> {
    let mut keys = Vec::new();
    for (_, _, version) in matches {
        let resource: serde_json::Value = serde_json::from_slice(&version.body)
            .map_err(|e| FhirError::internal(format!("a stored version is not JSON: {e}")))?;
        reference::each_in(&resource, &mut |text| {
            if let Some((target_type, id)) = engine
                .registry
                .base
                .local(text)
                .and_then(|l| l.split_once('/'))
                && keep(target_type)
            {
                keys.push((target_type.to_string(), id.to_string()));
            }
        });
    }
    let mut new = Vec::new();
    unseen(&mut keys_of(matches), keys, &mut new);
    let mut resources = Vec::new();
    let truncated = admit(engine, store, view, &new, &mut resources)?;
    Ok(Included {
        resources,
        truncated,
        unfinished: false,
    })
}

fn keys_of(found: &[Found]) -> HashSet<(String, String)> {
    found
        .iter()
        .map(|(t, i, _)| (t.clone(), i.clone()))
        .collect()
}

/// Moves the `keys` not yet `seen` to `new`, each once.
fn unseen(
    seen: &mut HashSet<(String, String)>,
    keys: Vec<(String, String)>,
    new: &mut Vec<(String, String)>,
) {
    for key in keys {
        if seen.insert(key.clone()) {
            new.push(key);
        }
    }
}

/// Reads the resources of `keys` (missing and deleted ones are left out) and adds those
/// `view` holds to `included`, while it stays within [`MAX_INCLUDES`]; true when some were
/// cut.
fn admit(
    engine: &Engine,
    store: &Store,
    view: &View,
    keys: &[(String, String)],
    included: &mut Vec<Found>,
) -> Result<bool, FhirError> {
    // A few hundred at a time: one scratch index each when the view needs one.
    for chunk in keys.chunks(512) {
        let found = load(store, chunk)?;
        let candidates: Vec<Candidate> = found
            .iter()
            .map(|(resource_type, id, version)| Candidate {
                resource_type,
                id,
                last_updated: version.last_updated,
                body: &version.body,
            })
            .collect();
        let visible = engine.visible(view, &candidates)?;
        for (resource, seen) in found.into_iter().zip(visible) {
            if !seen {
                continue;
            }
            if included.len() == MAX_INCLUDES {
                return Ok(true);
            }
            included.push(resource);
        }
    }
    Ok(false)
}

/// The keys of the resources that `sources` of the directive's type refer to through its
/// parameter.
fn referred(
    directive: &Directive,
    sources: &[Found],
    registry: &Registry,
) -> Result<Vec<(String, String)>, FhirError> {
    let params: Vec<_> = registry
        .params(&directive.source)
        .filter(|p| p.kind == ParamType::Reference)
        .filter(|p| directive.param.as_ref().is_none_or(|code| &p.code == code))
        .collect();
    let mut keys = Vec::new();
    for (resource_type, _, version) in sources {
        if resource_type != &directive.source {
            continue;
        }
        let resource: serde_json::Value = serde_json::from_slice(&version.body)
            .map_err(|e| FhirError::internal(format!("a stored version is not JSON: {e}")))?;
        for param in &params {
            // What cannot be extracted is not followed, as the indexer does not index it:
            // one resource's odd content does not fail the whole search.
            let values = match extract(registry, param, &resource) {
                Ok(values) => values,
                Err(error) => {
                    tracing::warn!(%resource_type, param = %param.code, %error, "not followed");
                    continue;
                }
            };
            for value in values {
                let IndexValue::Reference {
                    reference: Some(target),
                    ..
                } = value
                else {
                    continue;
                };
                let Some((target_type, id)) =
                    reference::relative(&target).and_then(|l| l.split_once('/'))
                else {
                    continue;
                };
                if directive
                    .target
                    .as_deref()
                    .is_some_and(|t| t != target_type)
                {
                    continue;
                }
                keys.push((target_type.to_string(), id.to_string()));
            }
        }
    }
    Ok(keys)
}

/// The keys of the resources of the directive's type within `view` whose parameter refers to
/// one of `sources`.
fn referring(
    engine: &Engine,
    directive: &Directive,
    sources: &[Found],
    view: &View,
) -> Result<Vec<(String, String)>, FhirError> {
    let targets: Vec<String> = sources
        .iter()
        .filter(|(t, _, _)| directive.target.as_ref().is_none_or(|target| target == t))
        .map(|(t, i, _)| format!("{t}/{i}"))
        .collect();
    let Some(code) = &directive.param else {
        return Err(FhirError::bad_request(
            IssueCode::NotSupported,
            "_revinclude needs a parameter, not '*'",
        ));
    };
    let mut found = Vec::new();
    // A few hundred references per query keep each query small (and within the values a
    // parameter may have). Past MAX_INCLUDES the rest would be cut anyway.
    let chunk = engine.limits.values.clamp(1, 256);
    for chunk in targets.chunks(chunk) {
        if found.len() > MAX_INCLUDES {
            break;
        }
        let page = engine.search(&Request {
            target: Target::of_type(&directive.source),
            params: vec![(code.clone(), chunk.join(","))],
            strict: true,
            count: MAX_INCLUDES + 1,
            offset: 0,
            after: None,
            snapshot: None,
            total: false,
            view: view.clone(),
        })?;
        found.extend(page.matches);
    }
    Ok(found)
}
