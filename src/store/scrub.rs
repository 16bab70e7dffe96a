//! Scrubbing: zeros written over every free page of the store's file, so that the bytes of
//! erased versions leave the disk and not only the tables.
//!
//! redb is copy-on-write: removing a version frees the pages that held it, and their old bytes
//! stay in the file until a later write reuses them. [`scrub`] makes that reuse happen at
//! once: it commits twice with nothing in it, so that redb returns to its free list the pages
//! that earlier transactions freed, then fills a transient table ([`SCRUB`]) with zero values
//! of half a page each until every free page holds one (redb zeroes a page it allocates and
//! writes it whole), and drops the table again. A leaf holds one such value, so each takes one
//! page of the lowest order and any free page can take it; the file only grows once no free
//! page is left, which is how the fill knows it is done. The pages the table held are free
//! again afterwards, holding zeros; a file that grew for the last value shrinks back at a later
//! commit.
//!
//! Invariant: after a scrub, no free page of the file holds bytes written before it, except
//! pages that a read transaction open at the time of the scrub still holds (redb frees them
//! only once it ends). So the writer scrubs a while after an erasure, when the readers of that
//! moment are done, and once more when the store closes, when none is left
//! ([`super::commit`]).
//!
//! One more place holds old bytes: redb changes a page that the same transaction already
//! wrote in place, so a version removed from such a page (an erasure of several versions that
//! share a leaf) leaves its bytes past the page's new end, in a page still in use. So after an
//! erasure the writer [`rebuild`]s the leaves that held its versions, in a transaction of
//! their own: a page written by an earlier transaction is rebuilt from its entries into a new
//! page (zeroed), and the old one is freed, for the scrub.
//!
//! What a scrub cannot reach: copies made below the file (a filesystem's or a disk's own
//! blocks, snapshots, backups).

use super::StoreError;
use super::tables::VERSIONS;
use redb::{Database, TableDefinition};
use std::path::Path;
use std::sync::atomic::AtomicU64;

/// The transient table a scrub fills: it exists only during one (a scrub that a crash
/// interrupted leaves it, and the next one drops it first).
const SCRUB: TableDefinition<u64, &[u8]> = TableDefinition::new("scrub");

/// redb's page size (the store keeps redb's default).
const PAGE: u64 = 4096;

/// How many values are written between two looks at the file's length.
const BATCH: u64 = 64;

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
    /// Pages written with zeros so far.
    pages: u64,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    /// Empty commits left to make, so that redb frees what earlier transactions freed.
    Release(u8),
    Fill,
    Drop,
}

impl Default for Scrub {
    fn default() -> Self {
        Scrub {
            next: Step::Release(2),
            pages: 0,
        }
    }
}

impl Scrub {
    /// Runs the next step, one durable transaction (redb's default); once the scrub is done,
    /// returns how many pages it wrote. A crash midway leaves a whole store (with the
    /// transient table in it, dropped by the next scrub).
    pub fn step(&mut self, db: &Database, file: &Path) -> Result<Option<u64>, StoreError> {
        let txn = db.begin_write()?;
        match self.next {
            Step::Release(left) => {
                txn.delete_table(SCRUB)?;
                self.next = if left > 1 {
                    Step::Release(left - 1)
                } else {
                    Step::Fill
                };
            }
            Step::Fill => {
                let length = file_length(file)?;
                // No more pages are free than the file has (redb's own count, `stats`, reads
                // every page).
                let bound = length / PAGE + BATCH;
                let zeros = vec![0u8; PAGE as usize / 2];
                let mut table = txn.open_table(SCRUB)?;
                let end = self.pages + STEP;
                while self.pages < end {
                    for _ in 0..BATCH {
                        table.insert(self.pages, zeros.as_slice())?;
                        self.pages += 1;
                    }
                    if file_length(file)? != length || self.pages >= bound {
                        self.next = Step::Drop;
                        break;
                    }
                }
            }
            Step::Drop => {
                txn.delete_table(SCRUB)?;
                txn.commit()?;
                return Ok(Some(self.pages));
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

/// Rebuilds the leaves of `versions` that hold (or held) the keys of `erased`, (type, id,
/// vid) of versions erased by transactions before: an empty placeholder is inserted at each
/// key, which makes redb write that leaf anew, and removed again before the commit (so no
/// reader ever sees one). Leaves the table as it was.
pub fn rebuild(db: &Database, erased: &[(String, String, u64)]) -> Result<(), StoreError> {
    if erased.is_empty() {
        return Ok(());
    }
    let txn = db.begin_write()?;
    {
        let mut versions = txn.open_table(VERSIONS)?;
        for (resource_type, id, vid) in erased {
            let key = (resource_type.as_str(), id.as_str(), *vid);
            if versions.insert(key, [].as_slice())?.is_some() {
                return Err(StoreError::Schema(format!(
                    "{resource_type}/{id} version {vid} is not erased"
                )));
            }
        }
        for (resource_type, id, vid) in erased {
            versions.remove((resource_type.as_str(), id.as_str(), *vid))?;
        }
    }
    txn.commit()?;
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
        let scrubbed = scrub(&db, &file).unwrap();
        assert!(scrubbed > 0);
        assert!(!holds(&file, gone), "the removed bytes are gone");
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(DATA).unwrap();
        assert_eq!(table.len().unwrap(), 1_000);
        assert!(table.get(1).unwrap().unwrap().value().starts_with(kept));
        // A second scrub finds as much to do and leaves the file as it was.
        drop(table);
        drop(txn);
        scrub(&db, &file).unwrap();
        let txn = db.begin_read().unwrap();
        assert_eq!(txn.open_table(DATA).unwrap().len().unwrap(), 1_000);
    }

    #[test]
    fn versions_removed_in_place_leave_no_bytes_after_a_rebuild_and_a_scrub() {
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
        scrub(&db, &file).unwrap();
        assert!(
            holds(&file, marker),
            "the page in use keeps the bytes past its end"
        );
        let erased = [2, 3].map(|vid| ("Patient".to_string(), "a".to_string(), vid));
        rebuild(&db, &erased).unwrap();
        scrub(&db, &file).unwrap();
        assert!(!holds(&file, marker));
        let txn = db.begin_read().unwrap();
        let versions = txn.open_table(VERSIONS).unwrap();
        assert_eq!(versions.len().unwrap(), 11);
        assert_eq!(
            versions.get(("Patient", "a", 1)).unwrap().unwrap().value(),
            body(1)
        );
        drop(versions);
        drop(txn);
        // A version that is there is not a rebuild's to touch.
        let kept = [("Patient".to_string(), "a".to_string(), 1)];
        assert!(rebuild(&db, &kept).is_err());
        let txn = db.begin_read().unwrap();
        let versions = txn.open_table(VERSIONS).unwrap();
        assert_eq!(
            versions.get(("Patient", "a", 1)).unwrap().unwrap().value(),
            body(1)
        );
    }
}
