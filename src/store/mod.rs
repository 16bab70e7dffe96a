//! The store: every version of every resource and the change log, in one redb file.
//!
//! Writes go through the [`commit::Committer`] (one writer thread, group commit); reads open
//! their own redb read transaction and see a consistent snapshot of the last commit, so read,
//! vread and history are always current. A storage failure is a 500 with an OperationOutcome
//! and an error log line, and never leaves a partial write.

pub mod clients;
pub mod commit;
pub mod erase;
pub mod heads;
pub mod history;
pub mod log;
pub mod schema;
pub mod scrub;
pub mod snapshot;
pub mod tables;

use crate::fhir::FhirError;
use crate::fhir::resource::same_content;
use commit::{
    Action, Applied, Booked, Bookkeeping, CommitError, Committer, Position, Request, Write,
};
use redb::{Database, ReadableDatabase, ReadableTable};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tables::{CHANGES, CURRENT, ChangeRecord, CurrentRecord, VERSIONS, VersionRecord};
use tokio::sync::watch;

/// The name of the redb file inside a data directory.
pub const DB_FILE: &str = "fhirlake.redb";

/// A failure of the storage itself (I/O, a damaged file), never the client's fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Storage(#[from] redb::Error),
    #[error("{0}")]
    Schema(String),
    /// A defect of fhirlake showed while the store was working (the panic's message).
    #[error("an internal error (a panic): {0}")]
    Panicked(String),
    #[error("cannot use the data directory {path}: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
}

macro_rules! storage_errors {
    ($($error:ty),*) => {$(
        impl From<$error> for StoreError {
            fn from(error: $error) -> Self {
                StoreError::Storage(error.into())
            }
        }
    )*};
}
storage_errors!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::CompactionError
);

impl From<StoreError> for FhirError {
    fn from(error: StoreError) -> Self {
        tracing::error!(%error, "store error");
        FhirError::internal(error.to_string())
    }
}

/// An open data directory. Cloning is cheap; all clones share one database and one writer.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    /// The redb file.
    file: Arc<Path>,
    committer: Arc<Committer>,
    committed: watch::Receiver<u64>,
    heads: Arc<heads::Heads>,
}

