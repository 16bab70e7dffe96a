//! The one write path: every change to the store goes through [`Committer`], a single writer
//! thread that commits requests in groups.
//!
//! Requests that arrive while a commit is being made durable wait in the channel; the writer
//! takes all of them (up to [`MAX_GROUP`]) into the next redb write transaction, so concurrent
//! writers share one fsync instead of queueing for one each (group commit). Each request is
//! still all-or-nothing: its preconditions are checked against the state left by the requests
//! before it in the group, and only when all of them hold are its writes applied. A request is
//! answered only after the transaction holding it is durably committed; if the commit fails,
//! every request of the group fails and nothing of it is visible.

use super::StoreError;
use super::tables::{
    CHANGES, CURRENT, ChangeRecord, CurrentRecord, Method, Op, TYPE_CHANGES, VERSIONS,
    VersionRecord,
};
use crate::fhir::datetime::{self, Micros};
use crate::fhir::resource::stamp;
use crate::fhir::{FhirError, IssueCode};
use redb::{Database, ReadableTable, Table};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::mpsc;
use tokio::sync::{oneshot, watch};

/// The most requests one redb transaction takes.
pub const MAX_GROUP: usize = 512;

/// One resource change of a request.
#[derive(Debug)]
pub struct Write {
    pub resource_type: String,
    pub id: String,
    pub action: Action,
    /// `If-Match`: the version the client last saw; the write fails unless it is current.
    /// Version 0 is that of a resource that does not exist (never did).
    pub if_match: Option<u64>,
}

#[derive(Debug)]
pub enum Action {
    /// The create interaction (POST): the id is new. Re-creating a deleted id is allowed.
    Create(Value),
    /// The update interaction (PUT): updates, or creates when the resource does not exist.
    Update(Value),
    /// The delete interaction: a tombstone version; nothing happens when the resource does not
    /// exist or is already deleted.
    Delete,
}

/// What one write did.
#[derive(Debug, Clone)]
pub struct Applied {
    pub resource_type: String,
    pub id: String,
    /// The version the resource is at after the write (0 for a delete of a resource that never
    /// existed).
    pub vid: u64,
    /// None when the write changed nothing (a delete of a missing or deleted resource).
    pub op: Option<Op>,
    pub last_updated: Micros,
    /// The stored JSON of the new version, for creates and updates.
    pub body: Option<Vec<u8>>,
    /// The change-log seq of the new version.
    pub seq: Option<u64>,
}

/// Why a request was refused; `entry` is the index of the write at fault.
#[derive(Debug, Clone)]
pub struct CommitError {
    pub entry: Option<usize>,
    pub error: FhirError,
}

impl CommitError {
    fn at(entry: usize, error: FhirError) -> Self {
        CommitError {
            entry: Some(entry),
            error,
        }
    }

    fn whole(error: FhirError) -> Self {
        CommitError { entry: None, error }
    }
}

type Reply = oneshot::Sender<Result<Vec<Applied>, CommitError>>;

enum Message {
    Commit(Vec<Write>, Reply),
    Stop,
}

/// The handle of the writer thread.
pub struct Committer {
    sender: mpsc::Sender<Message>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Where the writer resumes: the next change-log seq and the last lastUpdated it gave.
pub struct Position {
    pub next_seq: u64,
    pub last_time: Micros,
}

impl Committer {
    /// Starts the writer thread. `committed` is told the seq of the last durable change after
    /// every commit.
    pub fn start(db: Arc<Database>, position: Position, committed: watch::Sender<u64>) -> Self {
        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("fhirlake-writer".into())
            .spawn(move || {
                Writer {
                    db,
                    position,
                    committed,
                }
                .run(receiver)
            })
            .expect("spawn the writer thread");
        Committer {
            sender,
            thread: std::sync::Mutex::new(Some(thread)),
        }
    }

    /// Sends `writes` to the writer now, as one all-or-nothing transaction; the returned
    /// future resolves once it is durable. Requests submitted before any is awaited can share
    /// one commit.
    pub fn submit(
        &self,
        writes: Vec<Write>,
    ) -> impl Future<Output = Result<Vec<Applied>, CommitError>> + 'static {
        let (reply, answer) = oneshot::channel();
        let sent = self.send(writes, reply);
        async move {
            sent?;
            answer.await.unwrap_or_else(|_| Err(closed()))
        }
    }

