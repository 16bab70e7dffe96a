//! The store as it stood at a seq of the change log: every resource at the version it had
//! once change `seq` was committed, read from any later redb snapshot.
//!
//! A bulk export names its snapshot by a seq at kick-off and may run (or resume after a
//! restart) much later, while writes go on; it cannot hold the kick-off's read transaction
//! across a restart. A [`Snapshot`] opens a read transaction now (at `head`) and undoes what
//! changed after `seq`: vids count up by one per resource, so a resource whose first change
//! after `seq` wrote vid `v` was at vid `v - 1` at `seq` (none at all when `v` is 1), and one
//! that did not change is at its current version. The changes after `seq` are found through
//! `type_changes`, one type at a time, so what a reader holds in memory grows with the writes
//! made since `seq` to the type it reads, never with the store.
//!
//! A snapshot keeps its read transaction open as long as it lives: redb reuses the pages later
//! commits free only once it is closed, so the file grows under heavy writes while a long
//! reader holds one.
//!
//! Invariants: a snapshot answers the same for the same `seq` whenever it is opened (versions
//! are immutable), except that a version erased since (`store::erase`) is absent from it; it
//! needs every change after `seq` to be in the log: retention must keep
//! them (the jobs layer holds its floor at `seq`); a snapshot whose changes were trimmed is an
//! error, never a wrong answer.

use super::tables::{CHANGES, CURRENT, ChangeRecord, CurrentRecord, TYPE_CHANGES, VERSIONS};
use super::tables::{Op, VersionRecord};
use super::{Store, StoreError};
use crate::fhir::datetime::Micros;
use redb::{ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable};
use std::collections::HashMap;
use std::ops::Bound;

/// The store at `seq`, read from a redb read transaction at `head` (`head >= seq`).
pub struct Snapshot {
    seq: u64,
    head: u64,
    current: ReadOnlyTable<(&'static str, &'static str), &'static [u8]>,
    versions: ReadOnlyTable<(&'static str, &'static str, u64), &'static [u8]>,
    changes: ReadOnlyTable<u64, &'static [u8]>,
    type_changes: ReadOnlyTable<(&'static str, u64), ()>,
    /// Keeps the transaction (and so the tables' pages) open as long as the snapshot.
    _txn: ReadTransaction,
}

/// A resource's state at the snapshot's seq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum At {
    /// Its version then.
    Live(VersionRecord),
    /// Deleted then: the vid and time of the deletion.
    Deleted { last_updated: Micros },
}

/// One resource of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub id: String,
    /// Its vid at the snapshot's seq.
    pub vid: u64,
    pub at: At,
}

/// The resources of one type that changed after the snapshot's seq: id -> the first vid
/// written after it.
#[derive(Debug, Default)]
pub struct Changed(HashMap<String, u64>);

