//! The one write path: every change to the store goes through [`Committer`], a single writer
//! thread that commits requests in groups.
//!
//! Requests that arrive while a commit is being made durable wait in the channel; the writer
//! takes all of them (up to [`MAX_GROUP`]) into the next redb write transaction, so concurrent
//! writers share one fsync instead of queueing for one each (group commit). Each request is
//! still all-or-nothing: its preconditions are checked against the state left by the requests
//! before it in the group, and only when all of them hold are its writes applied. A request is
//! answered only after the transaction holding it is durably committed; if the commit fails,
//! every request of the group fails and nothing of it is visible. (A durable redb commit costs
//! about 0.6 ms on the development machine's disk: that is what a group shares.)
//!
//! In the group's one transaction the writer plans each request against the state left before
//! it (`If-Match`: 412; a create of an id that exists: 409; a resource changed twice in one
//! request: 400; an update still equal to the current version), stamps each new version's
//! `id`, `meta.versionId` and `meta.lastUpdated`, and writes its `versions`, `current`,
//! `changes` and `type_changes` entries ([`super::tables`]). After the commit it answers every
//! request of the group and publishes the seq of the last durable change (the watch that the
//! search index and the change stream follow).
//!
//! A group's time is the later of the clock and the last change's time plus 1 µs ([`Position`]
//! restores it from the last change at start), so lastUpdated never decreases along the change
//! log, across restarts too: history relies on it to stop `_since` scans early.
//!
//! An update whose content equals the current version (see [`same_content`]) makes no new
//! version and no change: [`Store::submit`](super::Store::submit) compares it before sending it,
//! off the writer thread, and names the version found equal; the writer only checks that this
//! version is still current ([`Applied::unchanged`]).
//!
//! Erasures ([`super::erase`]) ride in the same group transactions, after its requests: each
//! request of erasures is all-or-nothing too, and its appended `erased` events take the next
//! seqs. [`SCRUB_DELAY`] after the last commit that erased versions, again as long after that,
//! and when it stops, the writer rebuilds the pages that held the erased versions and writes
//! zeros over the file's free pages ([`super::scrub`]), so the erased bytes leave the disk
//! too; erasures a crash kept from their scrub are scrubbed after the next start.
//!
//! The writer also keeps the books ([`Bookkeeping`]): consumer checkpoints, retention trims,
//! job records, backend clients and the client assertions used at the token endpoint ride
//! along in the same group transactions, so they neither cost an fsync of their own nor hold
//! redb's write lock apart from the writer. Each bookkeeping message is answered with the
//! group's position ([`Booked`]): every change up to its `seq` has a lastUpdated at or before
//! its `time`, every later change one after it, which is how a bulk export names the instant
//! its snapshot holds (`transactionTime`).
//!
//! A panic while a group is applied fails that group like a failed commit (every request of it
//! gets a 500, nothing of it is stored) and the writer goes on with the next one: redb drops
//! the unfinished write transaction (its pages leak until the next commit reclaims them), so
//! the store stays usable and no waiting client is left without an answer.

use super::StoreError;
use super::erase::{self, Erased, Erasure};
use super::heads::Heads;
use super::scrub::{self, Scrub, Scrubs};
use super::tables::{
    ASSERTION_JTIS, ASSERTION_LAPSES, BACKEND_CLIENTS, CHANGES, CHECKPOINTS, CURRENT, ChangeRecord,
    CurrentRecord, ERASED, JOBS, JtiRecord, Method, Op, TYPE_CHANGES, VERSIONS, VersionRecord,
};
use crate::fhir::datetime::{self, Micros};
#[cfg(doc)]
use crate::fhir::resource::same_content;
use crate::fhir::resource::stamp;
use crate::fhir::{FhirError, IssueCode};
use redb::{Database, ReadableTable, Table, WriteTransaction};
use serde_json::Value;
use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// The most requests one redb transaction takes.
pub const MAX_GROUP: usize = 512;

/// How long after the last commit that erased versions the writer scrubs the free pages, and
/// between its scrubs: long enough for most read transactions open at the erasure (requests,
/// the indexer) to end, so that redb has freed the erased versions' pages.
const SCRUB_DELAY: Duration = Duration::from_secs(2);

