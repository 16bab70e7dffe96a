//! History queries: the versions of one resource, of one type, or of the whole system, newest
//! first, filtered by `_since` and `_at`, in pages of the versions a judge keeps (those the
//! client may read), and how many there are in all ([`Store::history_total`]).
//!
//! Invariants:
//! - Pages are cut by a [`Cursor`] that only moves to older entries, so new writes during
//!   paging never shift or repeat a page.
//! - A page holds `count` kept versions unless it is the last; whether there is a next page,
//!   and the cursor of it, depend on the kept versions only. A cursor names the last version
//!   of its page (its lastUpdated, type, id and version), never a position in the change log,
//!   whose numbering counts every version, kept or not. A cursor naming a version the judge
//!   does not keep (made up by a client) pages as one naming no version at all.
//! - Type and system history read the change log (`changes`, `type_changes`), so after
//!   retention trimmed it they list, and their `total` counts, only the changes it kept (the
//!   `erased` entries left out); an instance's history reads its versions.

use super::tables::{
    CHANGES, CURRENT, ChangeRecord, ERASED, Method, Op, TYPE_CHANGES, VERSIONS, VersionRecord,
};
use super::{Store, StoreError};
use crate::fhir::datetime::{Micros, Period};
use redb::{ReadOnlyTable, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use std::fmt;

/// A version that may belong to a page: (seq, or vid for one resource; type, id, vid).
type Candidate = (u64, String, String, u64);

/// The fewest candidates judged at once after a first batch left the page short, so that a
/// client who may read little of a long history does not cost a judgement per version.
const MIN_BATCH: usize = 64;

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
    /// Only entries older than the one this cursor names (from a previous page's `next`).
    pub after: Option<Cursor>,
}

/// Where the next page starts: after the version a page ended with. Written
/// `{lastUpdated µs}_{type}_{id}_{vid}` (neither types nor ids hold `_`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub last_updated: Micros,
    pub resource_type: String,
    pub id: String,
    pub vid: u64,
}

impl Cursor {
    pub fn parse(text: &str) -> Option<Cursor> {
        let mut parts = text.split('_');
        let cursor = Cursor {
            last_updated: parts.next()?.parse().ok()?,
            resource_type: parts.next()?.to_string(),
            id: parts.next()?.to_string(),
            vid: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(cursor)
    }

    fn of(entry: &Entry) -> Cursor {
        Cursor {
            last_updated: entry.last_updated,
            resource_type: entry.resource_type.clone(),
            id: entry.id.clone(),
            vid: entry.vid,
        }
    }

    fn names(&self, resource_type: &str, id: &str, vid: u64) -> bool {
        self.resource_type == resource_type && self.id == id && self.vid == vid
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}_{}_{}_{}",
            self.last_updated, self.resource_type, self.id, self.vid
        )
    }
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
    pub next: Option<Cursor>,
}

