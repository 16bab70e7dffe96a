//! Bulk `$export` (FHIR Bulk Data Access IG) as a job: the kick-off's parameters
//! ([`request`]), which resources go out ([`select`]), the run that writes them
//! ([`run`](mod@run)) and the manifest of the finished job ([`manifest`]).
//!
//! **The snapshot.** At kick-off the writer names its position: the seq `S` of the last change
//! committed and its transaction's time `T` (`store::commit::Booked`): every change up to `S`
//! has a lastUpdated at or before `T`, every later one after it. `T` is the manifest's
//! `transactionTime`, and the export holds exactly the versions of `S`, however long it runs and
//! whatever is written meanwhile: it reads them through a `store::snapshot::Snapshot` at `S`
//! (the current versions, and the version before the first change after `S` of those changed
//! since). The job's record keeps `S`, so change-log retention keeps the changes after it, and
//! a job resumed after a restart reads the same snapshot.
//!
//! **`_typeFilter` and the index.** The search index holds each resource as it is now, not as
//! it was at `S`; it catches up with the writes (it may lag behind them). The export waits until
//! the index holds `S`, takes an index snapshot (at some seq `I >= S`), then opens the store
//! snapshot (read at `H >= I`, so every change the index holds is among the changes it sees).
//! A resource that did not change after `S` (up to `H`) is in the index as it was at `S`: the
//! index answers for it, one query of the criteria and `_id` per batch of resources. A resource
//! changed after `S` (and a deleted one, for `deleted`) is judged on its version at `S` in a
//! scratch index (`search::versions`, as Subscriptions judge a version as written): the same
//! planner and parameters, on that version alone. Chains and `_has` would judge other
//! resources as they are now: they are refused (400, or ignored and reported under
//! `Prefer: handling=lenient`). Several filters of one type are ORed; a type without a filter
//! is not filtered; filters of types not exported change nothing.
//!
//! **Who sees what.** Every resource goes through the view of the token that started the job
//! (`Access::view` for read, kept in the job's request): a `patient/` token exports its own
//! compartment only, and what is hidden is absent (not counted, not named in `deleted`). A
//! type the token may not read is left out; one named in `_type` is a 403 at kick-off. The
//! files are the owner's only (`jobs::Owner`) and need a token still allowed to read their type.
//!
//! **Patients and Groups.** `Patient/$export` exports the Patient compartment: Patients, and
//! the resources of the compartment's types whose membership parameters refer to a Patient.
//! `Group/[id]/$export` does the same for the Group's members at `S` (`member.entity` Patient
//! references, members with `inactive: true` left out), `patient` narrows either to the
//! Patients named. A `_since` export of a Group returns what changed since `_since` for every
//! member, old members and new alike (no earlier resources of new members).
//!
//! **Files.** One type per file, at most `--export-file-resources` resources each, written from
//! the stored bytes (NDJSON: a stored version holds no newline), except where `_elements` cuts
//! (the top-level elements named for the type, `id`, `meta` and the mandatory ones, tagged
//! SUBSETTED; a type `_elements` names nothing of is exported whole). With `_since`, each type's
//! resources deleted after `_since` and before the snapshot are listed in `deleted` files
//! (`{Type}-deleted-n`), one transaction Bundle with one DELETE entry per line; `_until` keeps
//! the versions last changed before it. Ignored parameters (lenient) are reported in an
//! `error` file of OperationOutcomes. A file is finished (durable) before the checkpoint
//! that names it; a resumed job writes the unfinished files again, from the same snapshot, in
//! the same order (ids in byte order, per type in the order of the request): the same bytes.

pub mod request;
pub mod run;
pub mod select;

use super::{Content, Job};
use crate::fhir::datetime::{Micros, format_instant};
use crate::search::View;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use request::{KickOff, kick_off};
pub use run::run;

/// What an export is of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// `[base]/$export`: every resource.
    System,
    /// `[base]/Patient/$export`: the Patient compartment.
    Patient,
    /// `[base]/Group/[id]/$export`: the compartments of the Group's members.
    Group { id: String },
}

/// Where the change log stood at kick-off: the export holds exactly the versions up to `seq`,
/// which are those last changed at or before `time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub seq: u64,
    pub time: Micros,
}

/// An export's request, as kept in its job's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub level: Level,
    /// The kick-off's URL (the manifest's `request`).
    pub url: String,
    /// The types exported, in the order of the files.
    pub types: Vec<String>,
    /// `_since`: only versions last changed at or after it; deletions after it are listed.
    pub since: Option<Micros>,
    /// `_until`: only versions last changed before it.
    pub until: Option<Micros>,
    /// `_typeFilter`: the queries (`Type?params`), checked at kick-off.
    pub type_filters: Vec<String>,
    /// `_elements`, as given (`name` or `Type.name`).
    pub elements: Vec<String>,
    /// `patient`: only these Patients' compartments (ids).
    pub patients: Vec<String>,
    /// The owner's view: what its token may read.
    pub view: View,
    /// What was ignored under `Prefer: handling=lenient`, one note per parameter.
    pub notes: Vec<String>,
    pub snapshot: Snapshot,
}

/// The media type of the export's files.
pub const NDJSON: &str = "application/fhir+ndjson";

/// The completion manifest of a finished export `job` served under `base` (the FHIR base URL).
/// Its URLs are fhirlake's file URLs, which need the token (`requiresAccessToken: true`),
/// wherever the files are stored: with `--export-store` too, fhirlake streams them from the
/// bucket rather than hand out presigned URLs (why: `api::jobs`).
pub fn manifest(job: &Job, request: &Request, base: &str) -> Value {
    let files = |content: Content, resource_type: Option<&str>| -> Vec<Value> {
        job.outputs
            .iter()
            .filter(|output| output.content == content)
            .map(|output| {
                json!({
                    "type": resource_type.unwrap_or(&output.resource_type),
                    "url": super::file_url(base, &job.id, &output.name),
                    "count": output.count,
                })
            })
            .collect()
    };
    let mut manifest = json!({
        "transactionTime": format_instant(request.snapshot.time),
        "request": request.url,
        "requiresAccessToken": true,
        "outputFormat": NDJSON,
        "output": files(Content::Output, None),
        "error": files(Content::Error, Some("OperationOutcome")),
    });
    if request.since.is_some() {
        manifest["deleted"] = json!(files(Content::Deleted, Some("Bundle")));
    }
    manifest
}

/// A request as stored in a job's record; a record this build wrote always reads.
pub fn request_of(job: &Job) -> Result<Request, crate::fhir::FhirError> {
    serde_json::from_value(job.request.clone()).map_err(|error| {
        crate::fhir::FhirError::internal(format!("the export's request cannot be read: {error}"))
    })
}
