//! Erasure jobs: `$purge` of a patient's compartment and `$bulk-delete` of a type (tombstones,
//! or erasure with `hardDelete=true`), in batches of [`BATCH`] resources.
//!
//! The job holds no list of resources: each step searches the index (once it holds every
//! change committed so far) for the first [`BATCH`] resources that still match its target
//! (the compartment, or the type and criteria), limited by lastUpdated (`_since`,
//! `start`/`end`, and never after the kick-off: what is written later is not the job's), and
//! deletes or erases them in one writer transaction, then makes a checkpoint. What is erased no
//! longer matches, so a job that resumes after a crash or a stop simply searches again: each
//! resource is at any time either wholly present or wholly erased (a resource's versions are
//! erased in one transaction, `store::erase`). The compartment's own Patient goes last, so an
//! interrupted purge can still be found and resumed by what it names.
//!
//! When it ends, the job's result names the finished and running exports that may hold what
//! it erased (their snapshot is at or after the first change it erased), for an operator to
//! remove.
//!
//! Testing only: in a debug build, `FHIRLAKE_TEST_ERASE_PAUSE=K` makes an erasure job pause,
//! once it has done at least K resources, until it is stopped (a crash or a stop), by count.

use super::{Context, Job, Kind, State, Stop};
use crate::auth::{Access, audit};
use crate::fhir::FhirError;
use crate::search::query::Target;
use crate::search::view::View;
use crate::store::commit::{Action, Write};
use crate::store::erase::Erasure;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The most resources one step (one writer transaction) deletes or erases.
pub const BATCH: usize = 200;

/// What an erasure job does, as its record keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// `$purge` or `$bulk-delete`.
    pub operation: String,
    /// The kick-off's URL (the result's `request`).
    pub url: String,
    /// The compartment (`Patient`, id) of a purge.
    #[serde(default)]
    pub compartment: Option<(String, String)>,
    /// The type of a bulk delete.
    #[serde(default)]
    pub resource_type: Option<String>,
    /// The search parameters that select the resources (criteria and `_lastUpdated`).
    pub params: Vec<(String, String)>,
    /// Erase (true) or delete with tombstones (false).
    pub hard: bool,
    /// Who asked, for the audit lines.
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub client: Option<String>,
}

impl Request {
    fn target(&self) -> Target {
        Target {
            resource_types: self.resource_type.iter().cloned().collect(),
            compartment: self.compartment.clone(),
            ..Target::default()
        }
    }

    /// A search request for the next step's resources.
    pub fn search(&self, count: usize) -> crate::search::Request {
        crate::search::Request {
            target: self.target(),
            params: self.params.clone(),
            strict: true,
            count,
            offset: 0,
            after: None,
            snapshot: None,
            total: false,
            view: View::All,
        }
    }
}

/// Where the job stands, in its record's `checkpoint`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Checkpoint {
    /// The first change-log seq it erased (for the exports that may hold it).
    #[serde(default)]
    first_erased: Option<u64>,
    /// When done: the ids of the finished exports that may hold what it erased.
    #[serde(default)]
    exports: Vec<String>,
}

fn request_of(job: &Job) -> Result<Request, FhirError> {
    serde_json::from_value(job.request.clone()).map_err(|error| {
        FhirError::internal(format!("the erasure's request cannot be read: {error}"))
    })
}