    /// [`Committer::commit`] for callers outside an async runtime.
    pub fn commit_blocking(&self, writes: Vec<Write>) -> Result<Vec<Applied>, CommitError> {
        let (reply, answer) = oneshot::channel();
        self.send(writes, reply)?;
        answer.blocking_recv().unwrap_or_else(|_| Err(closed()))
    }

    fn send(&self, writes: Vec<Write>, reply: Reply) -> Result<(), CommitError> {
        self.sender
            .send(Message::Commit(writes, reply))
            .map_err(|_| closed())
    }

    /// Whether the writer thread is running: false after [`Committer::stop`] or a panic.
    pub fn is_running(&self) -> bool {
        self.thread
            .lock()
            .expect("writer handle")
            .as_ref()
            .is_some_and(|thread| !thread.is_finished())
    }

    /// Lets the writer finish the requests already sent, then stops it.
    pub fn stop(&self) {
        let _ = self.sender.send(Message::Stop);
        if let Some(thread) = self.thread.lock().expect("writer handle").take() {
            let _ = thread.join();
        }
    }
}

fn closed() -> CommitError {
    CommitError::whole(FhirError::new(
        503,
        IssueCode::Exception,
        "the store is shutting down",
    ))
}

struct Writer {
    db: Arc<Database>,
    position: Position,
    committed: watch::Sender<u64>,
}

/// The tables a write touches, open in one write transaction.
struct Tables<'txn> {
    versions: Table<'txn, (&'static str, &'static str, u64), &'static [u8]>,
    current: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    changes: Table<'txn, u64, &'static [u8]>,
    type_changes: Table<'txn, (&'static str, u64), ()>,
}

/// A write whose preconditions hold, ready to apply.
struct Plan {
    write: Write,
    vid: u64,
    op: Option<Op>,
}

