//! Scrubbing: zeros written over every free page of the store's file, so that the bytes of
//! erased versions leave the disk and not only the tables.
//!
//! redb is copy-on-write: removing a version frees the pages that held it, and their old bytes
//! stay in the file until a later write reuses them. [`scrub`] makes that reuse happen at
//! once: it commits twice with nothing in it, so that redb returns to its free list the pages
//! that earlier transactions freed, then fills a transient table ([`SCRUB`]) with zero values
//! of half a page each until the free pages are used up (redb zeroes a page it allocates and
//! writes it whole), and empties and drops the table again. A leaf holds one such value, so
//! each takes one page of the lowest order and any free page can take it.
//!
//! The file must not grow for it: redb grows a file by doubling it and gives back only part of
//! a free tail, so a fill that grew the file left it half again as large at every scrub. So
//! the fill looks at the file's length after every value, and a transaction that grew it is
//! aborted, which gives the growth back (redb truncates to the layout the transaction began
//! with); the fill then ends with one transaction of [`MARGIN`] values fewer than fitted, the
//! room its commit and the emptying need. The table is emptied in growing chunks, each one's
//! commit using the pages the ones before it freed, before it is dropped.
//!
//! Invariant: after a scrub, no free page of the file holds bytes written before it, except
//! pages that a read transaction open at the time of the scrub still holds (redb frees them
//! only once it ends), and the few pages the fill left free at its end: about [`MARGIN`]. redb
//! hands out the lowest free page of the smallest free block first, so those are the top of
//! the largest free block, which is the never-written end of the file unless the file is full
//! to its end. So the writer scrubs a while after an erasure, when the readers of that moment
//! are done, and once more when the store closes, when none is left ([`super::commit`]).
//! `fhirlake compact` (offline) moves the live pages to the front and cuts the rest off.
//!
//! One more place holds old bytes: redb changes a page that the same transaction already
//! wrote in place, so a version removed from such a page (an erasure of several versions that
//! share a leaf) leaves its bytes past the page's new end, in a page still in use. So a scrub
//! first rebuilds the leaves that held the versions erased since the last scrub (the `erased`
//! entries after `meta`'s [`SCRUBBED_THROUGH_KEY`]): a page written by an earlier transaction
//! is rebuilt from its entries into a new, zeroed page, and the old one is freed for the fill.
//! Its last transaction records how far it reached, so a scrub that a crash interrupted (or
//! never began) is due again when the store opens ([`pending`]).
//!
//! What a scrub cannot reach: copies made below the file (a filesystem's or a disk's own
//! blocks, snapshots, backups).

use super::StoreError;
use super::tables::{CHANGES, ChangeRecord, ERASED, META, SCRUBBED_THROUGH_KEY, VERSIONS};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use std::path::Path;
use std::sync::atomic::AtomicU64;

/// The transient table a scrub fills: it exists only during one (a scrub that a crash
/// interrupted leaves it, and the next one drops it first).
const SCRUB: TableDefinition<u64, &[u8]> = TableDefinition::new("scrub");

/// redb's page size (the store keeps redb's default).
const PAGE: u64 = 4096;

/// The most empty commits [`shrink`] makes.
const SHRINK_COMMITS: usize = 40;

/// How many values fewer than fitted the fill's last transaction writes: room for its commit
/// and the first chunk of the emptying.
const MARGIN: u64 = 16;

/// The first chunk of values the emptying removes; each next one is twice as large.
const FIRST_CHUNK: u64 = 256;

/// What the writer's scrubs have done since the store opened (`/metrics`).
#[derive(Debug, Default)]
pub struct Scrubs {
    /// Scrubs finished.
    pub count: AtomicU64,
    /// Pages they wrote zeros over.
    pub pages: AtomicU64,
    /// The writer's time spent in their steps, in microseconds.
    pub micros: AtomicU64,
}

/// The most pages one step of a scrub writes (16 MiB): the writer serves requests between
/// steps.
const STEP: u64 = 4096;

