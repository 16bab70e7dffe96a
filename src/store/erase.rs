//! Erasure: versions removed for good, in one writer transaction.
//!
//! An [`Erasure`] names a resource (every version of it) or one version. The writer
//! ([`super::commit`]) applies a request of erasures in one transaction of its group, all or
//! nothing, after checking each against the state the requests before it left:
//!
//! - the erased versions' `versions` entries are removed (redb frees their pages once the
//!   transaction and every read transaction older than it are gone, and the writer's next
//!   scrub rebuilds their leaves and zeroes the free pages: [`super::scrub`]); `current` is
//!   removed with
//!   the last version, and is otherwise untouched (the current version is never erased alone);
//! - the change that wrote each erased version is rewritten in place as an [`Op::Erased`] entry
//!   that names no bytes (its seq, time and `type_changes` entry stay: the log stays gap-free
//!   and its times never decrease; `erased` lists it), found by its lastUpdated (the log is ordered by it) without
//!   an index of its own; a change already trimmed by retention has nothing to rewrite;
//! - one new [`Op::Erased`] event per erased version is appended at the group's time, so every
//!   consumer that follows the log hears of it (its `erased` names the change it erased, 0 when
//!   that change was trimmed).
//!
//! The search index follows the log like any change: the indexer reads the resource's state
//! again, finds it gone (or still at its current version) and removes (or keeps) its document.
//!
//! Invariant: a reader sees a resource's versions either all present or all erased by one
//! request (one transaction), never a part of them.

use super::StoreError;
use super::commit::CommitError;
use super::tables::{ChangeRecord, CurrentRecord, Op, VersionRecord};
use crate::fhir::datetime::Micros;
use crate::fhir::{FhirError, IssueCode};
use redb::{ReadableTable, Table};
use std::collections::{BTreeMap, HashMap, HashSet};

/// What to erase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    pub resource_type: String,
    pub id: String,
    /// One version (never the current one while others are left), or every version (`None`).
    pub vid: Option<u64>,
}

/// What one erasure removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Erased {
    pub resource_type: String,
    pub id: String,
    /// The versions removed, oldest first (none when the resource did not exist).
    pub vids: Vec<u64>,
    /// The seqs of the changes that wrote them, where the log still held them (the messages a
    /// sink that published them removes).
    pub changes: Vec<u64>,
    /// Whether the resource is gone (its last version was erased).
    pub gone: bool,
}

