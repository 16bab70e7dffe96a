//! PATCH entries of batch and transaction Bundles (http.html#patch): `request.method` PATCH
//! on `Type/id` or `Type?criteria`, the resource a Binary holding a JSON Patch or a
//! `Parameters` FHIRPath Patch ([`Patch::of_entry`]). Each becomes the update it makes of the
//! current version ([`Patch::update_of`], pinned to that version), validated here as an update
//! entry's resource is, then written with the other updates.

use super::references::{at_entry, bad_entry};
use super::{Request, entry_issue};
use crate::auth::Access;
use crate::auth::scope::Permission;
use crate::fhir::FhirError;
use crate::fhir::resource::{check_id, check_type};
use crate::patch::Patch;
use crate::search::Engine;
use crate::store::Store;
use crate::store::commit::Action;
use crate::validate::Validator;
use serde_json::Value;

/// A PATCH entry as read.
#[derive(Debug)]
pub(super) struct PatchEntry {
    resource_type: String,
    target: Target,
    patch: Patch,
    if_match: Option<u64>,
}

#[derive(Debug)]
enum Target {
    Id(String),
    /// Conditional patch: the one resource these criteria match.
    Criteria(String),
}

/// Reads a PATCH entry: its `request.url` (`segments` and `query`), `request.ifMatch` and
/// resource.
pub(super) fn read(
    resource: Option<Value>,
    segments: &[&str],
    query: Option<&str>,
    if_match: Option<u64>,
) -> Result<Request, FhirError> {
    let (resource_type, target) = match (segments, query) {
        ([resource_type, id], None) => {
            check_id(id)?;
            (resource_type, Target::Id(id.to_string()))
        }
        ([resource_type], Some(criteria)) if !criteria.is_empty() => {
            (resource_type, Target::Criteria(criteria.to_string()))
        }
        _ => {
            return Err(bad_entry(
                "a PATCH entry's request.url is Type/id, or Type?criteria for a conditional patch",
            ));
        }
    };
    check_type(resource_type)?;
    let resource = resource.ok_or_else(|| {
        bad_entry("a PATCH entry needs a resource: a Binary with a JSON Patch, or Parameters")
    })?;
    Ok(Request::Patch(PatchEntry {
        resource_type: resource_type.to_string(),
        target,
        patch: Patch::of_entry(resource)?,
        if_match,
    }))
}

/// Turns every PATCH entry of `requests` into the update it makes (or the error that stops
/// it), with the validator's warnings in `warnings`. Runs after the search index has caught up:
/// conditional targets are matched among the resources the client may update.
#[allow(clippy::too_many_arguments)]
pub(super) fn resolve(
    requests: &mut [Result<(Option<String>, Request), FhirError>],
    warnings: &mut [Vec<Value>],
    store: &Store,
    search: &Engine,
    access: &Access,
    validator: &Validator,
    limit: usize,
) {
    for (index, request) in requests.iter_mut().enumerate() {
        if !matches!(request, Ok((_, Request::Patch(_)))) {
            continue;
        }
        let taken = std::mem::replace(request, Err(bad_entry("")));
        let Ok((full_url, Request::Patch(entry))) = taken else {
            unreachable!("matched above")
        };
        let update = update(entry, store, search, access, validator, limit)
            .map_err(|error| at_entry(error, index));
        *request = update.map(|(update, found)| {
            warnings[index] = found
                .iter()
                .map(|issue| entry_issue(issue, index))
                .collect();
            (full_url, update)
        });
    }
}

/// The update entry a PATCH entry makes, and the validator's warnings about its result.
fn update(
    entry: PatchEntry,
    store: &Store,
    search: &Engine,
    access: &Access,
    validator: &Validator,
    limit: usize,
) -> Result<(Request, Vec<crate::validate::Issue>), FhirError> {
    let PatchEntry {
        resource_type,
        target,
        patch,
        if_match,
    } = entry;
    let id = match target {
        Target::Id(id) => id,
        Target::Criteria(criteria) => {
            access.require(Permission::Update, Some(&resource_type))?;
            let view = access.view(Permission::Update);
            let mut ids = search.matching(&resource_type, &criteria, &view)?;
            match ids.len() {
                1 => ids.remove(0),
                0 => {
                    return Err(FhirError::not_found(format!(
                        "no {resource_type} matches '{criteria}': there is nothing to patch"
                    )));
                }
                _ => return Err(super::conditional::several(&resource_type, &criteria)),
            }
        }
    };
    let (write, dropped) =
        patch.update_of(store, search, access, &resource_type, &id, if_match, limit)?;
    let Action::Update(resource) = write.action else {
        unreachable!("a patch makes an update")
    };
    let found = validator.check_write(&resource, &dropped)?;
    let update = Request::Update {
        resource_type,
        id,
        resource,
        dropped,
        if_match: write.if_match,
    };
    Ok((update, found))
}