/// How many scrubs follow an erasure: the second reaches the pages that a reader open at the
/// first still held.
const SCRUBS: u8 = 2;

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
    /// An update that changed nothing: its content equals the current version, which `vid`,
    /// `last_updated` and `body` are. No version, no change.
    pub unchanged: bool,
}

impl Applied {
    /// What the write did, in words for an OperationOutcome: `created Patient/1 version 1`,
    /// `updated ...`, `deleted Patient/1`, `Patient/1 did not exist`, `Patient/1 is unchanged
    /// ...`.
    pub fn describe(&self) -> String {
        let name = format!("{}/{}", self.resource_type, self.id);
        if self.unchanged {
            return format!(
                "{name} is unchanged: the update equals version {}, which stays current",
                self.vid
            );
        }
        match self.op {
            Some(Op::Create) => format!("created {name} version {}", self.vid),
            Some(Op::Update) => format!("updated {name} version {}", self.vid),
            Some(Op::Delete) => format!("deleted {name}"),
            Some(Op::Erased) => format!("erased {name}"),
            None => format!("{name} did not exist"),
        }
    }
}

/// What the writes of one request did, in words: [`Applied::describe`] of one; of a
/// conditional delete, how many it deleted (or that it matched nothing).
pub fn describe(applied: &[Applied]) -> String {
    match applied {
        [] => "the criteria matched nothing: nothing was deleted".to_string(),
        [one] => one.describe(),
        several => format!("deleted {} resources", several.len()),
    }
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
type EraseReply = oneshot::Sender<Result<Vec<Erased>, CommitError>>;

/// A request's writes and, for each, the version its content was found equal to when it was
/// sent (updates only): if that version is still current, the write changes nothing.
pub struct Request {
    pub writes: Vec<Write>,
    pub unchanged: Vec<Option<u64>>,
}

impl From<Vec<Write>> for Request {
    fn from(writes: Vec<Write>) -> Self {
        let unchanged = vec![None; writes.len()];
        Request { writes, unchanged }
    }
}

/// The most lapsed client assertions one [`Bookkeeping::Assertion`] removes.
pub const LAPSED_PER_BOOK: usize = 64;

/// A change to the books (the change log's, the backend clients') rather than to resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bookkeeping {
    /// Sets (`Some`) or removes (`None`) the checkpoint of the consumer `name`.
    Checkpoint { name: String, seq: Option<u64> },
    /// Removes up to `max` of the oldest changes (and their `type_changes` entries) whose seq
    /// is below `below` and whose lastUpdated is below `older_than`. The last change is never
    /// removed: the writer resumes from it after a restart.
    Trim {
        below: u64,
        older_than: Micros,
        max: usize,
    },
    /// Sets (`Some`) or removes (`None`) the record of the job `id` (`tables::JOBS`).
    Job { id: String, record: Option<Vec<u8>> },
    /// Sets (`Some`) or removes (`None`) the record of the backend client `id`.
    Client { id: String, record: Option<Vec<u8>> },
    /// Records that `client` used the client assertion `jti`, unless a record of it that has
    /// not lapsed is there: that one stays, and
    /// [`Store::assertion_nonce`](super::Store::assertion_nonce) then tells the request that it
    /// was not the first. Also removes up to [`LAPSED_PER_BOOK`] records that lapsed before the
    /// group's time.
    Assertion {
        client: String,
        jti: String,
        record: JtiRecord,
    },
}

/// What the transaction that kept a message's books did, and where the change log stood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Booked {
    /// How many changes its [`Bookkeeping::Trim`]s removed.
    pub trimmed: usize,
    /// The seq of the last change committed up to and including the transaction.
    pub seq: u64,
    /// The transaction's time: every change up to `seq` has a lastUpdated at or before it,
    /// every later change one after it (the next groups' times are later).
    pub time: Micros,
}

type BookReply = oneshot::Sender<Result<Booked, StoreError>>;

enum Message {
    Commit(Request, Reply),
    Books(Vec<Bookkeeping>, BookReply),
    Erase(Vec<Erasure>, EraseReply),
    Stop,
}

