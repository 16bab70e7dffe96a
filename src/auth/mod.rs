//! Authorization: who a request comes from (a verified bearer token, [`token`]) and what its
//! SMART scopes ([`scope`]) let it do; the audit trail of every request ([`audit`]); the
//! backend clients of the token endpoint ([`clients`]) and their client assertions
//! ([`assertion`]), for SMART Backend Services.
//!
//! [`Access`] is the one place that decides. Each interaction needs one permission on the
//! resource type it touches: read, vread and history `r`, search `s`, create `c`, update `u`
//! (also update-as-create and patch), delete `d` (a Bundle entry by entry, each its own
//! interaction's); `$everything` and included resources need `r`. Scopes add up: a resource is
//! allowed when any scope granting that permission on its type allows it.
//!
//! Invariants:
//! - A type-level refusal (no scope grants the permission on the type) is a 403.
//! - A `patient/` scope grants only the members of the compartment of the token's `patient`
//!   claim (none without that claim); a scope's query (`?category=laboratory`) grants only the
//!   resources that search matches. Both are a [`View`] that searches run within (so their
//!   pages, totals, chains and `_has` never see past it) and that single resources are judged
//!   by ([`Access::visible`]), with the same query.
//! - A resource outside the view is answered as if it did not exist (404) when read, and is
//!   left out of search pages, includes and history: byte for byte as an absent one, ids
//!   apart, `$validate` included (`tests/isolation.rs` compares twin servers, one without the
//!   other patient's data). Every version is judged on its own content (a resource may move
//!   between patients), a deletion as the version it deleted; a vread judges the version
//!   asked for; a resource's history needs its current version (or, deleted, its last one) to
//!   be readable, then lists the versions that are, without `total` (which would count the
//!   others).
//! - Conditional criteria (`If-None-Exist`, conditional update, patch and delete, a Bundle's
//!   `ifNoneExist` and conditional references) match only within the client's view. A patch is
//!   judged on the current version before it runs (a JSON Patch `test` would otherwise read
//!   what the token may not see), then written as an update.
//! - A confined write (create, update, delete, each Bundle entry, conditional or not) must
//!   keep to what the token holds alone ([`Engine::owned`]): under a `patient/` scope, every
//!   patient the resource belongs to, before and after, is the token's patient (and it
//!   belongs to one, or is that Patient); a scope's query must match it too. An update or
//!   delete of a resource the token cannot read (hidden or absent, the same) is answered as one
//!   of a resource that does not exist, without the store: a delete changes nothing (204, or
//!   412 for an `If-Match`), an update is a 405, since a confined token cannot create with an
//!   id of its choosing (see [`Access::check_write`]); one it can read but not write is a 403.
//!   The write is pinned to the version that was judged (a concurrent change makes it a 412).
//! - Erasure needs unconfined delete and the scope [`ERASE_SCOPE`]; never a `patient/` token.
//! - The change stream carries every version of every resource: it needs read on every
//!   resource, unconfined. Writing a Subscription needs unconfined read on its criteria's type,
//!   since it delivers every version they match.

pub mod assertion;
pub mod audit;
pub mod clients;
pub mod scope;
pub mod token;

use crate::fhir::FhirError;
use crate::fhir::IssueCode;
use crate::search::{Candidate, Engine, Part, View};
use crate::store::Store;
use crate::store::commit::{Action, Applied, Write, delete_of_nothing};
use crate::store::tables::{CurrentRecord, VersionRecord};
use scope::{Level, Permission, Scope};
use std::sync::Arc;
pub use token::Principal;

/// The scope that, beside unconfined delete rights, allows erasure (`$erase`, `$purge`,
/// `$bulk-delete` with `hardDelete=true`): see [`Access::require_erase`].
pub const ERASE_SCOPE: &str = "fhirlake/erase";

/// A stored version to judge; `body` is `None` for a deletion.
#[derive(Debug, Clone, Copy)]
pub struct Stored<'a> {
    pub resource_type: &'a str,
    pub id: &'a str,
    pub vid: u64,
    pub last_updated: i64,
    pub body: Option<&'a [u8]>,
}

impl<'a> Stored<'a> {
    /// The current state of `resource_type/id` as [`Store::read`] gives it.
    pub fn current(
        resource_type: &'a str,
        id: &'a str,
        current: &CurrentRecord,
        version: Option<&'a VersionRecord>,
    ) -> Stored<'a> {
        Stored {
            resource_type,
            id,
            vid: current.vid,
            last_updated: current.last_updated,
            body: version.map(|v| v.body.as_slice()),
        }
    }
}