impl Store {
    /// Opens (or creates) the store in `dir`, checking its schema version, and starts the
    /// writer; with redb's default cache (1 GiB).
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with_cache(dir, schema::DEFAULT_CACHE)
    }

    /// [`Store::open`] with a cache of at most `cache` bytes of the file's pages.
    pub fn open_with_cache(dir: &Path, cache: usize) -> Result<Store, StoreError> {
        let db = Arc::new(schema::open_current(dir, cache)?);
        let (next_seq, last_time) = {
            let txn = db.begin_read()?;
            let changes = txn.open_table(CHANGES)?;
            match changes.last()? {
                Some((seq, record)) => {
                    let change = ChangeRecord::decode(seq.value(), record.value());
                    (change.seq + 1, change.last_updated)
                }
                None => (1, 0),
            }
        };
        let (sender, committed) = watch::channel(next_seq - 1);
        let position = Position {
            next_seq,
            last_time,
        };
        let file: PathBuf = dir.join(DB_FILE);
        let heads = Arc::new(heads::Heads::new(next_seq - 1));
        let committer = Arc::new(Committer::start(
            db.clone(),
            file.clone(),
            position,
            (sender, heads.clone()),
        ));
        Ok(Store {
            db,
            file: file.into(),
            committer,
            committed,
            heads,
        })
    }

    /// Commits `writes` as one all-or-nothing transaction; answers once it is durable. An
    /// update whose content equals the current version changes nothing
    /// ([`Applied::unchanged`]).
    pub async fn commit(&self, writes: Vec<Write>) -> Result<Vec<Applied>, CommitError> {
        self.submit(writes).await
    }

    /// Sends `writes` to the writer at once and returns the future of their commit: submit
    /// several independent requests before awaiting them, and they share commits.
    pub fn submit(
        &self,
        writes: Vec<Write>,
    ) -> impl Future<Output = Result<Vec<Applied>, CommitError>> + 'static {
        self.submit_request(self.request(writes))
    }

    /// [`Store::submit`]'s second half: sends a request made by [`Store::request`]. A caller
    /// that makes requests on several threads sends them in the order it wants them applied.
    pub fn submit_request(
        &self,
        request: Request,
    ) -> impl Future<Output = Result<Vec<Applied>, CommitError>> + 'static {
        self.committer.submit(request)
    }

    /// A request of `writes`, each update compared with the current version here, on the
    /// caller's thread, so that the single writer only checks that the version found equal is
    /// still current. A comparison that cannot be made (a storage error) is left out: the
    /// update is then written as a new version.
    pub fn request(&self, writes: Vec<Write>) -> Request {
        let mut request = Request::from(writes);
        if !request
            .writes
            .iter()
            .any(|write| matches!(write.action, Action::Update(_)))
        {
            return request;
        }
        match self.equal_versions(&request.writes) {
            Ok(unchanged) => request.unchanged = unchanged,
            Err(error) => {
                tracing::warn!(%error, "updates not compared with their current versions")
            }
        }
        request
    }

    /// For each write, the current version when the write is an update of the same content.
    fn equal_versions(&self, writes: &[Write]) -> Result<Vec<Option<u64>>, StoreError> {
        let txn = self.db.begin_read()?;
        let tables = (txn.open_table(CURRENT)?, txn.open_table(VERSIONS)?);
        writes
            .iter()
            .map(|write| {
                let Action::Update(resource) = &write.action else {
                    return Ok(None);
                };
                let Some((state, Some(version))) =
                    current_of(&tables, &write.resource_type, &write.id)?
                else {
                    return Ok(None);
                };
                let stored: Value = match serde_json::from_slice(&version.body) {
                    Ok(stored) => stored,
                    Err(_) => return Ok(None),
                };
                Ok(same_content(&stored, resource).then_some(state.vid))
            })
            .collect()
    }

    /// Sends `books` (checkpoints, trims, job records) to the writer now, for its next
    /// transaction, in the order they are sent; resolves once they are durable to what they
    /// did and where the change log stood ([`Booked`]).
    pub fn keep_books(
        &self,
        books: Vec<Bookkeeping>,
    ) -> impl Future<Output = Result<Booked, StoreError>> + 'static {
        self.committer.keep_books(books)
    }

    /// The current state of every resource of `resource_type`, with its current version
    /// unless it is deleted.
    pub fn current_of_type(
        &self,
        resource_type: &str,
    ) -> Result<Vec<(String, Option<VersionRecord>)>, StoreError> {
        let txn = self.db.begin_read()?;
        let tables = (txn.open_table(CURRENT)?, txn.open_table(VERSIONS)?);
        let mut ids = Vec::new();
        for item in tables.0.range((resource_type, "")..)? {
            let (key, _) = item?;
            let (found_type, id) = key.value();
            if found_type != resource_type {
                break;
            }
            ids.push(id.to_string());
        }
        ids.into_iter()
            .map(|id| {
                let version = current_of(&tables, resource_type, &id)?.and_then(|(_, v)| v);
                Ok((id, version))
            })
            .collect()
    }

    /// Erases versions for good ([`erase`]), as one all-or-nothing transaction; answers once
    /// it is durable.
    pub async fn erase(
        &self,
        erasures: Vec<erase::Erasure>,
    ) -> Result<Vec<erase::Erased>, CommitError> {
        self.committer.erase(erasures).await
    }

    /// [`Store::erase`] outside an async runtime (job workers, tests).
    pub fn erase_blocking(
        &self,
        erasures: Vec<erase::Erasure>,
    ) -> Result<Vec<erase::Erased>, CommitError> {
        self.committer.erase_blocking(erasures)
    }

    /// [`Store::commit`] outside an async runtime (import, tests).
    pub fn commit_blocking(&self, writes: Vec<Write>) -> Result<Vec<Applied>, CommitError> {
        self.committer.commit_blocking(self.request(writes))
    }

    /// Every job record (see `tables::JOBS`), by id.
    pub fn jobs(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read()?;
        let jobs = txn.open_table(tables::JOBS)?;
        let mut records = Vec::new();
        for item in jobs.iter()? {
            let (id, record) = item?;
            records.push((id.value().to_string(), record.value().to_vec()));
        }
        Ok(records)
    }

    /// The seq of the last durable change (0 when the log is empty).
    pub fn committed_seq(&self) -> u64 {
        *self.committed.borrow()
    }

    /// The seq of the last durable change to a resource of any of `types` (see [`heads`]).
    pub fn committed_seq_of(&self, types: &[String]) -> u64 {
        self.heads.of(types)
    }

    /// A receiver that sees the last durable seq after every commit.
    pub fn watch_commits(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

    /// Whether the writer takes commits: false once it has been stopped or has died.
    pub fn writer_alive(&self) -> bool {
        self.committer.is_running()
    }

    /// What the writer's scrubs of free pages ([`scrub`]) have done since the store opened.
    pub fn scrubs(&self) -> &scrub::Scrubs {
        self.committer.scrubs()
    }

    /// The size of the redb file in bytes.
    pub fn file_size(&self) -> std::io::Result<u64> {
        std::fs::metadata(&self.file).map(|metadata| metadata.len())
    }

    /// Finishes the writes already sent and stops the writer; later commits fail with 503.
    pub fn close(&self) {
        self.committer.stop();
    }

    /// The current state of a resource and, unless it is deleted, its current version.
    pub fn read(
        &self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<(CurrentRecord, Option<VersionRecord>)>, StoreError> {
        let txn = self.db.begin_read()?;
        let tables = (txn.open_table(CURRENT)?, txn.open_table(VERSIONS)?);
        current_of(&tables, resource_type, id)
    }

    /// The current versions of `keys` (`(type, id)`; None for a missing or deleted resource),
    /// read in one transaction: one consistent view, and no transaction per resource for a
    /// page of search results.
    pub fn read_many(
        &self,
        keys: &[(String, String)],
    ) -> Result<Vec<Option<VersionRecord>>, StoreError> {
        let txn = self.db.begin_read()?;
        let tables = (txn.open_table(CURRENT)?, txn.open_table(VERSIONS)?);
        keys.iter()
            .map(|(t, i)| Ok(current_of(&tables, t, i)?.and_then(|(_, version)| version)))
            .collect()
    }

    /// One version of a resource.
    pub fn vread(
        &self,
        resource_type: &str,
        id: &str,
        vid: u64,
    ) -> Result<Option<VersionRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let versions = txn.open_table(VERSIONS)?;
        Ok(versions
            .get((resource_type, id, vid))?
            .map(|record| VersionRecord::decode(record.value())))
    }

    /// Up to `limit` change-log entries after seq `after`, oldest first.
    pub fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<ChangeRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let changes = txn.open_table(CHANGES)?;
        let mut out = Vec::new();
        for item in changes.range(after + 1..)?.take(limit) {
            let (seq, record) = item?;
            out.push(ChangeRecord::decode(seq.value(), record.value()));
        }
        Ok(out)
    }

    /// Calls `visit(type, id, version)` for every live resource, from one snapshot, and returns
    /// the seq of the last change that snapshot holds.
    pub fn for_each_current(
        &self,
        mut visit: impl FnMut(&str, &str, VersionRecord),
    ) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let head = txn
            .open_table(CHANGES)?
            .last()?
            .map_or(0, |(seq, _)| seq.value());
        let current = txn.open_table(CURRENT)?;
        let versions = txn.open_table(VERSIONS)?;
        for item in current.iter()? {
            let (key, state) = item?;
            let state = CurrentRecord::decode(state.value());
            let (resource_type, id) = key.value();
            if state.deleted {
                continue;
            }
            if let Some(record) = versions.get((resource_type, id, state.vid))? {
                visit(resource_type, id, VersionRecord::decode(record.value()));
            }
        }
        Ok(head)
    }
}

/// The CURRENT and VERSIONS tables of one read transaction.
type ReadTables = (
    redb::ReadOnlyTable<(&'static str, &'static str), &'static [u8]>,
    redb::ReadOnlyTable<(&'static str, &'static str, u64), &'static [u8]>,
);

/// The current state and version of a resource.
fn current_of(
    (current, versions): &ReadTables,
    resource_type: &str,
    id: &str,
) -> Result<Option<(CurrentRecord, Option<VersionRecord>)>, StoreError> {
    let Some(state) = current.get((resource_type, id))? else {
        return Ok(None);
    };
    let state = CurrentRecord::decode(state.value());
    if state.deleted {
        return Ok(Some((state, None)));
    }
    let version = versions
        .get((resource_type, id, state.vid))?
        .map(|record| VersionRecord::decode(record.value()));
    Ok(Some((state, version)))
}
