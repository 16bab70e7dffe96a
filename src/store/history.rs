//! History queries: the versions of one resource, of one type, or of the whole system, newest
//! first, filtered by `_since` and `_at`, in pages.
//!
//! Pages are cut by a cursor (a change-log seq, or a vid for one resource) that only moves to
//! older entries, so new writes during paging never shift or repeat a page.

use super::tables::{
    CHANGES, CURRENT, ChangeRecord, Method, Op, TYPE_CHANGES, VERSIONS, VersionRecord,
};
use super::{Store, StoreError};
use crate::fhir::datetime::{Micros, Period};
use redb::{ReadOnlyTable, ReadableDatabase};

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
        let before = query.before.unwrap_or(u64::MAX);
        // Candidates, newest first, as (cursor, type, id, vid).
        let candidates: Box<dyn Iterator<Item = Result<Candidate, StoreError>>> = match query.scope
        {
            Scope::Instance(resource_type, id) => {
                if txn.open_table(CURRENT)?.get((resource_type, id))?.is_none() {
                    return Ok(None);
                }
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
                    change(&changes, key.value().1)
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
        };
        let mut entries = Vec::new();
        let mut next = None;
        for candidate in candidates {
            let (cursor, resource_type, id, vid) = candidate?;
            let Some(record) = versions.get((resource_type.as_str(), id.as_str(), vid))? else {
                continue;
            };
            let last_updated = VersionRecord::last_updated_of(record.value());
            if query.since.is_some_and(|since| last_updated < since) {
                break; // lastUpdated only grows with seq and vid: nothing older matches.
            }
            if let Some(at) = query.at {
                let ended = versions
                    .get((resource_type.as_str(), id.as_str(), vid + 1))?
                    .map(|next| VersionRecord::last_updated_of(next.value()));
                let deleted = VersionRecord::decode(record.value()).op == Op::Delete;
                if deleted || last_updated >= at.end || ended.is_some_and(|end| end <= at.start) {
                    continue;
                }
            }
            if entries.len() == query.count {
                next = entries.last().map(|e: &(u64, Entry)| e.0);
                break;
            }
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
}

fn change(changes: &ReadOnlyTable<u64, &'static [u8]>, seq: u64) -> Result<Candidate, StoreError> {
    let record = changes
        .get(seq)?
        .ok_or_else(|| StoreError::Schema(format!("change {seq} is indexed but missing")))?;
    let c = ChangeRecord::decode(seq, record.value());
    Ok((c.seq, c.resource_type, c.id, c.vid))
}
