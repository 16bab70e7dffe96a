//! The change log as its consumers read it: pages of changes with their versions, by offset,
//! optionally of some resource types only, and the durable consumers' checkpoints.
//!
//! [`Store::log_after`] reads a page from one snapshot, of some types through `type_changes`;
//! its `next` passes the changes the reader's filter skipped. The change stream's consumers
//! (the pull API, the live streams, Subscriptions, the sink) read here, each from its own
//! offset, as the search indexer reads the change log ([`Store::changes_after`]): the log is
//! the only source, so a consumer away for any time catches up from the store, and nothing a
//! consumer does can reach the writer. An offset that retention removed is
//! [`LogError::Trimmed`].

use super::tables::{
    CHANGES, CHECKPOINTS, ChangeRecord, Method, Op, TYPE_CHANGES, VERSIONS, VersionRecord,
};
use super::{Store, StoreError};
use redb::{ReadableDatabase, ReadableTable};
use std::collections::BTreeMap;

/// One change and the version it wrote (a delete's version has an empty body; an erased
/// entry's is an empty [`Op::Erased`] record: its bytes are gone).
#[derive(Debug, Clone)]
pub struct Logged {
    pub change: ChangeRecord,
    pub version: VersionRecord,
}

/// A page of the change log.
#[derive(Debug, Default)]
pub struct LogPage {
    /// The changes after the offset asked for, oldest first.
    pub entries: Vec<Logged>,
    /// The offset to read from next: every change up to it that the reader asked for is in
    /// this page or an earlier one. It passes changes of other types too, so a reader of a
    /// rare type does not scan the same changes again.
    pub next: u64,
}