impl Writer {
    fn run(mut self, receiver: mpsc::Receiver<Message>) {
        while let Ok(Message::Commit(writes, reply)) = receiver.recv() {
            let mut group = vec![(writes, reply)];
            let mut stop = false;
            while group.len() < MAX_GROUP {
                match receiver.try_recv() {
                    Ok(Message::Commit(writes, reply)) => group.push((writes, reply)),
                    Ok(Message::Stop) => {
                        stop = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(group);
            if stop {
                break;
            }
        }
    }

    fn commit_group(&mut self, group: Vec<(Vec<Write>, Reply)>) {
        let time = datetime::now().max(self.position.last_time + 1);
        let start_seq = self.position.next_seq;
        let (requests, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
        match self.apply_group(requests, time) {
            Ok(results) => {
                self.position.last_time = time;
                if self.position.next_seq != start_seq {
                    self.committed.send_replace(self.position.next_seq - 1);
                }
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(error) => {
                self.position.next_seq = start_seq;
                tracing::error!(%error, "commit failed; the group is rolled back");
                let error = FhirError::internal(format!("the store could not commit: {error}"));
                for reply in replies {
                    let _ = reply.send(Err(CommitError::whole(error.clone())));
                }
            }
        }
    }

    fn apply_group(
        &mut self,
        requests: Vec<Vec<Write>>,
        time: Micros,
    ) -> Result<Vec<Result<Vec<Applied>, CommitError>>, StoreError> {
        let txn = self.db.begin_write()?;
        let mut results = Vec::with_capacity(requests.len());
        {
            let mut tables = Tables {
                versions: txn.open_table(VERSIONS)?,
                current: txn.open_table(CURRENT)?,
                changes: txn.open_table(CHANGES)?,
                type_changes: txn.open_table(TYPE_CHANGES)?,
            };
            for writes in requests {
                let result = match plan(&tables, writes)? {
                    Ok(plans) => Ok(self.apply(&mut tables, plans, time)?),
                    Err(refused) => Err(refused),
                };
                results.push(result);
            }
        }
        txn.commit()?;
        Ok(results)
    }

    fn apply(
        &mut self,
        tables: &mut Tables<'_>,
        plans: Vec<Plan>,
        time: Micros,
    ) -> Result<Vec<Applied>, StoreError> {
        let txid = self.position.next_seq;
        let mut applied = Vec::with_capacity(plans.len());
        for Plan { write, vid, op } in plans {
            let Write {
                resource_type,
                id,
                action,
                ..
            } = write;
            let Some(op) = op else {
                applied.push(Applied {
                    resource_type,
                    id,
                    vid,
                    op: None,
                    last_updated: time,
                    body: None,
                    seq: None,
                });
                continue;
            };
            let (method, body) = match action {
                Action::Create(resource) => (Method::Post, Some(stamp(resource, &id, vid, time))),
                Action::Update(resource) => (Method::Put, Some(stamp(resource, &id, vid, time))),
                Action::Delete => (Method::Delete, None),
            };
            let seq = self.position.next_seq;
            self.position.next_seq += 1;
            let record = VersionRecord::encode(op, method, time, body.as_deref().unwrap_or(&[]));
            let key = (resource_type.as_str(), id.as_str());
            tables
                .versions
                .insert((key.0, key.1, vid), record.as_slice())?;
            let current = CurrentRecord {
                vid,
                deleted: op == Op::Delete,
                last_updated: time,
            };
            tables.current.insert(key, current.encode().as_slice())?;
            let change = ChangeRecord {
                seq,
                txid,
                resource_type: resource_type.clone(),
                id: id.clone(),
                vid,
                op,
                last_updated: time,
            };
            tables.changes.insert(seq, change.encode().as_slice())?;
            tables.type_changes.insert((key.0, seq), ())?;
            applied.push(Applied {
                resource_type,
                id,
                vid,
                op: Some(op),
                last_updated: time,
                body,
                seq: Some(seq),
            });
        }
        Ok(applied)
    }
}

/// Checks every write's preconditions against the current state; the request is refused as a
/// whole at its first failing write. A request may touch each resource once.
fn plan(
    tables: &Tables<'_>,
    writes: Vec<Write>,
) -> Result<Result<Vec<Plan>, CommitError>, StoreError> {
    let mut touched = HashSet::with_capacity(writes.len());
    let mut plans = Vec::with_capacity(writes.len());
    for (entry, write) in writes.into_iter().enumerate() {
        let name = format!("{}/{}", write.resource_type, write.id);
        if !touched.insert(name.clone()) {
            return Ok(Err(CommitError::at(
                entry,
                FhirError::bad_request(
                    IssueCode::Invalid,
                    format!("{name} is changed more than once in one transaction"),
                ),
            )));
        }
        let current = tables
            .current
            .get((write.resource_type.as_str(), write.id.as_str()))?
            .map(|guard| CurrentRecord::decode(guard.value()));
        let live = current.filter(|c| !c.deleted);
        if let Some(expected) = write.if_match
            && current.map_or(0, |c| c.vid) != expected
        {
            let found = match current {
                Some(c) => format!("the current version is {}", c.vid),
                None => "it does not exist".to_string(),
            };
            return Ok(Err(CommitError::at(
                entry,
                FhirError::new(
                    412,
                    IssueCode::Conflict,
                    format!("{name}: If-Match asked for version {expected}, but {found}"),
                ),
            )));
        }
        let next = current.map_or(1, |c| c.vid + 1);
        let (vid, op) = match (&write.action, live) {
            (Action::Create(_), Some(_)) => {
                return Ok(Err(CommitError::at(
                    entry,
                    FhirError::new(409, IssueCode::Conflict, format!("{name} already exists")),
                )));
            }
            (Action::Create(_), None) => (next, Some(Op::Create)),
            (Action::Update(_), Some(_)) => (next, Some(Op::Update)),
            (Action::Update(_), None) => (next, Some(Op::Create)),
            (Action::Delete, Some(_)) => (next, Some(Op::Delete)),
            (Action::Delete, None) => (current.map_or(0, |c| c.vid), None),
        };
        plans.push(Plan { write, vid, op });
    }
    Ok(Ok(plans))
}
