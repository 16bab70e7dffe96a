//! Bulk import as a job: `$import` (the Parameters HAPI and Pathling take: `input` files of
//! NDJSON with their `type` and `url`) and the Bulk Data IG's `$bulk-submit` (a submission of
//! manifests that list NDJSON files), both run by [`run`](mod@run) and answered through the
//! job's status URL ([`manifest`]).
//!
//! **The write path.** Every line goes through `bulk::ndjson` (the loop `fhirlake import` uses
//! too): the validation policy, the change log and the index, as an update-as-create when the
//! resource has an id. A resource without an id gets one made of the job, the input and the
//! line ([`line_id`]), written as an update-as-create too, so that loading the line again
//! after a crash finds it stored.
//!
//! **Who may import.** The token must hold create and update rights, unconfined, on every type
//! it imports: `system/T.cu` (v2; `system/T.write` in v1), `system/*.cu` for any type, or a
//! `user/` scope without a restriction. A `patient/` token may not import (403), nor a scope
//! with search restrictions. The types declared by `input.type` are checked at kick-off; a
//! line of another type than its input declares, or of a type the token may not write, is
//! rejected (and reported) on its own.
//!
//! **Resume without duplicates or gaps.** A checkpoint holds the input and line reached (every
//! line up to it settled: stored or reported), the counts per type so far and the manifests
//! read; it is made every [`CHECKPOINT_LINES`] lines and at the end of each input. Lines after
//! the checkpoint may have been committed before a crash: loaded again, each is an update of
//! the same content (with the same id, [`line_id`] for those without one), which the write
//! path keeps as the current version, without a new version or change. Rejected lines go to
//! `errors-{input}-{n}` files, each finished (durable) by the checkpoint that names it; the
//! unfinished one is written again from the checkpoint, so no line is reported twice.
//!
//! **Submissions** (`$bulk-submit`). One job per submission (submitter and `submissionId`)
//! and owner: each `$bulk-submit` with a `manifestUrl` adds the manifest to the job's request;
//! the job reads each manifest (through the same inputs, and its `link` pages), imports its
//! files, and then waits for more, parked (off the job workers, `jobs::Stop::Parked`), until
//! the submission is `completed`. `stopped` cancels the job; resources already imported stay.

pub mod request;
pub mod run;

use super::{Content, Job};
use crate::fhir::datetime::format_instant;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub use request::{Writable, parse_import};
pub use run::run;

/// How many settled lines a checkpoint covers at most.
pub const CHECKPOINT_LINES: u64 = 10_000;

/// One input file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    /// The type of every line, when declared.
    #[serde(rename = "type")]
    pub resource_type: Option<String>,
    pub url: String,
    /// The manifest of the submission it was listed in (its position).
    #[serde(default)]
    pub manifest: Option<usize>,
    /// A manifest page that could not be read, listed so that its report names its manifest:
    /// never loaded.
    #[serde(default)]
    pub unread: bool,
}

/// A `$bulk-submit` submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    /// `system|value` of the submitter's Identifier.
    pub submitter: String,
    pub id: String,
    /// The manifests' URLs, in the order they were submitted.
    pub manifests: Vec<String>,
    /// The provider said `completed`: no more manifests come.
    pub completed: bool,
}

/// An import's request, as kept in its job's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The kick-off's URL (the manifest's `request`).
    pub url: String,
    /// The files named at kick-off (`$import`).
    pub inputs: Vec<Input>,
    /// Headers sent with every http(s) request for an input (`storageDetail`'s
    /// `credentialHttpBasic`, `fileRequestHeader`).
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The types the owner may write.
    pub writable: Writable,
    #[serde(default)]
    pub submission: Option<Submission>,
}

/// Where a run is, as of its last checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// The files the manifests read so far listed, after the request's.
    pub fetched: Vec<Input>,
    /// How many of the submission's manifests were read.
    pub manifests_read: usize,
    /// The input being read (its position among the request's and the fetched ones).
    pub input: usize,
    /// The last line of it settled.
    pub line: u64,
    /// Resources stored, by type.
    pub counts: BTreeMap<String, u64>,
    /// Lines rejected (and inputs not read).
    pub rejected: u64,
}