/// The handle of the writer thread.
pub struct Committer {
    sender: mpsc::Sender<Message>,
    scrubs: Arc<Scrubs>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Where the writer resumes: the next change-log seq and the last lastUpdated it gave.
pub struct Position {
    pub next_seq: u64,
    pub last_time: Micros,
}

impl Committer {
    /// Starts the writer thread. After every commit, `committed` is told the seq of the last
    /// durable change, and `heads` that of the types written.
    pub fn start(
        db: Arc<Database>,
        file: PathBuf,
        position: Position,
        (committed, heads): (watch::Sender<u64>, Arc<Heads>),
    ) -> Self {
        let (sender, receiver) = mpsc::channel();
        let scrubs = Arc::new(Scrubs::default());
        let shared = scrubs.clone();
        let thread = std::thread::Builder::new()
            .name("fhirlake-writer".into())
            .spawn(move || {
                Writer {
                    db,
                    file,
                    position,
                    committed,
                    heads,
                    scrub_due: None,
                    scrubbing: None,
                    scrubs: shared,
                    scrubs_left: 0,
                    erased: false,
                }
                .run(receiver)
            })
            .expect("spawn the writer thread");
        Committer {
            sender,
            scrubs,
            thread: std::sync::Mutex::new(Some(thread)),
        }
    }

    /// What the writer's scrubs have done since it started.
    pub fn scrubs(&self) -> &Scrubs {
        &self.scrubs
    }

    /// Sends `writes` to the writer now, as one all-or-nothing transaction; the returned
    /// future resolves once it is durable. Requests submitted before any is awaited can share
    /// one commit.
    pub fn submit(
        &self,
        request: Request,
    ) -> impl Future<Output = Result<Vec<Applied>, CommitError>> + 'static {
        let (reply, answer) = oneshot::channel();
        let sent = self.send(request, reply);
        async move {
            sent?;
            answer.await.unwrap_or_else(|_| Err(closed()))
        }
    }

    /// [`Committer::commit`] for callers outside an async runtime.
    pub fn commit_blocking(&self, request: Request) -> Result<Vec<Applied>, CommitError> {
        let (reply, answer) = oneshot::channel();
        self.send(request, reply)?;
        answer.blocking_recv().unwrap_or_else(|_| Err(closed()))
    }

    /// Sends `books` to the writer now, for its next transaction (books sent one after the
    /// other are applied in that order); the returned future resolves, once they are durable,
    /// to what they did and the group's position (an empty `books` only asks for the
    /// position).
    pub fn keep_books(
        &self,
        books: Vec<Bookkeeping>,
    ) -> impl Future<Output = Result<Booked, StoreError>> + 'static {
        let (reply, answer) = oneshot::channel();
        let sent = self.sender.send(Message::Books(books, reply));
        async move {
            sent.map_err(|_| store_closed())?;
            answer.await.unwrap_or_else(|_| Err(store_closed()))
        }
    }

    /// Sends `erasures` to the writer now, as one all-or-nothing transaction
    /// ([`super::erase`]); the returned future resolves once it is durable.
    pub fn erase(
        &self,
        erasures: Vec<Erasure>,
    ) -> impl Future<Output = Result<Vec<Erased>, CommitError>> + 'static {
        let (reply, answer) = oneshot::channel();
        let sent = self.sender.send(Message::Erase(erasures, reply));
        async move {
            sent.map_err(|_| closed())?;
            answer.await.unwrap_or_else(|_| Err(closed()))
        }
    }

    /// [`Committer::erase`] for callers outside an async runtime.
    pub fn erase_blocking(&self, erasures: Vec<Erasure>) -> Result<Vec<Erased>, CommitError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Message::Erase(erasures, reply))
            .map_err(|_| closed())?;
        answer.blocking_recv().unwrap_or_else(|_| Err(closed()))
    }

    fn send(&self, request: Request, reply: Reply) -> Result<(), CommitError> {
        self.sender
            .send(Message::Commit(request, reply))
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

fn store_closed() -> StoreError {
    StoreError::Schema("the store is closed".into())
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
    /// The store's file, which [`scrub`] watches.
    file: PathBuf,
    position: Position,
    committed: watch::Sender<u64>,
    heads: Arc<Heads>,
    /// When the free pages are to be scrubbed next: set by a commit that erased versions.
    scrub_due: Option<Instant>,
    /// The scrub under way, a step at a time.
    scrubbing: Option<Scrub>,
    /// What the scrubs did, for `/metrics`.
    scrubs: Arc<Scrubs>,
    /// The scrubs still to run after the last erasure: [`SCRUBS`], then fewer.
    scrubs_left: u8,
    /// Whether anything was erased since the store opened: the writer scrubs once more when it
    /// stops, when no reader is left.
    erased: bool,
}

/// The types of the resources a committed group wrote a change of: those of its requests'
/// new versions and of its erasures' erased ones (each appended an `erased` change).
fn written_types<'a>(
    results: &'a [Result<Vec<Applied>, CommitError>],
    erased: &'a [Result<Vec<Erased>, CommitError>],
) -> impl Iterator<Item = &'a str> {
    let requests = results
        .iter()
        .flatten()
        .flatten()
        .filter(|applied| applied.seq.is_some())
        .map(|applied| applied.resource_type.as_str());
    let erasures = erased
        .iter()
        .flatten()
        .flatten()
        .filter(|erased| !erased.vids.is_empty())
        .map(|erased| erased.resource_type.as_str());
    requests.chain(erasures)
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
    /// An update equal to the current version, `vid` (see [`Request::unchanged`]).
    unchanged: bool,
}