/// The tables a history reads, in one read transaction.
struct Tables {
    versions: ReadOnlyTable<(&'static str, &'static str, u64), &'static [u8]>,
    changes: ReadOnlyTable<u64, &'static [u8]>,
    type_changes: ReadOnlyTable<(&'static str, u64), ()>,
}

impl Store {
    /// One page of history: the versions `keep` keeps (it judges a batch of versions at a
    /// time, in order), `query.count` of them at most. `Ok(None)` when the scope is one
    /// resource that does not exist.
    pub fn history<E: From<StoreError>>(
        &self,
        query: &Query<'_>,
        mut keep: impl FnMut(&[Entry]) -> Result<Vec<bool>, E>,
    ) -> Result<Option<Page>, E> {
        let txn = self.db.begin_read().map_err(StoreError::from)?;
        let open = || -> Result<Tables, StoreError> {
            Ok(Tables {
                versions: txn.open_table(VERSIONS)?,
                changes: txn.open_table(CHANGES)?,
                type_changes: txn.open_table(TYPE_CHANGES)?,
            })
        };
        let tables = open()?;
        if let Scope::Instance(resource_type, id) = query.scope {
            let current = txn.open_table(CURRENT).map_err(StoreError::from)?;
            if current
                .get((resource_type, id))
                .map_err(StoreError::from)?
                .is_none()
            {
                return Ok(None);
            }
        }
        let before = match &query.after {
            None => u64::MAX,
            Some(cursor) => tables.resume(query.scope, cursor, &mut keep)?,
        };
        let mut candidates = tables.candidates(query.scope, before)?;
        let mut kept = Vec::new();
        let mut exhausted = false;
        let mut first = true;
        while !exhausted && kept.len() <= query.count && query.count > 0 {
            // The page and one more (whether there is a next page); more when some were
            // not kept.
            let needed = query.count + 1 - kept.len();
            let wanted = if first { needed } else { needed.max(MIN_BATCH) };
            first = false;
            let mut batch = Vec::with_capacity(wanted);
            while batch.len() < wanted {
                let Some(candidate) = candidates.next() else {
                    exhausted = true;
                    break;
                };
                match tables.entry(query, candidate?)? {
                    Step::Entry(entry) => batch.push(entry),
                    Step::Skip => {}
                    Step::Stop => {
                        exhausted = true;
                        break;
                    }
                }
            }
            let verdicts = keep(&batch)?;
            kept.extend(
                batch
                    .into_iter()
                    .zip(verdicts)
                    .filter_map(|(entry, kept)| kept.then_some(entry)),
            );
        }
        let next = (kept.len() > query.count).then(|| Cursor::of(&kept[query.count - 1]));
        kept.truncate(query.count);
        Ok(Some(Page {
            entries: kept,
            next,
        }))
    }

    /// How many entries the history of `query` lists over all its pages (`count` and `after`
    /// aside), unjudged: for a client that may read every version. Type and system history
    /// read the change log, so after retention trimmed it they count the changes it kept,
    /// less its `erased` entries (listed in the `erased` table); an instance's history counts
    /// its versions.
    ///
    /// Without `_at` no version is read: `_since` becomes a seq of the change log (by
    /// bisection, lastUpdated never decreasing along it), so a system history's total costs a
    /// few lookups and a type's one count of its `type_changes` keys, however often a client
    /// polls `_history?_since=...`. With `_at` every candidate is filtered, as pages are.
    pub fn history_total(&self, query: &Query<'_>) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let tables = Tables {
            versions: txn.open_table(VERSIONS)?,
            changes: txn.open_table(CHANGES)?,
            type_changes: txn.open_table(TYPE_CHANGES)?,
        };
        if query.at.is_none() {
            // The first seq that may count: after the last change before `_since`.
            let from = match query.since {
                Some(since) => tables
                    .last_seq_at_or_before(since - 1)?
                    .map_or(0, |seq| seq + 1),
                None => 0,
            };
            let erased = txn.open_table(ERASED)?;
            let erased = erased.range(from..)?;
            match query.scope {
                Scope::System => {
                    let kept = tables.changes.len()?;
                    let last = tables.changes.last()?.map_or(0, |(seq, _)| seq.value());
                    // The kept changes are the seqs up to `last`, gap-free.
                    let listed = match from {
                        0 => kept,
                        from => (last + 1).saturating_sub(from).min(kept),
                    };
                    return Ok(listed.saturating_sub(erased.count() as u64));
                }
                Scope::Type(resource_type) => {
                    let range = tables
                        .type_changes
                        .range((resource_type, from)..=(resource_type, u64::MAX))?;
                    let mut erased_of_type = 0;
                    for item in erased {
                        erased_of_type += u64::from(item?.1.value() == resource_type);
                    }
                    return Ok((range.count() as u64).saturating_sub(erased_of_type));
                }
                // Its versions are counted: an erased one leaves a gap in the vids.
                Scope::Instance(..) => {}
            }
        }
        let mut total = 0;
        for candidate in tables.candidates(query.scope, u64::MAX)? {
            match tables.entry(query, candidate?)? {
                Step::Entry(_) => total += 1,
                Step::Skip => {}
                Step::Stop => break,
            }
        }
        Ok(total)
    }
}