/// Why a page cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Retention trimmed changes after the offset asked for: they are gone.
    #[error(
        "the change log starts after change {first_kept}: changes up to it were removed by \
         retention; read from {first_kept} or later",
        first_kept = .first - 1
    )]
    Trimmed { first: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<LogError> for crate::fhir::FhirError {
    /// A trimmed offset is the client's to fix (410 Gone); a storage failure is a 500.
    fn from(error: LogError) -> Self {
        match error {
            LogError::Trimmed { .. } => crate::fhir::FhirError::new(
                410,
                crate::fhir::IssueCode::NotFound,
                error.to_string(),
            ),
            LogError::Store(error) => error.into(),
        }
    }
}

impl From<redb::Error> for LogError {
    fn from(error: redb::Error) -> Self {
        LogError::Store(error.into())
    }
}

macro_rules! log_errors {
    ($($error:ty),*) => {$(
        impl From<$error> for LogError {
            fn from(error: $error) -> Self {
                LogError::Store(error.into())
            }
        }
    )*};
}
log_errors!(redb::TransactionError, redb::TableError, redb::StorageError);

impl Store {
    /// The committed seq, when no change to a resource of one of `types` (not empty) was
    /// committed after `after`: a reader of these types alone may move its offset there
    /// without reading the log ([`super::heads`]). `None` when one may have been.
    pub fn quiet_after(&self, types: &[String], after: u64) -> Option<u64> {
        // The committed seq first: the heads are at or past every change up to it.
        let committed = self.committed_seq();
        (!types.is_empty() && self.heads.of(types) <= after).then_some(committed.max(after))
    }

    /// [`Store::log_after`] for a reader whose offset retention keeps (a durable consumer):
    /// while none of `types` changed after `after`, an empty page without a read.
    pub fn log_kept_after(
        &self,
        after: u64,
        limit: usize,
        types: &[String],
    ) -> Result<LogPage, LogError> {
        match self.quiet_after(types, after) {
            Some(next) => Ok(LogPage {
                entries: Vec::new(),
                next,
            }),
            None => self.log_after(after, limit, types),
        }
    }

    /// Up to `limit` changes after seq `after`, oldest first, with their versions: of every
    /// type when `types` is empty, else of those types only (read through `type_changes`).
    /// All from one snapshot. Fails with [`LogError::Trimmed`] when retention has removed
    /// changes after `after`.
    pub fn log_after(
        &self,
        after: u64,
        limit: usize,
        types: &[String],
    ) -> Result<LogPage, LogError> {
        let txn = self.db.begin_read()?;
        let changes = txn.open_table(CHANGES)?;
        let Some((last, _)) = changes.last()? else {
            return Ok(LogPage {
                entries: Vec::new(),
                next: after,
            });
        };
        let last = last.value();
        let first = changes.first()?.map_or(1, |(seq, _)| seq.value());
        if after + 1 < first {
            return Err(LogError::Trimmed { first });
        }
        let limit = limit.max(1);
        let (seqs, next) = if types.is_empty() {
            let seqs: Vec<u64> = changes
                .range(after + 1..)?
                .take(limit)
                .map(|item| item.map(|(seq, _)| seq.value()))
                .collect::<Result<_, _>>()?;
            let next = if seqs.len() == limit {
                seqs[limit - 1]
            } else {
                last
            };
            (seqs, next)
        } else {
            let by_type = txn.open_table(TYPE_CHANGES)?;
            let mut seqs = Vec::new();
            for resource_type in types {
                let range = by_type.range(
                    (resource_type.as_str(), after + 1)..=(resource_type.as_str(), u64::MAX),
                )?;
                for item in range.take(limit) {
                    seqs.push(item?.0.value().1);
                }
            }
            seqs.sort_unstable();
            seqs.dedup();
            // Each type gave its first `limit` changes, so the first `limit` of them all
            // are every change of those types up to the last of them.
            let next = if seqs.len() >= limit {
                seqs[limit - 1]
            } else {
                last
            };
            seqs.truncate(limit);
            (seqs, next)
        };
        let versions = txn.open_table(VERSIONS)?;
        let mut entries = Vec::with_capacity(seqs.len());
        for seq in seqs {
            let record = changes
                .get(seq)?
                .expect("a seq listed is in the change log");
            let change = ChangeRecord::decode(seq, record.value());
            if change.op == Op::Erased {
                let version = VersionRecord {
                    op: Op::Erased,
                    method: Method::Delete,
                    last_updated: change.last_updated,
                    body: Vec::new(),
                };
                entries.push(Logged { change, version });
                continue;
            }
            let version = versions
                .get((
                    change.resource_type.as_str(),
                    change.id.as_str(),
                    change.vid,
                ))?
                .map(|record| VersionRecord::decode(record.value()))
                .ok_or_else(|| {
                    StoreError::Schema(format!(
                        "change {seq} has no version {}/{}/_history/{}",
                        change.resource_type, change.id, change.vid
                    ))
                })?;
            entries.push(Logged { change, version });
        }
        Ok(LogPage { entries, next })
    }

    /// The durable consumers' checkpoints, by name.
    pub fn checkpoints(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(CHECKPOINTS)?;
        let mut out = BTreeMap::new();
        for item in table.iter()? {
            let (name, seq) = item?;
            out.insert(name.value().to_string(), seq.value());
        }
        Ok(out)
    }

    /// The seq of the oldest change still in the log (1 when nothing was trimmed, or the log
    /// is empty).
    pub fn first_seq(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let changes = txn.open_table(CHANGES)?;
        Ok(changes.first()?.map_or(1, |(seq, _)| seq.value()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::commit::{Action, Bookkeeping, Write};
    use serde_json::json;

    fn put(store: &Store, resource_type: &str, id: &str) {
        let resource = json!({"resourceType": resource_type, "id": id});
        let write = Write {
            resource_type: resource_type.into(),
            id: id.into(),
            action: Action::Update(resource),
            if_match: None,
        };
        store.commit_blocking(vec![write]).unwrap();
    }

    fn seqs(page: &LogPage) -> Vec<u64> {
        page.entries.iter().map(|e| e.change.seq).collect()
    }

    #[test]
    fn a_reader_of_some_types_skips_the_changes_of_others_and_sees_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        put(&store, "Patient", "p0");
        store.close();
        drop(store);
        // Reopened: the heads start at the committed seq.
        let store = Store::open(dir.path()).unwrap();
        let (patients, observations) = (["Patient".to_string()], ["Observation".to_string()]);
        assert_eq!(store.quiet_after(&observations, 0), None, "before the open");
        assert_eq!(store.quiet_after(&observations, 1), Some(1));
        put(&store, "Patient", "p1");
        put(&store, "Patient", "p2");
        assert_eq!(store.quiet_after(&observations, 1), Some(3));
        assert_eq!(store.quiet_after(&patients, 1), None);
        assert_eq!(store.quiet_after(&[], 3), None, "every type");
        let skipped = store.log_kept_after(1, 10, &observations).unwrap();
        assert_eq!((seqs(&skipped), skipped.next), (vec![], 3));
        put(&store, "Observation", "o0");
        let read = store.log_kept_after(3, 10, &observations).unwrap();
        assert_eq!((seqs(&read), read.next), (vec![4], 4));
        assert_eq!(store.quiet_after(&patients, 3), Some(4));
    }

    #[test]
    fn pages_by_offset_and_type_with_the_next_offset() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let empty = store.log_after(0, 10, &[]).unwrap();
        assert_eq!((empty.entries.len(), empty.next), (0, 0));
        for n in 0..5 {
            put(&store, "Patient", &format!("p{n}"));
            put(&store, "Observation", &format!("o{n}"));
        }
        let page = store.log_after(0, 4, &[]).unwrap();
        assert_eq!((seqs(&page), page.next), (vec![1, 2, 3, 4], 4));
        assert!(page.entries[0].version.body.starts_with(b"{"));
        let page = store.log_after(8, 4, &[]).unwrap();
        assert_eq!((seqs(&page), page.next), (vec![9, 10], 10));
        let observations = ["Observation".to_string()];
        let page = store.log_after(0, 3, &observations).unwrap();
        assert_eq!((seqs(&page), page.next), (vec![2, 4, 6], 6));
        let page = store.log_after(6, 3, &observations).unwrap();
        assert_eq!((seqs(&page), page.next), (vec![8, 10], 10));
        let both = ["Patient".to_string(), "Observation".to_string()];
        let page = store.log_after(1, 3, &both).unwrap();
        assert_eq!((seqs(&page), page.next), (vec![2, 3, 4], 4));
        store.close();
    }

    fn keep(store: &Store, books: Vec<Bookkeeping>) -> usize {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(store.keep_books(books))
            .unwrap()
            .trimmed
    }

    fn trim(below: u64, older_than: i64) -> Bookkeeping {
        Bookkeeping::Trim {
            below,
            older_than,
            max: 100,
        }
    }

    #[test]
    fn trimming_keeps_the_last_change_and_says_what_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for n in 0..4 {
            put(&store, "Patient", &format!("p{n}"));
        }
        let checkpoint = Bookkeeping::Checkpoint {
            name: "sink".into(),
            seq: Some(2),
        };
        assert_eq!(keep(&store, vec![trim(3, i64::MAX), checkpoint]), 2);
        assert_eq!(store.first_seq().unwrap(), 3);
        assert_eq!(store.checkpoints().unwrap()["sink"], 2);
        assert!(matches!(
            store.log_after(1, 10, &[]),
            Err(LogError::Trimmed { first: 3 })
        ));
        assert_eq!(seqs(&store.log_after(2, 10, &[]).unwrap()), vec![3, 4]);
        let patients = ["Patient".to_string()];
        assert_eq!(
            seqs(&store.log_after(2, 10, &patients).unwrap()),
            vec![3, 4]
        );
        // Too recent: nothing goes. Past the head: the last change stays.
        assert_eq!(keep(&store, vec![trim(100, 0)]), 0);
        assert_eq!(keep(&store, vec![trim(100, i64::MAX)]), 1);
        assert_eq!(seqs(&store.log_after(3, 10, &[]).unwrap()), vec![4]);
        let removed = Bookkeeping::Checkpoint {
            name: "sink".into(),
            seq: None,
        };
        keep(&store, vec![removed]);
        assert!(store.checkpoints().unwrap().is_empty());
        store.close();
        drop(store);
        // The writer resumes after the last change.
        let store = Store::open(dir.path()).unwrap();
        put(&store, "Patient", "p9");
        assert_eq!(store.committed_seq(), 5);
        store.close();
    }
}