impl Writer {
    fn run(mut self, receiver: mpsc::Receiver<Message>) {
        // Erasures that a crash kept from their scrub: it is due now.
        match scrub::pending(&self.db) {
            Ok(false) => {}
            Ok(true) => self.erasures_to_scrub(),
            Err(error) => tracing::error!(%error, "could not tell whether a scrub is due"),
        }
        loop {
            let first = if self.scrubbing.is_some() {
                match receiver.try_recv() {
                    Ok(message) => message,
                    Err(mpsc::TryRecvError::Empty) => {
                        self.scrub_step();
                        continue;
                    }
                    Err(mpsc::TryRecvError::Disconnected) => break,
                }
            } else if let Some(due) = self.scrub_due {
                match receiver.recv_timeout(due.saturating_duration_since(Instant::now())) {
                    Ok(message) => message,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.start_scrub();
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match receiver.recv() {
                    Ok(message) => message,
                    Err(_) => break,
                }
            };
            let mut group = Group::default();
            let mut stop = !group.add(first);
            while !stop && group.len() < MAX_GROUP {
                match receiver.try_recv() {
                    Ok(message) => stop = !group.add(message),
                    Err(_) => break,
                }
            }
            self.commit_group(group);
            if stop {
                break;
            }
            // Under a stream of requests, a scrub goes on by a step after each group.
            if self.scrubbing.is_some() {
                self.scrub_step();
            } else if self.scrub_due.is_some_and(|due| due <= Instant::now()) {
                self.start_scrub();
            }
        }
        if self.erased {
            // No reader is left: this scrub reaches every page.
            match scrub::scrub(&self.db, &self.file) {
                Ok(pages) => tracing::info!(pages, "wrote zeros over the free pages"),
                Err(error) => tracing::error!(%error, "scrubbing the free pages failed"),
            }
        }
    }

    /// Schedules the scrubs that follow erasures ([`SCRUBS`] of them, the first
    /// [`SCRUB_DELAY`] from now).
    fn erasures_to_scrub(&mut self) {
        self.erased = true;
        self.scrubs_left = SCRUBS;
        self.scrub_due = Some(Instant::now() + SCRUB_DELAY);
    }

    fn start_scrub(&mut self) {
        self.scrub_due = None;
        self.scrubbing = Some(Scrub::default());
    }

    /// Runs the next step of the scrub of the file's free pages ([`Scrub`]); one that fails is
    /// logged and begun again [`SCRUB_DELAY`] later.
    fn scrub_step(&mut self) {
        let Some(scrub) = self.scrubbing.as_mut() else {
            return;
        };
        let db = &self.db;
        let file = &self.file;
        let started = Instant::now();
        let step =
            catch_unwind(AssertUnwindSafe(|| scrub.step(db, file))).unwrap_or_else(|panic| {
                Err(StoreError::Panicked(
                    crate::panics::message(&*panic).to_string(),
                ))
            });
        let micros = started.elapsed().as_micros() as u64;
        self.scrubs.micros.fetch_add(micros, Ordering::Relaxed);
        match step {
            Ok(None) => {}
            Ok(Some(pages)) => {
                tracing::info!(pages, "wrote zeros over the free pages");
                self.scrubs.count.fetch_add(1, Ordering::Relaxed);
                self.scrubs.pages.fetch_add(pages, Ordering::Relaxed);
                self.scrubbing = None;
                self.scrubs_left = self.scrubs_left.saturating_sub(1);
                if self.scrubs_left > 0 && self.scrub_due.is_none() {
                    self.scrub_due = Some(Instant::now() + SCRUB_DELAY);
                }
            }
            Err(error) => {
                tracing::error!(%error, "scrubbing the free pages failed; trying again later");
                self.scrubbing = None;
                self.scrub_due = Some(Instant::now() + SCRUB_DELAY);
            }
        }
    }

    fn commit_group(&mut self, group: Group) {
        let time = datetime::now().max(self.position.last_time + 1);
        let start_seq = self.position.next_seq;
        let (requests, replies): (Vec<_>, Vec<_>) = group.commits.into_iter().unzip();
        let (books, book_replies): (Vec<_>, Vec<_>) = group.books.into_iter().unzip();
        let (erasures, erase_replies): (Vec<_>, Vec<_>) = group.erasures.into_iter().unzip();
        let applied = catch_unwind(AssertUnwindSafe(|| {
            self.apply_group(requests, erasures, books, time)
        }))
        .unwrap_or_else(|panic| {
            Err(StoreError::Panicked(
                crate::panics::message(&*panic).to_string(),
            ))
        });
        match applied {
            Ok((results, erased, trimmed)) => {
                let seq = self.position.next_seq - 1;
                for (reply, trimmed) in book_replies.into_iter().zip(trimmed) {
                    let _ = reply.send(Ok(Booked { trimmed, seq, time }));
                }
                self.position.last_time = time;
                if self.position.next_seq != start_seq {
                    self.heads.advance(written_types(&results, &erased), seq);
                    self.committed.send_replace(seq);
                }
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
                let freed = erased
                    .iter()
                    .flatten()
                    .flatten()
                    .any(|e| !e.vids.is_empty());
                // Put off by every erasure: a job's erasures are scrubbed once, after the last.
                if freed {
                    self.erasures_to_scrub();
                }
                for (reply, result) in erase_replies.into_iter().zip(erased) {
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
                for reply in erase_replies {
                    let _ = reply.send(Err(CommitError::whole(error.clone())));
                }
                for reply in book_replies {
                    let _ = reply.send(Err(StoreError::Schema(format!(
                        "the store could not commit: {error}"
                    ))));
                }
            }
        }
    }

    /// Applies the group's requests, then its erasures, then its bookkeeping, in one
    /// transaction; returns each request's and erasure's result and how many changes each
    /// bookkeeping message trimmed.
    #[allow(clippy::type_complexity)]
    fn apply_group(
        &mut self,
        requests: Vec<Request>,
        erasures: Vec<Vec<Erasure>>,
        books: Vec<Vec<Bookkeeping>>,
        time: Micros,
    ) -> Result<
        (
            Vec<Result<Vec<Applied>, CommitError>>,
            Vec<Result<Vec<Erased>, CommitError>>,
            Vec<usize>,
        ),
        StoreError,
    > {
        let txn = self.db.begin_write()?;
        let mut results = Vec::with_capacity(requests.len());
        let mut erased = Vec::with_capacity(erasures.len());
        let trimmed = {
            let mut tables = Tables {
                versions: txn.open_table(VERSIONS)?,
                current: txn.open_table(CURRENT)?,
                changes: txn.open_table(CHANGES)?,
                type_changes: txn.open_table(TYPE_CHANGES)?,
            };
            for request in requests {
                let result = match plan(&tables, request)? {
                    Ok(plans) => Ok(self.apply(&mut tables, plans, time)?),
                    Err(refused) => Err(refused),
                };
                results.push(result);
            }
            if !erasures.is_empty() {
                // Closed again before the books: a trim opens it too.
                let mut erased_table = txn.open_table(ERASED)?;
                for request in erasures {
                    let tables = erase::Tables {
                        versions: &mut tables.versions,
                        current: &mut tables.current,
                        changes: &mut tables.changes,
                        type_changes: &mut tables.type_changes,
                        erased: &mut erased_table,
                    };
                    let result = erase::apply(tables, &mut self.position.next_seq, time, request)?;
                    erased.push(result);
                }
            }
            let mut books_tables = Books {
                checkpoints: txn.open_table(CHECKPOINTS)?,
                jobs: txn.open_table(JOBS)?,
            };
            books
                .into_iter()
                .map(|books| keep_books(&txn, &mut tables, &mut books_tables, books, time))
                .collect::<Result<Vec<_>, _>>()?
        };
        txn.commit()?;
        Ok((results, erased, trimmed))
    }

    fn apply(
        &mut self,
        tables: &mut Tables<'_>,
        plans: Vec<Plan>,
        time: Micros,
    ) -> Result<Vec<Applied>, StoreError> {
        let txid = self.position.next_seq;
        let mut applied = Vec::with_capacity(plans.len());
        for Plan {
            write,
            vid,
            op,
            unchanged,
        } in plans
        {
            let Write {
                resource_type,
                id,
                action,
                ..
            } = write;
            if unchanged {
                let key = (resource_type.as_str(), id.as_str(), vid);
                let current = tables
                    .versions
                    .get(key)?
                    .map(|record| VersionRecord::decode(record.value()))
                    .ok_or_else(|| {
                        StoreError::Schema(format!("{resource_type}/{id} has no version {vid}"))
                    })?;
                applied.push(Applied {
                    resource_type,
                    id,
                    vid,
                    op: None,
                    last_updated: current.last_updated,
                    body: Some(current.body),
                    seq: None,
                    unchanged: true,
                });
                continue;
            }
            let Some(op) = op else {
                applied.push(Applied {
                    resource_type,
                    id,
                    vid,
                    op: None,
                    last_updated: time,
                    body: None,
                    seq: None,
                    unchanged: false,
                });
                continue;
            };
            let (method, body) = match action {
                Action::Create(resource) => (Method::Post, Some(stamp(resource, &id, vid, time))),
                Action::Update(resource) => (Method::Put, Some(stamp(resource, &id, vid, time))),
                Action::Delete => (Method::Delete, None),
            };
            crate::panics::inject(crate::panics::Fault::Writer, &id);
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
                erased: None,
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
                unchanged: false,
            });
        }
        Ok(applied)
    }
}