/// Runs an erasure job to its end (or its stop).
pub fn run(context: &Context) -> Result<(), Stop> {
    let job = context.job();
    let request = request_of(&job)?;
    let mut checkpoint: Checkpoint =
        serde_json::from_value(job.checkpoint.clone()).unwrap_or_default();
    let mut done = job.done;
    let pause = pause_after();
    let access = access_of(&request);
    let focal = request.compartment.clone();
    loop {
        context.check()?;
        if pause.is_some_and(|after| done >= after) {
            tracing::warn!(done, "erasure paused by FHIRLAKE_TEST_ERASE_PAUSE");
            loop {
                context.check()?;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        if !context.block_on(context.search.catch_up(context.store)) {
            continue; // the index is behind: what it finds may be erased already
        }
        let mut keys = context.search.search(&request.search(BATCH + 1))?.matches;
        if keys.is_empty() {
            break;
        }
        // The compartment's own resource goes last.
        if keys.len() > 1
            && let Some(focal) = &focal
        {
            keys.retain(|(t, i)| (t, i) != (&focal.0, &focal.1));
        }
        keys.truncate(BATCH);
        let count = if request.hard {
            let erasures = keys
                .into_iter()
                .map(|(resource_type, id)| Erasure {
                    resource_type,
                    id,
                    vid: None,
                })
                .collect();
            let erased = context
                .store
                .erase_blocking(erasures)
                .map_err(|refused| refused.error)?;
            for one in &erased {
                audit::erasure(&access, &request.operation, Some(&job.id), one);
            }
            let first = erased.iter().flat_map(|e| e.changes.first()).min();
            checkpoint.first_erased = checkpoint
                .first_erased
                .into_iter()
                .chain(first.copied())
                .min();
            erased.iter().filter(|e| !e.vids.is_empty()).count()
        } else {
            let writes = keys
                .into_iter()
                .map(|(resource_type, id)| Write {
                    resource_type,
                    id,
                    action: Action::Delete,
                    if_match: None,
                })
                .collect();
            let applied = context
                .store
                .commit_blocking(writes)
                .map_err(|refused| refused.error)?;
            applied.iter().filter(|a| a.op.is_some()).count()
        };
        done += count as u64;
        let saved = serde_json::to_value(&checkpoint).expect("a checkpoint serializes");
        context.checkpoint(|job| {
            job.done = done;
            job.checkpoint = saved;
        })?;
        context.progress(done, format!("{done} resources done"));
    }
    if let Some(first) = checkpoint.first_erased {
        checkpoint.exports = exports_holding(context, first)?;
    }
    let saved = serde_json::to_value(&checkpoint).expect("a checkpoint serializes");
    context.checkpoint(|job| {
        job.done = done;
        job.checkpoint = saved;
    })
}

/// The audit lines' access: who kicked the job off.
fn access_of(request: &Request) -> Access {
    match (&request.subject, &request.client) {
        (None, None) => Access::Open,
        (subject, client) => Access::Token(std::sync::Arc::new(crate::auth::Principal {
            subject: subject.clone(),
            client: client.clone(),
            ..Default::default()
        })),
    }
}

/// The exports (their job ids) that finished, or are running, with a snapshot at or after
/// `seq`: they may hold a version erased at `seq` (a running one in the files it wrote before
/// the erasure; what it reads after does not hold it, nor does a queued one's).
fn exports_holding(context: &Context, seq: u64) -> Result<Vec<String>, Stop> {
    let mut found = Vec::new();
    for (id, bytes) in context.store.jobs()? {
        let Ok(job) = Job::decode(&bytes) else {
            continue;
        };
        if job.kind != Kind::Export || !matches!(job.state, State::Completed | State::Running) {
            continue;
        }
        if super::export::request_of(&job).is_ok_and(|export| export.snapshot.seq >= seq) {
            found.push(id);
        }
    }
    found.sort();
    Ok(found)
}

/// The result of a finished erasure job, as its status answers it: what was asked, how many
/// resources were deleted or erased, and the exports that may hold what was erased.
pub fn manifest(job: &Job, base: &str) -> Result<Value, FhirError> {
    let request = request_of(job)?;
    let checkpoint: Checkpoint = serde_json::from_value(job.checkpoint.clone()).unwrap_or_default();
    let exports: Vec<String> = checkpoint
        .exports
        .iter()
        .map(|id| super::status_url(base, id))
        .collect();
    Ok(json!({
        "request": request.url,
        "operation": request.operation,
        "hardDelete": request.hard,
        "count": job.done,
        "exportsHoldingErasedData": exports,
    }))
}

/// Checks a new erasure's request by running its first search (400 for malformed criteria).
pub fn check(search: &crate::search::Engine, request: &Request) -> Result<(), FhirError> {
    search.search(&request.search(1)).map(|_| ())
}

/// `FHIRLAKE_TEST_ERASE_PAUSE` (debug builds only).
fn pause_after() -> Option<u64> {
    if !cfg!(debug_assertions) {
        return None;
    }
    std::env::var("FHIRLAKE_TEST_ERASE_PAUSE")
        .ok()?
        .parse()
        .ok()
}