/// A scrub, in steps of one transaction each ([`Scrub::step`]), so that the writer commits
/// requests between them. Pages that those requests free meanwhile hold bytes that are still
/// stored elsewhere; the erased versions' pages were freed before the scrub began.
#[derive(Debug)]
pub struct Scrub {
    next: Step,
    /// Values written (pages written with zeros) so far.
    pages: u64,
    /// The last `erased` entry whose leaves it rebuilt.
    through: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    /// Empty commits left to make, so that redb frees what earlier transactions freed.
    Release(u8),
    /// Filling; `Some(n)` once a transaction grew the file: at most `n` values more fit.
    Fill(Option<u64>),
    /// Emptying the table, `chunk` values at a time from the value `from` on.
    Empty { from: u64, chunk: u64 },
}

impl Default for Scrub {
    fn default() -> Self {
        Scrub {
            next: Step::Release(2),
            pages: 0,
            through: None,
        }
    }
}

impl Scrub {
    /// Runs the next step, one durable transaction (redb's default), or none when it aborts
    /// a transaction that grew the file; once the scrub is done, returns how many pages it
    /// wrote. A crash midway leaves a whole store (with the transient table in it, dropped by
    /// the next scrub).
    pub fn step(&mut self, db: &Database, file: &Path) -> Result<Option<u64>, StoreError> {
        let txn = db.begin_write()?;
        match self.next {
            Step::Release(left) => {
                txn.delete_table(SCRUB)?;
                if self.through.is_none() {
                    self.through = rebuild(&txn)?;
                }
                self.next = if left > 1 {
                    Step::Release(left - 1)
                } else {
                    Step::Fill(None)
                };
            }
            Step::Fill(fits) => {
                let count = fits.unwrap_or(STEP).min(STEP);
                if count == 0 {
                    self.next = Step::Empty {
                        from: 0,
                        chunk: FIRST_CHUNK,
                    };
                    return Ok(None);
                }
                let length = file_length(file)?;
                let zeros = vec![0u8; PAGE as usize / 2];
                let mut table = txn.open_table(SCRUB)?;
                for i in 0..count {
                    table.insert(self.pages + i, zeros.as_slice())?;
                    if file_length(file)? != length {
                        // Aborting gives the growth back; `i` values fitted.
                        drop(table);
                        txn.abort()?;
                        self.next = Step::Fill(Some(i.saturating_sub(MARGIN)));
                        return Ok(None);
                    }
                }
                self.pages += count;
                self.next = Step::Fill(fits.map(|fits| fits - count));
            }
            Step::Empty { from, chunk } => {
                if from >= self.pages {
                    txn.delete_table(SCRUB)?;
                    if let Some(through) = self.through {
                        txn.open_table(META)?
                            .insert(SCRUBBED_THROUGH_KEY, through)?;
                    }
                    txn.commit()?;
                    shrink(db, file)?;
                    return Ok(Some(self.pages));
                }
                txn.open_table(SCRUB)?
                    .retain_in(from..from + chunk, |_, _| false)?;
                self.next = Step::Empty {
                    from: from + chunk,
                    chunk: (chunk * 2).min(STEP),
                };
            }
        }
        txn.commit()?;
        Ok(None)
    }
}

/// Writes zeros over every free page of `db`, whose file is `file`, in one go (see the
/// module doc); returns how many pages it wrote. Costs a write of the free pages: a file's
/// worth at most.
pub fn scrub(db: &Database, file: &Path) -> Result<u64, StoreError> {
    let mut scrub = Scrub::default();
    loop {
        if let Some(pages) = scrub.step(db, file)? {
            return Ok(pages);
        }
    }
}

