//! History queries: the versions of one resource, of one type, or of the whole system, newest
//! first, filtered by `_since` and `_at`, in pages, and how many there are in all
//! ([`Store::history_total`]).
//!
//! Pages are cut by a cursor (a change-log seq, or a vid for one resource) that only moves to
//! older entries, so new writes during paging never shift or repeat a page.

use super::tables::{
    CHANGES, CURRENT, ChangeRecord, CurrentRecord, Method, Op, TYPE_CHANGES, VERSIONS,
    VersionRecord,
};
use super::{Store, StoreError};
use crate::fhir::datetime::{Micros, Period};
use redb::{ReadOnlyTable, ReadableDatabase, ReadableTable, ReadableTableMetadata};

/// A version that may belong to a page: (cursor, type, id, vid).
type Candidate = (u64, String, String, u64);

/// Whose history.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    System,
    Type(&'a str),
    Instance(&'a str, &'a str),
}

#[derive(Debug, Clone)]
pub struct Query<'a> {
    pub scope: Scope<'a>,
    /// `_since`: only versions with lastUpdated at or after it.
    pub since: Option<Micros>,
    /// `_at`: only versions that were current at some time within the period.
    pub at: Option<Period>,
    pub count: usize,
    /// Only entries older than this cursor (from a previous page's `next`).
    pub before: Option<u64>,
}

/// One version in a history page.
#[derive(Debug, Clone)]
pub struct Entry {
    pub resource_type: String,
    pub id: String,
    pub vid: u64,
    pub op: Op,
    pub method: Method,
    pub last_updated: Micros,
    /// The stored JSON; empty for a delete.
    pub body: Vec<u8>,
}

#[derive(Debug)]
pub struct Page {
    pub entries: Vec<Entry>,
    /// The cursor of the next page, when there are more entries.
    pub next: Option<u64>,
}

impl Store {
    /// One page of history. `Ok(None)` when the scope is one resource that does not exist.
    pub fn history(&self, query: &Query<'_>) -> Result<Option<Page>, StoreError> {
        let txn = self.db.begin_read()?;
        let versions = txn.open_table(VERSIONS)?;
        let changes = txn.open_table(CHANGES)?;
        let index = txn.open_table(TYPE_CHANGES)?;
        if let Scope::Instance(resource_type, id) = query.scope
            && txn.open_table(CURRENT)?.get((resource_type, id))?.is_none()
        {
            return Ok(None);
        }
        let before = query.before.unwrap_or(u64::MAX);
        let mut entries = Vec::new();
        let mut next = None;
        for candidate in candidates(query.scope, before, &versions, &changes, &index)? {
            let (cursor, resource_type, id, vid) = candidate?;
            let Some(record) = versions.get((resource_type.as_str(), id.as_str(), vid))? else {
                continue;
            };
            match verdict(query, &versions, (&resource_type, &id, vid), record.value())? {
                Verdict::Keep => {}
                Verdict::Skip => continue,
                Verdict::Stop => break,
            }
            if entries.len() == query.count {
                next = entries.last().map(|e: &(u64, Entry)| e.0);
                break;
            }
            let last_updated = VersionRecord::last_updated_of(record.value());
            let record = VersionRecord::decode(record.value());
            entries.push((
                cursor,
                Entry {
                    resource_type,
                    id,
                    vid,
                    op: record.op,
                    method: record.method,
                    last_updated,
                    body: record.body,
                },
            ));
        }
        Ok(Some(Page {
            entries: entries.into_iter().map(|(_, entry)| entry).collect(),
            next,
        }))
    }

    /// How many entries the history of `query` lists over all its pages (`count` and
    /// `before` aside). Type and system history read the change log, so after retention
    /// trimmed it they count the changes it kept; an instance's history counts its versions.
    ///
    /// Without `_at` no version is read: `_since` is a seq of the change log (found by
    /// bisection, lastUpdated never decreasing along it), so a system history's total costs
    /// a few lookups and a type's one count of its `type_changes` keys, however often a client
    /// polls `_history?_since=...`. With `_at` every candidate is judged, as pages are.
    pub fn history_total(&self, query: &Query<'_>) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let versions = txn.open_table(VERSIONS)?;
        let changes = txn.open_table(CHANGES)?;
        let index = txn.open_table(TYPE_CHANGES)?;
        if query.at.is_none() {
            let from = match query.since {
                Some(since) => first_change_since(&changes, since)?,
                None => 0,
            };
            match query.scope {
                Scope::System => {
                    let kept = changes.len()?;
                    let last = changes.last()?.map_or(0, |(seq, _)| seq.value());
                    // The kept changes are the seqs up to `last`, gap-free.
                    return Ok(match from {
                        0 => kept,
                        from => (last + 1).saturating_sub(from).min(kept),
                    });
                }
                Scope::Type(resource_type) => {
                    let range = index.range((resource_type, from)..=(resource_type, u64::MAX))?;
                    return Ok(range.count() as u64);
                }
                Scope::Instance(resource_type, id) if query.since.is_none() => {
                    let current = txn.open_table(CURRENT)?.get((resource_type, id))?;
                    // Its versions are 1 to the current one.
                    return Ok(current.map_or(0, |c| CurrentRecord::decode(c.value()).vid));
                }
                Scope::Instance(..) => {}
            }
        }
        let mut total = 0;
        for candidate in candidates(query.scope, u64::MAX, &versions, &changes, &index)? {
            let (_, resource_type, id, vid) = candidate?;
            let Some(record) = versions.get((resource_type.as_str(), id.as_str(), vid))? else {
                continue;
            };
            match verdict(query, &versions, (&resource_type, &id, vid), record.value())? {
                Verdict::Keep => total += 1,
                Verdict::Skip => {}
                Verdict::Stop => break,
            }
        }
        Ok(total)
    }
}