/// What a request may do.
#[derive(Debug, Clone)]
pub enum Access {
    /// Authorization is off (`--auth none`), or an operator's command: everything.
    Open,
    /// The bearer of a verified token.
    Token(Arc<Principal>),
}

impl Access {
    /// The scopes that grant `permission` on `resource_type` (on some type when `None`). A
    /// `patient/` scope grants nothing without a `patient` claim.
    fn grants<'a>(
        principal: &'a Principal,
        permission: Permission,
        resource_type: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Scope> + 'a {
        principal.scopes.resources.iter().filter(move |scope| {
            let granted = match resource_type {
                Some(_) => scope.grants(permission, resource_type),
                None => scope.permissions.contains(permission),
            };
            granted && (scope.level != Level::Patient || principal.patient.is_some())
        })
    }

    /// 403 unless some scope grants `permission` on `resource_type` (on any type when
    /// `None`).
    pub fn require(
        &self,
        permission: Permission,
        resource_type: Option<&str>,
    ) -> Result<(), FhirError> {
        let Access::Token(principal) = self else {
            return Ok(());
        };
        if Self::grants(principal, permission, resource_type)
            .next()
            .is_some()
        {
            return Ok(());
        }
        let what = resource_type.unwrap_or("any resource type");
        let mut message = format!(
            "the token's scopes do not allow to {} {what}: it needs a scope such as \
             user/{}.{}",
            permission.verb(),
            resource_type.unwrap_or("*"),
            permission.letter()
        );
        if principal.patient.is_none()
            && principal
                .scopes
                .resources
                .iter()
                .any(|s| s.level == Level::Patient)
        {
            message.push_str(" (its patient/ scopes grant nothing: it has no patient claim)");
        }
        Err(FhirError::forbidden(message))
    }

    /// 403 unless the token may read every resource of the type a Subscription's criteria
    /// name, unconfined: a Subscription delivers each matching version to its endpoint,
    /// whoever may read it, so writing one is reading all it matches.
    fn require_subscribable(&self, subscription: &serde_json::Value) -> Result<(), FhirError> {
        let criteria = subscription["criteria"].as_str().unwrap_or("");
        let resource_type = criteria.split('?').next().unwrap_or(criteria);
        if !self.confined(Permission::Read, resource_type) {
            return Ok(());
        }
        Err(FhirError::forbidden(format!(
            "a Subscription to '{criteria}' delivers every {resource_type} it matches: it needs \
             a token that may read all of them, such as user/{resource_type}.r"
        )))
    }

    /// 403 unless `permission` is granted on every resource of every type, unconfined: what a
    /// consumer of the whole change stream needs, since it carries every version of every
    /// resource.
    pub fn require_everything(&self, permission: Permission) -> Result<(), FhirError> {
        if self.view(permission) == View::All {
            return Ok(());
        }
        Err(FhirError::forbidden(format!(
            "the change stream carries every resource: it needs a scope such as system/*.{}",
            permission.letter()
        )))
    }

    /// 403 unless the token may erase resources of `resource_type` (of every type when
    /// `None`) for good ([`crate::store::erase`]): it needs delete on all of them, unconfined,
    /// and the scope [`ERASE_SCOPE`] besides. A token with a `patient/` scope or a `patient`
    /// claim never may: erasure removes what others may have a right to keep, and a patient's
    /// own request to be forgotten is carried out by an operator.
    pub fn require_erase(&self, resource_type: Option<&str>) -> Result<(), FhirError> {
        let Access::Token(principal) = self else {
            return Ok(());
        };
        if principal.patient.is_some()
            || principal
                .scopes
                .resources
                .iter()
                .any(|scope| scope.level == Level::Patient)
        {
            return Err(FhirError::forbidden(
                "a token with a patient/ scope or a patient claim may not erase",
            ));
        }
        self.require(Permission::Delete, resource_type)?;
        let whole = match resource_type {
            Some(resource_type) => !self.confined(Permission::Delete, resource_type),
            None => self.view(Permission::Delete) == View::All,
        };
        if !whole {
            return Err(FhirError::forbidden(format!(
                "erasure needs delete on every {} resource, unconfined (a scope such as \
                 system/{}.d)",
                resource_type.unwrap_or("*"),
                resource_type.unwrap_or("*")
            )));
        }
        if !principal.scopes.other.iter().any(|s| s == ERASE_SCOPE) {
            return Err(FhirError::forbidden(format!(
                "erasure removes data for good: it needs the scope {ERASE_SCOPE} beside delete \
                 rights"
            )));
        }
        Ok(())
    }

    /// Every resource `permission` is granted on, of every type. A search runs within it
    /// whatever types it asks for, since its chains and `_has` search other types.
    pub fn view(&self, permission: Permission) -> View {
        let Access::Token(principal) = self else {
            return View::All;
        };
        let parts = Self::grants(principal, permission, None)
            .map(|scope| Part {
                resource_type: scope.resource_type.clone(),
                compartment: match scope.level {
                    Level::Patient => principal
                        .patient
                        .clone()
                        .map(|id| ("Patient".to_string(), id)),
                    Level::User | Level::System => None,
                },
                params: scope.restriction.clone(),
            })
            .collect();
        simplify(parts)
    }

    /// Whether `permission` on `resource_type` is granted on part of its resources only
    /// (a compartment, a query), so that each resource has to be judged.
    pub fn confined(&self, permission: Permission, resource_type: &str) -> bool {
        match self {
            Access::Open => false,
            Access::Token(principal) => !Self::grants(principal, permission, Some(resource_type))
                .any(|scope| scope.level != Level::Patient && scope.restriction.is_empty()),
        }
    }

    /// The view of a search of `resource_types` (every type when empty) for `permission`:
    /// 403 when a type it names (or, for every type, all of them) is not granted at all.
    pub fn search_view(
        &self,
        permission: Permission,
        resource_types: &[String],
    ) -> Result<View, FhirError> {
        if resource_types.is_empty() {
            self.require(permission, None)?;
        }
        for resource_type in resource_types {
            self.require(permission, Some(resource_type))?;
        }
        Ok(self.view(permission))
    }

    /// Which of `candidates` `permission` is granted on (type, compartment and query).
    pub fn visible(
        &self,
        engine: &Engine,
        permission: Permission,
        candidates: &[Candidate],
    ) -> Result<Vec<bool>, FhirError> {
        engine.visible(&self.view(permission), candidates)
    }

    /// Which of the stored `versions` `permission` is granted on. A deletion has no content:
    /// it is judged as the version it deleted; one that cannot be judged is not visible.
    pub fn visible_versions(
        &self,
        engine: &Engine,
        store: &Store,
        permission: Permission,
        versions: &[Stored],
    ) -> Result<Vec<bool>, FhirError> {
        let view = self.view(permission);
        if view == View::All {
            return Ok(vec![true; versions.len()]);
        }
        judge_versions(store, versions, |candidates| {
            engine.visible(&view, candidates)
        })
    }

    /// Whether `permission` is granted on one stored version (see
    /// [`Access::visible_versions`]).
    /// The current state of `resource_type/id` ([`Store::read`]), or `None` when it does not
    /// exist or the client may not `permission` it: such a resource is answered as one that
    /// does not exist. Every endpoint that reads one resource by id judges it here.
    pub fn current(
        &self,
        engine: &Engine,
        store: &Store,
        permission: Permission,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<(CurrentRecord, Option<VersionRecord>)>, FhirError> {
        let Some((at, version)) = store.read(resource_type, id)? else {
            return Ok(None);
        };
        let stored = Stored::current(resource_type, id, &at, version.as_ref());
        let seen = self.sees_stored(engine, store, permission, stored)?;
        Ok(seen.then_some((at, version)))
    }

    pub fn sees_stored(
        &self,
        engine: &Engine,
        store: &Store,
        permission: Permission,
        version: Stored,
    ) -> Result<bool, FhirError> {
        Ok(self.visible_versions(engine, store, permission, &[version])?[0])
    }

    /// Checks a write before it is committed: the permission on its type, then, when the
    /// token is confined to part of the type, the current version (update, delete) and the
    /// new one (create, update): each must be the token's alone ([`Engine::owned`]: for a
    /// `patient/` scope, it belongs to the token's patient and to no other). The write is
    /// then pinned to the version judged (its `if_match`), so a change in between fails it
    /// instead of slipping through.
    ///
    /// A resource the token cannot read (absent, or hidden from it) is written as one that
    /// does not exist, whichever it is: a delete changes nothing ([`Decision::Absent`]), an
    /// update is refused with 405 as an update-as-create (a confined token cannot choose the
    /// id of what it creates: the id may be taken by what it cannot see). A resource it can
    /// read but not write is a 403.
    pub fn check_write(
        &self,
        engine: &Engine,
        store: &Store,
        write: &mut Write,
    ) -> Result<Decision, FhirError> {
        let permission = match write.action {
            Action::Create(_) => Permission::Create,
            Action::Update(_) => Permission::Update,
            Action::Delete => Permission::Delete,
        };
        self.require(permission, Some(&write.resource_type))?;
        if let Action::Create(resource) | Action::Update(resource) = &write.action
            && write.resource_type == "Subscription"
        {
            self.require_subscribable(resource)?;
        }
        let Access::Token(principal) = self else {
            return Ok(Decision::Commit);
        };
        if !self.confined(permission, &write.resource_type) {
            return Ok(Decision::Commit);
        }
        let writable = self.view(permission);
        let refused = |what: &str| {
            let mut message = format!(
                "{}/{} {what} outside what the token's scopes allow to {}",
                write.resource_type,
                write.id,
                permission.verb()
            );
            if let Some(patient) = &principal.patient {
                message.push_str(&format!(
                    ": a patient/ scope allows what belongs to Patient/{patient} and to no \
                     other patient"
                ));
            }
            FhirError::forbidden(message)
        };
        if matches!(write.action, Action::Update(_) | Action::Delete) {
            let current = store.read(&write.resource_type, &write.id)?;
            let Some((state, version)) = current else {
                return written_as_absent(write);
            };
            let before = Stored::current(&write.resource_type, &write.id, &state, version.as_ref());
            let owned = judge_versions(store, &[before], |candidates| {
                engine.owned(&writable, candidates)
            })?[0];
            if !owned {
                if self.sees_stored(engine, store, Permission::Read, before)? {
                    return Err(refused("is"));
                }
                return written_as_absent(write);
            }
            // A client's If-Match is kept: the store compares it with the current version.
            write.if_match.get_or_insert(state.vid);
        }
        if let Action::Create(resource) | Action::Update(resource) = &write.action {
            let body = serde_json::to_vec(resource).expect("JSON serializes");
            let after = Candidate {
                resource_type: &write.resource_type,
                id: &write.id,
                last_updated: crate::fhir::datetime::now(),
                body: &body,
            };
            if !engine.owned(&writable, &[after])?[0] {
                return Err(refused("would be"));
            }
        }
        Ok(Decision::Commit)
    }
}