/// The media type of the inputs.
pub const NDJSON: &str = "application/fhir+ndjson";

/// The id of a resource without one, on line `line` of input `input` of job `job`: the same
/// when the line is loaded again, unique among all jobs' lines (at most 64 characters).
pub fn line_id(job: &str, input: usize, line: u64) -> String {
    let job: String = job.chars().filter(|c| *c != '-').collect();
    format!("{job}-{input}-{line}")
}

/// The status manifest of a finished import `job` served under `base` (the FHIR base URL):
/// the resources stored by type (`output`, without files: they are in the store), and the
/// files of OperationOutcomes of the rejected lines (`error`; for a submission, `outcome`,
/// each with its `manifestUrl`).
pub fn manifest(job: &Job, request: &Request, base: &str) -> Value {
    let resume = resume_of(job).unwrap_or_default();
    let output: Vec<Value> = resume
        .counts
        .iter()
        .map(|(resource_type, count)| json!({"type": resource_type, "count": count}))
        .collect();
    let inputs: Vec<&Input> = request.inputs.iter().chain(&resume.fetched).collect();
    let errors: Vec<Value> = job
        .outputs
        .iter()
        .filter(|o| o.content == Content::Error)
        .map(|o| {
            let mut file = json!({
                "type": "OperationOutcome",
                "url": super::file_url(base, &job.id, &o.name),
                "count": o.count,
            });
            let manifest = input_of(&o.name)
                .and_then(|n| inputs.get(n))
                .and_then(|input| input.manifest)
                .zip(request.submission.as_ref())
                .and_then(|(n, submission)| submission.manifests.get(n));
            if let Some(manifest) = manifest {
                file["manifestUrl"] = json!(manifest);
            }
            file
        })
        .collect();
    let time = format_instant(job.finished.unwrap_or(job.created));
    match &request.submission {
        None => json!({
            "transactionTime": time,
            "request": request.url,
            "requiresAccessToken": true,
            "output": output,
            "error": errors,
        }),
        Some(submission) => json!({
            "submissionId": submission.id,
            "transactionTime": time,
            "requiresAccessToken": true,
            "outputFormat": NDJSON,
            "output": [],
            "outcome": errors,
            "extension": {"resourceCounts": output},
        }),
    }
}

/// The name of the error file `n` of input `input` (without its extension).
pub fn error_stem(input: usize, n: usize) -> String {
    format!("errors-{input}-{n}")
}

/// The input an error file reports on, from its name.
fn input_of(name: &str) -> Option<usize> {
    name.strip_prefix("errors-")?
        .split('-')
        .next()?
        .parse()
        .ok()
}

/// A request as stored in a job's record; a record this build wrote always reads.
pub fn request_of(job: &Job) -> Result<Request, crate::fhir::FhirError> {
    serde_json::from_value(job.request.clone()).map_err(|error| {
        crate::fhir::FhirError::internal(format!("the import's request cannot be read: {error}"))
    })
}

/// The job's last checkpoint (the start when it has none).
pub fn resume_of(job: &Job) -> Result<Resume, crate::fhir::FhirError> {
    match &job.checkpoint {
        Value::Null => Ok(Resume::default()),
        checkpoint => serde_json::from_value(checkpoint.clone()).map_err(|error| {
            crate::fhir::FhirError::internal(format!("the import's checkpoint: {error}"))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_ids_are_valid_stable_and_distinct() {
        let job = "0f8fad5b-d9cb-469f-a165-70867728950e";
        let id = line_id(job, 9999, u64::MAX);
        assert!(id.len() <= 64, "{id}");
        assert!(crate::fhir::resource::check_id(&id).is_ok(), "{id}");
        assert_eq!(line_id(job, 1, 2), line_id(job, 1, 2));
        assert_ne!(line_id(job, 1, 23), line_id(job, 12, 3));
        assert_eq!(input_of(&format!("{}.ndjson", error_stem(12, 3))), Some(12));
    }
}