impl Changed {
    /// Whether `id` changed after the snapshot's seq (its current version is not the one the
    /// snapshot holds, or it did not exist then).
    pub fn contains(&self, id: &str) -> bool {
        !self.0.is_empty() && self.0.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Store {
    /// The store at change `seq` (see the module documentation). Fails when `seq` is beyond
    /// the last committed change, or when retention removed changes after it.
    pub fn snapshot(&self, seq: u64) -> Result<Snapshot, StoreError> {
        let txn = self.db.begin_read()?;
        let changes = txn.open_table(CHANGES)?;
        let head = changes.last()?.map_or(0, |(seq, _)| seq.value());
        let first = changes.first()?.map_or(head + 1, |(seq, _)| seq.value());
        if seq > head {
            return Err(StoreError::Schema(format!(
                "no snapshot at change {seq}: the change log ends at {head}"
            )));
        }
        if seq < head && first > seq + 1 {
            return Err(StoreError::Schema(format!(
                "no snapshot at change {seq}: retention removed the changes after it up to {}",
                first - 1
            )));
        }
        Ok(Snapshot {
            seq,
            head,
            current: txn.open_table(CURRENT)?,
            versions: txn.open_table(VERSIONS)?,
            type_changes: txn.open_table(TYPE_CHANGES)?,
            changes,
            _txn: txn,
        })
    }
}

impl Snapshot {
    /// The seq the snapshot stands at.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The seq of the read transaction it is read from.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// The resources of `resource_type` changed after the snapshot's seq.
    pub fn changed(&self, resource_type: &str) -> Result<Changed, StoreError> {
        let mut changed = HashMap::new();
        if self.seq == self.head {
            return Ok(Changed(changed));
        }
        for item in self.type_changes.range((resource_type, self.seq + 1)..)? {
            let (key, _) = item?;
            let (found_type, seq) = key.value();
            if found_type != resource_type {
                break;
            }
            let Some(record) = self.changes.get(seq)? else {
                return Err(StoreError::Schema(format!(
                    "change {seq} is missing: the snapshot at {} cannot be read",
                    self.seq
                )));
            };
            let change = ChangeRecord::decode(seq, record.value());
            // Ascending seqs: the first vid after the snapshot is the one kept.
            changed.entry(change.id).or_insert(change.vid);
        }
        Ok(Changed(changed))
    }

    /// Up to `limit` resources of `resource_type` that existed at the snapshot's seq (live or
    /// deleted), in id order, after `after` (from the first when `None`). `changed` is
    /// [`Snapshot::changed`] of the type.
    pub fn scan(
        &self,
        resource_type: &str,
        changed: &Changed,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Found>, StoreError> {
        let start = match after {
            Some(id) => Bound::Excluded((resource_type, id)),
            None => Bound::Included((resource_type, "")),
        };
        let mut found = Vec::new();
        for item in self
            .current
            .range::<(&str, &str)>((start, Bound::Unbounded))?
        {
            let (key, state) = item?;
            let (key_type, id) = key.value();
            if key_type != resource_type {
                break;
            }
            let state = CurrentRecord::decode(state.value());
            if let Some(resource) = self.at(resource_type, id, state, changed)? {
                found.push(resource);
                if found.len() >= limit {
                    break;
                }
            }
        }
        Ok(found)
    }

    /// One resource at the snapshot's seq; `None` when it did not exist then.
    pub fn get(
        &self,
        resource_type: &str,
        id: &str,
        changed: &Changed,
    ) -> Result<Option<Found>, StoreError> {
        match self.current.get((resource_type, id))? {
            Some(state) => {
                let state = CurrentRecord::decode(state.value());
                self.at(resource_type, id, state, changed)
            }
            None => Ok(None),
        }
    }

    /// Version `vid` of a resource (any version, not only the snapshot's).
    pub fn version(
        &self,
        resource_type: &str,
        id: &str,
        vid: u64,
    ) -> Result<Option<VersionRecord>, StoreError> {
        Ok(self
            .versions
            .get((resource_type, id, vid))?
            .map(|record| VersionRecord::decode(record.value())))
    }

    /// The state of a resource at the snapshot's seq, given its current state.
    fn at(
        &self,
        resource_type: &str,
        id: &str,
        current: CurrentRecord,
        changed: &Changed,
    ) -> Result<Option<Found>, StoreError> {
        // Most resources did not change: no lookup at all when none did.
        let first_after = match changed.is_empty() {
            true => None,
            false => changed.0.get(id),
        };
        let vid = match first_after {
            Some(first_after) => first_after - 1,
            None => current.vid,
        };
        if vid == 0 {
            return Ok(None);
        }
        if vid == current.vid && current.deleted {
            let at = At::Deleted {
                last_updated: current.last_updated,
            };
            return Ok(Some(found(id, vid, at)));
        }
        let Some(version) = self.version(resource_type, id, vid)? else {
            return Ok(None); // erased since the snapshot was taken
        };
        let at = match version.op {
            Op::Delete | Op::Erased => At::Deleted {
                last_updated: version.last_updated,
            },
            Op::Create | Op::Update => At::Live(version),
        };
        Ok(Some(found(id, vid, at)))
    }
}

fn found(id: &str, vid: u64, at: At) -> Found {
    Found {
        id: id.to_string(),
        vid,
        at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::commit::{Action, Write};
    use proptest::prelude::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    /// What a scan of every resource of a type gives, by id: the body, or `None` if deleted.
    type State = BTreeMap<String, Option<Vec<u8>>>;

    fn scan_all(snapshot: &Snapshot, resource_type: &str, page: usize) -> State {
        let changed = snapshot.changed(resource_type).unwrap();
        let mut state = State::new();
        let mut after: Option<String> = None;
        loop {
            let found = snapshot
                .scan(resource_type, &changed, after.as_deref(), page)
                .unwrap();
            let Some(last) = found.last() else {
                return state;
            };
            after = Some(last.id.clone());
            for resource in found {
                let body = match resource.at {
                    At::Live(version) => Some(version.body),
                    At::Deleted { .. } => None,
                };
                assert!(state.insert(resource.id, body).is_none(), "an id twice");
            }
        }
    }

    fn write(id: &str, action: u8, n: usize) -> Write {
        let patient = json!({"resourceType": "Patient", "id": id, "active": n.is_multiple_of(2),
            "name": [{"family": format!("F{n}")}]});
        Write {
            resource_type: "Patient".into(),
            id: id.into(),
            action: match action {
                0 => Action::Delete,
                _ => Action::Update(patient),
            },
            if_match: None,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// After any history of creates, updates and deletes, the snapshot at each seq, read
        /// later (in pages of any size), is exactly what a scan of the store gave at that seq.
        #[test]
        fn a_snapshot_is_the_store_as_it_was(
            writes in proptest::collection::vec((0usize..6, 0u8..3), 1..40),
            page in 1usize..5,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            // The state after each commit, by the seq it ended at.
            let mut states: Vec<(u64, State)> = vec![(0, State::new())];
            for (n, (id, action)) in writes.into_iter().enumerate() {
                let id = format!("p{id}");
                store.commit_blocking(vec![write(&id, action, n)]).unwrap();
                // The state as plain reads give it, resource by resource.
                let mut now = State::new();
                for id in (0..6).map(|n| format!("p{n}")) {
                    if let Some((_, version)) = store.read("Patient", &id).unwrap() {
                        now.insert(id, version.map(|v| v.body));
                    }
                }
                states.push((store.committed_seq(), now));
            }
            for (seq, state) in &states {
                let snapshot = store.snapshot(*seq).unwrap();
                prop_assert_eq!(&scan_all(&snapshot, "Patient", page), state);
                prop_assert!(scan_all(&snapshot, "Observation", page).is_empty());
            }
            store.close();
        }
    }

    #[test]
    fn the_current_state_is_read_as_it_is_and_deletions_keep_their_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.commit_blocking(vec![write("a", 1, 0)]).unwrap();
        store.commit_blocking(vec![write("b", 1, 1)]).unwrap();
        let seq = store.committed_seq();
        let deleted = store.commit_blocking(vec![write("a", 0, 2)]).unwrap();
        let snapshot = store.snapshot(store.committed_seq()).unwrap();
        let changed = snapshot.changed("Patient").unwrap();
        assert!(changed.is_empty());
        let a = snapshot.get("Patient", "a", &changed).unwrap().unwrap();
        assert_eq!(
            (a.vid, a.at),
            (
                2,
                At::Deleted {
                    last_updated: deleted[0].last_updated
                }
            )
        );
        // At the earlier seq, `a` is live at version 1 and changed since.
        let before = store.snapshot(seq).unwrap();
        let changed = before.changed("Patient").unwrap();
        assert!(changed.contains("a") && !changed.contains("b"));
        let a = before.get("Patient", "a", &changed).unwrap().unwrap();
        assert!(matches!(a.at, At::Live(_)) && a.vid == 1);
        assert!(before.get("Patient", "nobody", &changed).unwrap().is_none());
        assert!(store.snapshot(store.committed_seq() + 1).is_err());
        store.close();
    }
}