/// What [`Access::check_write`] decided about a write it allows.
#[derive(Debug)]
pub enum Decision {
    /// Commit it.
    Commit,
    /// It is about a resource the token cannot see, and is answered as about one that does
    /// not exist, without the store: this is its result.
    Absent(Applied),
}

/// The answer to a confined write of a resource the token cannot see, the same whether it is
/// hidden or absent (see [`Access::check_write`]).
fn written_as_absent(write: &Write) -> Result<Decision, FhirError> {
    let nothing = || Write {
        resource_type: write.resource_type.clone(),
        id: write.id.clone(),
        action: Action::Delete,
        if_match: write.if_match,
    };
    match write.action {
        Action::Delete => Ok(Decision::Absent(delete_of_nothing(nothing())?)),
        Action::Update(_) | Action::Create(_) => Err(FhirError::new(
            405,
            IssueCode::NotSupported,
            format!(
                "there is no {}/{} this token may update, and a token confined to part of {} \
                 cannot create one with an id of its choosing (update as create): create it \
                 with POST",
                write.resource_type, write.id, write.resource_type
            ),
        )),
    }
}

/// Judges stored `versions` with `judge`: a deletion has no content and is judged as the
/// version it deleted; one that cannot be judged (no version before it) is false.
fn judge_versions(
    store: &Store,
    versions: &[Stored],
    judge: impl FnOnce(&[Candidate]) -> Result<Vec<bool>, FhirError>,
) -> Result<Vec<bool>, FhirError> {
    let mut deleted = Vec::with_capacity(versions.len());
    for version in versions {
        deleted.push(match version.body {
            None if version.vid > 1 => {
                store.vread(version.resource_type, version.id, version.vid - 1)?
            }
            _ => None,
        });
    }
    // (index in `versions`, candidate) for each version that has content to judge.
    let (indexes, candidates): (Vec<usize>, Vec<Candidate>) = versions
        .iter()
        .zip(&deleted)
        .enumerate()
        .filter_map(|(n, (version, before))| {
            let (last_updated, body) = match (version.body, before) {
                (Some(body), _) => (version.last_updated, body),
                (None, Some(before)) => (before.last_updated, before.body.as_slice()),
                (None, None) => return None,
            };
            let candidate = Candidate {
                resource_type: version.resource_type,
                id: version.id,
                last_updated,
                body,
            };
            Some((n, candidate))
        })
        .unzip();
    let mut judged = vec![false; versions.len()];
    for (n, verdict) in indexes.into_iter().zip(judge(&candidates)?) {
        judged[n] = verdict;
    }
    Ok(judged)
}