/// Whether versions were erased since the last scrub reached them: a scrub is due.
pub fn pending(db: &Database) -> Result<bool, StoreError> {
    let txn = db.begin_read()?;
    let through = txn
        .open_table(META)?
        .get(SCRUBBED_THROUGH_KEY)?
        .map_or(0, |v| v.value());
    let last = txn
        .open_table(ERASED)?
        .last()?
        .map_or(0, |(seq, _)| seq.value());
    Ok(last > through)
}

/// Rebuilds, in `txn`, the leaves of `versions` that held the versions erased since the last
/// scrub: an empty placeholder is inserted at each erased version's key, which makes redb
/// write that leaf anew, and removed again before the commit (no reader sees one; a version
/// written again since at the same key is left as it is). Returns the last `erased` entry
/// it reached, if any.
fn rebuild(txn: &WriteTransaction) -> Result<Option<u64>, StoreError> {
    let after = txn
        .open_table(META)?
        .get(SCRUBBED_THROUGH_KEY)?
        .map_or(0, |v| v.value());
    let changes = txn.open_table(CHANGES)?;
    let mut erased = Vec::new();
    let mut through = None;
    for item in txn.open_table(ERASED)?.range(after + 1..)? {
        let (seq, _) = item?;
        through = Some(seq.value());
        if let Some(record) = changes.get(seq.value())? {
            let change = ChangeRecord::decode(seq.value(), record.value());
            erased.push((change.resource_type, change.id, change.vid));
        }
    }
    let mut versions = txn.open_table(VERSIONS)?;
    let mut placed = Vec::with_capacity(erased.len());
    for (resource_type, id, vid) in &erased {
        let key = (resource_type.as_str(), id.as_str(), *vid);
        if versions.get(key)?.is_none() {
            versions.insert(key, [].as_slice())?;
            placed.push(key);
        }
    }
    for key in placed {
        versions.remove(key)?;
    }
    Ok(through)
}

/// Commits with nothing in it until the file stops shrinking: requests committed between
/// the scrub's steps may have grown it, and redb gives back at most half of a file's free tail
/// per commit, once the pages freed are free.
fn shrink(db: &Database, file: &Path) -> Result<(), StoreError> {
    let mut length = file_length(file)?;
    let mut unchanged = 0;
    for _ in 0..SHRINK_COMMITS {
        db.begin_write()?.commit()?;
        let now = file_length(file)?;
        unchanged = if now < length { 0 } else { unchanged + 1 };
        if unchanged == 3 {
            break;
        }
        length = now;
    }
    Ok(())
}