/// What the writer takes into one transaction.
#[derive(Default)]
struct Group {
    commits: Vec<(Request, Reply)>,
    books: Vec<(Vec<Bookkeeping>, BookReply)>,
    erasures: Vec<(Vec<Erasure>, EraseReply)>,
}

impl Group {
    /// Adds a message; false for [`Message::Stop`].
    fn add(&mut self, message: Message) -> bool {
        match message {
            Message::Commit(request, reply) => self.commits.push((request, reply)),
            Message::Books(books, reply) => self.books.push((books, reply)),
            Message::Erase(erasures, reply) => self.erasures.push((erasures, reply)),
            Message::Stop => return false,
        }
        true
    }

    fn len(&self) -> usize {
        self.commits.len() + self.books.len() + self.erasures.len()
    }
}

/// The tables of the books, open in the group's transaction.
struct Books<'txn> {
    checkpoints: Table<'txn, &'static str, u64>,
    jobs: Table<'txn, &'static str, &'static [u8]>,
}

/// Applies one bookkeeping message at the group's `time`; returns how many changes it trimmed.
fn keep_books(
    txn: &WriteTransaction,
    tables: &mut Tables<'_>,
    books_tables: &mut Books<'_>,
    books: Vec<Bookkeeping>,
    time: Micros,
) -> Result<usize, StoreError> {
    let mut trimmed = 0;
    for book in books {
        match book {
            Bookkeeping::Checkpoint {
                name,
                seq: Some(seq),
            } => {
                books_tables.checkpoints.insert(name.as_str(), seq)?;
            }
            Bookkeeping::Checkpoint { name, seq: None } => {
                books_tables.checkpoints.remove(name.as_str())?;
            }
            Bookkeeping::Job {
                id,
                record: Some(record),
            } => {
                books_tables.jobs.insert(id.as_str(), record.as_slice())?;
            }
            Bookkeeping::Job { id, record: None } => {
                books_tables.jobs.remove(id.as_str())?;
            }
            Bookkeeping::Trim {
                below,
                older_than,
                max,
            } => {
                let last = tables.changes.last()?.map_or(0, |(seq, _)| seq.value());
                let mut doomed = Vec::new();
                for item in tables.changes.range(..below.min(last))?.take(max) {
                    let (seq, record) = item?;
                    let change = ChangeRecord::decode(seq.value(), record.value());
                    if change.last_updated >= older_than {
                        break;
                    }
                    doomed.push(change);
                }
                let mut erased = txn.open_table(ERASED)?;
                for change in &doomed {
                    tables.changes.remove(change.seq)?;
                    tables
                        .type_changes
                        .remove((change.resource_type.as_str(), change.seq))?;
                    if change.op == Op::Erased {
                        erased.remove(change.seq)?;
                    }
                }
                trimmed += doomed.len();
            }
            Bookkeeping::Client {
                id,
                record: Some(record),
            } => {
                txn.open_table(BACKEND_CLIENTS)?
                    .insert(id.as_str(), record.as_slice())?;
            }
            Bookkeeping::Client { id, record: None } => {
                txn.open_table(BACKEND_CLIENTS)?.remove(id.as_str())?;
            }
            Bookkeeping::Assertion {
                client,
                jti,
                record,
            } => {
                let now = u64::try_from(time / 1_000_000).unwrap_or(0);
                use_assertion(txn, (&client, &jti), record, now)?;
            }
        }
    }
    Ok(trimmed)
}

