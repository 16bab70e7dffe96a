//! A job's record: what is stored of a job in the store's `jobs` table (JSON, opaque to the
//! store), and what its status answers are made of.
//!
//! The record is rewritten whole at each step of the job (start, each checkpoint, the end):
//! what a restart finds is the last checkpoint made, never a partial one. Its `request` and
//! `checkpoint` belong to the job's kind (`export` reads them); the rest is the same for every
//! kind.

use crate::auth::Access;
use crate::fhir::datetime::Micros;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a job does. New kinds (erasure, analytics) are new variants; a record of a
/// kind this build does not know is kept and never run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A bulk `$export` (`jobs::export`).
    Export,
    /// A `$purge` or `$bulk-delete` (`jobs::erase`).
    Erasure,
    /// An `$import` or a `$bulk-submit` submission (`jobs::import`).
    Import,
    /// A `$viewdefinition-export` (`jobs::views::view_export`).
    ViewExport,
}

impl Kind {
    pub const ALL: &[Kind] = &[Kind::Export, Kind::Erasure, Kind::Import, Kind::ViewExport];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Export => "export",
            Kind::Erasure => "erasure",
            Kind::Import => "import",
            Kind::ViewExport => "view-export",
        }
    }

    /// Whether jobs of this kind put files in the sink (and so resume only where they began
    /// to, [`Job::place`]).
    pub fn writes_files(self) -> bool {
        !matches!(self, Kind::Erasure)
    }
}

/// Where a job is in its life: `queued` -> `running` -> `completed` | `failed`, or
/// `cancelled` from any of the first two (or after the end, when its client is done with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl State {
    pub const ALL: &[State] = &[
        State::Queued,
        State::Running,
        State::Completed,
        State::Failed,
        State::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Running => "running",
            State::Completed => "completed",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
        }
    }

    /// Whether the job is over (its retention runs from its `finished` time).
    pub fn is_finished(self) -> bool {
        matches!(self, State::Completed | State::Failed | State::Cancelled)
    }
}

/// Who started a job: the token's subject, client and patient claims. Only the same owner sees
/// the job and its files (a token with another patient claim is another owner, even with the
/// same subject). `None` under `--auth none`, where there is no one to tell apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub subject: Option<String>,
    pub client: Option<String>,
    pub patient: Option<String>,
}

impl Owner {
    /// The owner a request's access makes.
    pub fn of(access: &Access) -> Option<Owner> {
        match access {
            Access::Open => None,
            Access::Token(principal) => Some(Owner {
                subject: principal.subject.clone(),
                client: principal.client.clone(),
                patient: principal.patient.clone(),
            }),
        }
    }
}

/// What a file of a job holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Content {
    /// Resources (an export's `output`).
    Output,
    /// Transaction Bundles of deletions (an export's `deleted`).
    Deleted,
    /// OperationOutcomes (the manifest's `error`).
    Error,
}

/// One finished file of a job: complete, durable, and named in its record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    pub content: Content,
    /// The resource type of its lines.
    #[serde(rename = "type")]
    pub resource_type: String,
    /// Its name in the job's folder of the sink.
    pub name: String,
    /// How many lines (resources) it has.
    pub count: u64,
    /// Its size in the sink, in bytes.
    pub bytes: u64,
}

/// Why a job failed, as its status answers it: an HTTP status and an OperationOutcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub status: u16,
    pub outcome: Value,
}

/// A job's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub kind: Kind,
    pub owner: Option<Owner>,
    /// What was asked, in the kind's own terms.
    pub request: Value,
    pub state: State,
    pub created: Micros,
    #[serde(default)]
    pub started: Option<Micros>,
    #[serde(default)]
    pub finished: Option<Micros>,
    /// How many items (resources) the job has processed, as of its last checkpoint.
    #[serde(default)]
    pub done: u64,
    /// The files finished so far, in order.
    #[serde(default)]
    pub outputs: Vec<Output>,
    #[serde(default)]
    pub failure: Option<Failure>,
    /// Where the job resumes after a restart, in the kind's own terms (`null` at the start).
    #[serde(default)]
    pub checkpoint: Value,
    /// The change-log seq the job needs every later change of: retention keeps them while the
    /// job is not finished (an export's snapshot).
    #[serde(default)]
    pub keeps_changes_after: Option<u64>,
    /// Where the job's files go ([`super::Sink::place`]), recorded at kick-off: a job that
    /// writes files resumes only where it began (`None` in records made before it was kept).
    #[serde(default)]
    pub place: Option<String>,
}

impl Job {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a job record serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Job, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Whether `owner` may see this job (and its files).
    pub fn owned_by(&self, owner: &Option<Owner>) -> bool {
        &self.owner == owner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_record_round_trips_and_reads_the_defaults() {
        let job = Job {
            id: "j".into(),
            kind: Kind::Export,
            owner: Some(Owner {
                subject: Some("s".into()),
                client: None,
                patient: Some("p".into()),
            }),
            request: json!({"types": ["Patient"]}),
            state: State::Running,
            created: 1,
            started: Some(2),
            finished: None,
            done: 7,
            outputs: vec![Output {
                content: Content::Output,
                resource_type: "Patient".into(),
                name: "Patient-1.ndjson".into(),
                count: 7,
                bytes: 700,
            }],
            failure: None,
            checkpoint: json!({"type": 0}),
            keeps_changes_after: Some(5),
            place: Some("the data directory".into()),
        };
        assert_eq!(Job::decode(&job.encode()).unwrap(), job);
        let written = serde_json::to_value(&job).unwrap();
        assert_eq!(written["state"], "running");
        assert_eq!(written["outputs"][0]["content"], "output");
        let minimal = json!({"id": "k", "kind": "export", "owner": null, "request": {},
            "state": "queued", "created": 0});
        let job = Job::decode(minimal.to_string().as_bytes()).unwrap();
        assert_eq!((job.done, job.outputs.len()), (0, 0));
        assert!(job.owned_by(&None) && !job.owned_by(&job_owner()));
    }

    fn job_owner() -> Option<Owner> {
        Some(Owner {
            subject: Some("s".into()),
            client: None,
            patient: None,
        })
    }
}