fn file_length(file: &Path) -> Result<u64, StoreError> {
    std::fs::metadata(file)
        .map(|metadata| metadata.len())
        .map_err(|source| StoreError::Directory {
            path: file.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{ReadableDatabase, ReadableTableMetadata};

    const DATA: TableDefinition<u64, &[u8]> = TableDefinition::new("data");

    fn holds(file: &Path, marker: &[u8]) -> bool {
        let bytes = std::fs::read(file).unwrap();
        bytes.windows(marker.len()).any(|w| w == marker)
    }

    #[test]
    fn a_scrub_leaves_no_removed_bytes_in_the_file_and_keeps_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("db.redb");
        let db = Database::create(&file).unwrap();
        let gone = b"removed-value-marker";
        let kept = b"kept-value-marker";
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(DATA).unwrap();
            for i in 0..2_000u64 {
                let marker: &[u8] = if i % 2 == 0 { gone } else { kept };
                let value = [marker, &[b'x'; 300]].concat();
                table.insert(i, value.as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(DATA).unwrap();
            for i in (0..2_000u64).step_by(2) {
                table.remove(i).unwrap();
            }
        }
        txn.commit().unwrap();
        assert!(
            holds(&file, gone),
            "redb leaves removed bytes in free pages"
        );
        let before = file_length(&file).unwrap();
        let scrubbed = scrub(&db, &file).unwrap();
        assert!(scrubbed > 0);
        assert!(!holds(&file, gone), "the removed bytes are gone");
        assert!(
            file_length(&file).unwrap() <= before,
            "the file did not grow"
        );
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(DATA).unwrap();
        assert_eq!(table.len().unwrap(), 1_000);
        assert!(table.get(1).unwrap().unwrap().value().starts_with(kept));
        // Later scrubs find as much to do and leave the file as it was: its length too.
        drop(table);
        drop(txn);
        let length = file_length(&file).unwrap();
        for _ in 0..3 {
            scrub(&db, &file).unwrap();
            assert_eq!(file_length(&file).unwrap(), length, "a scrub grows no file");
        }
        let txn = db.begin_read().unwrap();
        assert_eq!(txn.open_table(DATA).unwrap().len().unwrap(), 1_000);
    }

    #[test]
    fn versions_removed_in_place_leave_no_bytes_once_recorded_as_erased() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("db.redb");
        let db = Database::create(&file).unwrap();
        let marker = b"erased-version-marker";
        let body = |vid: u64| {
            let word: &[u8] = if vid > 1 { marker } else { b"kept" };
            [word, &[b'x'; 200]].concat()
        };
        let txn = db.begin_write().unwrap();
        {
            let mut versions = txn.open_table(VERSIONS).unwrap();
            // Others before them in the same leaf keep it from being merged.
            for vid in 1..=10 {
                versions
                    .insert(("Patient", "0", vid), body(1).as_slice())
                    .unwrap();
            }
            for vid in 1..=3 {
                versions
                    .insert(("Patient", "a", vid), body(vid).as_slice())
                    .unwrap();
            }
        }
        txn.commit().unwrap();
        // One transaction removes both: the second removal is made in place.
        let txn = db.begin_write().unwrap();
        {
            let mut versions = txn.open_table(VERSIONS).unwrap();
            versions.remove(("Patient", "a", 2)).unwrap();
            versions.remove(("Patient", "a", 3)).unwrap();
        }
        txn.commit().unwrap();
        // Unrecorded as erased, the page in use keeps the bytes past its end.
        scrub(&db, &file).unwrap();
        assert!(holds(&file, marker));
        // Recorded (as an erasure records them), the next scrub rebuilds that leaf.
        let record = |txn: &WriteTransaction, seq: u64, vid: u64| {
            let event = ChangeRecord {
                seq,
                txid: seq,
                resource_type: "Patient".into(),
                id: "a".into(),
                vid,
                op: crate::store::tables::Op::Erased,
                last_updated: 0,
                erased: Some(0),
            };
            txn.open_table(CHANGES)
                .unwrap()
                .insert(seq, event.encode().as_slice())
                .unwrap();
            txn.open_table(ERASED)
                .unwrap()
                .insert(seq, "Patient")
                .unwrap();
        };
        let txn = db.begin_write().unwrap();
        record(&txn, 1, 2);
        record(&txn, 2, 3);
        txn.commit().unwrap();
        assert!(pending(&db).unwrap());
        scrub(&db, &file).unwrap();
        assert!(!holds(&file, marker));
        assert!(!pending(&db).unwrap());
        let txn = db.begin_read().unwrap();
        let versions = txn.open_table(VERSIONS).unwrap();
        assert_eq!(versions.len().unwrap(), 11);
        assert_eq!(
            versions.get(("Patient", "a", 1)).unwrap().unwrap().value(),
            body(1)
        );
        drop(versions);
        drop(txn);
        // A version written again at an erased key is left as it is.
        let txn = db.begin_write().unwrap();
        txn.open_table(VERSIONS)
            .unwrap()
            .insert(("Patient", "a", 3), b"again".as_slice())
            .unwrap();
        record(&txn, 3, 3);
        txn.commit().unwrap();
        scrub(&db, &file).unwrap();
        let txn = db.begin_read().unwrap();
        let versions = txn.open_table(VERSIONS).unwrap();
        assert_eq!(
            versions.get(("Patient", "a", 3)).unwrap().unwrap().value(),
            b"again"
        );
    }
}