/// Records the use of the client assertion `key` (client id, jti) unless a record of it that
/// has not lapsed at `now` is there, then removes up to [`LAPSED_PER_BOOK`] lapsed records.
fn use_assertion(
    txn: &WriteTransaction,
    key: (&str, &str),
    record: JtiRecord,
    now: u64,
) -> Result<(), StoreError> {
    let mut jtis = txn.open_table(ASSERTION_JTIS)?;
    let mut lapses = txn.open_table(ASSERTION_LAPSES)?;
    let found = jtis.get(key)?.map(|found| JtiRecord::decode(found.value()));
    match found {
        Some(found) if found.lapses >= now => {}
        found => {
            if let Some(found) = found {
                lapses.remove((found.lapses, key.0, key.1))?;
            }
            jtis.insert(key, record.encode().as_slice())?;
            lapses.insert((record.lapses, key.0, key.1), ())?;
        }
    }
    let mut lapsed = Vec::new();
    for item in lapses.range(..(now, "", ""))?.take(LAPSED_PER_BOOK) {
        let (key, _) = item?;
        let (at, client, jti) = key.value();
        lapsed.push((at, client.to_string(), jti.to_string()));
    }
    for (at, client, jti) in &lapsed {
        lapses.remove((*at, client.as_str(), jti.as_str()))?;
        jtis.remove((client.as_str(), jti.as_str()))?;
    }
    Ok(())
}