/// What a candidate is to a page.
/// A change as a candidate; an erased entry names no version (`None`): a version written again
/// after its resource was erased has the same (type, id, vid) as the erased entry, and appears
/// only at its own change.
fn candidate(change: ChangeRecord) -> Result<Option<Candidate>, StoreError> {
    Ok((change.op != Op::Erased).then_some((
        change.seq,
        change.resource_type,
        change.id,
        change.vid,
    )))
}

enum Step {
    Entry(Entry),
    /// Filtered out (`_at`).
    Skip,
    /// Older than `_since`: so is every candidate after it.
    Stop,
}

impl Tables {
    /// The candidates of `scope` below `before` (a seq, or a vid for one resource), newest
    /// first.
    fn candidates<'t>(
        &'t self,
        scope: Scope<'t>,
        before: u64,
    ) -> Result<Box<dyn Iterator<Item = Result<Candidate, StoreError>> + 't>, StoreError> {
        Ok(match scope {
            Scope::Instance(resource_type, id) => {
                let range = self
                    .versions
                    .range((resource_type, id, 0)..(resource_type, id, before))?;
                Box::new(range.rev().map(move |item| {
                    let (key, _) = item?;
                    let vid = key.value().2;
                    Ok((vid, resource_type.to_string(), id.to_string(), vid))
                }))
            }
            Scope::Type(resource_type) => {
                let range = self
                    .type_changes
                    .range((resource_type, 0)..(resource_type, before))?;
                Box::new(
                    range
                        .rev()
                        .map(|item| {
                            let (key, _) = item?;
                            self.change(key.value().1)
                        })
                        .filter_map(Result::transpose),
                )
            }
            Scope::System => {
                let range = self.changes.range(..before)?;
                Box::new(
                    range
                        .rev()
                        .map(|item| {
                            let (seq, record) = item?;
                            candidate(ChangeRecord::decode(seq.value(), record.value()))
                        })
                        .filter_map(Result::transpose),
                )
            }
        })
    }

    fn change(&self, seq: u64) -> Result<Option<Candidate>, StoreError> {
        let record = self
            .changes
            .get(seq)?
            .ok_or_else(|| StoreError::Schema(format!("change {seq} is indexed but missing")))?;
        candidate(ChangeRecord::decode(seq, record.value()))
    }

    /// The version of `candidate`, filtered by the query's `_since` and `_at`.
    fn entry(&self, query: &Query<'_>, candidate: Candidate) -> Result<Step, StoreError> {
        let (_, resource_type, id, vid) = candidate;
        let Some(record) = self
            .versions
            .get((resource_type.as_str(), id.as_str(), vid))?
        else {
            return Ok(Step::Skip);
        };
        let last_updated = VersionRecord::last_updated_of(record.value());
        if query.since.is_some_and(|since| last_updated < since) {
            return Ok(Step::Stop); // lastUpdated only grows with seq and vid.
        }
        let record = VersionRecord::decode(record.value());
        if let Some(at) = query.at {
            let ended = self
                .versions
                .get((resource_type.as_str(), id.as_str(), vid + 1))?
                .map(|next| VersionRecord::last_updated_of(next.value()));
            if record.op == Op::Delete
                || last_updated >= at.end
                || ended.is_some_and(|end| end <= at.start)
            {
                return Ok(Step::Skip);
            }
        }
        Ok(Step::Entry(Entry {
            resource_type,
            id,
            vid,
            op: record.op,
            method: record.method,
            last_updated,
            body: record.body,
        }))
    }

    /// The bound (exclusive, as in [`Tables::candidates`]) below which the page after
    /// `cursor` starts. Of one resource: below the cursor's version. Otherwise: after the
    /// version the cursor names among those of its lastUpdated when `keep` keeps it, else
    /// below all of them (so that a cursor naming a version the client may not see pages as
    /// one naming nothing).
    fn resume<E: From<StoreError>>(
        &self,
        scope: Scope<'_>,
        cursor: &Cursor,
        keep: &mut impl FnMut(&[Entry]) -> Result<Vec<bool>, E>,
    ) -> Result<u64, E> {
        if let Scope::Instance(..) = scope {
            return Ok(cursor.vid);
        }
        // The changes up to the cursor's lastUpdated, newest first, while they have it.
        let last = self.last_seq_at_or_before(cursor.last_updated)?;
        let mut bound = last.map_or(0, |seq| seq + 1);
        for candidate in self.candidates(scope, bound)? {
            let (seq, resource_type, id, vid) = candidate?;
            let Some(record) = self
                .versions
                .get((resource_type.as_str(), id.as_str(), vid))
                .map_err(StoreError::from)?
            else {
                continue;
            };
            if VersionRecord::last_updated_of(record.value()) != cursor.last_updated {
                break;
            }
            bound = seq;
            if cursor.names(&resource_type, &id, vid) {
                let record = VersionRecord::decode(record.value());
                let named = Entry {
                    last_updated: cursor.last_updated,
                    resource_type,
                    id,
                    vid,
                    op: record.op,
                    method: record.method,
                    body: record.body,
                };
                if keep(std::slice::from_ref(&named))?[0] {
                    return Ok(seq);
                }
            }
        }
        Ok(bound)
    }

    /// The last change whose lastUpdated is at or before `at` (lastUpdated never decreases
    /// along the change log): a binary search over the seqs kept.
    fn last_seq_at_or_before(&self, at: Micros) -> Result<Option<u64>, StoreError> {
        let (Some(first), Some(last)) = (self.changes.first()?, self.changes.last()?) else {
            return Ok(None);
        };
        let time_of = |record: &[u8]| ChangeRecord::decode(0, record).last_updated;
        let (mut low, mut high) = (first.0.value(), last.0.value());
        if time_of(first.1.value()) > at {
            return Ok(None);
        }
        // Invariant: the change at or after `low` (the first kept) is at or before `at`.
        while low < high {
            let middle = low + (high - low).div_ceil(2);
            let found = self.changes.range(middle..)?.next().transpose()?;
            match found {
                Some((seq, record)) if time_of(record.value()) <= at => low = seq.value(),
                _ => high = middle - 1,
            }
        }
        Ok(Some(low))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::commit::{Action, Write};
    use serde_json::json;

    /// Commits each group of `(type, id)` in one transaction (the versions of a group share
    /// their lastUpdated); each version differs from the one before (an update equal to the
    /// current version makes none).
    fn write(store: &Store, groups: &[&[(&str, &str)]]) {
        for (round, group) in groups.iter().enumerate() {
            let writes = group
                .iter()
                .map(|(resource_type, id)| Write {
                    resource_type: resource_type.to_string(),
                    id: id.to_string(),
                    action: Action::Update(json!({"resourceType": resource_type, "id": id,
                        "language": format!("x-round-{round}")})),
                    if_match: None,
                })
                .collect();
            store.commit_blocking(writes).unwrap();
        }
    }

    /// Every page of `scope`, `count` at a time, keeping the ids `kept` accepts: each page's
    /// `Type/id/vid`s.
    fn pages(
        store: &Store,
        scope: Scope<'_>,
        count: usize,
        kept: impl Fn(&str) -> bool,
    ) -> Vec<Vec<String>> {
        let mut pages = Vec::new();
        let mut after = None;
        loop {
            let query = Query {
                scope,
                since: None,
                at: None,
                count,
                after: after.take(),
            };
            let page = store
                .history(&query, |entries: &[Entry]| {
                    Ok::<_, StoreError>(entries.iter().map(|e| kept(&e.id)).collect())
                })
                .unwrap()
                .unwrap();
            pages.push(
                page.entries
                    .iter()
                    .map(|e| format!("{}/{}/{}", e.resource_type, e.id, e.vid))
                    .collect(),
            );
            // A cursor goes through its text form, as a client sends it back.
            match page.next {
                Some(next) => after = Some(Cursor::parse(&next.to_string()).unwrap()),
                None => return pages,
            }
        }
    }

    #[test]
    fn pages_hold_kept_versions_only_and_cursors_name_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        write(
            &store,
            &[
                &[("Patient", "a1")],
                &[("Patient", "h1"), ("Patient", "a2"), ("Patient", "h2")],
                &[("Observation", "h3")],
                &[("Patient", "a1")],
                &[("Patient", "h1")],
            ],
        );
        let mine = |id: &str| id.starts_with('a');
        let expected = [
            vec!["Patient/a1/2"],
            vec!["Patient/a2/1"],
            vec!["Patient/a1/1"],
        ];
        assert_eq!(pages(&store, Scope::System, 1, mine), expected);
        assert_eq!(pages(&store, Scope::Type("Patient"), 1, mine), expected);
        assert_eq!(
            pages(&store, Scope::System, 2, mine),
            [vec!["Patient/a1/2", "Patient/a2/1"], vec!["Patient/a1/1"]]
        );
        assert_eq!(
            pages(&store, Scope::Instance("Patient", "a1"), 1, mine),
            [vec!["Patient/a1/2"], vec!["Patient/a1/1"]]
        );
        // Nothing kept: one empty page, no next.
        assert_eq!(
            pages(&store, Scope::System, 1, |_| false),
            [Vec::<String>::new()]
        );
        // Everything, through the transaction's shared lastUpdated.
        let all = pages(&store, Scope::System, 1, |_| true);
        assert_eq!(all.len(), 7);
        assert_eq!(
            all[3..6],
            [
                vec!["Patient/h2/1"],
                vec!["Patient/a2/1"],
                vec!["Patient/h1/1"]
            ]
        );
        store.close();
    }

    #[test]
    fn a_cursor_naming_what_is_not_kept_pages_as_one_naming_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        write(
            &store,
            &[
                &[("Patient", "a0")],
                &[("Patient", "a1"), ("Patient", "h1"), ("Patient", "a2")],
            ],
        );
        let mine = |id: &str| id.starts_with('a');
        let first = store
            .history(
                &Query {
                    scope: Scope::System,
                    since: None,
                    at: None,
                    count: 1,
                    after: None,
                },
                |e: &[Entry]| Ok::<_, StoreError>(e.iter().map(|e| mine(&e.id)).collect()),
            )
            .unwrap()
            .unwrap();
        let at = first.next.unwrap().last_updated;
        let after = |id: &str| {
            let query = Query {
                scope: Scope::System,
                since: None,
                at: None,
                count: 10,
                after: Some(Cursor {
                    last_updated: at,
                    resource_type: "Patient".into(),
                    id: id.into(),
                    vid: 1,
                }),
            };
            let page = store
                .history(&query, |e: &[Entry]| {
                    Ok::<_, StoreError>(e.iter().map(|e| mine(&e.id)).collect())
                })
                .unwrap()
                .unwrap();
            page.entries
                .iter()
                .map(|e| e.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(after("a2"), ["a1", "a0"]);
        assert_eq!(after("h1"), ["a0"]);
        assert_eq!(after("nothing"), ["a0"]);
        assert_eq!(Cursor::parse("1_Patient_a-1.b_2").unwrap().id, "a-1.b");
        for bad in [
            "",
            "1_Patient_a",
            "x_Patient_a_1",
            "1_Patient_a_1_2",
            "1_Patient_a_x",
        ] {
            assert_eq!(Cursor::parse(bad), None, "{bad}");
        }
        store.close();
    }
}