/// `parts` without redundancy: a part with no compartment and no query holds its whole type
/// (every type when it has none) and makes the other parts of that type pointless; a whole
/// part of every type makes the view [`View::All`].
fn simplify(parts: Vec<Part>) -> View {
    let whole = |p: &Part| p.compartment.is_none() && p.params.is_empty();
    if parts.iter().any(|p| whole(p) && p.resource_type.is_none()) {
        return View::All;
    }
    let whole_types: Vec<String> = parts
        .iter()
        .filter(|p| whole(p))
        .filter_map(|p| p.resource_type.clone())
        .collect();
    let mut kept: Vec<Part> = Vec::new();
    for part in parts {
        let covered = !whole(&part)
            && part
                .resource_type
                .as_ref()
                .is_some_and(|t| whole_types.contains(t));
        if !covered && !kept.contains(&part) {
            kept.push(part);
        }
    }
    View::Only(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use scope::Scopes;

    fn access(scopes: &str, patient: Option<&str>) -> Access {
        Access::Token(Arc::new(Principal {
            subject: Some("s".into()),
            client: None,
            patient: patient.map(String::from),
            scopes: Scopes::parse(scopes),
        }))
    }

    fn types(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn each_permission_needs_its_scope() {
        let token = access("user/Observation.rs user/Patient.c", None);
        assert!(token.require(Permission::Read, Some("Observation")).is_ok());
        assert!(
            token
                .require(Permission::Search, Some("Observation"))
                .is_ok()
        );
        assert!(token.require(Permission::Create, Some("Patient")).is_ok());
        let refused = token
            .require(Permission::Update, Some("Observation"))
            .unwrap_err();
        assert_eq!(refused.status, 403);
        assert!(refused.diagnostics.contains("user/Observation.u"));
        assert!(Access::Open.require(Permission::Delete, Some("X")).is_ok());
    }

    #[test]
    fn patient_scopes_need_a_patient_claim() {
        let without = access("patient/*.rs", None);
        let refused = without.require(Permission::Read, Some("Observation"));
        assert!(
            refused
                .unwrap_err()
                .diagnostics
                .contains("no patient claim")
        );
        assert_eq!(without.view(Permission::Read), View::Only(vec![]));
        let with = access("patient/*.rs", Some("p1"));
        assert!(with.require(Permission::Read, Some("Observation")).is_ok());
        assert_eq!(
            with.view(Permission::Read),
            View::Only(vec![Part {
                resource_type: None,
                compartment: Some(("Patient".into(), "p1".into())),
                params: vec![],
            }])
        );
        assert!(with.confined(Permission::Read, "Observation"));
    }

    #[test]
    fn views_add_up_and_simplify() {
        let token = access(
            "patient/Observation.rs?category=laboratory user/Observation.r system/Patient.rs",
            Some("p1"),
        );
        // Reading: the user scope holds every Observation, the patient scope nothing more.
        let whole = |t: &str| Part {
            resource_type: Some(t.into()),
            compartment: None,
            params: vec![],
        };
        assert_eq!(
            token.view(Permission::Read),
            View::Only(vec![whole("Observation"), whole("Patient")])
        );
        assert!(!token.confined(Permission::Read, "Observation"));
        // Searching: only the patient's laboratory Observations, and every Patient.
        let View::Only(parts) = token.view(Permission::Search) else {
            panic!("confined")
        };
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].params, [("category".into(), "laboratory".into())]);
        assert!(token.confined(Permission::Search, "Observation"));
        assert!(
            token
                .search_view(Permission::Search, &types(&["Condition"]))
                .is_err()
        );
        assert!(
            token
                .search_view(Permission::Search, &types(&["Observation", "Patient"]))
                .is_ok()
        );
        assert_eq!(
            access("system/*.cruds", None).view(Permission::Delete),
            View::All
        );
        assert_eq!(Access::Open.view(Permission::Read), View::All);
    }
}