/// What `write` does to a resource whose current state is `current` (`None`: it never
/// existed): the version it makes and how (`None`: nothing changes), or why it is refused
/// (`If-Match` naming another version: 412; a create of an id that exists: 409).
fn precondition(
    write: &Write,
    current: Option<CurrentRecord>,
) -> Result<(u64, Option<Op>), FhirError> {
    let name = || format!("{}/{}", write.resource_type, write.id);
    let live = current.filter(|c| !c.deleted);
    if let Some(expected) = write.if_match
        && current.map_or(0, |c| c.vid) != expected
    {
        let found = match current {
            Some(c) => format!("the current version is {}", c.vid),
            None => "it does not exist".to_string(),
        };
        return Err(FhirError::new(
            412,
            IssueCode::Conflict,
            format!(
                "{}: If-Match asked for version {expected}, but {found}",
                name()
            ),
        ));
    }
    let next = current.map_or(1, |c| c.vid + 1);
    Ok(match (&write.action, live) {
        (Action::Create(_), Some(_)) => {
            return Err(FhirError::new(
                409,
                IssueCode::Conflict,
                format!("{} already exists", name()),
            ));
        }
        (Action::Create(_), None) => (next, Some(Op::Create)),
        (Action::Update(_), Some(_)) => (next, Some(Op::Update)),
        (Action::Update(_), None) => (next, Some(Op::Create)),
        (Action::Delete, Some(_)) => (next, Some(Op::Delete)),
        (Action::Delete, None) => (current.map_or(0, |c| c.vid), None),
    })
}