/// The seq of the oldest kept change made at or after `since` (`u64::MAX` when there is
/// none), by bisection: the kept seqs are gap-free and lastUpdated never decreases along
/// them.
fn first_change_since(changes: &Changes, since: Micros) -> Result<u64, StoreError> {
    let (Some((first, _)), Some((last, _))) = (changes.first()?, changes.last()?) else {
        return Ok(u64::MAX);
    };
    let (mut low, mut high) = (first.value(), last.value() + 1);
    while low < high {
        let middle = low + (high - low) / 2;
        let record = changes
            .get(middle)?
            .ok_or_else(|| StoreError::Schema(format!("change {middle} is missing")))?;
        if ChangeRecord::decode(middle, record.value()).last_updated < since {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    Ok(if low > last.value() { u64::MAX } else { low })
}

/// The versions of `scope` older than the cursor `before`, newest first, as (cursor, type, id,
/// vid): of one resource from its versions, of a type or the system from the change log.
fn candidates<'t>(
    scope: Scope<'t>,
    before: u64,
    versions: &'t Versions,
    changes: &'t Changes,
    index: &'t ReadOnlyTable<(&'static str, u64), ()>,
) -> Result<Box<dyn Iterator<Item = Result<Candidate, StoreError>> + 't>, StoreError> {
    Ok(match scope {
        Scope::Instance(resource_type, id) => {
            let range = versions.range((resource_type, id, 0)..(resource_type, id, before))?;
            Box::new(range.rev().map(move |item| {
                let (key, _) = item?;
                let vid = key.value().2;
                Ok((vid, resource_type.to_string(), id.to_string(), vid))
            }))
        }
        Scope::Type(resource_type) => {
            let range = index.range((resource_type, 0)..(resource_type, before))?;
            Box::new(range.rev().map(|item| {
                let (key, _) = item?;
                change(changes, key.value().1)
            }))
        }
        Scope::System => {
            let range = changes.range(..before)?;
            Box::new(range.rev().map(|item| {
                let (seq, record) = item?;
                let c = ChangeRecord::decode(seq.value(), record.value());
                Ok((c.seq, c.resource_type, c.id, c.vid))
            }))
        }
    })
}

/// Whether a candidate belongs to the history of `query`.
enum Verdict {
    Keep,
    Skip,
    /// Neither it nor any older candidate does.
    Stop,
}

/// The [`Verdict`] on version `(type, id, vid)`, stored as `record`, under `_since` and `_at`.
fn verdict(
    query: &Query<'_>,
    versions: &Versions,
    (resource_type, id, vid): (&str, &str, u64),
    record: &[u8],
) -> Result<Verdict, StoreError> {
    let last_updated = VersionRecord::last_updated_of(record);
    if query.since.is_some_and(|since| last_updated < since) {
        return Ok(Verdict::Stop); // lastUpdated only grows with seq and vid: nothing older matches.
    }
    if let Some(at) = query.at {
        let ended = versions
            .get((resource_type, id, vid + 1))?
            .map(|next| VersionRecord::last_updated_of(next.value()));
        let deleted = VersionRecord::decode(record).op == Op::Delete;
        if deleted || last_updated >= at.end || ended.is_some_and(|end| end <= at.start) {
            return Ok(Verdict::Skip);
        }
    }
    Ok(Verdict::Keep)
}

type Versions = ReadOnlyTable<(&'static str, &'static str, u64), &'static [u8]>;
type Changes = ReadOnlyTable<u64, &'static [u8]>;

fn change(changes: &Changes, seq: u64) -> Result<Candidate, StoreError> {
    let record = changes
        .get(seq)?
        .ok_or_else(|| StoreError::Schema(format!("change {seq} is indexed but missing")))?;
    let c = ChangeRecord::decode(seq, record.value());
    Ok((c.seq, c.resource_type, c.id, c.vid))
}