/// The tables an erasure writes, open in the writer's transaction.
pub(super) struct Tables<'a, 'txn> {
    pub versions: &'a mut Table<'txn, (&'static str, &'static str, u64), &'static [u8]>,
    pub current: &'a mut Table<'txn, (&'static str, &'static str), &'static [u8]>,
    pub changes: &'a mut Table<'txn, u64, &'static [u8]>,
    pub type_changes: &'a mut Table<'txn, (&'static str, u64), ()>,
    pub erased: &'a mut Table<'txn, u64, &'static str>,
}

/// A version chosen for erasure.
struct Doomed {
    index: usize,
    vid: u64,
    last_updated: Micros,
}

/// Applies one request of erasures; `next_seq` is the writer's next seq, `time` the group's.
/// A refused request (a version that does not exist: 404; the current version while others
/// are left: 409; a resource named twice: 400) changes nothing.
pub(super) fn apply(
    tables: Tables<'_, '_>,
    next_seq: &mut u64,
    time: Micros,
    erasures: Vec<Erasure>,
) -> Result<Result<Vec<Erased>, CommitError>, StoreError> {
    let mut erased = Vec::with_capacity(erasures.len());
    let mut doomed = Vec::new();
    let mut named = HashSet::with_capacity(erasures.len());
    for (index, erasure) in erasures.into_iter().enumerate() {
        let refuse = |status, code, text: String| {
            Ok(Err(CommitError {
                entry: Some(index),
                error: FhirError::new(status, code, text),
            }))
        };
        let name = format!("{}/{}", erasure.resource_type, erasure.id);
        if !named.insert(name.clone()) {
            return refuse(
                400,
                IssueCode::Invalid,
                format!("{name} is erased more than once in one request"),
            );
        }
        let key = (erasure.resource_type.as_str(), erasure.id.as_str());
        let current = tables
            .current
            .get(key)?
            .map(|found| CurrentRecord::decode(found.value()));
        let mut present = Vec::new();
        for item in tables
            .versions
            .range((key.0, key.1, 0)..=(key.0, key.1, u64::MAX))?
        {
            let (found, record) = item?;
            present.push((
                found.value().2,
                VersionRecord::last_updated_of(record.value()),
            ));
        }
        let chosen: Vec<(u64, Micros)> = match (erasure.vid, current) {
            (None, _) => present.clone(),
            (Some(_), None) => {
                return refuse(404, IssueCode::NotFound, format!("{name} does not exist"));
            }
            (Some(vid), Some(current)) => {
                let Some(found) = present.iter().find(|(v, _)| *v == vid) else {
                    return refuse(
                        404,
                        IssueCode::NotFound,
                        format!("{name} has no version {vid}"),
                    );
                };
                if vid == current.vid && present.len() > 1 {
                    return refuse(
                        409,
                        IssueCode::Conflict,
                        format!(
                            "version {vid} is the current version of {name}: erase the \
                             resource, or one of its earlier versions"
                        ),
                    );
                }
                vec![*found]
            }
        };
        for &(vid, last_updated) in &chosen {
            doomed.push(Doomed {
                index,
                vid,
                last_updated,
            });
        }
        erased.push(Erased {
            gone: !chosen.is_empty() && chosen.len() == present.len(),
            resource_type: erasure.resource_type,
            id: erasure.id,
            vids: chosen.iter().map(|(vid, _)| *vid).collect(),
            changes: Vec::new(),
        });
    }
    let found = changes_of(tables.changes, &erased, &doomed)?;
    let txid = *next_seq;
    for item in &doomed {
        let target = &mut erased[item.index];
        let slot = found.get(&(item.index, item.vid));
        if let Some(change) = slot {
            target.changes.push(change.seq);
        }
        let (resource_type, id) = (target.resource_type.as_str(), target.id.as_str());
        tables.versions.remove((resource_type, id, item.vid))?;
        if let Some(change) = slot {
            let rewritten = change.erasure(change.seq);
            tables
                .changes
                .insert(change.seq, rewritten.encode().as_slice())?;
            tables.erased.insert(change.seq, resource_type)?;
        }
        let seq = *next_seq;
        *next_seq += 1;
        let event = ChangeRecord {
            seq,
            txid,
            resource_type: resource_type.to_string(),
            id: id.to_string(),
            vid: item.vid,
            op: Op::Erased,
            last_updated: time,
            erased: Some(slot.map_or(0, |change| change.seq)),
        };
        tables.changes.insert(seq, event.encode().as_slice())?;
        tables.type_changes.insert((resource_type, seq), ())?;
        tables.erased.insert(seq, resource_type)?;
    }
    for target in &erased {
        if target.gone {
            tables
                .current
                .remove((target.resource_type.as_str(), target.id.as_str()))?;
        }
    }
    Ok(Ok(erased))
}

/// The change-log entries that wrote the doomed versions, by (erasure index, vid): for each
/// distinct lastUpdated, the run of changes with that time is read once (the log is ordered
/// by time, so a binary search finds where the run starts).
fn changes_of(
    changes: &Table<'_, u64, &'static [u8]>,
    erased: &[Erased],
    doomed: &[Doomed],
) -> Result<HashMap<(usize, u64), ChangeRecord>, StoreError> {
    let mut by_time: BTreeMap<Micros, HashMap<(&str, &str, u64), usize>> = BTreeMap::new();
    for item in doomed {
        let target = &erased[item.index];
        by_time.entry(item.last_updated).or_default().insert(
            (target.resource_type.as_str(), target.id.as_str(), item.vid),
            item.index,
        );
    }
    let mut found = HashMap::with_capacity(doomed.len());
    for (time, wanted) in by_time {
        let Some(start) = first_seq_at_or_after(changes, time)? else {
            continue;
        };
        for item in changes.range(start..)? {
            let (seq, record) = item?;
            let change = ChangeRecord::decode(seq.value(), record.value());
            if change.last_updated != time {
                break;
            }
            if change.op == Op::Erased {
                continue;
            }
            let key = (
                change.resource_type.as_str(),
                change.id.as_str(),
                change.vid,
            );
            if let Some(&index) = wanted.get(&key) {
                found.insert((index, change.vid), change);
            }
        }
    }
    Ok(found)
}

/// The first seq whose change has a lastUpdated at or after `time`.
fn first_seq_at_or_after(
    changes: &Table<'_, u64, &'static [u8]>,
    time: Micros,
) -> Result<Option<u64>, StoreError> {
    let (Some(first), Some(last)) = (changes.first()?, changes.last()?) else {
        return Ok(None);
    };
    let time_of = |record: &[u8]| ChangeRecord::decode(0, record).last_updated;
    let (mut low, mut high) = (first.0.value(), last.0.value());
    if time_of(last.1.value()) < time {
        return Ok(None);
    }
    // Invariant: the change at `high` (or the first one after it) is at or after `time`.
    while low < high {
        let middle = low + (high - low) / 2;
        let found = changes.range(middle..)?.next().transpose()?;
        match found {
            Some((_, record)) if time_of(record.value()) >= time => high = middle,
            _ => low = middle + 1,
        }
    }
    Ok(Some(low))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::commit::{Action, Write};
    use serde_json::json;

    fn put(store: &Store, id: &str, family: &str) {
        let resource = json!({"resourceType": "Patient", "id": id, "name": [{"family": family}]});
        let write = Write {
            resource_type: "Patient".into(),
            id: id.into(),
            action: Action::Update(resource),
            if_match: None,
        };
        store.commit_blocking(vec![write]).unwrap();
    }

    fn erasure(id: &str, vid: Option<u64>) -> Erasure {
        Erasure {
            resource_type: "Patient".into(),
            id: id.into(),
            vid,
        }
    }

    /// (seq, op, id, vid, erased) of every entry of the log, and whether any entry that is
    /// not erased names a version that is gone.
    fn log(store: &Store) -> Vec<(u64, Op, String, u64, Option<u64>)> {
        store
            .log_after(0, 1000, &[])
            .unwrap()
            .entries
            .into_iter()
            .map(|e| {
                let c = e.change;
                if c.op == Op::Erased {
                    assert!(e.version.body.is_empty());
                }
                (c.seq, c.op, c.id, c.vid, c.erased)
            })
            .collect()
    }

    #[test]
    fn a_version_and_a_resource_are_erased_and_the_log_stays_gap_free() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        put(&store, "a", "One"); // seq 1
        put(&store, "b", "Other"); // seq 2
        put(&store, "a", "Two"); // seq 3
        put(&store, "a", "Three"); // seq 4
        // The current version alone is refused; a missing one is 404; nothing changes.
        let refused = store
            .erase_blocking(vec![erasure("a", Some(3))])
            .unwrap_err();
        assert_eq!(refused.error.status, 409);
        let refused = store
            .erase_blocking(vec![erasure("a", Some(9))])
            .unwrap_err();
        assert_eq!(refused.error.status, 404);
        assert_eq!(store.committed_seq(), 4);
        // One earlier version.
        let erased = store.erase_blocking(vec![erasure("a", Some(2))]).unwrap();
        assert_eq!(
            (erased[0].vids.clone(), erased[0].changes.clone()),
            (vec![2], vec![3])
        );
        assert!(!erased[0].gone);
        assert!(store.vread("Patient", "a", 2).unwrap().is_none());
        assert!(store.vread("Patient", "a", 3).unwrap().is_some());
        let entries = log(&store);
        assert_eq!(entries.len(), 5);
        assert_eq!(entries[2], (3, Op::Erased, "a".into(), 2, Some(3)));
        assert_eq!(entries[4], (5, Op::Erased, "a".into(), 2, Some(3)));
        // The whole resource: every version, and the current pointer.
        let erased = store.erase_blocking(vec![erasure("a", None)]).unwrap();
        assert_eq!(
            (erased[0].vids.clone(), erased[0].changes.clone()),
            (vec![1, 3], vec![1, 4])
        );
        assert!(erased[0].gone);
        assert!(store.read("Patient", "a").unwrap().is_none());
        let entries = log(&store);
        let seqs: Vec<u64> = entries.iter().map(|e| e.0).collect();
        assert_eq!(seqs, (1..=7).collect::<Vec<_>>(), "gap-free");
        assert!(
            entries
                .iter()
                .filter(|e| e.2 == "a")
                .all(|e| e.1 == Op::Erased)
        );
        assert_eq!(entries[1].1, Op::Create, "Patient/b is untouched");
        // Erasing what is gone erases nothing; history lists only what is left.
        let again = store.erase_blocking(vec![erasure("a", None)]).unwrap();
        assert!(again[0].vids.is_empty() && !again[0].gone);
        // The id can be used again; its new version is listed once.
        put(&store, "a", "New");
        let query = crate::store::history::Query {
            scope: crate::store::history::Scope::System,
            since: None,
            at: None,
            count: 100,
            after: None,
        };
        let page = store
            .history(&query, |entries| {
                Ok::<_, crate::store::StoreError>(vec![true; entries.len()])
            })
            .unwrap()
            .unwrap();
        let listed: Vec<(String, u64)> =
            page.entries.iter().map(|e| (e.id.clone(), e.vid)).collect();
        assert_eq!(listed, vec![("a".to_string(), 1), ("b".to_string(), 1)]);
        store.close();
        drop(store);
        // After a restart the writer goes on after the erasure's events.
        let store = Store::open(dir.path()).unwrap();
        put(&store, "c", "Later");
        assert_eq!(store.committed_seq(), 9);
        store.close();
    }
}