/// What a delete of a resource that does not exist answers (nothing changes, or 412 for an
/// `If-Match` naming a version), without the store: how a delete of a resource hidden from the
/// client is answered, so that it cannot be told from one of a resource that never existed.
pub fn delete_of_nothing(write: Write) -> Result<Applied, FhirError> {
    debug_assert!(matches!(write.action, Action::Delete));
    let (vid, op) = precondition(&write, None)?;
    Ok(Applied {
        resource_type: write.resource_type,
        id: write.id,
        vid,
        op,
        last_updated: datetime::now(),
        body: None,
        seq: None,
        unchanged: false,
    })
}

/// Checks every write's preconditions against the current state; the request is refused as a
/// whole at its first failing write. A request may touch each resource once. An update found
/// equal to a version that is still current changes nothing.
fn plan(
    tables: &Tables<'_>,
    Request { writes, unchanged }: Request,
) -> Result<Result<Vec<Plan>, CommitError>, StoreError> {
    let mut touched = HashSet::with_capacity(writes.len());
    let mut plans = Vec::with_capacity(writes.len());
    for (entry, (write, equal_to)) in writes.into_iter().zip(unchanged).enumerate() {
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
        let (vid, op) = match precondition(&write, current) {
            Ok(planned) => planned,
            Err(error) => return Ok(Err(CommitError::at(entry, error))),
        };
        if let (Action::Update(_), Some(live)) = (&write.action, current.filter(|c| !c.deleted))
            && equal_to == Some(live.vid)
        {
            plans.push(Plan {
                write,
                vid: live.vid,
                op: None,
                unchanged: true,
            });
            continue;
        };
        plans.push(Plan {
            write,
            vid,
            op,
            unchanged: false,
        });
    }
    Ok(Ok(plans))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use serde_json::json;

    fn update(resource: Value) -> Write {
        Write {
            resource_type: resource["resourceType"].as_str().unwrap().into(),
            id: resource["id"].as_str().unwrap().into(),
            action: Action::Update(resource),
            if_match: None,
        }
    }

    #[test]
    fn an_update_equal_to_the_current_version_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let patient = json!({"resourceType": "Patient", "id": "p", "active": true,
                             "name": [{"family": "F"}]});
        let first = store
            .commit_blocking(vec![update(patient.clone())])
            .unwrap();
        assert_eq!(
            (first[0].vid, first[0].op, first[0].unchanged),
            (1, Some(Op::Create), false)
        );
        // The same content, members in another order and a stale meta: nothing changes.
        let again = json!({"name": [{"family": "F"}], "active": true, "id": "p",
                           "resourceType": "Patient", "meta": {"versionId": "7"}});
        let same = store
            .commit_blocking(vec![update(again)])
            .unwrap()
            .remove(0);
        assert!(same.unchanged && same.op.is_none() && same.seq.is_none());
        assert_eq!((same.vid, same.last_updated), (1, first[0].last_updated));
        assert_eq!(same.body, first[0].body);
        assert_eq!(store.committed_seq(), 1, "no change-log entry");
        // If-Match is still checked first.
        let mut stale = update(patient.clone());
        stale.if_match = Some(9);
        let refused = store.commit_blocking(vec![stale]).unwrap_err();
        assert_eq!(refused.error.status, 412);
        // A real change is a new version; a create is never "unchanged".
        let mut changed = patient.clone();
        changed["active"] = json!(false);
        let second = store
            .commit_blocking(vec![update(changed)])
            .unwrap()
            .remove(0);
        assert_eq!(
            (second.vid, second.op, second.unchanged),
            (2, Some(Op::Update), false)
        );
        assert_eq!(store.committed_seq(), 2);
        store.close();
    }

    #[test]
    fn a_version_found_equal_but_no_longer_current_is_updated() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let patient = json!({"resourceType": "Patient", "id": "p", "active": true});
        store
            .commit_blocking(vec![update(patient.clone())])
            .unwrap();
        // Found equal to version 1, but version 2 was written in between.
        let mut changed = patient.clone();
        changed["active"] = json!(false);
        store.commit_blocking(vec![update(changed)]).unwrap();
        let request = Request {
            writes: vec![update(patient)],
            unchanged: vec![Some(1)],
        };
        let applied = store.committer.commit_blocking(request).unwrap().remove(0);
        assert_eq!(
            (applied.vid, applied.op, applied.unchanged),
            (3, Some(Op::Update), false)
        );
        store.close();
    }
}
