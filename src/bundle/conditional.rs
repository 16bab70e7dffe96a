//! Conditional update and delete: the criteria of `PUT|DELETE [base]/Type?criteria` resolved
//! to the writes they make. The REST endpoints (`api/crud.rs`) and Bundle entries share these
//! functions, so both behave the same.
//!
//! - The criteria match only what the client may change ([`Access::view`] of the
//!   permission): a resource outside the token's view is never picked, nor counted.
//! - A conditional update matching nothing creates (with the resource's own id when it has
//!   one, as update-as-create does), matching one updates it (the resource's id, when given,
//!   must be the match's: 400 otherwise), matching several is 412.
//! - A conditional delete matching nothing deletes nothing (204); matching several deletes
//!   them all under [`ConditionalDelete::Multiple`] (up to [`Deletes::limit`], else 412
//!   and nothing is deleted), or is 412 under [`ConditionalDelete::Single`].
//! - Callers wait for the search index to hold every committed write first
//!   ([`Engine::catch_up`]), and commit what these functions return in one commit. The match
//!   is not atomic with concurrent writers (see [`crate::search`]).

use crate::auth::Access;
use crate::auth::scope::Permission;
use crate::fhir::resource::id_of;
use crate::fhir::{FhirError, IssueCode};
use crate::search::Engine;
use crate::store::commit::{Action, Write};
use serde_json::Value;

/// The default of [`Deletes::limit`] (and of `--conditional-delete-limit`).
pub const DEFAULT_DELETE_LIMIT: usize = 1000;

/// The largest [`Deletes::limit`] the setting takes.
pub const MAX_DELETE_LIMIT: usize = 100_000;

/// What a conditional delete does with several matches: the CapabilityStatement's
/// `conditionalDelete`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionalDelete {
    /// Several matches are 412.
    Single,
    /// Several matches are all deleted, in one commit.
    Multiple,
}

impl ConditionalDelete {
    /// The code of `CapabilityStatement.rest.resource.conditionalDelete`.
    pub fn code(self) -> &'static str {
        match self {
            ConditionalDelete::Single => "single",
            ConditionalDelete::Multiple => "multiple",
        }
    }
}

/// How conditional deletes treat several matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deletes {
    pub mode: ConditionalDelete,
    /// The most resources one conditional delete deletes, at least 1 (up to
    /// [`MAX_DELETE_LIMIT`] from the setting); more matches are 412.
    pub limit: usize,
}

impl Default for Deletes {
    fn default() -> Self {
        Deletes {
            mode: ConditionalDelete::Multiple,
            limit: DEFAULT_DELETE_LIMIT,
        }
    }
}

/// The write of `PUT [base]/resource_type?criteria` with `resource`: an update of the one
/// match, or a create when nothing matches; 412 for several matches.
pub fn update(
    search: &Engine,
    access: &Access,
    resource_type: &str,
    criteria: &str,
    resource: Value,
    if_match: Option<u64>,
) -> Result<Write, FhirError> {
    access.require(Permission::Update, Some(resource_type))?;
    let view = access.view(Permission::Update);
    let ids = search.matching(resource_type, criteria, &view)?;
    if ids.len() > 1 {
        return Err(several(resource_type, criteria));
    }
    let given = id_of(&resource).map(String::from);
    let (id, action) = match (ids.into_iter().next(), given) {
        (Some(id), Some(given)) if given != id => {
            return Err(FhirError::bad_request(
                IssueCode::Invalid,
                format!(
                    "the criteria match {resource_type}/{id}, but the resource's id is '{given}'"
                ),
            )
            .at(format!("{resource_type}.id")));
        }
        (Some(id), _) | (None, Some(id)) => (id, Action::Update(resource)),
        (None, None) => (uuid::Uuid::new_v4().to_string(), Action::Create(resource)),
    };
    Ok(Write {
        resource_type: resource_type.to_string(),
        id,
        action,
        if_match,
    })
}

/// The writes of `DELETE [base]/resource_type?criteria`: one deletion per match (none when
/// nothing matches); several matches as `deletes` says.
pub fn delete(
    search: &Engine,
    access: &Access,
    resource_type: &str,
    criteria: &str,
    if_match: Option<u64>,
    deletes: Deletes,
) -> Result<Vec<Write>, FhirError> {
    access.require(Permission::Delete, Some(resource_type))?;
    let view = access.view(Permission::Delete);
    let most = match deletes.mode {
        ConditionalDelete::Single => 1,
        ConditionalDelete::Multiple => deletes.limit,
    };
    let ids = search.matching_at_most(resource_type, criteria, &view, most.saturating_add(1))?;
    if ids.len() > most {
        return Err(match deletes.mode {
            ConditionalDelete::Single => several(resource_type, criteria),
            ConditionalDelete::Multiple => FhirError::new(
                412,
                IssueCode::TooCostly,
                format!(
                    "the criteria '{criteria}' match more than {most} {resource_type} \
                     resources, the most one conditional delete deletes: nothing was \
                     deleted; narrow the criteria"
                ),
            ),
        });
    }
    Ok(ids
        .into_iter()
        .map(|id| Write {
            resource_type: resource_type.to_string(),
            id,
            action: Action::Delete,
            if_match,
        })
        .collect())
}

/// 412: conditional criteria match more than one resource.
pub fn several(resource_type: &str, criteria: &str) -> FhirError {
    FhirError::new(
        412,
        IssueCode::Conflict,
        format!("the criteria '{criteria}' match more than one {resource_type}"),
    )
}
